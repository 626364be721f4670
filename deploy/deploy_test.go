// Package deploy holds the deployment kit (Kubernetes manifests, Grafana dashboard,
// Prometheus alerting rules; see docs/deploy.md). Its tests hold the kit to the code: the
// probes hit endpoints the HTTP server registers, every RATELIMIT_EXT_* variable is a
// real flag, the rules in the ConfigMap load, the dashboard queries only metrics the
// service exports, and the alerts only metrics, labels and values it exports
// (alerts_test.go).
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/metrics"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
)

// repoRoot: `go test` runs in the package directory, deploy/.
const repoRoot = ".."

// object is one Kubernetes document, with the fields the tests look at.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec yaml.Node         `yaml:"spec"`

	file string
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type deploymentSpec struct {
	Replicas *int          `yaml:"replicas"`
	Selector labelSelector `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec podSpec `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
	EnableServiceLinks            *bool `yaml:"enableServiceLinks"`
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	SecurityContext               struct {
		RunAsNonRoot   *bool           `yaml:"runAsNonRoot"`
		RunAsUser      *int64          `yaml:"runAsUser"`
		SeccompProfile *seccompProfile `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	TopologySpreadConstraints []struct {
		MaxSkew           int           `yaml:"maxSkew"`
		TopologyKey       string        `yaml:"topologyKey"`
		WhenUnsatisfiable string        `yaml:"whenUnsatisfiable"`
		LabelSelector     labelSelector `yaml:"labelSelector"`
	} `yaml:"topologySpreadConstraints"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom any    `yaml:"valueFrom"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
			Exec any `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile *seccompProfile `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
}

type seccompProfile struct {
	Type string `yaml:"type"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type serviceSpec struct {
	ClusterIP string            `yaml:"clusterIP"`
	Selector  map[string]string `yaml:"selector"`
	Ports     []struct {
		Name        string `yaml:"name"`
		Port        int    `yaml:"port"`
		TargetPort  any    `yaml:"targetPort"`
		AppProtocol string `yaml:"appProtocol"`
	} `yaml:"ports"`
}

type pdbSpec struct {
	MinAvailable               any           `yaml:"minAvailable"`
	MaxUnavailable             any           `yaml:"maxUnavailable"`
	Selector                   labelSelector `yaml:"selector"`
	UnhealthyPodEvictionPolicy string        `yaml:"unhealthyPodEvictionPolicy"`
}

// loadManifests decodes every YAML document of every file in deploy/kubernetes.
func loadManifests(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (err %v)", err)
	}
	var objs []object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if o.Kind == "" && o.APIVersion == "" {
				continue // an empty document (a leading `---` after comments)
			}
			if o.Kind == "" || o.APIVersion == "" || o.Metadata.Name == "" {
				t.Fatalf("%s: document %d: missing apiVersion, kind or metadata.name", f, i)
			}
			o.file = filepath.Base(f)
			objs = append(objs, o)
		}
	}
	return objs
}

func find(t *testing.T, objs []object, file, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.file == file && o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("%s: no %s %q", file, kind, name)
	return object{}
}

func decodeSpec[T any](t *testing.T, o object) T {
	t.Helper()
	var s T
	if err := o.Spec.Decode(&s); err != nil {
		t.Fatalf("%s %s %s: spec: %v", o.file, o.Kind, o.Metadata.Name, err)
	}
	return s
}

