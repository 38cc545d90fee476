package podlog

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"time"

	"github.com/leitstand/leitstand/internal/config"
)

// Where to start in files found at the agent's very first start.
const (
	StartBeginning = "beginning"
	StartEnd       = "end"
)

// In-cluster defaults of the Kubernetes API client.
const (
	ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	DefaultStateDir   = "/var/lib/leitstand/podlog"
	DefaultRoot       = "/var/log/pods"
)

// Config of the pod log receiver: the top-level `podlog` section (on by
// default with role: agent).
type Config struct {
	// Enabled runs the receiver. Default false: the agent role turns it on.
	Enabled bool `yaml:"enabled"`
	// Roots are directories in the kubelet's layout,
	// <root>/<namespace>_<pod>_<uid>/<container>/<restart>.log.
	// Default ["/var/log/pods"].
	Roots []string `yaml:"roots"`
	// FileGlob matches the names of live log files in a container
	// directory; their rotated files ("0.log.<time>", "….gz") are found
	// beside them. Default "*.log".
	FileGlob string `yaml:"file_glob"`
	// Include lists globs on "<namespace>/<pod>/<container>" ('*' matches
	// within a part; missing trailing parts match anything) whose logs are
	// read. Default ["*"]: every container.
	Include []string `yaml:"include"`
	// Exclude lists globs like Include whose logs are not read; it wins
	// over Include. Default none.
	Exclude []string `yaml:"exclude"`
	// ExcludeSelf leaves out the agent's own pod, named by the POD_NAMESPACE
	// and POD_NAME environment variables (the downward API), so the agent
	// does not forward its own log about forwarding. Default true.
	ExcludeSelf bool `yaml:"exclude_self"`
	// NodeName is host.name and kubernetes.node.name of every event, and
	// the node whose pods' labels are asked for. Default: the NODE_NAME
	// environment variable, else the host name.
	NodeName string `yaml:"node_name"`
	// StateDir keeps the read positions (positions.json). It must survive
	// the agent's pod: a hostPath on the node. Default /var/lib/leitstand/podlog.
	StateDir string `yaml:"state_dir"`
	// StartAt is where files found at the very first start (no positions
	// yet) are read from: beginning or end. Files that appear later are
	// always read from their beginning. Default beginning.
	StartAt string `yaml:"start_at"`
	// CheckpointInterval is how often acknowledged positions are written to
	// the state directory. A crash repeats at most this much (the events
	// keep their ids, so the aggregator stores them once). 0 writes after
	// every acknowledged batch. Default 1s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// RescanInterval is how often the roots are listed again in full, for
	// anything the file system notifications missed. Default 10s.
	RescanInterval time.Duration `yaml:"rescan_interval"`
	// PollInterval is how soon the file being read is checked again for
	// new lines after a read; while it stays quiet the wait doubles, up to
	// eight times this. (Directory notifications report new pods, files and
	// rotations at once, but not writes: those would be one wake-up per
	// line.) Default 250ms.
	PollInterval time.Duration `yaml:"poll_interval"`
	// BatchWait is the least time between two batches of one file unless
	// the previous batch was full, so a busy file is read in chunks rather
	// than line by line. Default 200ms.
	BatchWait time.Duration `yaml:"batch_wait"`
	// RotateWait is how long a rotated or deleted file is kept open after
	// its last write when no new file shows the writer has moved on.
	// Default 5s.
	RotateWait time.Duration `yaml:"rotate_wait"`
	// PartialWait is how long the first parts of a line split by the
	// runtime (CRI "P") wait for their last part before they are sent as
	// they are. Measured between the runtime's timestamps, so a re-read
	// file splits the same way. Default 5s.
	PartialWait time.Duration `yaml:"partial_wait"`
	// MaxLineBytes is the longest message kept from one line, its parts
	// joined; the rest is dropped and the event flagged
	// (log.flags: ["truncated"]). Default 64KiB.
	MaxLineBytes config.ByteSize `yaml:"max_line_bytes"`
	// ReadBufferBytes is the size of one read from a file; it bounds the
	// memory each file being read takes. Default 128KiB.
	ReadBufferBytes config.ByteSize `yaml:"read_buffer_bytes"`
	// MaxBatchEvents is the most events in one batch. Default 512.
	MaxBatchEvents int `yaml:"max_batch_events"`
	// MaxBatchBytes is the most message bytes in one batch. Default 512KiB.
	MaxBatchBytes config.ByteSize `yaml:"max_batch_bytes"`
	// MaxInflightBatches bounds the batches being read or waiting for the
	// aggregator at once, across all files: with the read buffers, this is
	// what bounds the receiver's memory. The agent's pipeline needs at least
	// this many workers, since each batch waits for the aggregator.
	// Default 4.
	MaxInflightBatches int `yaml:"max_inflight_batches"`
	// RetryMinBackoff is the first wait before a batch that was not
	// acknowledged is read and sent again; it doubles up to
	// RetryMaxBackoff. Default 1s.
	RetryMinBackoff time.Duration `yaml:"retry_min_backoff"`
	// RetryMaxBackoff caps that wait. Default 30s.
	RetryMaxBackoff time.Duration `yaml:"retry_max_backoff"`
	// ForgetAfter drops the position of a file no longer found on disk
	// after this long. Default 1h.
	ForgetAfter time.Duration `yaml:"forget_after"`
	// Multiline joins stack traces and other multi-line messages; the first
	// rule whose match covers a container applies to it. Default none.
	Multiline []MultilineRule `yaml:"multiline"`
	// Kubernetes adds pod labels from the API server. Default off.
	Kubernetes KubernetesConfig `yaml:"kubernetes"`
}

