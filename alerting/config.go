package alerting

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/leitstand/leitstand/internal/config"
)

// RoleLabel is the label every alert carries when it leaves leitstand: the
// one role the copy is for (an alert owned by two roles leaves as two
// alerts, see Router).
const RoleLabel = "role"

// Config is the role registry and the Alertmanager client.
type Config struct {
	// Roles are the owners of alerts. Default none.
	Roles []Role `yaml:"roles"`
	// DefaultRole gets every alert no role owns; it must be one of roles.
	// Default "platform-ops".
	DefaultRole string `yaml:"default_role"`
	// Alertmanagers are the base URLs of the Alertmanagers (an HA group gets
	// every alert; each is sent to on its own). Default none: alerts are
	// labelled and counted but not sent.
	Alertmanagers []string `yaml:"alertmanagers"`
	// Timeout bounds one POST to one Alertmanager. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// QueueCapacity is how many alerts wait for sending; beyond it the
	// oldest are dropped and counted. Default 10000.
	QueueCapacity int `yaml:"queue_capacity"`
	// MaxBatch is the most alerts in one POST. Default 256.
	MaxBatch int `yaml:"max_batch"`
	// Retries is how often a failed POST is tried again (with back-off)
	// before the batch is given up for that Alertmanager. Default 3.
	Retries int `yaml:"retries"`
	// Route holds the grouping and timing of the generated Alertmanager
	// configuration.
	Route RouteDefaults `yaml:"route"`
}

// RouteDefaults are the grouping and timing of every generated role route.
type RouteDefaults struct {
	// GroupBy default [alertname, role, namespace, service].
	GroupBy []string `yaml:"group_by"`
	// GroupWait default 30s.
	GroupWait time.Duration `yaml:"group_wait"`
	// GroupInterval default 5m.
	GroupInterval time.Duration `yaml:"group_interval"`
	// RepeatInterval default 4h.
	RepeatInterval time.Duration `yaml:"repeat_interval"`
}

// Role is one owner of alerts: who is paged for what, and what its API
// tokens may see.
type Role struct {
	// Name such as platform-ops, dba, dev/<team>, tenant-admin/<tenant>.
	// Required, unique.
	Name string `yaml:"name"`
	// Matchers select the alerts the role owns, in Alertmanager's syntax
	// (`namespace="db"`, `severity=~"critical|warning"`); all must match.
	// A role without matchers owns nothing itself (it may still be the
	// default role or an escalation target). Default none.
	Matchers []string `yaml:"matchers"`
	// Receiver is an Alertmanager receiver definition, passed through to
	// the generated configuration unchanged except that its name is the
	// role's name. Required.
	Receiver Receiver `yaml:"receiver"`
	// Escalate sends some of the role's alerts to other roles' receivers
	// as well (critical also to platform-ops). Default none.
	Escalate []Escalation `yaml:"escalate"`
	// Scope is what the role's API tokens may see and silence.
	Scope Scope `yaml:"scope"`
	// TokenFiles are files holding the role's API bearer tokens, one per
	// file; only their SHA-256 is kept. Default none.
	TokenFiles []string `yaml:"token_files"`
	// TokenSHA256 are hex SHA-256 sums of further tokens, for configs that
	// must not point at secret files. Default none.
	TokenSHA256 []string `yaml:"token_sha256"`

	matchers []Matcher
}

// Escalation sends the role's alerts that match Matchers to the receiver
// of role To too.
type Escalation struct {
	// Matchers on the alert labels, e.g. ['severity="critical"']. Required.
	Matchers []string `yaml:"matchers"`
	// To is the name of the role whose receiver is added. Required.
	To string `yaml:"to"`

	matchers []Matcher
}

// Scope is the part of the alerts a role's API tokens see. An alert is in
// scope when every non-empty list contains the alert's label of that name
// (namespace, service, dataset). All: true sees everything; an empty scope
// sees nothing.
type Scope struct {
	All        bool     `yaml:"all"`
	Namespaces []string `yaml:"namespaces"`
	Services   []string `yaml:"services"`
	Datasets   []string `yaml:"datasets"`
}

// Receiver is an Alertmanager receiver definition kept as YAML, so every
// integration Alertmanager has (and those it will have) passes through.
type Receiver struct {
	yaml.Node
}

// UnmarshalYAML keeps the node as written.
func (r *Receiver) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("want an Alertmanager receiver (a mapping), got %s", n.ShortTag())
	}
	r.Node = *n
	return nil
}

// IsZero reports whether no receiver was configured.
func (r Receiver) IsZero() bool { return r.Kind == 0 }

