//! What an operator relies on (README "Operating Commons"): request ids,
//! the access log (text and JSON, no secrets, control characters escaped),
//! `/metrics` on either listener, readiness, compression, a panic answered
//! as a 500, and a SIGTERM that lets requests in flight finish.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use common::TestApp;
use serde_json::{Value, json};
use tower::ServiceExt;

fn log_of(data_dir: &std::path::Path) -> String {
    std::fs::read_to_string(data_dir.join("server.log")).unwrap_or_default()
}

/// Wait until the server's log holds `needle` (access lines are written
/// when a response's last byte has gone, just after the client has it).
fn wait_for_log(data_dir: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = log_of(data_dir);
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_and_access_log_lines_without_secrets() {
    let app = TestApp::with_study().await;
    // A user name from a user.yaml may hold anything, escape sequences too.
    let (_, _, evil_token) = app.user("mallory\u{1b}[31mred\nfake line", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = common::serve_logged(
        &app.database_url,
        dir.path(),
        common::free_port(),
        &[],
        "info",
    );
    let agent = common::http();

    // A client's id is kept and echoed; an unusable one is replaced.
    let reply = agent
        .get(format!("{}/index/index/?limit=1", server.url))
        .header("X-Request-Id", "trace-0001")
        .call()
        .unwrap();
    assert_eq!(reply.headers()["x-request-id"], "trace-0001");
    let long = "x".repeat(200);
    let reply = agent
        .get(format!("{}/index/index/?limit=1", server.url))
        .header("X-Request-Id", &long)
        .call()
        .unwrap();
    let replaced = reply.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_ne!(replaced, long);
    assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");

    // An error body carries the id of its request.
    let mut reply = agent
        .get(format!(
            "{}/api/v0/submission/prog/proj/export?node_label=study",
            server.url
        ))
        .header("Cookie", "access_token=SECRET-COOKIE-VALUE")
        .call()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 401);
    let id = reply.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["request_id"], id.as_str(), "{body}");
    assert!(body["message"].is_string(), "{body}");

    // An authenticated request: its user is logged, never its token.
    let mut reply = agent
        .get(format!(
            "{}/api/v0/submission/prog/proj/export?node_label=study&format=json",
            server.url
        ))
        .header("Authorization", format!("bearer {}", app.admin_token))
        .header("X-Request-Id", "trace-admin")
        .call()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    assert!(reply.body_mut().read_to_string().unwrap().contains("study"));
    let reply = agent
        .get(format!("{}/user/user", server.url))
        .header("Authorization", format!("bearer {evil_token}"))
        .header("X-Request-Id", "trace-evil")
        .call()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);

    let log = wait_for_log(dir.path(), "trace-evil");
    let line = |id: &str| {
        log.lines()
            .find(|l| l.contains(id) && l.contains("commons::access"))
            .unwrap_or_else(|| panic!("no access line for {id} in:\n{log}"))
            .to_string()
    };
    let admin = line("trace-admin");
    for field in [
        "method=GET",
        r#"route="/api/v0/submission/{program}/{project}/export""#,
        "status=200",
        "user=admin",
        "duration_ms=",
        "bytes=",
        r#"outcome="complete""#,
    ] {
        assert!(admin.contains(field), "{field} missing from: {admin}");
    }
    let evil = line("trace-evil");
    assert!(
        evil.contains(r"user=mallory\u{1b}[31mred\nfake line"),
        "{evil}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
    assert!(line("trace-0001").contains(r#"route="/index/index""#));
    assert!(!log.contains("SECRET-COOKIE-VALUE"));
    assert!(!log.contains(&app.admin_token));
    assert!(!log.contains(&evil_token));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_and_metrics_on_their_own_listener() {
    let app = TestApp::with_study().await;
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = common::free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let server = common::serve_logged(
        &app.database_url,
        dir.path(),
        common::free_port(),
        &["--log-format", "json", "--metrics-listen", &metrics_listen],
        "info",
    );
    let agent = common::http();
    let mut reply = agent
        .get(format!(
            "{}/api/v0/submission/prog/proj/export?node_label=study",
            server.url
        ))
        .header("Authorization", format!("bearer {}", app.admin_token))
        .header("X-Request-Id", "json-trace")
        .call()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    assert!(reply.body_mut().read_to_string().unwrap().contains("study"));
    let reply = agent
        .post(format!("{}/api/v0/submission/graphql", server.url))
        .header("Authorization", format!("bearer {}", app.admin_token))
        .header("Content-Type", "application/json")
        .send(json!({"query": "{ study { submitter_id } }"}).to_string())
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);

    let log = wait_for_log(dir.path(), "json-trace");
    let access: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["request_id"] == "json-trace")
        .unwrap_or_else(|| panic!("no JSON access line in:\n{log}"));
    assert_eq!(access["target"], "commons::access");
    assert_eq!(access["level"], "INFO");
    let fields = &access["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(
        fields["route"],
        "/api/v0/submission/{program}/{project}/export"
    );
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["user"], "admin");
    assert!(fields["bytes"].as_u64().unwrap() > 0, "{access}");
    assert!(fields["duration_ms"].is_number(), "{access}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON line: {line}"
        );
    }

    // The metrics are on their own listener, not on the public one.
    let reply = agent.get(format!("{}/metrics", server.url)).call().unwrap();
    assert_eq!(reply.status().as_u16(), 404);
    let mut reply = agent
        .get(format!("http://{metrics_listen}/metrics"))
        .call()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let text = reply.body_mut().read_to_string().unwrap();
    for series in [
        r#"commons_http_requests_total{method="GET",route="/api/v0/submission/{program}/{project}/export",status="200"} 1"#,
        r#"commons_http_request_duration_seconds_bucket{method="GET",route="/api/v0/submission/{program}/{project}/export",status="200",le="+Inf"} 1"#,
        r#"commons_db_connections{pool="main",state="max"}"#,
        "commons_export_rows_total 1",
        "commons_db_acquire_seconds_bucket",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    assert!(!text.contains("admin"), "a user name in the metrics");
}

