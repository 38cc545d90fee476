package logrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// stateFile is the file under state_dir that holds every rule's state.
const stateFile = "logrules-state.json"

// countsFile holds the record series' counts as last appended to the
// TSDB, written by every Tick before its commit. The state file is written
// every state_interval only; after a crash its counts can be lower than
// the samples in the TSDB, and a counter that goes down is a reset to
// PromQL: increase() would count the whole counter again and alert on a
// burst that never happened. Counts restored from this file are never
// lower than what the TSDB holds.
const countsFile = "logrules-counts.json"

// ruleSnapshot is the persisted state of one rule, keyed by Rule.ID. Group
// keys are field values joined, which may be any bytes: they are stored as
// []byte (base64 in JSON) so that invalid UTF-8 survives the round trip.
type ruleSnapshot struct {
	Series []seriesSnapshot `json:"series,omitempty"`
	Alerts []alertSnapshot  `json:"alerts,omitempty"`
	Seen   []seenSnapshot   `json:"seen,omitempty"`
	// Unloaded is when the rule left the loaded set (zero while loaded);
	// its state is dropped idle_timeout after it.
	Unloaded time.Time `json:"unloaded,omitzero"`
}

type seenSnapshot struct {
	Key []byte    `json:"key"`
	At  time.Time `json:"at"`
}

type seriesSnapshot struct {
	Key    []byte            `json:"key"`
	Labels map[string]string `json:"labels"`
	Count  float64           `json:"count"`
	// Created is the time of the series' first match: a series dropped as
	// idle and started again is another series with the same key.
	Created time.Time `json:"created,omitzero"`
	// Last is the time of the latest match (absent in files of earlier
	// versions: the restore time counts instead).
	Last time.Time `json:"last,omitzero"`
}

