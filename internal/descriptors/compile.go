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

// Compile compiles files, in the order given, into one RuleSet. Every problem of every
// file is collected into a *LoadError; with any problem there is no RuleSet.
func Compile(files ...File) (*RuleSet, error) {
	c := newCompiler()
	for _, f := range files {
		c.add(f)
	}
	return c.finish()
}

// compiler accumulates files into a RuleSet.
type compiler struct {
	rs     *RuleSet
	errs   LoadError
	budget budget
	hash   hash.Hash
}

func newCompiler() *compiler {
	return &compiler{rs: &RuleSet{domains: map[string]*domain{}}, budget: newBudget(), hash: sha256.New()}
}

func (c *compiler) add(f File) {
	c.hashFile(f)
	d, p := parseFile(f, &c.budget)
	errs := p.errs
	if d != nil {
		if prev := c.rs.domains[d.name]; prev != nil {
			errs = append(errs, ConfigError{File: f.Name, Line: d.line, Field: "domain",
				Msg: fmt.Sprintf("duplicate domain %q", d.name), DefinedIn: prev.file, DefinedLine: prev.line})
			sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		} else {
			c.rs.domains[d.name] = d
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
