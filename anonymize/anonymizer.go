// Package anonymize owns leitstand's anonymizer: the value detectors
// (e-mail and IP addresses, cards, IBANs, phone numbers, tokens, keys, …),
// the key rules that replace whatever a secret-named key holds, the
// per-dataset field rules, the methods (mask, keyed hash, truncate, drop,
// replace) and the scrub report every event carries.
//
// Every event passes here before it touches a disk, a sink, the spool or
// the daemon's own logs. The package knows the Event model and nothing of
// receivers or sinks; it keeps no event data past a call.
package anonymize

import (
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leitstand/leitstand/collector"
	"github.com/leitstand/leitstand/internal/config"
)

// Anonymizer scrubs personal data from events. It is safe for concurrent
// use: it is immutable after New, and per-call state comes from a pool.
type Anonymizer struct {
	key    []byte
	keyID  string
	v4bits int
	v6bits int

	on  [numDetectors]bool
	det [numDetectors]action
	// secretField and userField are the secret and user detectors' actions
	// for whole fields and JSON members named like a secret or a user.
	secretField, userField action

	keys  *keyTable
	rules *ruleSet
	skip  globSet

	// types are the names of everything counted: the detectors, then the
	// rule types. countKeys are their scrub count fields.
	types     []string
	countKeys []string
	// tags are the pseudonym prefixes, for recognising pseudonyms.
	tags map[string]bool
	// replacements are configured replace texts, left alone when met again.
	replacements map[string]bool

	pool    sync.Pool
	metrics *metrics
}

// New builds an anonymizer from a validated config. The hash key comes from
// cfg.HashKeyFile or, when that is empty, from <dataDir>/anonymize.key,
// generated on first use. reg, when not nil, receives the metrics.
func New(cfg Config, dataDir string, reg prometheus.Registerer) (*Anonymizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	key, err := loadKey(&cfg, dataDir)
	if err != nil {
		return nil, err
	}
	a := &Anonymizer{
		key:          key,
		keyID:        cfg.HashKeyID,
		v4bits:       cfg.IPv4Prefix,
		v6bits:       cfg.IPv6Prefix,
		keys:         newKeyTable(cfg.SecretKeys, cfg.UserKeys),
		skip:         newGlobSet(cfg.SkipFields),
		tags:         map[string]bool{},
		replacements: map[string]bool{DefaultReplacement: true},
	}
	if a.keyID == "" {
		a.keyID = deriveKeyID(key)
	}
	typeIndex := map[string]int{}
	typeOf := func(name string) int {
		if i, ok := typeIndex[name]; ok {
			return i
		}
		typeIndex[name] = len(a.types)
		a.types = append(a.types, name)
		a.countKeys = append(a.countKeys, "leitstand.scrub."+name)
		return len(a.types) - 1
	}
	newAction := func(m Method, tag, repl, countAs string) action {
		if repl == "" {
			repl = DefaultReplacement
		}
		a.tags[tag] = true
		a.replacements[repl] = true
		return action{method: parseMethod(m), mask: "[" + tag + "]", repl: repl, tag: tag, count: typeOf(countAs)}
	}
	for id, d := range cfg.Detectors.list() {
		a.on[id] = d.Enabled
		a.det[id] = newAction(d.Method, detectorTags[id], d.Replacement, detectorNames[id])
	}
	a.secretField = a.det[detSecret]
	a.userField = a.det[detUser]
	a.userField.scalarOnly, a.userField.skipSystem = true, true
	a.det[detUser].skipSystem = true

	rules := append(append([]FieldRule(nil), cfg.FieldRules...), func() []FieldRule {
		if cfg.BuiltinRules {
			return builtinRules()
		}
		return nil
	}()...)
	a.rules = &ruleSet{exact: map[string][]uint8{}}
	for i, fr := range rules {
		typ := fr.Type
		if typ == "" {
			typ = "redacted"
		}
		r := rule{act: newAction(fr.Method, typ, fr.Replacement, typ)}
		for _, d := range fr.Datasets {
			r.datasets = append(r.datasets, compileGlob(d))
		}
		a.rules.rules = append(a.rules.rules, r)
		for _, f := range fr.Fields {
			g := compileGlob(f)
			if g.kind == gExact {
				a.rules.exact[g.s] = append(a.rules.exact[g.s], uint8(i))
			} else {
				a.rules.others = append(a.rules.others, ruleGlob{g, uint8(i)})
			}
		}
	}
	// a replacement text that itself looked like personal data would be
	// replaced again on a second pass
	sc := a.newScanner()
	for r := range a.replacements {
		if sc.scrub(r) {
			return nil, config.Errorf("detectors", "the replacement %q would itself be scrubbed; choose a plain text", r)
		}
	}
	a.pool.New = func() any { return a.newScanner() }
	a.metrics = newMetrics(reg, a.types)
	for i := range a.det {
		a.metrics.prepare(a.det[i].count, a.det[i].method)
	}
	for i := range a.rules.rules {
		act := &a.rules.rules[i].act
		if act.method != mKeep && act.method != mScrub {
			a.metrics.prepare(act.count, act.method)
		}
	}
	return a, nil
}

