// Package e2e runs the docker-compose topology (docker-compose.yml) as local processes and
// tests the whole path through a real Envoy: client → Envoy → ratelimit-ext replicas →
// Redis, and Envoy → upstream.
//
// The harness does not keep its own idea of the topology: it reads docker-compose.yml, the
// Dockerfile and envoy/envoy.yaml and maps them onto loopback processes.
//
//   - redis (image redis:*) → redis-server with the compose command's arguments plus
//     --port <free> --bind 127.0.0.1.
//   - services with `build: .`, and those running the image such a service builds and
//     names (`image:`, with pull_policy: never) → the binary the Dockerfile builds: its
//     `go build` RUN line run verbatim, with only the output path changed, in an
//     environment holding the ARGs of its stage at their defaults, as Docker runs it
//     (TARGETOS and TARGETARCH empty: the host's platform). Then the image's ENTRYPOINT
//     arguments and ENV, then the service's `command` and `environment`. The binary's
//     built-in defaults that name an address or a path (the image's listen addresses and
//     rules directory, set with -X in that line; read from `serve -h`) are mapped like
//     variables. Top-level x- blocks merged into services with `<<: *anchor` are read as
//     Compose reads them.
//   - envoy (image envoyproxy/envoy:*) → $ENVOY_BIN -c <envoy.yaml rewritten to loopback>.
//   - hashicorp/http-echo → an in-process HTTP server answering the configured text.
//
// A replica with read_only, cap_drop: [ALL] or no-new-privileges runs as its container
// would (confine_linux.go): the test binary starts in its place, sets no_new_privs,
// forbids with Landlock every write outside /dev and the read-write mounts, drops every
// capability and executes the binary. Without Landlock (or off Linux) the suite warns and
// runs it unconfined, and the confinement tests skip loudly (with CI=true they fail).
// Other services' hardening keys are validated only.
//
// Values are translated the way Docker would route them: `<service>:<port>` (also inside a
// URL) becomes 127.0.0.1:<that service's local port>, a listen address 0.0.0.0:<port>
// becomes 127.0.0.1:<free port>, and a container path inside a bind mount becomes the
// host path (directories are copied to a temporary directory first, so tests can edit them
// to exercise hot reload). Anything the harness cannot translate (an unknown service or
// image, environment variable, command argument, mount, host name or port) is an error that
// fails the whole suite: a mistake in docker-compose.yml fails CI instead of the first user.
//
// Envoy and redis-server come from the environment: ENVOY_BIN, else `envoy` on PATH, else
// .tools/venv/bin/envoy (what `make test` installs from e2e/requirements.txt); REDIS_SERVER,
// else `redis-server` on PATH. When one is missing the suite is skipped with a loud message,
// or fails when CI=true.
package e2e
