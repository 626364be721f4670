package xdsrules

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// TypeURL is the xDS type of the rules: envoyproxy/ratelimit's RateLimitConfig, one
// resource per domain.
const TypeURL = "type.googleapis.com/ratelimit.config.ratelimit.v3.RateLimitConfig"

// resourceWrapperURL is the type of discovery.v3.Resource, in which a server may wrap
// each resource (go-control-plane does when resources have a TTL).
const resourceWrapperURL = "type.googleapis.com/envoy.service.discovery.v3.Resource"

// Compile turns the resources of one state-of-the-world response into a rule set. Each
// RateLimitConfig becomes the equivalent YAML document (ToYAML) and all of them are
// compiled together, so rules from xDS get exactly the validation and semantics of
// rules from files. Problems are reported per resource, as "xds:<name>: field: message".
//
// Resources are compiled in name order, not in the order the server sent them: a
// server may send the same set in any order, and the rule set's hash (logs, the
// config_info metric) must not change when nothing else did.
func Compile(resources []*anypb.Any) (*descriptors.RuleSet, error) {
	return CompileWith(descriptors.Options{}, resources)
}

// CompileWith is Compile with o, as rule files load with it: with o.MergeDomains,
// resources that name one domain are merged as files are.
func CompileWith(o descriptors.Options, resources []*anypb.Any) (*descriptors.RuleSet, error) {
	configs := make([]*rlsconfv3.RateLimitConfig, 0, len(resources))
	names := map[string]int{}
	for i, res := range resources {
		cfg, err := decode(res)
		if err != nil {
			return nil, fmt.Errorf("xds: resource %d: %w", i, err)
		}
		if prev, dup := names[cfg.GetName()]; dup {
			return nil, fmt.Errorf("xds: resources %d and %d are both named %q", prev, i, cfg.GetName())
		}
		names[cfg.GetName()] = i
		configs = append(configs, cfg)
	}
	slices.SortFunc(configs, func(a, b *rlsconfv3.RateLimitConfig) int { return cmp.Compare(a.GetName(), b.GetName()) })
	files := make([]descriptors.File, 0, len(configs))
	for _, cfg := range configs {
		data, err := ToYAML(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sourceName(cfg), err)
		}
		files = append(files, descriptors.File{Name: sourceName(cfg), Data: data}) // bounded by --xds-max-message-bytes, not MaxFileSize
	}
	rs, err := o.Compile(files...)
	if err != nil {
		return nil, withoutLines(err)
	}
	rs.FromGeneratedDocuments()
	return rs, nil
}

// sourceName is what errors and the compiled limits (Limit.File, /debug/config) call a
// resource.
func sourceName(cfg *rlsconfv3.RateLimitConfig) string {
	return "xds:" + cfg.GetName()
}

// decode unpacks one resource, unwrapping a discovery.v3.Resource.
func decode(res *anypb.Any) (*rlsconfv3.RateLimitConfig, error) {
	if res.GetTypeUrl() == resourceWrapperURL {
		var w discoveryv3.Resource
		if err := proto.Unmarshal(res.GetValue(), &w); err != nil {
			return nil, fmt.Errorf("decoding the Resource wrapper: %w", err)
		}
		if w.GetResource() == nil {
			// A TTL heartbeat, which asks to keep the named resource's last content: every
			// response here is compiled as the whole rule set and no resource is kept by
			// name, and a heartbeat lists only the resources with a TTL, so taking it as
			// the whole set would drop every other domain's limits. NACKed, the rules in
			// place serve on (docs/configuration.md#rules-from-an-xds-server).
			return nil, fmt.Errorf("resource %q: a Resource without a resource (TTL heartbeat) is not supported", w.GetName())
		}
		res = w.GetResource()
	}
	if res.GetTypeUrl() != TypeURL {
		return nil, fmt.Errorf("type %q, want %s", res.GetTypeUrl(), TypeURL)
	}
	var cfg rlsconfv3.RateLimitConfig
	if err := proto.Unmarshal(res.GetValue(), &cfg); err != nil {
		return nil, fmt.Errorf("decoding RateLimitConfig: %w", err)
	}
	return &cfg, nil
}

// The YAML documents ToYAML writes: the rule format's fields (SPEC §7) that a
// RateLimitConfig can carry. Proto3 cannot tell an unset scalar from its zero value,
// so zero values are left out, which is what absent means in the YAML format too:
// e.g. an unset unit is reported as missing, not as a unit named "UNKNOWN". The one
// exception is requests_per_unit, where 0 is a limit (it blocks).
type (
	yamlFile struct {
		Domain      string           `yaml:"domain"`
		Descriptors []yamlDescriptor `yaml:"descriptors,omitempty"`
	}
	yamlDescriptor struct {
		Key            string           `yaml:"key"`
		Value          string           `yaml:"value,omitempty"`
		RateLimit      *yamlLimit       `yaml:"rate_limit,omitempty"`
		ShadowMode     bool             `yaml:"shadow_mode,omitempty"`
		QuotaMode      bool             `yaml:"quota_mode,omitempty"`
		DetailedMetric bool             `yaml:"detailed_metric,omitempty"`
		Descriptors    []yamlDescriptor `yaml:"descriptors,omitempty"`
	}
	yamlLimit struct {
		Name            string        `yaml:"name,omitempty"`
		Unit            string        `yaml:"unit,omitempty"`
		RequestsPerUnit *uint32       `yaml:"requests_per_unit,omitempty"` // nil only when unlimited
		Unlimited       bool          `yaml:"unlimited,omitempty"`
		Replaces        []yamlReplace `yaml:"replaces,omitempty"`
	}
	yamlReplace struct {
		Name string `yaml:"name"`
	}
)

