package spool

import (
	"time"

	"github.com/leitstand/leitstand/internal/config"
)

// When-full policies of the spool.
const (
	// Block makes the pipeline wait for room (receivers then refuse with
	// 429 once their own wait runs out).
	Block = "block"
	// Refuse turns the batch away at once; HTTP receivers answer 429.
	Refuse = "refuse"
	// DropOldest deletes the oldest segment, undelivered records included,
	// and counts them.
	DropOldest = "drop_oldest"
)

// Config of the spool.
type Config struct {
	// Dir holds segments and cursors. Default: spool/ under the data directory.
	Dir string `yaml:"dir"`
	// SegmentBytes starts a new segment file when the current one is this
	// large. Default 64MiB.
	SegmentBytes config.ByteSize `yaml:"segment_bytes"`
	// MaxBytes caps the spool on disk. Default 10GiB.
	MaxBytes config.ByteSize `yaml:"max_bytes"`
	// WhenFull is block, refuse or drop_oldest. Default block.
	WhenFull string `yaml:"when_full"`
	// BlockTimeout is how long block waits for room before refusing.
	// Default 5s.
	BlockTimeout time.Duration `yaml:"block_timeout"`
	// Fsync makes an append wait until its record is synced to disk before
	// the sender is answered. Default true.
	Fsync bool `yaml:"fsync"`
	// SyncInterval is the group-commit window: appends arriving within it
	// share one fsync. Default 10ms.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// SyncBytes syncs before the window ends once this much is pending.
	// Default 4MiB.
	SyncBytes config.ByteSize `yaml:"sync_bytes"`
	// ReadBatchEvents is the most events handed to a sink in one call.
	// Default 2000.
	ReadBatchEvents int `yaml:"read_batch_events"`
	// RetryInitial is the first wait after a sink failed a batch; it doubles,
	// with jitter, up to RetryMax. Default 500ms.
	RetryInitial time.Duration `yaml:"retry_initial"`
	// RetryMax caps the wait between retries. Default 30s.
	RetryMax time.Duration `yaml:"retry_max"`
	// CursorSyncInterval is how often delivery positions are saved; after a
	// crash at most this much is delivered again. Default 1s.
	CursorSyncInterval time.Duration `yaml:"cursor_sync_interval"`
}

// DefaultConfig returns the spool's defaults; Dir is left for the caller.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:       64 << 20,
		MaxBytes:           10 << 30,
		WhenFull:           Block,
		BlockTimeout:       5 * time.Second,
		Fsync:              true,
		SyncInterval:       10 * time.Millisecond,
		SyncBytes:          4 << 20,
		ReadBatchEvents:    2000,
		RetryInitial:       500 * time.Millisecond,
		RetryMax:           30 * time.Second,
		CursorSyncInterval: time.Second,
	}
}

// Validate checks the settings.
func (c *Config) Validate() error {
	var errs config.Errors
	if c.Dir == "" {
		errs.Addf("dir", "must be set")
	}
	if c.SegmentBytes < 64<<10 || c.SegmentBytes > 1<<30 {
		errs.Addf("segment_bytes", "must be between 64KiB and 1GiB, got %s", c.SegmentBytes)
	}
	if c.MaxBytes < 2*c.SegmentBytes {
		errs.Addf("max_bytes", "must be at least two segments (%s), got %s", 2*c.SegmentBytes, c.MaxBytes)
	}
	switch c.WhenFull {
	case Block, Refuse, DropOldest:
	default:
		errs.Addf("when_full", "must be %q, %q or %q, got %q", Block, Refuse, DropOldest, c.WhenFull)
	}
	if c.BlockTimeout < 0 {
		errs.Addf("block_timeout", "must not be negative, got %s", c.BlockTimeout)
	}
	if c.SyncInterval < 0 || c.SyncInterval > time.Second {
		errs.Addf("sync_interval", "must be between 0 and 1s, got %s", c.SyncInterval)
	}
	if c.SyncBytes < 4<<10 {
		errs.Addf("sync_bytes", "must be at least 4KiB, got %s", c.SyncBytes)
	}
	if c.ReadBatchEvents < 1 || c.ReadBatchEvents > 100000 {
		errs.Addf("read_batch_events", "must be between 1 and 100000, got %d", c.ReadBatchEvents)
	}
	if c.RetryInitial < time.Millisecond {
		errs.Addf("retry_initial", "must be at least 1ms, got %s", c.RetryInitial)
	}
	if c.RetryMax < c.RetryInitial {
		errs.Addf("retry_max", "must be at least retry_initial (%s), got %s", c.RetryInitial, c.RetryMax)
	}
	if c.CursorSyncInterval < 10*time.Millisecond {
		errs.Addf("cursor_sync_interval", "must be at least 10ms, got %s", c.CursorSyncInterval)
	}
	return errs.Err()
}
