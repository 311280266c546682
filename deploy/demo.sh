#!/usr/bin/env bash
# `npm run demo`: installs what is missing, starts the Docker engine if needed, builds the
# code and the local images, then runs a local mesh (test/src/demo.ts) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund
bash deploy/testbed/setup.sh
npx tsc -b
bash deploy/images/build.sh
exec node test/dist/src/demo.js
