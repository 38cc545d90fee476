package elasticsearch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// templateVersion is the version of the templates this code installs. Raise
// it when their content changes: a cluster holding an older version gets
// the new one, and one holding a newer version (from a newer leitstand in a
// rolling upgrade) is left alone.
const templateVersion = 1

// Names of the templates leitstand manages. The "@custom" one is the
// user's: leitstand's index templates list it, so settings put there (an
// ILM policy, replicas, a lifecycle) apply to leitstand's indices, but
// leitstand never writes it.
const (
	mappingsTemplate   = "leitstand@mappings"
	customTemplate     = "leitstand@custom"
	dataStreamTemplate = "leitstand-logs"
)

// clusterInfo is what the sink learned about the cluster at setup.
type clusterInfo struct {
	Version string
	Major   int
	Minor   int
	// MatchOnlyText: the mapper-extras module is there, so message can be
	// match_only_text (Elastic's choice for log messages: smaller, no scores).
	MatchOnlyText bool
	// Health is green, yellow or red ("" if not allowed to ask).
	Health string
}

// atLeast tells whether the cluster's version is at least major.minor; an
// unknown version counts as current.
func (c clusterInfo) atLeast(major, minor int) bool {
	if c.Major == 0 {
		return true
	}
	return c.Major > major || c.Major == major && c.Minor >= minor
}

// template is one component or index template to install.
type template struct {
	kind string // "_component_template" or "_index_template"
	name string
	body map[string]any
}

// templates returns what the sink installs, in order: component templates
// before the index templates that use them.
func (s *Sink) templates(info clusterInfo) []template {
	meta := func(desc string) map[string]any {
		return map[string]any{"managed_by": "leitstand", "description": desc}
	}
	composed := []string{mappingsTemplate}
	extra := map[string]any{}
	// ignore_missing_component_templates exists since 8.7; older clusters
	// just do not get the @custom hook.
	if info.atLeast(8, 7) {
		composed = append(composed, customTemplate)
		extra["ignore_missing_component_templates"] = []string{customTemplate}
	}
	index := func(name string, patterns []string, dataStream bool, desc string) template {
		body := map[string]any{
			"index_patterns": patterns,
			"priority":       s.cfg.TemplatePriority,
			"composed_of":    composed,
			"_meta":          meta(desc),
		}
		if dataStream {
			body["data_stream"] = map[string]any{}
		}
		for k, v := range extra {
			body[k] = v
		}
		return template{kind: "_index_template", name: name, body: body}
	}

	out := []template{{kind: "_component_template", name: mappingsTemplate, body: map[string]any{
		"template": map[string]any{"mappings": ecsMappings(info)},
		"_meta":    meta("ECS mappings for the fields leitstand writes"),
	}}}
	if s.cfg.Mode == ModeDataStream {
		out = append(out, index(dataStreamTemplate, []string{"logs-*-*"}, true,
			"leitstand's events as logs-<dataset>-<namespace> data streams; put your settings into "+customTemplate))
	} else {
		out = append(out, index(s.cfg.IndexPrefix, []string{s.cfg.IndexPrefix + "-*"}, false,
			"leitstand's events as daily indices; put your settings into "+customTemplate))
	}
	// The dead-letter indices map only what leitstand writes to them: the
	// failed document is kept as a string, so it cannot fail again.
	dlq := index(s.cfg.DeadLetterIndex, []string{s.cfg.DeadLetterIndex + "-*"}, false,
		"documents leitstand's Elasticsearch sink could not index, with the reason")
	dlq.body["composed_of"] = []string{}
	delete(dlq.body, "ignore_missing_component_templates")
	dlq.body["template"] = map[string]any{"mappings": deadLetterMappings()}
	// One above the events' templates, so that it wins should a user's
	// names make the patterns overlap.
	dlq.body["priority"] = s.cfg.TemplatePriority + 1
	return append(out, dlq)
}

func keyword() map[string]any { return map[string]any{"type": "keyword", "ignore_above": 1024} }

func props(kv ...any) map[string]any {
	p := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		p[kv[i].(string)] = kv[i+1]
	}
	return map[string]any{"properties": p}
}

func typ(t string) map[string]any { return map[string]any{"type": t} }

