package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// composeFile is the part of the Compose format the harness understands. Decoding is
// strict: a key that is not listed here is an error, because the harness would otherwise
// silently run something different from what `docker compose up` runs.
type composeFile struct {
	Version  string                     `yaml:"version"`
	Name     string                     `yaml:"name"`
	Services map[string]*composeService `yaml:"services"`
	// Every other top-level key. Only extensions (x-...) may be there: Compose ignores
	// them, and they hold the YAML anchors services merge in with `<<: *name`.
	Extensions map[string]any `yaml:",inline"`
}

type composeService struct {
	Image       string       `yaml:"image"`
	Build       composeBuild `yaml:"build"`
	PullPolicy  string       `yaml:"pull_policy"`
	Command     stringList   `yaml:"command"`
	Environment envMap       `yaml:"environment"`
	Volumes     []string     `yaml:"volumes"`
	Ports       []string     `yaml:"ports"`
	DependsOn   dependsOn    `yaml:"depends_on"`
	Restart     string       `yaml:"restart"`
	// Hardening (checkHardening). The harness runs replicas with read_only,
	// cap_drop: [ALL] and no-new-privileges as the kernel would in the container
	// (confinement); for the other services it checks the values only.
	ReadOnly    strictBool `yaml:"read_only"`
	CapDrop     []string   `yaml:"cap_drop"`
	SecurityOpt []string   `yaml:"security_opt"`
	User        string     `yaml:"user"`
}

// composeBuild is `build: <context>` or `build: {context, dockerfile}`.
type composeBuild struct {
	Context    string
	Dockerfile string
}

func (b *composeBuild) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	var m struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	}
	if err := decodeStrict(n, &m); err != nil {
		return err
	}
	b.Context, b.Dockerfile = m.Context, m.Dockerfile
	return nil
}

