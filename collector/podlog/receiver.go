package podlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/collector/pipeline"
	"github.com/leitstand/leitstand/collector/telemetry"
)

// Submitter is the part of the pipeline the receiver needs;
// *pipeline.Pipeline implements it. Submit must return nil only once every
// sink accepted the batch: the receiver advances its read positions then,
// and only then.
type Submitter interface {
	Submit(ctx context.Context, b *collector.Batch, pol pipeline.Policy) error
}

// Dataset is event.dataset of container log events.
const Dataset = "kubernetes.container"

// Receiver tails the container logs of a node.
type Receiver struct {
	cfg     Config
	next    Submitter
	log     *slog.Logger
	c       *telemetry.Component
	m       *metrics
	node    string
	include selector
	exclude selector
	rules   []*multiline
	policy  pipeline.Policy

	slots chan struct{} // max_inflight_batches
	bufs  sync.Pool

	mu       sync.Mutex
	state    *stateStore
	kube     *kubeClient
	families map[string]*family
	byDir    map[string][]*family // container directory → its families
	watched  map[string]bool
	watchErr bool
	cutoff   time.Time // rotated files written after it are read even when new to the agent
	first    bool      // no positions at start
	initial  bool      // the first scan is running
	saveNow  chan struct{}

	watcher *dirWatcher
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
	stopped bool
}

// New builds the receiver from a validated config. It touches no file:
// Start opens the state directory and the roots.
func New(cfg Config, next Submitter, m *telemetry.Metrics, reg prometheus.Registerer, log *slog.Logger) (*Receiver, error) {
	cfg.Enabled = true
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Receiver{
		cfg:      cfg,
		next:     next,
		log:      log,
		c:        m.Component("podlog"),
		node:     cfg.resolveNodeName(),
		include:  newSelector(cfg.Include),
		exclude:  newSelector(cfg.Exclude),
		policy:   pipeline.Policy{WhenFull: pipeline.Block},
		slots:    make(chan struct{}, cfg.MaxInflightBatches),
		families: map[string]*family{},
		byDir:    map[string][]*family{},
		watched:  map[string]bool{},
		saveNow:  make(chan struct{}, 1),
	}
	if cfg.ExcludeSelf {
		if ns, pod := os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME"); ns != "" && pod != "" {
			r.exclude = append(r.exclude, ns+"/"+pod+"/*")
		}
	}
	for _, rule := range cfg.Multiline {
		re, err := regexp.Compile(rule.StartPattern)
		if err != nil {
			return nil, err // Validate caught it
		}
		r.rules = append(r.rules, &multiline{sel: newSelector([]string{rule.Match}), re: re,
			maxLines: rule.MaxLines, maxBytes: int(rule.MaxBytes), maxWait: rule.MaxWait})
	}
	size := int(cfg.ReadBufferBytes)
	r.bufs.New = func() any { b := make([]byte, size); return &b }
	r.m = newMetrics(reg, r)
	return r, nil
}

func (r *Receiver) stateStore() *stateStore {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// Start opens the state directory, lists the roots and starts following
// them. Work runs on a context of its own.
func (r *Receiver) Start(context.Context) error {
	r.mu.Lock()
	if r.started || r.stopped {
		r.mu.Unlock()
		return errors.New("podlog: already started")
	}
	r.started = true
	r.mu.Unlock()

	st, err := openState(r.cfg.StateDir, r.node)
	if st == nil {
		return fmt.Errorf("podlog: %w", err)
	}
	if err != nil {
		r.log.Error("podlog: read positions lost; starting over (lines may be sent again, under their old ids)", "err", err)
	}
	// Written at once, so that even a crash before the first checkpoint
	// leaves the time from which rotated files count as unread.
	if err := st.save(true); err != nil {
		return fmt.Errorf("podlog: writing the read positions: %w", err)
	}
	now := time.Now()
	r.mu.Lock()
	r.state = st
	r.first = st.previous.IsZero() && err == nil
	r.cutoff = st.previous
	if st.previous.IsZero() {
		r.cutoff = now
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.mu.Unlock()

	if r.cfg.Kubernetes.Labels {
		k, err := newKubeClient(r.cfg.Kubernetes, r.node, r.m, r.log)
		if err != nil {
			r.cancel()
			return fmt.Errorf("podlog: %w", err)
		}
		r.kube = k
		r.wg.Add(1)
		go func() { defer r.wg.Done(); k.run(r.ctx) }()
	}
	w, err := newDirWatcher()
	if err != nil {
		r.log.Warn("podlog: no directory notifications; new pods and rotations are found by polling", "err", err)
	} else {
		r.watcher = w
	}
	r.mu.Lock()
	r.initial = true
	r.mu.Unlock()
	r.scanRoots()
	r.mu.Lock()
	r.initial = false
	r.mu.Unlock()

	r.wg.Add(2)
	go func() { defer r.wg.Done(); r.discover() }()
	go func() { defer r.wg.Done(); r.checkpointer() }()
	r.log.Info("podlog: following container logs", "roots", r.cfg.Roots, "node", r.node,
		"state", filepath.Join(r.cfg.StateDir, positionsFile), "files_known", st.len(), "first_start", r.first)
	return nil
}

// Shutdown stops reading, waits for batches in the pipeline to be
// acknowledged (or ctx to end) and writes the positions. Safe without
// Start and when called twice.
func (r *Receiver) Shutdown(ctx context.Context) error {
	if !r.stop() {
		return nil
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("podlog: batches still waiting for the aggregator when the shutdown deadline passed: %w", ctx.Err())
	}
	if st := r.stateStore(); st != nil {
		if serr := st.save(true); serr != nil {
			err = errors.Join(err, fmt.Errorf("podlog: writing the read positions: %w", serr))
		}
		st.close()
	}
	if r.kube != nil {
		r.kube.close()
	}
	return err
}

// stop ends the work once; it reports whether there was work to end.
func (r *Receiver) stop() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return false
	}
	r.stopped = true
	if !r.started || r.cancel == nil {
		return false
	}
	r.cancel()
	if r.watcher != nil {
		r.watcher.close()
	}
	return true
}

