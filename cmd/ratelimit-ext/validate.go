package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/conformance"
	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/legacyenv"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// validate loads a rules directory, or rule files, and prints every error or a one-line
// summary. It refuses what serve refuses at start for the same rules and environment
// (month limits with USE_CALENDAR_MONTH_RATE_LIMIT=true), and warns of rules over the
// request bounds its flags (serve's, with their variables) set, as serve does.
func validate(args []string) int {
	if err := legacyenv.RulesFromOS(args); err != nil { // MERGE_DOMAIN_CONFIG, as serve maps it
		fmt.Fprintln(os.Stderr, "ratelimit-ext validate:", err)
		return 2
	}
	f := newEnvFlags("validate")
	f.fs.Usage = func() {
		fmt.Fprint(f.fs.Output(), validateUsage)
		f.fs.PrintDefaults()
	}
	bounds := decide.DefaultBounds
	ruleBoundFlags(f, &bounds)
	var load descriptors.Options
	ruleLoadFlags(f, &load)
	err := parseFlags(f.fs, args, f.parseWithArgs, seeHelp("validate"))
	if err == nil {
		err = validateSettings(f, bounds)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratelimit-ext validate:", err)
		return 2
	}
	if f.fs.NArg() == 0 {
		f.fs.Usage()
		return 2
	}
	for _, b := range f.overridden {
		fmt.Fprintln(os.Stderr, "warning:", b.ignoredText())
	}
	return validateRules(f.fs.Args(), load, bounds)
}

const validateUsage = `usage: ratelimit-ext validate [flags] DIR | FILE...
Checks every rule file below DIR as the server loads it, or the files given as one
rule set; exit 1 with every error. It refuses what serve refuses at start for the
same rules (month limits with USE_CALENDAR_MONTH_RATE_LIMIT=true), merges the files
of a domain when serve would (--merge-domains below, or MERGE_DOMAIN_CONFIG=true), and
warns of rules over the request bounds below as serve does with the same flags or
variables (serve's other RATELIMIT_EXT_* variables are left alone). Flags go before
DIR or FILE.

Flags of validate:
`

// validateSettings checks validate's command line and environment as serve checks
// its own: the bounds, flags before the files, USE_CALENDAR_MONTH_RATE_LIMIT's value.
func validateSettings(f *envFlags, bounds decide.Bounds) error {
	if err := checkRuleBounds(bounds); err != nil {
		return f.explain(err)
	}
	for _, a := range f.fs.Args() {
		if strings.HasPrefix(a, "-") { // the flag package stops at the first file
			return fmt.Errorf("%s: flags go before DIR or FILE (see ratelimit-ext validate -h)", a)
		}
	}
	_, err := legacyenv.CalendarMonths(os.LookupEnv)
	return err
}

