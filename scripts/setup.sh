#!/usr/bin/env bash
# Installs what building camring needs beyond Rust: cmake and nasm, with which the
# turbojpeg crate builds libjpeg-turbo 3 from source (Debian's libturbojpeg is too old),
# and libclang, which bindgen loads to generate nokhwa's V4L2 bindings (feature `camera`).
# Idempotent and quiet when everything is there.
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v nasm >/dev/null 2>&1 || need+=(nasm)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
[ -n "${LIBCLANG_PATH:-}" ] || compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null ||
  need+=(libclang-dev)

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