func (a *Anonymizer) newScanner() *scanner {
	sc := &scanner{a: a, counts: make([]uint32, len(a.types)), fields: map[string]*fieldInfo{}, datasets: map[string]uint64{}, keyCache: new([1024]keyCacheEntry), members: map[string]memberInfo{}}
	sc.batch = make([][]uint32, len(a.types))
	for i := range sc.batch {
		sc.batch[i] = make([]uint32, numMethods)
	}
	return sc
}

// Name implements collector.Stage.
func (a *Anonymizer) Name() string { return "anonymize" }

// ScrubString returns s with every detected value replaced, as a field of
// no dataset would be: for the daemon's own log lines that quote event
// text. Invalid UTF-8 becomes U+FFFD. A detector whose method is drop masks
// here, since there is no field to drop.
func (a *Anonymizer) ScrubString(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	sc := a.pool.Get().(*scanner)
	defer a.pool.Put(sc)
	changed := sc.scrub(s)
	// the daemon's own lines are not events: count nothing
	clear(sc.counts)
	for _, m := range sc.batch {
		clear(m)
	}
	if !changed {
		return s
	}
	return string(sc.out)
}

// Process scrubs every event of the batch in place: strings are rebuilt in
// the batch's arena, dropped fields removed, and each event gets the counts
// of what was scrubbed as leitstand.scrub.<type> fields.
func (a *Anonymizer) Process(b *collector.Batch) {
	start := time.Now()
	sc := a.pool.Get().(*scanner)
	bytes := 0
	for i := range b.Events {
		bytes += a.processEvent(sc, b, &b.Events[i])
	}
	a.metrics.flush(sc, len(b.Events), bytes, time.Since(start))
	a.pool.Put(sc)
}

