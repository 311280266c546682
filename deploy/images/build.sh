#!/usr/bin/env bash
# Builds the local container images; pushes them to a registry when WARMPOOL_IMAGE_REGISTRY is set.
# For every deploy/images/<name>/image.env (IMAGE=warmpool/<name>, ENTRY=<entry relative
# to the repo root>; optional COPY="<src>:<dest in image> ..." for runtime files a bundle
# cannot carry, ESBUILD_ARGS for extra esbuild flags): bundle ENTRY with esbuild, copy the
# host's node binary and the shared libraries ldd lists (same paths, dynamic loader
# included) and build a `FROM scratch` image whose entrypoint is `/usr/bin/node /app/main.js`.
# An image whose inputs (bundle, COPY files, node, libraries, this script) are unchanged is
# not rebuilt: the inputs' hash is stored in the image label warmpool.build-hash.
# Usage: [WARMPOOL_IMAGE_REGISTRY=HOST:PORT] deploy/images/build.sh [NAME...]   (default: every image dir)
# Prints one line per image.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
esbuild="$root/node_modules/.bin/esbuild"
tsc="$root/node_modules/.bin/tsc"
hash_label=warmpool.build-hash

die() { echo "images: $*" >&2; exit 1; }
command -v docker >/dev/null || die "docker is not installed (run: bash deploy/testbed/setup.sh)"
docker info >/dev/null 2>&1 || die "the Docker engine is not running (run: bash deploy/testbed/setup.sh)"
[ -x "$esbuild" ] || die "esbuild not found at $esbuild (run: npm ci)"
node_bin=$(readlink -f "$(command -v node)") || die "node not found"

# One build at a time on this machine: concurrent runs would share build folders.
exec 9>"$here/.build.lock"
flock 9

# Files the image needs besides the bundle: node and every library it loads.
runtime_files() {
  echo "$node_bin"
  # ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)",
  # "linux-vdso.so.1 (0x...)" (virtual, no file).
  ldd "$node_bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3; next } $1 ~ /^\// { print $1 }'
}