// ToYAML writes cfg as the YAML rule document with the same meaning (envoyproxy/
// ratelimit's format). Units keep their proto names ("MINUTE"); unit names are
// case-insensitive, and an unknown enum number comes out as its number, which the
// compiler then reports as an unknown unit.
func ToYAML(cfg *rlsconfv3.RateLimitConfig) ([]byte, error) {
	ds, err := toYAMLDescriptors(cfg.GetDescriptors(), "descriptors", 1)
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(yamlFile{Domain: cfg.GetDomain(), Descriptors: ds})
}

func toYAMLDescriptors(in []*rlsconfv3.RateLimitDescriptor, field string, depth int) ([]yamlDescriptor, error) {
	if len(in) == 0 {
		return nil, nil
	}
	// The compiler rejects nesting past MaxDepth too; stopping here keeps a hostile
	// resource (thousands of levels fit in a small message) from being expanded first.
	if depth > descriptors.MaxDepth {
		return nil, fmt.Errorf("%s: descriptors nested deeper than %d levels", field, descriptors.MaxDepth)
	}
	out := make([]yamlDescriptor, len(in))
	for i, d := range in {
		nested, err := toYAMLDescriptors(d.GetDescriptors(), field+"["+strconv.Itoa(i)+"].descriptors", depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = yamlDescriptor{
			Key: d.GetKey(), Value: d.GetValue(), RateLimit: toYAMLLimit(d.GetRateLimit()),
			ShadowMode: d.GetShadowMode(), QuotaMode: quotaMode(d), DetailedMetric: d.GetDetailedMetric(), Descriptors: nested,
		}
	}
	return out, nil
}

func toYAMLLimit(p *rlsconfv3.RateLimitPolicy) *yamlLimit {
	if p == nil {
		return nil
	}
	l := &yamlLimit{Name: p.GetName(), Unlimited: p.GetUnlimited()}
	if n := p.GetRequestsPerUnit(); n != 0 || !l.Unlimited {
		// Written even when 0: that is a limit here, one that blocks every request
		// (as envoyproxy/ratelimit reads it), not an absent field.
		l.RequestsPerUnit = &n
	}
	if u := p.GetUnit(); u != rlsconfv3.RateLimitUnit_UNKNOWN {
		l.Unit = unitNames[u]
		if l.Unit == "" {
			l.Unit = strconv.Itoa(int(u)) // reported as an unknown unit
		}
	}
	for _, r := range p.GetReplaces() {
		l.Replaces = append(l.Replaces, yamlReplace{Name: r.GetName()})
	}
	return l
}

// unitNames are RateLimitUnit's values by number. The proto module at hand
// (go-control-plane/ratelimit v0.1.0, its only release) stops at DAY; the current proto
// adds MONTH (5), YEAR (6) and WEEK (7), which Envoy Gateway sends.
var unitNames = map[rlsconfv3.RateLimitUnit]string{
	1: "SECOND", 2: "MINUTE", 3: "HOUR", 4: "DAY", 5: "MONTH", 6: "YEAR", 7: "WEEK",
}

// quotaModeField is RateLimitDescriptor.quota_mode in the current proto (after the
// module at hand): it arrives as an unknown field, read here. Other unknown fields
// (such as newer metadata) are ignored; none of them changes a decision.
const quotaModeField = 7

func quotaMode(d *rlsconfv3.RateLimitDescriptor) bool {
	b := d.ProtoReflect().GetUnknown()
	on := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return on
		}
		b = b[n:]
		if num == quotaModeField && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return on
			}
			on, b = v != 0, b[m:]
			continue
		}
		if m := protowire.ConsumeFieldValue(num, typ, b); m >= 0 {
			b = b[m:]
		} else {
			return on
		}
	}
	return on
}

// withoutLines rewrites a load error without line numbers (ConfigError.WithoutLines),
// and a duplicate domain's first definition as its resource alone.
func withoutLines(err error) error {
	var le *descriptors.LoadError
	if !errors.As(err, &le) {
		return err
	}
	lines := make([]string, 0, len(le.Errors)+1)
	for _, ce := range le.Errors {
		ce = ce.WithoutLines()
		msg := ce.Msg
		if ce.DefinedIn != "" {
			msg += " (already defined in " + ce.DefinedIn + ")"
		}
		if ce.Field == "" {
			lines = append(lines, ce.File+": "+msg)
		} else {
			lines = append(lines, ce.File+": "+ce.Field+": "+msg)
		}
	}
	if le.Omitted > 0 {
		lines = append(lines, fmt.Sprintf("(%d more errors omitted)", le.Omitted))
	}
	return errors.New(strings.Join(lines, "\n"))
}
