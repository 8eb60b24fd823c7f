# syntax=docker/dockerfile:1
# ext-authz image: a static binary and CA certificates on a distroless,
# non-root base. The default command serves the config the Kubernetes
# ConfigMap mounts at /etc/ext-authz/config.yaml (deploy/base/).
#
#   make image   (docker build --build-arg VERSION=<git describe> -t ghcr.io/ext-authz/ext-authz:<VERSION> .)
#
# The go build below uses exactly the flags of `make build` (the Makefile's
# LDFLAGS); internal/release's test keeps the two in step.
#
# Both bases are pinned by version tag only: nothing in this repository (CI
# included) pins them by digest. A release build that wants a digest pin
# passes it, e.g. --build-arg GO_IMAGE=golang:1.26.8-bookworm@sha256:...
ARG GO_IMAGE=golang:1.26.8-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" \
      -o /out/ext-authz ./cmd/ext-authz

# distroless/static: CA certificates, /etc/passwd with "nonroot" (65532),
# tzdata; no shell, no package manager. The Deployment's preStop therefore
# uses Kubernetes' sleep action rather than `sleep`.
FROM ${BASE_IMAGE}
COPY --from=build /out/ext-authz /ext-authz
USER 65532:65532
EXPOSE 8888 8081
ENTRYPOINT ["/ext-authz"]
CMD ["serve", "--config", "/etc/ext-authz/config.yaml"]
