//! TLS to PostgreSQL, as managed services require: `--database-url
//! postgres://…?sslmode=require|verify-ca|verify-full&sslrootcert=…`. The
//! test makes a certificate authority and a server certificate for
//! 127.0.0.1, has the local PostgreSQL serve them, and connects as an
//! operator would; a certificate from another authority is refused.
//!
//! PostgreSQL reads its key only from a file its own user owns with mode
//! 0600: its superuser writes the files (`COPY … TO` and `chmod` through
//! `COPY … TO PROGRAM`, both run as the server's user), and `ALTER SYSTEM`
//! plus a reload points
//! the server at them; the previous settings come back at the end. A
//! PostgreSQL scenario: it runs in the PostgreSQL pass of the test matrix,
//! after the other tests (the server's certificate changes under it).

use crate::common;

use std::path::Path;
use std::process::Command;

use futures::FutureExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sqlx::{Connection, PgConnection};

fn admin_url() -> String {
    std::env::var("COMMONS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A certificate authority: its certificate (PEM) and its issuer.
fn authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let certificate = params.self_signed(&key).unwrap();
    (certificate.pem(), Issuer::new(params, key))
}

/// Write `text` to `path` on the database server's side, as its user.
async fn write_as_server(conn: &mut PgConnection, path: &str, text: &str) {
    // One row per line; PEM lines hold no quote, backslash or tab.
    let rows: Vec<String> = text.lines().map(|l| format!("('{l}')")).collect();
    sqlx::query(&format!(
        "COPY (SELECT line FROM (VALUES {}) AS pem (line)) TO '{path}'",
        rows.join(", ")
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(&format!("COPY (SELECT 1) TO PROGRAM 'chmod 600 {path}'"))
        .execute(conn)
        .await
        .unwrap();
}

async fn setting(conn: &mut PgConnection, name: &str) -> String {
    sqlx::query_scalar(&format!("SHOW {name}"))
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn point_server_at(conn: &mut PgConnection, cert: &str, key: &str) {
    for (name, value) in [("ssl_cert_file", cert), ("ssl_key_file", key)] {
        sqlx::query(&format!("ALTER SYSTEM SET {name} = '{value}'"))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    reload(conn, cert).await;
}

/// Back to the certificate of the server's configuration file.
async fn restore_server(conn: &mut PgConnection, previous_cert: &str) {
    for name in ["ssl_cert_file", "ssl_key_file"] {
        sqlx::query(&format!("ALTER SYSTEM RESET {name}"))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    reload(conn, previous_cert).await;
}

/// Reload the configuration and wait until a new session sees `cert`
/// (the postmaster reloads asynchronously).
async fn reload(conn: &mut PgConnection, cert: &str) {
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut *conn)
        .await
        .unwrap();
    for _ in 0..100 {
        let mut fresh = PgConnection::connect(&admin_url()).await.unwrap();
        if setting(&mut fresh, "ssl_cert_file").await == cert {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("PostgreSQL did not take the certificate setting {cert}");
}

/// `commons migrate` against `url`: (succeeded, stderr).
fn migrate(url: &str, data_dir: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_commons"))
        .arg("migrate")
        .arg("--database-url")
        .arg(url)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_over_tls_with_a_verified_certificate_and_a_wrong_authority_refused() {
    if std::env::var("COMMONS_TEST_BACKEND").as_deref() != Ok("postgres") {
        return;
    }
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    let data_directory = setting(&mut admin, "data_directory").await;
    let previous_cert = setting(&mut admin, "ssl_cert_file").await;
    assert_eq!(
        setting(&mut admin, "ssl").await,
        "on",
        "the local PostgreSQL must have ssl = on"
    );

    let (ca_pem, ca) = authority("Commons test authority");
    let (other_ca_pem, _) = authority("Someone else's authority");
    let server_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let server_cert = params.signed_by(&server_key, &ca).unwrap();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let cert_path = format!("{data_directory}/commons-test-{tag}.crt");
    let key_path = format!("{data_directory}/commons-test-{tag}.key");
    write_as_server(&mut admin, &cert_path, &server_cert.pem()).await;
    write_as_server(&mut admin, &key_path, &server_key.serialize_pem()).await;

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    std::fs::write(&other_ca_file, other_ca_pem).unwrap();
    let database = format!("commons_tls_{tag}");
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&mut admin)
        .await
        .unwrap();

    point_server_at(&mut admin, &cert_path, &key_path).await;
    let base = admin_url().rsplit_once('/').unwrap().0.to_string();
    let url = |mode: &str, root: &Path| {
        format!(
            "{base}/{database}?sslmode={mode}&sslrootcert={}",
            root.display()
        )
    };
    let outcome = std::panic::AssertUnwindSafe(async {
        for mode in ["require", "verify-ca", "verify-full"] {
            let (ok, stderr) = migrate(&url(mode, &ca_file), dir.path());
            assert!(ok, "sslmode={mode} with the right authority: {stderr}");
        }
        // The server answers over TLS: its sessions on the database are encrypted.
        let port = common::free_port();
        let server = common::serve(&url("verify-full", &ca_file), dir.path(), port);
        let reply = common::http()
            .get(format!("{}/index/index/?limit=1", server.url))
            .call()
            .unwrap();
        assert_eq!(reply.status().as_u16(), 200);
        let encrypted: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE datname = $1 AND ssl",
        )
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        let plain: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE datname = $1 AND NOT ssl",
        )
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert!(encrypted > 0, "no encrypted session on {database}");
        assert_eq!(plain, 0, "a plain session on {database}");
        drop(server);

        for mode in ["verify-ca", "verify-full"] {
            let (ok, stderr) = migrate(&url(mode, &other_ca_file), dir.path());
            assert!(
                !ok,
                "sslmode={mode} accepted a certificate of another authority"
            );
            assert!(
                stderr.to_lowercase().contains("certificate"),
                "sslmode={mode}: the refusal should name the certificate: {stderr}"
            );
        }
    })
    .catch_unwind()
    .await;

    restore_server(&mut admin, &previous_cert).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
