#!/usr/bin/env bash
# Installs the system packages the tests and benchmarks need. Idempotent: packages already
# installed are not fetched again. kubectl is expected on PATH already (Debian's
# kubernetes-client package would collide with it, so it is never installed here).
set -euo pipefail

# openssl: the TLS data-path test makes its certificates; time: the benchmark's peak RSS;
# make: the `stash` binary's allocator (tikv-jemalloc-sys) builds jemalloc with it.
packages=(mariadb-server mariadb-client restic openssl time make)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # The server package would start a system-wide mariadbd; the testkit starts its own
  # private servers, so the service is stopped again right after installation.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if command -v service >/dev/null 2>&1; then $SUDO service mariadb stop >/dev/null 2>&1 || true; fi
else
  echo "setup: system packages present"
fi

if ! command -v kubectl >/dev/null 2>&1; then
  echo "setup: warning: kubectl not on PATH; the kubectl conformance tests need it" >&2
fi

# Cloud storage emulators for the Azure and GCS backend tests (no Docker here): Azurite from npm
# and gcp-storage-emulator from PyPI, in a private prefix and virtualenv. A failed install only
# warns: those tests then say SKIPPED.
EMU="${STASH_EMULATORS:-$HOME/.cache/stash-rs/emulators}"
if [ ! -x "$EMU/node/node_modules/.bin/azurite-blob" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "setup: installing azurite into $EMU/node"
    npm install --prefix "$EMU/node" --no-audit --no-fund --loglevel=error azurite@3.37.0 \
      || echo "setup: warning: azurite did not install; the Azure tests will skip" >&2
  else
    echo "setup: warning: npm not on PATH; the Azure tests will skip" >&2
  fi
fi
if [ ! -x "$EMU/venv/bin/gcp-storage-emulator" ]; then
  echo "setup: installing gcp-storage-emulator into $EMU/venv"
  { python3 -m venv "$EMU/venv" && "$EMU/venv/bin/pip" install -q gcp-storage-emulator==2026.7.19; } \
    || echo "setup: warning: gcp-storage-emulator did not install; the GCS tests will skip" >&2
fi
