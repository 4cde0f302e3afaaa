#!/usr/bin/env bash
# Builds FerretDB v1.24.2 (a MongoDB-wire server on PostgreSQL, or on SQLite where PostgreSQL cannot
# be installed) once and caches it outside the clone, for machines without a mongod. `go install`
# alone yields a binary that panics at start (its embedded build/version/version.txt is empty in the
# module), so the module source is copied, the version file written, and the binary built from
# there. Prints the binary's path.
set -euo pipefail
version=v1.24.2
bin=${FERRETDB_BIN:-$HOME/.cache/orders-service/bin/ferretdb}
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then echo "$bin"; exit 0; fi
command -v go >/dev/null || { echo "install-ferretdb: Go is needed to build FerretDB (or put mongod on PATH)" >&2; exit 1; }
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod
src=$(cd "$work" && go mod download -json "github.com/FerretDB/FerretDB@$version" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "install-ferretdb: could not download FerretDB $version" >&2; exit 1; }
cp -r "$src" "$work/ferretdb" && chmod -R u+w "$work/ferretdb"
echo "$version" > "$work/ferretdb/build/version/version.txt"
mkdir -p "$(dirname "$bin")"
(cd "$work/ferretdb" && CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" ./cmd/ferretdb) >&2
mv "$bin.tmp" "$bin"
"$bin" --version >/dev/null
echo "$bin"
