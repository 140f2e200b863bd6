//! The profile-page flow: log in with a password, create an API key through
//! the fence API, use it, list it, revoke it.

use crate::common;

use axum::http::StatusCode;
use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn login_creates_lists_and_revokes_api_keys() {
    let app = TestApp::new(None).await;
    let (user, _, _) = app.user("alice", &[]).await;
    let hash = commons::auth::hash_password("correct horse");
    app.state.store.set_password(user.id, &hash).await.unwrap();

    let wrong = app
        .send_json(
            "POST",
            "/user/login/local",
            None,
            &json!({"username": "alice", "password": "nope"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let login = app
        .send_json(
            "POST",
            "/user/login/local",
            None,
            &json!({"username": "ALICE", "password": "correct horse"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let session = login.json()["access_token"].as_str().unwrap().to_string();

    // An API-key token may not manage keys; a session token may.
    let created = app
        .send_json(
            "POST",
            "/user/credentials/api/",
            Some(&session),
            &json!({"scope": ["data", "user"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let credentials = created.json();
    assert_eq!(
        credentials.as_object().unwrap().len(),
        2,
        "exactly api_key and key_id: {credentials}"
    );
    let key_id = credentials["key_id"].as_str().unwrap().to_string();
    let token = app.exchange(&credentials).await;
    let refused = app.get("/user/credentials/api/", Some(&token)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/user/user", Some(&token)).await.json()["username"],
        "alice"
    );

    let listed = app
        .get("/user/credentials/cdis/", Some(&session))
        .await
        .json();
    assert!(
        listed["jtis"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["jti"] == key_id.as_str()),
        "{listed}"
    );

    let bad_scope = app
        .send_json(
            "POST",
            "/user/credentials/api",
            Some(&session),
            &json!({"scope": ["root"]}),
        )
        .await;
    assert_eq!(bad_scope.status, StatusCode::BAD_REQUEST);

    let revoked = app
        .request(
            "DELETE",
            &format!("/user/credentials/api/{key_id}"),
            Some(&session),
            "",
            vec![],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let again = app
        .request(
            "DELETE",
            &format!("/user/credentials/api/{key_id}"),
            Some(&session),
            "",
            vec![],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let exchange = app
        .send_json(
            "POST",
            "/user/credentials/api/access_token",
            None,
            &credentials,
        )
        .await;
    assert_eq!(exchange.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/user/user", Some(&token)).await.status,
        StatusCode::UNAUTHORIZED,
        "its tokens end too"
    );
    let listed = app
        .get("/user/credentials/api", Some(&session))
        .await
        .json();
    assert!(
        !listed["jtis"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["jti"] == key_id.as_str())
    );
}
