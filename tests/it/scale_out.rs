//! Two `commons serve` processes on one database, as behind a load balancer:
//! tokens of one are accepted by the other, and concurrent overlapping
//! submissions through both never duplicate an entity or lose an
//! acknowledged one. Runs on the backend under test (SQLite or PostgreSQL).

use crate::common;

use std::collections::BTreeSet;

use common::TestApp;
use serde_json::{Value, json};

fn call(method: &str, url: &str, token: &str, body: &Value) -> (u16, Value) {
    let agent = common::http();
    let auth = format!("bearer {token}");
    let mut response = match method {
        "PUT" => agent
            .put(url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.to_string()),
        "POST" => agent
            .post(url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.to_string()),
        "DELETE" => agent.delete(url).header("Authorization", &auth).call(),
        _ => agent.get(url).header("Authorization", &auth).call(),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_tokens_and_never_duplicate_entities() {
    let app = TestApp::new(None).await;
    app.project("prog", "proj").await;
    let token = app.admin_token.clone();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let servers = [
        common::serve(&app.database_url, dirs[0].path(), common::free_port()),
        common::serve(&app.database_url, dirs[1].path(), common::free_port()),
    ];

    // A token issued by this test's instance is accepted by both processes.
    for server in &servers {
        let (status, body) = call(
            "GET",
            &format!("{}/user/user", server.url),
            &token,
            &Value::Null,
        );
        assert_eq!(status, 200, "{body}");
    }
    let submit = |server: &common::Server, docs: Value| {
        call(
            "PUT",
            &format!("{}/api/v0/submission/prog/proj", server.url),
            &token,
            &docs,
        )
    };
    let (status, body) = submit(
        &servers[0],
        json!([{"type": "study", "submitter_id": "study", "projects": {"code": "proj"}}]),
    );
    assert_eq!(status, 200, "{body}");

    // 8 clients, alternating servers, each sending 40 subjects: 20 shared by all, 20 their own.
    let outcomes: Vec<(usize, u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|client| {
                let server = &servers[client % 2];
                scope.spawn(move || {
                    let mut docs = Vec::new();
                    for i in 0..20 {
                        docs.push(json!({"type": "subject", "submitter_id": format!("shared-{i:02}"), "studies": {"submitter_id": "study"}}));
                        docs.push(json!({"type": "subject", "submitter_id": format!("own-{client}-{i:02}"), "studies": {"submitter_id": "study"}}));
                    }
                    let (status, body) = submit(server, Value::Array(docs));
                    (client, status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut acknowledged = Vec::new();
    for (client, status, body) in &outcomes {
        match status {
            200 => acknowledged.push(*client),
            400 => {
                let errors = body["transactional_errors"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert!(
                    errors.iter().any(|e| e["type"] == "NOT_UNIQUE"),
                    "client {client}: unexpected refusal {body}"
                );
            }
            other => panic!("client {client}: status {other}: {body}"),
        }
    }
    assert!(!acknowledged.is_empty(), "at least one submission must win");

    let (_, body) = call(
        "POST",
        &format!("{}/api/v0/submission/graphql", servers[1].url),
        &token,
        &json!({"query": "{ subject(first: 0) { submitter_id } }"}),
    );
    let stored: Vec<String> = body["data"]["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["submitter_id"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(
        unique.len(),
        stored.len(),
        "duplicated entities: {stored:?}"
    );
    for i in 0..20 {
        assert!(
            unique.contains(&format!("shared-{i:02}")),
            "shared-{i:02} lost"
        );
    }
    for client in &acknowledged {
        for i in 0..20 {
            assert!(
                unique.contains(&format!("own-{client}-{i:02}")),
                "acknowledged own-{client}-{i:02} lost"
            );
        }
    }
    let refused: Vec<usize> = (0..8).filter(|c| !acknowledged.contains(c)).collect();
    for client in refused {
        assert!(
            !unique
                .iter()
                .any(|s| s.starts_with(&format!("own-{client}-"))),
            "a refused submission was half-written"
        );
    }
    assert_eq!(app.count("subject", "prog-proj").await, stored.len() as i64);

    // 8 clients, alternating servers, delete the same shared subjects at once:
    // whoever wins, each node is subtracted from the maintained counts once.
    let (_, body) = call(
        "POST",
        &format!("{}/api/v0/submission/graphql", servers[0].url),
        &token,
        &json!({"query": "{ subject(first: 0, quick_search: \"shared-\") { id } }"}),
    );
    let shared: Vec<String> = body["data"]["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(shared.len(), 20);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|client| {
                let url = format!(
                    "{}/api/v0/submission/prog/proj/entities/{}",
                    servers[client % 2].url,
                    shared.join(",")
                );
                let token = &token;
                scope.spawn(move || call("DELETE", &url, token, &Value::Null).0)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.contains(&200),
        "one deletion must win: {statuses:?}"
    );
    assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    assert_eq!(
        app.count("subject", "prog-proj").await,
        stored.len() as i64 - 20
    );
    assert_eq!(
        app.state.store.integrity_problems().await.unwrap(),
        Vec::<String>::new()
    );
}

/// Servers keep the callers they verified, so a request reads nothing to
/// check its token; yet whatever takes access away holds on every server
/// by the time it is answered: a grant revoked through one server, a key
/// revoked by the `commons` command.
#[tokio::test(flavor = "multi_thread")]
async fn kept_callers_lose_access_everywhere_once_it_is_taken_away() {
    let app = TestApp::new(None).await;
    app.project("prog", "proj").await;
    let reader = app
        .admin_json(
            "POST",
            "/authz/policy",
            &json!({"id": "proj_reader", "role_ids": ["reader"], "resource_paths": ["/programs/prog/projects/proj"]}),
        )
        .await;
    assert_eq!(reader.status.as_u16(), 201, "{}", reader.text());
    let (_, credentials, token) = app.user("eve", &["proj_reader"]).await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let servers = [
        common::serve(&app.database_url, dirs[0].path(), common::free_port()),
        common::serve(&app.database_url, dirs[1].path(), common::free_port()),
    ];
    let grants = |server: &common::Server| {
        let (status, body) = call(
            "GET",
            &format!("{}/user/user", server.url),
            &token,
            &Value::Null,
        );
        (status, body["authz"].as_object().map(|m| m.len()))
    };
    // Verified, then kept: the servers' watches have read the epoch since.
    for server in &servers {
        assert_eq!(grants(server), (200, Some(1)));
    }
    tokio::time::sleep(commons::store::IDENTITY_SETTLE).await;
    for server in &servers {
        assert_eq!(grants(server), (200, Some(1)));
    }

    let started = std::time::Instant::now();
    let (status, body) = call(
        "DELETE",
        &format!("{}/authz/user/eve/policy/proj_reader", servers[0].url),
        &app.admin_token,
        &Value::Null,
    );
    assert!(status < 300, "{status} {body}");
    assert!(
        started.elapsed() >= commons::store::IDENTITY_SETTLE,
        "a revocation is answered once every server has seen it"
    );
    for server in &servers {
        assert_eq!(
            grants(server),
            (200, Some(0)),
            "the grant is gone everywhere"
        );
    }

    let revoke = std::process::Command::new(env!("CARGO_BIN_EXE_commons"))
        .args([
            "keys",
            "revoke",
            credentials["key_id"].as_str().unwrap(),
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
    for server in &servers {
        assert_eq!(grants(server).0, 401, "the revoked key's token is refused");
    }
}
