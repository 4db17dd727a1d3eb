#!/usr/bin/env bash
# Installs what building camring needs beyond Rust: cmake and nasm, with which the
# turbojpeg crate builds libjpeg-turbo 3 from source (Debian's libturbojpeg is too old),
# and libclang, which bindgen loads to generate nokhwa's V4L2 bindings (feature `camera`).
# For the browser viewer's test (tests/viewer.rs): Debian's chromium, and playwright-core
# from tests/browser/package-lock.json (npm ci; it downloads no browser). That needs
# Node.js 20 or later with npm, which this script does not install (Debian 12 has 18).
# Idempotent and quiet when everything is there.
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v nasm >/dev/null 2>&1 || need+=(nasm)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
[ -n "${LIBCLANG_PATH:-}" ] || compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null ||
  need+=(libclang-dev)
[ -x /usr/bin/chromium ] || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
  echo "camring setup: installing ${need[*]} (apt-get)" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "camring setup: need root (or sudo) to install ${need[*]}" >&2; exit 1; fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Miri (scripts/test.sh runs it on camring-shm's unit tests) comes with a nightly
# toolchain; best effort: where rustup cannot fetch one, the test script says it skipped it.
if command -v rustup >/dev/null 2>&1 && ! cargo +nightly miri --version >/dev/null 2>&1; then
  echo "camring setup: adding a nightly toolchain with miri (rustup)" >&2
  timeout 300 rustup toolchain install nightly --profile minimal --component miri,rust-src \
    >/dev/null 2>&1 || echo "camring setup: no nightly miri here; its tests will be skipped" >&2
fi

browser="$(dirname "$0")/../tests/browser"
if [ ! -f "$browser/node_modules/.package-lock.json" ] ||
  [ "$browser/package-lock.json" -nt "$browser/node_modules/.package-lock.json" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "camring setup: installing tests/browser/node_modules (npm ci)" >&2
    (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
  else
    echo "camring setup: no npm; the browser viewer test needs Node.js 20+ with npm" >&2
  fi
fi