// subset reports whether every label of sel is in labels (a selector that selects them).
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func envOf(c container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func TestManifestKinds(t *testing.T) {
	objs := loadManifests(t)
	want := []struct{ file, kind, name string }{
		{"ratelimit-ext.yaml", "ConfigMap", "ratelimit-ext-rules"},
		{"ratelimit-ext.yaml", "Deployment", "ratelimit-ext"},
		{"ratelimit-ext.yaml", "Service", "ratelimit-ext"},
		{"ratelimit-ext.yaml", "PodDisruptionBudget", "ratelimit-ext"},
		{"redis.yaml", "Deployment", "redis"},
		{"redis.yaml", "Service", "redis"},
	}
	for _, w := range want {
		find(t, objs, w.file, w.kind, w.name)
	}
	apis := map[string]string{"ConfigMap": "v1", "Service": "v1", "Deployment": "apps/v1", "PodDisruptionBudget": "policy/v1"}
	for _, o := range objs {
		if want, ok := apis[o.Kind]; !ok || o.APIVersion != want {
			t.Errorf("%s: %s %s: apiVersion %q, want one of %v", o.file, o.Kind, o.Metadata.Name, o.APIVersion, apis)
		}
		if o.Metadata.Namespace != "" {
			t.Errorf("%s: %s %s: hard-coded namespace %q (apply with -n instead)", o.file, o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
	}
}

// TestServiceDeployment: the ratelimit-ext Deployment's shape, Services and PDB.
func TestServiceDeployment(t *testing.T) {
	objs := loadManifests(t)
	dep := decodeSpec[deploymentSpec](t, find(t, objs, "ratelimit-ext.yaml", "Deployment", "ratelimit-ext"))
	pod := dep.Template.Spec
	podLabels := dep.Template.Metadata.Labels
	if dep.Replicas == nil || *dep.Replicas != 2 {
		t.Errorf("replicas %v, want 2", dep.Replicas)
	}
	if !subset(dep.Selector.MatchLabels, podLabels) {
		t.Errorf("Deployment selector %v does not select its pods %v", dep.Selector.MatchLabels, podLabels)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != "ratelimit-ext:latest" {
		t.Errorf("image %q, want ratelimit-ext:latest (the Dockerfile's build)", c.Image)
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["grpc"] != 8081 || ports["http"] != 8080 {
		t.Errorf("container ports %v, want grpc 8081, http 8080", ports)
	}
	env := envOf(c)
	if env["RATELIMIT_EXT_GRPC_ADDR"] != "0.0.0.0:8081" || env["RATELIMIT_EXT_HTTP_ADDR"] != "0.0.0.0:8080" {
		t.Errorf("listen addresses %q / %q, want 0.0.0.0:8081 / 0.0.0.0:8080",
			env["RATELIMIT_EXT_GRPC_ADDR"], env["RATELIMIT_EXT_HTTP_ADDR"])
	}
	if !strings.HasPrefix(env["RATELIMIT_EXT_REDIS_URL"], "redis://") {
		t.Errorf("RATELIMIT_EXT_REDIS_URL %q, want a redis:// URL", env["RATELIMIT_EXT_REDIS_URL"])
	}

	// Requests and limits (the security settings: TestPodSecurity).
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" || c.Resources.Limits[r] == "" {
			t.Errorf("resources: want requests and limits for %s, got %+v", r, c.Resources)
		}
	}
	// GOMEMLIMIT below the memory limit: the runtime does not count all of the pod's
	// memory (socket buffers, kernel memory), so a GC goal at the limit meets the OOM
	// killer first.
	if lim, goal := mebibytes(t, c.Resources.Limits["memory"]), mebibytes(t, env["GOMEMLIMIT"]); goal <= 0 || goal > lim*95/100 {
		t.Errorf("GOMEMLIMIT %q: want at most 95%% of the memory limit %q", env["GOMEMLIMIT"], c.Resources.Limits["memory"])
	}
	// Service links would put RATELIMIT_EXT_SERVICE_HOST and the like, from the Service
	// of the same name, into the settings' namespace.
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("enableServiceLinks: want false")
	}

	// Shutdown: preStop sleeps (the kubelet's sleep action: distroless has no `sleep`
	// binary), and the grace period covers the sleep plus --shutdown-timeout.
	ps := c.Lifecycle.PreStop
	if ps == nil || ps.Sleep == nil || ps.Sleep.Seconds <= 0 || ps.Exec != nil {
		t.Fatalf("preStop: want a sleep action (no exec: the image has no shell or sleep)")
	}
	shutdown := 10 * time.Second // the flag's default
	if v, ok := env["RATELIMIT_EXT_SHUTDOWN_TIMEOUT"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("RATELIMIT_EXT_SHUTDOWN_TIMEOUT %q: %v", v, err)
		}
		shutdown = d
	}
	need := time.Duration(ps.Sleep.Seconds)*time.Second + shutdown
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds: want more than preStop %ds + shutdown %v = %v", ps.Sleep.Seconds, shutdown, need)
	}

	// Services select the pods and target named container ports.
	svc := decodeSpec[serviceSpec](t, find(t, objs, "ratelimit-ext.yaml", "Service", "ratelimit-ext"))
	if !subset(svc.Selector, podLabels) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Selector, podLabels)
	}
	got := map[string]int{}
	for _, p := range svc.Ports {
		got[p.Name] = p.Port
		if name, ok := p.TargetPort.(string); ok {
			if _, ok := ports[name]; !ok {
				t.Errorf("Service port %s targets %q, not a container port", p.Name, name)
			}
		}
		if p.Name == "grpc" && p.AppProtocol != "grpc" {
			t.Errorf("Service port grpc: appProtocol %q, want grpc", p.AppProtocol)
		}
	}
	if got["grpc"] != 8081 || got["http"] != 8080 {
		t.Errorf("Service ports %v, want grpc 8081, http 8080", got)
	}
	for _, o := range objs {
		if o.file == "ratelimit-ext.yaml" && o.Kind == "Service" {
			if s := decodeSpec[serviceSpec](t, o); !subset(s.Selector, podLabels) {
				t.Errorf("Service %s does not select the pods", o.Metadata.Name)
			}
		}
	}

	pdb := decodeSpec[pdbSpec](t, find(t, objs, "ratelimit-ext.yaml", "PodDisruptionBudget", "ratelimit-ext"))
	if !subset(pdb.Selector.MatchLabels, podLabels) {
		t.Errorf("PDB selector %v does not select the pods", pdb.Selector.MatchLabels)
	}
	if pdb.MinAvailable == nil && pdb.MaxUnavailable == nil {
		t.Errorf("PDB: want minAvailable or maxUnavailable")
	}
	// Readiness follows Redis, so a Redis outage leaves every replica unready; under the
	// default policy (IfHealthyBudget) the budget then refuses to evict any of them and
	// node drains hang until Redis is back. Unready pods serve nothing worth guarding.
	if pdb.UnhealthyPodEvictionPolicy != "AlwaysAllow" {
		t.Errorf("PDB: unhealthyPodEvictionPolicy %q, want AlwaysAllow (drains must not wait on unready pods)", pdb.UnhealthyPodEvictionPolicy)
	}

	// The trial Redis is what RATELIMIT_EXT_REDIS_URL names.
	rsvc := decodeSpec[serviceSpec](t, find(t, objs, "redis.yaml", "Service", "redis"))
	rdep := decodeSpec[deploymentSpec](t, find(t, objs, "redis.yaml", "Deployment", "redis"))
	if rdep.Replicas == nil || *rdep.Replicas != 1 || !subset(rsvc.Selector, rdep.Template.Metadata.Labels) {
		t.Errorf("redis: want 1 replica selected by the redis Service")
	}
	if len(rsvc.Ports) != 1 || env["RATELIMIT_EXT_REDIS_URL"] != "redis://redis:"+strconv.Itoa(rsvc.Ports[0].Port) {
		t.Errorf("RATELIMIT_EXT_REDIS_URL %q does not name the redis Service", env["RATELIMIT_EXT_REDIS_URL"])
	}
}

