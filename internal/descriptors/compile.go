package descriptors

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"sort"
)

// File is one configuration file to compile. Name is what errors and Limit.File report.
type File struct {
	Name string
	Data []byte
}

// Parse compiles a single file.
func Parse(name string, data []byte) (*RuleSet, error) {
	return Compile(File{Name: name, Data: data})
}

// Options says how rules load. The zero value loads them as SPEC §7 says, one file per
// domain; the package's functions LoadDir, LoadFiles and Compile use it.
type Options struct {
	// MergeDomains lets several files name one domain, as envoyproxy/ratelimit's
	// MERGE_DOMAIN_CONFIG does: their top-level entries are joined into that domain
	// (merge.go). Without it a second file of a domain is a "duplicate domain" error.
	MergeDomains bool
}

// Compile compiles files, in the order given, into one RuleSet. Every problem of every
// file is collected into a *LoadError; with any problem there is no RuleSet.
func Compile(files ...File) (*RuleSet, error) { return Options{}.Compile(files...) }

// Compile is the package's Compile with o.
func (o Options) Compile(files ...File) (*RuleSet, error) {
	c := newCompiler(o)
	for _, f := range files {
		c.add(f)
	}
	return c.finish()
}

// compiler accumulates files into a RuleSet.
type compiler struct {
	opts   Options
	rs     *RuleSet
	errs   LoadError
	budget budget
	hash   hash.Hash
	// parts are, with MergeDomains, the domains of each file by domain name, merged
	// into one by finish, in the order of their order keys (addOrdered).
	parts map[string][]*domain
	order map[*domain]string
}

func newCompiler(o Options) *compiler {
	return &compiler{opts: o, rs: &RuleSet{domains: map[string]*domain{}}, budget: newBudget(), hash: sha256.New(), parts: map[string][]*domain{}, order: map[*domain]string{}}
}

func (c *compiler) add(f File) { c.addOrdered(f, f.Name) }

// addOrdered is add for a file whose domain, merged with other files', takes its place
// among them by order rather than by its name (mergeDomains).
func (c *compiler) addOrdered(f File, order string) {
	c.hashFile(f)
	d, p := parseFile(f, &c.budget, c.opts.MergeDomains)
	errs := p.errs
	if d != nil {
		if prev := c.rs.domains[d.name]; prev != nil && !c.opts.MergeDomains {
			errs = append(errs, ConfigError{File: f.Name, Line: d.line, Field: "domain",
				Msg: fmt.Sprintf("duplicate domain %q", d.name), DefinedIn: prev.file, DefinedLine: prev.line})
			sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		} else {
			if prev == nil {
				c.rs.domains[d.name] = d
			}
			if c.opts.MergeDomains {
				c.parts[d.name] = append(c.parts[d.name], d)
				c.order[d] = order
			}
			c.rs.count += len(d.limits)
		}
	}
	for _, e := range errs {
		c.errs.add(e)
	}
	c.errs.Omitted += p.omitted
	for _, w := range p.warns.items {
		c.rs.warnings.add(w, maxWarnings)
	}
	c.rs.warnings.total += p.warns.total - len(p.warns.items)
}

// hashFile feeds a length-prefixed name and content, so that moving bytes between
// names and contents always changes the hash.
func (c *compiler) hashFile(f File) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(f.Name)))
	c.hash.Write(n[:])
	c.hash.Write([]byte(f.Name))
	binary.BigEndian.PutUint64(n[:], uint64(len(f.Data)))
	c.hash.Write(n[:])
	c.hash.Write(f.Data)
}

// fail records a problem found outside any file's content (e.g. an unreadable file).
func (c *compiler) fail(e ConfigError) { c.errs.add(e) }

func (c *compiler) finish() (*RuleSet, error) {
	c.mergeDomains()
	if !c.errs.empty() {
		errs := c.errs
		return nil, &errs
	}
	rs := c.rs
	for name := range rs.domains {
		rs.names = append(rs.names, name)
	}
	sort.Strings(rs.names)
	rs.hash = hex.EncodeToString(c.hash.Sum(nil))
	return rs, nil
}
