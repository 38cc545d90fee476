package anonymize

// card reads a payment card number at i: 13 to 19 digits, written as one
// run or in groups split by the same space or dash (the first group four
// digits, as every card prints), with an issuer prefix and a valid Luhn
// check digit. The longest valid number wins.
func (sc *scanner) card(s string, i int) int {
	var buf [19]byte
	var sep byte
	digits, k, best := 0, i, -1
	for {
		d := digitsEnd(s, k)
		n := d - k
		if n == 0 || digits+n > 19 {
			break
		}
		copy(buf[digits:], s[k:d])
		digits += n
		if digits >= 13 && endsWord(s, d) && luhn(buf[:digits]) && cardPrefix(buf[:digits]) {
			best = d
		}
		c := at(s, d)
		if (c == ' ' || c == '-') && (sep == 0 || c == sep) && isDigit(at(s, d+1)) {
			if sep == 0 && d-i != 4 {
				break
			}
			sep = c
			k = d + 1
			continue
		}
		break
	}
	if best < 0 {
		return i
	}
	sc.replace(s, i, best, &sc.a.det[detCard], nil)
	return best
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// cardPrefix checks the issuer prefix and length: Visa, Mastercard, Amex,
// Discover, JCB, Diners, UnionPay, Maestro, Mir. Cards of 13 digits (old
// Visa, early Maestro) are left out on purpose: EAN-13 product codes and
// epoch milliseconds have 13 digits too, and one in ten passes Luhn.
func cardPrefix(d []byte) bool {
	n := len(d)
	p2 := int(d[0]-'0')*10 + int(d[1]-'0')
	p4 := p2*100 + int(d[2]-'0')*10 + int(d[3]-'0')
	switch d[0] {
	case '4':
		return n == 16 || n == 19
	case '5':
		if p2 >= 51 && p2 <= 55 {
			return n == 16
		}
		return (p2 == 50 || p2 >= 56) && n >= 16 // Maestro
	case '2':
		if p4 >= 2221 && p4 <= 2720 {
			return n == 16
		}
		return p4 >= 2200 && p4 <= 2204 && n >= 16 // Mir
	case '3':
		switch {
		case p2 == 34 || p2 == 37:
			return n == 15
		case p4 >= 3528 && p4 <= 3589:
			return n >= 16
		case p2 == 36 || p2 == 38 || p2 == 39 || p4 >= 3000 && p4 <= 3059:
			return n >= 14
		}
		return false
	case '6':
		return n >= 16 // Discover, UnionPay, Maestro
	}
	return false
}

// taxID reads a German tax identification number (Steuer-ID) at i: eleven
// digits, unspaced or as "12 345 678 901", that pass the ISO 7064 MOD 11,10
// check and the rule that exactly one digit repeats in the first ten.
func (sc *scanner) taxID(s string, i int) int {
	var buf [11]byte
	d := digitsEnd(s, i)
	end := -1
	switch d - i {
	case 11:
		copy(buf[:], s[i:d])
		end = d
	case 2:
		copy(buf[:2], s[i:d])
		n, j := 2, d
		for g := 0; g < 3; g++ {
			if at(s, j) != ' ' {
				return i
			}
			e := digitsEnd(s, j+1)
			if e-(j+1) != 3 {
				return i
			}
			copy(buf[n:], s[j+1:e])
			n += 3
			j = e
		}
		end = j
	default:
		return i
	}
	if !endsWord(s, end) || !validTaxID(&buf) {
		return i
	}
	sc.replace(s, i, end, &sc.a.det[detTaxID], nil)
	return end
}

func validTaxID(d *[11]byte) bool {
	if d[0] == '0' {
		return false
	}
	var count [10]int
	for _, c := range d[:10] {
		count[c-'0']++
	}
	repeated := 0
	for v, n := range count {
		switch {
		case n == 2:
			repeated++
		case n == 3:
			repeated++
			// three times, but never three in a row
			for k := 0; k+2 < 10; k++ {
				if int(d[k]-'0') == v && d[k+1] == d[k] && d[k+2] == d[k] {
					return false
				}
			}
		case n > 3:
			return false
		}
	}
	if repeated != 1 {
		return false
	}
	product := 10
	for _, c := range d[:10] {
		sum := (int(c-'0') + product) % 10
		if sum == 0 {
			sum = 10
		}
		product = (sum * 2) % 11
	}
	check := 11 - product
	if check == 10 {
		check = 0
	}
	return check == int(d[10]-'0')
}

// phone reads a phone number at i, which is a '+', a '(' or a digit:
//
//	+49 30 12345678, +49 (0)30 1234567, +4915112345678, +1 415-555-0132
//	0049 30 1234567, 030 12345678, 030/1234567, 0151-12345678, (030) 123456
//	0301234567, (415) 555-0132, 415-555-0132
//
// A national number starts with 0 and an area code of three to five digits;
// other numbers without '+' or 00 only in the North American 3-3-4 form.
// Dates, times, versions and zero-padded counters fail these shapes.
func (sc *scanner) phone(s string, i int) int {
	end := phoneEnd(s, i)
	if end <= i || !endsWord(s, end) {
		return i
	}
	sc.replace(s, i, end, &sc.a.det[detPhone], nil)
	return end
}

func phoneEnd(s string, i int) int {
	c := s[i]
	switch {
	case c == '+':
		if d := at(s, i+1); !isDigit(d) || d == '0' {
			return -1
		}
		return phoneGroups(s, i+1, true, 8, 15)
	case c == '(':
		d := digitsEnd(s, i+1)
		n := d - (i + 1)
		if n < 3 || n > 5 || at(s, d) != ')' {
			return -1
		}
		if s[i+1] == '0' && s[i+2] != '0' {
			// "(030) 1234567": the area code, then the subscriber number
			j := d + 1
			if at(s, j) == ' ' {
				j++
			}
			if !isDigit(at(s, j)) {
				return -1
			}
			end := phoneGroups(s, j, false, 3, 10)
			if end < 0 || countDigits(s[i:end]) < 9 {
				return -1
			}
			return end
		}
		if n == 3 && s[i+1] >= '2' {
			j := d + 1
			if at(s, j) == ' ' {
				j++
			}
			return nanp(s, j, true)
		}
		return -1
	case c == '0':
		d := at(s, i+1)
		if d == '0' {
			if e := at(s, i+2); e < '1' || e > '9' {
				return -1
			}
			return phoneGroups(s, i+2, true, 8, 15)
		}
		if d < '1' || d > '9' {
			return -1
		}
		e := digitsEnd(s, i)
		if n := e - i; n >= 10 && n <= 12 {
			return e // 0301234567, 015112345678
		}
		if n := e - i; n < 3 || n > 5 || !isPhoneSep(s, e) {
			return -1
		}
		end := phoneGroups(s, i, false, 9, 13)
		return end
	case c >= '2' && c <= '9':
		return nanp(s, i, false)
	}
	return -1
}

// isPhoneSep reports whether a separator and another digit group follow e.
func isPhoneSep(s string, e int) bool {
	switch at(s, e) {
	case ' ', '-', '/':
		return isDigit(at(s, e+1)) || at(s, e) == ' ' && (at(s, e+1) == '/' || at(s, e+1) == '(')
	case '(':
		return at(s, e+1) == '0' && at(s, e+2) == ')'
	}
	return false
}

// nanp reads the North American "555-0132" after an area code (paren true)
// or the whole "415-555-0132".
func nanp(s string, i int, paren bool) int {
	j := i
	if !paren {
		if digitsEnd(s, j)-j != 3 || at(s, j+3) != '-' {
			return -1
		}
		j += 4
	}
	if digitsEnd(s, j)-j != 3 || at(s, j+3) != '-' && at(s, j+3) != ' ' {
		return -1
	}
	j += 4
	if digitsEnd(s, j)-j != 4 {
		return -1
	}
	return j + 4
}

// phoneGroups reads digit groups from i on, split by one space, dash or
// slash (a slash only after the first group), " / ", or the "(0)" of
// "+49 (0)30"; each group after the first has at least two digits. It
// returns the end when the digit count (after a '+' or "00") lies within
// [min, max], else -1.
func phoneGroups(s string, i int, intl bool, min, max int) int {
	digits, groups, j, end := 0, 0, i, -1
	for {
		d := digitsEnd(s, j)
		n := d - j
		if n == 0 || groups > 0 && n < 2 || digits+n > max {
			break // a longer run of groups keeps its valid start
		}
		groups++
		digits += n
		if digits >= min && endsWord(s, d) {
			end = d
		}
		next := -1
		switch c := at(s, d); {
		case (c == ' ' || c == '-') && isDigit(at(s, d+1)):
			next = d + 1
		case c == '/' && groups == 1 && isDigit(at(s, d+1)):
			next = d + 1
		case c == ' ' && at(s, d+1) == '/' && at(s, d+2) == ' ' && groups == 1 && isDigit(at(s, d+3)):
			next = d + 3
		case intl && groups == 1 && (c == ' ' || c == '(') && hasZeroParen(s, d):
			next = d + 3
			if c == ' ' {
				next++
			}
			if at(s, next) == ' ' {
				next++
			}
		case intl && groups == 1 && c == ' ' && at(s, d+1) == '(':
			// "+1 (415) 555-0132"
			e := digitsEnd(s, d+2)
			if e-(d+2) == 3 && at(s, e) == ')' && at(s, e+1) == ' ' {
				if f := nanp(s, e+2, true); f > 0 {
					if digits+10 > max {
						return -1
					}
					return f
				}
			}
		}
		if next < 0 || digitsEnd(s, next)-next < 2 {
			break
		}
		j = next
	}
	return end
}

// hasZeroParen reports whether "(0)" (possibly after a space) follows d.
func hasZeroParen(s string, d int) bool {
	if at(s, d) == ' ' {
		d++
	}
	return at(s, d) == '(' && at(s, d+1) == '0' && at(s, d+2) == ')'
}

func countDigits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			n++
		}
	}
	return n
}

