//! `POST /graphql` and `GET /getschema` (GRAPHQL.md §1, §6).

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{Value, json};

use super::{ApiError, Caller, OpenId, SharedState, parse_json_body};
use crate::graphql::{Answer, Deferred, RequestContext, answer, timeout_message};
use crate::store::StoreError;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/graphql", post(query))
        .route("/getschema", get(schema))
}

/// The introspection result, sent compressed as it is kept to clients that
/// accept gzip (GraphiQL, `requests`), and inflated for the others.
async fn schema(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let compressed = state.introspection_gzip.clone();
    let json = [(header::CONTENT_TYPE, "application/json")];
    let vary = [(header::VARY, "accept-encoding")];
    if accepts_gzip(&headers) {
        return (json, vary, [(header::CONTENT_ENCODING, "gzip")], compressed).into_response();
    }
    let mut text = Vec::new();
    match flate2::read::GzDecoder::new(&compressed[..]).read_to_end(&mut text) {
        Ok(_) => (json, vary, text).into_response(),
        Err(e) => ApiError::new(500, format!("cannot inflate the schema: {e}")).into_response(),
    }
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): gzip's own
/// entry decides, else `*`'s; an entry with `q=0` refuses.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut any) = (None, None);
    let items = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for item in items {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let accepted = !parts.any(|param| {
            param.split_once('=').is_some_and(|(name, q)| {
                name.trim().eq_ignore_ascii_case("q")
                    && q.trim().parse::<f32>().is_ok_and(|q| q == 0.0)
            })
        });
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(accepted);
        } else if coding == "*" {
            any = Some(accepted);
        }
    }
    gzip.or(any).unwrap_or(false)
}

async fn query(
    State(state): State<SharedState>,
    Caller(principal, _): Caller<OpenId>,
    body: Bytes,
) -> Result<Response, ApiError> {
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
                return Ok(json_answer(
                    400,
                    json!({"data": null, "errors": ["Unable to parse variables", e.to_string()]}),
                ));
            }
        },
        Some(other) => other.clone(),
    };
    let operation = body
        .get("operationName")
        .and_then(Value::as_str)
        .map(str::to_string);
    let context = RequestContext {
        store: state.store.clone(),
        dictionary: state.dictionary.clone(),
        scope: principal.permissions.graphql_scope(&state.store).await?,
        timeout: state.graphql_limits.timeout,
        stream: None,
        budget: crate::graphql::Budget::new(&state.graphql_limits),
    };
    match answer(&state.schema, context, query, variables, operation).await {
        Answer::Json(status, body) => Ok(json_answer(status, body)),
        Answer::Stream(deferred) => Ok(streamed(&state, deferred).await),
    }
}

fn json_answer(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(body),
    )
        .into_response()
}

/// `{"data": {<key>: [rows]}}` written as the rows arrive. A statement that
/// produces no row within the time limit gets Gen3's timeout error; one that
/// fails or runs past it after its first rows ends the body with an error, so
/// the client sees a broken response, never a short list that looks whole.
async fn streamed(state: &SharedState, deferred: Deferred) -> Response {
    let key = deferred.key.clone();
    let mut rows = Box::pin(
        deferred
            .rows(state.store.clone(), state.graphql_limits.timeout)
            .fuse(),
    );
    let wait = state.graphql_limits.timeout + crate::graphql::STATEMENT_SLACK;
    let first = match tokio::time::timeout(wait, rows.next()).await {
        Err(_) => {
            let message = timeout_message(state.graphql_limits.timeout);
            return json_answer(400, json!({"data": {key: null}, "errors": [message]}));
        }
        Ok(Some(Err(e))) => {
            let message = crate::graphql::answerable(e, state.graphql_limits.timeout).message;
            return json_answer(400, json!({"data": {key: null}, "errors": [message]}));
        }
        Ok(first) => first.map(|row| row.expect("errors are answered above")),
    };
    let prefix = Bytes::from(format!("{{\"data\":{{{}:[", Value::String(key)));
    let rest = rows.map(|row| {
        row.map(|bytes| [Bytes::from_static(b","), bytes].concat().into())
            .inspect_err(|e| tracing::error!(error = %e, "streamed GraphQL response cut off"))
    });
    let body = futures::stream::iter([Ok::<_, StoreError>(prefix)])
        .chain(futures::stream::iter(first.map(Ok)))
        .chain(rest)
        .chain(futures::stream::iter([Ok(Bytes::from_static(b"]}}"))]));
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}