type alertSnapshot struct {
	Key         []byte            `json:"key"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	ActiveAt    time.Time         `json:"active_at"`
	LastMatch   time.Time         `json:"last_match"`
	LastSent    time.Time         `json:"last_sent"`
	Count       float64           `json:"count"`
}

const stateVersion = 1

type stateDoc struct {
	Version int                      `json:"version"`
	Rules   map[string]*ruleSnapshot `json:"rules"`
}

func (s *ruleState) snapshot() *ruleSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := &ruleSnapshot{Series: s.seriesSnapshots()}
	for k, a := range s.alerts {
		snap.Alerts = append(snap.Alerts, alertSnapshot{Key: []byte(k), Labels: a.labels.Map(), Annotations: a.annotations.Map(),
			ActiveAt: a.activeAt, LastMatch: a.lastMatch, LastSent: a.lastSent, Count: a.count})
	}
	for k, t := range s.seen {
		snap.Seen = append(snap.Seen, seenSnapshot{Key: []byte(k), At: t})
	}
	return snap
}

// seriesSnapshots returns the record series. Called with s.mu held.
func (s *ruleState) seriesSnapshots() []seriesSnapshot {
	out := make([]seriesSnapshot, 0, len(s.series))
	for k, se := range s.series {
		out = append(out, seriesSnapshot{Key: []byte(k), Labels: se.labels.Map(), Count: se.count, Created: se.created, Last: se.last})
	}
	// Sorted, so that unchanged counts make an unchanged file.
	slices.SortFunc(out, func(a, b seriesSnapshot) int { return bytes.Compare(a.Key, b.Key) })
	return out
}

func (s *ruleState) restore(snap *ruleSnapshot, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, se := range snap.Series {
		last := se.Last
		if last.IsZero() {
			last = now
		}
		// Restored series were appended in an earlier run: no zero sample.
		s.series[string(se.Key)] = &series{labels: labels.FromMap(se.Labels), count: se.Count, created: se.Created, last: last, appended: true}
	}
	for _, a := range snap.Alerts {
		s.alerts[string(a.Key)] = &alertState{labels: labels.FromMap(a.Labels), annotations: labels.FromMap(a.Annotations),
			activeAt: a.ActiveAt, lastMatch: a.LastMatch, lastSent: a.LastSent, count: a.Count}
	}
	for _, v := range snap.Seen {
		s.seen[string(v.Key)] = v.At
	}
}

// SaveState writes the state of every loaded rule to state_dir, atomically
// (temporary file, fsync, rename).
func (e *Engine) SaveState() error {
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	doc := stateDoc{Version: stateVersion, Rules: map[string]*ruleSnapshot{}}
	now := e.now()
	dropped := 0
	for id, snap := range e.restored { // state of rules not loaded now is kept for a while
		if now.Sub(snap.Unloaded) >= time.Duration(e.cfg.IdleTimeout) {
			delete(e.restored, id)
			dropped++
			continue
		}
		doc.Rules[id] = snap
	}
	if dropped > 0 {
		e.m.expired.WithLabelValues("rule_state").Add(float64(dropped))
	}
	for _, s := range e.set.Load().rules {
		doc.Rules[s.rule.ID()] = s.snapshot()
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	if err := writeAtomic(e.cfg.StateDir, stateFile, data); err != nil {
		return fmt.Errorf("log rules: state: %w", err)
	}
	return nil
}

// countsDoc is the content of countsFile: rule ID → series.
type countsDoc struct {
	Version int                         `json:"version"`
	Rules   map[string][]seriesSnapshot `json:"rules"`
}

// saveCounts writes the counts about to be committed to the TSDB. A
// failure is logged, not fatal: the samples are still appended, and the
// state file is the fallback.
func (e *Engine) saveCounts(counts map[string][]seriesSnapshot) {
	e.countsMu.Lock()
	defer e.countsMu.Unlock()
	if len(counts) == 0 && e.countsLast == nil {
		return
	}
	data, err := json.Marshal(countsDoc{Version: stateVersion, Rules: counts})
	if err == nil && bytes.Equal(data, e.countsLast) {
		return // nothing matched since: no write, no fsync
	}
	if err == nil {
		err = writeAtomic(e.cfg.StateDir, countsFile, data)
	}
	if err != nil {
		e.countsLast = nil
		e.log.Warn("log rules: series counts not saved", "err", err)
		return
	}
	e.countsLast = data
}

// writeAtomic writes dir/name through a temporary file, fsync and rename.
func writeAtomic(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, name+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return werr
	}
	return nil
}

// mergeCounts brings the counts of countsFile into the snapshots: per
// series the later incarnation (created), and of the same one the higher
// count, since counts only grow. Either file may be the newer one: the
// counts file after a crash, the state file after a clean shutdown.
func mergeCounts(dir string, snaps map[string]*ruleSnapshot) error {
	data, err := os.ReadFile(filepath.Join(dir, countsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var doc countsDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", countsFile, err)
	}
	if doc.Version != stateVersion {
		return fmt.Errorf("%s: version %d, want %d", countsFile, doc.Version, stateVersion)
	}
	for id, series := range doc.Rules {
		snap := snaps[id]
		if snap == nil {
			snap = &ruleSnapshot{}
			snaps[id] = snap
		}
		at := map[string]int{}
		for i, se := range snap.Series {
			at[string(se.Key)] = i
		}
		for _, se := range series {
			i, ok := at[string(se.Key)]
			if !ok {
				snap.Series = append(snap.Series, se)
				continue
			}
			have := &snap.Series[i]
			if se.Created.After(have.Created) || se.Created.Equal(have.Created) && se.Count > have.Count {
				*have = se
			}
		}
	}
	return nil
}

// restoreState reads the state file and hands each rule its part; state of
// rules not loaded yet waits for them in e.restored.
func (e *Engine) restoreState() error {
	doc := stateDoc{Version: stateVersion}
	data, err := os.ReadFile(filepath.Join(e.cfg.StateDir, stateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A crash before the first save: the counts file may still be there.
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("%s: %w", stateFile, err)
		}
		if doc.Version != stateVersion {
			return fmt.Errorf("%s: version %d, want %d", stateFile, doc.Version, stateVersion)
		}
	}
	if doc.Rules == nil {
		doc.Rules = map[string]*ruleSnapshot{}
	}
	if err := mergeCounts(e.cfg.StateDir, doc.Rules); err != nil {
		e.log.Warn("log rules: series counts not restored", "err", err)
	}
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	now := e.now()
	for id, snap := range doc.Rules {
		if snap == nil {
			delete(doc.Rules, id)
		}
	}
	for _, s := range e.set.Load().rules {
		if snap := doc.Rules[s.rule.ID()]; snap != nil {
			s.restore(snap, now)
			delete(doc.Rules, s.rule.ID())
		}
	}
	// What no loaded rule claimed belongs to rules that are gone (or not
	// loaded yet): it counts as unloaded from now, unless it already was.
	for id, snap := range doc.Rules {
		if snap.Unloaded.IsZero() {
			snap.Unloaded = now
		}
		if e.restored == nil {
			e.restored = map[string]*ruleSnapshot{}
		}
		e.restored[id] = snap
	}
	return nil
}
