package limiter

import "github.com/ratelimit-ext/ratelimit-ext/internal/redislua"

// paramGroup is what request.lua's ARGV carries once per call for every limit that
// shares it (contract 3, manifest.json): a rule's parameters and its shadow flag. The
// compiled rules hand every request of a rule the same *Params, so pointer equality
// finds the sharing; equal parameters behind different pointers just make two groups.
type paramGroup struct {
	params *Params
	shadow bool
}

// linearGroups is how many groups are looked up by scanning before a map takes over:
// a call usually carries one or two rules, and a batch of many requests with many
// distinct rules must not cost a quadratic scan.
const linearGroups = 8

// groupIndex numbers the parameter groups of one script call from 1, in first-use order.
type groupIndex struct {
	groups []paramGroup
	byKey  map[paramGroup]int
}

// of returns c's group number, adding the group on first use.
func (x *groupIndex) of(c *LimitCheck) int {
	k := paramGroup{c.Params, c.Shadow}
	if x.byKey == nil {
		for i := range x.groups {
			if x.groups[i] == k {
				return i + 1
			}
		}
	} else if i, ok := x.byKey[k]; ok {
		return i
	}
	x.groups = append(x.groups, k)
	if x.byKey != nil {
		x.byKey[k] = len(x.groups)
	} else if len(x.groups) > linearGroups {
		x.byKey = make(map[paramGroup]int, 2*len(x.groups))
		for i, g := range x.groups {
			x.byKey[g] = i + 1
		}
	}
	return len(x.groups)
}

// scriptArgs builds one request.lua call deciding n requests in order; request(i)
// gives request i's now and checks. The first two slots (the verb and the script) are
// left for Script.Command; then come the number of keys, the keys, and ARGV: r, g, the
// g parameter groups, and per request now, n and each limit's group and cost.
func scriptArgs(n int, request func(i int) (int64, []LimitCheck)) []any {
	var idx groupIndex
	nkeys := 0
	for i := range n {
		_, checks := request(i)
		nkeys += len(checks)
		for j := range checks {
			idx.of(&checks[j])
		}
	}
	size := 3 + nkeys + redislua.ArgsHeader + redislua.ArgsPerGroup*len(idx.groups) +
		redislua.ArgsPerRequest*n + redislua.ArgsPerLimit*nkeys
	args := make([]any, 0, size)
	args = append(args, nil, nil, nkeys)
	for i := range n {
		_, checks := request(i)
		for j := range checks {
			args = append(args, checks[j].Key)
		}
	}
	args = append(args, n, len(idx.groups))
	for _, g := range idx.groups {
		p := g.params
		var shadow int64
		if g.shadow {
			shadow = 1
		}
		args = append(args, int64(p.Algorithm), shadow, p.Limit, p.PeriodMs, p.Burst,
			p.num, p.den, p.width, p.Buckets)
	}
	for i := range n {
		now, checks := request(i)
		args = append(args, now, len(checks))
		for j := range checks {
			args = append(args, idx.of(&checks[j]), checks[j].Cost)
		}
	}
	return args
}
