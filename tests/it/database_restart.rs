//! PostgreSQL going away under load: while it is down the server answers 503
//! (never 500, never a hang), it recovers by itself when the database returns,
//! and no acknowledged write is lost. A PostgreSQL scenario: it runs in the
//! PostgreSQL pass of the test matrix (`COMMONS_TEST_BACKEND=postgres`) and
//! stops and starts the local cluster with pg_ctlcluster (as root in CI).

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::TestApp;
use serde_json::{Value, json};

/// Stop or start the local PostgreSQL cluster (`COMMONS_TEST_PG_CTL` overrides
/// the command, which gets `stop` or `start` appended).
fn postgres(action: &str) {
    let command = std::env::var("COMMONS_TEST_PG_CTL").unwrap_or_else(|_| {
        let version = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .max()
            })
            .unwrap_or_else(|| "15".into());
        format!("pg_ctlcluster --skip-systemctl-redirect {version} main")
    });
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} {action}"))
        .status()
        .expect("run pg_ctlcluster");
    assert!(status.success(), "`{command} {action}` failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_going_away_gives_503_then_recovers_without_losing_writes() {
    if std::env::var("COMMONS_TEST_BACKEND").as_deref() != Ok("postgres") {
        eprintln!(
            "PostgreSQL scenario: it runs in the PostgreSQL pass (COMMONS_TEST_BACKEND=postgres)"
        );
        return;
    }
    let app = TestApp::with_study().await;
    let data_dir = tempfile::tempdir().unwrap();
    let server = common::serve(&app.database_url, data_dir.path(), common::free_port());
    let url = server.url.clone();

    let token = app.admin_token.clone();
    let submit = |batch: usize| -> (u16, Vec<String>) {
        let ids: Vec<String> = (0..20).map(|i| format!("b{batch:05}x{i:02}")).collect();
        let docs: Vec<Value> = ids.iter().map(|s| json!({"type": "subject", "submitter_id": s, "studies": {"submitter_id": "study"}})).collect();
        let reply = common::http()
            .put(format!("{url}/api/v0/submission/prog/proj"))
            .header("Authorization", &format!("bearer {token}"))
            .header("Content-Type", "application/json")
            .send(Value::Array(docs).to_string());
        match reply {
            Ok(mut r) => {
                let _ = r.body_mut().read_to_vec();
                (r.status().as_u16(), ids)
            }
            Err(e) => panic!("the server must answer while the database is away: {e}"),
        }
    };

    let mut acknowledged = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    let mut batch = 0;
    let mut record = |status: u16, ids: Vec<String>, acknowledged: &mut Vec<String>| {
        *statuses.entry(status).or_insert(0) += 1;
        match status {
            200 => acknowledged.extend(ids),
            503 => {}
            other => panic!("status {other} while the database was away"),
        }
        status
    };
    for _ in 0..5 {
        let (status, ids) = submit(batch);
        batch += 1;
        assert_eq!(record(status, ids, &mut acknowledged), 200);
    }
    postgres("stop");
    // Whatever happens below, PostgreSQL comes back for the tests after this one.
    struct Restart;
    impl Drop for Restart {
        fn drop(&mut self) {
            if std::thread::panicking() {
                postgres("start");
            }
        }
    }
    let _restart = Restart;
    // Requests wait for a connection (up to the pool's 10 s), then get 503.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, ids) = submit(batch);
        batch += 1;
        if record(status, ids, &mut acknowledged) == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no 503 while PostgreSQL was stopped"
        );
    }
    postgres("start");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut streak = 0;
    while streak < 10 {
        assert!(
            Instant::now() < deadline,
            "the server did not recover by itself"
        );
        let (status, ids) = submit(batch);
        batch += 1;
        streak = if record(status, ids, &mut acknowledged) == 200 {
            streak + 1
        } else {
            0
        };
    }
    eprintln!("statuses through the outage: {statuses:?}");

    let reply = common::http()
        .post(format!("{url}/api/v0/submission/graphql"))
        .header("Authorization", &format!("bearer {token}"))
        .header("Content-Type", "application/json")
        .send(json!({"query": "{ subject(first: 0) { submitter_id } }"}).to_string());
    let mut reply = reply.unwrap();
    let body: Value = serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap();
    let stored: std::collections::BTreeSet<String> = body["data"]["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["submitter_id"].as_str().unwrap().to_string())
        .collect();
    for id in &acknowledged {
        assert!(
            stored.contains(id),
            "acknowledged {id} lost across the restart"
        );
    }
}