typechecked=0
build_one() {
  local dir=$1 name IMAGE="" ENTRY="" ESBUILD_ARGS="" COPY=""
  name=$(basename "$dir")
  # shellcheck disable=SC1091
  source "$dir/image.env"
  [ -n "$IMAGE" ] || die "$name: IMAGE missing in $dir/image.env"
  [ -n "$ENTRY" ] || die "$name: ENTRY missing in $dir/image.env"
  local entry="$root/$ENTRY"
  if [ ! -f "$entry" ]; then
    echo "$name: skipped $IMAGE, entry $ENTRY does not exist yet (build its workspace first: npm run build)"
    return 0
  fi
  local started=$SECONDS build="$dir/build"
  local rootfs="$build/rootfs"
  mkdir -p "$build"

  # Image-only TypeScript is in no tsc -b project: type-check it here (when its sources changed).
  if [[ "$ENTRY" == *.ts && -f "$here/tsconfig.json" && $typechecked == 0 ]]; then
    local stamp="$here/.typecheck.stamp" sum
    sum=$(cat "$here/tsconfig.json" "$root/tsconfig.base.json" "$here"/*/*.ts | sha256sum | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
      "$tsc" -p "$here/tsconfig.json" || die "$name: type errors in deploy/images (tsc -p deploy/images)"
      echo "$sum" >"$stamp"
    fi
    typechecked=1
  fi

  # Bundle as ESM. Bundled CommonJS code still calls require() for node builtins and reads
  # __dirname/__filename: the banner provides them as globals (not declarations, so a module
  # declaring its own `require` or `__dirname` cannot clash); __dirname is /app.
  # Native addons (*.node) stay out: the ones in our dependency tree are optional (ssh2 and
  # cpu-features under dockerode) and their loaders fall back when they are absent.
  local bundle="$build/main.js" log="$build/esbuild.log"
  local banner="import { createRequire as __wpCreateRequire } from 'node:module';"
  banner+=" import { fileURLToPath as __wpFileURLToPath } from 'node:url';"
  banner+=" import { dirname as __wpDirname } from 'node:path';"
  banner+=" globalThis.require ??= __wpCreateRequire(import.meta.url);"
  banner+=" globalThis.__filename ??= __wpFileURLToPath(import.meta.url);"
  banner+=" globalThis.__dirname ??= __wpDirname(globalThis.__filename);"
  # shellcheck disable=SC2086
  if ! "$esbuild" "$entry" --bundle --platform=node --format=esm --target=node20 --banner:js="$banner" \
      --external:'*.node' --log-level=warning --outfile="$bundle" $ESBUILD_ARGS >"$log" 2>&1; then
    cat "$log" >&2
    die "$name: esbuild failed for $ENTRY"
  fi

  # Extra runtime files: "src:dest" pairs, src relative to the repo root (file or folder).
  local copies=() c src
  read -r -a copies <<<"$COPY"
  for c in "${copies[@]}"; do
    src=${c%%:*}
    [[ "$c" == *:/* && -e "$root/$src" ]] || die "$name: bad COPY entry '$c' (want <existing src>:</dest>)"
  done

  local files hash
  mapfile -t files < <(runtime_files)
  hash=$( {
    sha256sum "$bundle" "${files[@]}" "$here/build.sh" | awk '{print $1}'
    printf '%s\n' "${files[@]}" "${copies[@]}"
    for c in "${copies[@]}"; do (cd "$root" && find "${c%%:*}" -type f -print0 | sort -z | xargs -0r sha256sum); done
  } | sha256sum | cut -c1-16)
  local current
  current=$(docker image inspect -f "{{ index .Config.Labels \"$hash_label\" }}" "$IMAGE" 2>/dev/null || true)
  if [ "$current" = "$hash" ]; then
    echo "$name: $IMAGE up to date (hash $hash)"
    return 0
  fi

  # Assemble the root filesystem: /usr/bin/node, its libraries at their own paths, /app.
  rm -rf "$rootfs"
  mkdir -p "$rootfs/usr/bin" "$rootfs/app" "$rootfs/tmp"
  chmod 1777 "$rootfs/tmp"
  cp "$node_bin" "$rootfs/usr/bin/node"
  local f
  for f in "${files[@]:1}"; do
    mkdir -p "$rootfs$(dirname "$f")"
    cp -L "$f" "$rootfs$f"
  done
  cp "$bundle" "$rootfs/app/main.js"
  for c in "${copies[@]}"; do
    mkdir -p "$rootfs$(dirname "${c#*:}")"
    cp -rL "$root/${c%%:*}" "$rootfs${c#*:}"
  done
  echo '{"type":"module"}' >"$rootfs/app/package.json"
  cat >"$build/Dockerfile" <<EOF
# Generated by deploy/images/build.sh; do not edit.
FROM scratch
COPY rootfs/ /
ENV NODE_ENV=production
LABEL $hash_label="$hash" warmpool.image="$IMAGE" warmpool.entry="$ENTRY"
ENTRYPOINT ["/usr/bin/node", "/app/main.js"]
EOF
  printf '*\n!Dockerfile\n!rootfs/\n' >"$build/.dockerignore"

  local old
  old=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  if ! DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$build" >"$build/docker-build.log" 2>&1; then
    cat "$build/docker-build.log" >&2
    die "$name: docker build failed"
  fi
  local new
  new=$(docker image inspect -f '{{.Id}}' "$IMAGE")
  # The replaced image is now untagged; drop it unless a container still uses it.
  if [ -n "$old" ] && [ "$old" != "$new" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
  echo "$name: built $IMAGE (hash $hash, $(du -sh "$rootfs" | cut -f1), $((SECONDS - started))s)"
}

dirs=()
if [ $# -gt 0 ]; then
  for n in "$@"; do
    [ -f "$here/$n/image.env" ] || die "no image named $n (no $here/$n/image.env)"
    dirs+=("$here/$n")
  done
else
  for envf in "$here"/*/image.env; do
    [ -f "$envf" ] && dirs+=("$(dirname "$envf")")
  done
fi
[ ${#dirs[@]} -gt 0 ] || die "no image.env found under $here"
for d in "${dirs[@]}"; do build_one "$d"; done

# With a registry configured (WARMPOOL_IMAGE_REGISTRY=HOST:PORT), every image is pushed there
# as HOST:PORT/<IMAGE>:<WARMPOOL_IMAGE_TAG or latest>, with the docker CLI's own credentials
# (`docker login HOST:PORT` first, or DOCKER_CONFIG=DIR). The pushed tag is removed again
# from this engine; the local name stays.
push_one() {
  local dir=$1 IMAGE="" ENTRY="" ESBUILD_ARGS="" COPY=""
  # shellcheck disable=SC1091
  source "$dir/image.env"
  docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "$(basename "$dir"): not pushed, $IMAGE was not built"; return 0; }
  local ref="$WARMPOOL_IMAGE_REGISTRY/$IMAGE:${WARMPOOL_IMAGE_TAG:-latest}" started=$SECONDS
  docker tag "$IMAGE" "$ref"
  if ! docker push -q "$ref" >"$dir/build/docker-push.log" 2>&1; then
    docker rmi "$ref" >/dev/null 2>&1 || true
    cat "$dir/build/docker-push.log" >&2
    die "$(basename "$dir"): push of $ref failed (log in to the registry first: docker login $WARMPOOL_IMAGE_REGISTRY)"
  fi
  docker rmi "$ref" >/dev/null
  echo "$(basename "$dir"): pushed $ref ($((SECONDS - started))s)"
}
if [ -n "${WARMPOOL_IMAGE_REGISTRY:-}" ]; then
  for d in "${dirs[@]}"; do push_one "$d"; done
fi