// abandon stops like a crash: nothing more is written to the state
// directory, not even the positions acknowledged since the last
// checkpoint. For tests; wait() joins the goroutines afterwards.
func (r *Receiver) abandon() {
	if st := r.stateStore(); st != nil {
		st.close()
	}
	r.stop()
}

func (r *Receiver) wait() { r.wg.Wait() }

// acquire takes an in-flight batch slot.
func (r *Receiver) acquire(ctx context.Context) bool {
	select {
	case r.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *Receiver) release() { <-r.slots }

func (r *Receiver) getBuf() *[]byte  { return r.bufs.Get().(*[]byte) }
func (r *Receiver) putBuf(b *[]byte) { r.bufs.Put(b) }

// acked is called after a position advanced.
func (r *Receiver) acked() {
	if r.cfg.CheckpointInterval == 0 {
		select {
		case r.saveNow <- struct{}{}:
		default:
		}
	}
}

func (r *Receiver) checkpointer() {
	interval := r.cfg.CheckpointInterval
	if interval == 0 {
		interval = time.Hour // writes follow acknowledgements instead
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	failing := false
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-prune.C:
			r.state.prune(r.cfg.ForgetAfter, time.Now())
			continue
		case <-tick.C:
		case <-r.saveNow:
		}
		if err := r.state.save(false); err != nil {
			r.m.checkpointErrors.Inc()
			if !failing {
				r.log.Error("podlog: writing the read positions failed; retrying", "dir", r.cfg.StateDir, "err", err)
			}
			failing = true
			continue
		}
		if failing {
			r.log.Info("podlog: read positions written again", "dir", r.cfg.StateDir)
			failing = false
		}
		r.m.checkpointWrites.Inc()
	}
}

// discover follows the roots: notifications as they come, a full listing
// every rescan_interval for whatever they missed.
func (r *Receiver) discover() {
	tick := time.NewTicker(r.cfg.RescanInterval)
	defer tick.Stop()
	var events chan dirEvent
	if r.watcher != nil {
		events = r.watcher.events
	}
	for {
		select {
		case <-r.ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			r.handle(ev)
		case <-tick.C:
			r.scanRoots()
		}
	}
}

// handle routes one notification: a pod directory, a container directory
// or a log file came or went.
func (r *Receiver) handle(ev dirEvent) {
	if ev.overflow {
		r.log.Warn("podlog: directory notifications overflowed; listing the roots again")
		r.scanRoots()
		return
	}
	path := filepath.Join(ev.dir, ev.name)
	if ev.self {
		path = ev.dir
	}
	if !ev.created {
		r.mu.Lock()
		delete(r.watched, path) // a removed directory loses its watch
		r.mu.Unlock()
	}
	r.mu.Lock()
	fams := r.byDir[ev.dir]
	r.mu.Unlock()
	for _, f := range fams {
		f.notify(true)
	}
	// Which level changed: a root (pods), a pod directory (containers) or
	// a container directory (files)?
	for _, root := range r.cfg.Roots {
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		parts := strings.Split(rel, string(filepath.Separator))
		switch {
		case ev.created && len(parts) <= 3:
			r.scanPod(root, parts[0])
		case !ev.created && len(parts) <= 2:
			r.notifyUnder(path)
		}
		return
	}
}

// notifyUnder tells every family below dir to look at its files again.
func (r *Receiver) notifyUnder(dir string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for d, fams := range r.byDir {
		if d == dir || strings.HasPrefix(d, dir+string(filepath.Separator)) {
			for _, f := range fams {
				f.notify(true)
			}
		}
	}
}

// scanRoots lists every root. Each directory is watched before it is
// listed, so nothing created in between goes unnoticed.
func (r *Receiver) scanRoots() {
	for _, root := range r.cfg.Roots {
		r.watch(root)
		entries, err := os.ReadDir(root)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				r.log.Warn("podlog: listing a root failed", "root", root, "err", err)
			}
			continue
		}
		for _, e := range entries {
			if e.IsDir() {
				r.scanPod(root, e.Name())
			}
		}
	}
}

