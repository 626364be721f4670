// Package conformance reads golden-vector files (SPEC §8) and replays them through a
// limiter.Engine, comparing every Decision field. The throttlekit file and the project's
// own testdata/ files share the format; the project adds the "request" primitive.
package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"os"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// File is one golden-vector file.
type File struct {
	ContractVersion string   `json:"contractVersion"`
	DecisionFields  []string `json:"decisionFields"`
	Suites          []Suite  `json:"suites"`
}

// Suite is a rateLimit, tokenBudget or request suite. Throttlekit's lease suites are
// skipped by Replay; any other primitive is an error.
type Suite struct {
	Primitive string     `json:"primitive"`
	Name      string     `json:"name"`
	Strategy  *Strategy  `json:"strategy,omitempty"` // rateLimit
	Key       string     `json:"key,omitempty"`
	Options   Options    `json:"options,omitempty"` // tokenBudget
	Limits    []LimitDef `json:"limits,omitempty"`  // request
	Ops       []Op       `json:"ops"`
}

// Strategy is a rateLimit suite's algorithm and options.
type Strategy struct {
	Kind    string  `json:"kind"`
	Options Options `json:"options"`
}

// LimitDef is one limit of a request suite.
type LimitDef struct {
	Kind    string  `json:"kind"`
	Options Options `json:"options"`
	Key     string  `json:"key"`
	Shadow  bool    `json:"shadow,omitempty"`
}

// Options holds option values as exact decimal text (json.Number), so 2.5 stays 5/2.
type Options map[string]json.Number

// Op is one step of a suite. rateLimit uses Cost, tokenBudget Tokens, request Costs.
type Op struct {
	Now    int64   `json:"now"`
	Cost   *int64  `json:"cost,omitempty"`
	Tokens *int64  `json:"tokens,omitempty"`
	Costs  []int64 `json:"costs,omitempty"`
	Expect Expect  `json:"expect"`
}

// Expect is a Decision, or for request suites the overall answer and per-limit decisions.
type Expect struct {
	Decision
	Decisions []Decision `json:"decisions,omitempty"`
}

// Decision is the JSON form of limiter.Decision.
type Decision struct {
	Allowed      bool  `json:"allowed"`
	Limit        int64 `json:"limit"`
	Remaining    int64 `json:"remaining"`
	ResetAt      int64 `json:"resetAt"`
	RetryAfterMs int64 `json:"retryAfterMs"`
}

// Load reads and parses a vector file. A JSON error says FILE:LINE:COL.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, decodeError(path, data, err)
	}
	// A field the runner would not read is refused, not ignored.
	if err := checkShape(path, data); err != nil {
		return nil, err
	}
	return &f, nil
}

// Params maps a vector strategy onto limiter.Params (SPEC §8 names) and validates it.
func Params(kind string, o Options) (*limiter.Params, error) {
	var p limiter.Params
	var err error
	get := func(name string) int64 {
		v, e := o.integer(name)
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	switch kind {
	case "gcra":
		p = limiter.Params{Algorithm: limiter.GCRA, Limit: get("limit"), PeriodMs: get("periodMs"), Burst: get("burst")}
	case "tokenBucket", "token_bucket":
		p = limiter.Params{Algorithm: limiter.TokenBucket, Burst: get("capacity")}
		p.Limit, p.PeriodMs, err = o.refill()
	case "fixedWindow", "fixed_window":
		p = limiter.Params{Algorithm: limiter.FixedWindow, Limit: get("limit"), PeriodMs: get("windowMs")}
	case "slidingWindow", "sliding_window":
		p = limiter.Params{Algorithm: limiter.SlidingWindow, Limit: get("limit"), PeriodMs: get("windowMs")}
		if _, ok := o["buckets"]; ok {
			p.Buckets = get("buckets")
		}
	case "slidingWindowLog", "sliding_window_log":
		p = limiter.Params{Algorithm: limiter.SlidingWindowLog, Limit: get("limit"), PeriodMs: get("windowMs")}
	case "tokenBudget", "token_budget":
		p = limiter.Params{Algorithm: limiter.TokenBudget, Limit: get("budget"), PeriodMs: get("windowMs")}
	default:
		return nil, fmt.Errorf("unknown strategy kind %q", kind)
	}
	if err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// integer reads an option that must be a whole number; a missing option reads as 0.
func (o Options) integer(name string) (int64, error) {
	v, ok := o[name]
	if !ok {
		return 0, nil
	}
	n, err := v.Int64()
	if err != nil {
		return 0, fmt.Errorf("option %s: %q is not an integer", name, v)
	}
	return n, nil
}

// refill returns a token bucket's rate as tokens per period: refillPerSec read as an
// exact fraction, or refill/periodMs as given.
func (o Options) refill() (tokens, periodMs int64, err error) {
	if v, ok := o["refillPerSec"]; ok {
		r, ok := new(big.Rat).SetString(string(v))
		if !ok || r.Sign() <= 0 {
			return 0, 0, fmt.Errorf("option refillPerSec: %q is not a positive number", v)
		}
		r.Quo(r, big.NewRat(1000, 1)) // tokens per ms
		if !r.Num().IsInt64() || !r.Denom().IsInt64() {
			return 0, 0, fmt.Errorf("option refillPerSec: %q is too large", v)
		}
		return r.Num().Int64(), r.Denom().Int64(), nil
	}
	if tokens, err = o.integer("refill"); err != nil {
		return 0, 0, err
	}
	periodMs, err = o.integer("periodMs")
	return tokens, periodMs, err
}
