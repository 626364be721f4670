package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// parseFlags runs parse (fs.Parse, or a method that calls it) on a subcommand's
// command line. -h prints the usage as ever; but a mistake is not followed by the whole
// usage, which would bury it: the flag package's report of it is replaced by the error
// flagError returns, for the caller to print as its one line. hint ends the line of a
// flag the subcommand does not have, e.g. "see ratelimit-ext serve -h".
func parseFlags(fs *flag.FlagSet, args []string, parse func([]string) error, hint string) error {
	out := fs.Output()
	var held bytes.Buffer // the flag package prints a mistake and the usage here
	fs.SetOutput(&held)
	err := parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		out.Write(held.Bytes())
		return err
	}
	return flagError(fs, err, hint)
}

// The flag package's errors, which say -name where the documentation says --name and,
// for a value of the wrong form, only "parse error".
var (
	flagUndefined = regexp.MustCompile(`(?s)^flag provided but not defined: -(.*)$`)
	flagNoValue   = regexp.MustCompile(`(?s)^flag needs an argument: -(.*)$`)
	flagBadValue  = regexp.MustCompile(`(?s)^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-([^:]*): (.*)$`)
	flagBadSyntax = regexp.MustCompile(`(?s)^bad flag syntax: (.*)$`)
)

// flagError rewrites an error of the flag package in the words of the other settings
// errors: `--redis-read-timeout "5": want a duration such as 10ms`, `unknown flag --x
// (see ratelimit-ext serve -h)`. Other errors are returned as they are.
func flagError(fs *flag.FlagSet, err error, hint string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if m := flagUndefined.FindStringSubmatch(msg); m != nil {
		if name := m[1]; strconv.Quote(name) != `"`+name+`"` { // a newline, say: keep one line
			return fmt.Errorf("unknown flag %q (%s)", "--"+name, hint)
		}
		return fmt.Errorf("unknown flag --%s (%s)", m[1], hint)
	}
	if m := flagNoValue.FindStringSubmatch(msg); m != nil {
		if want := flagWants(fs.Lookup(m[1])); want != "" {
			return fmt.Errorf("--%s needs a value: %s", m[1], want)
		}
		return fmt.Errorf("--%s needs a value", m[1])
	}
	if m := flagBadValue.FindStringSubmatch(msg); m != nil {
		why := m[3]
		if want := flagWants(fs.Lookup(m[2])); want != "" && why == "parse error" {
			why = want
		}
		return fmt.Errorf("--%s %s: %s", m[2], m[1], why)
	}
	if m := flagBadSyntax.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("bad flag syntax: %s (%s)", m[1], hint)
	}
	return err
}

// flagWants says what form a flag's value takes, as the errors about environment
// variables do (envFlags); "" for a flag that takes any string.
func flagWants(f *flag.Flag) string {
	if f == nil {
		return ""
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return ""
	}
	switch g.Get().(type) {
	case time.Duration:
		return "want a duration such as 10ms"
	case bool:
		return "want true or false"
	case int, int64:
		return "want an integer"
	case uint, uint64:
		return "want an integer, 0 or more"
	case float64:
		return "want a number such as 0.5"
	}
	return ""
}

// seeHelp is the hint for a flag sub does not have.
func seeHelp(sub string) string { return "see ratelimit-ext " + sub + " -h" }

// boolValueHint ends the error about an unexpected argument that is the value of the
// boolean flag before it, given apart (--watch false, as a Kubernetes args list easily
// has it): the flag package takes a boolean's value only after '=', so --watch was set
// to true and "false" left over. "" for any other argument. args is the command line
// fs parsed.
func boolValueHint(fs *flag.FlagSet, args []string) string {
	i := len(args) - fs.NArg() - 1 // the argument before the first one left over
	if fs.NArg() == 0 || i < 0 {
		return ""
	}
	name, ok := strings.CutPrefix(args[i], "-")
	if !ok || strings.Contains(name, "=") {
		return ""
	}
	name = strings.TrimPrefix(name, "-")
	f := fs.Lookup(name)
	if f == nil {
		return ""
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
		return ""
	}
	if _, err := strconv.ParseBool(fs.Arg(0)); err != nil {
		return ""
	}
	return fmt.Sprintf("; a boolean flag takes its value after '=': --%s=%s", name, fs.Arg(0))
}
