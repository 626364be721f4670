package main

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/breaker"
	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/legacyenv"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/metrics"
)

// storeConfig holds what happens when the store fails (docs/reliability.md).
type storeConfig struct {
	policy, domainPolicies string
	breakerThreshold       int
	probeInterval          time.Duration
	parsed                 decide.FailurePolicy // the two above, by check; no local engine yet
}

func storeFlags(f *envFlags, s *storeConfig) {
	f.StringVar(&s.policy, "store-failure-policy", "fail_closed", "when the store fails: fail_closed (UNAVAILABLE; Envoy's failure_mode_deny decides), fail_open (OK) or local (this replica's memory engine)")
	f.StringVar(&s.domainPolicies, "store-failure-policy-domains", "", "per-domain overrides, e.g. edge=fail_open,billing=fail_closed")
	f.IntVar(&s.breakerThreshold, "store-breaker-threshold", breaker.DefaultThreshold, "consecutive store failures that open the circuit breaker")
	f.DurationVar(&s.probeInterval, "store-probe-interval", breaker.DefaultProbeInterval, "while the circuit is open, how often the store is probed")
}

// policyWant ends the errors about a policy name. decide.ParsePolicy's own error names
// its subject ("unknown store failure policy"), which the flag's name already does.
const policyWant = "want fail_closed, fail_open or local"

// check parses the policy flags with the other settings, so that a mistake in them stops
// the start in the flags' words, whichever engine serves.
func (s *storeConfig) check() error {
	var err error
	if s.parsed.Default, err = decide.ParsePolicy(s.policy); err != nil {
		return fmt.Errorf("--store-failure-policy %q: %s", s.policy, policyWant)
	}
	for _, item := range strings.Split(s.domainPolicies, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		domain, name, ok := strings.Cut(item, "=")
		if !ok || domain == "" {
			return fmt.Errorf("--store-failure-policy-domains: %q is not domain=policy", item)
		}
		p, err := decide.ParsePolicy(name)
		if err != nil {
			return fmt.Errorf("--store-failure-policy-domains: %s=%s: %s", domain, name, policyWant)
		}
		if s.parsed.PerDomain == nil {
			s.parsed.PerDomain = map[string]decide.Policy{}
		}
		if q, ok := s.parsed.PerDomain[domain]; ok && q != p { // which one was meant?
			return fmt.Errorf("--store-failure-policy-domains: %s is given two policies, %s and %s", domain, q, p)
		}
		s.parsed.PerDomain[domain] = p
	}
	return nil
}

// failurePolicy is the policy check parsed; local gets its own bounded memory engine.
func (s *storeConfig) failurePolicy(memory limiter.MemoryOptions) decide.FailurePolicy {
	fp := s.parsed
	if fp.Validate() != nil { // some policy is local: give it its own bounded engine
		fp.Local = limiter.NewMemoryEngine(memory)
	}
	return fp
}

// ruleWarner logs what a rule set leaves a setting unable to do, and which files of
// the config directory were not read. warn runs for the rules served at start and
// again for every rule set applied later (from the reload goroutine, hence the lock).
type ruleWarner struct {
	log           *slog.Logger
	policyDomains []string
	authzDomain   string // --ext-authz-default-domain, or ""
	bounds        decide.Bounds
	dir           string // the config directory the warnings' file names are relative to, or ""
	// calendarMonths: envoyproxy/ratelimit's USE_CALENDAR_MONTH_RATE_LIMIT is on, so
	// month limits are an error (legacyenv.MonthLimitsRefused).
	calendarMonths bool
	mu             sync.Mutex
	skipped        string // the last note on skipped files: repeated only when it changes
	warned         string // the last rule warnings, likewise
}

func (w *ruleWarner) warn(rs *descriptors.RuleSet) {
	if err := legacyenv.MonthLimitsRefused(w.calendarMonths, rs); err != nil {
		w.log.Error("rules applied with month limits that do not count calendar months", "error", err)
	}
	warnUnruledPolicyDomains(w.log, w.policyDomains, rs)
	warnExtAuthzDefaultDomain(w.log, w.authzDomain, rs)
	warnExtAuthzOverBound(w.log, rs, w.bounds)
	note := skippedNote(rs)
	ws, total := ruleWarnings(rs, w.bounds)
	warned := make([]string, len(ws))
	for i, cw := range ws {
		warned[i] = cw.Error()
	}
	joined := strings.Join(warned, "\n")
	w.mu.Lock()
	changed := note != w.skipped
	w.skipped = note
	warnedChanged := joined != w.warned
	w.warned = joined
	w.mu.Unlock()
	if changed && note != "" {
		w.log.Warn(note)
	}
	if warnedChanged {
		for _, text := range warned {
			w.log.Warn("the rules load, but most likely not as meant", "warning", text, "dir", w.dir)
		}
		if total > len(warned) {
			w.log.Warn("the rules load, but most likely not as meant", "more_warnings", total-len(warned), "dir", w.dir)
		}
	}
}

