package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// serveHelp returns `ratelimit-ext serve -h` as printed.
func serveHelp(t *testing.T) string {
	t.Helper()
	code, out := runStderr(t, "serve", "-h")
	if code != 0 {
		t.Fatalf("serve -h exited %d:\n%s", code, out)
	}
	return out
}

// runStderr runs the command line args and returns its exit code and what it printed
// on stderr.
func runStderr(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return runCapturing(t, &os.Stderr, args)
}

// runStdout runs the command line args and returns its exit code and what it printed
// on stdout.
func runStdout(t *testing.T, args ...string) (int, string) {
	t.Helper()
	return runCapturing(t, &os.Stdout, args)
}

// runCapturing runs args with *stream replaced by a pipe, and returns the exit code and
// what went through the pipe.
func runCapturing(t *testing.T, stream **os.File, args []string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := *stream
	*stream = w
	read := make(chan string)
	go func() {
		out, _ := readAll(r)
		read <- out
	}()
	code := run(args)
	*stream = saved
	w.Close()
	return code, <-read
}

func readAll(f *os.File) (string, error) {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String(), nil
		}
	}
}

type helpFlag struct{ typ, env, def string }

var (
	helpName    = regexp.MustCompile(`^  -([a-z0-9-]+)(?: (\w+))?$`)
	helpEnv     = regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`)
	helpDefault = regexp.MustCompile(`\(default "?([^")]*)"?\)`)
)

// parseHelp reads the flag package's usage output: each flag, its type, environment
// variable and default (the type's zero value when none is printed).
func parseHelp(help string) map[string]helpFlag {
	flags := map[string]helpFlag{}
	var name string
	for _, line := range strings.Split(help, "\n") {
		if m := helpName.FindStringSubmatch(line); m != nil {
			name = m[1]
			typ := m[2]
			if typ == "" {
				typ = "bool"
			}
			flags[name] = helpFlag{typ: typ, def: map[string]string{"bool": "false", "duration": "0s", "int": "0"}[typ]}
			continue
		}
		if name == "" || !strings.HasPrefix(line, "    \t") {
			continue
		}
		f := flags[name]
		if m := helpEnv.FindStringSubmatch(line); m != nil {
			f.env = m[1]
		}
		if ms := helpDefault.FindAllStringSubmatch(line, -1); ms != nil {
			f.def = ms[len(ms)-1][1]
		}
		flags[name] = f
	}
	return flags
}

var literal = regexp.MustCompile("^`([^`]*)`$")

// docs/configuration.md's serve table lists every flag of `serve -h` with its
// environment variable and default, and nothing else.
func TestServeFlagsAreDocumented(t *testing.T) {
	help := parseHelp(serveHelp(t))
	if len(help) < 20 {
		t.Fatalf("parsed only %d flags from serve -h", len(help))
	}
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	start := strings.Index(section, "### `ratelimit-ext serve`")
	if start < 0 {
		t.Fatal("no serve section in docs/configuration.md")
	}
	section = section[start+4:]
	if end := strings.Index(section, "\n### "); end >= 0 {
		section = section[:end]
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			t.Errorf("malformed row: %s", line)
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`-")
		env, def := strings.TrimSpace(cells[2]), strings.TrimSpace(cells[3])
		documented[name] = true
		h, ok := help[name]
		if !ok {
			t.Errorf("--%s is documented but not a flag of serve", name)
			continue
		}
		if env != "`"+h.env+"`" || h.env != envName(name) {
			t.Errorf("--%s: documented variable %s, serve -h says %s", name, env, h.env)
		}
		switch m := literal.FindStringSubmatch(def); {
		case def == "":
			if h.def != "" {
				t.Errorf("--%s: documented without a default, serve -h says %q", name, h.def)
			}
		case m != nil && m[1] != h.def:
			t.Errorf("--%s: documented default %s, serve -h says %q", name, def, h.def)
		}
	}
	for name := range help {
		if !documented[name] {
			t.Errorf("--%s (serve -h) is missing from docs/configuration.md", name)
		}
	}
}