// validateRules loads paths (one directory, or files), prints every error or the
// summary and the warnings serve would log for bounds, and returns the exit status.
func validateRules(paths []string, load descriptors.Options, bounds decide.Bounds) int {
	rs, dir, err := loadForValidate(paths, load)
	var usage usageError
	if errors.As(err, &usage) {
		fmt.Fprintln(os.Stderr, "ratelimit-ext validate:", err)
		return 2
	}
	if err == nil {
		err = legacyenv.MonthLimitsRefusedIn(dir, legacyenv.CalendarMonthsAsked(), rs) // serve's refusal at start
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ok: %s\n", rs.Summary())
	ws, total := ruleWarnings(rs, bounds)
	for _, w := range ws {
		if dir != "" {
			w = configErrorFromWorkingDir(w, dir)
		}
		fmt.Fprintln(os.Stderr, "warning:", w.Error())
	}
	if total > len(ws) {
		fmt.Fprintf(os.Stderr, "warning: (%d more)\n", total-len(ws))
	}
	if note := skippedNote(rs); note != "" {
		fmt.Fprintln(os.Stderr, "warning:", note)
	}
	if rs.LimitCount() == 0 {
		fmt.Fprintln(os.Stderr, "warning: no limits: every request would be allowed")
	}
	return 0
}

// loadForValidate loads one directory the way the server does (dir is then its
// name), or files (a pre-commit hook's list, say) compiled together, so a domain defined
// twice among them is caught. A usageError says the arguments mix the two or name
// several directories.
func loadForValidate(paths []string, load descriptors.Options) (rs *descriptors.RuleSet, dir string, err error) {
	for _, p := range paths {
		info, err := os.Stat(p)
		if err == nil && info.IsDir() {
			if len(paths) > 1 {
				return nil, "", usageError(p + " is a directory; give one directory, or rule files")
			}
			rs, err := load.LoadDir(p)
			return rs, p, fromWorkingDir(err, p)
		}
		if err == nil && !descriptors.IsRuleFile(p) { // a missing file gets its own error
			fmt.Fprintf(os.Stderr, "warning: %s: the server reads only *.yaml and *.yml files that are not dot-files\n", p)
		}
	}
	rs, err = load.LoadFiles(paths...)
	return rs, "", err
}

// usageError is a validate command line that names no loadable set of rules.
type usageError string

func (e usageError) Error() string { return string(e) }

// conformance replays a golden-vector file through the chosen engine (SPEC §8). Every
// message on stderr begins "ratelimit-ext conformance: "; a mistake in the command line
// exits 2, a file or an engine that fails exits 1, as a mismatch does.
func runConformance(args []string) int {
	fail := func(code int, err error) int {
		fmt.Fprintln(os.Stderr, conformanceSays+err.Error())
		return code
	}
	f := newEnvFlags("conformance")
	vectors := f.fs.String("vectors", "", "golden-vector JSON file to replay (required)")
	engineName := f.fs.String("engine", "", "memory or redis (default: redis when --redis-url is set, else memory)")
	base := f.fs.Int64("base", 60000, "ms added to every now and expected resetAt; a multiple of every window in the file")
	// A timeout there would fail the replay, not the engine: the default is 1s.
	ro := redisFlags(f, time.Second, "a slower reply fails the run")
	var keyPrefix string
	keyPrefixFlag(f, &keyPrefix)
	if err := parseFlags(f.fs, args, f.parse, seeHelp("conformance")); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // -h: the flags are printed, as asked
		}
		return fail(2, err)
	}
	for _, b := range f.overridden {
		fmt.Fprintf(os.Stderr, "%swarning: %s\n", conformanceSays, b.ignoredText())
	}
	if *vectors == "" {
		return fail(2, errors.New("--vectors FILE is required"))
	}
	name, err := chooseEngine(*engineName, ro().URL)
	if err == nil && name == "redis" {
		err = cmp.Or(checkRedisOptions(ro()), checkKeyPrefix(keyPrefix, ro()))
	}
	if err != nil {
		return fail(2, err)
	}
	file, err := conformance.Load(*vectors) // a JSON error says FILE:LINE:COL
	if err != nil {
		return fail(1, err)
	}
	var engine limiter.Engine
	switch name {
	case "memory":
		engine = limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	case "redis":
		// go-redis's own lines (a failed dial, say) repeat the error printed below
		routeRedisLogs(slog.New(slog.NewTextHandler(os.Stderr, nil)))
		if engine, err = newRedisEngine(ro()); err != nil {
			return fail(1, err)
		}
	}
	defer engine.Close()
	if err := storeAnswers(engine, ro().ReadTimeout); err != nil {
		return fail(1, err)
	}
	fmt.Printf("engine: %s\n", name) // a pass must say what it passed on
	prefix := conformancePrefix(ro(), keyPrefix)
	results, err := conformance.Replay(context.Background(), engine, file, *base, prefix)
	if err != nil {
		return fail(1, err)
	}
	return printResults(results)
}

// storeAnswers pings a store that can be unreachable before anything is replayed, so
// that a store that is down reads as that, not as the first suite failing.
func storeAnswers(engine limiter.Engine, timeout time.Duration) error {
	p, ok := engine.(limiter.Pinger)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(timeout, time.Second))
	defer cancel()
	if err := p.Ping(ctx); err != nil {
		return fmt.Errorf("the store does not answer, so nothing was replayed: %w", err)
	}
	return nil
}

// conformanceSays begins every message of conformance on stderr.
const conformanceSays = "ratelimit-ext conformance: "

func printResults(results []conformance.Result) int {
	passed, failed, skipped := 0, 0, 0
	for _, r := range results {
		switch {
		case r.Skipped:
			skipped++
			fmt.Printf("SKIP %s (out of scope)\n", r.Suite)
		case r.Mismatch != "":
			failed++
			fmt.Printf("FAIL %s: %s\n", r.Suite, r.Mismatch)
		default:
			passed++
			fmt.Printf("ok   %s (%d ops)\n", r.Suite, r.Ops)
		}
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		return 1
	}
	if passed == 0 {
		fmt.Fprintln(os.Stderr, conformanceSays+"no suite was replayed")
		return 1
	}
	return 0
}

// fromWorkingDir makes the file names of a load error relative to the working
// directory, as the directory was given, so that "config/edge.yaml:4" opens from where
// validate ran; the loader names files relative to the directory it loads.
func fromWorkingDir(err error, dir string) error {
	var le *descriptors.LoadError
	if !errors.As(err, &le) {
		return err
	}
	for i := range le.Errors {
		if e := le.Errors[i]; e.Field != "dir" || e.File != dir { // the directory itself is named as given
			le.Errors[i] = configErrorFromWorkingDir(e, dir)
		}
	}
	return le
}

// configErrorFromWorkingDir is fromWorkingDir for one error or warning: its file, the
// file a duplicate was first defined in (DefinedIn), and the other file it points at in
// a merged domain (Ref.File).
func configErrorFromWorkingDir(e descriptors.ConfigError, dir string) descriptors.ConfigError {
	e.File = filepath.Join(dir, e.File)
	if e.DefinedIn != "" {
		e.DefinedIn = filepath.Join(dir, e.DefinedIn)
	}
	if e.Ref != nil && e.Ref.File != "" {
		ref := *e.Ref // a copy: the rule set's is shared
		ref.File = filepath.Join(dir, ref.File)
		e.Ref = &ref
	}
	return e
}
