package podlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
)

// fingerprintBytes is how much of a file's start identifies its content:
// its first line, up to this many bytes. Container runtimes start every
// line with a timestamp in nanoseconds, so first lines do not repeat.
const fingerprintBytes = 1024

// source is a log file's content, read by offset: the file itself, or a
// rotated file the kubelet compressed.
type source interface {
	ReadAt(p []byte, off int64) (int, error)
	Close() error
}

// fileInfo is what a scan found out about a file.
type fileInfo struct {
	path  string
	gz    bool
	dev   uint64
	ino   uint64
	size  int64 // on disk (compressed size for .gz)
	mtime time.Time
	nlink uint64
}

func statInfo(path string, fi os.FileInfo) fileInfo {
	info := fileInfo{path: path, gz: strings.HasSuffix(path, ".gz"), size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.dev, info.ino, info.nlink = uint64(st.Dev), uint64(st.Ino), uint64(st.Nlink)
	}
	return info
}

// openSource opens path for reading; a .gz file is decompressed.
func openSource(path string, gz bool) (source, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	if !gz {
		return f, f, nil
	}
	return &gzSource{f: f}, f, nil
}

// fileID names a file's content: the family and the first line (up to
// fingerprintBytes). A renamed, copied or compressed file keeps its id; a
// new file in a reused inode, or the new content of a truncated file, gets
// another. ok is false while the file has no complete first line yet.
func fileID(family string, src source) (id string, ok bool, err error) {
	var buf [fingerprintBytes]byte
	n, err := src.ReadAt(buf[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", false, err
	}
	fp := buf[:n]
	if i := bytes.IndexByte(fp, '\n'); i >= 0 {
		fp = fp[:i+1]
	} else if n < fingerprintBytes {
		return "", false, nil
	}
	return idOf(family, fp), true, nil
}

func idOf(family string, fp []byte) string {
	h := sha256.New()
	h.Write([]byte(family))
	h.Write([]byte{0})
	h.Write(fp)
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:8])
}

// gzSource reads a gzip file by offset into its decompressed content. The
// stream only goes forward, so it keeps the bytes of the last read: the
// receiver reads forward, and re-reads at most the unfinished line at the
// end of a read. An offset before those bytes starts the stream over.
type gzSource struct {
	f   *os.File
	zr  *gzip.Reader
	pos int64  // decompressed offset of the next byte of zr
	win []byte // the bytes just before pos
	eof bool
}

func (g *gzSource) ReadAt(p []byte, off int64) (int, error) {
	winStart := g.pos - int64(len(g.win))
	if g.zr == nil || off < winStart {
		if err := g.reset(); err != nil {
			return 0, err
		}
		winStart = 0
	}
	// Keep the bytes from off on, then read until p can be filled.
	if off > winStart {
		drop := min(off-winStart, int64(len(g.win)))
		g.win = g.win[:copy(g.win, g.win[drop:])]
	}
	// Skip forward to off when it lies beyond what is held.
	for g.pos < off && !g.eof {
		skip := min(off-g.pos, 1<<20)
		n, err := io.CopyN(io.Discard, g.zr, skip)
		g.pos += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				g.eof = true
				break
			}
			return 0, err
		}
	}
	if g.pos < off {
		return 0, io.EOF
	}
	if cap(g.win) < len(p) {
		w := make([]byte, len(g.win), len(p))
		copy(w, g.win)
		g.win = w
	}
	for len(g.win) < len(p) && !g.eof {
		n, err := g.zr.Read(g.win[len(g.win):len(p)])
		g.win = g.win[:len(g.win)+n]
		g.pos += int64(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				g.eof = true
				break
			}
			return 0, err
		}
	}
	n := copy(p, g.win)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (g *gzSource) reset() error {
	if _, err := g.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if g.zr == nil {
		zr, err := gzip.NewReader(g.f)
		if err != nil {
			return err
		}
		g.zr = zr
	} else if err := g.zr.Reset(g.f); err != nil {
		return err
	}
	g.pos, g.win, g.eof = 0, g.win[:0], false
	return nil
}

func (g *gzSource) Close() error { return g.f.Close() }
