# One image for every subcommand: `docker run orders api|actors|all|exchange` (default: all).
# Stage 1 compiles the single binary with the pinned Bun (the version .ci/run and the CI workflow
# install); stage 2 is distroless: the compiled binary links only glibc (`ldd dist/orders`: libc,
# libpthread, libdl, libm), and cc-debian12 adds libgcc and libstdc++ in case a Bun release needs
# them. No shell, no package manager, no `sleep`: the health check is `orders health` (exec form),
# and Kubernetes' preStop uses the kubelet's native `sleep` action (Kubernetes 1.29+), not `exec`.
# distroless publishes no version tags (only latest/nonroot/debug and commit-sha variants): the tag is
# `nonroot`; pin it by digest (`@sha256:...`) when releasing an image.

FROM oven/bun:1.4.5 AS build
WORKDIR /src
COPY package.json bun.lock ./
RUN bun install --frozen-lockfile --production
COPY tsconfig.json bunfig.toml ./
COPY src ./src
COPY actors ./actors
RUN bun run build

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
WORKDIR /app
COPY --from=build --chown=0:0 --chmod=0555 /src/dist/orders /app/orders
# Numeric, so that Kubernetes' runAsNonRoot can verify it (no passwd entry needed).
USER 10001:10001
ENV PORT=3000 OPS_PORT=9464
# The public port, and the operations port (/health, /metrics: for the orchestrator and Prometheus).
EXPOSE 3000 9464
# `orders health` GETs http://127.0.0.1:$OPS_PORT/health/ready and exits 0 (ready) or 1.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=12 CMD ["/app/orders", "health"]
# The process drains on SIGTERM within SHUTDOWN_DEADLINE_MS.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/orders"]
CMD ["all"]
