#!/usr/bin/env python3
"""Generate crates/api/src/protobuf/schema.rs: the Kubernetes protobuf schema as Rust tables.

kubectl's typed clients send request bodies as `application/vnd.kubernetes.protobuf`.
The transcoder in `skiff_api::protobuf` needs, for every message, each field's tag
number, its JSON name and its wire kind. Rather than vendoring Kubernetes' .proto
files, this script derives that table from two crates already in the local cargo
registry:

  * k8s-pb (prost-generated structs): message names, tag numbers and wire types,
    read from `#[prost(...)]` attributes, plus `impl crate::Resource` blocks that
    tell which proto package serves which apiVersion.
  * k8s-openapi (hand-rolled serde impls): the JSON name of each field, read from the
    `"jsonName" => Field::Key_rust_name` arms of each type's Deserialize impl, joined
    on (type, normalized Rust field name). The workspace's feature version (v1_33)
    is consulted first, then newer versions for fields it does not know yet; alpha
    and beta types k8s-openapi lacks borrow names from the same type in a sibling
    version. Structs Go embeds with `json:",inline"` (Volume.VolumeSource...) are
    recognized because k8s-openapi flattens them too. When nothing knows a field,
    its doc comment's first word (which keeps acronyms) or a camelCase of the
    snake_case name is used; multi-word guesses are counted and, with --verbose,
    listed.

A third input, tools/protobuf-kept-zero.txt (checked in), lists the scalar fields
whose zero value JSON keeps: Go's protobuf marshaler writes every non-pointer field,
even when zero, so a zero on the wire only counts for Go pointers (`replicas: 0`) and
fields without `omitempty`. The list comes from Kubernetes' Go struct tags.

Rerun (stdlib only, no network) from the workspace root after bumping either crate:

    python3 tools/gen-protobuf-schema.py            # writes the schema file
    python3 tools/gen-protobuf-schema.py --verbose  # also lists guessed JSON names
    python3 tools/gen-protobuf-schema.py --check    # exit 1 if the file is stale

To refresh the kept-zero list (say, for a k8s-pb built from a newer Kubernetes), check
out the matching release of the Go modules, e.g. k8s.io/api v0.35.x, and run

    python3 tools/gen-protobuf-schema.py \
        --scan-go k8s.io/api=DIR --scan-go k8s.io/apimachinery=DIR \
        --scan-go k8s.io/apiextensions-apiserver=DIR --scan-go k8s.io/kube-aggregator=DIR

which also cross-checks the crate-derived JSON names and inlined structs against Go's
struct tags and prints any disagreement.

Options --registry, --pb-version, --openapi-version, --kept-zero and --out override the
defaults below. The cargo registry must already hold both crates (add them to any
Cargo.toml and run `cargo fetch`).
"""

import argparse
import glob
import os
import re
import sys

PB_VERSION = "0.9.0"
OPENAPI_VERSION = "0.29.0"
# The k8s-openapi feature the workspace builds with comes first; later versions only
# fill in fields added after it (k8s-pb may track a newer Kubernetes release).
OPENAPI_FEATURES = ["v1_33", "v1_34", "v1_35", "v1_36", "v1_37"]
DEFAULT_OUT = "crates/api/src/protobuf/schema.rs"

# k8s-pb modules that are not real API groups.
SKIP_MODULES = {("apimachinery", "pkg", "apis", "testapigroup")}

# Group versions with no resource of their own in k8s-pb, so no `impl Resource`
# names them; their kinds (DeleteOptions, Status, ...) still arrive on the wire.
EXTRA_GROUP_VERSIONS = {
    "meta.k8s.io/v1": "k8s.io.apimachinery.pkg.apis.meta.v1",
    "meta.k8s.io/v1beta1": "k8s.io.apimachinery.pkg.apis.meta.v1beta1",
}

META = "k8s.io.apimachinery.pkg.apis.meta.v1"
APIEXT = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions"
# Messages whose JSON form is not an object of their fields (custom Go JSON
# marshalers). Slice wrappers marked `+protobuf.nullable=true` become `Items`.
REPRS = {
    META + ".Time": "Time",
    META + ".MicroTime": "MicroTime",
    META + ".Duration": "Duration",
    META + ".FieldsV1": "RawJson",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawJson",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
}
for _v in ("v1", "v1beta1"):
    REPRS[f"{APIEXT}.{_v}.JSON"] = "RawJson"
    REPRS[f"{APIEXT}.{_v}.JSONSchemaPropsOrBool"] = "SchemaOrBool"
    REPRS[f"{APIEXT}.{_v}.JSONSchemaPropsOrArray"] = "SchemaOrArray"
    REPRS[f"{APIEXT}.{_v}.JSONSchemaPropsOrStringArray"] = "SchemaOrStringArray"

