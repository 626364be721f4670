package limiter

import "github.com/ratelimit-ext/ratelimit-ext/internal/redislua"

// paramGroup is what request.lua's ARGV carries once per call for every limit that
// shares it (since contract 3; manifest.json): a rule's parameters and its shadow flag. The
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

// groupIndex numbers the parameter groups of one script call from 1, in first-use
// order. The first linearGroups live in an array (a call's usual groups cost no
// allocation); the rest, if a call has that many, in a slice and a map.
type groupIndex struct {
	first [linearGroups]paramGroup
	n     int // groups numbered so far
	rest  []paramGroup
	byKey map[paramGroup]int // the numbers of rest's groups
}

// of returns c's group number, adding the group on first use.
func (x *groupIndex) of(c *LimitCheck) int {
	k := paramGroup{c.Params, c.Shadow}
	for i := range min(x.n, linearGroups) {
		if x.first[i] == k {
			return i + 1
		}
	}
	if x.n < linearGroups {
		x.first[x.n] = k
		x.n++
		return x.n
	}
	if i, ok := x.byKey[k]; ok {
		return i
	}
	if x.byKey == nil {
		x.byKey = make(map[paramGroup]int)
	}
	x.rest = append(x.rest, k)
	x.n++
	x.byKey[k] = x.n
	return x.n
}

// group returns group number i (from 1).
func (x *groupIndex) group(i int) paramGroup {
	if i <= linearGroups {
		return x.first[i-1]
	}
	return x.rest[i-linearGroups-1]
}

// scriptArgs builds one request.lua call deciding n requests in order; request(i)
// gives request i's now and checks. The first two slots (the verb and the script) are
// left for Script.Command; then come the number of keys, the keys, and ARGV: one string
// holding r, g, the g parameter groups, and per request now, n and each limit's group
// and cost, each as the 8 bytes of redislua.AppendArg.
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
	values := redislua.ArgsHeader + redislua.ArgsPerGroup*idx.n +
		redislua.ArgsPerRequest*n + redislua.ArgsPerLimit*nkeys
	args := make([]any, 0, 4+nkeys)
	args = append(args, nil, nil, nkeys)
	for i := range n {
		_, checks := request(i)
		for j := range checks {
			args = append(args, checks[j].Key)
		}
	}
	argv := make([]byte, 0, 8*values)
	argv = redislua.AppendArg(argv, int64(n))
	argv = redislua.AppendArg(argv, int64(idx.n))
	for i := 1; i <= idx.n; i++ {
		g := idx.group(i)
		p := g.params
		var shadow int64
		if g.shadow {
			shadow = 1
		}
		for _, x := range [...]int64{int64(p.Algorithm), shadow, p.Limit, p.PeriodMs, p.Burst, p.num, p.den, p.width, p.Buckets} {
			argv = redislua.AppendArg(argv, x)
		}
	}
	for i := range n {
		now, checks := request(i)
		argv = redislua.AppendArg(argv, now)
		argv = redislua.AppendArg(argv, int64(len(checks)))
		for j := range checks {
			argv = redislua.AppendArg(argv, int64(idx.of(&checks[j])))
			argv = redislua.AppendArg(argv, checks[j].Cost)
		}
	}
	return append(args, argv)
}
