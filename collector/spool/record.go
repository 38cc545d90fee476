package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strconv"
	"time"

	"github.com/leitstand/leitstand/collector"
)

// A record is one batch as it was accepted:
//
//	length  uint32   bytes of payload
//	crc     uint32   CRC-32C of payload
//	payload:
//	  seq        uint64   sequence number of the record, from 1, never reused
//	  appended   int64    Unix nanoseconds when the record was appended
//	  count      uvarint  events
//	  per event: timestamp varint (Unix ns), id, field count uvarint,
//	             per field: key, kind byte, value
//	             (strings are uvarint length + bytes)
//
// Events are stored field by field, not as JSON, so they come back exactly
// as they went in (kinds included) and decoding is a walk over the bytes.
const headerSize = 8

// maxRecord bounds a record's payload, so a corrupt length cannot make a
// reader allocate gigabytes.
const maxRecord = 256 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errCorrupt = errors.New("spool: corrupt record")

// appendRecord appends b's events as one record. Events without an ID get
// one from the spool's identity and their position, so a replay after a
// crash delivers them under the same id and sinks that deduplicate store
// them once.
func appendRecord(dst []byte, spoolID string, seq uint64, appended time.Time, b *collector.Batch) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerSize)...)
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(appended.UnixNano()))
	dst = binary.AppendUvarint(dst, uint64(len(b.Events)))
	for i := range b.Events {
		e := &b.Events[i]
		dst = binary.AppendVarint(dst, e.Timestamp.UnixNano())
		if e.ID != "" {
			dst = appendString(dst, e.ID)
		} else {
			dst = appendPositionID(dst, spoolID, seq, i)
		}
		dst = binary.AppendUvarint(dst, uint64(len(e.Fields)))
		for j := range e.Fields {
			f := &e.Fields[j]
			dst = appendString(dst, f.Key)
			dst = append(dst, byte(f.Kind))
			dst = appendString(dst, f.Str)
		}
	}
	payload := dst[start+headerSize:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, castagnoli))
	return dst
}

// appendPositionID appends "<spool id>-<seq>-<index>" as a length-prefixed
// string.
func appendPositionID(dst []byte, spoolID string, seq uint64, i int) []byte {
	var buf [64]byte
	id := append(buf[:0], spoolID...)
	id = append(id, '-')
	id = strconv.AppendUint(id, seq, 10)
	id = append(id, '-')
	id = strconv.AppendInt(id, int64(i), 10)
	dst = binary.AppendUvarint(dst, uint64(len(id)))
	return append(dst, id...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// recordHeader reads a record's header; ok is false if the header or the
// length is impossible.
func recordHeader(p []byte) (length int, crc uint32, ok bool) {
	if len(p) < headerSize {
		return 0, 0, false
	}
	n := binary.LittleEndian.Uint32(p)
	if n < 17 || n > maxRecord {
		return 0, 0, false
	}
	return int(n), binary.LittleEndian.Uint32(p[4:]), true
}

// payloadMeta reads seq and append time from a payload.
func payloadMeta(p []byte) (seq uint64, appended time.Time) {
	return binary.LittleEndian.Uint64(p), time.Unix(0, int64(binary.LittleEndian.Uint64(p[8:])))
}

// decodeEvents appends the payload's events to b. Their strings point into
// payload, which the caller must keep alive with the batch.
func decodeEvents(payload []byte, b *collector.Batch) error {
	r := reader{p: payload[16:]}
	count := r.uvarint()
	if r.err != nil || count > uint64(len(payload)) {
		return errCorrupt
	}
	for n := uint64(0); n < count; n++ {
		e := b.Next()
		e.Timestamp = time.Unix(0, r.varint())
		e.ID = r.str()
		fields := r.uvarint()
		if fields > uint64(len(payload)) {
			return errCorrupt
		}
		for k := uint64(0); k < fields && r.err == nil; k++ {
			key := r.str()
			kind := collector.Kind(r.byte())
			e.Add(key, kind, r.str())
		}
		if r.err != nil {
			b.Drop()
			return errCorrupt
		}
	}
	return nil
}

// reader walks a payload; the first error sticks.
type reader struct {
	p   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.p)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.p = r.p[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.p)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.p = r.p[n:]
	return v
}

func (r *reader) byte() byte {
	if len(r.p) == 0 {
		r.err = errCorrupt
		return 0
	}
	c := r.p[0]
	r.p = r.p[1:]
	return c
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.p)) {
		r.err = errCorrupt
		return ""
	}
	s := r.p[:n]
	r.p = r.p[n:]
	if n == 0 {
		return ""
	}
	return unsafeString(s)
}
