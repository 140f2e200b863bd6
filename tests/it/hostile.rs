//! Hostile input becomes a clear error, never a crash, a leak or a change:
//! SQL injection through every kind of argument, path and header injection
//! through names, forged tokens, oversized and malformed bodies, brute force.

use crate::common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::TestApp;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn populated() -> (TestApp, Value) {
    let app = TestApp::with_simulated(2).await;
    let snapshot = snapshot(&app).await;
    (app, snapshot)
}

async fn snapshot(app: &TestApp) -> Value {
    let reply = app.graphql(&app.admin_token, "{ study(first: 0) { id submitter_id } subject(first: 0) { id submitter_id } n: _sample_count }").await;
    reply.json()
}

#[tokio::test]
async fn sql_injection_through_arguments_finds_nothing_and_changes_nothing() {
    let (app, before) = populated().await;
    let token = app.admin_token.clone();
    let injections = [
        r#"{ study(submitter_id: "x' OR '1'='1") { id } }"#,
        r#"{ study(submitter_id: "x\") OR 1=1 --") { id } }"#,
        r#"{ study(quick_search: "%' OR 1=1; DROP TABLE nodes; --") { id } }"#,
        r#"{ study(project_id: "prog-proj' OR '1'='1") { id } }"#,
        r#"{ study(ids: ["1') OR ('1'='1"]) { id } }"#,
        r#"{ study(not: [{submitter_id: "x' OR 1=1 --"}], first: 0) { id } }"#,
        r#"{ subject(with_path_to: [{type: "study", submitter_id: "' OR 1=1 --"}]) { id } }"#,
        r#"{ study(created_after: "2020-01-01' OR 1=1") { id } }"#,
    ];
    for query in injections {
        let reply = app.graphql(&token, query).await;
        let body = reply.json();
        let field = body["data"]
            .as_object()
            .and_then(|d| d.values().next())
            .cloned()
            .unwrap_or(Value::Null);
        // Either a clear error, or a filter that matched nothing (`not` keeps all rows but adds none).
        let leaked =
            field.as_array().is_some_and(|rows| !rows.is_empty()) && !query.contains("not:");
        assert!(!leaked, "{query} matched rows: {body}");
    }
    for order in ["submitter_id; DROP TABLE nodes", "submitter_id' --", "$.x"] {
        let reply = app
            .graphql(
                &token,
                &format!("{{ study(order_by_asc: {}) {{ id }} }}", json!(order)),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert!(
            reply.json()["errors"][0]
                .as_str()
                .unwrap()
                .starts_with("Cannot order by")
        );
    }
    for path in [
        "/api/v0/submission/prog/proj/export/?node_label=study%3B%20DROP%20TABLE%20nodes&format=tsv",
        "/api/v0/submission/prog/proj/export/?ids=x'%29%20OR%20%28'1'%3D'1&format=tsv",
        "/api/v0/submission/prog/proj/entities/x'%29%20OR%20%28'1'%3D'1",
    ] {
        let reply = app.get(path, Some(&token)).await;
        assert!(
            reply.status == StatusCode::BAD_REQUEST || reply.status == StatusCode::NOT_FOUND,
            "{path}: {}",
            reply.status
        );
    }
    let reply = app
        .admin_json("PUT", "/api/v0/submission/prog/proj", &json!([{"type": "study", "submitter_id": "s' OR 1=1; --", "projects": {"code": "proj' --"}}]))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "a link to a project code that is not this one is refused"
    );
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn names_cannot_traverse_paths_or_inject_headers() {
    let (app, _) = populated().await;
    for node in [
        "..%2F..%2Fetc%2Fpasswd",
        "study%0D%0AX-Evil%3A%201",
        "study.tsv%00",
    ] {
        let reply = app
            .get(&format!("/api/v0/submission/template/{node}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{node}");
        assert!(reply.headers.get("x-evil").is_none());
        let reply = app
            .get(
                &format!("/api/v0/submission/prog/proj/export/?node_label={node}"),
                Some(&app.admin_token),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{node}");
        assert!(reply.headers.get("content-disposition").is_none());
    }
}

fn forge(claims: &Value, header: &Value, signature: &[u8]) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        part(header),
        part(claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let (app, _) = populated().await;
    let real = app.admin_token.clone();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(real.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let kid = app.state.tokens.jwks()["keys"][0]["kid"].clone();
    // HS256 "signed" with the public key as the secret (algorithm confusion).
    let public_key = app.state.tokens.pem_keys()["keys"][0][1]
        .as_str()
        .unwrap()
        .to_string();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    let unsigned = {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}", part(&header), part(&claims))
    };
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public_key.as_bytes()),
        unsigned.as_bytes(),
    );
    let confused = format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    let none = forge(&claims, &json!({"alg": "none", "typ": "JWT"}), b"");
    // A validly signed token from another issuer (another public URL, same keys).
    let other = commons::auth::TokenService::load(
        &app.state.store,
        "http://evil.example",
        Default::default(),
    )
    .await
    .unwrap();
    let admin = app.admin_user().await;
    let foreign = other.issue_access_token(&admin, vec!["openid".into(), "user".into()], 600, None);
    let huge = format!(
        "{}.{}.{}",
        "a".repeat(40_000),
        "b".repeat(40_000),
        "c".repeat(40_000)
    );
    for (name, token) in [
        ("alg confusion", confused),
        ("alg none", none),
        ("other issuer", foreign),
        ("oversized", huge),
    ] {
        for path in ["/api/v0/submission/", "/user/user"] {
            let reply = app.get(path, Some(&token)).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{name} on {path}: {}",
                reply.text()
            );
            assert!(
                reply.json()["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Authentication Error"),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn oversized_and_malformed_bodies_get_clear_errors() {
    let (app, before) = populated().await;
    let limits = commons::server::HttpOptions {
        max_body_bytes: 1024,
        ..Default::default()
    };
    let service = commons::server::service(app.state.clone(), limits);
    let big = format!("[{}]", vec![r#"{"type": "study"}"#; 200].join(","));
    let request = Request::builder()
        .method("PUT")
        .uri("/api/v0/submission/prog/proj")
        .header("authorization", format!("bearer {}", app.admin_token))
        .header("content-type", "application/json")
        .body(Body::from(big))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("1024 bytes"),
        "{body}"
    );

    let token = app.admin_token.clone();
    let invalid_utf8 = app
        .request(
            "PUT",
            "/api/v0/submission/prog/proj",
            Some(&token),
            "text/tab-separated-values",
            vec![b't', 0xff, 0xfe, b'\n'],
        )
        .await;
    assert_eq!(invalid_utf8.status, StatusCode::BAD_REQUEST);
    assert!(
        invalid_utf8.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("UnicodeDecodeError")
    );
    let not_json = app
        .request(
            "PUT",
            "/api/v0/submission/prog/proj",
            Some(&token),
            "application/json",
            b"[{\"type\": ".to_vec(),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    let scalar = app
        .request(
            "PUT",
            "/api/v0/submission/prog/proj",
            Some(&token),
            "application/json",
            b"42".to_vec(),
        )
        .await;
    assert!(
        scalar.json()["message"]
            .as_str()
            .unwrap()
            .contains("invalid type")
    );
    let wrong_method = app
        .request("PATCH", "/user/user", Some(&token), "", vec![])
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        wrong_method.json()["message"].is_string(),
        "plain-text errors are JSON too"
    );
    let wide = format!(
        "{{ {} }}",
        (0..12_000)
            .map(|i| format!("a{i}: _study_count"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let reply = app.graphql(&token, &wide).await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "query complexity limit"
    );
    assert_eq!(snapshot(&app).await, before);
}

#[tokio::test]
async fn password_guessing_is_throttled() {
    let app = TestApp::new(None).await;
    app.password_user("victim", "right").await;
    let attempt = |password: &'static str| {
        let body = json!({"username": "victim", "password": password});
        let app = &app;
        async move {
            app.send_json("POST", "/user/login/local", None, &body)
                .await
        }
    };
    for _ in 0..10 {
        assert_eq!(attempt("wrong").await.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = attempt("right").await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        blocked.text()
    );
    assert!(
        blocked.json()["message"]
            .as_str()
            .unwrap()
            .contains("try again")
    );
    for _ in 0..10 {
        let reply = app
            .send_json(
                "POST",
                "/user/credentials/api/access_token",
                None,
                &json!({"api_key": "not.a.key"}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = app
        .send_json(
            "POST",
            "/user/credentials/api/access_token",
            None,
            &json!({"api_key": "not.a.key"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_stalled_body_gets_408_instead_of_holding_the_server() {
    let (app, before) = populated().await;
    let limits = commons::server::HttpOptions {
        body_idle_timeout: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    for (path, content_type, prefix) in [
        (
            "/api/v0/submission/prog/proj",
            "text/tab-separated-values",
            "type\tsubmitter_id\n",
        ),
        (
            "/api/v0/submission/prog/proj",
            "application/json",
            "[{\"type\": \"study\"",
        ),
        (
            "/api/v0/submission/graphql",
            "application/json",
            "{\"query\": ",
        ),
    ] {
        let first = futures::stream::iter([Ok::<_, std::io::Error>(
            axum::body::Bytes::from_static(prefix.as_bytes()),
        )]);
        let stalled = first.chain(futures::stream::pending());
        let request = Request::builder()
            .method(if path.ends_with("graphql") {
                "POST"
            } else {
                "PUT"
            })
            .uri(path)
            .header("authorization", format!("bearer {}", app.admin_token))
            .header("content-type", content_type)
            .body(Body::from_stream(stalled))
            .unwrap();
        let service = commons::server::service(app.state.clone(), limits);
        let response =
            tokio::time::timeout(std::time::Duration::from_secs(10), service.oneshot(request))
                .await
                .expect("the server gives up on a stalled body")
                .unwrap();
        let status = response.status();
        let body: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert!(
            status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::BAD_REQUEST,
            "{path}: {status} {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains("stall")
                || body["message"].as_str().unwrap().contains("timed out"),
            "{path}: {body}"
        );
    }
    assert_eq!(snapshot(&app).await, before);
}

/// One client trying many names is limited by its address: a hundred
/// attempts, then one a second.
#[tokio::test]
async fn one_address_trying_many_names_is_throttled() {
    let app = TestApp::new(None).await;
    let started = std::time::Instant::now();
    let mut first_refused = None;
    for i in 0..200 {
        let body = json!({"username": format!("guess{i}"), "password": "wrong"});
        let reply = app
            .send_json("POST", "/user/login/local", None, &body)
            .await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            first_refused = Some(i);
            break;
        }
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // A hundred, and one more for each second the attempts took.
    let refills = started.elapsed().as_secs() as usize + 1;
    let refused = first_refused.expect("two hundred names from one address all tried");
    assert!(
        (100..=100 + refills).contains(&refused),
        "first refusal at attempt {refused}, {refills} refills"
    );
}

/// #28.4: concurrent guesses are counted before any is checked, so a burst
/// gets exactly as many password checks as the limit allows.
#[tokio::test]
async fn concurrent_password_guesses_get_only_the_limit_of_checks() {
    let app = TestApp::new(None).await;
    app.password_user("victim", "right").await;
    let body = json!({"username": "victim", "password": "wrong"});
    let replies = futures::future::join_all(
        (0..60).map(|_| app.send_json("POST", "/user/login/local", None, &body)),
    )
    .await;
    let checked = replies
        .iter()
        .filter(|r| r.status == StatusCode::UNAUTHORIZED)
        .count();
    let refused = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (10, 50));
}

/// #28.6 and #28.10: a huge name is refused before any work and not logged
/// whole; an unknown name costs a hash check like a known one.
#[tokio::test]
async fn login_names_are_bounded_and_unknown_names_cost_a_hash_check() {
    let app = TestApp::new(None).await;
    app.password_user("known", "right").await;
    let huge = json!({"username": "n".repeat(3 << 20), "password": "x"});
    let reply = app
        .send_json("POST", "/user/login/local", None, &huge)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    let long = json!({"username": "n".repeat(10_000), "password": "x"});
    let reply = app
        .send_json("POST", "/user/login/local", None, &long)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());

    let time = |name: &'static str| {
        let app = &app;
        async move {
            let mut spent = Vec::new();
            for _ in 0..5 {
                let body = json!({"username": name, "password": "wrong"});
                let started = std::time::Instant::now();
                let reply = app
                    .send_json("POST", "/user/login/local", None, &body)
                    .await;
                spent.push(started.elapsed());
                assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            }
            spent.sort();
            spent[2]
        }
    };
    let known = time("known").await;
    let unknown = time("nobody").await;
    assert!(
        unknown * 2 >= known,
        "an unknown name took {unknown:?}, a known one {known:?}"
    );
}

/// #28.15: deleting a program whose name holds `_` or `%` removes its own
/// resources only.
#[tokio::test]
async fn deleting_a_resource_leaves_look_alike_paths_alone() {
    let app = TestApp::new(None).await;
    let store = &app.state.store;
    for path in [
        "/programs/a_b",
        "/programs/a_b/projects/q",
        "/programs/axb",
        "/programs/axb/projects/q",
        "/programs/a%",
        "/programs/abc/projects/q",
    ] {
        store.upsert_resource(path).await.unwrap();
    }
    store.delete_resource("/programs/a_b").await.unwrap();
    store.delete_resource("/programs/a%").await.unwrap();
    let left = store.list_resources().await.unwrap();
    for kept in [
        "/programs/axb",
        "/programs/axb/projects/q",
        "/programs/abc/projects/q",
    ] {
        assert!(left.iter().any(|p| p == kept), "{kept} in {left:?}");
    }
    for gone in ["/programs/a_b", "/programs/a_b/projects/q", "/programs/a%"] {
        assert!(!left.iter().any(|p| p == gone), "{gone} in {left:?}");
    }
}

/// #28.16: the SQLite file (it holds the signing keys) and its WAL are
/// private to their owner, whatever the umask.
#[tokio::test]
async fn the_sqlite_database_is_created_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("commons.db");
    let store = commons::store::Store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    commons::auth::add_user(&store, "someone", None, false)
        .await
        .unwrap();
    for file in ["commons.db", "commons.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}: {mode:o}");
    }
}

/// #28.13: a name that reads like an existing one (the Kelvin sign `K`,
/// full-width letters, another case) cannot become a second user sharing its
/// grants; over-long names are refused.
#[tokio::test]
async fn look_alike_user_names_are_refused() {
    let app = TestApp::new(None).await;
    app.user("Kelvin", &["commons-admin"]).await;
    for look_alike in ["\u{212A}elvin", "kelvin", "ＫＥＬＶＩＮ"] {
        let made = commons::auth::add_user(&app.state.store, look_alike, None, false).await;
        assert!(
            matches!(made, Err(commons::store::StoreError::Conflict(_))),
            "{look_alike}: {made:?}"
        );
        let reply = app
            .send_json(
                "POST",
                "/authz/user",
                Some(&app.admin_token),
                &json!({"name": look_alike}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CONFLICT,
            "{look_alike}: {}",
            reply.text()
        );
    }
    let long = "n".repeat(commons::auth::MAX_USERNAME_BYTES + 1);
    let reply = app
        .send_json(
            "POST",
            "/authz/user",
            Some(&app.admin_token),
            &json!({"name": long}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
}

/// #28.12: an entity given the id a future project would get does not block
/// that project: it gets another id.
#[tokio::test]
async fn a_client_chosen_id_cannot_block_a_future_project() {
    let app = TestApp::new(None).await;
    app.project("prog", "proj").await;
    let id_of = |code: &'static str| {
        let app = &app;
        async move {
            let query = format!(r#"{{ project(code: "{code}") {{ id }} }}"#);
            app.graphql(&app.admin_token, &query).await.json()["data"]["project"][0]["id"]
                .as_str()
                .map(str::to_string)
        }
    };
    let derived = id_of("proj").await.unwrap();
    let reply = app
        .request(
            "DELETE",
            "/api/v0/submission/prog/proj",
            Some(&app.admin_token),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    app.project("prog", "other").await;
    let squatter = json!({"type": "study", "submitter_id": "s", "id": derived,
                          "projects": {"code": "other"}});
    let reply = app
        .admin_json("PUT", "/api/v0/submission/prog/other", &squatter)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    app.project("prog", "proj").await;
    let fresh = id_of("proj").await.unwrap();
    assert_ne!(fresh, derived);
}

/// #28.14: over-long argument lists are refused with a message naming the
/// argument; the database's own error text never reaches the client.
#[tokio::test]
async fn huge_argument_lists_get_a_clear_error_and_no_database_text() {
    let app = TestApp::new(None).await;
    let conditions =
        |n: usize, form: &dyn Fn(usize) -> String| (0..n).map(form).collect::<Vec<_>>().join(",");
    let path = |i: usize| format!(r#"{{type: "sample", submitter_id: "a{i}"}}"#);
    let not = |i: usize| format!(r#"{{submitter_id: "a{i}"}}"#);
    let link = |_: usize| r#""samples""#.to_string();
    for (argument, form) in [
        ("with_path_to", &path as &dyn Fn(usize) -> String),
        ("not", &not),
        ("with_links", &link),
    ] {
        let query = format!(
            "{{ subject({argument}: [{}]) {{ id }} }}",
            conditions(3000, form)
        );
        let reply = app.graphql(&app.admin_token, &query).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let text = reply.text();
        assert!(
            text.contains(argument) && text.contains("at most 100"),
            "{text}"
        );
        assert!(
            !text.contains("database") && !text.contains("Expression"),
            "{text}"
        );
        let query = format!(
            "{{ subject({argument}: [{}]) {{ id }} }}",
            conditions(100, form)
        );
        let reply = app.graphql(&app.admin_token, &query).await;
        assert_eq!(reply.status, StatusCode::OK, "{argument}: {}", reply.text());
    }
    let ids = (0..20_000)
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(",");
    let reply = app
        .graphql(
            &app.admin_token,
            &format!("{{ subject(ids: [{ids}]) {{ id }} }}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains("at most 10000"), "{}", reply.text());
}

/// #28.16: refused (403) submissions and deletions leave a failed
/// transaction of their caller in the audit trail.
#[tokio::test]
async fn refused_submissions_and_deletions_are_audited() {
    use commons::store::{PolicyRow, TransactionQuery};
    let app = TestApp::new(None).await;
    app.project("prog", "proj").await;
    app.state
        .store
        .upsert_policy(&PolicyRow {
            id: "proj-reader".into(),
            role_ids: vec!["reader".into()],
            resource_paths: vec!["/programs/prog/projects/proj".into()],
        })
        .await
        .unwrap();
    let (_, _, reader) = app.user("peeker", &["proj-reader"]).await;
    let study = json!({"type": "study", "submitter_id": "s", "projects": {"code": "proj"}});
    for method in ["PUT", "POST"] {
        let reply = app
            .send_json(
                method,
                "/api/v0/submission/prog/proj",
                Some(&reader),
                &study,
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    }
    let reply = app
        .request(
            "DELETE",
            "/api/v0/submission/prog/proj/entities/00000000-0000-4000-8000-000000000000",
            Some(&reader),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    let logged = app
        .state
        .store
        .transaction_logs(&TransactionQuery {
            submitter: Some("peeker".into()),
            ..TransactionQuery::default()
        })
        .await
        .unwrap();
    let seen: Vec<(String, String, Option<String>)> = logged
        .into_iter()
        .map(|row| (row.role, row.state, row.project_id))
        .collect();
    let project = Some("prog-proj".to_string());
    assert_eq!(
        seen,
        vec![
            ("update".into(), "FAILED".into(), project.clone()),
            ("create".into(), "FAILED".into(), project.clone()),
            ("delete".into(), "FAILED".into(), project),
        ]
    );
}

/// #28.11: an id that belongs to another project's record is answered
/// without its type or project, and linking to it as if it did not exist.
#[tokio::test]
async fn errors_tell_nothing_of_other_projects_records() {
    let app = TestApp::new(None).await;
    app.project("prog", "open").await;
    app.project("prog", "secretproj").await;
    let hidden = app
        .admin_json(
            "PUT",
            "/api/v0/submission/prog/secretproj",
            &json!({"type": "study", "submitter_id": "hidden-study", "projects": {"code": "secretproj"}}),
        )
        .await;
    assert_eq!(hidden.status, StatusCode::OK, "{}", hidden.text());
    let hidden_id = hidden.json()["entities"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for doc in [
        json!({"type": "subject", "submitter_id": "x", "id": hidden_id,
               "studies": {"submitter_id": "nothing"}}),
        json!({"type": "study", "submitter_id": "y", "id": hidden_id, "projects": {"code": "open"}}),
        json!({"type": "subject", "submitter_id": "z", "studies": {"id": hidden_id}}),
    ] {
        let reply = app
            .admin_json("PUT", "/api/v0/submission/prog/open", &doc)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
        let text = reply.text();
        assert!(
            !text.contains("secretproj") && !text.contains("owned"),
            "{text}"
        );
    }
    let reply = app
        .admin_json(
            "PUT",
            "/api/v0/submission/prog/open",
            &json!({"type": "subject", "submitter_id": "z", "studies": {"id": hidden_id}}),
        )
        .await;
    assert!(
        reply.text().contains("No link destination found"),
        "{}",
        reply.text()
    );
}

/// Whether the server closes `stream` (or it errs) within `within`.
fn closed_within(stream: &mut std::net::TcpStream, within: std::time::Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// #28.7: a request's headers have a deadline, which also ends kept-alive
/// connections left idle; one client address gets only so many connections,
/// and others still get in.
#[tokio::test(flavor = "multi_thread")]
async fn idle_and_hoarded_connections_are_bounded() {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::Duration;
    let app = TestApp::new(None).await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let _server = common::serve_with(
        &app.database_url,
        dir.path(),
        port,
        &["--header-timeout", "1", "--max-connections-per-client", "8"],
    );
    let address = format!("127.0.0.1:{port}");
    let mut idle = TcpStream::connect(&address).unwrap();
    idle.write_all(b"GET /_status HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut partial = TcpStream::connect(&address).unwrap();
    partial
        .write_all(b"GET /_status HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut silent = TcpStream::connect(&address).unwrap();
    for stream in [&mut idle, &mut partial, &mut silent] {
        assert!(
            closed_within(stream, Duration::from_secs(5)),
            "closed after the header deadline"
        );
    }
    // Closed connections give their places back once their tasks end.
    std::thread::sleep(Duration::from_millis(300));
    let request = b"GET /_status HTTP/1.1\r\nHost: x\r\n\r\n";
    let answered = |stream: &mut TcpStream| {
        use std::io::Read;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 12];
        stream.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
    };
    let mut hoard: Vec<TcpStream> = (0..12)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    // Every request goes out at once, well within the header deadline; a
    // refused connection was closed by the server and answers nothing.
    for stream in &mut hoard {
        let _ = stream.write_all(request);
    }
    let served = hoard.iter_mut().map(answered).filter(|ok| *ok).count();
    assert_eq!(served, 8, "one client address gets 8 connections");
    drop(hoard);
    std::thread::sleep(Duration::from_millis(300));
    let mut again = TcpStream::connect(&address).unwrap();
    again.write_all(request).unwrap();
    assert!(answered(&mut again), "closed connections free their places");
}

/// #28.2: a writer who trickles a large body holds nothing shared while it
/// arrives: other projects' submissions, key revocation and logout go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_upload_holds_up_no_one_else() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let app = TestApp::new(None).await;
    app.project("prog", "slow").await;
    app.project("prog", "other").await;
    let (_, victim_key, victim_token) = app.user("victim", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let server = common::serve(&app.database_url, dir.path(), port);
    let token = app.admin_token.clone();
    let trickle = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = format!(
            "PUT /api/v0/submission/prog/slow HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {token}\r\n\
             Content-Type: text/tab-separated-values\r\nContent-Length: 100000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut body = String::from("type\tsubmitter_id\tprojects.code\tstudy_title\n");
        for i in 0..20_000 {
            body.push_str(&format!("study\ts-{i}\tslow\tA study\n"));
        }
        stream.write_all(body.as_bytes()).unwrap();
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            if stream.write_all(b"#").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let reply = common::http()
        .put(format!("{}/api/v0/submission/prog/other", server.url))
        .header("Authorization", &format!("bearer {}", app.admin_token))
        .header("Content-Type", "application/json")
        .send(r#"{"type": "study", "submitter_id": "quick", "projects": {"code": "other"}}"#)
        .unwrap();
    assert_eq!(reply.status(), 200);
    let revoke = std::process::Command::new(env!("CARGO_BIN_EXE_commons"))
        .args([
            "keys",
            "revoke",
            victim_key["key_id"].as_str().unwrap(),
            "--database-url",
        ])
        .arg(&app.database_url)
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let logout = common::http()
        .post(format!("{}/user/logout", server.url))
        .header("Authorization", &format!("bearer {victim_token}"))
        .send_empty()
        .unwrap();
    assert!(logout.status().is_redirection() || logout.status() == 200);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "other requests waited {:?} behind the trickle",
        started.elapsed()
    );
    trickle.join().unwrap();
}

/// #28.3: the database itself stops a GraphQL statement at the time limit
/// (SQLite's progress handler, PostgreSQL's statement_timeout), and a
/// streamed list cut by the limit ends in an error, never silently short.
#[tokio::test]
async fn statements_stop_at_the_time_limit_and_streams_end_in_an_error() {
    use commons::sql::Dialect;
    use commons::store::StoreError;
    use std::time::{Duration, Instant};
    let app = TestApp::new(None).await;
    let store = app.state.store.clone();
    let (one, many) = match store.dialect() {
        Dialect::Sqlite => (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) \
             SELECT CAST(count(*) AS TEXT) FROM c",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) \
             SELECT CAST(x AS TEXT) FROM c WHERE x % 1000000 = 0",
        ),
        Dialect::Postgres => (
            "SELECT count(*)::text FROM generate_series(1, 2000000000)",
            "SELECT x::text FROM generate_series(1, 2000000000) AS x WHERE x % 1000000 = 0",
        ),
    };
    let started = Instant::now();
    let outcome = store.query_json(one, &[], Duration::from_millis(300)).await;
    assert!(matches!(outcome, Err(StoreError::TimedOut)), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let (sink, mut rows) = tokio::sync::mpsc::channel(4);
    let producer = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .stream_json_rows(many, &[], Duration::from_millis(300), sink)
                .await;
        })
    };
    let mut last = None;
    while let Some(row) = rows.recv().await {
        last = Some(row);
    }
    producer.await.unwrap();
    assert!(matches!(last, Some(Err(StoreError::TimedOut))), "{last:?}");
    // The connection goes back to the pool without the deadline.
    let reply = app.graphql(&app.admin_token, "{ _study_count }").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

/// Sends `request` on a new connection and reads only the start of the
/// answer, as a client that stops reading does.
fn stalled_reader(address: &str, request: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut start = [0u8; 64];
    stream.read_exact(&mut start).unwrap();
    assert!(
        start.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&start)
    );
    stream
}

/// #28.1: clients that stop reading streamed GraphQL lists and exports hold
/// no database connection: everyone else's lists and exports go on, and the
/// stalled responses end after the write deadline without looking whole.
#[tokio::test(flavor = "multi_thread")]
async fn readers_that_stop_reading_hold_no_database_connection() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let app = TestApp::new(None).await;
    app.project("prog", "proj").await;
    let padding = "p".repeat(1000);
    let mut tsv = String::from("type\tsubmitter_id\tstudies.submitter_id\tcohort\n");
    for i in 0..12_000 {
        tsv.push_str(&format!("subject\tsubj-{i}\tst\t{padding}\n"));
    }
    let study = json!({"type": "study", "submitter_id": "st", "projects": {"code": "proj"}});
    let reply = app
        .admin_json("PUT", "/api/v0/submission/prog/proj", &study)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = app
        .admin_tsv("PUT", "/api/v0/submission/prog/proj", &tsv)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let server = common::serve_with(
        &app.database_url,
        dir.path(),
        port,
        &["--write-timeout", "4"],
    );
    let address = format!("127.0.0.1:{port}");
    let token = &app.admin_token;
    let export = format!(
        "GET /api/v0/submission/prog/proj/export/?node_label=subject&format=tsv HTTP/1.1\r\n\
         Host: x\r\nAuthorization: bearer {token}\r\n\r\n"
    );
    let query = r#"{"query": "{ subject(first: 0) { submitter_id cohort } }"}"#;
    let graphql = format!(
        "POST /api/v0/submission/graphql HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{query}",
        query.len()
    );
    let mut stalled: Vec<std::net::TcpStream> = Vec::new();
    for _ in 0..6 {
        stalled.push(stalled_reader(&address, &export));
    }
    for _ in 0..12 {
        stalled.push(stalled_reader(&address, &graphql));
    }
    std::thread::sleep(Duration::from_secs(1));

    let started = Instant::now();
    let whole = common::http()
        .get(format!(
            "{}/api/v0/submission/prog/proj/export/?node_label=subject&format=tsv",
            server.url
        ))
        .header("Authorization", &format!("bearer {token}"))
        .call()
        .unwrap()
        .into_body()
        .with_config()
        .limit(100 << 20)
        .read_to_string()
        .unwrap();
    assert_eq!(
        whole.lines().count(),
        12_001,
        "a whole export for another client"
    );
    let reply = common::http()
        .post(format!("{}/api/v0/submission/graphql", server.url))
        .header("Authorization", &format!("bearer {token}"))
        .header("Content-Type", "application/json")
        .send(r#"{"query": "{ _subject_count study { submitter_id } }"}"#)
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "others waited {:?} behind readers that stopped reading",
        started.elapsed()
    );
    // The write deadline ends the stalled responses; none ends as if whole.
    std::thread::sleep(Duration::from_secs(5));
    for mut stream in stalled {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(
            !rest.ends_with(b"0\r\n\r\n"),
            "a stalled response ended as if whole"
        );
    }
}

/// #28.8: one value or one document past its limit is refused with the limit
/// named, nothing is written, and replies do not echo huge values.
#[tokio::test]
async fn oversized_values_and_documents_are_refused_by_name() {
    let app = TestApp::new(None).await;
    app.project("prog", "proj").await;
    let big = "v".repeat(3 << 20);
    let tsv = format!(
        "type\tsubmitter_id\tprojects.code\tstudy_title\nstudy\ts1\tproj\tshort\nstudy\ts2\tproj\t{big}\n"
    );
    let reply = app
        .admin_tsv("PUT", "/api/v0/submission/prog/proj", &tsv)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        &reply.text()[..200.min(reply.text().len())]
    );
    assert!(
        reply.text().contains("--max-cell-bytes") && reply.text().contains("Row 3"),
        "{}",
        reply.text()
    );
    let doc = json!([{"type": "study", "submitter_id": "s3", "projects": {"code": "proj"}, "study_title": big}]);
    let reply = app
        .admin_json("PUT", "/api/v0/submission/prog/proj", &doc)
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        reply.text().contains("--max-cell-bytes") && reply.text().len() < 1000,
        "{}",
        reply.text()
    );
    let pieces: serde_json::Map<String, Value> = (0..40)
        .map(|i| (format!("extra_{i}"), Value::String("x".repeat(500_000))))
        .collect();
    let mut huge = json!({"type": "study", "submitter_id": "s4", "projects": {"code": "proj"}});
    huge.as_object_mut().unwrap().extend(pieces);
    let reply = app
        .admin_json("PUT", "/api/v0/submission/prog/proj", &json!([huge]))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        reply.text().contains("--max-document-bytes"),
        "{}",
        reply.text()
    );
    // A value under the limit that is invalid is not echoed whole.
    let wrong = json!([{"type": "subject", "submitter_id": "x", "studies": {"submitter_id": "s1"},
                        "age_at_enrollment": "n".repeat(900_000)}]);
    let reply = app
        .admin_json("PUT", "/api/v0/submission/prog/proj", &wrong)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.text().len() < 10_000,
        "{} bytes of reply",
        reply.text().len()
    );
    assert_eq!(
        app.count("study", "prog-proj").await,
        0,
        "nothing was written"
    );
}

/// A route group's own body limit, smaller than the server's, is the one
/// its 413 names: fence's 64 KiB, its data routes' 1 MiB, indexd's 8 MiB.
#[tokio::test]
async fn a_refused_body_names_the_limit_that_refused_it() {
    let app = TestApp::new(None).await;
    for (path, limit) in [
        (
            "/user/credentials/api/access_token",
            commons::server::USER_BODY_BYTES,
        ),
        ("/user/data/upload", 1 << 20),
        ("/index/index", 8 << 20),
    ] {
        let body = json!({"file_name": "x".repeat(limit + 1)}).to_string();
        let reply = app
            .request(
                "POST",
                path,
                Some(&app.admin_token),
                "application/json",
                body.into_bytes(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let message = reply.json()["message"].as_str().unwrap().to_string();
        assert!(
            message.contains(&format!("({limit} bytes)")) && !message.contains("split"),
            "{path}: {message}"
        );
    }
}
