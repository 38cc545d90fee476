package sentry

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// authError is a refusal with its status (401 or 403) and the reason for
// X-Sentry-Error. Reasons never quote the key.
type authError struct {
	status int
	reason string
}

func (e *authError) Error() string { return e.reason }

var (
	errNoAuth        = &authError{http.StatusUnauthorized, "missing authentication: send X-Sentry-Auth, Authorization: Sentry, ?sentry_key= or a dsn in the envelope header"}
	errBadAuthHeader = &authError{http.StatusUnauthorized, "malformed authentication header: want Sentry sentry_key=<public key>, ..."}
	errAuthDisagrees = &authError{http.StatusUnauthorized, "the request names different public keys in its authentication forms"}
	errUnknownKey    = &authError{http.StatusUnauthorized, "unknown public key"}
	errDSNProject    = &authError{http.StatusForbidden, "the envelope's dsn names another project than the URL"}
	errWrongProject  = &authError{http.StatusForbidden, "the public key does not belong to this project"}
)

// requestKey returns the public key a request names in its headers and
// query string ("" when none), refusing forms that disagree.
func requestKey(r *http.Request) (string, error) {
	var key string
	add := func(k string) error {
		if key != "" && k != key {
			return errAuthDisagrees
		}
		key = k
		return nil
	}
	if h := r.Header.Get("X-Sentry-Auth"); h != "" {
		k, ok := parseAuth(h, false)
		if !ok {
			return "", errBadAuthHeader
		}
		_ = add(k)
	}
	if h := r.Header.Get("Authorization"); h != "" {
		// Another scheme (a proxy's Basic or Bearer) is not ours to read.
		if len(h) > 7 && strings.EqualFold(h[:7], "sentry ") {
			k, ok := parseAuth(h, true)
			if !ok {
				return "", errBadAuthHeader
			}
			if err := add(k); err != nil {
				return "", err
			}
		}
	}
	if k, ok := queryParam(r.URL.RawQuery, "sentry_key"); ok {
		if k == "" {
			return "", errBadAuthHeader
		}
		if err := add(k); err != nil {
			return "", err
		}
	}
	return key, nil
}

// requestClient returns the SDK's name and version from sentry_client in
// the auth header or query, or from User-Agent ("sentry.python/2.75.0"),
// for items whose envelope names no SDK.
func requestClient(r *http.Request) (string, string) {
	c := ""
	if h := r.Header.Get("X-Sentry-Auth"); h != "" {
		c = authParam(h, "sentry_client")
	}
	if c == "" {
		c, _ = queryParam(r.URL.RawQuery, "sentry_client")
	}
	if c == "" {
		c = r.Header.Get("User-Agent")
	}
	name, version, ok := strings.Cut(c, "/")
	if !ok || !strings.HasPrefix(name, "sentry") || len(c) > 100 {
		return "", ""
	}
	return name, version
}

// authParam returns one parameter of an auth header.
func authParam(h, param string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "sentry ") {
		h = h[7:]
	}
	for h != "" {
		var part string
		part, h, _ = strings.Cut(h, ",")
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && strings.TrimSpace(name) == param {
			return strings.Trim(strings.TrimSpace(value), `"`)
		}
	}
	return ""
}

// parseAuth reads sentry_key from "Sentry sentry_key=…, sentry_version=7,
// sentry_client=…". The "Sentry " prefix is optional in X-Sentry-Auth, as
// old clients leave it out.
func parseAuth(h string, needScheme bool) (string, bool) {
	h = strings.TrimSpace(h)
	if len(h) > 7 && strings.EqualFold(h[:7], "sentry ") {
		h = h[7:]
	} else if needScheme {
		return "", false
	}
	for h != "" {
		var part string
		part, h, _ = strings.Cut(h, ",")
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		if strings.TrimSpace(name) == "sentry_key" {
			value = strings.Trim(strings.TrimSpace(value), `"`)
			return value, value != ""
		}
	}
	return "", false
}

// queryParam finds name in a raw query without building a map.
func queryParam(raw, name string) (string, bool) {
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(part, "=")
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return "", true
			}
			v = u
		}
		return v, true
	}
	return "", false
}

// dsn is a parsed Sentry DSN.
type dsn struct {
	scheme  string
	host    string // host[:port]
	prefix  string // path before the project id, without trailing slash
	key     string
	project string
}

// envelopeURL is where the DSN's project takes envelopes.
func (d *dsn) envelopeURL() string {
	return d.scheme + "://" + d.host + d.prefix + "/api/" + d.project + "/envelope/"
}

// parseDSN reads http[s]://KEY[:SECRET]@host[:port][/prefix]/PROJECT. It
// is on the hot path (sentry-go puts the DSN in every envelope), so it
// slices the string instead of building a url.URL.
func parseDSN(s string) (*dsn, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return nil, errors.New("want an http or https DSN")
	}
	at := strings.IndexByte(rest, '@')
	if slash := strings.IndexByte(rest, '/'); at <= 0 || (slash >= 0 && slash < at) {
		return nil, errors.New("the DSN has no public key (http://KEY@host/PROJECT)")
	}
	key, _, _ := strings.Cut(rest[:at], ":")
	if key == "" {
		return nil, errors.New("the DSN has no public key (http://KEY@host/PROJECT)")
	}
	hostPath := rest[at+1:]
	if i := strings.IndexAny(hostPath, "?#"); i >= 0 {
		hostPath = hostPath[:i]
	}
	slash := strings.IndexByte(hostPath, '/')
	if slash == 0 {
		return nil, errors.New("the DSN has no host")
	}
	if slash < 0 {
		return nil, errors.New("the DSN has no project id (http://KEY@host/PROJECT)")
	}
	host := hostPath[:slash]
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return nil, errors.New("the DSN's host is not valid")
		}
	}
	path := strings.TrimSuffix(hostPath[slash:], "/")
	i := strings.LastIndexByte(path, '/')
	project := path[i+1:]
	if _, err := strconv.ParseUint(project, 10, 64); err != nil || project == "0" || project[0] == '+' {
		return nil, errors.New("the DSN's project id is not a positive number")
	}
	return &dsn{scheme: scheme, host: host, prefix: path[:i], key: key, project: project}, nil
}
