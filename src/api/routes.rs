//! The router: every area's routes merged, the "no such endpoint" fallback and the request
//! body limit. An area is one file (`health`, `alarms`, `devices`, `console`, `tickets`,
//! `drills`) with a `routes()` and one OpenAPI fragment (`openapi/<area>.json`); adding an
//! area adds one line to [`areas`] and one to [`super::openapi::FRAGMENTS`]. The tests below
//! check that the router and the OpenAPI document list the same paths.

use axum::extract::DefaultBodyLimit;
use axum::{middleware, Router};

use super::area::Routes;
use super::error::ApiError;
use super::state::AppState;
use super::{
    alarm_history, alarms, console, devices, drills, duty, guard, health, incidents, reports,
    tickets,
};

/// Every area's routes, merged.
pub fn areas() -> Routes {
    Routes::new()
        .merge(health::routes())
        .merge(alarms::routes())
        .merge(alarm_history::routes())
        .merge(devices::routes())
        .merge(console::routes())
        .merge(tickets::routes())
        .merge(incidents::routes())
        .merge(drills::routes())
        .merge(reports::routes())
        .merge(duty::routes())
}

pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let timeout = middleware::from_fn_with_state(state.clone(), guard::request_timeout);
    areas()
        .into_router()
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(guard::cookie_mutations))
        .layer(timeout)
        .layer(middleware::from_fn(guard::access_log))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use serde_json::Value;

    use super::super::openapi::{self, OpenApiError, FRAGMENTS};
    use super::*;

    /// The route (axum syntax) that serves a concrete or documented `path`: literal segments
    /// before `{param}` before `{*rest}`, as axum chooses.
    fn serving_route<'a>(routes: &[&'a str], path: &str) -> Option<&'a str> {
        // Rank per segment: 0 literal, 1 parameter, 2 wildcard (lower wins, left to right).
        fn ranks(route: &str, path: &str) -> Option<Vec<u8>> {
            let mut want = path.split('/');
            let mut ranks = Vec::new();
            for seg in route.split('/') {
                if seg.starts_with("{*") {
                    want.next()?;
                    ranks.push(2);
                    return Some(ranks);
                }
                let got = want.next()?;
                if seg.starts_with('{') {
                    ranks.push(1);
                } else if seg == got {
                    ranks.push(0);
                } else {
                    return None;
                }
            }
            want.next().is_none().then_some(ranks)
        }
        routes
            .iter()
            .filter_map(|r| ranks(r, path).map(|k| (k, *r)))
            .min()
            .map(|(_, r)| r)
    }

    fn documented_paths() -> Vec<String> {
        let doc = openapi::document().expect("the fragments merge");
        doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn every_route_the_router_serves_is_documented_and_every_documented_path_is_served() {
        let areas = areas();
        let served = areas.paths();
        let mut seen = BTreeSet::new();
        let mut problems = Vec::new();
        for path in documented_paths() {
            match serving_route(served, &path) {
                Some(route) => {
                    seen.insert(route);
                }
                None => problems.push(format!("documented but not served: {path}")),
            }
        }
        for route in served {
            if !seen.contains(route) {
                problems.push(format!(
                    "served but not in any openapi/*.json fragment: {route}"
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // Not vacuous: every area is in there, with its routes.
        assert!(served.len() >= 25, "{served:?}");
        assert!(seen.contains("/api/v1/tickets/{id}/actions/{action}"));
        assert!(seen.contains("/api/v1/drills/{id}"));
    }

    #[test]
    fn a_route_without_documentation_is_found() {
        let served = [
            "/api/v1/alarms/{id}",
            "/api/v1/alarms/stream",
            "/assets/{*file}",
        ];
        assert_eq!(
            serving_route(&served, "/api/v1/alarms/stream"),
            Some("/api/v1/alarms/stream")
        );
        assert_eq!(
            serving_route(&served, "/api/v1/alarms/{id}"),
            Some("/api/v1/alarms/{id}")
        );
        assert_eq!(
            serving_route(&served, "/assets/{file}"),
            Some("/assets/{*file}")
        );
        assert_eq!(serving_route(&served, "/assets"), None);
        assert_eq!(serving_route(&served, "/api/v1/alarms/1/ack"), None);
    }

    #[test]
    fn no_path_tag_or_component_is_defined_in_two_fragments() {
        for (name, text) in FRAGMENTS {
            let v: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("openapi/{name}.json is not JSON: {e}"));
            assert!(v.is_object(), "{name}");
        }
        // The real fragments merge; merging one twice names the duplicate and both files.
        openapi::document().expect("the fragments merge");
        let twice = [FRAGMENTS[0], FRAGMENTS[2], FRAGMENTS[2]];
        match openapi::merge(&twice) {
            Err(OpenApiError::Duplicate { what, first, .. }) => {
                assert_eq!(first, FRAGMENTS[2].0);
                assert!(["tag", "path"].contains(&what.as_str()) || what.starts_with("components"));
            }
            other => panic!("a duplicate was not refused: {other:?}"),
        }
        let stray = [FRAGMENTS[0], ("stray", r#"{"info": {"title": "x"}}"#)];
        assert!(matches!(
            openapi::merge(&stray),
            Err(OpenApiError::Shape { .. })
        ));
    }

    #[test]
    fn the_merged_document_is_complete_and_every_reference_resolves() {
        let doc = openapi::document().expect("the fragments merge");
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.0")));
        assert!(doc["info"]["title"].is_string());
        // Every tag used by an operation is declared, once.
        let tags: Vec<&str> = doc["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                operations += 1;
                for tag in op["tags"].as_array().expect("operation tags") {
                    let tag = tag.as_str().unwrap_or_default();
                    assert!(tags.contains(&tag), "{method} {path}: tag {tag} undeclared");
                }
            }
        }
        assert!(operations >= 40, "{operations} operations");
        // Every `$ref` points at something in the merged document.
        let mut refs = Vec::new();
        collect_refs(doc, &mut refs);
        assert!(refs.len() > 50, "{} refs", refs.len());
        let mut missing = HashMap::new();
        for r in refs {
            let mut node = doc;
            for part in r.trim_start_matches("#/").split('/') {
                node = &node[part];
            }
            if node.is_null() {
                missing.insert(r.to_string(), ());
            }
        }
        assert!(missing.is_empty(), "unresolved: {:?}", missing.keys());
    }

    fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
