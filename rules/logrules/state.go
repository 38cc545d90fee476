package logrules

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// stateFile is the file under state_dir that holds every rule's state.
const stateFile = "logrules-state.json"

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
	snap := &ruleSnapshot{}
	for k, se := range s.series {
		snap.Series = append(snap.Series, seriesSnapshot{Key: []byte(k), Labels: se.labels.Map(), Count: se.count, Last: se.last})
	}
	for k, a := range s.alerts {
		snap.Alerts = append(snap.Alerts, alertSnapshot{Key: []byte(k), Labels: a.labels.Map(), Annotations: a.annotations.Map(),
			ActiveAt: a.activeAt, LastMatch: a.lastMatch, LastSent: a.lastSent, Count: a.count})
	}
	for k, t := range s.seen {
		snap.Seen = append(snap.Seen, seenSnapshot{Key: []byte(k), At: t})
	}
	return snap
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
		s.series[string(se.Key)] = &series{labels: labels.FromMap(se.Labels), count: se.Count, last: last, appended: true}
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
	if err := os.MkdirAll(e.cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("log rules: state: %w", err)
	}
	path := filepath.Join(e.cfg.StateDir, stateFile)
	tmp, err := os.CreateTemp(e.cfg.StateDir, stateFile+".*")
	if err != nil {
		return fmt.Errorf("log rules: state: %w", err)
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
		return fmt.Errorf("log rules: state: %w", werr)
	}
	return nil
}

// restoreState reads the state file and hands each rule its part; state of
// rules not loaded yet waits for them in e.restored.
func (e *Engine) restoreState() error {
	data, err := os.ReadFile(filepath.Join(e.cfg.StateDir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var doc stateDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", stateFile, err)
	}
	if doc.Version != stateVersion {
		return fmt.Errorf("%s: version %d, want %d", stateFile, doc.Version, stateVersion)
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
