#!/usr/bin/env bash
# Make `consul` (>= 1.8) and `redis-server` (>= 6) available to this project.
#
# Order of preference for each binary:
#   1. $CONSUL_BIN / $REDIS_SERVER_BIN, if set and executable
#   2. `consul` / `redis-server` on PATH
#   3. a previous provisioning in .deps/ (consul only)
#   4. install it (Debian only): redis-server from the machine's own suite,
#      consul 1.8 from Debian bullseye, downloaded with a project-local apt
#      state into .deps/ (the system's apt sources and state are not touched).
#
# Results: .deps/bin.env (CONSUL_BIN=..., REDIS_SERVER_BIN=...) and symlinks
# .deps/bin/consul and .deps/bin/redis-server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="$ROOT/.deps"
LOCAL_CONSUL="$DEPS/consul/usr/bin/consul"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { printf 'provision: %s\n' "$*" >&2; }

die() {
  log "error: $*"
  cat >&2 <<'EOF'
provision: install consul (>= 1.8) and redis-server (>= 6) yourself, then either
provision: put them on PATH or point CONSUL_BIN / REDIS_SERVER_BIN at them, e.g.
provision:   CONSUL_BIN=/opt/consul/consul REDIS_SERVER_BIN=/usr/bin/redis-server npm test
provision: or run the stack in containers with `docker compose up`.
EOF
  exit 1
}