// MultilineRule joins lines into one event: a line that matches
// StartPattern starts an event, every other line continues the one before.
type MultilineRule struct {
	// Match is a glob on "<namespace>/<pod>/<container>", like include.
	// Default "*" (every container).
	Match string `yaml:"match"`
	// StartPattern is a regular expression (Go syntax) matching the first
	// line of an event. Required; DefaultStartPattern is a good start for
	// Java, Python, Go and Node.js services that log with a timestamp or a
	// level first.
	StartPattern string `yaml:"start_pattern"`
	// MaxLines is the most lines in one event; the next line starts a new
	// one. Default 500.
	MaxLines int `yaml:"max_lines"`
	// MaxBytes is the most bytes in one event; a line that would pass it
	// starts a new one. Default 256KiB.
	MaxBytes config.ByteSize `yaml:"max_bytes"`
	// MaxWait is how long an event waits for more lines before it is sent:
	// a line the runtime stamped more than MaxWait after the event's last
	// line starts a new event, read live or read again after a restart.
	// Default 2s.
	MaxWait time.Duration `yaml:"max_wait"`
}

// DefaultStartPattern starts an event at a line that begins with a date or
// time, a log level, a bracketed date or level, a brace (JSON logs), a klog
// header, a Go panic or fatal error, or Java's "Exception in thread".
// Stack frames ("\tat …", "Caused by: …", "  File …", "goroutine 1
// [running]:", "    at …") and Python's "Traceback (most recent call
// last):" continue the event before them: logging.exception and friends
// print the traceback after the message, so it belongs to it (an uncaught
// traceback at exit joins the last line logged).
const DefaultStartPattern = `^(\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}|[A-Z][a-z]{2} [ \d]\d |\[[\dA-Z]|\{|(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|SEVERE|FATAL|CRITICAL)\b|[IWEF]\d{4} |panic: |fatal error: |Exception in thread )`

// SetDefaults implements config.Defaulter for rules decoded from a list.
func (r *MultilineRule) SetDefaults() {
	*r = MultilineRule{Match: "*", MaxLines: 500, MaxBytes: 256 << 10, MaxWait: 2 * time.Second}
}