// stringList is a command: a list, or a string split on blanks as Compose does.
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if strings.ContainsAny(n.Value, `"'\`) {
			return fmt.Errorf("line %d: command %q: write a quoted command as a YAML list", n.Line, n.Value)
		}
		*s = strings.Fields(n.Value)
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// envMap is `environment:` as a mapping or as a list of KEY=VALUE.
type envMap map[string]string

func (e *envMap) UnmarshalYAML(n *yaml.Node) error {
	out := envMap{}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
				return fmt.Errorf("line %d: environment %s: want a value (the harness cannot pass through the host's environment)", v.Line, k.Value)
			}
			out[k.Value] = v.Value
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			k, v, ok := strings.Cut(item.Value, "=")
			if !ok {
				return fmt.Errorf("line %d: environment %q: want KEY=VALUE", item.Line, item.Value)
			}
			out[k] = v
		}
	default:
		return fmt.Errorf("line %d: environment: want a mapping or a list", n.Line)
	}
	*e = out
	return nil
}

// strictBool is a YAML boolean, true or false, and nothing else ("yes" and "on" are
// booleans to some YAML readers, strings to others).
type strictBool bool

func (b *strictBool) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || (n.Value != "true" && n.Value != "false") {
		return fmt.Errorf("line %d: %q: want true or false", n.Line, n.Value)
	}
	*b = n.Value == "true"
	return nil
}

// dependsOn is `depends_on:` as a list or as a mapping of service → condition.
type dependsOn []string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*d = l
	case yaml.MappingNode:
		for i := 0; i < len(n.Content); i += 2 {
			*d = append(*d, n.Content[i].Value)
		}
	default:
		return fmt.Errorf("line %d: depends_on: want a list or a mapping", n.Line)
	}
	return nil
}

func decodeStrict(n *yaml.Node, v any) error {
	// Re-encode the node so the strict decoder can see it; yaml.Node.Decode has no
	// KnownFields option.
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

func parseCompose(data []byte) (*composeFile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f composeFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("docker-compose.yml: %w (the e2e harness only maps the keys it knows; teach e2e/compose.go the new one)", err)
	}
	for k := range f.Extensions {
		if !strings.HasPrefix(k, "x-") {
			return nil, fmt.Errorf("docker-compose.yml: unknown top-level key %q (the e2e harness only maps the keys it knows; teach e2e/compose.go the new one)", k)
		}
	}
	if len(f.Services) == 0 {
		return nil, errors.New("docker-compose.yml: no services")
	}
	for name, s := range f.Services {
		if s == nil {
			return nil, fmt.Errorf("docker-compose.yml: service %s is empty", name)
		}
		for _, dep := range s.DependsOn {
			if f.Services[dep] == nil {
				return nil, fmt.Errorf("docker-compose.yml: service %s depends on unknown service %q", name, dep)
			}
		}
		if err := s.checkHardening(); err != nil {
			return nil, fmt.Errorf("docker-compose.yml: service %s: %w", name, err)
		}
	}
	return &f, nil
}

// capability is a name cap_drop takes: ALL, or a capability with or without CAP_.
var capability = regexp.MustCompile(`^(ALL|(CAP_)?[A-Z][A-Z_]*[A-Z])$`)

// rootUser is a user: that runs the service as root.
var rootUser = regexp.MustCompile(`^(root|0+)(:.*)?$`)

// checkHardening refuses values of the hardening keys the harness cannot check: a
// security option other than no-new-privileges (a seccomp or AppArmor profile, SELinux
// labels), a misspelt capability, root as the user.
func (s *composeService) checkHardening() error {
	for _, c := range s.CapDrop {
		if !capability.MatchString(c) {
			return fmt.Errorf("cap_drop %q: want ALL or a capability name in capitals (e.g. NET_RAW)", c)
		}
	}
	for _, o := range s.SecurityOpt {
		if _, ok := noNewPrivileges(o); !ok {
			return fmt.Errorf("security_opt %q: the e2e harness checks only no-new-privileges:true (teach e2e/compose.go the new one)", o)
		}
	}
	if rootUser.MatchString(s.User) {
		return fmt.Errorf("user %q runs the service as root", s.User)
	}
	return nil
}

// noNewPrivileges reads a no-new-privileges security option: its value, and whether
// opt is one.
func noNewPrivileges(opt string) (on, ok bool) {
	name, v, hasValue := strings.Cut(opt, ":")
	if !hasValue {
		name, v, hasValue = strings.Cut(opt, "=")
	}
	switch {
	case name != "no-new-privileges":
		return false, false
	case !hasValue:
		return true, true
	case v == "true" || v == "false":
		return v == "true", true
	}
	return false, false
}

// hardened says what the service's hardening keys ask the kernel for.
func (s *composeService) hardened() (readOnly, dropAll, noNewPrivs bool) {
	for _, o := range s.SecurityOpt {
		if on, _ := noNewPrivileges(o); on {
			noNewPrivs = true
		}
	}
	return bool(s.ReadOnly), slices.Contains(s.CapDrop, "ALL"), noNewPrivs
}

func (f *composeFile) serviceNames() []string {
	names := make([]string, 0, len(f.Services))
	for n := range f.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// dockerfile is what the harness takes from the Dockerfile.
type dockerfile struct {
	BuildCmd   string            // the `go build` RUN command, verbatim
	BuildArgs  map[string]string // the ARGs its stage declares before it, with their defaults
	OutPath    string            // its -o path inside the build stage
	BinPaths   []string          // where the final stage puts the binary (each copy)
	Entrypoint []string          // ENTRYPOINT of the final stage (exec form)
	Cmd        []string          // CMD of the final stage (exec form), if any
	Env        map[string]string // ENV of the final stage
	User       string

	globalArgs map[string]string // ARGs before the first FROM (only FROM lines see them)
	stageArgs  map[string]string // ARGs of the stage being read; nil before the first FROM
}

var outFlag = regexp.MustCompile(`(?:^|\s)-o\s+(\S+)`)

// parseDockerfile extracts the build command and the final stage's runtime settings.
func parseDockerfile(data []byte) (*dockerfile, error) {
	instrs := dockerInstrs(data)
	finalFrom := -1 // the final stage is what follows the last FROM
	for i, in := range instrs {
		if in.op == "FROM" {
			finalFrom = i
		}
	}
	if finalFrom < 0 {
		return nil, errors.New("Dockerfile: no FROM")
	}
	d := &dockerfile{Env: map[string]string{}, globalArgs: map[string]string{}}
	for i, in := range instrs {
		if err := d.read(in, i > finalFrom); err != nil {
			return nil, err
		}
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	return d, nil
}

// dockerInstr is one instruction of a Dockerfile, its continuation lines joined.
type dockerInstr struct {
	op, args string // op in upper case
	line     int    // where it starts, from 1
	oneLine  bool   // not continued on the next line
}

// dockerInstrs splits a Dockerfile into instructions, skipping blank lines and
// comments, also between continuation lines.
func dockerInstrs(data []byte) []dockerInstr {
	var instrs []dockerInstr
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		start, one := i+1, true
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
			one = false
			i++
			next := strings.TrimSpace(lines[i])
			if next == "" || strings.HasPrefix(next, "#") {
				continue // Docker skips both inside an instruction
			}
			l = strings.TrimSuffix(l, `\`) + " " + next
		}
		op, args, _ := strings.Cut(l, " ")
		instrs = append(instrs, dockerInstr{strings.ToUpper(op), strings.TrimSpace(args), start, one})
	}
	return instrs
}

// read takes what the harness needs from one instruction: the `go build` RUN from any
// stage, the runtime settings only from the final stage.
func (d *dockerfile) read(in dockerInstr, final bool) error {
	switch {
	case in.op == "FROM":
		d.stageArgs = map[string]string{} // a stage starts with no ARGs of its own
	case in.op == "ARG":
		d.readArg(in.args)
	case in.op == "RUN" && strings.Contains(in.args, "go build"):
		return d.readBuild(in)
	case final && in.op == "COPY":
		f := strings.Fields(in.args)
		if len(f) == 3 && strings.HasPrefix(f[0], "--from=") && d.OutPath != "" && f[1] == d.OutPath {
			dest := f[2]
			if strings.HasSuffix(dest, "/") {
				dest += pathBase(d.OutPath)
			}
			d.BinPaths = append(d.BinPaths, dest)
		}
	case final && in.op == "ENTRYPOINT":
		if err := json.Unmarshal([]byte(in.args), &d.Entrypoint); err != nil {
			return fmt.Errorf("Dockerfile:%d: ENTRYPOINT: want the exec (JSON) form: %v", in.line, err)
		}
	case final && in.op == "CMD":
		if err := json.Unmarshal([]byte(in.args), &d.Cmd); err != nil {
			return fmt.Errorf("Dockerfile:%d: CMD: want the exec (JSON) form: %v", in.line, err)
		}
	case final && in.op == "ENV":
		if err := parseEnvInstr(in.args, d.Env); err != nil {
			return fmt.Errorf("Dockerfile:%d: %v", in.line, err)
		}
	case final && in.op == "USER":
		d.User = in.args
	}
	return nil
}

// readBuild takes the `go build` RUN, which BuildService runs with sh -c, only its -o
// path replaced: hence one of them, on one line, in shell form, with an -o to replace.
func (d *dockerfile) readBuild(in dockerInstr) error {
	if d.BuildCmd != "" {
		return fmt.Errorf("Dockerfile:%d: a second `go build` RUN line; the e2e harness builds with exactly one", in.line)
	}
	if !in.oneLine {
		return fmt.Errorf("Dockerfile:%d: keep the `go build` RUN on one line (the e2e harness runs it verbatim)", in.line)
	}
	if strings.HasPrefix(in.args, "[") {
		return fmt.Errorf("Dockerfile:%d: write the `go build` RUN in shell form", in.line)
	}
	m := outFlag.FindStringSubmatch(in.args)
	if m == nil {
		return fmt.Errorf("Dockerfile:%d: the `go build` RUN has no -o <path>", in.line)
	}
	for _, v := range shellVar.FindAllStringSubmatch(in.args, -1) {
		if _, ok := d.stageArgs[v[1]]; !ok {
			return fmt.Errorf("Dockerfile:%d: the `go build` RUN uses $%s, which no ARG of its stage declares (Docker would expand it to nothing)", in.line, v[1])
		}
	}
	d.BuildCmd, d.BuildArgs, d.OutPath = in.args, maps.Clone(d.stageArgs), m[1]
	return nil
}

// shellVar is a $NAME or ${NAME} reference in a RUN command.
var shellVar = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)

// readArg records `ARG NAME[=default] ...`. Before the first FROM it declares a global,
// which a stage sees only by declaring the name again (taking the global's default).
func (d *dockerfile) readArg(args string) {
	for _, f := range strings.Fields(args) {
		name, def, hasDef := strings.Cut(f, "=")
		def = strings.Trim(def, `"'`)
		if d.stageArgs == nil {
			d.globalArgs[name] = def
			continue
		}
		if !hasDef {
			def = d.globalArgs[name]
		}
		d.stageArgs[name] = def
	}
}

