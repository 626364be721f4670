package descriptors

import (
	"fmt"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// The /debug/config view: plain structs with JSON tags, built on demand so the
// RuleSet itself carries no presentation state.

type dumpRuleSet struct {
	Hash    string       `json:"hash"`
	Summary string       `json:"summary"`
	Domains []dumpDomain `json:"domains"`
}

type dumpDomain struct {
	Domain   string        `json:"domain"`
	File     string        `json:"file"`
	Line     int           `json:"line"`
	Files    []string      `json:"files,omitempty"` // a merged domain's files (Options.MergeDomains)
	Limits   []dumpLimit   `json:"limits"`
	ExtAuthz *dumpExtAuthz `json:"ext_authz,omitempty"`
}

// dumpExtAuthz shows each ext_authz descriptor as one readable line per part.
type dumpExtAuthz struct {
	File        string             `json:"file,omitempty"` // in a merged domain, which of its files
	Line        int                `json:"line"`
	Descriptors []dumpExtAuthzDesc `json:"descriptors"`
}

type dumpExtAuthzDesc struct {
	Line       int      `json:"line"`
	When       []string `json:"when,omitempty"`
	Entries    []string `json:"entries"`
	HitsAddend string   `json:"hits_addend,omitempty"`
}

type dumpLimit struct {
	ID              string         `json:"id"`
	Path            string         `json:"path"`
	Name            string         `json:"name,omitempty"`
	Unlimited       bool           `json:"unlimited,omitempty"`
	Unit            string         `json:"unit,omitempty"`
	UnitMultiplier  int64          `json:"unit_multiplier,omitempty"`
	RequestsPerUnit int64          `json:"requests_per_unit,omitempty"`
	Algorithm       string         `json:"algorithm,omitempty"`
	PeriodMs        int64          `json:"period_ms,omitempty"`
	Burst           int64          `json:"burst,omitempty"`
	Buckets         int64          `json:"buckets,omitempty"`
	Shadow          bool           `json:"shadow_mode,omitempty"`
	Quota           bool           `json:"quota_mode,omitempty"`
	DetailedMetric  bool           `json:"detailed_metric,omitempty"`
	ShareThreshold  []string       `json:"share_threshold,omitempty"` // the path parts whose values share one counter
	ValueToMetric   []string       `json:"value_to_metric,omitempty"` // the path parts whose request values metrics show
	Replaces        []string       `json:"replaces,omitempty"`
	Metadata        map[string]any `json:"metadata,omitempty"`
	File            string         `json:"file"`
	Line            int            `json:"line"`
}

// Dump returns a JSON-marshalable view of the compiled rules: hash, summary, and per
// domain (sorted) its limits in file order with their effective parameters.
func (rs *RuleSet) Dump() any {
	out := dumpRuleSet{Hash: rs.Hash(), Summary: rs.Summary(), Domains: []dumpDomain{}}
	for _, name := range rs.Domains() {
		d := rs.domains[name]
		dd := dumpDomain{Domain: name, File: d.file, Line: d.line, Files: d.files, Limits: make([]dumpLimit, 0, len(d.limits))}
		for _, l := range d.limits {
			dd.Limits = append(dd.Limits, dumpOne(l))
		}
		if d.extAuthz != nil {
			dd.ExtAuthz = dumpExtAuthzOf(d.extAuthz)
			if d.files != nil {
				dd.ExtAuthz.File = d.extAuthz.File
			}
		}
		out.Domains = append(out.Domains, dd)
	}
	return out
}

func dumpOne(l *Limit) dumpLimit {
	dl := dumpLimit{
		ID: l.ID, Path: l.Path, Name: l.Name, Unlimited: l.Unlimited,
		Shadow: l.Shadow, Quota: l.Quota, DetailedMetric: l.DetailedMetric, Replaces: l.Replaces,
		Metadata: l.Metadata, File: l.File, Line: l.Line,
	}
	dl.ShareThreshold = levelsWith(l.Levels, func(lv Level) bool { return lv.Shared })
	dl.ValueToMetric = levelsWith(l.Levels, func(lv Level) bool { return lv.ValueToMetric })
	if !l.Unlimited {
		dl.Unit, dl.UnitMultiplier, dl.RequestsPerUnit = l.Unit, l.UnitMultiplier, l.RequestsPerUnit
		dl.Algorithm, dl.PeriodMs = l.Params.Algorithm.String(), l.Params.PeriodMs
		dl.Buckets = l.Params.Buckets
		if a := l.Params.Algorithm; a == limiter.GCRA || a == limiter.TokenBucket {
			dl.Burst = l.Params.Burst // the other algorithms have no burst
		}
	}
	return dl
}

// levelsWith lists, as Path parts, the levels that set a flag.
func levelsWith(levels []Level, flag func(Level) bool) []string {
	var out []string
	for _, lv := range levels {
		if flag(lv) {
			out = append(out, pathPart(lv))
		}
	}
	return out
}

func dumpExtAuthzOf(x *ExtAuthz) *dumpExtAuthz {
	out := &dumpExtAuthz{Line: x.Line, Descriptors: make([]dumpExtAuthzDesc, 0, len(x.Descriptors))}
	for i := range x.Descriptors {
		d := &x.Descriptors[i]
		dd := dumpExtAuthzDesc{Line: d.Line}
		if d.When.Path != nil {
			dd.When = append(dd.When, "path "+d.When.Path.String())
		}
		for j := range d.When.Headers {
			dd.When = append(dd.When, d.When.Headers[j].String())
		}
		for j := range d.Entries {
			dd.Entries = append(dd.Entries, d.Entries[j].String())
		}
		switch {
		case d.Cost == nil:
		case d.Cost.Header != "":
			dd.HitsAddend = "header " + d.Cost.Header
		default:
			dd.HitsAddend = fmt.Sprint(d.Cost.Number)
		}
		out.Descriptors = append(out.Descriptors, dd)
	}
	return out
}
