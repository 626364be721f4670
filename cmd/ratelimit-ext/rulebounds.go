package main

import (
	"fmt"
	"slices"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// rulesOverBound lists what in the rules only a request over one of b's bounds could
// reach: a domain longer than --max-domain-bytes, a descriptor key longer than
// --max-entry-key-bytes, a limit nested deeper than --max-entries. Such a request is
// refused with InvalidArgument and Envoy's failure mode decides it (by default it passes),
// so those limits are never enforced. The rules load anyway: the bounds are the
// server's flags, not part of the rules, and another replica may run with others.
// Each domain and each over-long key is named once, at its first limit; at most
// maxOverBound are listed, of total.
func rulesOverBound(rs *descriptors.RuleSet, b decide.Bounds) (list []descriptors.ConfigError, total int) {
	var out []descriptors.ConfigError
	for _, d := range rs.Domains() {
		limits := rs.Limits(d)
		if len(limits) == 0 {
			continue
		}
		if len(d) > b.MaxDomainLen {
			e := overBound(limits[0], "domain", fmt.Sprintf("the domain is %d bytes", len(d)), "--max-domain-bytes", b.MaxDomainLen)
			e.Line = 0 // the whole file's
			out = append(out, e)
		}
		named := map[string]bool{}
		for _, l := range limits {
			if len(l.Levels) > b.MaxEntries {
				out = append(out, overBound(l, "descriptors", fmt.Sprintf("the limit is %d levels deep", len(l.Levels)), "--max-entries", b.MaxEntries))
			}
			for _, lv := range l.Levels {
				if len(lv.Key) > b.MaxKeyLen && !named[lv.Key] {
					named[lv.Key] = true
					out = append(out, overBound(l, "key", fmt.Sprintf("the key %s is %d bytes", abbrev(lv.Key), len(lv.Key)), "--max-entry-key-bytes", b.MaxKeyLen))
				}
			}
		}
	}
	return out[:min(len(out), maxOverBound)], len(out)
}

// ruleBoundFlags registers the request bounds rules can be over (rulesOverBound):
// serve's, and validate's, so that it warns as serve does with the same settings.
func ruleBoundFlags(f *envFlags, b *decide.Bounds) {
	f.IntVar(&b.MaxEntries, "max-entries", b.MaxEntries, "entries per descriptor")
	f.IntVar(&b.MaxKeyLen, "max-entry-key-bytes", b.MaxKeyLen, "bytes of one descriptor entry key")
	f.IntVar(&b.MaxDomainLen, "max-domain-bytes", b.MaxDomainLen, "bytes of the domain")
}

// checkRuleBounds refuses a bound of ruleBoundFlags below 1, as checkCounts refuses
// serve's other counts: a request bound of 0 would refuse every request.
func checkRuleBounds(b decide.Bounds) error {
	for _, n := range []struct {
		flag  string
		value int
	}{
		{"max-entries", b.MaxEntries}, {"max-entry-key-bytes", b.MaxKeyLen}, {"max-domain-bytes", b.MaxDomainLen},
	} {
		if n.value < 1 {
			return fmt.Errorf("--%s %d: want at least 1", n.flag, n.value)
		}
	}
	return nil
}

// maxOverBound bounds the lines rulesOverBound's caller prints.
const maxOverBound = 10

// ruleWarnings are the rule set's own warnings followed by rulesOverBound's for b: at
// most the first of each, and how many there are in all.
func ruleWarnings(rs *descriptors.RuleSet, b decide.Bounds) ([]descriptors.ConfigError, int) {
	ws, total := rs.Warnings()
	over, overTotal := rulesOverBound(rs, b)
	return slices.Concat(ws, over), total + overTotal // a new slice: ws is the rule set's
}

func overBound(l *descriptors.Limit, field, what, flag string, bound int) descriptors.ConfigError {
	return descriptors.ConfigError{File: l.File, Line: l.Line, Field: field,
		Msg: fmt.Sprintf("%s, above %s (%d): requests that would match are refused and Envoy's failure mode decides them, so these limits are never enforced", what, flag, bound)}
}

// abbrev quotes s, cut to its first 32 characters when longer than 40 bytes.
func abbrev(s string) string {
	if len(s) <= 40 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%.32q…", s) // the precision counts runes: no character is split
}
