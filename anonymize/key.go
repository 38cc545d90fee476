package anonymize

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/leitstand/leitstand/internal/config"
)

// hashBytes of the HMAC are kept in a pseudonym: 96 bits, so two values
// collide only after some 2^48 of them, printed as hashChars base64url
// characters.
const (
	hashBytes = 12
	hashChars = 16
)

// keyFileName is where the generated key is kept under the data directory.
const keyFileName = "anonymize.key"

// minKeyLen is the shortest key accepted from a file.
const minKeyLen = 16

// loadKey returns the HMAC key: from cfg.HashKeyFile, or generated once and
// kept in dataDir.
func loadKey(cfg *Config, dataDir string) ([]byte, error) {
	if cfg.HashKeyFile != "" {
		s, err := config.ReadSecretFile(cfg.HashKeyFile)
		if err != nil {
			return nil, config.Errorf("hash_key_file", "%v", err)
		}
		if len(s.Reveal()) < minKeyLen {
			return nil, config.Errorf("hash_key_file", "the key in %s is shorter than %d bytes", cfg.HashKeyFile, minKeyLen)
		}
		return []byte(s.Reveal()), nil
	}
	if dataDir == "" {
		return nil, config.Errorf("hash_key_file", "not set, and there is no data directory to keep a generated key in")
	}
	path := filepath.Join(dataDir, keyFileName)
	if key, err := readGeneratedKey(path); err == nil {
		return key, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("anonymize: creating the data directory for the hash key: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("anonymize: generating a hash key: %w", err)
	}
	text := hex.EncodeToString(raw[:]) + "\n"
	// Write to a temporary file and link it into place, which fails if
	// another process got there first: then that process's key is used.
	tmp, err := os.CreateTemp(dataDir, keyFileName+".*")
	if err != nil {
		return nil, fmt.Errorf("anonymize: writing the hash key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.WriteString(text)
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Link(tmp.Name(), path)
			if err != nil && !errors.Is(err, fs.ErrExist) {
				// a file system without hard links: create the file exclusively
				err = writeExclusive(path, text)
			}
		}
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("anonymize: writing the hash key to %s: %w", path, err)
		}
	} else {
		tmp.Close()
		return nil, fmt.Errorf("anonymize: writing the hash key: %w", err)
	}
	return readGeneratedKey(path)
}

func writeExclusive(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

func readGeneratedKey(path string) ([]byte, error) {
	s, err := config.ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	if len(s.Reveal()) < minKeyLen {
		return nil, fmt.Errorf("anonymize: the key in %s is shorter than %d bytes; remove the file to generate a new one", path, minKeyLen)
	}
	return []byte(s.Reveal()), nil
}

// deriveKeyID names a key by itself: "k" and four base32 characters of a
// hash of it, so the id changes when the key does and reveals nothing.
func deriveKeyID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("leitstand anonymize key id\x00"))
	h.Write(key)
	sum := h.Sum(nil)
	enc := base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	return "k" + enc.EncodeToString(sum[:5])[:4]
}

// appendHash appends the pseudonym of value: "<tag>:<key id>:<hash>".
// norm, when not nil, is hashed instead of value.
func (sc *scanner) appendHash(dst []byte, tag string, value string, norm []byte) []byte {
	if norm == nil {
		sc.tmp = append(sc.tmp[:0], value...)
		norm = sc.tmp
	}
	dst = append(dst, tag...)
	dst = append(dst, ':')
	dst = append(dst, sc.a.keyID...)
	dst = append(dst, ':')
	if sc.hashes == nil {
		sc.hashes = new(hashCache)
	}
	if enc, ok := sc.hashes.get(norm); ok {
		return append(dst, enc...)
	}
	if sc.hmac == nil {
		sc.hmac = hmac.New(sha256.New, sc.a.key)
	} else {
		sc.hmac.Reset()
	}
	sc.hmac.Write(norm)
	sc.sum = sc.hmac.Sum(sc.sum[:0])
	start := len(dst)
	dst = base64.RawURLEncoding.AppendEncode(dst, sc.sum[:hashBytes])
	sc.hashes.put(norm, dst[start:])
	return dst
}

// hashCache remembers the last pseudonyms a scanner computed: the same
// user's address turns up again and again in one event and one batch, and
// an HMAC costs more than scanning a line. Direct-mapped and fixed in size,
// it allocates nothing.
type hashCache struct {
	seed    maphash.Seed
	entries [256]struct {
		n   uint8
		key [62]byte
		enc [hashChars]byte
	}
}

func (c *hashCache) slot(v []byte) int {
	if c.seed == (maphash.Seed{}) {
		c.seed = maphash.MakeSeed()
	}
	return int(maphash.Bytes(c.seed, v) & 255)
}

func (c *hashCache) get(v []byte) ([]byte, bool) {
	if len(v) == 0 || len(v) > 62 {
		return nil, false
	}
	e := &c.entries[c.slot(v)]
	if int(e.n) != len(v) || string(e.key[:e.n]) != string(v) {
		return nil, false
	}
	return e.enc[:], true
}

func (c *hashCache) put(v, enc []byte) {
	if len(v) == 0 || len(v) > 62 || len(enc) != hashChars {
		return
	}
	e := &c.entries[c.slot(v)]
	e.n = uint8(copy(e.key[:], v))
	copy(e.enc[:], enc)
}

// unsafeString views b as a string without copying; b must not change
// while the string is used.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// unsafeBytes views s as bytes, for APIs that take a slice and only read it.
func unsafeBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