// processEvent scrubs one event and returns the bytes of text it looked at.
func (a *Anonymizer) processEvent(sc *scanner, b *collector.Batch, e *collector.Event) int {
	clear(sc.counts)
	active := sc.activeRules(e.Dataset())
	bytes := 0
	fields := e.Fields
	w := 0
	for r := range fields {
		f := fields[r]
		fi := sc.field(f.Key)
		if fi.skip {
			fields[w] = f
			w++
			continue
		}
		act := a.rules.first(fi.rules & active)
		if act == nil {
			act = fi.act
		}
		if act != nil && act.method == mKeep {
			fields[w] = f
			w++
			continue
		}
		if act != nil && act.method == mScrub {
			act = nil
		}
		if act != nil && act.method == mDrop {
			sc.count(act)
			continue
		}
		sc.path = append(sc.path[:0], fi.lower...)
		drop := false
		switch f.Kind {
		case collector.KindString:
			bytes += len(f.Str)
			var out string
			changed := false
			if act != nil {
				out, changed = sc.wholeValue(act, f.Str)
			} else if changed = sc.scrub(f.Str); changed {
				out = unsafeString(sc.out)
			}
			drop = sc.drop && act == nil
			if changed && !drop {
				f.Str = b.Arena.String(unsafeBytes(out))
			}
		case collector.KindRaw:
			bytes += len(f.Str)
			if act != nil && act.scalarOnly && strings.HasPrefix(strings.TrimSpace(f.Str), "{") {
				act = nil
			}
			out, changed, d := sc.scrubRaw(f.Str, act, active)
			drop = d
			if changed && !drop {
				f.Str = b.Arena.String(unsafeBytes(out))
			}
		case collector.KindNumber:
			if act != nil && act.method != mTruncate && f.Str != "0" {
				f.Str = "0"
				sc.count(act)
			}
		}
		if drop {
			continue
		}
		fields[w] = f
		w++
	}
	clear(fields[w:])
	e.Fields = fields[:w]
	for t, n := range sc.counts {
		if n == 0 {
			continue
		}
		a.addCount(b, e, t, n)
	}
	return bytes
}

// addCount adds n to the event's leitstand.scrub.<type> field (an event
// anonymized twice, at the agent and the aggregator, sums its counts).
func (a *Anonymizer) addCount(b *collector.Batch, e *collector.Event, t int, n uint32) {
	key := a.countKeys[t]
	for i := range e.Fields {
		if f := &e.Fields[i]; f.Key == key {
			old := 0
			for k := 0; k < len(f.Str); k++ {
				if isDigit(f.Str[k]) {
					old = old*10 + int(f.Str[k]-'0')
				}
			}
			f.Str = countString(b, old+int(n))
			return
		}
	}
	e.Add(key, collector.KindNumber, countString(b, int(n)))
}

// smallCounts spares the arena for the counts nearly every event has.
var smallCounts = func() (s [64]string) {
	for i := range s {
		s[i] = itoa(i)
	}
	return s
}()

func countString(b *collector.Batch, n int) string {
	if n < len(smallCounts) {
		return smallCounts[n]
	}
	var buf [20]byte
	p := len(buf)
	for n > 0 {
		p--
		buf[p] = byte('0' + n%10)
		n /= 10
	}
	return b.Arena.String(buf[p:])
}

// fieldInfo is what a field's key alone decides, cached per scanner: field
// keys repeat from event to event, so each is looked at once.
type fieldInfo struct {
	key   string  // the key as the event spells it
	lower string  // the key in lower case, a path for rules
	skip  bool    // in skip_fields
	rules uint64  // the rules with a field glob that matches, any dataset
	act   *action // the key's secret or user class, if any
}

// maxCached bounds the scanner's caches of field keys and datasets; when
// one is full it starts over.
const maxCached = 4096

func (sc *scanner) field(key string) *fieldInfo {
	// a direct-mapped front for the map: most events have the same few keys
	slot := &sc.recent[0]
	if len(key) > 0 {
		slot = &sc.recent[(len(key)*31+int(key[0])*7+int(key[len(key)-1])*13)&(len(sc.recent)-1)]
		if slot.fi != nil && slot.fi.key == key {
			return slot.fi
		}
	}
	if fi, ok := sc.fields[key]; ok {
		slot.fi = fi
		return fi
	}
	if len(sc.fields) >= maxCached {
		clear(sc.fields)
	}
	key = strings.Clone(key) // the event's key lives in the batch's memory
	lowerKey := strings.ToLower(key)
	fi := &fieldInfo{
		key:   key,
		lower: lowerKey,
		skip:  sc.a.skip.match(lowerKey),
		rules: sc.a.rules.mask(lowerKey),
		act:   sc.keyAction(key),
	}
	sc.fields[key] = fi
	slot.fi = fi
	return fi
}

