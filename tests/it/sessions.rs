//! Browser sessions: the portal's cookie authenticates like a bearer token,
//! state-changing requests need the session's CSRF token, logout ends the
//! session everywhere, and a bootstrap login link works exactly once.

use crate::common;

use axum::http::StatusCode;
use common::{Reply, TestApp};
use serde_json::json;

/// The `name=value` pairs a reply sets as cookies.
fn set_cookies(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect()
}

async fn key_count(app: &TestApp, name: &str) -> usize {
    let store = &app.state.store;
    let user = store.user_by_name(name).await.unwrap().unwrap();
    store.list_api_keys(user.id).await.unwrap().len()
}

async fn password_user(app: &TestApp, name: &str) {
    app.password_user(name, "correct horse").await;
}

#[tokio::test]
async fn session_cookie_authenticates_and_needs_csrf_to_change_anything() {
    let app = TestApp::new(None).await;
    password_user(&app, "alice").await;
    let login = app
        .send_json(
            "POST",
            "/user/login/local",
            None,
            &json!({"username": "alice", "password": "correct horse"}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let session_set_cookie = login
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("commons_session="))
        .expect("a session cookie");
    assert!(
        session_set_cookie.contains("HttpOnly"),
        "{session_set_cookie}"
    );
    let cookies = set_cookies(&login).join("; ");
    let csrf = login.json()["csrf_token"].as_str().unwrap().to_string();
    assert!(
        cookies.contains(&format!("commons_csrf={csrf}")),
        "{cookies}"
    );

    let me = app
        .request_with_headers("GET", "/user/user", &[("cookie", &cookies)], Vec::new())
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    assert_eq!(me.json()["username"], "alice");

    // Another site's form can send the cookie but not the CSRF token.
    let keys_before = key_count(&app, "alice").await;
    let forged = app
        .request_with_headers(
            "POST",
            "/user/credentials/api/",
            &[("cookie", &cookies), ("content-type", "application/json")],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text());
    assert!(forged.text().contains("CSRF"), "{}", forged.text());
    let wrong = app
        .request_with_headers(
            "POST",
            "/user/credentials/api/",
            &[
                ("cookie", &cookies),
                ("x-csrf-token", "0000"),
                ("content-type", "application/json"),
            ],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(
        key_count(&app, "alice").await,
        keys_before,
        "a refused request created a key"
    );
    let created = app
        .request_with_headers(
            "POST",
            "/user/credentials/api/",
            &[
                ("cookie", &cookies),
                ("x-csrf-token", &csrf),
                ("content-type", "application/json"),
            ],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    assert!(created.json()["api_key"].is_string());
}

#[tokio::test]
async fn logout_ends_the_session_token_everywhere() {
    let app = TestApp::new(None).await;
    password_user(&app, "bob").await;
    let login = app
        .send_json(
            "POST",
            "/user/login/local",
            None,
            &json!({"username": "bob", "password": "correct horse"}),
        )
        .await;
    let token = login.json()["access_token"].as_str().unwrap().to_string();
    let cookies = set_cookies(&login).join("; ");
    assert_eq!(
        app.get("/user/user", Some(&token)).await.status,
        StatusCode::OK
    );

    // A GET only asks (another site's link or image cannot log anyone out);
    // a POST without the page's CSRF token is refused.
    let asked = app
        .request_with_headers(
            "GET",
            "/user/logout?next=/%23/projects",
            &[("cookie", &cookies)],
            Vec::new(),
        )
        .await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.text().contains("Log out?"), "{}", asked.text());
    assert_eq!(
        app.get("/user/user", Some(&token)).await.status,
        StatusCode::OK
    );
    let forged = app
        .request_with_headers(
            "POST",
            "/user/logout?next=/%23/projects",
            &[("cookie", &cookies)],
            Vec::new(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/user/user", Some(&token)).await.status,
        StatusCode::OK
    );
    // The page's form posts with the token in its action.
    let action = asked
        .text()
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let out = app
        .request_with_headers("POST", &action, &[("cookie", &cookies)], Vec::new())
        .await;
    assert_eq!(out.status, StatusCode::FOUND, "{}", out.text());
    assert_eq!(out.headers["location"], "/#/projects");
    assert!(
        set_cookies(&out).iter().all(|c| c.ends_with('=')),
        "logout clears both cookies: {:?}",
        set_cookies(&out)
    );
    let after = app.get("/user/user", Some(&token)).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.text());

    // `next` only ever leads to a path on this server.
    for next in [
        "//evil.example/",
        "/%09/evil.example",
        "/\\evil.example",
        "https://evil.example",
    ] {
        let elsewhere = app
            .request(
                "POST",
                &format!("/user/logout?next={next}"),
                None,
                "text/plain",
                Vec::new(),
            )
            .await;
        assert_eq!(elsewhere.headers["location"], "/", "next={next}");
    }
}

#[tokio::test]
async fn another_site_cannot_log_a_browser_in() {
    let app = TestApp::new(None).await;
    password_user(&app, "carol").await;
    let body = b"username=carol&password=correct+horse".to_vec();
    let form = "application/x-www-form-urlencoded";
    let forged = app
        .request_with_headers(
            "POST",
            "/user/login/local",
            &[
                ("content-type", form),
                ("host", "commons.example"),
                ("origin", "https://evil.example"),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text());
    assert!(
        set_cookies(&forged).is_empty(),
        "no session for a forged login"
    );
    let own_page = app
        .request_with_headers(
            "POST",
            "/user/login/local",
            &[
                ("content-type", form),
                ("host", "commons.example"),
                ("origin", "https://commons.example"),
            ],
            body,
        )
        .await;
    assert_eq!(own_page.status, StatusCode::OK, "{}", own_page.text());
}

#[tokio::test]
async fn bootstrap_login_link_works_once() {
    let app = TestApp::new(None).await;
    let admin = app.admin_user().await;
    let secret = commons::auth::create_login_link(&app.state.store, &admin)
        .await
        .unwrap();
    let path = format!("/user/login/link?token={secret}");
    let first = app.get(&path, None).await;
    assert_eq!(first.status, StatusCode::FOUND, "{}", first.text());
    assert_eq!(first.headers["location"], "/");
    let cookies = set_cookies(&first).join("; ");
    let me = app
        .request_with_headers("GET", "/user/user", &[("cookie", &cookies)], Vec::new())
        .await;
    assert_eq!(me.json()["username"], "admin");

    let again = app.get(&path, None).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(again.text().contains("already used"), "{}", again.text());
}

fn commons_cli(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_commons"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

async fn status_of(app: &TestApp, token: &str) -> StatusCode {
    app.get("/user/user", Some(token)).await.status
}

async fn log_in(app: &TestApp, name: &str, password: &str) -> String {
    let login = app
        .send_json(
            "POST",
            "/user/login/local",
            None,
            &json!({"username": name, "password": password}),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    login.json()["access_token"].as_str().unwrap().to_string()
}

/// #28.5: a new password ends the user's sessions; an administrator can end
/// them, disable and enable a user, and retire an old signing key.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_end_users_disable_and_old_signing_keys_retire() {
    let app = TestApp::new(None).await;
    let db = ["--database-url", app.database_url.as_str()];
    let cli = |args: &[&str], stdin: &str| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(db);
        commons_cli(&all, stdin)
    };
    password_user(&app, "carol").await;
    // Session times are whole seconds: let each step start in a new one.
    let tick = || tokio::time::sleep(std::time::Duration::from_millis(1100));
    tick().await;
    let session = log_in(&app, "carol", "correct horse").await;
    assert_eq!(status_of(&app, &session).await, StatusCode::OK);
    tick().await;
    let passwd = cli(&["users", "passwd", "carol"], "a new password\n");
    assert!(passwd.status.success(), "{passwd:?}");
    assert_eq!(status_of(&app, &session).await, StatusCode::UNAUTHORIZED);
    let session = log_in(&app, "carol", "a new password").await;
    assert_eq!(status_of(&app, &session).await, StatusCode::OK);
    tick().await;
    assert!(
        cli(&["users", "end-sessions", "carol"], "")
            .status
            .success()
    );
    assert_eq!(status_of(&app, &session).await, StatusCode::UNAUTHORIZED);

    let (_, credentials, key_token) = app.user("dave", &[]).await;
    assert!(cli(&["users", "disable", "dave"], "").status.success());
    assert_eq!(status_of(&app, &key_token).await, StatusCode::UNAUTHORIZED);
    let exchange = app
        .send_json(
            "POST",
            "/user/credentials/api/access_token",
            None,
            &credentials,
        )
        .await;
    assert_eq!(
        exchange.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        exchange.text()
    );
    assert!(cli(&["users", "enable", "dave"], "").status.success());
    assert_eq!(status_of(&app, &key_token).await, StatusCode::OK);

    let first = app.state.store.signing_keys().await.unwrap()[0].kid.clone();
    let newest = cli(&["keys", "retire", &first], "");
    assert!(
        !newest.status.success(),
        "the signing key cannot be retired"
    );
    assert!(cli(&["keys", "rotate"], "").status.success());
    assert!(cli(&["keys", "retire", &first], "").status.success());
    app.state.tokens.reload(&app.state.store).await.unwrap();
    assert_eq!(
        status_of(&app, &app.admin_token).await,
        StatusCode::UNAUTHORIZED
    );
    let (_, _, fresh) = app.user("erin", &[]).await;
    assert_eq!(status_of(&app, &fresh).await, StatusCode::OK);
}