// TestPodSecurity: every Deployment meets the "restricted" Pod Security Standard, so
// the kit applies in a namespace that enforces it, and goes without the API token.
// The replicas are spread over zones and over nodes, each a preference (a cluster of
// one zone or one node still runs both), and each constraint counts the Deployment's
// own pods: a selector that matches none spreads nothing, without a word.
func TestReplicasSpread(t *testing.T) {
	dep := decodeSpec[deploymentSpec](t, find(t, loadManifests(t), "ratelimit-ext.yaml", "Deployment", "ratelimit-ext"))
	spread := map[string]bool{}
	for _, c := range dep.Template.Spec.TopologySpreadConstraints {
		if !subset(c.LabelSelector.MatchLabels, dep.Template.Metadata.Labels) {
			t.Errorf("spread over %s: selector %v does not select the Deployment's pods %v", c.TopologyKey, c.LabelSelector.MatchLabels, dep.Template.Metadata.Labels)
		}
		if c.MaxSkew != 1 || c.WhenUnsatisfiable != "ScheduleAnyway" {
			t.Errorf("spread over %s: maxSkew %d, %s; want 1, ScheduleAnyway", c.TopologyKey, c.MaxSkew, c.WhenUnsatisfiable)
		}
		spread[c.TopologyKey] = true
	}
	for _, key := range []string{"topology.kubernetes.io/zone", "kubernetes.io/hostname"} {
		if !spread[key] {
			t.Errorf("no topology spread constraint over %s", key)
		}
	}
}

