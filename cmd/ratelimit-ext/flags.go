package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/legacyenv"
)

// envFlags registers flags whose defaults can be set by environment variables, so every
// setting has a flag and an environment variable (docs/configuration.md lists them).
// A variable set empty (or to spaces only) counts as unset, as envoyproxy/ratelimit's
// do (internal/legacyenv): a manifest's FOO= leaves the default. So does a flag given
// empty (withoutBlank). A malformed value is an error, unless the command line gives
// the flag, which wins: then it is only reported (overridden).
type envFlags struct {
	fs         *flag.FlagSet
	bad        []badEnv // malformed variables
	unknown    []string // errors about RATELIMIT_EXT_ variables that name no flag
	env        []string // the flags whose environment variable is set
	overridden []badEnv // by parse: the malformed variables whose flag the command line gives
	// legacy maps each of our variables that an envoyproxy/ratelimit variable was
	// mapped onto to that variable (serve sets it before the flags are defined): a
	// malformed value, a setting an error names (explain) and one without effect
	// (noteUnused) are named by the variable the operator set.
	legacy map[string]string
}

// badEnv is a malformed environment variable: msg says what is wrong with it.
type badEnv struct{ flag, msg string }

// ignoredText says that the variable is ignored, as the command line gives its flag.
func (b badEnv) ignoredText() string {
	return fmt.Sprintf("%s; ignored: the command line gives --%s, which wins", b.msg, b.flag)
}

// lookup reads the variable of flag name; one set empty or to spaces counts as unset,
// but for the flags whose empty value means something (legacyenv.SetEmpty).
func (e *envFlags) lookup(name string) (string, bool) {
	v, ok := legacyenv.Ours(os.LookupEnv, name)
	if !ok {
		return "", false
	}
	e.env = append(e.env, name)
	return v, true
}

// malformed records that the variable of flag name holds v, which is not what want says.
// A value mapped from envoyproxy/ratelimit's variable is named by that variable, as the
// operator wrote it: it is the one to fix, and ours may not be set anywhere they can see.
func (e *envFlags) malformed(name, v, want string) {
	msg := fmt.Sprintf("%s=%q: %s", envName(name), v, want)
	if legacy, ok := e.legacy[envName(name)]; ok {
		msg = fmt.Sprintf("%s=%q (envoyproxy/ratelimit's, mapped to %s): %s", legacy, strings.TrimSpace(os.Getenv(legacy)), envName(name), want)
	}
	e.bad = append(e.bad, badEnv{name, msg})
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
	if v, ok := e.lookup(name); ok {
		def = v
	}
	e.fs.StringVar(p, name, def, e.usage(name, usage))
}

func (e *envFlags) BoolVar(p *bool, name string, def bool, usage string) {
	if v, ok := e.lookup(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.malformed(name, v, "want true or false")
		}
		def = b
	}
	e.fs.BoolVar(p, name, def, e.usage(name, usage))
}

func (e *envFlags) IntVar(p *int, name string, def int, usage string) {
	if v, ok := e.lookup(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.malformed(name, v, "want an integer")
		}
		def = n
	}
	e.fs.IntVar(p, name, def, e.usage(name, usage))
}

func (e *envFlags) DurationVar(p *time.Duration, name string, def time.Duration, usage string) {
	if v, ok := e.lookup(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.malformed(name, v, "want a duration such as 10ms")
		}
		def = d
	}
	e.fs.DurationVar(p, name, def, e.usage(name, usage))
}

func (e *envFlags) Float64Var(p *float64, name string, def float64, usage string) {
	if v, ok := e.lookup(name); ok {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			e.malformed(name, v, "want a number such as 0.5")
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
// with flag errors (envError).
func (e *envFlags) parse(args []string) error {
	args = withoutBlank(e.fs, args)
	if err := e.fs.Parse(args); err != nil {
		return err
	}
	if e.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %s takes only flags (see ratelimit-ext %s -h)%s", e.fs.Arg(0), e.fs.Name(), e.fs.Name(), boolValueHint(e.fs, args))
	}
	return e.envError()
}

// parseWithArgs is parse for a subcommand that takes arguments after its flags
// (validate's DIR or FILE...): they are left in e.fs.Args().
func (e *envFlags) parseWithArgs(args []string) error {
	if err := e.fs.Parse(withoutBlank(e.fs, args)); err != nil {
		return err
	}
	return e.envError()
}

// withoutBlank is args without the flags of fs given a blank value (--redis-url=,
// --redis-url "", or spaces; legacyenv.Blank): such a flag counts as not given, as its
// variable set empty does, so the variable or the default below it holds. A templated
// command line whose value came out empty must not hide what the environment sets:
// envoyproxy/ratelimit's variables are mapped by the same rule (legacyenv), and a flag
// read empty here while the mapping took it as ours would serve other than the start's
// notes say. --key-prefix= stays: it means no prefix. A switch given alone (--watch)
// takes no value, so the argument after it is not its value. The scan stops where the
// flag package stops: at "--" or the first argument that is not a flag.
func withoutBlank(fs *flag.FlagSet, args []string) []string {
	kept := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, ok := strings.CutPrefix(a, "-")
		if !ok || a == "-" || a == "--" {
			return append(kept, args[i:]...)
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(name, "-"), "=")
		f := fs.Lookup(name)
		switch {
		case f == nil: // an unknown flag, or bad syntax: Parse reports it
		case hasValue:
			if legacyenv.Blank(name, value) {
				continue
			}
		case !isBoolFlag(f) && i+1 < len(args):
			if legacyenv.Blank(name, args[i+1]) {
				i++
				continue
			}
			kept = append(kept, a)
			i, a = i+1, args[i+1]
		}
		kept = append(kept, a)
	}
	return kept
}

// isBoolFlag says whether f is a switch: given alone, it is true.
func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// envError reports the environment's errors, after the flags are parsed. A malformed
// variable whose flag the command line gives is not one: the flag wins, and the
// variable goes to e.overridden.
func (e *envFlags) envError() error {
	errs := e.unknown
	for _, b := range e.bad {
		if e.given(b.flag) {
			e.overridden = append(e.overridden, b)
		} else {
			errs = append(errs, b.msg)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("bad environment: %s", strings.Join(errs, "; "))
	}
	return nil
}

// given says whether the command line gives flag name (after parse).
func (e *envFlags) given(name string) bool {
	found := false
	e.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// set says whether the command line or the environment sets flag name (after parse):
// whether it may differ from its default.
func (e *envFlags) set(name string) bool { return e.given(name) || slices.Contains(e.env, name) }

// rejectUnknownEnv makes a RATELIMIT_EXT_ variable that names no flag an error: a
// misspelt setting of the server must not be silently ignored (one set empty is unset,
// so it sets nothing). Call before parse.
func (e *envFlags) rejectUnknownEnv() {
	known := map[string]bool{}
	e.fs.VisitAll(func(f *flag.Flag) { known[envName(f.Name)] = true })
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "RATELIMIT_EXT_") && !known[name] && strings.TrimSpace(value) != "" && !serviceLink(name, value) {
			e.unknown = append(e.unknown, fmt.Sprintf("%s is not a setting (see ratelimit-ext %s -h)", name, e.fs.Name()))
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
// (e.legacy), holds the value.
func (e *envFlags) explain(err error) error {
	if err == nil {
		return nil
	}
	var from []string
	for _, name := range e.env {
		if e.given(name) || !mentionsFlag(err.Error(), name) {
			continue
		}
		src := envName(name)
		if l, ok := e.legacy[src]; ok {
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
