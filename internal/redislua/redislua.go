// Package redislua holds the project's Lua scripts for Redis (SPEC §9): the .lua files
// embedded in the binary, their manifest (sha256, KEYS/ARGV and reply layouts, the
// contract version), and a Script type that runs a script by EVALSHA and sends its
// source on NOSCRIPT.
package redislua

import (
	"context"
	"crypto/sha1"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/redis/go-redis/v9"
)

// AppendArg appends v to a request.lua ARGV string as the script reads it: an 8-byte
// little-endian IEEE-754 double, exact for |v| < 2^53 (every value the engine sends:
// Params.Validate bounds them).
func AppendArg(b []byte, v int64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(v)))
}

// The layout of request.lua's arguments and reply (see manifest.json). One call
// decides one or more requests; the Args counts are values in ARGV[1].
const (
	// ArgsHeader is the number of ARGV values before the parameter groups (r, g).
	ArgsHeader = 2
	// ArgsPerGroup is the number of ARGV values per parameter group.
	ArgsPerGroup = 9
	// ArgsPerRequest is the number of ARGV values before a request's limits (now, n).
	ArgsPerRequest = 2
	// ArgsPerLimit is the number of ARGV values per limit (group, cost).
	ArgsPerLimit = 2
	// ReplyHeader is the number of reply integers before the first request (none).
	ReplyHeader = 0
	// ReplyPerRequest is the number of reply integers before a request's decisions (now, allowed).
	ReplyPerRequest = 2
	// ReplyPerLimit is the number of reply integers per limit (the five Decision fields).
	ReplyPerLimit = 5
)

//go:embed *.lua
var files embed.FS

//go:embed manifest.json
var manifestJSON []byte

//go:embed request.lua
var requestSource string

// Request evaluates every limit of one request atomically (request.lua).
var Request = NewScript(requestSource)

// Files returns the embedded .lua files (for the drift gate).
func Files() embed.FS { return files }

// Manifest is manifest.json: the contract between the Go engine and the scripts.
//
// ContractVersion names the contract, and ContractDigests ties each version to its
// content, so that the two move together (SPEC §9). The content is the manifest's
// description of the scripts (all of it but contractVersion, contractDigests and the
// scripts' sha256) and the project's golden vectors in testdata/ (less their
// contractVersion field), as canonical JSON; ContractDigests maps every version from 1
// to the current one to the sha256 of that content. The drift gate
// (contract_digest_test.go) fails when the content changes under the same version
// (current's digest differs) until the change is classed: a new layout or decision
// takes a new version, vectors added for what the version already decides are
// recorded under it. It fails too when a version is bumped over the same content (two
// versions with one digest): bumping the version label, in the manifest or in the
// vector files, does not count as a change. Earlier versions' entries are never
// removed or rewritten: the record says which vectors each version was proven against.
type Manifest struct {
	ContractVersion string            `json:"contractVersion"`
	ContractDigests map[string]string `json:"contractDigests"`
	DecisionFields  []string          `json:"decisionFields"`
	AlgorithmCodes  map[string]int    `json:"algorithmCodes"`
	Scripts         []ManifestScript  `json:"scripts"`
}

// ManifestScript describes one script.
type ManifestScript struct {
	Name   string          `json:"name"`
	File   string          `json:"file"`
	SHA256 string          `json:"sha256"`
	Keys   string          `json:"keys"`
	Argv   ManifestArgv    `json:"argv"`
	Reply  ManifestReply   `json:"reply"`
	Notes  json.RawMessage `json:"notes,omitempty"`
}

// ManifestArgv is a script's ARGV layout: a header, the parameter groups, then per
// request its own header and a few values per limit.
type ManifestArgv struct {
	Header     []string `json:"header"`
	PerGroup   []string `json:"perGroup"`
	PerRequest []string `json:"perRequest"`
	PerLimit   []string `json:"perLimit"`
}

// ManifestReply is a script's reply layout, in the same shape.
type ManifestReply struct {
	Header     []string `json:"header"`
	PerRequest []string `json:"perRequest"`
	PerLimit   []string `json:"perLimit"`
}

// LoadManifest parses the embedded manifest.
func LoadManifest() (*Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(strings.NewReader(string(manifestJSON)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("redislua: manifest.json: %w", err)
	}
	return &m, nil
}

// Script is a Lua script run by EVALSHA with the SHA-1 Redis computes for it; when the
// server does not have it (NOSCRIPT: a restart, SCRIPT FLUSH, a failover) the call is
// sent once more with its source, which also caches it for the next EVALSHA. Safe for
// concurrent use.
type Script struct {
	src  string
	hash string
}

// NewScript returns a Script for src.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{src: src, hash: hex.EncodeToString(sum[:])}
}

// SHA1 is the lowercase hex SHA-1 of the source, as SCRIPT LOAD returns it.
func (s *Script) SHA1() string { return s.hash }

// Source returns the script's text.
func (s *Script) Source() string { return s.src }

// Command returns a call of the script whose reply, an array of integers, is read
// straight into an []int64. args is the whole command: its first two slots are filled
// here (EVALSHA and the SHA-1, or EVAL and the source with withSource), then the number
// of keys, the keys (from position 3, which a cluster client routes by) and ARGV.
func (s *Script) Command(ctx context.Context, args []any, withSource bool) *redis.IntSliceCmd {
	args[0], args[1] = "evalsha", s.hash
	if withSource {
		args[0], args[1] = "eval", s.src
	}
	cmd := redis.NewIntSliceCmd(ctx, args...)
	cmd.SetFirstKeyPos(3)
	return cmd
}

// Run sends the script call args (as for Command) by EVALSHA and, on NOSCRIPT, once
// more with its source. A NOSCRIPT reply means the script did not run, so the second
// call cannot apply it twice.
func (s *Script) Run(ctx context.Context, c interface {
	Process(context.Context, redis.Cmder) error
}, args []any) ([]int64, error) {
	cmd := s.Command(ctx, args, false)
	if err := c.Process(ctx, cmd); err != nil && IsNoScript(err) {
		cmd = s.Command(ctx, args, true)
		_ = c.Process(ctx, cmd)
	}
	return cmd.Result()
}

// IsNoScript reports whether err is Redis's NOSCRIPT: the server does not have the
// script (a restart, SCRIPT FLUSH, a failover), and the call did not run.
func IsNoScript(err error) bool {
	return errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT")
}