// skippedNote says which files of the config directory were not read for their names,
// or is empty: envoyproxy/ratelimit reads every file, so a rule file named without
// .yaml (a ConfigMap key such as "config") would otherwise be dropped without a word,
// and so would a rule file hidden by a leading dot.
func skippedNote(rs *descriptors.RuleSet) string {
	var notes []string
	if names, total := rs.SkippedFiles(); total > 0 {
		notes = append(notes, fmt.Sprintf("not read, as the names do not end in .yaml or .yml: %s (envoyproxy/ratelimit reads every file; rename a rule file to load it here)", nameList(names, total)))
	}
	if names, total := rs.HiddenFiles(); total > 0 {
		notes = append(notes, fmt.Sprintf("not read, as dot-files are skipped: %s (rename a rule file without the leading dot to load it)", nameList(names, total)))
	}
	return strings.Join(notes, "; ")
}

// nameList is names, and how many more of total it leaves out.
func nameList(names []string, total int) string {
	list := strings.Join(names, ", ")
	if more := total - len(names); more > 0 {
		list += fmt.Sprintf(" and %d more", more)
	}
	return list
}

// warnVanishedDomains logs each domain the serving rules define and the next ones do
// not: its requests are no longer limited. A file deleted or cut short by mistake does
// that to one domain, which the reload accepts (only a rule set without any limit is
// refused), so it gets a warning.
func warnVanishedDomains(log *slog.Logger, serving, next *descriptors.RuleSet) {
	for _, d := range serving.Domains() {
		if !next.HasDomain(d) {
			log.Warn("a domain's rules are gone: its requests are no longer limited", "domain", d, "rules", next.Summary())
		}
	}
}

// warnVanishedFiles is warnVanishedDomains for a file of a domain that stays: with
// --merge-domains a domain outlives one of its files, so one team's file deleted by
// mistake lifts that team's limits without its domain vanishing. It logs each file of
// a kept domain that the serving rules have limits from and the next ones have none
// from, when none of those limits' identities is in the next ones either (a file
// renamed, its limits with it, lifts nothing).
func warnVanishedFiles(log *slog.Logger, serving, next *descriptors.RuleSet) {
	for _, d := range serving.Domains() {
		if !next.HasDomain(d) {
			continue // warnVanishedDomains names it
		}
		files, ids := map[string]bool{}, map[string]bool{}
		for _, l := range next.Limits(d) {
			files[l.File], ids[l.ID] = true, true
		}
		kept := map[string]bool{} // a serving file, by whether a limit of it is kept
		for _, l := range serving.Limits(d) {
			if !files[l.File] {
				kept[l.File] = kept[l.File] || ids[l.ID]
			}
		}
		for _, f := range slices.Sorted(maps.Keys(kept)) {
			if !kept[f] {
				log.Warn("a rule file's limits are gone from its domain: the requests they limited are no longer limited by them",
					"domain", d, "file", f, "rules", next.Summary())
			}
		}
	}
}

// warnUnruledPolicyDomains logs each domain a per-domain failure policy names that the
// rules do not define: a misspelt domain would otherwise leave the real one on the
// default policy without a word. A later rule set may add the domain, so this is a
// warning, checked again for every rule set applied.
func warnUnruledPolicyDomains(log *slog.Logger, domains []string, rs *descriptors.RuleSet) {
	if noDomainsYet(rs) {
		return
	}
	for _, d := range domains {
		if !rs.HasDomain(d) {
			log.Warn("--store-failure-policy-domains names a domain the rules do not define", "domain", d, "rules", rs.Summary())
		}
	}
}

// noDomainsYet reports a rule set without a domain: xDS's placeholder before the first
// rules (FORCE_START_WITHOUT_INITIAL_CONFIG), or an empty config directory, which serve
// warns of on its own. Settings that name domains are not checked against it.
func noDomainsYet(rs *descriptors.RuleSet) bool { return len(rs.Domains()) == 0 }

