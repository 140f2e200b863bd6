//! Test plumbing: a Commons instance on a temporary SQLite database, driven
//! in-process through the same HTTP service `commons serve` runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use commons::auth::{self, Lifetimes};
use commons::dictionary;
use commons::graphql::Limits;
use commons::server::{self, SharedState};
use commons::store::{Store, UserRow};

pub const PUBLIC_URL: &str = "http://commons.test";

pub struct TestApp {
    pub state: SharedState,
    pub admin_token: String,
    /// The database URL, for other processes sharing this commons' database.
    pub database_url: String,
    database: TestDatabase,
    _dir: tempfile::TempDir,
}

/// The backend under test: `COMMONS_TEST_BACKEND=postgres` runs every test on
/// a fresh PostgreSQL database (server from `COMMONS_TEST_POSTGRES_URL`,
/// default the local one), dropped afterwards; otherwise SQLite in a temp dir.
enum TestDatabase {
    Sqlite,
    Postgres { admin_url: String, name: String },
}

fn postgres_admin_url() -> String {
    std::env::var("COMMONS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl TestDatabase {
    async fn create(dir: &Path) -> (Self, String) {
        match std::env::var("COMMONS_TEST_BACKEND").as_deref() {
            Ok("postgres") => {
                let admin_url = postgres_admin_url();
                let name = format!("commons_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is required for COMMONS_TEST_BACKEND=postgres: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(b, _)| b);
                let url = format!("{base}/{name}");
                (TestDatabase::Postgres { admin_url, name }, url)
            }
            _ => (TestDatabase::Sqlite, Store::default_url(dir)),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let TestDatabase::Postgres { admin_url, name } = &self.database {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime: use a thread with its own.
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    if let Ok(mut conn) =
                        <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await
                    {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            })
            .join()
            .unwrap();
        }
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The shared reference dictionaries, read in place (never copied into the repo).
pub fn reference_dictionaries() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/dictionaries");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

impl TestApp {
    /// A fresh commons with `dictionary` (None: the bundled one) and an administrator.
    pub async fn new(dictionary: Option<&Path>) -> Self {
        Self::with_storage(dictionary, None).await
    }

    /// [`TestApp::new`] keeping objects in `storage` (None: a local folder).
    pub async fn with_storage(
        dictionary: Option<&Path>,
        storage: Option<commons::storage::StorageConfig>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dictionary = match dictionary {
            Some(path) => dictionary::load_path(path).unwrap(),
            None => dictionary::load(None).unwrap(),
        };
        let (database, url) = TestDatabase::create(dir.path()).await;
        let store = Store::open(&url).await.unwrap();
        if matches!(database, TestDatabase::Postgres { .. }) {
            assert_eq!(store.dialect(), commons::sql::Dialect::Postgres);
        }
        let state = commons::cli::app_state(
            dictionary,
            store,
            PUBLIC_URL,
            Lifetimes::default(),
            Limits::default(),
            &storage.unwrap_or_else(|| {
                commons::storage::StorageConfig::local(&dir.path().join("objects"))
            }),
        )
        .await
        .unwrap();
        let state = Arc::new(state);
        let credentials = auth::bootstrap(&state.store, &state.tokens, dir.path())
            .await
            .unwrap()
            .unwrap();
        let credentials: Value =
            serde_json::from_str(&std::fs::read_to_string(credentials.credentials).unwrap())
                .unwrap();
        let mut app = TestApp {
            state,
            admin_token: String::new(),
            database_url: url,
            database,
            _dir: dir,
        };
        app.admin_token = app.exchange(&credentials).await;
        app
    }

    /// Another commons (already set up) driven with an existing token.
    pub fn from_state(state: SharedState, admin_token: String) -> Self {
        TestApp {
            state,
            admin_token,
            database_url: String::new(),
            database: TestDatabase::Sqlite,
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let authorization = token.map(|t| format!("bearer {t}"));
        let mut headers = vec![("content-type", content_type)];
        headers.extend(authorization.as_deref().map(|a| ("authorization", a)));
        self.request_with_headers(method, path, &headers, body)
            .await
    }

    /// A request with exactly these headers (cookies, CSRF tokens, ...).
    pub async fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let service = server::service(self.state.clone(), server::HttpOptions::default());
        let response = service
            .oneshot(builder.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The administrator created at bootstrap.
    pub async fn admin_user(&self) -> UserRow {
        let admin = self.state.store.user_by_name("admin").await.unwrap();
        admin.expect("bootstrap created the administrator")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.request("GET", path, token, "application/json", Vec::new())
            .await
    }

    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Reply {
        self.request(
            method,
            path,
            token,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    pub async fn admin_json(&self, method: &str, path: &str, body: &Value) -> Reply {
        let token = self.admin_token.clone();
        self.send_json(method, path, Some(&token), body).await
    }

    /// A TSV body sent by the administrator.
    pub async fn admin_tsv(&self, method: &str, path: &str, tsv: &str) -> Reply {
        let token = self.admin_token.clone();
        self.request(
            method,
            path,
            Some(&token),
            "text/tab-separated-values",
            tsv.as_bytes().to_vec(),
        )
        .await
    }

    /// Exchange credentials.json for an access token.
    pub async fn exchange(&self, credentials: &Value) -> String {
        let reply = self
            .send_json(
                "POST",
                "/user/credentials/api/access_token",
                None,
                credentials,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()["access_token"].as_str().unwrap().to_string()
    }

    /// A user with the given grants, and an access token for them (scopes
    /// `user` and `data`, as the keys of Gen3's profile page).
    pub async fn user(&self, name: &str, policies: &[&str]) -> (UserRow, Value, String) {
        self.user_with_scopes(name, policies, &["user", "data"])
            .await
    }

    /// [`TestApp::user`] with a key of the given scopes.
    pub async fn user_with_scopes(
        &self,
        name: &str,
        policies: &[&str],
        scopes: &[&str],
    ) -> (UserRow, Value, String) {
        let user = auth::add_user(&self.state.store, name, None, false)
            .await
            .unwrap();
        for policy in policies {
            self.state
                .store
                .grant_user_policy(name, policy)
                .await
                .unwrap();
        }
        let credentials = auth::create_api_key(
            &self.state.store,
            &self.state.tokens,
            &user,
            scopes.iter().map(|s| s.to_string()).collect(),
            None,
        )
        .await
        .unwrap();
        let token = self.exchange(&credentials).await;
        (user, credentials, token)
    }

    /// A user with `password` and no grants.
    pub async fn password_user(&self, name: &str, password: &str) -> UserRow {
        let (user, _, _) = self.user(name, &[]).await;
        self.state
            .store
            .set_password(user.id, &auth::hash_password(password))
            .await
            .unwrap();
        user
    }

    /// A fresh commons (bundled dictionary) whose project `prog-proj` holds
    /// `records`, submitted by the administrator.
    pub async fn with_records(records: Value) -> Self {
        let app = TestApp::new(None).await;
        app.project("prog", "proj").await;
        let reply = app
            .admin_json("PUT", "/api/v0/submission/prog/proj", &records)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        app
    }

    /// [`TestApp::with_records`] with one study.
    pub async fn with_study() -> Self {
        Self::with_records(
            json!([{"type": "study", "submitter_id": "study", "projects": {"code": "proj"}}]),
        )
        .await
    }

    /// [`TestApp::with_records`] with simulated records of every type, `scale` each.
    pub async fn with_simulated(scale: usize) -> Self {
        let dictionary = dictionary::load(None).unwrap();
        Self::with_records(Value::Array(commons::simulate::records(
            &dictionary,
            "proj",
            scale,
        )))
        .await
    }

    /// Program `program` with project `code`, created by the administrator.
    pub async fn project(&self, program: &str, code: &str) {
        let reply = self
            .admin_json(
                "POST",
                "/api/v0/submission/",
                &json!({"type": "program", "name": program, "dbgap_accession_number": program}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let reply = self
            .admin_json(
                "PUT",
                &format!("/api/v0/submission/{program}"),
                &json!({"type": "project", "code": code, "name": code, "dbgap_accession_number": code}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }

    pub async fn graphql(&self, token: &str, query: &str) -> Reply {
        self.send_json(
            "POST",
            "/api/v0/submission/graphql",
            Some(token),
            &json!({"query": query}),
        )
        .await
    }

    /// Number of `node_type` records in `project_id`, as the administrator sees it.
    pub async fn count(&self, node_type: &str, project_id: &str) -> i64 {
        let token = self.admin_token.clone();
        let reply = self
            .graphql(
                &token,
                &format!("{{ n: _{node_type}_count(project_id: \"{project_id}\") }}"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        reply.json()["data"]["n"].as_i64().unwrap()
    }
}

/// An HTTP client for tests that talk to a real `commons serve` process:
/// statuses are answers, not errors.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(120)))
        .build()
        .into()
}

/// A `commons serve` process, killed when dropped (a dropped `Child` would keep running).
pub struct Server {
    pub child: std::process::Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start the test build of `commons serve` on `port` with this commons'
/// database and issuer, and wait until it answers. Its warnings and errors
/// are appended to `server.log` in the data directory.
pub fn serve(database_url: &str, data_dir: &Path, port: u16) -> Server {
    serve_with(database_url, data_dir, port, &[])
}

/// [`serve`] with more `commons serve` arguments.
pub fn serve_with(database_url: &str, data_dir: &Path, port: u16, extra: &[&str]) -> Server {
    serve_logged(database_url, data_dir, port, extra, "warn")
}

/// [`serve_with`] logging at `rust_log` (`RUST_LOG`).
pub fn serve_logged(
    database_url: &str,
    data_dir: &Path,
    port: u16,
    extra: &[&str],
    rust_log: &str,
) -> Server {
    let log_path = data_dir.join("server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    let log_tail = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_commons"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--public-url",
            PUBLIC_URL,
        ])
        .arg("--database-url")
        .arg(database_url)
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // It must be this process that answers, not one left over on the port.
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!(
                "the server on port {port} exited at start ({status}):\n{}",
                log_tail()
            );
        }
        let status = http()
            .get(format!("{}/_status", server.url))
            .call()
            .map(|r| r.status().as_u16());
        if status.ok() == Some(200) {
            return server;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not start:\n{}",
            log_tail()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Send one request to a real server (`http()`); Some(status, body) if
/// the client saw an answer.
pub fn send(method: &str, url: &str, token: &str, body: Option<String>) -> Option<(u16, Value)> {
    let agent = http();
    let auth = format!("bearer {token}");
    let result = match (method, body) {
        ("PUT", Some(body)) => agent
            .put(url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body),
        (_, Some(body)) => agent
            .post(url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body),
        ("DELETE", None) => agent.delete(url).header("Authorization", &auth).call(),
        (_, None) => agent.get(url).header("Authorization", &auth).call(),
    };
    let mut response = result.ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}