# Absolute path. Symlinks are kept (Debian's redis-server is a link to a
# multi-call binary that looks at its name), except our own .deps/bin links,
# which are followed so that they never end up pointing at themselves.
abspath() {
  local p="$1" target
  [[ $p == /* ]] || p="$(cd "$(dirname -- "$p")" && pwd)/$(basename -- "$p")"
  while [[ $p == "$DEPS/bin/"* && -L $p ]]; do
    target="$(readlink -- "$p")"
    [[ $target == /* ]] || target="$(dirname -- "$p")/$target"
    p="$target"
  done
  printf '%s\n' "$p"
}

# version_ge 1.8.7 1.8 -> true when $1 >= $2 (major.minor only).
version_ge() {
  local a_major a_minor b_major b_minor
  IFS=. read -r a_major a_minor _ <<<"$1."
  IFS=. read -r b_major b_minor _ <<<"$2."
  a_minor=${a_minor:-0} b_minor=${b_minor:-0}
  ((a_major > b_major || (a_major == b_major && a_minor >= b_minor)))
}

# Prints the version of a consul binary, e.g. "1.8.7"; fails if it is not consul.
consul_version() {
  local out
  out="$("$1" version 2>/dev/null)" || return 1
  [[ $out =~ Consul\ v([0-9]+\.[0-9]+(\.[0-9]+)?) ]] || return 1
  printf '%s\n' "${BASH_REMATCH[1]}"
}

# Prints the version of a redis-server binary, e.g. "7.0.15".
redis_version() {
  local out
  out="$("$1" --version 2>/dev/null)" || return 1
  [[ $out =~ v=([0-9]+\.[0-9]+(\.[0-9]+)?) ]] || return 1
  printf '%s\n' "${BASH_REMATCH[1]}"
}

CONSUL_PATH="" CONSUL_VERSION="" REDIS_PATH="" REDIS_VERSION=""

# try_consul PATH: accept PATH if it is a consul >= 1.8.
try_consul() {
  local path="$1" version
  [[ -n $path && -x $path && ! -d $path ]] || return 1
  path="$(abspath "$path")"
  if ! version="$(consul_version "$path")"; then
    log "ignoring $path: not a working consul binary"
    return 1
  fi
  if ! version_ge "$version" 1.8; then
    log "ignoring $path: consul $version is older than 1.8"
    return 1
  fi
  CONSUL_PATH="$path" CONSUL_VERSION="$version"
}

# try_redis PATH: accept PATH if it is a redis-server >= 6.
try_redis() {
  local path="$1" version
  [[ -n $path && -x $path && ! -d $path ]] || return 1
  path="$(abspath "$path")"
  if ! version="$(redis_version "$path")"; then
    log "ignoring $path: not a working redis-server binary"
    return 1
  fi
  if ! version_ge "$version" 6; then
    log "ignoring $path: redis-server $version is older than 6"
    return 1
  fi
  REDIS_PATH="$path" REDIS_VERSION="$version"
}

find_consul() {
  if [[ -n ${CONSUL_BIN:-} ]]; then
    try_consul "$CONSUL_BIN" && return 0
    [[ -x $CONSUL_BIN ]] || log "CONSUL_BIN=$CONSUL_BIN is not executable; looking elsewhere"
  fi
  try_consul "$(command -v consul || true)" && return 0
  try_consul "$LOCAL_CONSUL"
}

find_redis() {
  if [[ -n ${REDIS_SERVER_BIN:-} ]]; then
    try_redis "$REDIS_SERVER_BIN" && return 0
    [[ -x $REDIS_SERVER_BIN ]] || log "REDIS_SERVER_BIN=$REDIS_SERVER_BIN is not executable; looking elsewhere"
  fi
  try_redis "$(command -v redis-server || true)"
}

# ---------------------------------------------------------------------------
# Installation (Debian only)

SUDO=()
POLICY_RC_CREATED=0

cleanup() {
  if ((POLICY_RC_CREATED)); then
    "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d || true
  fi
}
trap cleanup EXIT

require_debian() {
  [[ -f /etc/debian_version ]] && command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 ||
    die "cannot install $1 automatically: this is not a Debian system with apt-get"
}

require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      SUDO=(sudo -n)
    else
      die "installing $1 needs root, and passwordless sudo is not available"
    fi
  fi
}

apt_install_redis() {
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=120 redis-server
}

install_redis() {
  require_debian redis-server
  require_root redis-server
  log "installing redis-server with apt-get (from the system's own suite)"

  # Keep the package from starting a service (it may fail without systemd).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi

  local aptlog="$DEPS/apt-redis.log"
  if ! apt_install_redis >"$aptlog" 2>&1; then
    log "apt-get install failed; running apt-get update and retrying"
    if ! "${SUDO[@]}" apt-get update -q -o DPkg::Lock::Timeout=120 >>"$aptlog" 2>&1 ||
      ! apt_install_redis >>"$aptlog" 2>&1; then
      tail -n 15 "$aptlog" >&2
      die "apt-get could not install redis-server (full log: $aptlog)"
    fi
  fi

  cleanup
  POLICY_RC_CREATED=0
  hash -r
  try_redis "$(command -v redis-server || true)" || try_redis /usr/bin/redis-server ||
    die "redis-server was installed but \`redis-server --version\` does not work"
}

# Prints the URI of the machine's Debian mirror (not the security one), read
# from the apt sources: deb822 *.sources stanzas and one-line *.list entries.
debian_mirror() {
  local codename="$1"
  local -a sources=() lists=()
  local f
  for f in /etc/apt/sources.list.d/*.sources; do [[ -f $f ]] && sources+=("$f"); done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do [[ -f $f ]] && lists+=("$f"); done

  {
    if ((${#sources[@]})); then
      # One "URI suite" line per URI x suite of each enabled deb stanza.
      awk '
        function flush(   u, s, nu, ns, i, j, U, S) {
          if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no") {
            nu = split(uris, U, /[ \t]+/); ns = split(suites, S, /[ \t]+/)
            for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
              if (U[i] != "" && S[j] != "") print U[i], S[j]
          }
          types = uris = suites = enabled = ""
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        { key = tolower($1); sub(/^[^:]*:[ \t]*/, "") }
        key == "types:" { types = $0 }
        key == "uris:" { uris = $0 }
        key == "suites:" { suites = $0 }
        key == "enabled:" { enabled = $0 }
        END { flush() }
      ' "${sources[@]}"
    fi
    if ((${#lists[@]})); then
      # deb [opts] URI suite components...
      sed -E -n 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+([^[:space:]]+).*/\2 \3/p' \
        "${lists[@]}"
    fi
  } | awk -v codename="$codename" '
    $1 ~ /security/ || $2 ~ /security/ { next }
    $2 == codename && found == "" { found = $1 }
    $2 ~ /^(bullseye|bookworm|trixie|forky|duke|sid|oldstable|stable|testing|unstable)$/ && fallback == "" { fallback = $1 }
    END { if (found != "") print found; else if (fallback != "") print fallback }
  '
}

install_consul() {
  require_debian consul
  local id="" codename=""
  # shellcheck disable=SC1091
  id="$(. /etc/os-release && printf '%s' "${ID:-}")"
  # shellcheck disable=SC1091
  codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
  [[ $id == debian ]] || die "cannot fetch consul automatically: it comes from Debian bullseye, and this is $id"
  [[ -f $KEYRING ]] || die "cannot fetch consul: $KEYRING is missing (install the debian-archive-keyring package)"

  local mirror
  mirror="$(debian_mirror "$codename")"
  [[ -n $mirror ]] || die "cannot fetch consul: no Debian mirror found in /etc/apt/sources.list{,.d}"
  mirror="${mirror%/}"

  log "fetching consul 1.8 from Debian bullseye ($mirror) into .deps/"
  local apt="$DEPS/apt"
  rm -rf "$apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d" "$apt/preferences.d"
  printf 'deb [signed-by=%s] %s bullseye main\n' "$KEYRING" "$mirror" >"$apt/sources.list"

  local -a opts=(
    -q
    -o "Dir::Etc::SourceList=$apt/sources.list"
    -o "Dir::Etc::SourceParts=$apt/sources.list.d"
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::Etc::PreferencesParts=$apt/preferences.d"
    -o "Dir::State::Lists=$apt/lists"
    -o "Dir::Cache=$apt/cache"
    -o "Dir::State::Status=/dev/null"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
    -o "Acquire::Languages=none"
  )
  local aptlog="$DEPS/apt-consul.log"
  if ! (cd "$apt" && apt-get "${opts[@]}" update && apt-get "${opts[@]}" download consul) >"$aptlog" 2>&1; then
    tail -n 15 "$aptlog" >&2
    die "could not download consul from $mirror (full log: $aptlog)"
  fi

  local deb
  deb="$(find "$apt" -maxdepth 1 -name 'consul_*.deb' -print -quit)"
  [[ -n $deb ]] || die "apt-get download consul produced no .deb (log: $aptlog)"

  # Extract next to the target, then swap it in, so a failed run leaves nothing half-done.
  rm -rf "$DEPS/consul.new"
  dpkg-deb -x "$deb" "$DEPS/consul.new"
  rm -rf "$DEPS/consul"
  mv "$DEPS/consul.new" "$DEPS/consul"
  rm -rf "$apt/lists" "$apt/cache" "$deb"

  try_consul "$LOCAL_CONSUL" && [[ $CONSUL_VERSION == 1.8* ]] ||
    die "$LOCAL_CONSUL does not report Consul v1.8"
}

# ---------------------------------------------------------------------------

write_outputs() {
  mkdir -p "$DEPS/bin"
  local env_file="$DEPS/bin.env" content
  content="$(printf 'CONSUL_BIN=%s\nREDIS_SERVER_BIN=%s' "$CONSUL_PATH" "$REDIS_PATH")"
  if [[ ! -f $env_file || "$(<"$env_file")" != "$content" ]]; then
    printf '%s\n' "$content" >"$env_file.tmp"
    mv -f "$env_file.tmp" "$env_file"
  fi
  [[ "$(readlink "$DEPS/bin/consul" 2>/dev/null)" == "$CONSUL_PATH" ]] || ln -sfn "$CONSUL_PATH" "$DEPS/bin/consul"
  [[ "$(readlink "$DEPS/bin/redis-server" 2>/dev/null)" == "$REDIS_PATH" ]] || ln -sfn "$REDIS_PATH" "$DEPS/bin/redis-server"
}

main() {
  find_consul || true
  find_redis || true

  if [[ -z $CONSUL_PATH || -z $REDIS_PATH ]]; then
    mkdir -p "$DEPS"
    # Serialize concurrent provisioning (e.g. parallel `npm test` runs), then look again.
    if command -v flock >/dev/null 2>&1; then
      exec 9>"$DEPS/.provision.lock"
      flock 9
      [[ -n $CONSUL_PATH ]] || try_consul "$LOCAL_CONSUL" || true
      hash -r
      [[ -n $REDIS_PATH ]] || try_redis "$(command -v redis-server || true)" || true
    fi
    [[ -n $REDIS_PATH ]] || install_redis
    [[ -n $CONSUL_PATH ]] || install_consul
  fi

  write_outputs
  log "consul $CONSUL_VERSION and redis-server $REDIS_VERSION ready"
}

main "$@"
