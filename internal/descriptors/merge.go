package descriptors

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Merging the files of one domain (Options.MergeDomains), as envoyproxy/ratelimit's
// MERGE_DOMAIN_CONFIG does: the domain's top-level entries are those of every file that
// names it. A top-level entry (key and value) in two files is an error, as it is twice
// in one file; nested entries are not merged, so a file cannot add entries under
// another file's entry either (the same error). Each file keeps its own algorithm
// default and its own file:line, so nothing else about a limit changes, and a limit's
// ID (and so its storage key) is the one it would have in a single file holding every
// file's entries: no two can be the same.
//
// Files are merged in name order (LoadFiles: the order of their absolute paths, which
// for the files of one directory is the order LoadDir's relative names give), not in
// the order they loaded, so that no decision depends on that order: which of two
// files' value patterns a request value meets first, which file a duplicate is
// reported in. (envoyproxy/ratelimit merges in the order of a Go map's iteration,
// which may differ at every load.)

// mergeDomains merges each domain's files into one domain and runs the checks that
// need the whole domain. Without MergeDomains there is nothing to do.
func (c *compiler) mergeDomains() {
	for _, name := range slices.Sorted(maps.Keys(c.parts)) {
		parts := c.parts[name]
		slices.SortStableFunc(parts, func(a, b *domain) int { return strings.Compare(c.order[a], c.order[b]) })
		d := parts[0]
		if len(parts) > 1 {
			d = c.merge(parts)
		}
		c.rs.domains[name] = d
		c.checkDomain(d, parts)
		for _, p := range parts { // what only merging needed: not kept with the rules
			p.top, p.unresolved = nil, nil
		}
	}
}

// mergedEntry is a top-level entry of the merged domain and the file it comes from.
type mergedEntry struct {
	file string
	topEntry
}

// merge joins the domains of several files, sorted by file name.
func (c *compiler) merge(parts []*domain) *domain {
	first := parts[0]
	m := &domain{name: first.name, file: first.file, line: first.line, root: &node{}}
	seen := map[siblingKey]mergedEntry{}
	for _, d := range parts {
		m.files = append(m.files, d.file)
		m.limits = append(m.limits, d.limits...)
		for _, e := range d.top {
			c.mergeEntry(m, mergedEntry{d.file, e}, seen)
		}
		c.mergeExtAuthz(m, d)
	}
	return m
}

// mergeEntry adds one file's top-level entry to m, unless another file has it.
func (c *compiler) mergeEntry(m *domain, e mergedEntry, seen map[siblingKey]mergedEntry) {
	sk := siblingKey{e.level.Key, e.level.Kind, normalizePattern(e.level.Value)}
	first, dup := seen[sk]
	if !dup {
		c.warnHiddenAcross(e, seen)
		seen[sk] = e
		m.root.attach(e.level, e.node)
		return
	}
	msg := "duplicate entry " + describeLevel(e.level)
	if first.level.Value != e.level.Value {
		msg += fmt.Sprintf(": it matches the same values as %q", first.level.Value)
	}
	c.errs.add(ConfigError{File: e.file, Line: e.at.Line, Field: e.at.Field,
		Msg:       msg + ": files merged into one domain may not share a top-level entry, nor add entries under another file's",
		DefinedIn: first.file, DefinedLine: first.at.Line})
}

// warnHiddenAcross is warnHidden (parse.go) for entries of different files: a value
// pattern "*" hides the bare key, and the patterns of files merged after its own.
// Entries of the entry's own file were checked when it was parsed.
func (c *compiler) warnHiddenAcross(e mergedEntry, seen map[siblingKey]mergedEntry) {
	hide := func(hidden, star mergedEntry) {
		at := star.at
		at.File = star.file
		c.rs.warnings.add(ConfigError{File: hidden.file, Line: hidden.at.Line, Field: hidden.at.Field,
			Msg: fmt.Sprintf("%s never matches: the value pattern %q", describeLevel(hidden.level), star.level.Value),
			Ref: &at, MsgEnd: " matches every value first (files merged into one domain are tried in name order)"}, maxWarnings)
	}
	star, hasStar := seen[siblingKey{e.level.Key, PatternValue, "*"}]
	bare, hasBare := seen[siblingKey{e.level.Key, BareKey, ""}]
	switch hidesBare, hidden := starHides(e.level, hasStar && star.file != e.file, hasBare && bare.file != e.file); {
	case hidesBare:
		hide(bare, e)
	case hidden:
		hide(e, star)
	}
}

// mergeExtAuthz takes d's ext_authz section for m: one file at most may have one, as
// its descriptors are decided together, all or nothing.
func (c *compiler) mergeExtAuthz(m, d *domain) {
	switch x := d.extAuthz; {
	case x == nil:
	case m.extAuthz == nil:
		m.extAuthz = x
	default:
		c.errs.add(ConfigError{File: d.file, Line: x.Line, Field: "ext_authz",
			Msg:       fmt.Sprintf("domain %q has an ext_authz section in another file; of the files merged into one domain, one at most may have one", m.name),
			DefinedIn: m.extAuthz.File, DefinedLine: m.extAuthz.Line})
	}
}

// checkDomain runs the checks that a file's parser leaves to the merge (merging): a
// replaces must name a limit of some file of the domain, and an ext_authz descriptor
// must reach a limit of the whole domain.
func (c *compiler) checkDomain(d *domain, parts []*domain) {
	names := map[string]bool{}
	for _, l := range d.limits {
		names[l.Name] = true
	}
	for _, p := range parts {
		for _, r := range p.unresolved {
			if !names[r.name] {
				c.rs.warnings.add(replacesNothing(p.file, r, d.name), maxWarnings)
			}
		}
	}
	if x := d.extAuthz; x != nil {
		for _, xd := range x.Descriptors {
			if msg, bad := unreachable(d, xd); bad {
				c.errs.add(ConfigError{File: x.File, Line: xd.Line, Field: xd.Field, Msg: msg})
			}
		}
	}
}