// KubernetesConfig configures pod labels from the Kubernetes API.
type KubernetesConfig struct {
	// Labels adds each pod's labels as kubernetes.labels.<name> ('.' in
	// names becomes '_'). The agent lists the pods of its node only
	// (fieldSelector spec.nodeName), so its service account needs "list"
	// on pods. Default false.
	Labels bool `yaml:"labels"`
	// APIServer is the API server's URL. Default: from the
	// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT variables.
	APIServer string `yaml:"api_server"`
	// TokenFile is the service account token, read again for every
	// request (bound tokens rotate). Default
	// /var/run/secrets/kubernetes.io/serviceaccount/token.
	TokenFile string `yaml:"token_file"`
	// CAFile verifies the API server. Default
	// /var/run/secrets/kubernetes.io/serviceaccount/ca.crt.
	CAFile string `yaml:"ca_file"`
	// RefreshInterval is how long one watch of the node's pods lasts before
	// it is renewed (the agent lists the pods once, then watches them; any
	// error lists them again). Default 5m.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// Wait is how long the first lines of a pod the API has not told about
	// yet wait for its labels; usually the pod is known before its first
	// line. Default 2s.
	Wait time.Duration `yaml:"wait"`
}

// DefaultConfig returns the receiver's defaults.
func DefaultConfig() Config {
	return Config{
		Roots:              []string{DefaultRoot},
		FileGlob:           "*.log",
		Include:            []string{"*"},
		ExcludeSelf:        true,
		StateDir:           DefaultStateDir,
		StartAt:            StartBeginning,
		CheckpointInterval: time.Second,
		RescanInterval:     10 * time.Second,
		PollInterval:       250 * time.Millisecond,
		BatchWait:          200 * time.Millisecond,
		RotateWait:         5 * time.Second,
		PartialWait:        5 * time.Second,
		MaxLineBytes:       64 << 10,
		ReadBufferBytes:    128 << 10,
		MaxBatchEvents:     512,
		MaxBatchBytes:      512 << 10,
		MaxInflightBatches: 4,
		RetryMinBackoff:    time.Second,
		RetryMaxBackoff:    30 * time.Second,
		ForgetAfter:        time.Hour,
		Kubernetes: KubernetesConfig{
			TokenFile:       ServiceAccountDir + "/token",
			CAFile:          ServiceAccountDir + "/ca.crt",
			RefreshInterval: 5 * time.Minute,
			Wait:            2 * time.Second,
		},
	}
}

// Validate checks the settings.
func (c *Config) Validate() error {
	var errs config.Errors
	if !c.Enabled {
		return nil
	}
	if len(c.Roots) == 0 {
		errs.Addf("roots", "must name at least one directory")
	}
	for i, r := range c.Roots {
		if !filepath.IsAbs(r) {
			errs.Addf(fmt.Sprintf("roots[%d]", i), "must be an absolute path, got %q", r)
		}
	}
	if c.FileGlob == "" {
		errs.Addf("file_glob", "must not be empty")
	} else if _, err := path.Match(c.FileGlob, ""); err != nil {
		errs.Addf("file_glob", "%v", err)
	}
	for i, g := range c.Include {
		if err := validSelector(g); err != nil {
			errs.Addf(fmt.Sprintf("include[%d]", i), "%q: %v", g, err)
		}
	}
	for i, g := range c.Exclude {
		if err := validSelector(g); err != nil {
			errs.Addf(fmt.Sprintf("exclude[%d]", i), "%q: %v", g, err)
		}
	}
	if c.StateDir == "" {
		errs.Addf("state_dir", "must name a directory")
	}
	if c.StartAt != StartBeginning && c.StartAt != StartEnd {
		errs.Addf("start_at", "must be %q or %q, got %q", StartBeginning, StartEnd, c.StartAt)
	}
	durations := []struct {
		key      string
		v, least time.Duration
	}{
		{"checkpoint_interval", c.CheckpointInterval, 0},
		{"rescan_interval", c.RescanInterval, 100 * time.Millisecond},
		{"poll_interval", c.PollInterval, 10 * time.Millisecond},
		{"batch_wait", c.BatchWait, 0},
		{"rotate_wait", c.RotateWait, 10 * time.Millisecond},
		{"partial_wait", c.PartialWait, 10 * time.Millisecond},
		{"retry_min_backoff", c.RetryMinBackoff, time.Millisecond},
		{"forget_after", c.ForgetAfter, time.Minute},
	}
	for _, d := range durations {
		if d.v < d.least {
			errs.Addf(d.key, "must be at least %s, got %s", d.least, d.v)
		}
	}
	if c.RetryMaxBackoff < c.RetryMinBackoff {
		errs.Addf("retry_max_backoff", "must be at least retry_min_backoff (%s), got %s", c.RetryMinBackoff, c.RetryMaxBackoff)
	}
	if c.MaxLineBytes < 256 || c.MaxLineBytes > 16<<20 {
		errs.Addf("max_line_bytes", "must be between 256 and 16MiB, got %s", c.MaxLineBytes)
	}
	if c.ReadBufferBytes < 4<<10 || c.ReadBufferBytes > 16<<20 {
		errs.Addf("read_buffer_bytes", "must be between 4KiB and 16MiB, got %s", c.ReadBufferBytes)
	}
	if c.MaxBatchEvents < 1 || c.MaxBatchEvents > 1<<16 {
		errs.Addf("max_batch_events", "must be between 1 and 65536, got %d", c.MaxBatchEvents)
	}
	if c.MaxBatchBytes < 4<<10 || c.MaxBatchBytes > 64<<20 {
		errs.Addf("max_batch_bytes", "must be between 4KiB and 64MiB, got %s", c.MaxBatchBytes)
	}
	if c.MaxInflightBatches < 1 || c.MaxInflightBatches > 1024 {
		errs.Addf("max_inflight_batches", "must be between 1 and 1024, got %d", c.MaxInflightBatches)
	}
	for i := range c.Multiline {
		errs.Nest(fmt.Sprintf("multiline[%d]", i), c.Multiline[i].Validate())
	}
	errs.Nest("kubernetes", c.Kubernetes.validate(c.resolveNodeName()))
	return errs.Err()
}

