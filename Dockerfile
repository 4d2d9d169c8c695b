# syntax=docker/dockerfile:1
#
# gemproxy container image: one static binary on distroless, run as the
# nonroot user (65532:65532), serving on :9292 with its cache under
# /var/lib/gemproxy.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg REVISION="$(git rev-parse HEAD)" -t gemproxy .
#   docker run -p 9292:9292 -v gemproxy-cache:/var/lib/gemproxy gemproxy
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...
# (the binary is cross-compiled on the build platform; no emulation).

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Static binary; no VCS stamping (.git is not in the build context).
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
# Modules first, in their own layer: rebuilt only when go.mod or go.sum
# change. go.mod pins the toolchain patch release; the official image sets
# GOTOOLCHAIN=local, so pull a current golang:1.26 image if it is older.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY cmd/ cmd/
COPY internal/ internal/
ARG VERSION=dev
ARG REVISION=
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" -o /out/gemproxy ./cmd/gemproxy
# The data directory, created here because distroless has no shell: owned
# by nonroot, so that a Docker volume mounted on it (which copies the image
# directory's ownership) is writable.
RUN install -d -m 0750 -o 65532 -g 65532 /out/var-lib/gemproxy

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="gemproxy" \
      org.opencontainers.image.description="Read-through caching mirror of rubygems.org" \
      org.opencontainers.image.source="https://github.com/gemproxy/gemproxy" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/gemproxy /gemproxy
# Copying the directory's contents into /var/lib/ creates /var/lib/gemproxy
# itself with the --chown owner.
COPY --from=build --chown=65532:65532 /out/var-lib/ /var/lib/
USER 65532:65532
EXPOSE 9292
VOLUME /var/lib/gemproxy
# Environment variables take precedence over the config file (defaults <
# file < GEMPROXY_* < flags): with this image, listen and data_dir in a
# config file are overridden; use --listen/--data-dir or -e to change them.
ENV GEMPROXY_DATA_DIR=/var/lib/gemproxy GEMPROXY_LISTEN=:9292
ENTRYPOINT ["/gemproxy"]
CMD ["serve"]
