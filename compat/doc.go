// Package compat holds the differential test against envoyproxy/ratelimit: its
// service_cmd binary and this service run side by side, each on its own private
// redis-server, from the same directory of rule files written in envoyproxy/ratelimit's
// own format and with the same envoyproxy/ratelimit environment variables; the same
// ShouldRateLimit requests go to both and their answers are compared. TestCompatXDS does
// the same with the rules from one xDS server, as Envoy Gateway delivers them, and
// compares an update and two configs both must refuse; the TestCompatMergedDomains
// tests do it with MERGE_DOMAIN_CONFIG=true on domains split over several files (the
// random ones in TestCompatMergedRandom, and over xDS in TestCompatMergedRandomXDS).
// It is the evidence behind docs/migrating.md's "rules load as they are and match the
// same way".
//
// `make test` runs it on a fixed seed, and `make compat` alone on a new one; both build
// the pinned reference first (from the Go module proxy). Without the reference binary
// (REFERENCE_BIN) or redis-server it skips loudly, and fails under CI=true.
// docs/testing.md describes it.
package compat
