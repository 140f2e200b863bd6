//! Crash consistency: large submissions and deletions while the server is
//! killed with SIGKILL at random moments, 30 times. After each restart every
//! acknowledged request is fully present, no request is half-applied,
//! natural keys stay unique and the database passes an integrity check.

use crate::common;

use std::time::Instant;

use common::TestApp;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const ROUNDS: usize = 30;
const BATCH: usize = 2000;

fn count_prefix(url: &str, token: &str, prefix: &str) -> usize {
    let query = json!({"query": format!("{{ subject(quick_search: \"{prefix}\", first: 0) {{ submitter_id }} }}")});
    let (status, body) = common::send(
        "POST",
        &format!("{url}/api/v0/submission/graphql"),
        token,
        Some(query.to_string()),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    body["data"]["subject"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_servers_never_lose_or_half_write_requests() {
    let app = TestApp::with_study().await;
    let token = app.admin_token.clone();
    let data_dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // How long one submission takes here: the kills fall within twice that,
    // so about half of them land before the answer, however fast the build
    // and the machine are (a fixed window let every submission finish first).
    // The quicker of two, so that a slow first request (cold caches, new
    // connections) does not widen the window until every kill comes late.
    let submission_time = {
        let _server = common::serve(&app.database_url, data_dir.path(), port);
        let timed = |attempt: usize| {
            let docs: Vec<Value> = (0..BATCH)
                .map(|i| json!({"type": "subject", "submitter_id": format!("calibration{attempt}x{i:05}"), "studies": {"submitter_id": "study"}}))
                .collect();
            let started = Instant::now();
            let answer = common::send(
                "PUT",
                &format!("{url}/api/v0/submission/prog/proj"),
                &token,
                Some(Value::Array(docs).to_string()),
            );
            assert_eq!(answer.map(|(status, _)| status), Some(200));
            started.elapsed()
        };
        timed(0).min(timed(1))
    };
    // Rounds whose submission was acknowledged, with the ids it created.
    let mut acknowledged: Vec<(usize, Vec<String>)> = Vec::new();
    let mut outcomes = (0, 0);

    for round in 0..ROUNDS {
        let mut server = common::serve(&app.database_url, data_dir.path(), port);
        let docs: Vec<Value> = (0..BATCH)
            .map(|i| json!({"type": "subject", "submitter_id": format!("r{round:02}x{i:05}"), "studies": {"submitter_id": "study"}}))
            .collect();
        let body = Value::Array(docs).to_string();
        // A deletion of part of an earlier acknowledged round, racing the kill too.
        let deletion = acknowledged
            .iter()
            .find(|(_, ids)| ids.len() >= 100)
            .map(|(r, ids)| (*r, ids[..100].to_vec()));
        let (submit_url, token_ref) =
            (format!("{url}/api/v0/submission/prog/proj"), token.as_str());
        let kill_after = submission_time.mul_f64(rng.random_range(0.0..2.0));
        let (submitted, deleted) = std::thread::scope(|scope| {
            let submit = scope.spawn(|| common::send("PUT", &submit_url, token_ref, Some(body)));
            let delete = scope.spawn(|| {
                deletion.as_ref().map(|(_, ids)| {
                    common::send(
                        "DELETE",
                        &format!("{submit_url}/entities/{}", ids.join(",")),
                        token_ref,
                        None,
                    )
                })
            });
            std::thread::sleep(kill_after);
            server.child.kill().unwrap(); // SIGKILL
            server.child.wait().unwrap();
            (submit.join().unwrap(), delete.join().unwrap())
        });

        let server = common::serve(&app.database_url, data_dir.path(), port);
        let prefix = format!("r{round:02}x");
        let present = count_prefix(&url, &token, &prefix);
        match submitted {
            Some((200, body)) => {
                assert_eq!(
                    present, BATCH,
                    "round {round}: an acknowledged submission lost records"
                );
                let ids = body["entities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["id"].as_str().unwrap().to_string())
                    .collect();
                acknowledged.push((round, ids));
                outcomes.0 += 1;
            }
            other => {
                // Not acknowledged: committed whole just before the kill, or not at all.
                assert!(
                    present == 0 || present == BATCH,
                    "round {round}: half-written submission ({present} of {BATCH}); client saw {other:?}"
                );
                outcomes.1 += 1;
            }
        }
        if let (Some((earlier, _)), Some(result)) = (deletion, deleted) {
            let left = count_prefix(&url, &token, &format!("r{earlier:02}x"));
            match result {
                Some((200, _)) => assert_eq!(
                    left,
                    BATCH - 100,
                    "round {round}: an acknowledged deletion was lost"
                ),
                _ => assert!(
                    left == BATCH || left == BATCH - 100,
                    "round {round}: half-applied deletion ({left} left)"
                ),
            }
            if left == BATCH - 100 {
                // Deleted: that round is no longer whole, so it is not a candidate again.
                acknowledged.retain(|(r, _)| *r != earlier);
            }
        }
        drop(server);
    }
    assert!(
        outcomes.0 > 0 && outcomes.1 > 0,
        "kills should hit both before and after the answer: {outcomes:?}"
    );

    // Uniqueness and integrity of what is left.
    let server = common::serve(&app.database_url, data_dir.path(), port);
    let (_, body) = common::send(
        "POST",
        &format!("{url}/api/v0/submission/graphql"),
        &token,
        Some(json!({"query": "{ subject(first: 0) { submitter_id } }"}).to_string()),
    )
    .unwrap();
    let all: Vec<&str> = body["data"]["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["submitter_id"].as_str().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<&&str> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "duplicated natural keys");
    drop(server);
    assert!(
        app.state
            .store
            .integrity_problems()
            .await
            .unwrap()
            .is_empty()
    );
}
