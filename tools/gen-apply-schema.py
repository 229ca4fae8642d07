#!/usr/bin/env python3
"""Generate crates/api/src/apply/schema.rs: the structural schema server-side apply needs.

Server-side apply (skiff_api::apply) walks objects by type: which fields a struct has,
which lists are atomic, sets or maps keyed by some fields, which maps and structs are
atomic. Kubernetes takes this from its OpenAPI (x-kubernetes-list-type,
x-kubernetes-list-map-keys, x-kubernetes-map-type, falling back to the strategic-merge
patch strategy for lists without a list type). Rather than vendoring that OpenAPI, this
script derives the same facts from crates already in the local cargo registry:

  * k8s-openapi (v1_33): every type, its fields and their Rust types, the JSON name of
    each field (the `"jsonName" => Field::Key_rust_name` arms of its Deserialize impl)
    and its merge strategy (the `DeepMerge` impl: `merge_strategies::list::map(..,
    &[|lhs, rhs| lhs.name == rhs.name], ..)`, `list::set`, `list::atomic`,
    `map::granular`, `map::atomic`). Resources (`impl crate::Resource`) give the kinds.
  * k8s-pb: its doc comments keep Kubernetes' Go markers (`+listType=map`,
    `+listMapKey=containerPort`, `+listMapKey=protocol`, `+mapType=atomic`,
    `+structType=atomic`). k8s-openapi's generator lets a patch merge key replace the
    list-map keys (Container.ports keyed by containerPort alone, where Kubernetes keys
    it by containerPort and protocol) and knows nothing of atomic structs (LabelSelector,
    which managedFields show as `f:selector: {}`), so a marker, where there is one,
    wins; otherwise k8s-openapi's strategy stands (which is what Kubernetes does too:
    the list type first, the patch strategy as fallback, atomic by default).

A third input, tools/apply-go-zero.txt (checked in), lists the fields present in the
JSON of a Go zero value (non-pointer structs, and fields without omitempty). Kubernetes
tracks a create as an update from such a zero object, so `f:spec` carries no `.`
while `f:labels` does; the list comes from Kubernetes' Go sources.

Rerun (stdlib only, no network; rustfmt formats the output when on PATH) from the
workspace root after bumping either crate:

    python3 tools/gen-apply-schema.py           # writes the schema file
    python3 tools/gen-apply-schema.py --check   # exit 1 if the file is stale

To refresh the zero-value list, check out the Go modules (e.g. k8s.io/api and
k8s.io/apimachinery of the release k8s-pb follows) and run

    python3 tools/gen-apply-schema.py --scan-go k8s.io/api=DIR --scan-go k8s.io/apimachinery=DIR

Options --registry, --openapi-version, --feature, --pb-version, --zero and --out override
the defaults below.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

OPENAPI_VERSION = "0.29.0"
FEATURE = "v1_33"
PB_VERSION = "0.9.0"
DEFAULT_OUT = "crates/api/src/apply/schema.rs"
DEFAULT_ZERO = "tools/apply-go-zero.txt"

OPENAPI_DEF_RE = re.compile(r"^// Generated from definition (\S+)$", re.M)
STRUCT_RE = re.compile(r"^pub struct (\w+) \{$")
NEWTYPE_RE = re.compile(r"^pub struct (\w+)\(pub (.+)\);$")
ENUM_RE = re.compile(r"^pub enum (\w+)")
FIELD_RE = re.compile(r"^    pub (\w+): (.+),$")
JSON_KEY_RE = re.compile(r'^\s*"([^"]+)" => Field::Key_(\w+),$', re.M)
RESOURCE_RE = re.compile(r"^impl crate::Resource for (\w+) \{$", re.M)
CONST_RE = re.compile(r'const (API_VERSION|GROUP|KIND|VERSION): &\'static str = "([^"]*)";')
MERGE_PLAIN_RE = re.compile(r"crate::DeepMerge::merge_from\(&mut self\.(\w+), other\.\w+\);")
MERGE_LIST_RE = re.compile(r"crate::merge_strategies::list::(atomic|set)\(&mut self\.(\w+), other\.\w+\);")
MERGE_MAP_RE = re.compile(r"crate::merge_strategies::map::(atomic|granular)\(&mut self\.(\w+), other\.\w+")
MERGE_KEYED_RE = re.compile(r"crate::merge_strategies::list::map\(\s*&mut self\.(\w+),\s*other\.\w+,\s*&\[(.*?)\],", re.S)
KEY_RE = re.compile(r"\|lhs, rhs\| lhs\.([\w.]+) == rhs\.[\w.]+")

PB_STRUCT_RE = re.compile(r"^pub struct (\w+) \{")
PB_FIELD_RE = re.compile(r"^    pub (?:r#)?(\w+):(.*)$")
PB_TYPE_RE = re.compile(r"(\w+)>*,?$")
PB_MARKER_RE = re.compile(r"^\s*///\s*\+(listType|listMapKey|mapType|structType|default)=(\S+)\s*$")

SCALARS = {
    "std::string::String": "Str",
    "crate::ByteString": "Str",
    "i32": "Int",
    "i64": "Int",
    "f64": "Num",
    "bool": "Bool",
}
VALUE = "crate::serde_json::Value"
# Enums k8s-openapi hand-writes: IntOrString is a scalar; the JSONSchemaPropsOr* unions
# are arbitrary JSON to SSA.
SCALAR_ENUMS = {"IntOrString"}

# Only GA kinds: beta and alpha versions would more than double the table for kinds
# skiff does not serve. Custom resources (and anything else) get the deduced schema.
PRERELEASE = re.compile(r"v\d+(alpha|beta)\d*$")


def norm(rust_name):
    """Field identity shared by k8s-openapi and k8s-pb: no keyword escapes or underscores."""
    return rust_name.removeprefix("r#").rstrip("_").replace("_", "").lower()


def parse_openapi(root):
    """{definition name: type info} and {module::Type: definition name}."""
    types, by_path = {}, {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*.rs"), recursive=True)):
        text = open(path, encoding="utf-8").read()
        head = OPENAPI_DEF_RE.search(text)
        if not head:
            continue
        name = head.group(1)
        module = os.path.relpath(os.path.dirname(path), root).replace(os.sep, "::")
        info = {"name": name, "module": module, "fields": [], "json": {}, "merge": {}, "resource": None}
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if m := STRUCT_RE.match(line):
                info["kind"], info["rust"] = "struct", m.group(1)
                for body in lines[i + 1 :]:
                    if body == "}":
                        break
                    if f := FIELD_RE.match(body):
                        info["fields"].append((f.group(1), f.group(2)))
                break
            if m := NEWTYPE_RE.match(line):
                info["kind"], info["rust"], info["inner"] = "newtype", m.group(1), m.group(2)
                break
            if m := ENUM_RE.match(line):
                info["kind"], info["rust"] = "enum", m.group(1)
                break
        else:
            continue
        for json, rust in JSON_KEY_RE.findall(text):
            info["json"][rust] = json
        for field in MERGE_PLAIN_RE.findall(text):
            info["merge"][field] = ("plain", ())
        for strategy, field in MERGE_LIST_RE.findall(text):
            info["merge"][field] = (strategy, ())
        for strategy, field in MERGE_MAP_RE.findall(text):
            info["merge"][field] = ("map-" + strategy, ())
        for field, keys in MERGE_KEYED_RE.findall(text):
            info["merge"][field] = ("map", tuple(KEY_RE.findall(keys)))
        if RESOURCE_RE.search(text):
            block = text[RESOURCE_RE.search(text).end() :].split("}", 1)[0]
            info["resource"] = dict(CONST_RE.findall(block))
        types[name] = info
        by_path[f"{module}::{info['rust']}"] = name
    return types, by_path


def parse_pb(root):
    """{(module, Type): {"struct": {marker: [values]}, "fields": {norm name: {marker: [values]}}}}."""
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "mod.rs"), recursive=True)):
        module = os.path.relpath(os.path.dirname(path), root).replace(os.sep, "::")
        doc, current, pending = [], None, None
        for line in open(path, encoding="utf-8"):
            line = line.rstrip("\n")
            stripped = line.strip()
            if pending is not None:
                current["types"][pending] = pb_type(stripped)
                pending = None
            if stripped.startswith("///"):
                doc.append(line)
                continue
            if m := PB_STRUCT_RE.match(line):
                current = {"struct": markers(doc), "fields": {}, "types": {}}
                out[(module, m.group(1))] = current
                doc = []
            elif current is not None and (m := PB_FIELD_RE.match(line)):
                name = norm(m.group(1))
                current["fields"][name] = markers(doc)
                if m.group(2).strip():
                    current["types"][name] = pb_type(m.group(2).strip())
                else:
                    pending = name
                doc = []
            elif line == "}":
                current, doc = None, []
            elif not stripped.startswith("#["):
                doc = []
    return out


def pb_type(text):
    m = PB_TYPE_RE.search(text)
    return m.group(1) if m else ""


def markers(doc):
    found = {}
    for line in doc:
        if m := PB_MARKER_RE.match(line):
            found.setdefault(m.group(1), []).append(m.group(2))
    return found


def strip(s, prefix):
    return s[len(prefix) : -1] if s.startswith(prefix) and s.endswith(">") else None


class Schema:
    def __init__(self, types, by_path, pb, zero):
        self.types, self.by_path, self.pb, self.zero = types, by_path, pb, zero
        self.order = []  # definition names, in index order
        self.index = {}
        self.notes = []

    def resolve(self, rust_type):
        """A Rust type -> ("scalar", kind) | ("deduced",) | ("struct", def) | ("list", elem) | ("map", elem)."""
        t = rust_type.strip()
        for wrapper in ("Option<", "std::boxed::Box<"):
            if (inner := strip(t, wrapper)) is not None:
                return self.resolve(inner)
        if (inner := strip(t, "std::vec::Vec<")) is not None:
            return ("list", self.resolve(inner))
        if (inner := strip(t, "std::collections::BTreeMap<std::string::String, ")) is not None:
            return ("map", self.resolve(inner))
        if t in SCALARS:
            return ("scalar", SCALARS[t])
        if t == VALUE:
            return ("deduced",)
        if t.startswith("crate::"):
            name = self.by_path.get(t.removeprefix("crate::"))
            if name is None:
                raise SystemExit(f"unknown type {t}")
            info = self.types[name]
            if info["kind"] == "struct":
                return ("struct", name)
            if info["kind"] == "newtype":
                return ("deduced",) if info["inner"] == VALUE else ("scalar", "Other")
            return ("scalar", "Other") if info["rust"] in SCALAR_ENUMS else ("deduced",)
        raise SystemExit(f"unhandled Rust type {t}")

    def visit(self, name):
        if name in self.index:
            return self.index[name]
        self.index[name] = len(self.order)
        self.order.append(name)
        info = self.types[name]
        for _, rust_type in info["fields"]:
            self.visit_ty(self.resolve(rust_type))
        return self.index[name]

    def visit_ty(self, ty):
        if ty[0] == "struct":
            self.visit(ty[1])
        elif ty[0] in ("list", "map"):
            self.visit_ty(ty[1])

    def pb_info(self, info):
        return self.pb.get((info["module"], info["rust"]), {"struct": {}, "fields": {}, "types": {}})

    def pb_marks(self, info, rust_field):
        """A field's markers; fields Go inlines from an embedded struct (EphemeralContainer's
        EphemeralContainerCommon) sit in that struct's message in k8s-pb."""
        pb = self.pb_info(info)
        name = norm(rust_field)
        if name in pb["fields"]:
            return pb["fields"][name]
        ours = {norm(r) for r, _ in info["fields"]}
        for field, type_name in pb["types"].items():
            embedded = self.pb.get((info["module"], type_name))
            if field not in ours and embedded and name in embedded["fields"]:
                return embedded["fields"][name]
        return {}

    def field_ty(self, info, rust_field, rust_type):
        """Rust source for a field's `Ty`, applying list/map strategies."""
        ty = self.resolve(rust_type)
        marks = self.pb_marks(info, rust_field)
        strategy, keys = info["merge"].get(rust_field, ("plain", ()))
        where = f"{info['name']}.{info['json'].get(rust_field, rust_field)}"
        if ty[0] == "list":
            list_type = marks.get("listType", [None])[0]
            if list_type == "map":
                json_keys = marks.get("listMapKey", [])
            elif list_type in ("set", "atomic"):
                json_keys = []
            else:
                list_type = {"map": "map", "set": "set"}.get(strategy, "atomic")
                json_keys = [self.json_key(ty[1], k, where) for k in keys]
                if list_type == "map" and None in json_keys:
                    self.notes.append(f"{where}: nested list-map key {keys}; treated as atomic")
                    list_type, json_keys = "atomic", []
            if list_type == "map" and not json_keys:
                self.notes.append(f"{where}: list-type map without keys; treated as atomic")
                list_type = "atomic"
            lt = {"atomic": "Atomic", "set": "Set"}.get(list_type) or "Keyed(&[{}])".format(
                ", ".join(self.key_src(ty[1], k) for k in json_keys)
            )
            return f"List({lt}, &{self.ty_src(ty[1])})"
        if ty[0] == "map":
            map_type = marks.get("mapType", [None])[0] or ("atomic" if strategy == "map-atomic" else "granular")
            return f"Map({'true' if map_type == 'atomic' else 'false'}, &{self.ty_src(ty[1])})"
        return self.ty_src(ty)

    def key_src(self, elem, json_key):
        """A list-map key and its default (`+default=` on the key field), which Kubernetes
        uses for items that omit the key (ports without `protocol` are TCP ports)."""
        default = None
        if elem[0] == "struct":
            info = self.types[elem[1]]
            rust = next((r for r, j in info["json"].items() if j == json_key), None)
            marks = self.pb_marks(info, rust or json_key)
            value = marks.get("default", [None])[0]
            if value is not None and not value.startswith("ref("):
                default = value
        return f"k({rust_str(json_key)}, {'None' if default is None else 'Some(' + rust_str(default) + ')'})"

    def json_key(self, elem, rust_key, where):
        if elem[0] != "struct" or "." in rust_key:
            return None
        json = self.types[elem[1]]["json"].get(rust_key)
        if json is None:
            self.notes.append(f"{where}: key {rust_key} has no JSON name")
        return json

    def ty_src(self, ty):
        kind = ty[0]
        if kind == "scalar":
            return f"Scalar({ty[1]})"
        if kind == "deduced":
            return "Deduced"
        if kind == "struct":
            return f"Struct({self.index[ty[1]]})"
        # A list or map nested directly in another (map of lists): no strategy of its own.
        inner = self.ty_src(ty[1])
        return f"List(Atomic, &{inner})" if kind == "list" else f"Map(false, &{inner})"

    def type_src(self, name):
        info = self.types[name]
        atomic = "atomic" in self.pb_info(info)["struct"].get("structType", [])
        fields = []
        if info["resource"]:
            fields.append('f("apiVersion", Scalar(Str), Absent)')
            fields.append('f("kind", Scalar(Str), Absent)')
        for rust_field, rust_type in info["fields"]:
            json = info["json"].get(rust_field)
            if json is None:
                raise SystemExit(f"{name}.{rust_field}: no JSON name")
            zero = self.zero.get((name, json), "Absent")
            fields.append(f"f({rust_str(json)}, {self.field_ty(info, rust_field, rust_type)}, {zero})")
        return f"    t({rust_str(name)}, {'true' if atomic else 'false'}, &[{', '.join(fields)}]),"


