//! Health routes: liveness (`/healthz`), readiness (`/readyz`: the local store answers and,
//! when required, MQTT is connected), Prometheus/OpenMetrics (`/metrics`) and the OpenAPI
//! document (`/api/v1/openapi.json`, assembled in `openapi.rs`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde_json::json;

use super::area::Routes;
use super::error::ApiError;
use super::openapi;
use super::state::AppState;

pub fn routes() -> Routes {
    Routes::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi_document))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// 503 while the store does not answer, MQTT is not connected (when required), or any of the
/// gateway's own faults holds (`storage:history`, `storage:journal`, `task:<name>`): `faults`
/// names each with its reason.
async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.store.ping().await;
    let mqtt = !state.mqtt_required || state.metrics.mqtt_connected.get() == 1;
    let faults: serde_json::Map<String, serde_json::Value> = state
        .metrics
        .health
        .failing()
        .into_iter()
        .map(|(rule, why)| (rule, why.into()))
        .collect();
    let ready = store && mqtt && faults.is_empty();
    let body = json!({ "store": store, "mqtt": mqtt, "faults": faults });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi_document() -> Result<Response, ApiError> {
    let text = openapi::text().map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}