# Go's protobuf marshaler writes every non-pointer scalar, even when zero, while Go's
# JSON omits zero values of `omitempty` fields. So a zero on the wire means "absent"
# unless the Go field is a pointer (`replicas: 0`, `storageClassName: ""`) or has no
# omitempty. This list (message, tag) of such fields is derived from Kubernetes' Go
# struct tags by `--scan-go` (see the top of this file) and checked in, so ordinary
# reruns need only the cargo registry.
DEFAULT_KEPT_ZERO = "tools/protobuf-kept-zero.txt"

# k8s-openapi renames a few fields beyond the r#/trailing-underscore keyword escapes.
OPENAPI_RUST_ALIASES = {"ref": "refpath"}

SCALARS = {
    "string": "Str",
    "bytes": "Bytes",
    "bool": "Bool",
    "int32": "Int32",
    "int64": "Int64",
    "double": "Double",
}
MAP_VALUES = {"string": "MapStr", "bytes": "MapBytes"}

STRUCT_RE = re.compile(r"^pub struct (\w+) \{(\})?$")
PROST_RE = re.compile(r"^\s*#\[prost\((.*)\)\]$")
FIELD_RE = re.compile(r"^\s*pub (?:r#)?(\w+): (.+),$")
RESOURCE_RE = re.compile(r"^impl crate::Resource for (\w+) \{$")
CONST_RE = re.compile(r'^\s*const (API_VERSION|KIND): &\'static str = "([^"]*)";$')
OPENAPI_DEF_RE = re.compile(r"^// Generated from definition (\S+)$")
OPENAPI_KEY_RE = re.compile(r'^\s*"([^"]+)" => Field::Key_(\w+),$')
STD_WRAPPERS = re.compile(
    r"::core::option::Option<|::prost::alloc::vec::Vec<|::prost::alloc::boxed::Box<"
    r"|::prost::alloc::collections::BTreeMap<::prost::alloc::string::String, |>"
)


def norm(rust_name):
    """Field identity shared by both crates: no keyword escapes, no underscores."""
    name = rust_name.removeprefix("r#").rstrip("_").replace("_", "").lower()
    return OPENAPI_RUST_ALIASES.get(name, name)


def doc_name(msg):
    """The struct's doc comment usually opens with the Go type name (`HTTPIngressPath
    associates...`), which keeps the acronyms prost's UpperCamelCase lost."""
    word = msg.doc[0].removeprefix("///").strip().split(" ")[0] if msg.doc else ""
    return word if word.lower() == msg.rust_name.lower() else msg.rust_name


