//! `POST /graphql` and `GET /getschema` (GRAPHQL.md §1, §6).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiError, SharedState, parse_json_body};
use crate::graphql::{RequestContext, execute};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/graphql", post(query))
        .route("/getschema", get(schema))
}

async fn schema(State(state): State<SharedState>) -> Json<Value> {
    Json(state.introspection.clone())
}

async fn query(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let principal = state.principal(&headers, Some("openid")).await?;
    let body = parse_json_body(&body)?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(format!(
            "JSON parsed from request is an invalid type: {}",
            if body.is_array() { "list" } else { "scalar" }
        )));
    };
    let query = body
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let variables = match body.get("variables") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(v) => v,
            Err(e) => {
                return Ok((
                    StatusCode::BAD_REQUEST,
                    Json(
                        json!({"data": null, "errors": ["Unable to parse variables", e.to_string()]}),
                    ),
                ));
            }
        },
        Some(other) => other.clone(),
    };
    let operation = body
        .get("operationName")
        .and_then(Value::as_str)
        .map(str::to_string);
    let projects: Vec<(String, String, bool)> = state
        .store
        .nodes_of_type("project")
        .await?
        .into_iter()
        .filter_map(|p| {
            let project_id = p.project_id?;
            let (program, code) = project_id.split_once('-')?;
            let open = p.props.get("availability_type").and_then(Value::as_str) == Some("Open");
            Some((program.to_string(), code.to_string(), open))
        })
        .collect();
    let context = RequestContext {
        store: state.store.clone(),
        dictionary: state.dictionary.clone(),
        scope: principal.permissions.read_scope(&projects),
        timeout: state.graphql_timeout,
    };
    let (status, body) = execute(&state.schema, context, query, variables, operation).await;
    Ok((
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(body),
    ))
}