def rust_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_zero(path):
    zero = {}
    if not os.path.exists(path):
        print(f"warning: {path} missing; creates will be tracked from an empty object", file=sys.stderr)
        return zero
    for line in open(path, encoding="utf-8"):
        if line.strip() and not line.startswith("#"):
            name, json, kind = line.split()
            zero[(name, json)] = {"struct": "Object", "null": "Null", "zero": "Scalar0"}[kind]
    return zero


def generate(args):
    registry = args.registry
    openapi_root = os.path.join(registry, f"k8s-openapi-{args.openapi_version}", "src", args.feature)
    pb_root = os.path.join(registry, f"k8s-pb-{args.pb_version}", "src")
    for root in (openapi_root, pb_root):
        if not os.path.isdir(root):
            raise SystemExit(f"{root} not found: add the crate to a Cargo.toml and run `cargo fetch`")
    types, by_path = parse_openapi(openapi_root)
    schema = Schema(types, by_path, parse_pb(pb_root), read_zero(args.zero))

    kinds = []
    for name in sorted(types):
        r = types[name]["resource"]
        if not r or r["KIND"].endswith("List"):
            continue
        if PRERELEASE.search(r["VERSION"]) or types[name]["kind"] != "struct":
            continue
        kinds.append((r["GROUP"], r["VERSION"], r["KIND"], schema.visit(name)))
    kinds.sort()

    rows = [schema.type_src(name) for name in schema.order]
    header = (
        f"// @generated by tools/gen-apply-schema.py from k8s-openapi {args.openapi_version} ({args.feature}:\n"
        f"// types, JSON names, DeepMerge strategies), k8s-pb {args.pb_version} (Go markers: +listType,\n"
        f"// +listMapKey, +mapType, +structType) and {args.zero}. Do not edit by hand:\n"
        f"// rerun `python3 tools/gen-apply-schema.py` from the workspace root. {len(rows)} types,\n"
        f"// {len(kinds)} kinds.\n"
    )
    out = [header, "\n", "use super::types::{f, k, t, ListType::*, Scalar::*, Ty::*, TypeDef, Zero::*};\n\n"]
    out.append("/// Every type reachable from a kind; `Struct(i)` indexes this array.\n")
    out.append(f"pub(super) static TYPES: [TypeDef; {len(rows)}] = [\n")
    out.extend(row + "\n" for row in rows)
    out.append("];\n\n")
    out.append("/// (group, version, kind, index into TYPES), sorted.\n")
    out.append(f"pub(super) static KINDS: [(&str, &str, &str, u16); {len(kinds)}] = [\n")
    for g, v, k, i in kinds:
        out.append(f"    ({rust_str(g)}, {rust_str(v)}, {rust_str(k)}, {i}),\n")
    out.append("];\n")
    for note in schema.notes:
        print(f"note: {note}", file=sys.stderr)
    return rustfmt("".join(out))