// warnExtAuthzDefaultDomain logs when --ext-authz-default-domain (Istio's checks carry
// no domain of their own) names a domain the rules do not define, or one without an
// ext_authz section: every such check is allowed, so a typo, or rules not mounted,
// would lift every limit of the ext_authz door without a word until the first check.
func warnExtAuthzDefaultDomain(log *slog.Logger, domain string, rs *descriptors.RuleSet) {
	switch {
	case domain == "" || noDomainsYet(rs):
	case !rs.HasDomain(domain):
		log.Warn("--ext-authz-default-domain names a domain the rules do not define: checks without a domain of their own are allowed", "domain", domain, "rules", rs.Summary())
	case rs.ExtAuthz(domain) == nil:
		log.Warn("--ext-authz-default-domain names a domain without an ext_authz section: checks without a domain of their own are allowed", "domain", domain)
	}
}

// warnExtAuthzOverBound logs each bound of b that a domain's ext_authz section can
// build checks beyond (more descriptors, more entries in one, a longer entry key; a
// longer domain is rulesOverBound's): such a check is refused with InvalidArgument, which Envoy's
// failure_mode_allow lets past every limit of the check. It also names a fixed
// hits_addend above b.MaxCost, which every check then charges as the bound.
func warnExtAuthzOverBound(log *slog.Logger, rs *descriptors.RuleSet, b decide.Bounds) {
	for _, d := range rs.Domains() {
		spec := rs.ExtAuthz(d)
		if spec == nil {
			continue
		}
		entries, keyLen := 0, 0
		for _, ds := range spec.Descriptors {
			entries = max(entries, len(ds.Entries))
			for _, e := range ds.Entries {
				keyLen = max(keyLen, len(e.DescriptorKey))
			}
			if c := ds.Cost; c != nil && c.Header == "" && uint64(c.Number) > b.MaxCost {
				log.Warn("an ext_authz descriptor's hits_addend is above --max-hits-addend; it counts as the bound",
					"domain", d, "descriptor", ds.Field, "hits_addend", c.Number, "max_hits_addend", b.MaxCost)
			}
		}
		for _, over := range []struct {
			flag       string
			has, bound int
		}{
			{"max-descriptors", len(spec.Descriptors), b.MaxDescriptors},
			{"max-entries", entries, b.MaxEntries},
			{"max-entry-key-bytes", keyLen, b.MaxKeyLen},
			// A domain over its bound is named by rulesOverBound, with its limits.
		} {
			if over.has > over.bound {
				log.Warn("an ext_authz section can build checks over a request bound; such a check is refused, and Envoy's failure mode decides it",
					"domain", d, "bound", "--"+over.flag, "value", over.bound, "section", over.has)
			}
		}
	}
}

// policyAttrs are log attributes naming the failure policies in force, the per-domain
// ones too, followed by more.
func (s *storeConfig) policyAttrs(more ...any) []any {
	attrs := []any{"policy", s.policy}
	if len(s.parsed.PerDomain) > 0 {
		attrs = append(attrs, "domain_policies", s.domainPolicies)
	}
	return append(attrs, more...)
}

// guardStore times and counts the engine's calls in m (store_duration_seconds,
// store_errors_total) and, for a Redis engine, puts the circuit breaker in front of
// that, with the breaker's logs and metrics: the calls the open circuit answers never
// reach the store, and are not counted as its calls. The memory engine cannot fail.
func guardStore(engine limiter.Engine, name string, m *metrics.Metrics, s *storeConfig, onCircuit func(bool, error), log *slog.Logger) limiter.Engine {
	timed := m.Engine(name, engine)
	re, ok := engine.(*limiter.RedisEngine)
	if !ok {
		return timed
	}
	o := breaker.Options{
		Threshold:     s.breakerThreshold,
		ProbeInterval: s.probeInterval,
		OnChange: func(open bool, part string, cause error) {
			onCircuit(open, cause)
			var where []any
			if part != "" {
				where = []any{"part", part}
			}
			if open {
				log.Warn("store circuit opened: store calls skipped, the failure policy answers", s.policyAttrs(append(where, "cause", cause)...)...)
			} else {
				log.Info("store circuit closed: the store answers again", where...)
			}
		},
	}
	if re.Cluster() {
		o.Partitioner = re // a circuit per hash slot, so per master
	}
	return breaker.New(timed, re, o)
}
