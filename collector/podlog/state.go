package podlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"
)

// The positions file:
//
//	leitstand-podlog-positions 1 <crc32c of the body, 8 hex digits> <body bytes>\n
//	<body: one JSON document>
//
// It is replaced atomically (a temporary file, fsync, rename, fsync of the
// directory), so a crash leaves the old or the new version, never a mix;
// the checksum catches what the file system did not.
const (
	positionsFile  = "positions.json"
	positionsMagic = "leitstand-podlog-positions"
	positionsVer   = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is the read position of one file, known by its content (see
// fileID). Offset is always the start of a line: the first byte not yet
// acknowledged by the aggregator.
type record struct {
	ID string `json:"id"`
	// Family is "<pod dir>/<container>/<live file name>".
	Family string `json:"family"`
	// Path is where the file was last seen, for people reading the file.
	Path string `json:"path"`
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
	// Offset and Cursor: where reading resumes (see cursor).
	Offset int64 `json:"offset"`
	Win    int64 `json:"win"`
	Cnt    int32 `json:"cnt"`
	// Finished: read to its end, rotated away or deleted; never read again.
	Finished bool `json:"finished,omitempty"`
	// Seen is when a file with this content was last found on disk.
	Seen time.Time `json:"seen"`
}

func (r *record) cursor() cursor { return cursor{off: r.Offset, win: r.Win, cnt: r.Cnt} }

func (r *record) setCursor(c cursor) { r.Offset, r.Win, r.Cnt = c.off, c.win, c.cnt }

type positions struct {
	Saved time.Time `json:"saved"`
	Node  string    `json:"node"`
	Files []record  `json:"files"`
}

// stateStore holds every record and writes them to the state directory.
type stateStore struct {
	dir  string
	node string

	mu    sync.Mutex
	recs  map[string]*record
	dirty bool
	// previous is when the positions found at start were saved, or zero
	// when there were none: files rotated after it were written while the
	// agent was away.
	previous time.Time
	lastSave time.Time // of this process, for checkpoint age
	closed   bool      // no more writes: shut down, or abandoned
}

// openState loads the positions in dir, creating dir. A missing file is
// a first start; a corrupt one is moved aside and reported, and the
// receiver starts over as on a first start.
func openState(dir, node string) (*stateStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	s := &stateStore{dir: dir, node: node, recs: map[string]*record{}, lastSave: time.Now()}
	data, err := os.ReadFile(filepath.Join(dir, positionsFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	p, err := decodePositions(data)
	if err != nil {
		aside := filepath.Join(dir, positionsFile+".corrupt-"+strconv.FormatInt(time.Now().Unix(), 10))
		if rerr := os.Rename(filepath.Join(dir, positionsFile), aside); rerr != nil {
			return nil, fmt.Errorf("state_dir: %w, and moving it aside failed: %v", err, rerr)
		}
		return s, fmt.Errorf("%w (moved to %s; starting over)", err, aside)
	}
	for i := range p.Files {
		r := p.Files[i]
		s.recs[r.ID] = &r
	}
	s.previous = p.Saved
	return s, nil
}

var errCorruptPositions = errors.New("podlog: positions file is corrupt")

func decodePositions(data []byte) (*positions, error) {
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return nil, errCorruptPositions
	}
	var magic string
	var ver int
	var sum uint32
	var n int
	if _, err := fmt.Sscanf(string(data[:nl]), "%s %d %x %d", &magic, &ver, &sum, &n); err != nil || magic != positionsMagic {
		return nil, errCorruptPositions
	}
	if ver != positionsVer {
		return nil, fmt.Errorf("podlog: positions file version %d is not supported", ver)
	}
	body := data[nl+1:]
	if len(body) != n || crc32.Checksum(body, castagnoli) != sum {
		return nil, errCorruptPositions
	}
	var p positions
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorruptPositions, err)
	}
	return &p, nil
}

func encodePositions(p *positions) ([]byte, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	head := fmt.Sprintf("%s %d %08x %d\n", positionsMagic, positionsVer, crc32.Checksum(body, castagnoli), len(body))
	return append([]byte(head), body...), nil
}

// get returns the record of a file's content, or nil.
func (s *stateStore) get(id string) *record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recs[id]
}

// update changes a record under the lock and marks the state dirty.
func (s *stateStore) update(r *record, f func(r *record)) {
	s.mu.Lock()
	f(r)
	s.dirty = true
	s.mu.Unlock()
}

// add stores a new record (or returns the one already there).
func (s *stateStore) add(r *record) *record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.recs[r.ID]; ok {
		return old
	}
	s.recs[r.ID] = r
	s.dirty = true
	return r
}

// forgetFamily drops the records of a family whose files are gone.
func (s *stateStore) forgetFamily(family string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.recs {
		if r.Family == family {
			delete(s.recs, id)
			s.dirty = true
		}
	}
}

// prune drops records not seen for longer than age.
func (s *stateStore) prune(age time.Duration, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range s.recs {
		if now.Sub(r.Seen) > age {
			delete(s.recs, id)
			s.dirty = true
		}
	}
}

// save writes the records if they changed (or force). It is a no-op once
// the store is closed.
func (s *stateStore) save(force bool) error {
	s.mu.Lock()
	if s.closed || (!s.dirty && !force) {
		s.mu.Unlock()
		return nil
	}
	p := positions{Saved: time.Now().UTC(), Node: s.node, Files: make([]record, 0, len(s.recs))}
	for _, r := range s.recs {
		p.Files = append(p.Files, *r)
	}
	s.dirty = false
	s.mu.Unlock()
	sort.Slice(p.Files, func(i, j int) bool { return p.Files[i].ID < p.Files[j].ID })
	data, err := encodePositions(&p)
	if err == nil {
		err = s.write(data)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.dirty = true
		return err
	}
	s.lastSave = time.Now()
	return nil
}

// write replaces the positions file atomically.
func (s *stateStore) write(data []byte) error {
	final := filepath.Join(s.dir, positionsFile)
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Writes racing a close (abandoned store) must not land: check again
	// right before the rename, under the lock.
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return os.Remove(tmp)
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// close stops all further writes.
func (s *stateStore) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// age is the time since the positions were last written.
func (s *stateStore) age() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Since(s.lastSave)
}

func (s *stateStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs)
}
