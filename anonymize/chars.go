package anonymize

// Byte classes, looked up in one table so the scanner's inner loop is a load
// and a test per byte.
const (
	cWord   uint16 = 1 << iota // letters, digits, bytes >= 0x80: a word goes on
	cDigit                     // 0-9
	cHex                       // 0-9a-fA-F
	cAlpha                     // a-zA-Z
	cTrig                      // punctuation that triggers or starts a detector
	cB64                       // base64url: A-Za-z0-9-_
	cKey                       // key names: A-Za-z0-9_.-
	cLocal                     // e-mail local part: A-Za-z0-9._%+- and >= 0x80
	cLabel                     // domain label: A-Za-z0-9- and >= 0x80
	cTok                       // token68 (RFC 7235): A-Za-z0-9-._~+/
	cUpDig                     // A-Z0-9
	cB64Std                    // standard base64: A-Za-z0-9+/
)

var ctab = func() (t [256]uint16) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		var v uint16
		isDigit := b >= '0' && b <= '9'
		isAlpha := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
		if isDigit || isAlpha || b >= 0x80 {
			v |= cWord
		}
		if isDigit {
			v |= cDigit
		}
		if isDigit || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F' {
			v |= cHex
		}
		if isAlpha {
			v |= cAlpha
		}
		if isDigit || isAlpha || b == '-' || b == '_' {
			v |= cB64
		}
		if isDigit || isAlpha || b == '_' || b == '.' || b == '-' {
			v |= cKey
		}
		if isDigit || isAlpha || b >= 0x80 || b == '.' || b == '_' || b == '%' || b == '+' || b == '-' {
			v |= cLocal
		}
		if isDigit || isAlpha || b >= 0x80 || b == '-' {
			v |= cLabel
		}
		if isDigit || isAlpha || b == '-' || b == '.' || b == '_' || b == '~' || b == '+' || b == '/' {
			v |= cTok
		}
		if isDigit || b >= 'A' && b <= 'Z' {
			v |= cUpDig
		}
		if isDigit || isAlpha || b == '+' || b == '/' {
			v |= cB64Std
		}
		switch b {
		case '@', '%', ':', '=', '+', '(', '/', '\\', '-':
			v |= cTrig
		}
		t[c] = v
	}
	return t
}()

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isHex(c byte) bool   { return ctab[c]&cHex != 0 }
func isAlpha(c byte) bool { return ctab[c]&cAlpha != 0 }
func isWord(c byte) bool  { return ctab[c]&cWord != 0 }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlnum(c byte) bool { return ctab[c]&(cDigit|cAlpha) != 0 }

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// at returns s[i], or 0 past either end, which keeps bounds checks out of
// the detectors' logic.
func at(s string, i int) byte {
	if i < 0 || i >= len(s) {
		return 0
	}
	return s[i]
}

// hasPrefixFold reports whether s[i:] starts with the lower-case ASCII p,
// ignoring case.
func hasPrefixFold(s string, i int, p string) bool {
	if i < 0 || len(s)-i < len(p) {
		return false
	}
	for j := 0; j < len(p); j++ {
		if lower(s[i+j]) != p[j] {
			return false
		}
	}
	return true
}

// runEnd returns the end of the run of bytes of class cls starting at i.
func runEnd(s string, i int, cls uint16) int {
	for i < len(s) && ctab[s[i]]&cls != 0 {
		i++
	}
	return i
}

func digitsEnd(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}