func TestPodSecurity(t *testing.T) {
	seen := 0
	for _, o := range loadManifests(t) {
		if o.Kind != "Deployment" {
			continue
		}
		seen++
		pod := decodeSpec[deploymentSpec](t, o).Template.Spec
		where := o.file + ": Deployment " + o.Metadata.Name
		for _, problem := range podSecurityProblems(pod) {
			t.Errorf("%s: %s", where, problem)
		}
	}
	if seen < 2 {
		t.Fatalf("found %d Deployments, want the service's and Redis'", seen)
	}
}

// podSecurityProblems lists what keeps pod from the restricted profile.
func podSecurityProblems(pod podSpec) []string {
	var out []string
	sc := pod.SecurityContext
	// A numeric user: an image's USER given as a name cannot be checked by the kubelet
	// against runAsNonRoot.
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		out = append(out, "pod securityContext: want runAsNonRoot true and a numeric non-zero runAsUser")
	}
	if p := pod.AutomountServiceAccountToken; p == nil || *p {
		out = append(out, "want automountServiceAccountToken false (nothing here calls the Kubernetes API)")
	}
	for _, c := range pod.Containers {
		csc := c.SecurityContext
		if p := csc.ReadOnlyRootFilesystem; p == nil || !*p {
			out = append(out, c.Name+": want readOnlyRootFilesystem true")
		}
		if p := csc.AllowPrivilegeEscalation; p == nil || *p {
			out = append(out, c.Name+": want allowPrivilegeEscalation false")
		}
		if !slices.Contains(csc.Capabilities.Drop, "ALL") {
			out = append(out, c.Name+": want capabilities.drop [ALL]")
		}
		// The container's profile, else the pod's.
		profile := sc.SeccompProfile
		if csc.SeccompProfile != nil {
			profile = csc.SeccompProfile
		}
		if profile == nil || (profile.Type != "RuntimeDefault" && profile.Type != "Localhost") {
			out = append(out, c.Name+": want seccompProfile RuntimeDefault (on the pod or the container)")
		}
	}
	return out
}

// servedPaths reads internal/httpapi's mux registrations ("GET /healthz").
func servedPaths(t *testing.T) map[string]bool {
	t.Helper()
	paths := sourceMatches(t, filepath.Join("internal", "httpapi", "*.go"), regexp.MustCompile(`Handle(?:Func)?\("GET (/[^" ]*)"`))
	if len(paths) == 0 {
		t.Fatal("found no GET registrations in internal/httpapi")
	}
	return paths
}

// sourceMatches returns what re's first group matches in the Go files (not the tests)
// that glob, relative to the repository's root, names.
func sourceMatches(t *testing.T, glob string, re *regexp.Regexp) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot, glob))
	found := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			found[m[1]] = true
		}
	}
	return found
}

