package peers

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrExternal is returned by operations that need a node this package
// started (Kill, Restart) when the handle points at ELASTICSEARCH_URL.
var ErrExternal = errors.New("peers: Elasticsearch comes from ELASTICSEARCH_URL, not started here")

// ElasticsearchOptions configures StartElasticsearch.
type ElasticsearchOptions struct {
	// Settings are extra -E settings, e.g.
	// {"thread_pool.write.queue_size": "2"} to provoke 429 rejections.
	Settings map[string]string
	// Heap is the JVM heap (-Xms and -Xmx); default "512m".
	Heap string
	// StartTimeout bounds each start until the cluster is yellow;
	// default 120s.
	StartTimeout time.Duration
	// Private starts a node even when ELASTICSEARCH_URL is set: tests that
	// kill and restart Elasticsearch must not do that to a user's cluster.
	Private bool
}

// Elasticsearch is a single-node cluster started by StartElasticsearch,
// or the cluster named by ELASTICSEARCH_URL.
type Elasticsearch struct {
	*Instance // nil for an external cluster

	// URL is the HTTP endpoint, e.g. http://127.0.0.1:41234.
	URL string
	// HTTPPort and TransportPort are the node's ports (0 when external).
	HTTPPort, TransportPort int
	// Version is the distribution's version (empty when external).
	Version string
	// External is true when URL came from ELASTICSEARCH_URL.
	External bool

	opts ElasticsearchOptions
	spec procSpec
}

// esHome returns the unpacked distribution install.sh made (the cache's
// "elasticsearch" link, resolved, so the version shows in the path).
func esHome() (string, error) {
	home, err := filepath.EvalSymlinks(filepath.Join(CacheDir(), "elasticsearch"))
	if err != nil {
		return "", fmt.Errorf("elasticsearch not unpacked in %s: %w", CacheDir(), err)
	}
	if _, err := os.Stat(filepath.Join(home, okMarker)); err != nil {
		return "", fmt.Errorf("elasticsearch in %s is incomplete: %w", home, err)
	}
	return home, nil
}

// esJavaHome picks a JDK Elasticsearch 8 runs on (17 to 24): an explicit
// ES_JAVA_HOME or JAVA_HOME, the java in PATH, or one in /usr/lib/jvm. The
// machines also carry a newer JDK that 8.x does not support, hence the
// check of each candidate's version.
func esJavaHome() (string, error) {
	var candidates []string
	for _, env := range []string{"ES_JAVA_HOME", "JAVA_HOME"} {
		if v := os.Getenv(env); v != "" {
			candidates = append(candidates, v)
		}
	}
	if java, err := exec.LookPath("java"); err == nil {
		if real, err := filepath.EvalSymlinks(java); err == nil {
			candidates = append(candidates, filepath.Dir(filepath.Dir(real)))
		}
	}
	jvms, _ := filepath.Glob("/usr/lib/jvm/*")
	sort.Strings(jvms)
	candidates = append(candidates, jvms...)
	var seen []string
	for _, c := range candidates {
		major := javaMajor(c)
		seen = append(seen, fmt.Sprintf("%s (%d)", c, major))
		if major >= 17 && major <= 24 {
			return c, nil
		}
	}
	return "", fmt.Errorf("no JDK 17..24 for Elasticsearch 8 among %s", strings.Join(seen, ", "))
}

