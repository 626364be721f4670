package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/legacyenv"
)

// envFlags registers flags whose defaults can be set by environment variables, so every
// setting has a flag and an environment variable (docs/configuration.md lists them).
// A malformed environment value is reported, not silently ignored.
type envFlags struct {
	fs   *flag.FlagSet
	errs []string
	env  []string // the flags whose environment variable is set
}

func newEnvFlags(name string) *envFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &envFlags{fs: fs}
}

// envName is the environment variable that sets a flag; legacyenv owns the naming, as it
// maps envoyproxy/ratelimit's variables onto these.
func envName(flagName string) string { return legacyenv.VarName(flagName) }

func (e *envFlags) usage(name, usage string) string {
	return fmt.Sprintf("%s (env %s)", usage, envName(name))
}

// The Var methods bind a flag to a variable; its default comes from the environment
// variable when that is set. The non-Var forms return a new variable.

func (e *envFlags) StringVar(p *string, name, def, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		e.env = append(e.env, name)
		def = v
	}
	e.fs.StringVar(p, name, def, e.usage(name, usage))
}

func (e *envFlags) BoolVar(p *bool, name string, def bool, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		e.env = append(e.env, name)
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Sprintf("%s=%q: want true or false", envName(name), v))
		}
		def = b
	}
	e.fs.BoolVar(p, name, def, e.usage(name, usage))
}

func (e *envFlags) IntVar(p *int, name string, def int, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		e.env = append(e.env, name)
		n, err := strconv.Atoi(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Sprintf("%s=%q: want an integer", envName(name), v))
		}
		def = n
	}
	e.fs.IntVar(p, name, def, e.usage(name, usage))
}

func (e *envFlags) DurationVar(p *time.Duration, name string, def time.Duration, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		e.env = append(e.env, name)
		d, err := time.ParseDuration(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Sprintf("%s=%q: want a duration such as 10ms", envName(name), v))
		}
		def = d
	}
	e.fs.DurationVar(p, name, def, e.usage(name, usage))
}

func (e *envFlags) Float64Var(p *float64, name string, def float64, usage string) {
	if v, ok := os.LookupEnv(envName(name)); ok {
		e.env = append(e.env, name)
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			e.errs = append(e.errs, fmt.Sprintf("%s=%q: want a number such as 0.5", envName(name), v))
		}
		def = x
	}
	e.fs.Float64Var(p, name, def, e.usage(name, usage))
}

func (e *envFlags) String(name, def, usage string) *string {
	p := new(string)
	e.StringVar(p, name, def, usage)
	return p
}

func (e *envFlags) Int(name string, def int, usage string) *int {
	p := new(int)
	e.IntVar(p, name, def, usage)
	return p
}

func (e *envFlags) Duration(name string, def time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	e.DurationVar(p, name, def, usage)
	return p
}

// parse parses args, which must all be flags, and reports environment errors together
// with flag errors.
func (e *envFlags) parse(args []string) error {
	if err := e.fs.Parse(args); err != nil {
		return err
	}
	if e.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %s takes only flags (see ratelimit-ext %s -h)%s", e.fs.Arg(0), e.fs.Name(), e.fs.Name(), boolValueHint(e.fs, args))
	}
	if len(e.errs) > 0 {
		return fmt.Errorf("bad environment: %s", strings.Join(e.errs, "; "))
	}
	return nil
}

// rejectUnknownEnv makes a RATELIMIT_EXT_ variable that names no flag an error: a
// misspelt setting of the server must not be silently ignored. Call before parse.
func (e *envFlags) rejectUnknownEnv() {
	known := map[string]bool{}
	e.fs.VisitAll(func(f *flag.Flag) { known[envName(f.Name)] = true })
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "RATELIMIT_EXT_") && !known[name] && !serviceLink(name, value) {
			e.errs = append(e.errs, fmt.Sprintf("%s is not a setting (see ratelimit-ext %s -h)", name, e.fs.Name()))
		}
	}
}

// serviceLinkName matches the names of the variables Kubernetes adds to every pod for
// each Service of its namespace (service links), one named group per form:
// <SERVICE>_SERVICE_HOST, <SERVICE>_SERVICE_PORT[_<PORT NAME>], <SERVICE>_PORT,
// <SERVICE>_PORT_<port>_<protocol> and <SERVICE>_PORT_<port>_<protocol>_<field>.
var serviceLinkName = regexp.MustCompile(`(?P<host>_SERVICE_HOST)$|(?P<port>_SERVICE_PORT(_[A-Z0-9_]+)?)$|(?P<url>_PORT|_PORT_[0-9]+_(TCP|UDP|SCTP))$|_PORT_[0-9]+_(TCP|UDP|SCTP)_(?P<field>PROTO|PORT|ADDR)$`)

// serviceLink says whether a variable is one of those service links, by its name and
// its value (an address, a port number, a protocol or a proto://address:port URL).
// A Service named ratelimit-ext gives RATELIMIT_EXT_SERVICE_HOST, RATELIMIT_EXT_PORT=
// tcp://… and more; they are not settings, and refusing them would stop every pod from
// starting. A misspelt setting whose value is none of those is still refused.
func serviceLink(name, value string) bool {
	m := serviceLinkName.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	group := func(g string) string { return m[serviceLinkName.SubexpIndex(g)] }
	switch {
	case group("host") != "", group("field") == "ADDR":
		_, err := netip.ParseAddr(value)
		return err == nil
	case group("field") == "PROTO":
		return value == "tcp" || value == "udp" || value == "sctp"
	case group("port") != "", group("field") == "PORT":
		_, err := strconv.ParseUint(value, 10, 16)
		return err == nil
	}
	return legacyenv.IsServiceLinkURL(value) // <SERVICE>_PORT and <SERVICE>_PORT_<port>_<protocol>
}

// explain adds to an error about flags which of them the environment set (not the
// command line): an operator who never typed --log-level learns that
// RATELIMIT_EXT_LOG_LEVEL, or the envoyproxy/ratelimit variable mapped onto it
// (legacy: our variable -> theirs), holds the value.
func (e *envFlags) explain(err error, legacy map[string]string) error {
	if err == nil {
		return nil
	}
	given := map[string]bool{}
	e.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var from []string
	for _, name := range e.env {
		if given[name] || !mentionsFlag(err.Error(), name) {
			continue
		}
		src := envName(name)
		if l, ok := legacy[src]; ok {
			src = l + ", mapped to " + src
		}
		from = append(from, "--"+name+" is set by "+src)
	}
	if len(from) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(from, "; "))
}

// mentionsFlag says whether text names --name, not merely a longer flag it begins.
func mentionsFlag(text, name string) bool {
	for rest := text; ; {
		i := strings.Index(rest, "--"+name)
		if i < 0 {
			return false
		}
		rest = rest[i+2+len(name):]
		if rest == "" || !(rest[0] == '-' || rest[0] >= 'a' && rest[0] <= 'z' || rest[0] >= '0' && rest[0] <= '9') {
			return true
		}
	}
}