// TestProbes: the probes use the endpoints internal/httpapi serves, on the port the
// server listens on.
func TestProbes(t *testing.T) {
	served := servedPaths(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		if !served[p] {
			t.Fatalf("internal/httpapi does not register GET %s (registered: %v)", p, served)
		}
	}
	objs := loadManifests(t)
	dep := decodeSpec[deploymentSpec](t, find(t, objs, "ratelimit-ext.yaml", "Deployment", "ratelimit-ext"))
	c := dep.Template.Spec.Containers[0]
	httpPort := strings.TrimPrefix(envOf(c)["RATELIMIT_EXT_HTTP_ADDR"], "0.0.0.0:")
	for _, pc := range []struct {
		name string
		p    *probe
		want string
	}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		if pc.p == nil || pc.p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", pc.name)
			continue
		}
		if pc.p.HTTPGet.Path != pc.want || !served[pc.p.HTTPGet.Path] {
			t.Errorf("%s: path %q, want %s", pc.name, pc.p.HTTPGet.Path, pc.want)
		}
		port := pc.p.HTTPGet.Port
		if name, ok := port.(string); ok {
			for _, cp := range c.Ports {
				if cp.Name == name {
					port = cp.ContainerPort
				}
			}
		}
		if n, ok := port.(int); !ok || strconv.Itoa(n) != httpPort {
			t.Errorf("%s: port %v, want the HTTP listener's %s", pc.name, pc.p.HTTPGet.Port, httpPort)
		}
	}
}

