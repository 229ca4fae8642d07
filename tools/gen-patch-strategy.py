#!/usr/bin/env python3
"""Generate crates/api/src/patch/strategies.rs: the strategic-merge-patch type table.

Strategic merge patch (`application/strategic-merge-patch+json`) merges a list by key
or replaces it depending on Go struct tags on Kubernetes' API types:

    Containers []Container `json:"containers" patchStrategy:"merge" patchMergeKey:"name" ...`

`skiff_api::patch` needs, for every API type, each JSON field, the type it leads to
(struct, map, list of what, scalar) and its patchStrategy/patchMergeKey tags. Nothing
here is written by hand:

  * The type graph (messages, JSON field names, which structs Go embeds inline) comes
    from the same crates tools/gen-protobuf-schema.py reads (k8s-pb and k8s-openapi in
    the local cargo registry); this script imports that one and reuses its loaders.
  * The patch tags come from tools/patch-strategies.txt (checked in), one line per
    tagged Go field: `proto-message json-field patchStrategy patchMergeKey` (`-` for
    none). It is derived from Kubernetes' Go sources by `--scan-go` (below).

Rerun (stdlib only, no network) from the workspace root:

    python3 tools/gen-patch-strategy.py            # writes the Rust table
    python3 tools/gen-patch-strategy.py --check    # exit 1 if the Rust table is stale

To refresh tools/patch-strategies.txt (e.g. for a newer Kubernetes), export the Go
modules at a release tag, e.g. with the search tool's `fetch` of github:kubernetes/api
(and apimachinery, apiextensions-apiserver, kube-aggregator), then for each
`git -C <mirror> archive v0.33.13 | tar -x -C /tmp/k8s/<name>`, and run

    python3 tools/gen-patch-strategy.py --release v0.33.13 \\
        --scan-go k8s.io/api=/tmp/k8s/api \\
        --scan-go k8s.io/apimachinery=/tmp/k8s/apimachinery \\
        --scan-go k8s.io/apiextensions-apiserver=/tmp/k8s/apiextensions-apiserver \\
        --scan-go k8s.io/kube-aggregator=/tmp/k8s/kube-aggregator

which rewrites the list (keeping only messages k8s-pb knows, i.e. no test types),
reports tags whose field the type graph does not have, then writes the Rust table.
Never commit the Go sources themselves.

Options --registry, --pb-version, --openapi-version, --strategies and --out override
the defaults.
"""

import argparse
import glob
import importlib.util
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = "crates/api/src/patch/strategies.rs"
DEFAULT_STRATEGIES = "tools/patch-strategies.txt"
DEFAULT_RELEASE = "v0.33.13"


