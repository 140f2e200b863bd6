//! Load: 100 concurrent clients against one server process for
//! `COMMONS_LOAD_SECONDS` (default 10; run with 60 or more for the full test),
//! mixing GraphQL reads, exports, token exchanges and overlapping upserts.
//! No request may get a 5xx, and no record may be lost or duplicated.
//! Latency percentiles per kind of request are printed. Also: the server
//! process runs without transparent huge pages (its idle memory depends on it).

use crate::common;

use std::collections::BTreeMap;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::TestApp;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const CLIENTS: usize = 100;
const POOL: usize = 200;

#[derive(Default)]
struct Tally {
    latencies: BTreeMap<&'static str, Vec<f64>>,
    statuses: BTreeMap<(&'static str, u16), usize>,
    /// submitter_ids of upserts the server acknowledged.
    acknowledged: std::collections::BTreeSet<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_clients_get_no_server_errors_and_lose_nothing() {
    let seconds: u64 = std::env::var("COMMONS_LOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let app = TestApp::with_study().await;
    let credentials = {
        let admin = app.admin_user().await;
        commons::auth::create_api_key(
            &app.state.store,
            &app.state.tokens,
            &admin,
            vec!["user".into()],
            None,
        )
        .await
        .unwrap()
    };
    let data_dir = tempfile::tempdir().unwrap();
    let server = common::serve(&app.database_url, data_dir.path(), common::free_port());
    let url = server.url.clone();

    let token = app.admin_token.clone();
    let tally = Mutex::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (url, token, credentials, tally) = (&url, &token, &credentials, &tally);
            scope.spawn(move || {
                let agent = common::http();
                let auth = format!("bearer {token}");
                let mut rng = rand::rngs::StdRng::seed_from_u64(client as u64);
                while Instant::now() < deadline {
                    let roll = rng.random_range(0..100);
                    let t = Instant::now();
                    let (kind, result, upserted) = if roll < 40 {
                        let query = json!({"query": format!("{{ subject(first: 10, offset: {}) {{ id submitter_id }} _subject_count }}", rng.random_range(0..POOL))});
                        let r = agent.post(format!("{url}/api/v0/submission/graphql")).header("Authorization", &auth).header("Content-Type", "application/json").send(query.to_string());
                        ("graphql", r, Vec::new())
                    } else if roll < 60 {
                        let r = agent.get(format!("{url}/api/v0/submission/prog/proj/export/?node_label=subject&format=tsv")).header("Authorization", &auth).call();
                        ("export", r, Vec::new())
                    } else if roll < 70 {
                        let r = agent.post(format!("{url}/user/credentials/api/access_token")).header("Content-Type", "application/json").send(credentials.to_string());
                        ("token", r, Vec::new())
                    } else {
                        let start = rng.random_range(0..POOL - 10);
                        let ids: Vec<String> = (start..start + 10).map(|k| format!("load-{k:04}")).collect();
                        let docs: Vec<Value> = ids
                            .iter()
                            .map(|sid| json!({"type": "subject", "submitter_id": sid, "studies": {"submitter_id": "study"}, "cohort": format!("c{client}")}))
                            .collect();
                        let r = agent.put(format!("{url}/api/v0/submission/prog/proj")).header("Authorization", &auth).header("Content-Type", "application/json").send(Value::Array(docs).to_string());
                        ("upsert", r, ids)
                    };
                    let mut response = result.expect("the server answers every request");
                    let status = response.status().as_u16();
                    let _ = response.body_mut().read_to_vec();
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    let mut tally = tally.lock().unwrap();
                    tally.latencies.entry(kind).or_default().push(ms);
                    *tally.statuses.entry((kind, status)).or_default() += 1;
                    if kind == "upsert" && status == 200 {
                        tally.acknowledged.extend(upserted);
                    }
                }
            });
        }
    });

    let tally = tally.into_inner().unwrap();
    eprintln!("load: {CLIENTS} clients for {seconds} s");
    for (kind, mut samples) in tally.latencies.clone() {
        samples.sort_by(f64::total_cmp);
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        eprintln!(
            "  {kind}: {} requests, p50 {:.1} ms, p99 {:.1} ms",
            samples.len(),
            at(0.5),
            at(0.99)
        );
    }
    eprintln!("  statuses: {:?}", tally.statuses);
    let server_errors: Vec<_> = tally
        .statuses
        .iter()
        .filter(|((_, s), _)| *s >= 500)
        .collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
    for (kind, status) in tally.statuses.keys() {
        let expected = *status == 200 || (*kind == "upsert" && *status == 400);
        assert!(expected, "{kind} answered {status}");
    }

    let reply = app
        .graphql(&app.admin_token, "{ subject(first: 0) { submitter_id } }")
        .await;
    let stored: Vec<String> = reply.json()["data"]["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["submitter_id"].as_str().unwrap().to_string())
        .collect();
    let unique: std::collections::BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "duplicated records");
    for sid in &tally.acknowledged {
        assert!(unique.contains(sid), "acknowledged {sid} lost");
    }
}

/// `main` turns transparent huge pages off before anything else: mimalloc
/// asks for them, and a 2 MiB page stays resident whole while a few KiB of it
/// are live (idle memory with the largest dictionary: 64 MB with them, 50
/// without).
#[tokio::test]
async fn the_server_process_runs_without_transparent_huge_pages() {
    let app = TestApp::new(None).await;
    let data_dir = tempfile::tempdir().unwrap();
    let server = common::serve(&app.database_url, data_dir.path(), common::free_port());
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let thp = status
        .lines()
        .find_map(|line| line.strip_prefix("THP_enabled:"))
        .map(str::trim);
    assert_eq!(thp, Some("0"), "{status}");
}
