#!/usr/bin/env bash
# Builds the installable `warmpool` package: one npm tarball with the whole CLI bundled
# (no dependencies to install, no clone of this repository on the hosts), installed with
#   npm install -g ./warmpool-VERSION.tgz
# Contents: dist/warmpool.js (the `warmpool` command: agent, router, sidecar, apply, ...),
# dist/sidecar.js (the sidecar bundle: `warmpool agent` builds the sidecar image from it on
# a host that lacks the image), proto/ (etcd's gRPC definitions, read at run time),
# systemd/ (the units of deploy/systemd).
# Needs `npm run build` first. Usage: deploy/package/build.sh [OUTDIR] (default dist-package/)
# Prints the tarball's path on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=deploy/images/esbuild-node.sh
source "$root/deploy/images/esbuild-node.sh"
out=$(mkdir -p "${1:-$root/dist-package}" && cd "${1:-$root/dist-package}" && pwd)
die() { echo "package: $*" >&2; exit 1; }
for f in cli/dist/src/main.js sidecar/dist/src/main.js; do
  [ -f "$root/$f" ] || die "$f does not exist (run: npm run build)"
done
version=$(node -p "require('$root/cli/package.json').version")
engines=$(node -p "JSON.stringify(require('$root/package.json').engines)")
pkg="$out/warmpool"
rm -rf "$pkg"
mkdir -p "$pkg/dist"

echo "package: bundling the warmpool command (esbuild)..."
# The shebang goes before the bundle's own banner (require / __dirname for bundled CommonJS).
bundle_node "$root/cli/dist/src/main.js" "$pkg/dist/warmpool.body.js" || die "esbuild failed for the CLI"
{ echo '#!/usr/bin/env node'; cat "$pkg/dist/warmpool.body.js"; } >"$pkg/dist/warmpool.js"
rm -f "$pkg/dist/warmpool.body.js"
chmod +x "$pkg/dist/warmpool.js"
echo "package: bundling the sidecar (esbuild)..."
bundle_node "$root/sidecar/dist/src/main.js" "$pkg/dist/sidecar.js" || die "esbuild failed for the sidecar"
mkdir -p "$pkg/systemd" && cp "$root"/deploy/systemd/*.service "$pkg/systemd/"
# The router serves the dashboard's charting library from <bundle dir>/uplot.
mkdir -p "$pkg/dist/uplot" && cp "$root/node_modules/uplot/dist/uPlot.iife.min.js" "$root/node_modules/uplot/dist/uPlot.min.css" "$pkg/dist/uplot/"
# etcd3 reads its .proto files at run time from <bundle dir>/../proto.
cp -r "$root/node_modules/etcd3/proto" "$pkg/proto"

cat >"$pkg/package.json" <<JSON
{
  "name": "warmpool",
  "version": "$version",
  "description": "Warm pools of slow-booting AI containers, one ready instance per session: the warmpool command (agent, router, sidecar, apply, status, sessions, drain).",
  "license": "Apache-2.0",
  "type": "module",
  "bin": { "warmpool": "dist/warmpool.js" },
  "engines": $engines,
  "os": ["linux"],
  "files": ["dist", "proto", "systemd", "README.md"]
}
JSON
cat >"$pkg/README.md" <<'MD'
# warmpool

The `warmpool` command in one file: `warmpool agent` (one per host), `warmpool router`,
`warmpool sidecar`, and `apply`, `status`, `sessions`, `drain`, `inspect`.

    npm install -g ./warmpool-VERSION.tgz
    warmpool --help

`warmpool agent` builds the sidecar image (`warmpool/sidecar`, or `--sidecar-image`) on its
host from the bundled sidecar and this host's node binary when the host lacks it.
Operations guide: docs/operations.md of the Warmpool repository.
MD
echo "package: packing..."
tarball=$(cd "$out" && npm pack --silent "$pkg" | tail -1)
echo "package: $(du -h "$out/$tarball" | cut -f1) $out/$tarball"
echo "$out/$tarball"
