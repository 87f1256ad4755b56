# syntax=docker/dockerfile:1.7
#
# One image for every role; the command picks it:
#   worker-api              the HTTP API (SPOTCHECK_HTTP_ADDR, 0.0.0.0:8080 here)
#   worker-api migrate      apply pending migrations and exit (the Kubernetes Job)
#   coordinator             ingest, sampling, relay, reaper, aggregation
#   spotcheck-sim ...       simulator, load generator, fault runs, benchmarks
#
# The runtime stage holds the three binaries and nothing else: no shell, no
# package manager, no secrets (keys, passwords and service URLs come from the
# environment or from files mounted at run time, `..._FILE`). It runs as the
# unprivileged uid/gid 65532 on a read-only root filesystem: the binaries log to
# standard error, keep nothing on disk, and carry the SQL migrations inside
# them (sqlx::migrate! embeds migrations/ at compile time).
#
# scripts/runtime-layout.sh assembles the same layout from local binaries, and
# the integration test runtime_layout runs it read-only as uid 65532.
#
#   docker build -t ghcr.io/spotcheck/spotcheck:0.1.0 .

# Builder: the Rust release the workspace is built and tested with, on the same
# Debian release (bookworm, glibc 2.36) as the runtime base.
ARG RUST_IMAGE=rust:1.95.0-bookworm
# Runtime: distroless with glibc, libgcc and CA certificates, nonroot variant
# (uid/gid 65532). Release pipelines pin it further by digest
# (--build-arg RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:...).
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# The whole workspace: every member's manifest is needed to resolve the
# lockfile, and migrations/ is compiled into both services.
COPY . .
# --locked: exactly the dependency versions of Cargo.lock, or fail.
# The cache mounts keep the registry and the target directory between builds,
# so the binaries are copied out of the mounted target to a plain directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
        -p worker-api -p coordinator -p spotcheck-sim \
    && mkdir -p /out \
    && cp target/release/worker-api target/release/coordinator target/release/spotcheck-sim /out/

FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="spotcheck" \
      org.opencontainers.image.description="Spotcheck worker-api, coordinator and spotcheck-sim" \
      org.opencontainers.image.licenses="Apache-2.0"
# Owned by root and not writable by the runtime user.
COPY --from=builder --chown=0:0 --chmod=0555 /out/worker-api /out/coordinator /out/spotcheck-sim /usr/local/bin/
# Listen on every interface inside the container (the binaries' own default is
# loopback, right for a developer machine and useless in a pod).
ENV SPOTCHECK_HTTP_ADDR=0.0.0.0:8080
# 8080: worker-api HTTP; 9090: worker-api metrics; 9091: coordinator ops
# (/metrics, /healthz, /readyz). The metrics addresses are set per role.
EXPOSE 8080 9090 9091
USER 65532:65532
WORKDIR /home/nonroot
# No entrypoint: the command names the binary, e.g. `docker run IMAGE coordinator`.
CMD ["worker-api"]