def rustfmt(text):
    """Formats like the workspace (rustfmt.toml), so `rustfmt`/`cargo fmt` leave the file be."""
    if shutil.which("rustfmt") is None:
        print("warning: rustfmt not found; writing the schema unformatted", file=sys.stderr)
        return text
    config = "max_width=120,use_small_heuristics=Max"
    run = subprocess.run(
        ["rustfmt", "--edition", "2021", "--config", config], input=text, capture_output=True, text=True, check=False
    )
    if run.returncode != 0:
        raise SystemExit(f"rustfmt failed: {run.stderr}")
    return run.stdout


# --- Go zero values -------------------------------------------------------------------

GO_TYPE_RE = re.compile(r"^type (\w+) (.+)$")
GO_FIELD_RE = re.compile(r"^\t(?:(\w+)\s+)?(\S+)\s*`([^`]*)`")
GO_TAG_RE = re.compile(r'(\w+):"([^"]*)"')
GO_IMPORT_RE = re.compile(r'^\s*(?:(\w+)\s+)?"([^"]+)"$')
GO_BASIC = {"string", "bool", "int", "int32", "int64", "uint32", "uint64", "float32", "float64", "byte"}
# Structs Go marshals as JSON scalars (custom MarshalJSON): their zero value is a leaf.
GO_SCALAR_STRUCTS = {
    "k8s.io/apimachinery/pkg/apis/meta/v1.Time",
    "k8s.io/apimachinery/pkg/apis/meta/v1.MicroTime",
    "k8s.io/apimachinery/pkg/apis/meta/v1.Duration",
    "k8s.io/apimachinery/pkg/apis/meta/v1.FieldsV1",
    "k8s.io/apimachinery/pkg/api/resource.Quantity",
    "k8s.io/apimachinery/pkg/util/intstr.IntOrString",
    "k8s.io/apimachinery/pkg/runtime.RawExtension",
}


