// Package descriptors loads the YAML rate-limit rules (SPEC §7) and matches request
// descriptors against them.
//
// # Format
//
// One domain per file, a superset of the envoyproxy/ratelimit format, so its files load
// unchanged:
//
//	domain: edge                 # required, unique across the loaded directory (but see Options.MergeDomains)
//	algorithm: sliding_window    # optional default for the file (default fixed_window)
//	descriptors:
//	  - key: remote_address      # required
//	    value: "10.*"            # optional: exact value, or a pattern ('*' = any run)
//	    rate_limit:              # one limit, or rate_limits: [...] for several
//	      name: per-ip           # optional; replaces names it (several limits may share one)
//	      unit: second           # second|minute|hour|day|week|month(30d)|year(365d), any case
//	      unit_multiplier: 5     # window = 5 units (default 1)
//	      requests_per_unit: 100
//	      algorithm: gcra        # overrides the file default
//	      burst: 200             # gcra / token_bucket only; default requests_per_unit
//	      buckets: 10            # sliding_window only; default 10
//	      unlimited: false
//	      replaces: [{name: x}]  # envoyproxy/ratelimit's place for replaces
//	    shadow_mode: false
//	    quota_mode: false        # soft: denies only with every quota descriptor over
//	    detailed_metric: false
//	    value_to_metric: false   # metrics show this level's request value
//	    share_threshold: false   # patterns only: all matching values share one counter
//	    metadata: {any: yaml}    # free-form, kept with the entry's limits (Dump)
//	    replaces: [{name: x}]    # SPEC §7's place: applies to every limit of the entry
//	    descriptors: [...]       # nested entries, at most 32 levels
//	ext_authz: {...}             # optional, see below
//
// # ext_authz
//
// An optional top-level ext_authz key says how an Envoy ext_authz CheckRequest becomes
// descriptors of the file's domain (docs/configuration.md has the reference):
//
//	ext_authz:
//	  descriptors:                   # each item builds one descriptor (at most 64)
//	    - when: {path: {exact: /ip}, headers: [{name: ":method", one_of: [GET]}]}
//	      entries:                   # 1 to 32, in order
//	        - remote_address: {xff_num_trusted_hops: 1}
//	        - request_headers: {header_name: x-api-key, descriptor_key: api_key}
//	      hits_addend: {request_header: x-cost}
//
// Sources: remote_address, masked_remote_address, request_headers, generic_key,
// header_value_match, path, method, host, principal, context_extension. It compiles into
// an immutable ExtAuthz (RuleSet.ExtAuthz); package extauthz evaluates it. Decisions
// where nothing else says:
//
//   - Field names follow Envoy's rate-limit actions (header_name, descriptor_key,
//     descriptor_value, skip_if_absent, expect_match, v4_prefix_mask_len, ...); header
//     and string matchers are Envoy's HeaderMatcher and StringMatcher, flattened (exact,
//     prefix, suffix, contains, regex, pattern, one_of; ignore_case; present; invert).
//   - `source: {}` and a bare `source:` both mean all defaults. Header names are lower
//     cased. An empty prefix, suffix or contains is an error (it would match anything).
//   - A descriptor whose entry keys and constant values cannot reach any limit of the
//     domain is an error, so a typo cannot silently switch limiting off; descriptors
//     with skip_if_absent entries have several shapes and are not checked.
//   - Problems inside the section are reported like all others; a file with errors has
//     no RuleSet, so a broken ext_authz section keeps the previous rules serving.
//
// # Matching
//
// RuleSet.Match walks the request entries level by level and picks one configured
// entry per level: exact value, else the first matching pattern in file order, else the
// bare key. There is no backtracking to a less specific sibling. The limits of the entry
// reached by the last request entry apply; a request with fewer or more entries than
// the configured path matches nothing.
//
// # Decisions where SPEC §7 is silent
//
//   - Every problem is a load error "file:line: field: message", and the whole
//     configuration is rejected; Compile and LoadDir collect all problems of all files.
//     Problems about a whole file (size, read failure, emptiness) have no line.
//   - Unknown fields are errors. envoyproxy/ratelimit's loader accepts its descriptor
//     fields (shadow_mode, quota_mode, detailed_metric, share_threshold,
//     value_to_metric, metadata) in any mapping and ignores them outside a descriptor;
//     here that is an error saying where they belong. YAML merge keys (<<) are
//     rejected; anchors and aliases work.
//   - A null value (`value:` or `value: ~`) counts as absent, as in YAML and
//     envoyproxy/ratelimit, and so does `value: ""` (Envoy Gateway writes it). A
//     `domain:` or `key:` that is null is therefore missing.
//   - `name` at the top of a file or on a descriptor entry is accepted and ignored, as
//     envoyproxy/ratelimit does (a limit's own name is rate_limit.name), and empty YAML
//     documents after the first (a trailing "---") are no second domain.
//   - Any '*' in a value makes it a pattern; there is no escape for a literal '*'
//     (a pattern "a*" also matches the value "a*"). Runs of '*' equal one '*'.
//     Keys and values with control characters are rejected (typically the trailing
//     newline of a YAML block scalar), except a tab in a value: Envoy can take one
//     from a request header, where HTTP allows it.
//   - Numbers must be YAML integers: quoted numbers and floats are errors, as in
//     envoyproxy/ratelimit. Booleans accept YAML 1.1 yes/no/on/off, as its loader did.
//   - Unit and algorithm names are case-insensitive ("SECOND", "Gcra"); Limit.Unit is
//     lower case.
//   - requests_per_unit: 0 blocks every request, as in envoyproxy/ratelimit (it runs as
//     fixed_window with L = 0, see limiter.Params.Validate; burst and buckets on it are
//     errors). unit_multiplier, burst and buckets are at least 1. burst is only accepted for
//     gcra and token_bucket, buckets only for sliding_window, so that a field without
//     effect is never silently ignored. Magnitudes are checked by limiter.Params.Validate
//     and its message is reported at the limit's line.
//   - unlimited: true makes unit and requests_per_unit optional. Rate fields that are
//     present are still type-checked (a misspelt unit stays an error) but are ignored:
//     the Limit keeps only its name and replaces, with a zero Params, so a limit can be
//     switched off and on by toggling one line.
//   - replaces may sit on the descriptor (SPEC §7, for all its limits) or in a limit
//     (envoyproxy/ratelimit); the names are merged. A name that no limit of the domain
//     has loads with a warning (RuleSet.Warnings), as envoyproxy/ratelimit loads it; a
//     limit cannot replace itself. Descriptor-level replaces without any rate_limit is
//     an error.
//   - shadow_mode, quota_mode, detailed_metric and metadata apply to the entry's own
//     limits, not to nested entries (as in envoyproxy/ratelimit). quota_mode
//     (Limit.Quota) makes them soft limits, whose rule package decide applies;
//     shadow_mode wins over it.
//   - share_threshold is a flag of its level (Level.Shared) and so applies to every limit
//     at or below the entry: the storage key holds the pattern instead of the request's
//     value at that level (package storekey), so all values the pattern matches share one
//     counter, while levels without it still count per value. On an entry without a
//     pattern it is an error, as in envoyproxy/ratelimit.
//   - value_to_metric is a flag of its level too (Level.ValueToMetric; Limit.ValueToMetric
//     says some level of the path has it). It changes metrics only: package metrics
//     labels the limit's per-value series with the request's value at those levels.
//   - metadata is free-form data (Limit.Metadata), read as envoyproxy/ratelimit reads
//     it (YAML 1.1 booleans included) into JSON-ready values; Dump shows it. It never
//     changes a decision. It must be a mapping with scalar keys, at most 16 levels deep,
//     without merge keys or non-finite numbers; MaxMetadataValues bounds the values of
//     a load (aliases counted as expanded).
//   - Several limits of a domain may share a name (replaces removes them all).
//     Duplicate siblings are entries with the same key and the same value (patterns
//     compared after collapsing "**").
//   - A file must hold exactly one YAML document; an empty file is an error.
//   - Bounds: MaxFileSize per file read from disk, MaxDepth nesting levels, MaxLimits limits,
//     MaxEntries descriptor entries, MaxPathBytes of descriptor paths,
//     MaxMetadataValues metadata values, MaxMetadataBytes of metadata text and
//     MaxMatcherBytes of ext_authz string-match text per load (all but the first two
//     also defuse alias bombs: they count what aliases repeat at every use); at most
//     1000 problems are kept, the rest counted.
//   - Limit.ID is Path + "#index": reordering a descriptor's rate_limits list or
//     changing its key/value path changes the ID (and so starts fresh counters);
//     renaming a limit does not.
package descriptors
