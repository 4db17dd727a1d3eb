#!/usr/bin/env bash
# The README's "test" command: every test of the workspace (unit, cross-process, hostile
# segments), the loom model check of the seqlock, and the benchmarks compiled (not run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-targets
RUSTFLAGS="--cfg loom" cargo test -p camring-shm --test loom --release --target-dir target/loom
leaked=$(ls /dev/shm | grep -i camring || true)
if [ -n "$leaked" ]; then
  echo "tests left shared-memory segments behind: $leaked" >&2
  exit 1
fi
