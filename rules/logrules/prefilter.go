package logrules

// matcher is an Aho-Corasick automaton over the rules' required literals:
// one pass over a message finds every rule whose literal occurs in it, so
// a thousand rules cost one scan instead of a thousand.
type matcher struct {
	classes [256]uint8 // byte → alphabet class; 0: byte in no pattern
	width   int        // number of classes
	// next is the complete DFA: next[state*width+class] is the next state,
	// premultiplied by width, with outFlag set when patterns end there, so
	// the scan loop is one load and one test per byte.
	next []int32
	out  [][]int32 // state → pattern ids ending here (with suffix outputs)
}

func newMatcher(patterns []string) *matcher {
	m := &matcher{width: 1}
classify:
	for _, p := range patterns {
		for i := 0; i < len(p); i++ {
			if m.classes[p[i]] == 0 {
				m.classes[p[i]] = uint8(m.width)
				m.width++
				if m.width == 256 {
					// Every byte value is in use: fall back to identity
					// classes.
					break classify
				}
			}
		}
	}
	if m.width >= 256 {
		for i := range m.classes {
			m.classes[i] = uint8(i)
		}
		m.width = 256
	}
	// Trie.
	goTo := [][]int32{make([]int32, m.width)}
	m.out = [][]int32{nil}
	for id, p := range patterns {
		s := int32(0)
		for i := 0; i < len(p); i++ {
			c := m.classes[p[i]]
			if goTo[s][c] == 0 {
				goTo = append(goTo, make([]int32, m.width))
				m.out = append(m.out, nil)
				goTo[s][c] = int32(len(goTo) - 1)
			}
			s = goTo[s][c]
		}
		m.out[s] = append(m.out[s], int32(id))
	}
	// Breadth-first failure links, folded into a complete transition table.
	fail := make([]int32, len(goTo))
	queue := make([]int32, 0, len(goTo))
	for c := 0; c < m.width; c++ {
		if s := goTo[0][c]; s != 0 {
			queue = append(queue, s)
		}
	}
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		for c := 0; c < m.width; c++ {
			s := goTo[r][c]
			if s == 0 {
				goTo[r][c] = goTo[fail[r]][c]
				continue
			}
			queue = append(queue, s)
			fail[s] = goTo[fail[r]][c]
			m.out[s] = append(m.out[s], m.out[fail[s]]...)
		}
	}
	m.next = make([]int32, len(goTo)*m.width)
	for s, row := range goTo {
		for c, t := range row {
			v := t * int32(m.width)
			if len(m.out[t]) > 0 {
				v |= outFlag
			}
			m.next[s*m.width+c] = v
		}
	}
	return m
}

// outFlag marks a transition into a state where patterns end.
const outFlag = -1 << 31

// scan calls hit for every pattern occurrence end in text (a pattern may be
// reported more than once).
func (m *matcher) scan(text string, hit func(id int32)) {
	s := int32(0)
	for i := 0; i < len(text); i++ {
		s = m.next[s+int32(m.classes[text[i]])]
		if s < 0 {
			s &^= outFlag
			for _, id := range m.out[s/int32(m.width)] {
				hit(id)
			}
		}
	}
}
