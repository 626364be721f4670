package main

import "github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"

// ruleLoadFlags registers the flags that say how rules load, for serve and validate
// alike: validate must accept exactly the rules serve loads. serve hands the options
// to the first load, to every reload, and to the xDS client.
func ruleLoadFlags(f *envFlags, o *descriptors.Options) {
	f.BoolVar(&o.MergeDomains, "merge-domains", false, "let several rule files (or xDS resources) name one domain and merge their top-level descriptors, as envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG=true does; a descriptor in two of them is an error")
}