// ibanLengths holds the IBAN length of every country in the SWIFT registry.
var ibanLengths = func() (t [26 * 26]uint8) {
	for _, e := range []struct {
		cc string
		n  uint8
	}{
		{"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16},
		{"BG", 22}, {"BH", 22}, {"BI", 27}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22},
		{"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DJ", 27}, {"DK", 18}, {"DO", 28}, {"EE", 20},
		{"EG", 29}, {"ES", 24}, {"FI", 18}, {"FK", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22},
		{"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28},
		{"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30},
		{"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21},
		{"LY", 25}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MN", 20}, {"MR", 27},
		{"MT", 31}, {"MU", 30}, {"NI", 28}, {"NL", 18}, {"NO", 15}, {"OM", 23}, {"PK", 24},
		{"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"RU", 33},
		{"SA", 24}, {"SC", 31}, {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27},
		{"SO", 23}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29},
		{"VA", 22}, {"VG", 24}, {"XK", 20}, {"YE", 30},
	} {
		t[int(e.cc[0]-'A')*26+int(e.cc[1]-'A')] = e.n
	}
	return t
}()

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// iban reads an IBAN at i, unspaced or in groups of four, in either case,
// and checks its country's length and the mod-97 checksum.
func (sc *scanner) iban(s string, i int) int {
	c0, c1 := upper(s[i]), upper(s[i+1])
	if !isUpper(c0) || !isUpper(c1) {
		return i
	}
	want := int(ibanLengths[int(c0-'A')*26+int(c1-'A')])
	if want == 0 {
		return i
	}
	var buf [34]byte
	n, j := 0, i
	for n < want {
		c := at(s, j)
		if isAlnum(c) {
			buf[n] = upper(c)
			n++
			j++
			continue
		}
		if c == ' ' && n%4 == 0 && n > 0 && isAlnum(at(s, j+1)) {
			j++
			continue
		}
		break
	}
	if n != want || isWord(at(s, j)) {
		return i
	}
	r := 0
	for k := 0; k < want; k++ {
		c := buf[(k+4)%want]
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A') + 10) % 97
		}
	}
	if r != 1 {
		// IBAN-shaped but not one: settle it, so that its digit groups are
		// not taken for a phone number ("0044 0532…")
		sc.skipTo(j)
		return j
	}
	sc.replace(s, i, j, &sc.a.det[detIBAN], nil)
	return j
}
