#!/usr/bin/env bash
# Installs the tools test/ops needs to validate the operations artifacts offline. Idempotent and
# non-interactive; for root on a fresh Debian 12 machine (CI), or via sudo on a developer's.
#
# 1. Debian's `prometheus` package: `prometheus` (test/ops starts one that scrapes a real process)
#    and `promtool` 2.42 (rules, rule unit tests, PromQL).
# 2. Upstream promtool ${PROMETHEUS_VERSION}, built from the Go module proxy into
#    ~/.cache/orders-service/bin/promtool-upstream: Debian builds Prometheus without Kubernetes service
#    discovery, so its promtool rejects `kubernetes_sd_configs` and cannot check
#    k8s/prometheus/prometheus.yml. It is also the version docker-compose.yml runs. Built with only
#    the service discoveries our configurations use (Prometheus's `remove_all_sd` and `enable_*_sd`
#    build tags: Kubernetes and DNS), which leaves out the cloud SDKs: on a fresh 2-core machine about
#    3 minutes and 1 GB of downloaded modules instead of 6-7 minutes and about 5 GB (module and build
#    caches, deleted afterwards); the binary is kept, so later runs on the same machine skip it.
# 3. actionlint ${ACTIONLINT_VERSION}, built the same way (a minute), for .github/workflows.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-3.16.0}"
# Prometheus 3.x.y is published to the Go module proxy as v0.3xx.y.
PROMETHEUS_MODULE_VERSION="v0.$((300 + $(echo "$PROMETHEUS_VERSION" | cut -d. -f2))).$(echo "$PROMETHEUS_VERSION" | cut -d. -f3)"
# actionlint checks .github/workflows offline (test/ops/ci-workflow.test.ts).
ACTIONLINT_VERSION="${ACTIONLINT_VERSION:-1.7.12}"
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-5.7.1}"
BIN_DIR="${ORDERS_TOOLS_BIN:-$HOME/.cache/orders-service/bin}"

log() { echo "install-ops-tools: $*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

# --- 1. Debian's prometheus package
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  log "promtool and prometheus already present ($(promtool --version 2>&1 | head -n1))"
else
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    log "need root (or sudo) to install the prometheus package" >&2
    exit 1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # --no-install-recommends keeps node-exporter and friends out. The package's own service is not
  # used: tests start their own prometheus on a free loopback port.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold prometheus >/dev/null
  command -v promtool >/dev/null 2>&1 || { log "promtool missing after install" >&2; exit 1; }
  command -v prometheus >/dev/null 2>&1 || { log "prometheus missing after install" >&2; exit 1; }
  log "installed $(promtool --version 2>&1 | head -n1)"
fi

# --- 2. Go-built tools: upstream promtool (with Kubernetes service discovery) and actionlint
go_tools_work=""
cleanup() {
  if [ -n "$go_tools_work" ]; then
    chmod -R u+w "$go_tools_work" 2>/dev/null || true
    rm -rf "$go_tools_work"
  fi
}
trap cleanup EXIT

# build_go_tool NAME VERSION PACKAGE@MODULE_VERSION LDFLAGS LINK [TAGS]: builds into
# $BIN_DIR/NAME-VERSION once, with throw-away module and build caches, and points $BIN_DIR/LINK at it.
build_go_tool() {
  local name="$1" version="$2" package="$3" ldflags="${4:-}" link="$5" tags="${6:-}"
  local target="$BIN_DIR/$name-$version"
  if [ -x "$target" ]; then
    log "$name $version already built ($target)"
  else
    if ! command -v go >/dev/null 2>&1; then
      for candidate in /usr/local/go/bin /usr/lib/go/bin; do
        if [ -x "$candidate/go" ]; then PATH="$candidate:$PATH"; fi
      done
    fi
    command -v go >/dev/null 2>&1 || { log "go is required to build $name" >&2; exit 1; }
    mkdir -p "$BIN_DIR"
    if [ -z "$go_tools_work" ]; then go_tools_work="$(mktemp -d "${TMPDIR:-/tmp}/orders-ops-tools.XXXXXX")"; fi
    log "building $name $version with $(go version); the first build takes a few minutes"
    GOBIN="$go_tools_work/bin" GOMODCACHE="$go_tools_work/mod" GOCACHE="$go_tools_work/cache" GOPATH="$go_tools_work/gopath" \
      CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath -tags "$tags" -ldflags "-s -w $ldflags" "$package"
    mv "$go_tools_work/bin/$name" "$target.tmp"
    mv "$target.tmp" "$target"
    log "built $target"
  fi
  ln -sfn "$name-$version" "$BIN_DIR/$link"
}

build_go_tool promtool "$PROMETHEUS_VERSION-k8s-dns" \
  "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" \
  "-X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" promtool-upstream \
  remove_all_sd,enable_kubernetes_sd,enable_dns_sd
"$BIN_DIR/promtool-upstream" --version 2>&1 | head -n1

build_go_tool actionlint "$ACTIONLINT_VERSION" \
  "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION" \
  "-X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" actionlint
"$BIN_DIR/actionlint" -version 2>&1 | head -n1

build_go_tool kustomize "$KUSTOMIZE_VERSION" \
  "sigs.k8s.io/kustomize/kustomize/v5@v$KUSTOMIZE_VERSION" \
  "-X sigs.k8s.io/kustomize/api/provenance.version=kustomize/v$KUSTOMIZE_VERSION" kustomize
"$BIN_DIR/kustomize" version 2>&1 | head -n1
