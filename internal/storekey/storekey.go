// Package storekey builds the storage key of one limit for one request descriptor.
//
// Encoding (docs/redis.md#keys): a key is the configured prefix followed by
// length-prefixed parts, each written as <decimal byte length> ":" <bytes>:
//
//	<prefix><len:domain><len:limit id><len:algorithm/period><len:key><len:value>...
//
// Length prefixes make the encoding injective: `a_b=c` and `a=b_c` can never share a
// key, whatever bytes the parts contain. A level configured with share_threshold
// (descriptors.Level.Shared) is written with its pattern in place of the request's
// value, so every value the pattern matches charges one counter. That cannot merge
// counters that should stay apart: the limit id names the configured path, so every key
// of that limit has the pattern at that level, and no key of another limit has its id.
//
// On Redis Cluster the domain part can be wrapped in {} so that every key of a domain
// hashes to one slot (Builder.ClusterTag). A key longer than MaxLen is replaced by the
// prefix, the domain tag and a SHA-256 of the full encoding, so keys stay bounded
// however long the runtime values are.
package storekey

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// DefaultMaxLen bounds key length in bytes; MaxMaxLen is the largest bound accepted.
const (
	DefaultMaxLen = 512
	MaxMaxLen     = 64 << 10
)

// Builder encodes keys. The zero value is not usable; use New.
type Builder struct {
	prefix string
	maxLen int
	// ClusterTag, when true, wraps the domain in a Redis Cluster hash tag so that all
	// keys of one domain share a slot (one script call per request on a cluster).
	ClusterTag bool
}

// New returns a Builder with the given prefix (e.g. "rlx:") and length bound (0 = default).
func New(prefix string, maxLen int) *Builder {
	if maxLen <= 0 {
		maxLen = DefaultMaxLen
	}
	return &Builder{prefix: prefix, maxLen: maxLen}
}

// Key returns the storage key for the limit identified by limitID (unique within the
// domain), evaluated with params, for the request descriptor entries.
func (b *Builder) Key(domain, limitID string, p *limiter.Params, entries []descriptors.Entry) string {
	return b.key(domain, limitID, p, entries, nil)
}

// LimitKey returns the storage key of a configured limit for the request descriptor
// entries that matched it: Key with the limit's id and parameters, and the pattern in
// place of the value at each share_threshold level. For a limit without such a level
// it equals Key, so counters survive enabling the feature elsewhere.
func (b *Builder) LimitKey(domain string, l *descriptors.Limit, entries []descriptors.Entry) string {
	return b.key(domain, l.ID, &l.Params, entries, l.Levels)
}

// valueAt is the value written for entry i: the pattern of a shared level, else the
// request's own.
func valueAt(entries []descriptors.Entry, levels []descriptors.Level, i int) string {
	if i < len(levels) && levels[i].Shared {
		return levels[i].Value
	}
	return entries[i].Value
}

func (b *Builder) key(domain, limitID string, p *limiter.Params, entries []descriptors.Entry, levels []descriptors.Level) string {
	n := len(b.prefix) + len(domain) + len(limitID) + 48
	for i, e := range entries {
		n += len(e.Key) + len(valueAt(entries, levels, i)) + 8
	}
	var stack [256]byte // typical keys are built on the stack: the string is the one allocation
	buf := stack[:0]
	if n > len(stack) {
		buf = make([]byte, 0, n)
	}
	buf = append(buf, b.prefix...)
	buf = b.appendDomain(buf, domain)
	buf = appendPart(buf, limitID)
	buf = appendIdentity(buf, p)
	for i, e := range entries {
		buf = appendPart(buf, e.Key)
		buf = appendPart(buf, valueAt(entries, levels, i))
	}
	if len(buf) <= b.maxLen {
		return string(buf)
	}
	sum := sha256.Sum256(buf)
	out := make([]byte, 0, len(b.prefix)+len(domain)+80)
	out = append(out, b.prefix...)
	out = b.appendDomain(out, domain)
	out = append(out, "h:"...)
	out = hex.AppendEncode(out, sum[:])
	return string(out)
}

// appendDomain writes the domain part; with ClusterTag it is a {hash tag}. A domain that
// is length-prefixed inside the braces, so the encoding stays injective whatever bytes it
// holds, and every key of the domain carries the same tag.
func (b *Builder) appendDomain(buf []byte, domain string) []byte {
	if !b.ClusterTag {
		return appendPart(buf, domain)
	}
	buf = append(buf, '{')
	buf = appendPart(buf, domain)
	return append(buf, '}')
}

// appendIdentity encodes what the stored state means: the algorithm and its period,
// plus what scales the state (sub-buckets; the reduced rate of gcra and token_bucket,
// whose stored fractions are in units of that rate). A reload that changes any of these
// starts from a cold key instead of misreading old state; one that only changes a quota
// or a burst keeps its counts.
func appendIdentity(buf []byte, p *limiter.Params) []byte {
	var id [64]byte
	b := append(id[:0], p.Algorithm.String()...)
	b = append(b, '/')
	b = strconv.AppendInt(b, p.PeriodMs, 10)
	switch p.Algorithm {
	case limiter.SlidingWindow:
		b = append(b, '/')
		b = strconv.AppendInt(b, p.Buckets, 10)
	case limiter.GCRA, limiter.TokenBucket:
		b = append(b, '/')
		b = strconv.AppendInt(b, p.Num(), 10)
		b = append(b, '/')
		b = strconv.AppendInt(b, p.Den(), 10)
	}
	buf = strconv.AppendInt(buf, int64(len(b)), 10)
	buf = append(buf, ':')
	return append(buf, b...)
}

func appendPart(buf []byte, s string) []byte {
	buf = strconv.AppendInt(buf, int64(len(s)), 10)
	buf = append(buf, ':')
	return append(buf, s...)
}
