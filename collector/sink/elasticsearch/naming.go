package elasticsearch

import (
	"strings"
	"sync"
	"time"
)

// nameByte tells whether c may stand in a dataset or namespace as leitstand
// writes them. Elastic's rules forbid uppercase, '-' (it separates the parts
// of a data stream name), \ / * ? " < > | , # : and space; leitstand keeps to
// the safe subset so that every name is also a valid index name.
func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.'
}

// maxDatasetBytes is Elastic's limit for the dataset part of a name.
const maxDatasetBytes = 100

// appendDataset appends dataset as it may stand in a data stream or index
// name: lowercased, every other byte outside [a-z0-9_.] (a '-' too) turned
// into '_', cut at 100 bytes. "Nginx-Access" becomes "nginx_access". The
// event keeps its event.dataset unchanged; only the target name is cleaned.
func appendDataset(dst []byte, dataset string) []byte {
	if dataset == "" {
		return append(dst, "generic"...)
	}
	if len(dataset) > maxDatasetBytes {
		dataset = dataset[:maxDatasetBytes]
	}
	for i := 0; i < len(dataset); i++ {
		c := dataset[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case !nameByte(c):
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// targets builds and caches the write target of each dataset. Datasets come
// from senders, so the cache is bounded: past maxCachedTargets new names are
// built each time instead of remembered.
type targets struct {
	mode      string
	namespace string
	prefix    string

	mu    sync.RWMutex
	cache map[string]string
}

const maxCachedTargets = 10000

func newTargets(cfg *Config) *targets {
	return &targets{mode: cfg.Mode, namespace: cfg.Namespace, prefix: cfg.IndexPrefix, cache: map[string]string{}}
}

// dataStream returns logs-<dataset>-<namespace>.
func (t *targets) dataStream(dataset string) string {
	t.mu.RLock()
	name, ok := t.cache[dataset]
	t.mu.RUnlock()
	if ok {
		return name
	}
	b := make([]byte, 0, len("logs-")+len(dataset)+1+len(t.namespace))
	b = appendDataset(append(b, "logs-"...), dataset)
	b = append(append(b, '-'), t.namespace...)
	name = string(b)
	t.mu.Lock()
	if len(t.cache) < maxCachedTargets {
		t.cache[strings.Clone(dataset)] = name // the key outlives its batch
	}
	t.mu.Unlock()
	return name
}

// appendTarget appends the index or data stream an event of dataset with
// timestamp ts goes to. In index mode the date is the event's own (UTC), so
// an event sent again after a crash lands in the same index as before and
// its id still deduplicates it.
func (t *targets) appendTarget(dst []byte, dataset string, ts time.Time) []byte {
	if t.mode == ModeDataStream {
		return append(dst, t.dataStream(dataset)...)
	}
	dst = append(dst, t.prefix...)
	dst = append(dst, '-')
	dst = appendDataset(dst, dataset)
	dst = append(dst, '-')
	return appendDate(dst, ts)
}

// appendDate appends YYYY.MM.DD of ts in UTC.
func appendDate(dst []byte, ts time.Time) []byte {
	y, m, d := ts.UTC().Date()
	if y < 0 || y > 9999 {
		y = 0
	}
	return append(dst,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '.',
		byte('0'+int(m)/10), byte('0'+int(m)%10), '.',
		byte('0'+d/10), byte('0'+d%10))
}