// scanPod lists one pod directory and starts a family for every live log
// file of an included container.
func (r *Receiver) scanPod(root, name string) {
	pd, ok := parsePodDir(name)
	if !ok {
		return
	}
	podPath := filepath.Join(root, name)
	r.watch(podPath)
	containers, err := os.ReadDir(podPath)
	if err != nil {
		return
	}
	for _, c := range containers {
		if !c.IsDir() {
			continue
		}
		if !r.include.match(pd.Namespace, pd.Pod, c.Name()) || r.exclude.match(pd.Namespace, pd.Pod, c.Name()) {
			continue
		}
		dir := filepath.Join(podPath, c.Name())
		r.watch(dir)
		files, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fe := range files {
			if ok, _ := path.Match(r.cfg.FileGlob, fe.Name()); ok && !fe.IsDir() {
				r.ensureFamily(name, pd, c.Name(), dir, fe.Name())
			}
		}
	}
}

func (r *Receiver) watch(dir string) {
	if r.watcher == nil {
		return
	}
	r.mu.Lock()
	if r.watched[dir] || r.stopped {
		r.mu.Unlock()
		return
	}
	r.watched[dir] = true
	r.mu.Unlock()
	if err := r.watcher.add(dir); err != nil {
		r.mu.Lock()
		delete(r.watched, dir)
		first := !r.watchErr
		r.watchErr = true
		r.mu.Unlock()
		if first && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("podlog: cannot watch a directory; it is polled instead (raise fs.inotify.max_user_watches?)", "dir", dir, "err", err)
		}
	}
}

// ensureFamily starts following a live log file if it is not followed yet.
func (r *Receiver) ensureFamily(podDirName string, pd podDir, container, dir, base string) {
	key := podDirName + "/" + container + "/" + base
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.families[key]; ok {
		f.notify(true)
		return
	}
	if r.stopped {
		return
	}
	f := &family{
		r: r, key: key, dir: dir, base: base, livePath: filepath.Join(dir, base),
		pod: pd, container: container, held: map[string][]*heldFile{},
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if r.initial && r.first && r.cfg.StartAt == StartEnd {
		if fi, err := os.Stat(f.livePath); err == nil {
			st := statInfo(f.livePath, fi)
			f.startAt = &st
		}
	}
	f.static = r.staticFields(f)
	f.labelsAt = sort.Search(len(f.static), func(i int) bool { return f.static[i].Key >= labelPrefix })
	for _, rule := range r.rules {
		if rule.sel.match(pd.Namespace, pd.Pod, container) {
			f.ml = rule
			break
		}
	}
	r.families[key] = f
	r.byDir[dir] = append(r.byDir[dir], f)
	r.wg.Add(1)
	go func() { defer r.wg.Done(); f.run(r.ctx) }()
}

// removeFamily forgets a family whose directory is gone and whose files
// were read to their end.
func (r *Receiver) removeFamily(f *family) {
	r.mu.Lock()
	delete(r.families, f.key)
	fams := r.byDir[f.dir]
	for i, g := range fams {
		if g == f {
			fams = append(fams[:i:i], fams[i+1:]...)
			break
		}
	}
	if len(fams) == 0 {
		delete(r.byDir, f.dir)
	} else {
		r.byDir[f.dir] = fams
	}
	r.mu.Unlock()
	r.state.forgetFamily(f.key)
	r.log.Debug("podlog: container logs removed and read to their end", "family", f.key)
}

// staticFields are the fields every event of a family carries.
func (r *Receiver) staticFields(f *family) []collector.Field {
	s := func(k, v string) collector.Field { return collector.Field{Key: k, Kind: collector.KindString, Str: v} }
	fields := []collector.Field{
		s(collector.FieldDataset, Dataset),
		s(collector.FieldReceiver, "podlog"),
		s(collector.FieldNamespace, f.pod.Namespace),
		s("kubernetes.pod.name", f.pod.Pod),
		s("kubernetes.pod.uid", f.pod.UID),
		s("kubernetes.container.name", f.container),
		s("log.file.path", f.livePath),
	}
	if n, ok := restartNumber(f.base); ok {
		fields = append(fields, collector.Field{Key: "kubernetes.container.restart_count", Kind: collector.KindNumber, Str: strconv.Itoa(n)})
	}
	if r.node != "" {
		fields = append(fields, s(collector.FieldHostName, r.node), s("kubernetes.node.name", r.node))
	}
	// In key order; every key sorts before the per-event log.flags,
	// log.iostream, log.offset and message.
	sort.Slice(fields, func(i, j int) bool { return fields[i].Key < fields[j].Key })
	return fields
}

// labelPrefix starts the keys of pod labels.
const labelPrefix = "kubernetes.labels."

var (
	_ collector.Component = (*Receiver)(nil)
	_ Submitter           = (*pipeline.Pipeline)(nil)
)
