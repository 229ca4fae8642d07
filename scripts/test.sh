#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration (in-process server over HTTPS),
# kubectl end-to-end, and the kill -9 crash test. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

# kubectl v1.32 is the reference client; the machines ship it at /usr/bin/kubectl.
if ! command -v kubectl >/dev/null; then
    echo "kubectl is required on PATH for the end-to-end tests" >&2
    exit 1
fi

# containerd, runc, CNI plugins, busybox-static (test images), protoc (CRI bindings).
./scripts/install-deps.sh

# The official Python client, for the client-library tests.
if ! python3 -c 'import kubernetes' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'kubernetes==32.0.1'
fi

# Reuse builds between runs: a fixed target directory outside the checkout.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/skiff-target}"
export CARGO_TERM_COLOR=never
# Incremental state is kept per checkout path: every fresh CI clone would add gigabytes of
# it to the shared target directory, and a full disk fails the build.
export CARGO_INCREMENTAL=0

cargo build --workspace --all-targets --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
