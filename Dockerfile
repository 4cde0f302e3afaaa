# One image for every subcommand: `docker run orders api|actors|all|exchange` (default: all).
# Stage 1 compiles the single binary with Bun; stage 2 is a slim glibc image (the compiled binary
# links glibc) with only that binary, run as a non-root user. Debian-slim rather than distroless
# because the Kubernetes preStop hook runs `sleep` and the compose health check runs bash.

FROM oven/bun:1 AS build
WORKDIR /src
COPY package.json bun.lock ./
RUN bun install --frozen-lockfile --production
COPY tsconfig.json bunfig.toml ./
COPY src ./src
COPY actors ./actors
RUN bun run build

FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 orders \
  && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin orders
WORKDIR /app
COPY --from=build --chown=root:root --chmod=0555 /src/dist/orders /app/orders
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
ENV PORT=3000
EXPOSE 3000
# The process drains on SIGTERM within SHUTDOWN_DEADLINE_MS.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/orders"]
CMD ["all"]