// javaMajor reads JAVA_VERSION from a JDK's release file; 0 if unknown.
func javaMajor(home string) int {
	f, err := os.Open(filepath.Join(home, "release"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "JAVA_VERSION=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		v = strings.TrimPrefix(v, "1.") // 1.8.0 style
		n, _ := strconv.Atoi(strings.FieldsFunc(v, func(r rune) bool { return r == '.' || r == '_' || r == '+' })[0])
		return n
	}
	return 0
}

// StartElasticsearch starts a single-node cluster on free loopback ports
// and waits until it is yellow. With ELASTICSEARCH_URL set (and
// opts.Private false) it starts nothing and returns that cluster.
//
// The integ-test distribution it runs has no x-pack features beyond core
// and security (security is switched off): _bulk, _search, _count,
// composable index templates and data streams created by indexing work;
// GET /, ILM and the _data_stream management API do not exist.
func StartElasticsearch(ctx context.Context, opts ElasticsearchOptions) (*Elasticsearch, error) {
	if url := os.Getenv("ELASTICSEARCH_URL"); url != "" && !opts.Private {
		return &Elasticsearch{URL: strings.TrimRight(url, "/"), External: true}, nil
	}
	if err := Ensure(ctx, PeerElasticsearch); err != nil {
		return nil, err
	}
	if opts.Heap == "" {
		opts.Heap = "512m"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 120 * time.Second
	}
	home, err := esHome()
	if err != nil {
		return nil, &UnavailableError{Peer: PeerElasticsearch, Err: err}
	}
	javaHome, err := esJavaHome()
	if err != nil {
		return nil, &UnavailableError{Peer: PeerElasticsearch, Err: err}
	}
	cred, err := runAs(esUser)
	if err != nil {
		return nil, &UnavailableError{Peer: PeerElasticsearch, Err: err}
	}

	in, err := newInstance("elasticsearch")
	if err != nil {
		return nil, err
	}
	es := &Elasticsearch{
		Instance: in,
		Version:  strings.TrimPrefix(filepath.Base(home), "elasticsearch-"),
		opts:     opts,
	}
	if es.HTTPPort, err = FreeTCPPort(); err != nil {
		return nil, in.stopAfter(err)
	}
	if es.TransportPort, err = FreeTCPPort(); err != nil {
		return nil, in.stopAfter(err)
	}
	es.URL = "http://" + hostPort(es.HTTPPort)

	// Each node gets its own copy of config/: Elasticsearch writes its
	// keystore there, and nodes of parallel test binaries must not share it.
	confDir := filepath.Join(in.Dir, "config")
	if err := copyTree(filepath.Join(home, "config"), confDir); err != nil {
		return nil, in.stopAfter(fmt.Errorf("elasticsearch: copy config: %w", err))
	}
	for _, sub := range []string{"data", "logs", "tmp"} {
		if err := os.Mkdir(filepath.Join(in.Dir, sub), 0o755); err != nil {
			return nil, in.stopAfter(err)
		}
	}
	if err := chownTree(in.Dir, cred); err != nil {
		return nil, in.stopAfter(fmt.Errorf("elasticsearch: chown %s: %w", in.Dir, err))
	}

	settings := map[string]string{
		"cluster.name":   "leitstand-test",
		"node.name":      "leitstand-test",
		"discovery.type": "single-node",
		"http.host":      "127.0.0.1",
		"http.port":      strconv.Itoa(es.HTTPPort),
		"transport.host": "127.0.0.1",
		"transport.port": strconv.Itoa(es.TransportPort),
		"path.data":      filepath.Join(in.Dir, "data"),
		"path.logs":      filepath.Join(in.Dir, "logs"),
		// The integ-test zip carries the security module, which would
		// turn on TLS and passwords; tests talk plain HTTP.
		"xpack.security.enabled": "false",
		// A full disk on a developer's machine must not turn test indices
		// read-only.
		"cluster.routing.allocation.disk.threshold_enabled": "false",
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var args []string
	for _, k := range keys {
		args = append(args, "-E", k+"="+settings[k])
	}

	// Run in the foreground as our child: we own its PID and process
	// group, instead of trusting a pid file written by a daemonized node.
	es.spec = procSpec{
		name: "elasticsearch",
		path: filepath.Join(home, "bin", "elasticsearch"),
		args: args,
		env: []string{
			"ES_JAVA_HOME=" + javaHome,
			// No perf data, neither for the server nor for the launcher
			// JVM: it would leave /tmp/hsperfdata_leitstand-es files
			// behind each SIGKILL.
			"ES_JAVA_OPTS=-Xms" + opts.Heap + " -Xmx" + opts.Heap + " -XX:-UsePerfData",
			"CLI_JAVA_OPTS=-XX:-UsePerfData",
			"ES_PATH_CONF=" + confDir,
			// Not the instance folder itself: Elasticsearch forbids its
			// temp folder to contain the config folder.
			"ES_TMPDIR=" + filepath.Join(in.Dir, "tmp"),
			"HOME=" + in.Dir,
		},
		dir:     in.Dir,
		logPath: filepath.Join(in.Dir, "elasticsearch.log"),
		cred:    cred,
	}
	proc, err := es.start(ctx)
	if err != nil {
		return nil, in.stopAfter(err)
	}
	in.add(proc)
	return es, nil
}

// start runs the node and waits until the cluster is at least yellow.
func (es *Elasticsearch) start(ctx context.Context) (*Process, error) {
	proc, err := startProcess(es.spec)
	if err != nil {
		return nil, err
	}
	health := es.URL + "/_cluster/health?wait_for_status=yellow&timeout=2s"
	err = waitReady(ctx, proc, es.opts.StartTimeout, "yellow cluster", func(ctx context.Context) error {
		body, err := httpGet(ctx, health)
		if err != nil {
			return err
		}
		var h struct {
			Status   string `json:"status"`
			TimedOut bool   `json:"timed_out"`
		}
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			return err
		}
		if h.TimedOut || h.Status == "red" {
			return fmt.Errorf("cluster status %s", h.Status)
		}
		return nil
	})
	if err != nil {
		_ = proc.Kill()
		return nil, err
	}
	return proc, nil
}

// Kill ends the node with SIGKILL, as a crash or an OOM kill would, and
// waits until it is gone. Its ports and data stay for Restart.
func (es *Elasticsearch) Kill() error {
	if es.External {
		return ErrExternal
	}
	return es.Process().Kill()
}

// Process returns the node's current process (it changes with Restart);
// nil for an external cluster.
func (es *Elasticsearch) Process() *Process {
	if es.External {
		return nil
	}
	return es.Instance.Process()
}

// Restart starts the node again on the same ports and data folder (after
// Kill, or killing it first if it still runs) and waits until it is
// yellow again.
func (es *Elasticsearch) Restart(ctx context.Context) error {
	if es.External {
		return ErrExternal
	}
	if err := es.Process().Kill(); err != nil {
		return err
	}
	proc, err := es.start(ctx)
	if err != nil {
		return err
	}
	es.replace(0, proc)
	return nil
}

// Stop stops the node and removes its folder; for an external cluster it
// does nothing.
func (es *Elasticsearch) Stop() error {
	if es == nil || es.External {
		return nil
	}
	return es.Instance.Stop()
}

// copyTree copies a folder of regular files and folders.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}
