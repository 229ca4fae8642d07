#!/usr/bin/env bash
# Builds skiff and runs a single-node cluster in the foreground. The server prints the
# `export KUBECONFIG=...` line to point kubectl at it. Extra arguments go to `skiff server`.
# busybox-static (installed below) becomes the image skiff.local/busybox:1 on the node.
set -euo pipefail
cd "$(dirname "$0")/.."
# The node agent inside the server runs pods through containerd (from the OS packages).
./scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
cargo build --release -p skiff
data_dir="${SKIFF_DATA_DIR:-/var/lib/skiff}"
# A busybox image the agent imports at start, so that pods run without a registry:
# kubectl run hello --image=skiff.local/busybox:1 -- sh -c 'echo hello; sleep 3600'
if [ ! -e "$data_dir/agent/images/busybox_1.tar" ]; then
    cargo run --release --quiet -p skiff-testkit --example busybox_image -- "$data_dir/agent/images"
fi
exec "$CARGO_TARGET_DIR/release/skiff" server --data-dir "$data_dir" "$@"