def camel(snake):
    head, *rest = snake.removeprefix("r#").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def guess_json(rust_name, doc_word):
    """A JSON name k8s-openapi does not know. Kubernetes doc comments usually open
    with the field's name, which keeps acronyms (`insecureSkipTLSVerifyBackend`) that
    prost's snake_case lost; otherwise camelCase the snake_case name."""
    word = doc_word.strip("`*:,.")
    if word and word.isalnum() and norm(word) == norm(rust_name):
        upper = len(word) - len(word.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        if upper == len(word):
            return word.lower()
        cut = max(upper - 1, 1)  # TLSConfig -> tlsConfig, Name -> name
        return word[:cut].lower() + word[cut:]
    return camel(rust_name)


class PbMessage:
    def __init__(self, module, rust_name, doc):
        self.module = module  # tuple of k8s-pb module path components
        self.rust_name = rust_name
        self.doc = doc
        self.fields = []  # (tag, rust_name, attr, rust_type)
        self.field_docs = {}  # tag -> first word of the field's doc comment
        self.name = rust_name  # the proto message name, fixed up later

    @property
    def package(self):
        return "k8s.io." + ".".join(self.module)

    @property
    def full_name(self):
        return f"{self.package}.{self.name}"


def join_wrapped_fields(lines):
    """rustfmt wraps long field declarations (`pub data:\n BTreeMap<\n String,\n ...>,`)
    over several lines; rejoin them so each field declaration is one line."""
    pending = None
    for line in lines:
        if pending is None and not (line.startswith("    pub ") and not line.endswith(",")):
            yield line
            continue
        pending = line.rstrip() if pending is None else f"{pending} {line.strip()}"
        if pending.endswith(",") and pending.count("<") == pending.count(">"):
            yield re.sub(r",?\s*>", ">", re.sub(r"<\s+", "<", pending))
            pending = None


def parse_pb_file(path, module, messages, resources):
    lines = open(path, encoding="utf-8").read().splitlines()
    doc, current, attr, resource = [], None, None, None
    for line in join_wrapped_fields(lines):
        if current is None:
            if line.startswith("///"):
                doc.append(line)
            elif m := STRUCT_RE.match(line):
                current = PbMessage(module, m.group(1), doc)
                messages[(module, current.rust_name)] = current
                if m.group(2):  # an empty message: `pub struct Name {}`
                    current, doc = None, []
            elif m := RESOURCE_RE.match(line):
                resource = {"rust": m.group(1)}
            elif resource is not None and (m := CONST_RE.match(line)):
                resource[m.group(1)] = m.group(2)
                if "API_VERSION" in resource and "KIND" in resource:
                    resources.append((module, resource))
                    resource = None
            elif not line.startswith("#["):
                doc = []
            continue
        if line == "}":
            current, doc = None, []
        elif line.lstrip().startswith("///"):
            doc.append(line.lstrip()[3:].strip())
        elif m := PROST_RE.match(line):
            attr = m.group(1)
        elif attr and (m := FIELD_RE.match(line)):
            tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
            current.fields.append((tag, m.group(1), attr, m.group(2)))
            current.field_docs[tag] = doc[0].split(" ")[0] if doc else ""
            attr, doc = None, []


def load_pb(root):
    messages, resources = {}, []
    for path in sorted(glob.glob(os.path.join(root, "**", "mod.rs"), recursive=True)):
        module = tuple(os.path.relpath(os.path.dirname(path), root).split(os.sep))
        if module == (".",) or any(module[: len(s)] == s for s in SKIP_MODULES):
            continue
        parse_pb_file(path, module, messages, resources)
    return messages, resources


def load_openapi(root):
    """{(package, lowercase type name): (type name, {norm(rust field): json name})}."""
    types = {}
    for feature in OPENAPI_FEATURES:
        base = os.path.join(root, feature)
        for path in sorted(glob.glob(os.path.join(base, "**", "*.rs"), recursive=True)):
            lines = open(path, encoding="utf-8").read().splitlines()
            m = OPENAPI_DEF_RE.match(lines[0]) if lines else None
            if not m:
                continue
            definition = m.group(1).removeprefix("io.k8s.")
            package, _, name = definition.rpartition(".")
            package = "k8s.io." + package.replace("-", "_")
            fields = {}
            for line in lines:
                if k := OPENAPI_KEY_RE.match(line):
                    fields.setdefault(norm(k.group(2)), k.group(1))
            known = types.setdefault((package, name.lower()), (name, {}))
            for key, json in fields.items():
                known[1].setdefault(key, json)
    return types


def resolve(module, rust_type):
    """The (module, struct) a prost field type names, relative to `module`."""
    path = STD_WRAPPERS.sub("", rust_type).strip().split("::")
    ups = 0
    while path and path[0] == "super":
        path, ups = path[1:], ups + 1
    base = module[: len(module) - ups] if ups else module
    return tuple(base) + tuple(path[:-1]), path[-1]


def field_kind(msg, attr, rust_type, index_of):
    ptype = attr.split(",")[0].strip()
    if ptype.startswith("btree_map"):
        value = re.search(r'btree_map = "string, (\w+)"', attr).group(1)
        if value in MAP_VALUES:
            return MAP_VALUES[value]
        value_type = rust_type.split(",", 1)[1]
        return f"MapMsg({index_of[resolve(msg.module, value_type)]})"
    if ptype.startswith("bytes"):
        return "Bytes"
    if ptype == "message":
        return f"Msg({index_of[resolve(msg.module, rust_type)]})"
    return SCALARS[ptype]


def openapi_fields(openapi, msg):
    """JSON names k8s-openapi gives msg's fields, or None if it has no such type.

    Alpha and beta versions are missing from k8s-openapi, so the same type in a
    sibling version of its group (v1 first) fills in for them."""
    group, _, _ = msg.package.rpartition(".")
    lname = msg.name.lower()
    siblings = sorted(
        (pkg for pkg, n in openapi if n == lname and pkg.rpartition(".")[0] == group),
        key=lambda pkg: (pkg != msg.package, not pkg.endswith(".v1"), pkg),
    )
    if not siblings:
        return None
    table = {}
    for pkg in siblings:
        for key, json in openapi[(pkg, lname)][1].items():
            table.setdefault(key, json)
    return table


def json_names(ordered, by_key, openapi):
    """Each field's JSON name, which message fields Go inlines, and the guessed names.

    Go embeds some structs with `json:",inline"` (Volume.VolumeSource, Probe.ProbeHandler,
    ConfigMapKeySelector.LocalObjectReference...): protobuf keeps a nested message, JSON
    flattens its fields into the parent. k8s-openapi flattens them too, so an embedded
    message field is one k8s-openapi lacks while it has all of the child's fields."""
    tables = {m.full_name: openapi_fields(openapi, m) for m in ordered}

    def child_of(msg, attr, rust_type):
        if not attr.startswith("message") or " repeated" in attr:
            return None
        return by_key[resolve(msg.module, rust_type)]

    inline, parents = set(), {}  # parents: inlined child -> a parent's table

    def flat_keys(msg):
        """The normalized names msg contributes to JSON, with its inline children expanded."""
        keys = set()
        for tag, rust_name, attr, rust_type in msg.fields:
            if (msg.full_name, tag) in inline:
                keys |= flat_keys(child_of(msg, attr, rust_type))
            else:
                keys.add(norm(rust_name))
        return keys

    changed = True
    while changed:  # embedded structs nest (NamedRuleWithOperations > RuleWithOperations > Rule)
        changed = False
        for msg in ordered:
            table = tables[msg.full_name]
            for tag, rust_name, attr, rust_type in msg.fields:
                child = child_of(msg, attr, rust_type)
                if table is None or child is None or (msg.full_name, tag) in inline:
                    continue
                if norm(rust_name) not in table and child.fields and flat_keys(child) <= table.keys():
                    inline.add((msg.full_name, tag))
                    parents.setdefault(child.full_name, table)
                    changed = True
    # Types k8s-openapi lacks entirely: a field named after a type embedded elsewhere.
    inlined_types = {name.rpartition(".")[2] for name in parents}
    for msg in ordered:
        if tables[msg.full_name] is not None:
            continue
        for tag, rust_name, attr, rust_type in msg.fields:
            child = child_of(msg, attr, rust_type)
            if child and child.name in inlined_types and norm(rust_name) == child.rust_name.lower():
                inline.add((msg.full_name, tag))

    names, guessed = {}, []
    for msg in ordered:
        # An embedded type k8s-openapi only knows flattened into its parent.
        table = tables[msg.full_name] or parents.get(msg.full_name) or {}
        for tag, rust_name, _, _ in msg.fields:
            json = table.get(norm(rust_name))
            if json is None:
                json = guess_json(rust_name, msg.field_docs.get(tag, ""))
                if (msg.full_name, tag) not in inline and "_" in rust_name:
                    # One-word names cannot be mis-cased; only multi-word guesses are risky.
                    guessed.append(f"{msg.full_name}.{json}")
            names[(msg.full_name, tag)] = json
    return names, inline, guessed


GO_STRUCT_RE = re.compile(r"^type (\w+) struct \{$")
GO_FIELD_RE = re.compile(r"^\t(?:(\w+)\s+)?(\S+)\s+`([^`]*)`")
GO_TAG_RE = re.compile(r'(\w+):"([^"]*)"')


def scan_go(specs):
    """{(proto message, tag): (json name, options, Go type)} from Go struct tags."""
    fields = {}
    for spec in specs:
        import_path, _, root = spec.partition("=")
        for path in sorted(glob.glob(os.path.join(root, "**", "*.go"), recursive=True)):
            if path.endswith("_test.go") or os.path.basename(path).startswith("zz_generated"):
                continue
            rel = os.path.relpath(os.path.dirname(path), root)
            package = ".".join([import_path.replace("/", ".").replace("-", "_")] + ([] if rel == "." else rel.split(os.sep)))
            struct = None
            for line in open(path, encoding="utf-8"):
                line = line.rstrip("\n")
                if m := GO_STRUCT_RE.match(line):
                    struct = m.group(1)
                elif line == "}":
                    struct = None
                elif struct and (m := GO_FIELD_RE.match(line)):
                    tags = dict(GO_TAG_RE.findall(m.group(3)))
                    if "protobuf" not in tags or "json" not in tags:
                        continue
                    tag = int(tags["protobuf"].split(",")[1])
                    json, _, options = tags["json"].partition(",")
                    fields[(f"{package}.{struct}", tag)] = (json, options.split(","), m.group(2))
    return fields


def write_kept_zero(path, go_fields, ordered, specs):
    # Only singular scalars: messages and lists show up in JSON whenever they are sent.
    scalar = {
        (m.full_name, tag)
        for m in ordered
        for tag, _, attr, _ in m.fields
        if attr.split(",")[0].split(" ")[0] in SCALARS and " repeated" not in attr
    }
    kept = sorted(
        (message, tag, json)
        for (message, tag), (json, options, go_type) in go_fields.items()
        if (message, tag) in scalar
        and json not in ("", "-")
        and (go_type.startswith("*") or not {"omitempty", "omitzero"} & set(options))
    )
    known = {m.full_name for m in ordered}
    with open(path, "w", encoding="utf-8") as f:
        f.write(KEPT_ZERO_HEADER.format(sources=" ".join(sorted(s.partition("=")[0] for s in specs))))
        for message, tag, json in kept:
            f.write(f"{message} {tag} {json}\n")
    covered = {message for message, _ in go_fields}
    missing = sorted(known - covered)
    print(f"{path}: {len(kept)} fields; {len(missing)} messages not in the Go sources", file=sys.stderr)


def report_disagreements(go_fields, ordered, names, inline):
    """Cross-checks the crate-derived JSON names and inlining against Go's struct tags."""
    bad = []
    for msg in ordered:
        for tag, *_ in msg.fields:
            go = go_fields.get((msg.full_name, tag))
            if go is None:
                continue
            ours = "" if (msg.full_name, tag) in inline else names[(msg.full_name, tag)]
            if go[0] != ours:
                bad.append(f"  {msg.full_name} {tag}: schema {ours!r}, Go {go[0]!r}")
    print(f"{len(bad)} JSON names disagree with Go's struct tags", file=sys.stderr)
    for line in bad:
        print(line, file=sys.stderr)


def read_kept_zero(path):
    kept = set()
    if not os.path.exists(path):
        print(f"warning: {path} missing; every zero scalar will be dropped", file=sys.stderr)
        return kept
    for line in open(path, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            message, tag, _ = line.split()
            kept.add((message, int(tag)))
    return kept


KEPT_ZERO_HEADER = """\
# Scalar fields whose zero value JSON keeps: Go pointers and fields without omitempty.
# One line per field: proto message, protobuf tag, JSON name. Generated by
# tools/gen-protobuf-schema.py --scan-go from the Go sources of {sources}
# (release 1.35, as k8s-pb 0.9); read by the same script when it writes the protobuf schema.
"""


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def name_messages(messages, resources, openapi):
    """Proto message names: prost re-cased them (JSONSchemaProps -> JsonSchemaProps), so
    take the original spelling from k8s-openapi, the resource's KIND or the doc comment."""
    kinds = {(module, r["rust"]): r["KIND"] for module, r in resources}
    spelled = {(pkg.rpartition(".")[0], lname): known[0] for (pkg, lname), known in openapi.items()}
    for key, msg in messages.items():
        group = msg.package.rpartition(".")[0]
        msg.name = spelled.get((group, msg.rust_name.lower())) or kinds.get(key) or doc_name(msg)


def render_message(msg, names, inline, kept_zero, index_of):
    repr_ = REPRS.get(msg.full_name, "Plain")
    if repr_ == "Plain" and "+protobuf.nullable=true" in "\n".join(msg.doc):
        repr_ = "Items"
    fields = []
    for tag, _, attr, rust_type in sorted(msg.fields):
        kind = field_kind(msg, attr, rust_type, index_of)
        if (msg.full_name, tag) in inline:
            fields.append(f"inline({tag}, {kind})")
            continue
        if " repeated" in attr:
            ctor = "rep"
        elif kind in SCALARS.values() and (msg.full_name, tag) in kept_zero:
            ctor = "kept"
        else:
            ctor = "opt"
        fields.append(f"{ctor}({tag}, {rust_str(names[(msg.full_name, tag)])}, {kind})")
    return f"    msg({rust_str(msg.full_name)}, {repr_}, &[{', '.join(fields)}]),", len(fields)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--registry", default=None, help="cargo registry src dir")
    ap.add_argument("--pb-version", default=PB_VERSION)
    ap.add_argument("--openapi-version", default=OPENAPI_VERSION)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--kept-zero", default=DEFAULT_KEPT_ZERO)
    ap.add_argument(
        "--scan-go",
        action="append",
        metavar="IMPORT_PATH=DIR",
        help="rewrite the kept-zero list from Go sources, e.g. k8s.io/api=/tmp/api",
    )
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    registry = args.registry or os.path.expanduser("~/.cargo/registry/src")
    pb_roots = glob.glob(os.path.join(registry, "*", f"k8s-pb-{args.pb_version}", "src"))
    oa_roots = glob.glob(os.path.join(registry, "*", f"k8s-openapi-{args.openapi_version}", "src"))
    if not pb_roots or not oa_roots:
        sys.exit(f"k8s-pb {args.pb_version} or k8s-openapi {args.openapi_version} not in {registry}")
    messages, resources = load_pb(pb_roots[0])
    openapi = load_openapi(oa_roots[0])
    name_messages(messages, resources, openapi)

    ordered = sorted(messages.values(), key=lambda m: m.full_name)
    index_of = {(m.module, m.rust_name): i for i, m in enumerate(ordered)}
    by_key = {(m.module, m.rust_name): m for m in ordered}
    names, inline, guessed = json_names(ordered, by_key, openapi)
    if args.scan_go:
        go_fields = scan_go(args.scan_go)
        write_kept_zero(args.kept_zero, go_fields, ordered, args.scan_go)
        report_disagreements(go_fields, ordered, names, inline)
    kept_zero = read_kept_zero(args.kept_zero)

    rendered = [render_message(m, names, inline, kept_zero, index_of) for m in ordered]
    total_fields = sum(count for _, count in rendered)
    guessed = [g for g in guessed if REPRS.get(g.rpartition(".")[0], "Plain") == "Plain"]

    group_versions = dict(EXTRA_GROUP_VERSIONS)
    for module, r in resources:
        group_versions.setdefault(r["API_VERSION"], "k8s.io." + ".".join(module))
    gv_lines = [f"    ({rust_str(gv)}, {rust_str(pkg)})," for gv, pkg in sorted(group_versions.items())]

    text = HEADER.format(
        pb=args.pb_version,
        oa=args.openapi_version,
        features=f"{OPENAPI_FEATURES[0]}..{OPENAPI_FEATURES[-1]}",
        messages=len(ordered),
        fields=total_fields,
        guessed=len(guessed),
    )
    text += f"pub(super) static GROUP_VERSIONS: [(&str, &str); {len(gv_lines)}] = [\n"
    text += "\n".join(gv_lines) + "\n];\n\n"
    text += "/// Every message, sorted by full name; `Msg(i)` and `MapMsg(i)` index this array.\n"
    text += f"pub(super) static MESSAGES: [Message; {len(ordered)}] = [\n"
    text += "\n".join(line for line, _ in rendered) + "\n];\n"

    if args.check:
        current = open(args.out, encoding="utf-8").read() if os.path.exists(args.out) else ""
        if current != text:
            sys.exit(f"{args.out} is stale; rerun tools/gen-protobuf-schema.py")
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    print(
        f"{len(ordered)} messages, {total_fields} fields, {len(group_versions)} group versions, "
        f"{len(inline)} inline structs, {len(kept_zero)} kept-zero fields; "
        f"{len(guessed)} multi-word JSON names guessed (not in k8s-openapi)",
        file=sys.stderr,
    )
    if args.verbose:
        for name in guessed:
            print(f"  guessed: {name}", file=sys.stderr)


HEADER = """\
// @generated by tools/gen-protobuf-schema.py from k8s-pb {pb} (messages, tags, wire
// types), k8s-openapi {oa} (JSON names; {features}) and tools/protobuf-kept-zero.txt.
// Do not edit by hand: rerun the script. {messages} messages, {fields} fields; {guessed}
// multi-word JSON names that k8s-openapi lacks were guessed.

use super::schema_types::{{inline, kept, msg, opt, rep, Kind::*, Message, Repr::*}};

/// apiVersion -> the proto package holding that group version's kinds.
"""

if __name__ == "__main__":
    main()
