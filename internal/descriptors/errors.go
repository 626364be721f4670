package descriptors

import (
	"fmt"
	"strings"
)

// maxErrors bounds how many problems one load keeps: past it a broken file (or an alias
// bomb) would only flood the logs. The rest are counted in LoadError.Omitted.
const maxErrors = 1000

// ConfigError is one problem in one configuration file.
type ConfigError struct {
	File  string // file name relative to the loaded directory (or as given to Parse/Compile)
	Line  int    // 1-based; 0 when the problem concerns the whole file or directory
	Field string // where in the file, e.g. "descriptors[0].rate_limit.unit"
	Msg   string // what is wrong; with a Ref, the text before it
	// Ref is another definition that the problem points at (a repeated entry's,
	// field's or metadata key's first, the "*" pattern that hides an entry), in the
	// same file unless Ref.File says, and MsgEnd the text after it. The reference is
	// kept apart from Msg so that rules from xDS, whose lines count a generated
	// document nobody sees, can name it by its field path instead (Message).
	Ref    *Ref
	MsgEnd string
	// DefinedIn and DefinedLine name where what the problem repeats was first defined
	// (a duplicate domain), kept apart from Msg so that its file name is relative to
	// the same directory as File.
	DefinedIn   string
	DefinedLine int
}

// Ref locates a definition in a file.
type Ref struct {
	Line  int    // 1-based
	Field string // its field path, e.g. "descriptors[0]"
	// File is set when the definition is in another file than the problem (files
	// merged into one domain), named relative to the same directory as its File.
	File string
}

// where is the reference as Message writes it, with lines ("line 3", or "b.yaml:3" in
// another file) or, for generated documents, with field paths.
func (r *Ref) where(lines bool) string {
	switch {
	case lines && r.File != "":
		return fmt.Sprintf("%s:%d", r.File, r.Line)
	case lines:
		return fmt.Sprintf("line %d", r.Line)
	case r.File != "":
		return r.File + " " + r.Field
	}
	return r.Field
}

// Message is what is wrong, with the reference (if any) written as "at " + where:
// Msg + " at line 3" + MsgEnd, say.
func (e ConfigError) Message(where string) string {
	if e.Ref == nil {
		return e.Msg
	}
	return e.Msg + " at " + where + e.MsgEnd
}

// WithoutLines is the problem without line numbers, for a generated document (rules
// from xDS) whose lines the operator never sees: its field path ("descriptors[1]
// .rate_limit.unit") locates it in the source, and the definition it points at, if
// any (a duplicate's first), is named by its field path too.
func (e ConfigError) WithoutLines() ConfigError {
	if e.Ref != nil {
		e.Msg, e.Ref, e.MsgEnd = e.Message(e.Ref.where(false)), nil, ""
	}
	e.Line = 0
	return e
}

// Error formats the problem as "file:line: field: message" (without ":line" when Line is
// 0), the reference written as "at line N", followed by " (already defined in
// file:line)" when DefinedIn is set.
func (e ConfigError) Error() string {
	msg := e.Msg
	if e.Ref != nil {
		msg = e.Message(e.Ref.where(true))
	}
	if e.DefinedIn != "" {
		msg += fmt.Sprintf(" (already defined in %s:%d)", e.DefinedIn, e.DefinedLine)
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.File, e.Field, msg)
}

// LoadError is every problem found while loading a configuration: files in load order,
// each file's problems by line. Any problem rejects the whole configuration.
type LoadError struct {
	Errors  []ConfigError
	Omitted int // problems found beyond the first maxErrors, counted but not kept
}

// Error lists one problem per line.
func (e *LoadError) Error() string {
	lines := make([]string, 0, len(e.Errors)+1)
	for _, ce := range e.Errors {
		lines = append(lines, ce.Error())
	}
	if e.Omitted > 0 {
		lines = append(lines, fmt.Sprintf("(%d more errors omitted)", e.Omitted))
	}
	return strings.Join(lines, "\n")
}

// add appends a problem, counting instead of keeping it once maxErrors are kept.
func (e *LoadError) add(ce ConfigError) {
	if len(e.Errors) >= maxErrors {
		e.Omitted++
		return
	}
	e.Errors = append(e.Errors, ce)
}

func (e *LoadError) empty() bool { return len(e.Errors) == 0 && e.Omitted == 0 }