// flagEnvVars builds the binary once and reads the `(env NAME)` markers of `serve -h`.
func flagEnvVars(t *testing.T) map[string]bool {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ratelimit-ext")
	build := exec.Command("go", "build", "-o", bin, "./cmd/ratelimit-ext")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, _ := exec.Command(bin, "serve", "-h").CombinedOutput() // -h exits non-zero
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(env (RATELIMIT_EXT_[A-Z0-9_]+)\)`).FindAllStringSubmatch(string(out), -1) {
		vars[m[1]] = true
	}
	if len(vars) < 10 {
		t.Fatalf("serve -h lists %d env variables; output:\n%s", len(vars), out)
	}
	return vars
}

// TestEnvVarsAreFlags: every RATELIMIT_EXT_* variable in any manifest is a flag of serve.
func TestEnvVarsAreFlags(t *testing.T) {
	vars := flagEnvVars(t)
	seen := 0
	for _, o := range loadManifests(t) {
		if o.Kind != "Deployment" {
			continue
		}
		for _, c := range decodeSpec[deploymentSpec](t, o).Template.Spec.Containers {
			for _, e := range c.Env {
				if !strings.HasPrefix(e.Name, "RATELIMIT_EXT_") {
					continue
				}
				seen++
				if !vars[e.Name] {
					t.Errorf("%s: %s: env %s is not a flag of `ratelimit-ext serve`", o.file, c.Name, e.Name)
				}
			}
		}
	}
	if seen < 4 {
		t.Errorf("only %d RATELIMIT_EXT_* variables found in the manifests", seen)
	}
}

// TestConfigMapRules: the ConfigMap's rules load, and it is mounted whole (no subPath)
// at the config directory the service reads.
func TestConfigMapRules(t *testing.T) {
	objs := loadManifests(t)
	cm := find(t, objs, "ratelimit-ext.yaml", "ConfigMap", "ratelimit-ext-rules")
	if len(cm.Data) == 0 {
		t.Fatal("ConfigMap has no data")
	}
	var files []descriptors.File
	for name, text := range cm.Data {
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
			t.Errorf("ConfigMap key %q: the service loads only *.yaml / *.yml", name)
			continue
		}
		if _, err := descriptors.Parse(name, []byte(text)); err != nil {
			t.Errorf("ConfigMap %s does not load: %v", name, err)
		}
		files = append(files, descriptors.File{Name: name, Data: []byte(text)})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	if rs, err := descriptors.Compile(files...); err != nil {
		t.Errorf("the ConfigMap's files together do not load: %v", err)
	} else if rs.LimitCount() == 0 {
		t.Errorf("the ConfigMap's rules hold no limits")
	}

	dep := decodeSpec[deploymentSpec](t, find(t, objs, "ratelimit-ext.yaml", "Deployment", "ratelimit-ext"))
	volume := ""
	for _, v := range dep.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name {
			volume = v.Name
		}
	}
	if volume == "" {
		t.Fatalf("no volume of the Deployment mounts ConfigMap %s", cm.Metadata.Name)
	}
	c := dep.Template.Spec.Containers[0]
	dir := envOf(c)["RATELIMIT_EXT_CONFIG_DIR"]
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.Name != volume {
			continue
		}
		if m.SubPath != "" {
			t.Errorf("ConfigMap mounted with subPath %q: the kubelet never updates subPath mounts, so rules never reload", m.SubPath)
		}
		if m.MountPath == dir {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("RATELIMIT_EXT_CONFIG_DIR %q is not where volume %s is mounted", dir, volume)
	}
}

// knownMetrics returns the service's metric families and whether each is a histogram,
// read from the collectors' definitions in internal/metrics and checked against what
// the registry gathers (vectors without series are not gathered, hence both).
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot, "internal", "metrics", "*.go"))
	re := regexp.MustCompile(`prometheus\.New\w+\(prometheus\.(\w+)Opts\{\s*Namespace:\s*namespace,\s*Name:\s*"(\w+)"`)
	// A custom collector's series (the TLS files') are described with NewDesc.
	desc := regexp.MustCompile(`prometheus\.NewDesc\(namespace\+"_(\w+)"`)
	known := map[string]bool{} // name -> histogram
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			known["ratelimit_ext_"+m[2]] = m[1] == "Histogram"
		}
		for _, m := range desc.FindAllStringSubmatch(string(src), -1) {
			known["ratelimit_ext_"+m[1]] = false // a custom collector's gauge
		}
	}
	all := readAll(t, files)
	if n := strings.Count(all, "Namespace: namespace") + strings.Count(all, "NewDesc(namespace+"); n != len(known) {
		t.Fatalf("found %d metric definitions by pattern but %d `Namespace: namespace`: update the pattern", len(known), n)
	}

	m := metrics.New()
	m.MemoryEngine(limiter.NewMemoryEngine(limiter.MemoryOptions{}))
	onCircuit, _ := m.StoreHealth()
	onCircuit(false, nil)
	rs, err := descriptors.Parse("x.yaml", []byte("domain: x\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	m.ConfigLoaded(rs, nil)
	m.ConfigLoaded(nil, errors.New("broken"))
	m.TLSFiles(new(tlsfiles.Registry))
	m.SetReady(nil)
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	gathered := 0
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, "ratelimit_ext_") {
			continue
		}
		gathered++
		if _, ok := known[name]; !ok {
			t.Errorf("registry gathers %s, which the source scan missed", name)
		}
	}
	if gathered < 8 {
		t.Fatalf("gathered only %d ratelimit_ext_ families", gathered)
	}
	return known
}

func readAll(t *testing.T, files []string) string {
	var b strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(src)
	}
	return b.String()
}

// promQL collects every query of the dashboard: targets' expr and variables' queries.
func promQL(v any, key string, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "expr" || (key == "templating" && (k == "query" || k == "definition"))) {
				*out = append(*out, s)
			}
			next := key
			if k == "templating" {
				next = k
			}
			promQL(x, next, out)
		}
	case []any:
		for _, x := range v {
			promQL(x, key, out)
		}
	}
}

// dashboardVariable is the templating variable of the dashboard named name, or nil.
func dashboardVariable(dash map[string]any, name string) map[string]any {
	templating, _ := dash["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	for _, v := range list {
		if m, ok := v.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	return nil
}

func TestDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("grafana", "ratelimit-ext.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	for _, k := range []string{"title", "uid", "panels", "templating", "schemaVersion"} {
		if _, ok := dash[k]; !ok {
			t.Errorf("dashboard has no %q", k)
		}
	}
	var queries []string
	promQL(dash, "", &queries)
	if len(queries) < 20 {
		t.Fatalf("only %d queries in the dashboard", len(queries))
	}

	known := knownMetrics(t)
	valid := func(name string) bool {
		if _, ok := known[name]; ok {
			return true
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if hist, ok := known[strings.TrimSuffix(name, suf)]; ok && hist && strings.HasSuffix(name, suf) {
				return true
			}
		}
		return false
	}
	ours := regexp.MustCompile(`ratelimit_ext_[a-zA-Z0-9_]+`)
	// A metric selector: a name followed by a label matcher or a range.
	selector := regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]`)
	used := map[string]bool{}
	for _, q := range queries {
		names := ours.FindAllString(q, -1)
		if len(names) == 0 && q != "prometheus" {
			t.Errorf("query uses no ratelimit_ext_ metric: %s", q)
		}
		for _, n := range names {
			used[n] = true
			if !valid(n) {
				t.Errorf("unknown metric %s in: %s", n, q)
			}
		}
		for _, m := range selector.FindAllStringSubmatch(q, -1) {
			if !strings.HasPrefix(m[1], "ratelimit_ext_") {
				t.Errorf("selector on %q, not a ratelimit-ext metric, in: %s", m[1], q)
			}
		}
	}
	// Every query but the job variable's own selects the chosen job, one at a time: a
	// Prometheus that scrapes several deployments would otherwise add them together.
	if job := dashboardVariable(dash, "job"); job == nil || job["multi"] != false || job["includeAll"] != false {
		t.Errorf("the job variable %v must pick one job (multi and includeAll false)", job)
	}
	byJob := regexp.MustCompile(`ratelimit_ext_[a-zA-Z0-9_]+(\{job=~"\$job"[,}])?`)
	for _, q := range queries {
		if q == "label_values(ratelimit_ext_ready, job)" {
			continue
		}
		for _, m := range byJob.FindAllStringSubmatch(q, -1) {
			if m[1] == "" {
				t.Errorf("%s is not selected by $job in: %s", m[0], q)
			}
		}
	}
	// The panels the dashboard promises (docs/deploy.md).
	for _, n := range []string{
		"ratelimit_ext_decisions_total", "ratelimit_ext_requests_total",
		"ratelimit_ext_request_duration_seconds_bucket", "ratelimit_ext_store_duration_seconds_bucket",
		"ratelimit_ext_store_errors_total", "ratelimit_ext_store_circuit_open",
		"ratelimit_ext_config_loads_total", "ratelimit_ext_config_last_load_success",
		"ratelimit_ext_memory_keys", "ratelimit_ext_memory_evictions_total",
	} {
		if !used[n] {
			t.Errorf("dashboard does not chart %s", n)
		}
	}

	// Panel hygiene: unique ids, a position, unique refIds per panel.
	ids := map[float64]bool{}
	for _, p := range dash["panels"].([]any) {
		p := p.(map[string]any)
		id, _ := p["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v used twice", id)
		}
		ids[id] = true
		if _, ok := p["gridPos"]; !ok {
			t.Errorf("panel %v has no gridPos", p["title"])
		}
		var refs []string
		targets, _ := p["targets"].([]any)
		for _, tg := range targets {
			refs = append(refs, tg.(map[string]any)["refId"].(string))
		}
		slices.Sort(refs)
		if len(slices.Compact(refs)) != len(targets) {
			t.Errorf("panel %v: duplicate refId", p["title"])
		}
	}
}

// mebibytes reads a Kubernetes quantity in Mi ("256Mi") or a Go GOMEMLIMIT in MiB
// ("230MiB"); anything else fails the test.
func mebibytes(t *testing.T, q string) int {
	t.Helper()
	for _, unit := range []string{"MiB", "Mi"} {
		if n, ok := strings.CutSuffix(q, unit); ok {
			v, err := strconv.Atoi(n)
			if err == nil {
				return v
			}
		}
	}
	t.Fatalf("%q: want a whole number of Mi or MiB", q)
	return 0
}
