package sentry

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rate-limit categories, indexes into keyInfo.limits (the order of
// rateCategories).
const (
	catError = iota
	catTransaction
	catSpan
	catLogItem
	catMonitor
	catAttachment
	catSession
	catProfile
	catReplay
	catFeedback
	numCategories
	catNone = -1 // client reports: never limited
)

// itemCategory maps an item type to its rate-limit category, as SDKs do.
func itemCategory(typ string) int {
	switch typ {
	case "event":
		return catError
	case "transaction":
		return catTransaction
	case "span", "otel_span":
		return catSpan
	case "log", "otel_log":
		return catLogItem
	case "check_in":
		return catMonitor
	case "attachment":
		return catAttachment
	case "session", "sessions":
		return catSession
	case "profile", "profile_chunk":
		return catProfile
	case "replay_event", "replay_recording", "replay_video":
		return catReplay
	case "feedback", "user_report":
		return catFeedback
	}
	return catNone
}

// bucket is a token bucket.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rl RateLimit) *bucket {
	burst := float64(rl.Burst)
	if burst <= 0 {
		burst = math.Max(1, math.Ceil(rl.PerSecond))
	}
	return &bucket{rate: rl.PerSecond, burst: burst, tokens: burst}
}

// take takes n tokens, all or none. When it cannot, it returns how long
// until n tokens will be there (at least a second, as Retry-After counts
// whole seconds).
func (b *bucket) take(now time.Time, n int) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	need := float64(n)
	if need <= b.tokens {
		b.tokens -= need
		return true, 0
	}
	// A request larger than the burst can never pass: wait for a full bucket.
	missing := math.Min(need, b.burst) - b.tokens
	wait := time.Duration(missing / b.rate * float64(time.Second))
	return false, max(wait, time.Second)
}

// rateLimitHeader formats X-Sentry-Rate-Limits for the limited categories
// ("7:error;attachment:key:rate_limited"): SDKs stop sending those
// categories for that many seconds.
func rateLimitHeader(limited [numCategories]time.Duration) (string, time.Duration) {
	var sb strings.Builder
	var longest time.Duration
	for _, wait := range limited {
		longest = max(longest, wait)
	}
	if longest == 0 {
		return "", 0
	}
	// One quota per distinct wait keeps each category's own time.
	done := [numCategories]bool{}
	for c, wait := range limited {
		if wait <= 0 || done[c] {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatInt(int64(math.Ceil(wait.Seconds())), 10))
		sb.WriteByte(':')
		first := true
		for d := c; d < numCategories; d++ {
			if limited[d] == wait && !done[d] {
				if !first {
					sb.WriteByte(';')
				}
				first = false
				sb.WriteString(rateCategories[d])
				done[d] = true
			}
		}
		sb.WriteString(":key:rate_limited")
	}
	return sb.String(), longest
}