// ecsMappings maps the ECS fields leitstand's receivers write (DESIGN.md,
// "The Event"). Fields it does not know are mapped by the dynamic
// templates: strings as keyword (not text: no analysis cost for unknown
// fields), leitstand.scrub.* counts as long. Date detection is off, so a
// string that happens to look like a date in one event cannot make the
// field a date and reject the next event.
func ecsMappings(info clusterInfo) map[string]any {
	text := "text"
	if info.MatchOnlyText {
		text = "match_only_text"
	}
	return map[string]any{
		"date_detection": false,
		"dynamic_templates": []any{
			map[string]any{"leitstand_counts": map[string]any{"path_match": "leitstand.scrub.*", "mapping": typ("long")}},
			map[string]any{"strings_as_keyword": map[string]any{"match_mapping_type": "string", "mapping": keyword()}},
		},
		"properties": map[string]any{
			"@timestamp": typ("date_nanos"),
			"message":    typ(text),
			"tags":       keyword(),
			// Labels come from Kubernetes and Sentry tags: any key. One
			// flattened field keeps them from growing the mapping.
			"labels": typ("flattened"),
			"log": props(
				"level", keyword(), "logger", keyword(),
				"file", props("path", keyword()),
				"syslog", props("facility", props("code", typ("long"), "name", keyword()),
					"severity", props("code", typ("long"), "name", keyword()),
					"priority", typ("long"), "appname", keyword(), "procid", keyword(), "msgid", keyword(),
					"hostname", keyword(), "version", keyword())),
			"event": props(
				"dataset", keyword(), "ingested", typ("date_nanos"), "created", typ("date_nanos"),
				"kind", keyword(), "category", keyword(), "type", keyword(), "outcome", keyword(),
				"action", keyword(), "code", keyword(), "module", keyword(), "id", keyword(),
				"severity", typ("long"), "duration", typ("long"),
				"original", map[string]any{"type": "keyword", "index": false, "doc_values": false}),
			"host":    props("name", keyword(), "hostname", keyword(), "id", keyword(), "ip", typ("ip"), "architecture", keyword()),
			"service": props("name", keyword(), "environment", keyword(), "version", keyword(), "type", keyword(), "node", props("name", keyword())),
			"kubernetes": props(
				"namespace", keyword(),
				"pod", props("name", keyword(), "uid", keyword(), "ip", typ("ip")),
				"container", props("name", keyword(), "image", keyword()),
				"node", props("name", keyword())),
			"container": props("id", keyword(), "name", keyword(), "runtime", keyword(), "image", props("name", keyword(), "tag", keyword())),
			"source":    props("ip", typ("ip"), "port", typ("long"), "address", keyword(), "domain", keyword()),
			"client":    props("ip", typ("ip"), "port", typ("long"), "address", keyword()),
			"user":      props("id", keyword(), "name", keyword()),
			"error": props(
				"type", keyword(), "code", keyword(), "id", keyword(),
				"message", typ(text), "stack_trace", typ(text)),
			"process":     props("pid", typ("long"), "name", keyword(), "thread", props("id", typ("long"), "name", keyword())),
			"http":        props("request", props("method", keyword()), "response", props("status_code", typ("long"))),
			"url":         props("path", keyword(), "domain", keyword(), "original", keyword()),
			"trace":       props("id", keyword()),
			"span":        props("id", keyword()),
			"transaction": props("id", keyword()),
			"leitstand":   props("receiver", keyword(), "tenant", keyword()),
		},
	}
}

// deadLetterMappings maps what deadLetterDoc writes, and nothing else.
func deadLetterMappings() map[string]any {
	return map[string]any{
		"dynamic": "false",
		"properties": map[string]any{
			"@timestamp": typ("date_nanos"),
			"event": props(
				"original", map[string]any{"type": "keyword", "index": false, "doc_values": false},
				"dataset", keyword()),
			"error": props("type", keyword(), "message", typ("text")),
			"http":  props("response", props("status_code", typ("long"))),
			"leitstand": props("dead_letter", props(
				"reason", keyword(), "target", keyword(), "id", keyword(),
				"attempts", typ("long"), "truncated", typ("boolean"))),
		},
	}
}

// withHash marks a template body with its version and a hash of its
// content, so the next start can tell "already installed" from "changed"
// without comparing Elasticsearch's normalized echo of it.
func withHash(body map[string]any) (map[string]any, string, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(raw)
	hash := hex.EncodeToString(sum[:8])
	out := make(map[string]any, len(body)+1)
	for k, v := range body {
		out[k] = v
	}
	m := map[string]any{}
	for k, v := range body["_meta"].(map[string]any) {
		m[k] = v
	}
	m["leitstand_hash"] = hash
	out["_meta"] = m
	out["version"] = templateVersion
	return out, hash, nil
}