// DefaultConfig returns the defaulted configuration.
func DefaultConfig() Config {
	var c Config
	c.SetDefaults()
	return c
}

// SetDefaults implements config.Defaulter.
func (c *Config) SetDefaults() {
	*c = Config{
		DefaultRole:   "platform-ops",
		Timeout:       10 * time.Second,
		QueueCapacity: 10000,
		MaxBatch:      256,
		Retries:       3,
		Route: RouteDefaults{
			GroupBy:        []string{"alertname", RoleLabel, "namespace", "service"},
			GroupWait:      30 * time.Second,
			GroupInterval:  5 * time.Minute,
			RepeatInterval: 4 * time.Hour,
		},
	}
}

var roleName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)?$`)

// Validate checks the whole registry and compiles the matchers; it must run
// before the config is used (New calls it).
func (c *Config) Validate() error {
	var errs config.Errors
	byName := map[string]int{}
	for i := range c.Roles {
		r := &c.Roles[i]
		p := fmt.Sprintf("roles[%d]", i)
		switch {
		case r.Name == "":
			errs.Addf(p+".name", "required")
		case !roleName.MatchString(r.Name):
			errs.Addf(p+".name", "%q: want lower-case words like dba or dev/payments (at most one /)", r.Name)
		default:
			if j, dup := byName[r.Name]; dup {
				errs.Addf(p+".name", "%q is also roles[%d]", r.Name, j)
			}
			byName[r.Name] = i
		}
		r.matchers = compileMatchers(&errs, p+".matchers", r.Matchers)
		if r.Receiver.IsZero() {
			errs.Addf(p+".receiver", "required: an Alertmanager receiver definition (webhook_configs, email_configs, ...)")
		}
		for k, h := range r.TokenSHA256 {
			if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
				errs.Addf(fmt.Sprintf("%s.token_sha256[%d]", p, k), "want 64 hex digits")
			}
		}
		for k, f := range r.TokenFiles {
			if f == "" {
				errs.Addf(fmt.Sprintf("%s.token_files[%d]", p, k), "empty path")
			}
		}
	}
	for i := range c.Roles {
		r := &c.Roles[i]
		for k := range r.Escalate {
			e := &r.Escalate[k]
			p := fmt.Sprintf("roles[%d].escalate[%d]", i, k)
			if len(e.Matchers) == 0 {
				errs.Addf(p+".matchers", "required (escalate everything? put the receiver in the role instead)")
			}
			e.matchers = compileMatchers(&errs, p+".matchers", e.Matchers)
			if _, ok := byName[e.To]; !ok {
				errs.Addf(p+".to", "%q is not a role name", e.To)
			} else if e.To == r.Name {
				errs.Addf(p+".to", "a role cannot escalate to itself")
			}
		}
	}
	if len(c.Roles) > 0 {
		if _, ok := byName[c.DefaultRole]; !ok {
			errs.Addf("default_role", "%q is not a role name; unowned alerts need a role", c.DefaultRole)
		}
	}
	for i, u := range c.Alertmanagers {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			errs.Addf(fmt.Sprintf("alertmanagers[%d]", i), "%q: want an http:// or https:// URL", u)
		}
	}
	if c.Timeout <= 0 {
		errs.Addf("timeout", "must be positive")
	}
	if c.QueueCapacity <= 0 {
		errs.Addf("queue_capacity", "must be positive")
	}
	if c.MaxBatch <= 0 {
		errs.Addf("max_batch", "must be positive")
	}
	if c.Retries < 0 {
		errs.Addf("retries", "must not be negative")
	}
	if c.Route.GroupWait < 0 || c.Route.GroupInterval <= 0 || c.Route.RepeatInterval <= 0 {
		errs.Addf("route", "group_wait must not be negative, group_interval and repeat_interval must be positive")
	}
	return errs.Err()
}

func compileMatchers(errs *config.Errors, path string, in []string) []Matcher {
	out := make([]Matcher, 0, len(in))
	for i, s := range in {
		m, err := ParseMatcher(s)
		if err != nil {
			errs.Addf(fmt.Sprintf("%s[%d]", path, i), "%v", err)
			continue
		}
		out = append(out, m)
	}
	return out
}

// role returns the role named name, or nil.
func (c *Config) role(name string) *Role {
	for i := range c.Roles {
		if c.Roles[i].Name == name {
			return &c.Roles[i]
		}
	}
	return nil
}

var _ config.Validator = (*Config)(nil)
var _ config.Defaulter = (*Config)(nil)
