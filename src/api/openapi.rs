//! The OpenAPI document served at `/api/v1/openapi.json`, kept as one JSON fragment per area
//! in `openapi/` and merged once, at the first request. `base.json` holds the header
//! (`openapi`, `info`, `servers`) and the shared components (security schemes, error
//! responses, the `token` parameter, the `Error` schema); every other fragment holds only its
//! `tags`, its `paths` and the `components` it defines. A path, tag or component defined in
//! two fragments is an error, never a silent overwrite.
//!
//! A new area adds its fragment to [`FRAGMENTS`]; the tests in `routes.rs` check that the
//! merged document and the router list the same paths.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};

/// The fragments, in the order their tags appear in the document; `base` first.
pub const FRAGMENTS: &[(&str, &str)] = &[
    ("base", include_str!("openapi/base.json")),
    ("health", include_str!("openapi/health.json")),
    ("alarms", include_str!("openapi/alarms.json")),
    ("alarm_history", include_str!("openapi/alarm_history.json")),
    ("devices", include_str!("openapi/devices.json")),
    ("console", include_str!("openapi/console.json")),
    ("tickets", include_str!("openapi/tickets.json")),
    ("incidents", include_str!("openapi/incidents.json")),
    ("drills", include_str!("openapi/drills.json")),
    ("reports", include_str!("openapi/reports.json")),
    ("duty", include_str!("openapi/duty.json")),
];

#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("openapi/{fragment}.json is not valid JSON: {source}")]
    Json {
        fragment: String,
        source: serde_json::Error,
    },
    #[error("openapi/{fragment}.json: {what} `{name}` is already defined by openapi/{first}.json")]
    Duplicate {
        fragment: String,
        what: String,
        name: String,
        first: String,
    },
    #[error("openapi/{fragment}.json: {problem}")]
    Shape { fragment: String, problem: String },
}

/// The merged document and its text, built on first use.
static DOCUMENT: LazyLock<Result<(Value, String), OpenApiError>> = LazyLock::new(|| {
    let doc = merge(FRAGMENTS)?;
    let text = serde_json::to_string_pretty(&doc).map_err(|source| OpenApiError::Json {
        fragment: "merged".into(),
        source,
    })?;
    Ok((doc, text))
});

/// The whole document.
pub fn document() -> Result<&'static Value, &'static OpenApiError> {
    DOCUMENT.as_ref().map(|(doc, _)| doc)
}

/// The whole document as served (pretty-printed JSON).
pub fn text() -> Result<&'static str, &'static OpenApiError> {
    DOCUMENT.as_ref().map(|(_, text)| text.as_str())
}

/// Merges `fragments` (name, JSON text): the first is the base, the others add their `tags`,
/// `paths` and `components.<kind>.<name>` entries. Anything else in a later fragment, and
/// any name defined twice, is an error.
pub fn merge(fragments: &[(&str, &str)]) -> Result<Value, OpenApiError> {
    let mut doc = Map::new();
    let mut tags = Vec::new();
    let mut paths = Map::new();
    let mut components: Map<String, Value> = Map::new();
    // Which fragment defined each (what, name), to name both in a duplicate error.
    let mut owners: HashMap<(String, String), String> = HashMap::new();
    for (i, (fragment, text)) in fragments.iter().enumerate() {
        let shape = |problem: String| OpenApiError::Shape {
            fragment: fragment.to_string(),
            problem,
        };
        let mut claim = |what: &str, name: &str| match owners
            .insert((what.into(), name.into()), fragment.to_string())
        {
            Some(first) => Err(OpenApiError::Duplicate {
                fragment: fragment.to_string(),
                what: what.into(),
                name: name.into(),
                first,
            }),
            None => Ok(()),
        };
        let parsed: Value = serde_json::from_str(text).map_err(|source| OpenApiError::Json {
            fragment: fragment.to_string(),
            source,
        })?;
        let Value::Object(mut parts) = parsed else {
            return Err(shape("not a JSON object".into()));
        };
        for tag in take(&mut parts, "tags", Value::as_array_mut).map_err(&shape)? {
            let name = tag["name"]
                .as_str()
                .ok_or_else(|| shape("a tag without a name".into()))?;
            claim("tag", name)?;
            tags.push(tag);
        }
        for (path, item) in take(&mut parts, "paths", Value::as_object_mut).map_err(&shape)? {
            claim("path", &path)?;
            paths.insert(path, item);
        }
        for (kind, mut entries) in
            take(&mut parts, "components", Value::as_object_mut).map_err(&shape)?
        {
            let entries = entries
                .as_object_mut()
                .map(std::mem::take)
                .ok_or_else(|| shape(format!("components.{kind} is not an object")))?;
            let merged = components
                .entry(kind.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            for (name, value) in entries {
                claim(&format!("components.{kind}"), &name)?;
                if let Some(m) = merged.as_object_mut() {
                    m.insert(name, value);
                }
            }
        }
        if i == 0 {
            doc = parts;
        } else if let Some(key) = parts.keys().next() {
            return Err(shape(format!(
                "unexpected key `{key}` (an area holds only tags, paths and components)"
            )));
        }
    }
    doc.insert("tags".into(), Value::Array(tags));
    doc.insert("paths".into(), Value::Object(paths));
    doc.insert("components".into(), Value::Object(components));
    Ok(Value::Object(doc))
}

/// Removes `parts[key]` and returns its contents (empty when absent), or says it has the
/// wrong type.
fn take<T: Default>(
    parts: &mut Map<String, Value>,
    key: &str,
    as_mut: impl Fn(&mut Value) -> Option<&mut T>,
) -> Result<T, String> {
    match parts.remove(key) {
        None => Ok(T::default()),
        Some(mut v) => as_mut(&mut v)
            .map(std::mem::take)
            .ok_or_else(|| format!("`{key}` has the wrong type")),
    }
}
