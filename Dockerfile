# syntax=docker/dockerfile:1
# ratelimit-ext container image: a static Go binary on distroless (no shell, no package
# manager, runs as an unprivileged user).
#
#   docker build -t ratelimit-ext .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/ratelimit-ext:TAG --push .
#   docker run --rm -p 8081:8081 -p 8080:8080 -v "$PWD/config:/etc/ratelimit-ext/config:ro" ratelimit-ext
#
# Every serve flag has an environment variable (RATELIMIT_EXT_<FLAG>); e.g. add
# -e RATELIMIT_EXT_REDIS_URL=redis://redis:6379 to share state between replicas.
#
# The e2e suite (e2e/) runs the `go build` line of the build stage below verbatim on the host
# to build the binary it tests, so keep that command on one RUN line and its output at
# /out/ratelimit-ext. It sets the stage's ARGs as Docker does: TARGETOS and TARGETARCH
# empty, as without BuildKit, which the go command takes as the host's platform.
#
# Where the image listens (0.0.0.0:8081 gRPC, 0.0.0.0:8080 HTTP) and reads its rules
# (/etc/ratelimit-ext/config) are built into the binary as its defaults (-X below), not
# set with ENV: an ENV RATELIMIT_EXT_* line would outrank envoyproxy/ratelimit's PORT,
# GRPC_PORT and RUNTIME_ROOT, so a deployment that switches images would lose its own.
# Defaults rank below every variable and flag. `ratelimit-ext serve -h` shows them.

# The Go of go.mod: the official image sets GOTOOLCHAIN=local, so an older 1.26.x base
# would refuse the module.
# Multi-platform builds: this stage runs on the builder's own platform ($BUILDPLATFORM)
# and cross-compiles for each target (TARGETOS/TARGETARCH, set by BuildKit per platform),
# so no Go toolchain runs under QEMU emulation; the binary is static (CGO_ENABLED=0), so
# nothing else in it depends on the builder. Only the final stage is per platform.
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
WORKDIR /src
# Dependencies first, so editing the code does not re-download modules.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Declared here, not above: a RUN after an ARG is cached per its value, and the module
# download above is the same for every target.
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w -X main.defaultGRPCAddr=0.0.0.0:8081 -X main.defaultHTTPAddr=0.0.0.0:8080 -X main.defaultConfigDir=/etc/ratelimit-ext/config" -o /out/ratelimit-ext ./cmd/ratelimit-ext

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ratelimit-ext /usr/local/bin/ratelimit-ext
# envoyproxy/ratelimit's path: Envoy Gateway's rate-limit Deployment runs the command
# /bin/ratelimit with no arguments, which serves, so switching to this image is a
# change of image alone (docs/migrating.md#envoy-gateway). A second copy, not a link:
# this stage has no shell to make one.
COPY --from=build /out/ratelimit-ext /bin/ratelimit
# The example rules, at the binary's default config directory; mount your own directory
# over it (docker-compose.yml does). The service watches the directory and reloads on change.
COPY config/ /etc/ratelimit-ext/config/
USER nonroot
# 8080: HTTP (/healthz, /readyz, /healthcheck). 8081: gRPC envoy.service.ratelimit.v3.RateLimitService.
EXPOSE 8080 8081
# No HEALTHCHECK: Docker runs it inside the container, where there is no shell, no curl
# and no probe subcommand to run, and Kubernetes ignores it anyway. Probe from outside:
# GET /healthz (liveness) and /readyz (readiness) on 8080, as deploy/kubernetes does.
ENTRYPOINT ["/usr/local/bin/ratelimit-ext"]
