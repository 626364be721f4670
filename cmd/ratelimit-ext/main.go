// Command ratelimit-ext is a rate-limit service for Envoy.
//
//	ratelimit-ext [serve] [flags]         serve config/ (the default subcommand)
//	ratelimit-ext validate DIR            check a rules directory
//	ratelimit-ext conformance [flags]     replay golden vectors through an engine
//	ratelimit-ext bench [flags]           load any ShouldRateLimit endpoint (docs/performance.md)
//
// Run `ratelimit-ext <subcommand> -h` for flags; every flag has an environment variable.
package main

import (
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args)
	case "validate":
		return validate(args)
	case "conformance":
		return runConformance(args)
	case "bench":
		return bench(args)
	case "help":
		fmt.Println("usage: ratelimit-ext [serve|validate|conformance|bench] [flags]; -h on each for flags")
		return 0
	default:
		fmt.Fprintf(os.Stderr, "ratelimit-ext: unknown subcommand %q (want serve, validate, conformance or bench)\n", cmd)
		return 2
	}
}