// buildEnv is the environment the `go build` line runs in: base plus each ARG of its
// stage, set as Docker sets it, to the value passed in args or else to its default
// (Docker passes TARGETOS and TARGETARCH only under BuildKit; a declared ARG with no
// value is empty, which the go command takes as the host's platform).
func (d *dockerfile) buildEnv(base []string, args map[string]string) []string {
	env := slices.Clone(base)
	for _, name := range slices.Sorted(maps.Keys(d.BuildArgs)) {
		v, ok := args[name]
		if !ok {
			v = d.BuildArgs[name]
		}
		env = append(env, name+"="+v) // the last of a name wins (os/exec)
	}
	return env
}

// check makes sure the image runs what the harness builds: a build, the final stage's
// copy of its output, and an ENTRYPOINT that starts that copy.
func (d *dockerfile) check() error {
	switch {
	case d.BuildCmd == "":
		return errors.New("Dockerfile: no `RUN ... go build ... -o <path>` line")
	case len(d.BinPaths) == 0:
		return fmt.Errorf("Dockerfile: the final stage does not COPY --from=<build stage> %s", d.OutPath)
	case len(d.Entrypoint) == 0 || !slices.Contains(d.BinPaths, d.Entrypoint[0]):
		return fmt.Errorf("Dockerfile: ENTRYPOINT %q does not start the built binary (%s)", d.Entrypoint, strings.Join(d.BinPaths, ", "))
	}
	return nil
}

// parseEnvInstr reads `ENV K=V K2="V 2"` (and the legacy `ENV K V`) into env.
func parseEnvInstr(args string, env map[string]string) error {
	if !strings.Contains(strings.SplitN(args, " ", 2)[0], "=") {
		k, v, _ := strings.Cut(args, " ")
		env[k] = strings.TrimSpace(v)
		return nil
	}
	for rest := strings.TrimSpace(args); rest != ""; rest = strings.TrimSpace(rest) {
		k, after, ok := strings.Cut(rest, "=")
		if !ok {
			return fmt.Errorf("ENV %q: want KEY=VALUE", rest)
		}
		var v string
		if strings.HasPrefix(after, `"`) {
			end := strings.Index(after[1:], `"`)
			if end < 0 {
				return fmt.Errorf("ENV %s: unterminated quote", k)
			}
			v, rest = after[1:1+end], after[2+end:]
		} else {
			v, rest, _ = strings.Cut(after, " ")
		}
		env[k] = v
	}
	return nil
}

func pathBase(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}