// installTemplates puts each template that is missing or older than ours,
// and reports how many it wrote.
func (s *Sink) installTemplates(ctx context.Context, info clusterInfo) (int, error) {
	written := 0
	for _, t := range s.templates(info) {
		body, hash, err := withHash(t.body)
		if err != nil {
			return written, err
		}
		version, oldHash, found, err := s.installedTemplate(ctx, t)
		if err != nil {
			return written, err
		}
		if found && (version > templateVersion || version == templateVersion && oldHash == hash) {
			continue // current, or newer than ours
		}
		raw, _ := json.Marshal(body)
		res, err := s.request(ctx, http.MethodPut, "/"+t.kind+"/"+t.name, "", raw)
		if err != nil {
			return written, fmt.Errorf("install %s %s: %w", strings.TrimPrefix(t.kind, "_"), t.name, err)
		}
		if res.status != http.StatusOK {
			return written, fmt.Errorf("install %s %s: %s", strings.TrimPrefix(t.kind, "_"), t.name, res.withReason())
		}
		written++
	}
	return written, nil
}

// installedTemplate reads the version and hash of an installed template.
func (s *Sink) installedTemplate(ctx context.Context, t template) (version int, hash string, found bool, err error) {
	res, err := s.request(ctx, http.MethodGet, "/"+t.kind+"/"+t.name, "", nil)
	if err != nil {
		return 0, "", false, fmt.Errorf("read %s %s: %w", strings.TrimPrefix(t.kind, "_"), t.name, err)
	}
	if res.status == http.StatusNotFound {
		return 0, "", false, nil
	}
	if res.status != http.StatusOK {
		return 0, "", false, fmt.Errorf("read %s %s: %s", strings.TrimPrefix(t.kind, "_"), t.name, res.withReason())
	}
	type installed struct {
		Version int `json:"version"`
		Meta    struct {
			Hash string `json:"leitstand_hash"`
		} `json:"_meta"`
	}
	var got struct {
		Components []struct {
			Template installed `json:"component_template"`
		} `json:"component_templates"`
		Indexes []struct {
			Template installed `json:"index_template"`
		} `json:"index_templates"`
	}
	if err := json.Unmarshal(res.body, &got); err != nil {
		return 0, "", false, fmt.Errorf("read %s %s: %w", strings.TrimPrefix(t.kind, "_"), t.name, err)
	}
	switch {
	case len(got.Components) > 0:
		return got.Components[0].Template.Version, got.Components[0].Template.Meta.Hash, true, nil
	case len(got.Indexes) > 0:
		return got.Indexes[0].Template.Version, got.Indexes[0].Template.Meta.Hash, true, nil
	}
	return 0, "", false, nil
}

// clusterInfo asks the node for its version and modules, then for the
// cluster's health. The integration-test distribution answers GET / with
// 405, so the version comes from the nodes info API; a user whose
// credentials may not read it (no "monitor" privilege) gets templates for
// a current cluster.
func (s *Sink) clusterInfo(ctx context.Context) (clusterInfo, error) {
	var info clusterInfo
	res, err := s.request(ctx, http.MethodGet, "/_nodes/_local", "filter_path=nodes.*.version,nodes.*.modules.name", nil)
	if err != nil {
		return info, err
	}
	switch res.status {
	case http.StatusOK:
		var nodes struct {
			Nodes map[string]struct {
				Version string `json:"version"`
				Modules []struct {
					Name string `json:"name"`
				} `json:"modules"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal(res.body, &nodes); err != nil {
			return info, fmt.Errorf("nodes info: %w", err)
		}
		for _, n := range nodes.Nodes {
			info.Version = n.Version
			for _, m := range n.Modules {
				if m.Name == "mapper-extras" {
					info.MatchOnlyText = true
				}
			}
		}
	case http.StatusUnauthorized:
		return info, fmt.Errorf("nodes info: %s (check username and password or the API key)", res.withReason())
	default:
		s.log.Warn("elasticsearch: cannot read the cluster's version; assuming a current 8.x cluster",
			"peer", res.peer, "status", res.status)
		info.MatchOnlyText = true
	}
	if info.Version != "" {
		parts := strings.SplitN(info.Version, ".", 3)
		info.Major, _ = strconv.Atoi(parts[0])
		if len(parts) > 1 {
			info.Minor, _ = strconv.Atoi(parts[1])
		}
	}

	res, err = s.request(ctx, http.MethodGet, "/_cluster/health", "filter_path=status", nil)
	if err != nil {
		return info, err
	}
	if res.status == http.StatusOK {
		var h struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(res.body, &h); err == nil {
			info.Health = h.Status
		}
	}
	return info, nil
}