// Validate checks one multiline rule.
func (r *MultilineRule) Validate() error {
	var errs config.Errors
	if err := validSelector(r.Match); err != nil {
		errs.Addf("match", "%q: %v", r.Match, err)
	}
	if r.StartPattern == "" {
		errs.Addf("start_pattern", "is required (podlog.DefaultStartPattern suits most services)")
	} else if _, err := regexp.Compile(r.StartPattern); err != nil {
		errs.Addf("start_pattern", "%v", err)
	}
	if r.MaxLines < 2 || r.MaxLines > 100000 {
		errs.Addf("max_lines", "must be between 2 and 100000, got %d", r.MaxLines)
	}
	if r.MaxBytes < 1024 || r.MaxBytes > 16<<20 {
		errs.Addf("max_bytes", "must be between 1KiB and 16MiB, got %s", r.MaxBytes)
	}
	if r.MaxWait < 10*time.Millisecond {
		errs.Addf("max_wait", "must be at least 10ms, got %s", r.MaxWait)
	}
	return errs.Err()
}

func (k *KubernetesConfig) validate(node string) error {
	var errs config.Errors
	if !k.Labels {
		return nil
	}
	if k.apiServer() == "" {
		errs.Addf("api_server", "must be set outside a cluster (KUBERNETES_SERVICE_HOST is not set)")
	}
	if node == "" {
		errs.Addf("labels", "needs the node name: set node_name or NODE_NAME")
	}
	if _, err := os.Stat(k.TokenFile); err != nil {
		errs.Addf("token_file", "%v", err)
	}
	if k.CAFile != "" {
		if _, err := os.Stat(k.CAFile); err != nil {
			errs.Addf("ca_file", "%v", err)
		}
	}
	if k.RefreshInterval < time.Second {
		errs.Addf("refresh_interval", "must be at least 1s, got %s", k.RefreshInterval)
	}
	if k.Wait < 0 {
		errs.Addf("wait", "must not be negative, got %s", k.Wait)
	}
	return errs.Err()
}

func (k *KubernetesConfig) apiServer() string {
	if k.APIServer != "" {
		return k.APIServer
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" {
		return ""
	}
	if port == "" {
		port = "443"
	}
	if len(host) > 0 && host[0] != '[' && containsColon(host) {
		host = "[" + host + "]" // IPv6
	}
	return "https://" + host + ":" + port
}

func containsColon(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return true
		}
	}
	return false
}

// resolveNodeName is node_name, else NODE_NAME, else the host name.
func (c *Config) resolveNodeName() string {
	if c.NodeName != "" {
		return c.NodeName
	}
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}

var (
	_ config.Validator = (*Config)(nil)
	_ config.Validator = (*MultilineRule)(nil)
	_ config.Defaulter = (*MultilineRule)(nil)
)
