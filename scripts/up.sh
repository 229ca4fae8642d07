#!/usr/bin/env bash
# Builds skiff and runs a single-node cluster in the foreground. The server prints the
# `export KUBECONFIG=...` line to point kubectl at it. Extra arguments go to `skiff server`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
cargo build --release -p skiff
exec "$CARGO_TARGET_DIR/release/skiff" server --data-dir "${SKIFF_DATA_DIR:-/var/lib/skiff}" "$@"
