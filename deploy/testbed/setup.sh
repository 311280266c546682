#!/usr/bin/env bash
# Warmpool test bed: installs only what is missing and starts only what is not running.
# Used by `npm test`, `npm run demo`, benchmarks and CI alike. Idempotent.
#   - Docker engine (Debian docker.io); dockerd started when `docker info` fails
#   - etcd 3.4 + etcdctl (Debian etcd-server, etcd-client); tests start private members
#   - Consul 1.8 binary (Debian 11 package, unpacked under .testbed/consul)
#   - dig, nginx, wrk for tests and benchmarks
#   - docker-registry (distribution 2.8) + htpasswd (apache2-utils): tests start private
#     registries with a login on 127.0.0.1 (test/src/image-registry.ts)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
state="$root/.testbed"
mkdir -p "$state"
log() { echo "[testbed] $*" >&2; }

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v dig >/dev/null || need+=(dnsutils)
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v ip >/dev/null || need+=(iproute2)
command -v chromium >/dev/null || need+=(chromium)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v openssl >/dev/null || need+=(openssl)
command -v ldd >/dev/null || need+=(libc-bin)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for a dpkg lock held by another install instead of failing at once.
  apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# Consul: Debian 12 has no package; Debian 11 ships a self-contained 1.8 binary.
consul_bin="$state/consul/usr/bin/consul"
if [ ! -x "$consul_bin" ]; then
  log "fetching consul from the Debian 11 archive"
  work=$(mktemp -d)
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ]; then
    # Reuse this machine's own first Debian entry, pointed at bullseye.
    awk 'BEGIN{RS="";ORS="\n\n"} NR==1' "$src" | sed -E 's/^Suites:.*/Suites: bullseye/' > "$work/bullseye.sources"
    list_opt=(-o Dir::Etc::SourceList=/nonexistent -o Dir::Etc::SourceParts="$work/parts")
    mkdir -p "$work/parts"; mv "$work/bullseye.sources" "$work/parts/"
  else
    # One-line format: take the first deb line and swap its suite.
    grep -m1 -E '^deb ' /etc/apt/sources.list | awk '{$3="bullseye"; print}' > "$work/bullseye.list"
    list_opt=(-o Dir::Etc::SourceList="$work/bullseye.list" -o Dir::Etc::SourceParts=/nonexistent)
  fi
  mkdir -p "$work/lists/partial"
  opts=("${list_opt[@]}" -o APT::Sandbox::User=root -o Dir::State::Lists="$work/lists" -o APT::Get::List-Cleanup=0)
  apt-get "${opts[@]}" update -q >/dev/null
  (cd "$work" && apt-get "${opts[@]}" download consul >/dev/null)
  mkdir -p "$state/consul"
  dpkg -x "$work"/consul_*.deb "$state/consul"
  rm -rf "$work"
fi
ln -sf "$consul_bin" "$state/consul-bin"

# Docker engine: start dockerd when nothing answers.
if ! docker info >/dev/null 2>&1; then
  # A dockerd that is still shutting down holds its pid file: wait for it. A pid file left
  # by a dockerd that died (kill -9) would block the start: remove it.
  for _ in $(seq 1 40); do pgrep -x dockerd >/dev/null || break; sleep 0.5; done
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  log "starting dockerd"
  nohup dockerd --host unix:///var/run/docker.sock >"$state/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see $state/dockerd.log"; tail -20 "$state/dockerd.log" >&2; exit 1; }
fi
log "ready: docker $(docker version --format '{{.Server.Version}}'), $(etcd --version | head -1), $("$consul_bin" version | head -1)"
