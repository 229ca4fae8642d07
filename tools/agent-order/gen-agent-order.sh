#!/bin/sh
# Regenerates crates/skiff/agent-order.txt, the order in which the linker lays out the
# functions of the skiff binary (see README.md beside this script and ADR 0021): the
# functions `skiff agent` calls in `skiff-bench pod-startup`, in the order of their first
# call, traced by trace-calls.py.
#
#   tools/agent-order/gen-agent-order.sh
#
# Builds skiff and skiff-bench (release, each on its own: the symbol names are those of
# `cargo build --release -p skiff`, which building them together would change), traces,
# writes the file and links skiff again with it. Root, and what pod-startup needs
# (containerd, runc, the CNI plugins, busybox-static; port 53 free). The traced run takes
# about 6 minutes, the relink of skiff a few more.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --release -p skiff
cargo build --release -p skiff-bench
work=$(mktemp -d "${TMPDIR:-/var/tmp}/agent-order.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The traced binary is a copy: the last step relinks the one in the target directory.
skiff=$work/skiff-traced
cp "$target/release/skiff" "$skiff"
bench=$target/release/skiff-bench
out=$repo/crates/skiff/agent-order.txt

# The benchmark runs this wrapper as its skiff: the agent under the tracer, the rest as is.
cat >"$work/skiff" <<WRAPPER
#!/bin/sh
if [ "\$1" = agent ]; then
    exec python3 "$here/trace-calls.py" --out "$work/calls.txt" -- "$skiff" "\$@"
fi
exec "$skiff" "\$@"
WRAPPER
chmod +x "$work/skiff"

"$bench" --skiff "$work/skiff" --work-dir "$work" pod-startup >"$work/bench.out"
# One symbol a line (aliases of one function on consecutive lines), each once.
tr ' ' '\n' <"$work/calls.txt" | awk 'NF && !seen[$0]++' >"$out"
echo "gen-agent-order: $(wc -l <"$out") symbols in $out" >&2
cargo build --release -p skiff