def definition_name(go_package, type_name):
    """k8s.io/api/apps/v1 + Deployment -> io.k8s.api.apps.v1.Deployment."""
    host, _, rest = go_package.partition("/")
    return ".".join(list(reversed(host.split("."))) + rest.split("/") + [type_name])


def scan_go(specs):
    """{(package, Type): ("struct", [(json, go type, options, imports)]) | ("other", go type)}."""
    decls = {}
    for spec in specs:
        import_path, _, root = spec.partition("=")
        for path in sorted(glob.glob(os.path.join(root, "**", "*.go"), recursive=True)):
            base = os.path.basename(path)
            if base.endswith("_test.go") or base.startswith("zz_generated") or base.endswith(".pb.go"):
                continue
            rel = os.path.relpath(os.path.dirname(path), root)
            package = import_path if rel == "." else f"{import_path}/{rel.replace(os.sep, '/')}"
            imports, in_imports, struct = {}, False, None
            for line in open(path, encoding="utf-8"):
                line = line.rstrip("\n")
                if line.startswith("import ("):
                    in_imports = True
                elif in_imports and line == ")":
                    in_imports = False
                elif in_imports or line.startswith("import "):
                    if m := GO_IMPORT_RE.match(line.removeprefix("import ")):
                        imports[m.group(1) or m.group(2).rsplit("/", 1)[-1]] = m.group(2)
                elif struct is not None:
                    if line == "}":
                        struct = None
                    elif m := GO_FIELD_RE.match(line):
                        struct.append((m.group(1), m.group(2), dict(GO_TAG_RE.findall(m.group(3))), imports))
                elif m := GO_TYPE_RE.match(line):
                    if m.group(2) == "struct {":
                        struct = []
                        decls[(package, m.group(1))] = ("struct", struct, package)
                    elif not m.group(2).startswith("="):
                        decls[(package, m.group(1))] = ("other", m.group(2), package)
    return decls