// activeRules returns the rules whose datasets match dataset, cached.
func (sc *scanner) activeRules(dataset string) uint64 {
	if bits, ok := sc.datasets[dataset]; ok {
		return bits
	}
	if len(sc.datasets) >= maxCached {
		clear(sc.datasets)
	}
	dataset = strings.Clone(dataset)
	bits := sc.a.rules.active(strings.ToLower(dataset))
	sc.datasets[dataset] = bits
	return bits
}

// keyAction returns the action for a field or member named key (a dotted
// path counts by its last segments), from the secret and user key lists.
func (sc *scanner) keyAction(key string) *action {
	a := sc.a
	cls := sc.classify(key)
	switch {
	case cls&kSecret != 0 && a.on[detSecret]:
		return &a.secretField
	case cls&kUser != 0 && a.on[detUser]:
		return &a.userField
	}
	return nil
}

// memberAction returns the action for a JSON member: a rule for its path,
// else its name's key class.
// What the path and name decide is cached per scanner under the path with
// the name in its own case (camelCase matters to the key lists).
func (sc *scanner) memberAction(name, path string, active uint64) *action {
	parent := path[:max(0, len(path)-len(name)-1)]
	key := append(append(append(sc.mkey[:0], parent...), '.'), name...)
	sc.mkey = key
	mi, ok := sc.members[string(key)]
	if !ok {
		if len(sc.members) >= maxCached {
			clear(sc.members)
		}
		mi = memberInfo{rules: sc.a.rules.mask(path), act: sc.keyAction(name)}
		sc.members[string(key)] = mi
	}
	if act := sc.a.rules.first(mi.rules & active); act != nil {
		return act
	}
	return mi.act
}

// memberInfo is what a JSON member's path and name decide, cached.
type memberInfo struct {
	rules uint64
	act   *action
}

// wholeValue applies act to all of v (a field or member value) and returns
// the result (in sc.out when changed).
func (sc *scanner) wholeValue(act *action, v string) (string, bool) {
	switch act.method {
	case mKeep:
		return v, false
	case mScrub:
		if sc.scrub(v) {
			return unsafeString(sc.out), true
		}
		return v, false
	case mTruncate:
		if out, ok := sc.a.appendTruncatedIP(sc.out[:0], strings.TrimSpace(v)); ok {
			sc.out = out
			if string(out) == v {
				return v, false
			}
			sc.count(act)
			return unsafeString(out), true
		}
		if sc.scrub(v) {
			return unsafeString(sc.out), true
		}
		return v, false
	}
	if v == "" || sc.alreadyScrubbed(v) {
		return v, false
	}
	if act.skipSystem && sc.a.keys.system[sc.lowerString(v)] {
		return v, false
	}
	var norm []byte
	use := act
	if act.method == mHash && isSingleEmail(v) {
		// one address, one pseudonym: as the email detector makes it
		hashAs := *act
		hashAs.tag = sc.a.det[detEmail].tag
		use = &hashAs
		sc.tmp = sc.tmp[:0]
		for i := 0; i < len(v); i++ {
			sc.tmp = append(sc.tmp, lower(v[i]))
		}
		norm = sc.tmp
	}
	sc.out = sc.appendAction(sc.out[:0], use, v, norm)
	sc.count(act)
	return unsafeString(sc.out), true
}

// isSingleEmail reports whether v is one e-mail address and nothing else.
func isSingleEmail(v string) bool {
	at := strings.IndexByte(v, '@')
	if at <= 0 || strings.IndexByte(v[at+1:], '@') >= 0 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; ctab[c]&cLocal == 0 && c != '@' {
			return false
		}
	}
	dot := strings.LastIndexByte(v, '.')
	return dot > at+1 && validTLD(v[dot+1:])
}

var _ collector.Stage = (*Anonymizer)(nil)
