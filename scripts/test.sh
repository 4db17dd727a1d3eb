#!/usr/bin/env bash
# The README's "test" command: every test of the workspace (unit, cross-process, hostile
# segments), the loom model check of the seqlock, Miri on the shared-memory crate's unit
# tests where a nightly toolchain with miri can be had, and the benchmarks compiled (not run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# `--features camring/bench`: tests/bench.rs runs `camring bench --quick` for real.
cargo test --workspace --all-targets --features camring/bench
RUSTFLAGS="--cfg loom" cargo test -p camring-shm --test loom --release --target-dir target/loom
# Miri runs camring-shm's unit tests (the racy copy, and the Writer and Reader on a heap-backed segment) on
# heap memory; it needs a nightly toolchain with miri (scripts/setup.sh tries to add one).
if cargo +nightly miri --version >/dev/null 2>&1; then
  cargo +nightly miri test -p camring-shm --lib
else
  echo "camring test: no nightly toolchain with miri; skipped: cargo +nightly miri test -p camring-shm --lib" >&2
fi
leaked=$(ls /dev/shm | grep -i camring || true)
if [ -n "$leaked" ]; then
  echo "tests left shared-memory segments behind: $leaked" >&2
  exit 1
fi
