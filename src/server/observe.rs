//! What an operator sees of each request. Every request gets an id (the
//! client's `X-Request-Id` when it is a sane one, a new UUID otherwise),
//! echoed in the response's header and in its error body; when the
//! response's last byte has gone (or the client has left), one access-log
//! line at `info` (method, route, status, duration, bytes, user, request id)
//! and the request's Prometheus metrics. Only the route template is logged
//! and measured, never the path or the query (ids, signatures) and never a
//! header (tokens, cookies), so neither the log nor `/metrics` holds a
//! secret or, in the metrics, anything about one user.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::HeaderName;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use super::SharedState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the layers inside learn about a request, for its log line: the
/// route it matched and the user it acted as.
#[derive(Clone, Default)]
pub struct RequestNotes(Arc<Notes>);

#[derive(Default)]
struct Notes {
    route: OnceLock<String>,
    user: OnceLock<String>,
    request_bytes: AtomicU64,
}

impl RequestNotes {
    /// The request acts as `name` (set by the caller extractors).
    pub fn user(&self, name: &str) {
        let _ = self.0.user.set(name.to_string());
    }
}

tokio::task_local! {
    static CURRENT_ID: Arc<str>;
}

/// The id of the request this task is answering, for error bodies.
pub fn current_request_id() -> Option<Arc<str>> {
    CURRENT_ID.try_with(Arc::clone).ok()
}

/// A client's id is kept when it is 1 to 128 visible ASCII characters;
/// anything else (control characters, a megabyte) is replaced.
fn request_id(request: &Request) -> Arc<str> {
    request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().to_string()))
}

/// The outermost layer: id, access log and metrics of every request.
pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&request);
    let method = request.method().clone();
    let notes = RequestNotes::default();
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(notes.clone());
    let header = HeaderValue::from_str(&id).expect("request ids are visible ASCII");
    parts.headers.insert(REQUEST_ID, header.clone());
    let body = Body::new(CountedRequest {
        inner: body,
        notes: notes.clone(),
    });
    let request = Request::from_parts(parts, body);
    let span = tracing::info_span!("request", id = %id);
    let mut response = CURRENT_ID
        .scope(id.clone(), next.run(request).instrument(span))
        .await;
    response.headers_mut().insert(REQUEST_ID, header);
    let status = response.status();
    let (parts, body) = response.into_parts();
    let body = Body::new(LoggedResponse {
        inner: body,
        bytes: 0,
        finish: Some(Finish {
            started,
            method,
            status,
            id,
            notes,
        }),
    });
    Response::from_parts(parts, body)
}

/// On every matched route (a `route_layer`): note the route's template.
pub async fn note_route(request: Request, next: Next) -> Response {
    if let (Some(route), Some(notes)) = (
        request.extensions().get::<MatchedPath>(),
        request.extensions().get::<RequestNotes>(),
    ) {
        let _ = notes.0.route.set(route.as_str().to_string());
    }
    next.run(request).await
}

/// A request body that counts the bytes read from it.
struct CountedRequest {
    inner: Body,
    notes: RequestNotes,
}

impl HttpBody for CountedRequest {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.notes
                .0
                .request_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that logs and measures its request once it has been
/// sent whole, failed, or been dropped by a client that left.
struct LoggedResponse {
    inner: Body,
    bytes: u64,
    finish: Option<Finish>,
}

struct Finish {
    started: Instant,
    method: Method,
    status: StatusCode,
    id: Arc<str>,
    notes: RequestNotes,
}

impl HttpBody for LoggedResponse {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.log("complete");
                }
            }
            Poll::Ready(None) => self.log("complete"),
            Poll::Ready(Some(Err(_))) => self.log("failed"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl LoggedResponse {
    fn log(&mut self, outcome: &str) {
        if let Some(finish) = self.finish.take() {
            finish.record(self.bytes, outcome);
        }
    }
}

impl Drop for LoggedResponse {
    fn drop(&mut self) {
        // An empty body is never polled; anything else unfinished was cut off.
        let outcome = if self.inner.is_end_stream() {
            "complete"
        } else {
            "aborted"
        };
        self.log(outcome);
    }
}

impl Finish {
    fn record(self, bytes: u64, outcome: &str) {
        let seconds = self.started.elapsed().as_secs_f64();
        let notes = &self.notes.0;
        let route = notes.route.get().map_or("unmatched", String::as_str);
        let user = notes.user.get().map_or("-", String::as_str);
        let request_bytes = notes.request_bytes.load(Ordering::Relaxed);
        let status = self.status.as_u16();
        tracing::info!(
            target: "commons::access",
            method = %self.method,
            route,
            status,
            duration_ms = (seconds * 1000.0 * 10.0).round() / 10.0,
            bytes,
            request_bytes,
            user = %user.escape_debug(),
            request_id = %self.id,
            outcome,
        );
        // Known methods only: a client's made-up ones would each be a series.
        let method = match self.method {
            Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::PATCH => {
                self.method.as_str()
            }
            Method::DELETE | Method::OPTIONS => self.method.as_str(),
            _ => "other",
        };
        let labels = [
            ("method", method.to_string()),
            ("route", route.to_string()),
            ("status", status.to_string()),
        ];
        metrics::counter!("commons_http_requests_total", &labels).increment(1);
        metrics::histogram!("commons_http_request_duration_seconds", &labels).record(seconds);
        metrics::counter!("commons_http_response_bytes_total", "route" => route.to_string())
            .increment(bytes);
        if request_bytes > 0 {
            metrics::counter!("commons_http_request_bytes_total", "route" => route.to_string())
                .increment(request_bytes);
        }
    }
}

/// The process's metrics recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 300.0,
        ];
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .expect("the buckets are not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed");
        describe();
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "commons_http_requests_total",
        "Requests answered, by method, route and status."
    );
    describe_histogram!(
        "commons_http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its response's last byte."
    );
    describe_counter!(
        "commons_http_response_bytes_total",
        Unit::Bytes,
        "Response body bytes sent, by route."
    );
    describe_counter!(
        "commons_http_request_bytes_total",
        Unit::Bytes,
        "Request body bytes received (uploads, submissions), by route."
    );
    describe_gauge!(
        "commons_db_connections",
        "Database connections of each pool, by state (idle, in_use) and the pool's maximum (max)."
    );
    describe_histogram!(
        "commons_db_acquire_seconds",
        Unit::Seconds,
        "Waits for a database connection (graph reads and writes)."
    );
    describe_counter!(
        "commons_submission_rows_total",
        "Records written by submissions, by outcome of the submission."
    );
    describe_counter!("commons_export_rows_total", "Records exported.");
    describe_histogram!(
        "commons_graphql_statement_seconds",
        Unit::Seconds,
        "Time of each SQL statement of GraphQL requests."
    );
}

/// `GET /metrics`: Prometheus' text format.
pub async fn scrape(State(state): State<SharedState>) -> Response {
    for pool in state.store.pool_use() {
        let gauge = |what: &'static str| metrics::gauge!("commons_db_connections", "pool" => pool.name, "state" => what);
        gauge("idle").set(pool.idle as f64);
        gauge("in_use").set(pool.in_use as f64);
        gauge("max").set(pool.max as f64);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics().render(),
    )
        .into_response()
}

/// The metrics alone, for `--metrics-listen`.
pub fn metrics_router(state: SharedState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(state)
}
