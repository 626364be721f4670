// Command ratelimit-ext is a rate-limit service for Envoy.
//
//	ratelimit-ext [serve] [flags]         serve config/ (the default subcommand)
//	ratelimit-ext validate DIR|FILE...    check a rules directory, or rule files, as serve would
//	ratelimit-ext conformance [flags]     replay golden vectors through an engine
//	ratelimit-ext bench [flags]           load any ShouldRateLimit endpoint (docs/performance.md)
//	ratelimit-ext version                 the build's version (also --version)
//	ratelimit-ext help [SUBCOMMAND]       the subcommands, or one's flags
//
// Run `ratelimit-ext <subcommand> -h` for flags; serve's have environment variables
// (RATELIMIT_EXT_*), and so do conformance's Redis flags and validate's bounds.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strings"
)

// subcommands is the usage summary of `ratelimit-ext help`, also printed above serve's
// flags by `ratelimit-ext -h`.
const subcommands = `usage:
  ratelimit-ext [serve] [flags]         serve the rules of --config-dir (the default subcommand)
  ratelimit-ext validate DIR|FILE...    check a rules directory, or rule files (as serve would)
  ratelimit-ext conformance [flags]     replay golden vectors through an engine
  ratelimit-ext bench [flags]           load any ShouldRateLimit endpoint
  ratelimit-ext version                 the build's version (also --version)
  ratelimit-ext help [subcommand]       this summary, or a subcommand's flags
Run 'ratelimit-ext <subcommand> -h' for its flags; serve's have environment variables
(RATELIMIT_EXT_*), and so do conformance's Redis flags and validate's bounds.
`

func main() {
	os.Exit(run(os.Args[1:]))
}

// withFlags are the subcommands `help NAME` shows the flags of.
var withFlags = map[string]bool{"serve": true, "validate": true, "conformance": true, "bench": true}

func run(args []string) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		cmd, args = "version", nil
	}
	switch {
	case (cmd == "version" || cmd == "help") && len(args) == 1 && slices.Contains([]string{"-h", "-help", "--help"}, args[0]):
		fmt.Print(subcommands) // no flags of their own: the summary says what they do
		return 0
	case cmd == "help" && len(args) == 1 && withFlags[args[0]]:
		return run([]string{args[0], "-h"}) // help serve: serve's flags
	case cmd == "help" && len(args) == 1 && (args[0] == "version" || args[0] == "help"):
		args = nil // no flags of their own: the summary says what they do
	case cmd == "help" && len(args) == 1:
		cmd = args[0] // an unknown subcommand, named as such below
	case cmd == "help" && len(args) > 1:
		fmt.Fprintf(os.Stderr, "ratelimit-ext: help takes one subcommand, got %q\n", args)
		return 2
	case cmd == "version" && len(args) > 0:
		fmt.Fprintf(os.Stderr, "ratelimit-ext: version takes no arguments, got %q\n", args)
		return 2
	}
	switch cmd {
	case "version":
		fmt.Println(version())
		return 0
	case "serve":
		return serve(args)
	case "validate":
		return validate(args)
	case "conformance":
		return runConformance(args)
	case "bench":
		return bench(args)
	case "help":
		fmt.Print(subcommands)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "ratelimit-ext: unknown subcommand %q (want serve, validate, conformance, bench, version or help)\n", cmd)
		return 2
	}
}

// version is the build's module version, VCS revision and Go version, as the Go
// toolchain recorded them: "ratelimit-ext v1.2.3 rev 0123456789ab go1.26.0"; "(devel)"
// for a build from a working tree, "+dirty" when it had uncommitted changes, and no rev
// when the build did not record one (-buildvcs=false, or no .git in the build context).
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "ratelimit-ext (unknown build)"
	}
	v := "ratelimit-ext " + bi.Main.Version
	rev, dirty := "", ""
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value[:min(12, len(s.Value))]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "+dirty"
		}
	}
	if rev != "" && !strings.Contains(bi.Main.Version, rev) { // a pseudo-version names it
		v += " rev " + rev + dirty
	}
	return v + " " + bi.GoVersion
}
