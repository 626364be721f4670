package compat

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules"
)

// Every document the xDS test sends survives the trip to a RateLimitConfig and back
// through this service's own reading of one (xdsrules.ToYAML): the conversion drops
// nothing of the rules. Runs without the reference.
func TestRateLimitConfigKeepsTheRules(t *testing.T) {
	g := &generator{rng: rand.New(rand.NewPCG(1, 0)), xds: true}
	docs := []string{xdsTableYAML("table")}
	for range 30 {
		f := g.file()
		docs = append(docs, f.yaml("random"), g.mutate(f).yaml("updated"))
	}
	for _, doc := range docs {
		cfg, err := rateLimitConfig(doc)
		if err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		back, err := xdsrules.ToYAML(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if want, got := readDoc(t, doc), readDoc(t, string(back)); !reflect.DeepEqual(got, want) {
			t.Errorf("the rules changed on the way:\n%s\n--- back from the RateLimitConfig ---\n%s", doc, back)
		}
	}
}

// A field a RateLimitConfig has no room for is refused, not dropped.
func TestRateLimitConfigRefusesWhatItCannotCarry(t *testing.T) {
	for _, field := range []string{"share_threshold: true", "value_to_metric: true", "quota_mode: true"} {
		doc := "domain: d\ndescriptors:\n  - key: k\n    value: \"a*\"\n    " + field + "\n"
		if _, err := rateLimitConfig(doc); err == nil {
			t.Errorf("%s: converted", field)
		}
	}
	if _, err := rateLimitConfig(tableYAML("table")); err == nil {
		t.Error("the table rules with share_threshold: converted")
	}
}

// readDoc decodes a document with units in lower case (ToYAML writes the proto's names).
func readDoc(t *testing.T, doc string) docYAML {
	t.Helper()
	var d docYAML
	if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
		t.Fatal(err)
	}
	var lower func([]descYAML)
	lower = func(ds []descYAML) {
		for i := range ds {
			if l := ds[i].RateLimit; l != nil {
				l.Unit = strings.ToLower(l.Unit)
			}
			lower(ds[i].Descriptors)
		}
	}
	lower(d.Descriptors)
	return d
}

// An update changes the copy, never the file it was drawn from, and changes something.
func TestMutateChangesACopy(t *testing.T) {
	g := &generator{rng: rand.New(rand.NewPCG(1, 0))}
	for range 30 {
		f := g.file()
		before := f.yaml("d")
		updated := g.mutate(f).yaml("d")
		if f.yaml("d") != before {
			t.Fatalf("mutate changed the original:\n%s\n--- now ---\n%s", before, f.yaml("d"))
		}
		if updated == before {
			t.Errorf("mutate changed nothing:\n%s", before)
		}
	}
}
