package descriptors

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// yaml.v3's syntax errors name no position for some mistakes, a 0-based line for
// others, and the line of the enclosing collection for a tab in the indentation: this
// file turns each into the line (and column, where it helps) people count.

// yamlLine extracts the line from a yaml.v3 syntax error ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError records err, yaml.v3's error decoding data, at the line it is about.
func (p *fileParser) yamlError(err error, data []byte) {
	msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if yamlParserMessages[msg] {
			// yaml.v3 numbers its parser's lines from 0 (its scanner's from 1); past the
			// last line (the end of the file) means the last line.
			line = min(line+1, lineCount(data))
		}
	} else if yamlParserMessages[msg] || yamlScannerMessage(msg) {
		line = 1 // yaml.v3 leaves the line out when it is its line 0, the first
	}
	if line > 0 {
		switch {
		case msg == tabIndentMessage:
			line = tabIndentLine(data, line)
		case msg == noTokenMessage && tabIsTheCause(data, line, err):
			msg += ": a tab in the indentation; YAML indents with spaces"
		}
		p.errorf(line, "yaml", "%s", msg)
		return
	}
	if utf8Messages[msg] {
		if line, col, b, ok := firstInvalidUTF8(data); ok {
			// yaml.v3 names no position for these either: find the byte.
			p.errorf(line, "yaml", "byte 0x%02X at column %d starts no UTF-8 character: YAML files are UTF-8 (was this one saved as Latin-1?)", b, col)
			return
		}
	}
	if line, ok := unknownAnchorLine(data, msg); ok {
		p.errorf(line, "yaml", "%s", msg)
		return
	}
	if msg == controlMessage {
		if line, col, r, ok := firstControl(data); ok {
			// yaml.v3 names no position for this one: find it.
			p.errorf(line, "yaml", "control character %U at column %d; YAML allows only tabs, line breaks and printable characters", r, col)
			return
		}
	}
	p.errorf(0, "yaml", "%s", msg)
}

// yaml.v3's errors for a character no token starts with (a tab at the start of a
// line, among others), and for a control character, which it reports without a line.
const (
	noTokenMessage = "found character that cannot start any token"
	controlMessage = "control characters are not allowed"
)

// yamlParserMessages are the errors of yaml.v3's parser (v3.0.1, parserc.go), as
// opposed to its scanner's: their line is the 0-based line of the collection that
// holds the mistake (or of the mistake itself), one less than the line people count.
var yamlParserMessages = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
}

// yamlScannerMessage says whether msg is an error of yaml.v3's scanner (v3.0.1,
// scannerc.go). Its errors come with a line, unless the line is the first.
func yamlScannerMessage(msg string) bool {
	switch msg {
	case "block sequence entries are not allowed in this context",
		"could not find expected ':'",
		"could not find expected directive name",
		"did not find URI escaped octet",
		"did not find expected '!'",
		"did not find expected alphabetic or numeric character",
		"did not find expected comment or line break",
		"did not find expected digit or '.' character",
		"did not find expected hexdecimal number",
		"did not find expected tag URI",
		"did not find expected version number",
		"did not find expected whitespace",
		"did not find expected whitespace or line break",
		"did not find the expected '>'",
		tabIndentMessage,
		"found a tab character where an indentation space is expected",
		"found an incorrect leading UTF-8 octet",
		"found an incorrect trailing UTF-8 octet",
		"found an indentation indicator equal to 0",
		noTokenMessage,
		"found extremely long version number",
		"found invalid Unicode character escape code",
		"found unexpected document indicator",
		"found unexpected end of stream",
		"found unexpected non-alphabetical character",
		"found unknown directive name",
		"found unknown escape character",
		"mapping keys are not allowed in this context",
		"mapping values are not allowed in this context":
		return true
	}
	return strings.HasPrefix(msg, "exceeded max depth of ")
}

// unknownAnchor is yaml.v3's error for an alias whose anchor is not (yet) defined,
// which it reports without a line. Its anchor names are [0-9A-Za-z_-]+.
var unknownAnchor = regexp.MustCompile(`^unknown anchor '([0-9A-Za-z_-]+)' referenced$`)

// unknownAnchorLine finds the line of the alias an unknown-anchor error (msg) is
// about, with one more parse: every "*name" in data is renamed to a name of its own
// ("*<probe>3" for the fourth), and the error then names the first real alias, the one
// that failed (an anchor, once defined, stays defined, so the first alias of the name
// in the document is the failing one). The same text in a comment or a quoted string
// is renamed too, which changes nothing there.
func unknownAnchorLine(data []byte, msg string) (int, bool) {
	m := unknownAnchor.FindStringSubmatch(msg)
	if m == nil {
		return 0, false
	}
	alias := []byte("*" + m[1])
	probe := "ratelimit-ext-probe"
	for bytes.Contains(data, []byte(probe)) {
		probe += "-"
	}
	var at []int // the offsets of the candidates, renamed in order
	trial := make([]byte, 0, len(data)+64)
	for from := 0; ; {
		i := bytes.Index(data[from:], alias)
		if i < 0 {
			trial = append(trial, data[from:]...)
			break
		}
		end := from + i + len(alias)
		if end < len(data) && isAnchorChar(data[end]) { // a longer name ("*r" in "*rate")
			trial = append(trial, data[from:end]...)
		} else {
			trial = append(trial, data[from:from+i]...)
			trial = append(trial, "*"+probe+strconv.Itoa(len(at))...)
			at = append(at, from+i)
		}
		from = end
	}
	err := firstYAMLError(trial)
	if err == nil || len(at) == 0 {
		return 0, false
	}
	got := unknownAnchor.FindStringSubmatch(strings.TrimPrefix(err.Error(), "yaml: "))
	if got == nil || !strings.HasPrefix(got[1], probe) {
		return 0, false
	}
	k, convErr := strconv.Atoi(strings.TrimPrefix(got[1], probe))
	if convErr != nil || k < 0 || k >= len(at) {
		return 0, false
	}
	return lineAt(data, at[k]), true
}

func isAnchorChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-'
}

// firstYAMLError decodes every document of data and returns the first error.
func firstYAMLError(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// isLineBreak says whether data[i] ends a line as YAML counts them: LF, or a CR that no
// LF follows (CR LF ends one line, at its LF).
func isLineBreak(data []byte, i int) bool {
	return data[i] == '\n' || data[i] == '\r' && (i+1 == len(data) || data[i+1] != '\n')
}

// lineAt is the 1-based line of data's byte at offset.
func lineAt(data []byte, offset int) int {
	n := 1
	for i := range offset {
		if isLineBreak(data, i) {
			n++
		}
	}
	return n
}

// lineCount is the number of lines in data; a final line break starts no line of its
// own.
func lineCount(data []byte) int {
	n := lineAt(data, len(data))
	if len(data) > 0 && isLineBreak(data, len(data)-1) {
		n--
	}
	return n
}

// tabIsTheCause says whether err, yaml.v3's noTokenMessage at line, is a tab in that
// line's indentation: the line is indented with a tab, and with spaces in its place the
// file parses, or fails elsewhere. (A tab may indent a line inside a flow collection,
// where the error is another character's.)
func tabIsTheCause(data []byte, line int, err error) bool {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return false
	}
	l := lines[line-1]
	in := indentation(l)
	if bytes.IndexByte(in, '\t') < 0 {
		return false
	}
	fixed := slices.Clone(lines)
	fixed[line-1] = append(bytes.ReplaceAll(in, []byte("\t"), []byte(" ")), l[len(in):]...)
	var doc yaml.Node
	again := yaml.Unmarshal(bytes.Join(fixed, []byte("\n")), &doc)
	return again == nil || again.Error() != err.Error()
}

// utf8Messages are yaml.v3's errors for bytes that are not UTF-8 (a file saved as
// Latin-1, say), which it reports without a position.
var utf8Messages = map[string]bool{
	"invalid leading UTF-8 octet":        true,
	"incomplete UTF-8 octet sequence":    true,
	"invalid trailing UTF-8 octet":       true,
	"invalid length of a UTF-8 sequence": true,
	"invalid Unicode character":          true,
}

// scanText walks data's characters, counting positions as the error messages give
// them (1-based lines and columns, columns in characters, a leading byte-order mark not
// counted, CR LF, LF and a lone CR each ending a line), and stops at the first for which
// stop says true (size 1 and utf8.RuneError: a byte that is not UTF-8): its line,
// column and offset in data. A UTF-16 file (yaml.v3 reads those too) gets no position:
// ok is false.
func scanText(data []byte, stop func(r rune, size int) bool) (line, col, at int, ok bool) {
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
		return 0, 0, 0, false
	}
	i := 0
	if bytes.HasPrefix(data, []byte("\ufeff")) {
		i = len("\ufeff")
	}
	line = 1
	for i < len(data) {
		r, size := utf8.DecodeRune(data[i:])
		col++
		if stop(r, size) {
			return line, col, i, true
		}
		if isLineBreak(data, i) {
			line, col = line+1, 0
		}
		i += size
	}
	return 0, 0, 0, false
}

// firstInvalidUTF8 finds the first byte of data that does not start a valid UTF-8
// character: its position (scanText) and itself.
func firstInvalidUTF8(data []byte) (line, col int, b byte, ok bool) {
	line, col, at, ok := scanText(data, func(r rune, size int) bool { return r == utf8.RuneError && size == 1 })
	if !ok {
		return 0, 0, 0, false
	}
	return line, col, data[at], true
}

// firstControl finds the first character YAML does not allow (YAML 1.2's c-printable,
// as yaml.v3 checks it): its position (scanText) and itself.
func firstControl(data []byte) (line, col int, char rune, ok bool) {
	line, col, at, ok := scanText(data, func(r rune, _ int) bool {
		switch {
		case r == '\t' || r == '\n' || r == '\r' || r == 0x85 || r == 0xFEFF || r == utf8.RuneError:
			return false
		default:
			return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0xfffe || r == 0xffff
		}
	})
	if !ok {
		return 0, 0, 0, false
	}
	char, _ = utf8.DecodeRune(data[at:])
	return line, col, char, true
}

// tabIndentMessage is yaml.v3's error for a tab in indentation. It names the line of
// the key before the tab (where its scanner's context starts), not the tab's own line.
const tabIndentMessage = "found a tab character that violates indentation"

// indentation is the spaces and tabs that begin a line.
func indentation(line []byte) []byte {
	return line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
}

// tabIndentLine is the first line from line on whose indentation holds a tab, so the
// error points at the line to fix; line itself when none does.
func tabIndentLine(data []byte, line int) int {
	lines := bytes.Split(data, []byte("\n"))
	for i := line - 1; i >= 0 && i < len(lines); i++ {
		if bytes.IndexByte(indentation(lines[i]), '\t') >= 0 {
			return i + 1
		}
	}
	return line
}
