#!/usr/bin/env bash
# Make a Chromium available for the real-browser test of the demo page (Debian's
# `chromium` package, driven by playwright-core). Never fatal: without a browser that
# one test is skipped, and says why.
set -uo pipefail

log() { printf 'provision: %s\n' "$*" >&2; }

for candidate in "${CHROMIUM_BIN:-}" "$(command -v chromium 2>/dev/null)" /usr/bin/chromium; do
  if [[ -n $candidate && -x $candidate ]]; then
    exit 0
  fi
done

if [[ ! -f /etc/debian_version ]] || ! command -v apt-get >/dev/null 2>&1; then
  log "no chromium, and this is not Debian: the demo page's browser test will be skipped (set CHROMIUM_BIN)"
  exit 0
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
    log "no chromium, and no root to install it: the demo page's browser test will be skipped"
    exit 0
  fi
fi

mkdir -p .deps
aptlog=.deps/apt-chromium.log
log "installing chromium with apt (for the demo page's browser test)…"
install() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }
if ! install >"$aptlog" 2>&1; then
  "${SUDO[@]}" apt-get update >>"$aptlog" 2>&1
  if ! install >>"$aptlog" 2>&1; then
    log "could not install chromium (see $aptlog): the demo page's browser test will be skipped"
    exit 0
  fi
fi
log "chromium ready: $(command -v chromium)"
