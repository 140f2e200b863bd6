//! indexd's HTTP Basic authentication on index writes: a local account's
//! name and password instead of a token, with the same grants; a wrong
//! password is indexd's 403 and writes nothing; reads stay anonymous.

use crate::common;

use axum::http::StatusCode;
use base64::Engine;
use common::TestApp;
use serde_json::json;

use commons::store::PolicyRow;

fn basic(name: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"))
    )
}

#[tokio::test]
async fn index_writes_take_a_local_accounts_password_with_its_grants() {
    let app = TestApp::new(None).await;
    app.state
        .store
        .upsert_policy(&PolicyRow {
            id: "p-creator".into(),
            role_ids: vec!["creator".into()],
            resource_paths: vec!["/programs/p".into()],
        })
        .await
        .unwrap();
    let ida = app.password_user("ida", "correct horse").await;
    app.state
        .store
        .grant_user_policy(&ida.username, "p-creator")
        .await
        .unwrap();
    let post = |authorization: String, authz: &str, did: &str| {
        let app = &app;
        let body = json!({"did": did, "form": "object", "size": 1,
            "hashes": {"md5": "0cc175b9c0f1b6a831c399e269772661"}, "urls": [], "authz": [authz]})
        .to_string()
        .into_bytes();
        async move {
            app.request_with_headers(
                "POST",
                "/index/index/",
                &[
                    ("authorization", &authorization),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
        }
    };
    let did = "44444444-4444-4444-8444-444444444444";
    let created = post(basic("ida", "correct horse"), "/programs/p", did).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    assert_eq!(created.json()["did"], did);

    let wrong = post(
        basic("ida", "wrong"),
        "/programs/p",
        "55555555-5555-4555-8555-555555555555",
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(
        wrong.json(),
        json!({"error": "username / password mismatch"})
    );
    let unknown = post(
        basic("nobody", "x"),
        "/programs/p",
        "55555555-5555-4555-8555-555555555555",
    )
    .await;
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);
    // The account's grants still decide: nothing on another program.
    let elsewhere = post(
        basic("ida", "correct horse"),
        "/programs/q",
        "55555555-5555-4555-8555-555555555555",
    )
    .await;
    assert_eq!(
        elsewhere.status,
        StatusCode::FORBIDDEN,
        "{}",
        elsewhere.text()
    );
    let malformed = post(
        "Basic !!!".into(),
        "/programs/p",
        "55555555-5555-4555-8555-555555555555",
    )
    .await;
    assert_eq!(malformed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/index/index/55555555-5555-4555-8555-555555555555", None)
            .await
            .status,
        StatusCode::NOT_FOUND,
        "no refused write was stored"
    );
    assert_eq!(
        app.get(&format!("/index/index/{did}"), None).await.status,
        StatusCode::OK
    );
}
