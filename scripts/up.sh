#!/usr/bin/env bash
# Builds skiff and runs a single-node cluster in the foreground. The server prints the
# `export KUBECONFIG=...` line to point kubectl at it. Extra arguments go to `skiff server`.
set -euo pipefail
cd "$(dirname "$0")/.."
# The node agent inside the server runs pods through containerd (from the OS packages).
./scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
cargo build --release -p skiff
exec "$CARGO_TARGET_DIR/release/skiff" server --data-dir "${SKIFF_DATA_DIR:-/var/lib/skiff}" "$@"
