#!/usr/bin/env bash
# The README's "run" command: builds camring and runs the demo (a synthetic 4-camera
# producer and the WebSocket bridge serving the browser viewer; it prints the URL).
# Extra arguments go to `camring demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin camring
exec target/release/camring demo "$@"