#[tokio::test]
async fn metrics_on_the_main_listener_count_submissions_and_graphql() {
    let app = TestApp::with_study().await;
    let reply = app
        .admin_json(
            "PUT",
            "/api/v0/submission/prog/proj",
            &json!([{"type": "subject", "submitter_id": "s1", "studies": {"submitter_id": "study"}}]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = app
        .graphql(&app.admin_token, "{ subject { submitter_id } }")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = app.get("/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.text();
    // The recorder is one per process, shared by the tests in it: at least.
    for series in [
        "commons_submission_rows_total ",
        "commons_graphql_statement_seconds_count ",
        r#"commons_http_requests_total{method="PUT",route="/api/v0/submission/{program}/{project}",status="200"}"#,
        r#"commons_http_request_bytes_total{route="/api/v0/submission/{program}/{project}"}"#,
    ] {
        let value = text
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{series} missing from:\n{text}"));
        assert!(value >= 1.0, "{series} {value}");
    }
}

#[tokio::test]
async fn readiness_follows_the_database_and_its_migrations() {
    let app = TestApp::new(None).await;
    let reply = app.get("/_ready", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "Ready");

    // A database missing this binary's newest migration (an old backup).
    let url = &app.database_url;
    let forget =
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)";
    if url.starts_with("postgres") {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query(forget).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query(forget).execute(&mut conn).await.unwrap();
    }
    let reply = app.get("/_ready", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let message = reply.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("1 database migrations are pending"),
        "{message}"
    );
    // Liveness does not depend on the database.
    assert_eq!(app.get("/_status", None).await.status, StatusCode::OK);

    app.state.store.close().await.unwrap();
    let reply = app.get("/_ready", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("not ready: the database is unavailable"),
        "{}",
        reply.text()
    );
    assert_eq!(app.get("/_status", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn large_answers_are_compressed_when_asked_and_a_panic_is_a_500() {
    let app = TestApp::with_study().await;
    let service = commons::server::service(app.state.clone(), Default::default());
    let fetch = |path: &str, accept: Option<&str>| {
        let mut request = Request::get(path);
        if let Some(accept) = accept {
            request = request.header("Accept-Encoding", accept);
        }
        service
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
    };
    // The whole dictionary: tens of KiB.
    let large = "/api/v0/submission/_dictionary/_all";
    let gzip = fetch(large, Some("gzip")).await.unwrap();
    assert_eq!(gzip.status(), StatusCode::OK);
    assert_eq!(gzip.headers()["content-encoding"], "gzip");
    let plain = fetch(large, None).await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    // A small answer (an empty page of the index) gains nothing from it.
    let small = fetch("/index/index/?limit=1024", Some("gzip"))
        .await
        .unwrap();
    assert_eq!(small.status(), StatusCode::OK);
    assert!(small.headers().get("content-encoding").is_none());

    // The layers every route has, around a handler that panics.
    let routes = axum::Router::new().route(
        "/explode",
        get(|| async {
            if true {
                panic!("boom");
            }
            ""
        }),
    );
    let app_with_panic =
        commons::server::with_layers(routes, Default::default()).with_state(app.state.clone());
    let reply = app_with_panic
        .oneshot(Request::get("/explode").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let id = reply.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = axum::body::to_bytes(reply.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["message"], "internal server error");
    assert_eq!(body["request_id"], id.as_str());
}

/// Send `head` and the first `sent` bytes of `body` on a raw connection.
fn start_request(url: &str, head: &str, body: &[u8], sent: usize) -> TcpStream {
    let address = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..sent]).unwrap();
    stream.flush().unwrap();
    stream
}

fn read_all(mut stream: TcpStream) -> String {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_submission_and_an_export_in_flight_finish() {
    let app = TestApp::with_study().await;
    let subjects: Vec<Value> = (0..3000)
        .map(|i| json!({"type": "subject", "submitter_id": format!("before{i:05}"), "studies": {"submitter_id": "study"}}))
        .collect();
    let reply = app
        .admin_json(
            "PUT",
            "/api/v0/submission/prog/proj",
            &Value::Array(subjects),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let dir = tempfile::tempdir().unwrap();
    let mut server = common::serve_logged(
        &app.database_url,
        dir.path(),
        common::free_port(),
        &["--shutdown-timeout", "30"],
        "info",
    );
    let token = &app.admin_token;
    let host = server.url.trim_start_matches("http://").to_string();

    // A submission whose body is half sent, and an export whose reader has
    // taken only its headers, when the signal comes.
    let docs: Vec<Value> = (0..2000)
        .map(|i| json!({"type": "subject", "submitter_id": format!("during{i:05}"), "studies": {"submitter_id": "study"}}))
        .collect();
    let body = Value::Array(docs).to_string().into_bytes();
    let head = format!(
        "PUT /api/v0/submission/prog/proj HTTP/1.1\r\nHost: {host}\r\nAuthorization: bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut submission = start_request(&server.url, &head, &body, body.len() / 2);
    let export_head = format!(
        "GET /api/v0/submission/prog/proj/export?node_label=subject&format=tsv HTTP/1.0\r\nHost: {host}\r\nAuthorization: bearer {token}\r\n\r\n"
    );
    let mut export = start_request(&server.url, &export_head, b"", 0);
    let mut first = [0u8; 64];
    let n = export.read(&mut first).unwrap();
    let status_line = String::from_utf8_lossy(&first[..n]).into_owned();
    assert!(
        status_line.starts_with("HTTP/1.0 200") || status_line.starts_with("HTTP/1.1 200"),
        "{status_line}"
    );
    std::thread::sleep(Duration::from_millis(200));

    let pid = server.child.id().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    // No new connection is taken once the signal has landed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&host).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Both requests finish.
    submission.write_all(&body[body.len() / 2..]).unwrap();
    let answer = read_all(submission);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let rest = read_all(export);
    let exported = rest.lines().filter(|l| l.contains("before")).count();
    assert_eq!(exported, 3000, "the export was cut short");

    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let log = log_of(dir.path());
    assert!(log.contains("database closed"), "{log}");

    // Nothing lost: every record of the submission is there.
    let reply = app
        .graphql(
            token,
            "{ subject(quick_search: \"during\", first: 0) { submitter_id } }",
        )
        .await;
    let found = reply.json()["data"]["subject"].as_array().map(Vec::len);
    assert_eq!(found, Some(2000), "{}", reply.text());
}