def go_ref(go_type, package, imports):
    """A named Go type -> (package, Type), or None for builtins and composites."""
    if go_type in GO_BASIC or go_type.startswith(("*", "[]", "map[")) or go_type in ("any", "interface{}"):
        return None
    if "." in go_type:
        alias, _, name = go_type.partition(".")
        return (imports.get(alias, alias), name)
    return (package, go_type)


def zero_fields(decls):
    """{(definition, json): "struct" | "null" | "zero"} for fields a Go zero value's JSON has."""
    out = {}

    def kind_of(go_type, package, imports):
        ref = go_ref(go_type, package, imports)
        if ref is None:
            if go_type.startswith(("*", "[]", "map[")) or go_type in ("any", "interface{}"):
                return "null"
            return "zero"
        decl = decls.get(ref)
        if decl is None or f"{ref[0]}.{ref[1]}" in GO_SCALAR_STRUCTS:
            return "null" if decl is None or decl[0] == "struct" else "zero"
        if decl[0] == "struct":
            return "struct"
        underlying = decl[1]
        return "null" if underlying.startswith(("[]", "map[", "*")) else "zero"

    def fields_of(key, seen=()):
        """Flattened (json, go type, options, package, imports) of a struct, inlining embeds."""
        _, fields, package = decls[key]
        for name, go_type, tags, imports in fields:
            json, _, options = tags.get("json", "").partition(",")
            options = set(options.split(",")) if options else set()
            if json == "-":
                continue
            if name is None and (json == "" or "inline" in options):
                ref = go_ref(go_type.lstrip("*"), package, imports)
                if ref in decls and decls[ref][0] == "struct" and ref not in seen:
                    yield from fields_of(ref, seen + (key,))
                continue
            if not json:
                json = name or go_type.rsplit(".", 1)[-1]
            yield json, go_type, options, package, imports

    for key, decl in decls.items():
        if decl[0] != "struct":
            continue
        name = definition_name(*key)
        for json, go_type, options, package, imports in fields_of(key):
            kind = kind_of(go_type, package, imports)
            if "omitzero" in options or (kind != "struct" and "omitempty" in options):
                continue
            out[(name, json)] = kind
    return out


