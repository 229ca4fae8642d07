//! Which patch strategy applies where: the public face of the generated type table.

use super::types::{Ty, Type};

/// The patch metadata of one kind (or of a value inside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schema(pub(super) Root);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Root {
    Typed(Ty),
    /// A kind the table does not know: a custom resource. Kubernetes has no Go struct
    /// tags for those and refuses strategic merge patch with 415.
    CustomResource,
}

/// The schema of a kind, e.g. `schema_for("apps", "v1", "Deployment")`. Covers every
/// kind of every built-in group version (including subresource kinds such as
/// autoscaling/v1 Scale and policy/v1 Eviction); anything else is taken for a custom
/// resource (`is_custom_resource()`), which `strategic_merge` answers with 415.
pub fn schema_for(group: &str, version: &str, kind: &str) -> Schema {
    let api_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    match Type::for_kind(&api_version, kind) {
        Some(index) => Schema(Root::Typed(Ty::Struct(index))),
        None => Schema(Root::CustomResource),
    }
}

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    /// `patchStrategy:"merge"` with `patchMergeKey`: items are matched by this key.
    MergeByKey(&'static str),
    /// `patchStrategy:"merge"` on a list of scalars: a set union (finalizers).
    MergeScalars,
    /// No strategy: the patch replaces the whole list.
    Atomic,
}

/// The patch metadata of one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldMeta {
    /// The `patchStrategy` tag as written (`merge`, `merge,retainKeys`, `replace`...).
    pub strategy: &'static str,
    /// The `patchMergeKey` tag, empty if none.
    pub merge_key: &'static str,
    /// For lists, how they merge; None for other fields.
    pub list: Option<ListStrategy>,
    /// The schema of the field's value (of its items, for a list).
    pub schema: Schema,
}

impl FieldMeta {
    /// `patchStrategy` includes `retainKeys` (kubectl sends `$retainKeys` for it).
    pub fn retains_keys(&self) -> bool {
        self.strategy.split(',').any(|s| s == "retainKeys")
    }
}

impl Schema {
    /// JSON-merge-like semantics without a type: maps merge, lists are replaced,
    /// directives still apply. Kubernetes has no such mode for the API server; it
    /// is here for callers that want strategic-merge directives on untyped data.
    pub fn untyped() -> Schema {
        Schema(Root::Typed(Ty::Untyped))
    }

    /// A custom resource: strategic merge patch is refused with 415.
    pub fn is_custom_resource(&self) -> bool {
        self.0 == Root::CustomResource
    }

    /// The metadata of the field at `path`, a list of JSON field names from this
    /// schema's object; a step past a list field goes into its items. E.g.
    /// `["spec", "template", "spec", "containers", "env"]` on a Deployment.
    pub fn field(&self, path: &[&str]) -> Option<FieldMeta> {
        let Root::Typed(mut ty) = self.0 else { return None };
        let mut found = None;
        for name in path {
            let (field_ty, strategy, merge_key) = match ty {
                Ty::Struct(index) => {
                    let field = Type::by_index(index)?.field(name)?;
                    (field.ty, field.strategy, field.merge_key)
                }
                Ty::Untyped => (Ty::Untyped, "", ""),
                _ => return None,
            };
            let (value_ty, list) = match field_ty {
                Ty::List(elem) => {
                    let merges = strategy.split(',').any(|s| s == "merge");
                    let list = match (merges, merge_key) {
                        (true, "") => ListStrategy::MergeScalars,
                        (true, key) => ListStrategy::MergeByKey(key),
                        (false, _) => ListStrategy::Atomic,
                    };
                    (*elem, Some(list))
                }
                other => (other, None),
            };
            found = Some(FieldMeta { strategy, merge_key, list, schema: Schema(Root::Typed(value_ty)) });
            ty = value_ty;
        }
        found
    }
}

/// The fields of an API struct that carry patch tags, as (JSON name, patchStrategy,
/// patchMergeKey), for the OpenAPI extensions `x-kubernetes-patch-strategy` and
/// `x-kubernetes-patch-merge-key`. `openapi_name` is the OpenAPI definition's name
/// (`io.k8s.api.core.v1.PodSpec`); unknown types have none.
pub fn patch_tags(openapi_name: &str) -> Vec<(&'static str, &'static str, &'static str)> {
    let Some(rest) = openapi_name.strip_prefix("io.k8s.") else { return Vec::new() };
    let Some(index) = Type::by_name(&format!("k8s.io.{rest}")) else { return Vec::new() };
    let Some(ty) = Type::by_index(index) else { return Vec::new() };
    ty.fields.iter().filter(|f| !f.strategy.is_empty()).map(|f| (f.json, f.strategy, f.merge_key)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_definitions_find_their_patch_tags() {
        let tags = patch_tags("io.k8s.api.core.v1.PodSpec");
        assert!(tags.contains(&("containers", "merge", "name")), "{tags:?}");
        assert!(tags.contains(&("volumes", "merge,retainKeys", "name")), "{tags:?}");
        assert!(patch_tags("io.k8s.api.core.v1.ConfigMap").is_empty());
        assert!(patch_tags("com.example.Widget").is_empty());
    }
}
