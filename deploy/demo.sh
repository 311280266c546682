#!/usr/bin/env bash
# `npm run demo`: installs what is missing, starts the Docker engine if needed, builds the
# code and the local images, then runs a local mesh (test/src/demo.ts) until Ctrl-C.
# Every step says what it does before it starts (the long ones take minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "demo: $*"; }
if [ ! -d node_modules ]; then
  step "installing dependencies (npm ci; a few minutes the first time)..."
  npm ci --no-audit --no-fund
fi
step "checking the test bed: Docker engine, etcd, Consul (installs only what is missing)..."
bash deploy/testbed/setup.sh
step "compiling TypeScript (tsc -b; a minute or two the first time, seconds after)..."
started=$SECONDS
npx tsc -b
step "compiled in $((SECONDS - started)) s"
step "building the local images warmpool/sidecar and warmpool/chatbot-demo (skipped when up to date)..."
bash deploy/images/build.sh
exec node test/dist/src/demo.js
