package sentry

import (
	"bufio"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// bodyError is a body we refuse, with its status (400, 413, 415).
type bodyError struct {
	status int
	reason string
}

func (e *bodyError) Error() string { return e.reason }

// decoders pools decompressors; each holds buffers worth keeping.
type decoders struct {
	maxDecompressed int64
	gzips           sync.Pool
	zstds           sync.Pool
	brs             sync.Pool
	bufs            sync.Pool // *bufio.Reader, for deflate's peek
}

// errInflight: the body grew past the in-flight room that could be had.
var errInflight = errors.New("no in-flight room")

// readBody reads r's body, decompressed, into buf: at most maxBody bytes
// from the wire and at most maxDecompressed bytes after decompression.
// grow is asked for room before the body grows past what it has granted.
func (d *decoders) readBody(r *http.Request, maxBody int64, buf *[]byte, grow func(int64) bool) error {
	if r.ContentLength > maxBody {
		return &bodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is over the limit of %d bytes", r.ContentLength, maxBody)}
	}
	body := http.MaxBytesReader(nil, r.Body, maxBody)
	var src io.Reader = body
	encoding := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch encoding {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := d.gzip(body)
		if err != nil {
			return d.readError(err, encoding)
		}
		defer d.gzips.Put(zr)
		src = zr
	case "deflate":
		// HTTP's deflate is zlib-wrapped, but some clients send raw
		// deflate: a zlib header is two bytes whose big-endian value is a
		// multiple of 31 with method 8.
		br := d.bufReader(body)
		defer d.bufs.Put(br)
		head, _ := br.Peek(2)
		if len(head) == 2 && head[0]&0x0f == 8 && (uint16(head[0])<<8|uint16(head[1]))%31 == 0 {
			zr, err := zlib.NewReader(br)
			if err != nil {
				return d.readError(err, encoding)
			}
			defer zr.Close()
			src = zr
		} else {
			fr := flate.NewReader(br)
			defer fr.Close()
			src = fr
		}
	case "br":
		zr := d.brotli(body)
		defer func() { _ = zr.Reset(nil); d.brs.Put(zr) }()
		src = zr
	case "zstd":
		zr, err := d.zstd(body)
		if err != nil {
			return d.readError(err, encoding)
		}
		defer func() { _ = zr.Reset(nil); d.zstds.Put(zr) }()
		src = zr
	default:
		return &bodyError{http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q is not supported; use gzip, deflate, br, zstd or none", encoding)}
	}
	// Read one byte past the limit to tell "exactly at" from "over", and
	// stop there: a bomb is never unpacked further.
	n, err := readAll(buf, io.LimitReader(src, d.maxDecompressed+1), grow)
	if err == errInflight {
		return err
	}
	if err != nil {
		return d.readError(err, encoding)
	}
	if n > d.maxDecompressed {
		return &bodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("decompressed body is over the limit of %d bytes", d.maxDecompressed)}
	}
	return nil
}

func (d *decoders) readError(err error, encoding string) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &bodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body is over the limit of %d bytes", tooLarge.Limit)}
	}
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrFrameSizeExceeded) {
		// zstd states sizes up front: the frame asks for more than the limit
		return &bodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("decompressed body is over the limit of %d bytes (zstd: %v)", d.maxDecompressed, err)}
	}
	if encoding != "" && encoding != "identity" {
		return &bodyError{http.StatusBadRequest, fmt.Sprintf("body is not valid %s: %v", encoding, err)}
	}
	return &bodyError{http.StatusBadRequest, fmt.Sprintf("reading the body: %v", err)}
}

// readChunk is the most readAll reads at once, so its reservation follows
// the body closely.
const readChunk = 64 << 10

func readAll(buf *[]byte, r io.Reader, grow func(int64) bool) (int64, error) {
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		end := min(cap(b), len(b)+readChunk)
		if !grow(int64(end)) {
			*buf = b
			return int64(len(b)), errInflight
		}
		n, err := r.Read(b[len(b):end])
		b = b[:len(b)+n]
		if err == io.EOF {
			*buf = b
			return int64(len(b)), nil
		}
		if err != nil {
			*buf = b
			return int64(len(b)), err
		}
	}
}

func (d *decoders) gzip(r io.Reader) (*gzip.Reader, error) {
	if zr, ok := d.gzips.Get().(*gzip.Reader); ok {
		return zr, zr.Reset(r)
	}
	return gzip.NewReader(r)
}

func (d *decoders) zstd(r io.Reader) (*zstd.Decoder, error) {
	if zr, ok := d.zstds.Get().(*zstd.Decoder); ok {
		return zr, zr.Reset(r)
	}
	// One goroutine per decoder and a bounded window, so a hostile frame
	// cannot ask for gigabytes.
	return zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(d.maxDecompressed)+1),
		zstd.WithDecoderMaxWindow(8<<20))
}

func (d *decoders) brotli(r io.Reader) *brotli.Reader {
	if zr, ok := d.brs.Get().(*brotli.Reader); ok {
		_ = zr.Reset(r)
		return zr
	}
	return brotli.NewReader(r)
}

func (d *decoders) bufReader(r io.Reader) *bufio.Reader {
	if br, ok := d.bufs.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, 4096)
}