ZERO_HEADER = """\
# Fields present in the JSON of a Go zero value of their struct: non-pointer structs
# ("struct", always written, expanded recursively), and fields without omitempty ("null"
# for pointers, slices and maps, "zero" for scalars). One line per field: definition,
# JSON name, kind. Generated by tools/gen-apply-schema.py --scan-go from the Go sources of
# {sources}; read by the same script when it writes the apply schema.
"""


def write_zero(path, specs):
    zero = zero_fields(scan_go(specs))
    with open(path, "w", encoding="utf-8") as f:
        f.write(ZERO_HEADER.format(sources=" ".join(sorted(s.partition("=")[0] for s in specs))))
        for (name, json), kind in sorted(zero.items()):
            f.write(f"{name} {json} {kind}\n")
    print(f"{path}: {len(zero)} fields", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_registry = next(iter(sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/")))), "")
    parser.add_argument("--registry", default=os.environ.get("CARGO_REGISTRY_SRC", default_registry))
    parser.add_argument("--openapi-version", default=OPENAPI_VERSION)
    parser.add_argument("--feature", default=FEATURE)
    parser.add_argument("--pb-version", default=PB_VERSION)
    parser.add_argument("--zero", default=DEFAULT_ZERO)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the output is stale")
    parser.add_argument("--scan-go", action="append", metavar="IMPORT=DIR", help="refresh --zero from Go sources")
    args = parser.parse_args()

    if args.scan_go:
        write_zero(args.zero, args.scan_go)
    text = generate(args)
    if args.check:
        current = open(args.out, encoding="utf-8").read() if os.path.exists(args.out) else ""
        if current != text:
            print(f"{args.out} is stale: rerun tools/gen-apply-schema.py", file=sys.stderr)
            sys.exit(1)
        return
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