def load_protobuf_generator():
    """tools/gen-protobuf-schema.py as a module (its name has dashes)."""
    path = os.path.join(HERE, "gen-protobuf-schema.py")
    spec = importlib.util.spec_from_file_location("gen_protobuf_schema", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gps = load_protobuf_generator()

# How each special JSON representation behaves for strategic merge patch. In Go these
# are structs without JSON-visible fields (Time wraps time.Time, Quantity and
# RawExtension hide theirs), so merging into them finds no field: "Opaque".
OPAQUE_REPRS = {"Time", "MicroTime", "Duration", "Quantity", "IntOrString", "RawJson",
                "SchemaOrBool", "SchemaOrArray", "SchemaOrStringArray"}

SCALAR_TY = {
    "Str": "STR",
    "Bool": "BOOL",
    "Int32": "I32",
    "Int64": "I64",
    "Double": "F64",
    "Bytes": "BYTES",  # Go []byte: a slice of uint8, base64 in JSON
}


def scan_go(specs):
    """[(proto message, json name, patchStrategy, patchMergeKey)] from Go struct tags.

    The proto message name is the Go package path plus the struct name, exactly as
    gen-protobuf-schema.py's own --scan-go keys fields."""
    found = []
    for spec in specs:
        import_path, _, root = spec.partition("=")
        for path in sorted(glob.glob(os.path.join(root, "**", "*.go"), recursive=True)):
            if path.endswith("_test.go") or os.path.basename(path).startswith("zz_generated"):
                continue
            rel = os.path.relpath(os.path.dirname(path), root)
            package = ".".join(
                [import_path.replace("/", ".").replace("-", "_")] + ([] if rel == "." else rel.split(os.sep))
            )
            struct = None
            for line in open(path, encoding="utf-8"):
                line = line.rstrip("\n")
                if m := gps.GO_STRUCT_RE.match(line):
                    struct = m.group(1)
                elif line == "}":
                    struct = None
                elif struct and (m := gps.GO_FIELD_RE.match(line)):
                    tags = dict(gps.GO_TAG_RE.findall(m.group(3)))
                    strategy, key = tags.get("patchStrategy", ""), tags.get("patchMergeKey", "")
                    json = tags.get("json", "").partition(",")[0]
                    if (strategy or key) and json not in ("", "-"):
                        found.append((f"{package}.{struct}", json, strategy or "-", key or "-"))
    return sorted(set(found))


STRATEGIES_HEADER = """\
# Strategic merge patch tags of Kubernetes' API types: one line per Go struct field
# tagged patchStrategy/patchMergeKey, as `proto-message json-field patchStrategy
# patchMergeKey` (`-` for none). Generated by tools/gen-patch-strategy.py --scan-go from
# the Go sources at {release} of
#   {sources};
# read by the same script when it writes crates/api/src/patch/strategies.rs.
"""


def write_strategies(path, entries, specs, release):
    with open(path, "w", encoding="utf-8") as f:
        sources = " ".join(sorted(s.partition("=")[0] for s in specs))
        f.write(STRATEGIES_HEADER.format(sources=sources, release=release))
        for entry in entries:
            f.write(" ".join(entry) + "\n")


def read_strategies(path):
    tags = {}
    for line in open(path, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            message, json, strategy, key = line.split()
            tags[(message, json)] = ("" if strategy == "-" else strategy, "" if key == "-" else key)
    return tags


class Graph:
    """Kubernetes' API types as k8s-pb and k8s-openapi describe them."""

    def __init__(self, registry, pb_version, openapi_version):
        pb_roots = glob.glob(os.path.join(registry, "*", f"k8s-pb-{pb_version}", "src"))
        oa_roots = glob.glob(os.path.join(registry, "*", f"k8s-openapi-{openapi_version}", "src"))
        if not pb_roots or not oa_roots:
            sys.exit(f"k8s-pb {pb_version} or k8s-openapi {openapi_version} not in {registry}")
        messages, self.resources = gps.load_pb(pb_roots[0])
        openapi = gps.load_openapi(oa_roots[0])
        gps.name_messages(messages, self.resources, openapi)
        self.ordered = sorted(messages.values(), key=lambda m: m.full_name)
        self.index_of = {(m.module, m.rust_name): i for i, m in enumerate(self.ordered)}
        self.by_key = {(m.module, m.rust_name): m for m in self.ordered}
        self.names, self.inline, _ = gps.json_names(self.ordered, self.by_key, openapi)
        self.by_name = {m.full_name: m for m in self.ordered}

    def repr_of(self, msg):
        repr_ = gps.REPRS.get(msg.full_name, "Plain")
        if repr_ == "Plain" and "+protobuf.nullable=true" in "\n".join(msg.doc):
            repr_ = "Items"
        return repr_

    def child(self, msg, rust_type):
        return self.by_key[gps.resolve(msg.module, rust_type)]

    def ty(self, msg, attr, rust_type, repeated):
        """The Rust `Ty` expression for a field (repeated: of its elements)."""
        kind = gps.field_kind(msg, attr, rust_type, self.index_of)
        if kind.startswith("Map"):
            elem = "MAP"
        elif kind.startswith("Msg("):
            child = self.child(msg, rust_type)
            # A named slice (ExtraValue, Verbs) is a JSON array of strings.
            elem = "L(&STR)" if self.repr_of(child) == "Items" else f"S({self.index_of[(child.module, child.rust_name)]})"
        else:
            elem = SCALAR_TY[kind]
        return f"L(&{elem})" if repeated else elem

    def json_fields(self, msg, seen):
        """(json, ty, declaring message) of msg's JSON fields, inline structs flattened.

        Go's encoding/json lets a shallower field hide a same-named field of an embedded
        struct, so direct fields come first and embedded ones only fill the gaps."""
        direct, embedded = [], []
        for tag, _, attr, rust_type in sorted(msg.fields):
            if (msg.full_name, tag) in self.inline:
                child = self.child(msg, rust_type)
                if child.full_name not in seen:
                    embedded.append(child)
                continue
            json = self.names[(msg.full_name, tag)]
            direct.append((json, self.ty(msg, attr, rust_type, " repeated" in attr), msg.full_name))
        fields = list(direct)
        for child in embedded:
            taken = {f[0] for f in fields}
            fields += [f for f in self.json_fields(child, seen | {msg.full_name}) if f[0] not in taken]
        return fields

    def is_object(self, msg):
        """Kinds and lists embed metav1.TypeMeta (apiVersion, kind), which protobuf
        leaves out; they are the messages with ObjectMeta or ListMeta metadata."""
        for tag, _, attr, rust_type in msg.fields:
            if self.names.get((msg.full_name, tag)) == "metadata" and attr.startswith("message"):
                if self.child(msg, rust_type).full_name in (gps.META + ".ObjectMeta", gps.META + ".ListMeta"):
                    return True
        return False


def check_tags(graph, tags):
    """Tags whose (message, field) the type graph lacks; fields k8s-pb added later or
    types it does not carry. Returns the printable list."""
    missing = []
    for message, json in sorted(tags):
        msg = graph.by_name.get(message)
        if msg is None or json not in {f[0] for f in graph.json_fields(msg, frozenset())}:
            missing.append(f"  {message} {json}")
    return missing


def render(graph, tags, release_note):
    lines, tagged = [], 0
    for msg in graph.ordered:
        entries = []
        if graph.repr_of(msg) == "Plain":  # special reprs (Time, Quantity...) are opaque
            fields = graph.json_fields(msg, frozenset())
            if graph.is_object(msg):
                taken = {f[0] for f in fields}
                fields += [(j, "STR", msg.full_name) for j in ("apiVersion", "kind") if j not in taken]
            for json, ty, owner in fields:
                strategy, key = tags.get((owner, json), ("", ""))
                if strategy or key:
                    tagged += 1
                    entries.append(f"m({gps.rust_str(json)}, {ty}, {gps.rust_str(strategy)}, {gps.rust_str(key)})")
                else:
                    entries.append(f"f({gps.rust_str(json)}, {ty})")
        lines.append(f"    t({gps.rust_str(msg.full_name)}, &[{', '.join(entries)}]),")

    group_versions = dict(gps.EXTRA_GROUP_VERSIONS)
    for module, r in graph.resources:
        group_versions.setdefault(r["API_VERSION"], "k8s.io." + ".".join(module))
    gv_lines = [f"    ({gps.rust_str(gv)}, {gps.rust_str(pkg)})," for gv, pkg in sorted(group_versions.items())]

    body = "\n".join(lines)
    used = [name for name in ("BOOL", "BYTES", "F64", "I32", "I64", "MAP", "STR") if re.search(rf"\b{name}\b", body)]
    imports = ", ".join(["f", "m", "t", "Ty::List as L", "Ty::Struct as S", "Type"] + used)
    text = HEADER.format(
        pb=gps.PB_VERSION, oa=gps.OPENAPI_VERSION, release=release_note, types=len(lines), tagged=tagged,
        imports=imports,
    )
    text += f"pub(super) static GROUP_VERSIONS: [(&str, &str); {len(gv_lines)}] = [\n"
    text += "\n".join(gv_lines) + "\n];\n\n"
    text += "/// Every type, sorted by full name; `S(i)` indexes this array.\n"
    text += f"pub(super) static TYPES: [Type; {len(lines)}] = [\n" + body + "\n];\n"
    return text, tagged


HEADER = """\
// @generated by tools/gen-patch-strategy.py from k8s-pb {pb} and k8s-openapi {oa} (types,
// JSON names, inline structs) and tools/patch-strategies.txt (patchStrategy and
// patchMergeKey tags of the Go types, {release}). Do not edit by hand: rerun the script.
// {types} types, {tagged} tagged fields.

use super::types::{{{imports}}};

/// apiVersion -> the proto package holding that group version's types.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--registry", default=None, help="cargo registry src dir")
    ap.add_argument("--pb-version", default=gps.PB_VERSION)
    ap.add_argument("--openapi-version", default=gps.OPENAPI_VERSION)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--strategies", default=DEFAULT_STRATEGIES)
    ap.add_argument("--release", default=DEFAULT_RELEASE, help="the Go modules' tag, for the header")
    ap.add_argument("--scan-go", action="append", metavar="IMPORT_PATH=DIR",
                    help="rewrite the strategies list from Go sources, e.g. k8s.io/api=/tmp/k8s/api")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    registry = args.registry or os.path.expanduser("~/.cargo/registry/src")
    graph = Graph(registry, args.pb_version, args.openapi_version)

    if args.scan_go:
        entries = scan_go(args.scan_go)
        kept = [e for e in entries if e[0] in graph.by_name]
        write_strategies(args.strategies, kept, args.scan_go, args.release)
        print(f"{args.strategies}: {len(kept)} tagged fields ({len(entries) - len(kept)} in types "
              "k8s-pb does not carry, e.g. test types, dropped)", file=sys.stderr)

    tags = read_strategies(args.strategies)
    missing = check_tags(graph, tags)
    if missing:
        print(f"{len(missing)} tagged fields are not in the type graph:", file=sys.stderr)
        for line in missing:
            print(line, file=sys.stderr)

    release_note = "Kubernetes " + args.release
    for line in open(args.strategies, encoding="utf-8"):
        if m := re.search(r" sources at (v\S+) of", line):
            release_note = "Go modules " + m.group(1)
    text, tagged = render(graph, tags, release_note)
    if args.check:
        current = open(args.out, encoding="utf-8").read() if os.path.exists(args.out) else ""
        if current != text:
            sys.exit(f"{args.out} is stale; rerun tools/gen-patch-strategy.py")
    else:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    print(f"{len(graph.ordered)} types, {tagged} tagged fields, {len(tags)} tags read", file=sys.stderr)


if __name__ == "__main__":
    main()
