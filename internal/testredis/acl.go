package testredis

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// DocumentedACL is the least-privilege user that the Redis guide at redisDoc
// (docs/redis.md) gives, as ACL SETUSER arguments after the user name: its password
// set to "pw" and its key pattern to prefix*, so that the tests run the user the
// operators are told to create.
func DocumentedACL(t testing.TB, redisDoc, prefix string) []string {
	t.Helper()
	doc, err := os.ReadFile(redisDoc)
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^ACL SETUSER ratelimit (.*)$`).FindSubmatch(doc)
	if line == nil {
		t.Fatalf("%s gives no ACL SETUSER ratelimit line", redisDoc)
	}
	var args []string
	for _, a := range strings.Fields(string(line[1])) {
		switch a {
		case ">PASSWORD":
			a = ">pw"
		case "~rlx:*":
			a = "~" + prefix + "*"
		}
		args = append(args, a)
	}
	return args
}
