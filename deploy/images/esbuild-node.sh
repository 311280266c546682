# Sourced by deploy/images/build.sh and deploy/package/build.sh.
# bundle_node ENTRY OUTFILE [esbuild flags...]: one ESM file for Node 20+ with every
# dependency inside. Bundled CommonJS code still calls require() for node builtins and
# reads __dirname/__filename: the banner provides them as globals (not declarations, so a
# module declaring its own `require` or `__dirname` cannot clash); __dirname is the
# bundle's folder. Native addons (*.node) stay out: the ones in our dependency tree are
# optional (ssh2 and cpu-features under dockerode) and their loaders fall back when absent.
# Needs $root (the repository root). Prints esbuild's messages only when it fails.
bundle_node() {
  local entry=$1 outfile=$2
  shift 2
  local banner="import { createRequire as __wpCreateRequire } from 'node:module';"
  banner+=" import { fileURLToPath as __wpFileURLToPath } from 'node:url';"
  banner+=" import { dirname as __wpDirname } from 'node:path';"
  banner+=" globalThis.require ??= __wpCreateRequire(import.meta.url);"
  banner+=" globalThis.__filename ??= __wpFileURLToPath(import.meta.url);"
  banner+=" globalThis.__dirname ??= __wpDirname(globalThis.__filename);"
  local log
  log=$(mktemp)
  if ! "$root/node_modules/.bin/esbuild" "$entry" --bundle --platform=node --format=esm --target=node20 --banner:js="$banner" \
      --external:'*.node' --log-level=warning --outfile="$outfile" "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}
