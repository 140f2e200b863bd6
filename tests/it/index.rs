//! The file index (indexd's API under `/index`) and its tie to data-file
//! nodes. A data-file node and its index record are one fact written in two
//! tables: a node whose `object_id` names no record cannot be downloaded, and
//! a record without its node is a file nobody can find or delete through the
//! submission API. These tests hold the two together where it is hardest:
//! a server killed in the middle of a large data-file submission, a batch
//! refused because one of its files contradicts the index, and the index's
//! own writes, which need the `indexd` grant and the record's current `rev`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::TestApp;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use commons::store::{IndexQuery, IndexRecord, PolicyRow, RoleRow, Store};

const PROJECT_ID: &str = "prog-proj";
/// The `authz` a submission gives the records of project `prog-proj`.
const AUTHZ: &str = "/programs/prog/projects/proj";
const SUBMIT: &str = "/api/v0/submission/prog/proj";

/// A `clinical_file` node (a data file of the bundled dictionary) linked by `links`.
fn clinical_file(submitter_id: &str, md5: &str, size: i64, links: Value) -> Value {
    let mut doc = json!({
        "type": "clinical_file",
        "submitter_id": submitter_id,
        "file_name": format!("{submitter_id}.tsv"),
        "file_size": size,
        "md5sum": md5,
        "data_category": "Clinical",
        "data_type": "Clinical Supplement",
        "data_format": "TSV",
    });
    let (Value::Object(doc_fields), Value::Object(link_fields)) = (&mut doc, links) else {
        unreachable!("both are objects")
    };
    doc_fields.extend(link_fields);
    doc
}

fn to_study() -> Value {
    json!({"studies": {"submitter_id": "study"}})
}

/// A number GraphQL may answer as an integer or a float.
fn int(value: &Value) -> i64 {
    value
        .as_i64()
        .or_else(|| value.as_f64().map(|f| f as i64))
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// Every record of the index (its listing pages by did; one page holds them all).
async fn all_records(store: &Store) -> Vec<IndexRecord> {
    store
        .index_list(&IndexQuery {
            limit: i64::from(u32::MAX),
            ..IndexQuery::default()
        })
        .await
        .unwrap()
}

async fn records_with_md5(store: &Store, md5: &str) -> Vec<IndexRecord> {
    store
        .index_list(&IndexQuery {
            hashes: vec![("md5".into(), md5.into())],
            limit: 100,
            ..IndexQuery::default()
        })
        .await
        .unwrap()
}

// ------------------------------------------------- crash during submission

/// Files per killed submission.
const BATCH: usize = 2000;
/// Killed submissions.
const ROUNDS: usize = 8;
/// Subjects the files hang off, created first in an acknowledged request.
const SUBJECTS: usize = 40;

/// The `round`-th batch of files: submitter ids `f<round>x<i>`, each with its own md5.
fn file_batch(round: usize) -> Vec<Value> {
    (0..BATCH)
        .map(|i| {
            clinical_file(
                &format!("f{round:02}x{i:05}"),
                &format!("{round:08x}{i:024x}"),
                1 + i as i64,
                json!({"subjects": {"submitter_id": format!("subject-{:03}", i % SUBJECTS)}}),
            )
        })
        .collect()
}

/// A data-file node as the restarted server lists it.
struct FileNode {
    id: String,
    object_id: String,
    md5: String,
    size: i64,
}

/// Every check of the node-record tie, after a restart; returns the nodes
/// by submitter_id.
async fn check_no_orphans(url: &str, token: &str, store: &Store) -> BTreeMap<String, FileNode> {
    let query = json!({"query": format!(
        "{{ clinical_file(project_id: \"{PROJECT_ID}\", first: 0) {{ id submitter_id object_id md5sum file_size }} }}"
    )});
    let (status, body) = common::send(
        "POST",
        &format!("{url}/api/v0/submission/graphql"),
        token,
        Some(query.to_string()),
    )
    .expect("the restarted server answers");
    assert_eq!(status, 200, "{body}");
    let mut nodes = BTreeMap::new();
    for node in body["data"]["clinical_file"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
    {
        let submitter_id = node["submitter_id"].as_str().unwrap().to_string();
        let object_id = node["object_id"]
            .as_str()
            .unwrap_or_else(|| panic!("a data-file node without object_id: {node}"))
            .to_string();
        let file = FileNode {
            id: node["id"].as_str().unwrap().to_string(),
            object_id,
            md5: node["md5sum"].as_str().unwrap().to_string(),
            size: int(&node["file_size"]),
        };
        assert!(nodes.insert(submitter_id, file).is_none(), "duplicate node");
    }
    let by_object_id: BTreeMap<&str, &FileNode> =
        nodes.values().map(|n| (n.object_id.as_str(), n)).collect();
    assert_eq!(
        by_object_id.len(),
        nodes.len(),
        "two nodes share an object_id"
    );

    let records = all_records(store).await;
    let by_did: BTreeMap<&str, &IndexRecord> =
        records.iter().map(|r| (r.did.as_str(), r)).collect();
    for (submitter_id, node) in &nodes {
        let record = by_did.get(node.object_id.as_str()).unwrap_or_else(|| {
            panic!(
                "node {submitter_id}: its object_id {} has no index record",
                node.object_id
            )
        });
        assert_eq!(
            record.hashes.get("md5"),
            Some(&node.md5),
            "{submitter_id}: md5"
        );
        assert_eq!(record.size, Some(node.size), "{submitter_id}: size");
        assert_eq!(record.authz, vec![AUTHZ.to_string()], "{submitter_id}");
    }
    for record in &records {
        assert!(
            by_object_id.contains_key(record.did.as_str()),
            "index record {} (md5 {:?}) has no node",
            record.did,
            record.hashes.get("md5")
        );
    }
    // The records are found by their authz too: their terms were written with them.
    let by_authz: BTreeSet<String> = store
        .index_list(&IndexQuery {
            authz: Some(vec![AUTHZ.into()]),
            limit: i64::from(u32::MAX),
            ..IndexQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.did)
        .collect();
    assert_eq!(
        by_authz,
        by_did.keys().map(|d| d.to_string()).collect(),
        "the authz listing differs from the records"
    );
    let (status, stats) = common::send("GET", &format!("{url}/index/_stats"), token, None).unwrap();
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["fileCount"], json!(records.len()), "{stats}");
    nodes
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_during_a_large_data_file_submission_leaves_no_orphans() {
    let app = TestApp::with_study().await;
    let token = app.admin_token.clone();
    let data_dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let submit_url = format!("{url}{SUBMIT}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    // Rounds whose submission was acknowledged, with the node ids it answered.
    let mut acknowledged: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let submit = |round: usize| {
        let body = Value::Array(file_batch(round)).to_string();
        common::send("PUT", &submit_url, &token, Some(body))
    };
    let ids_of = |body: &Value| -> BTreeSet<String> {
        body["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };

    let mut server = common::serve(&app.database_url, data_dir.path(), port);
    let subjects: Vec<Value> = (0..SUBJECTS)
        .map(|s| json!({"type": "subject", "submitter_id": format!("subject-{s:03}"), "studies": {"submitter_id": "study"}}))
        .collect();
    let answer = common::send(
        "PUT",
        &submit_url,
        &token,
        Some(Value::Array(subjects).to_string()),
    );
    assert_eq!(answer.map(|(status, _)| status), Some(200));
    // How long one batch takes on a server just started, as every killed
    // round's is: the kills spread over twice that, so some land before
    // the answer and some after. The slower of two, so that a quick one
    // does not put every kill before the answer.
    let mut submission_time = Duration::ZERO;
    for round in 0..2 {
        drop(server);
        server = common::serve(&app.database_url, data_dir.path(), port);
        let begun = Instant::now();
        let (status, body) = submit(round).expect("calibration answered");
        assert_eq!(status, 200, "{body}");
        submission_time = submission_time.max(begun.elapsed());
        acknowledged.insert(round, ids_of(&body));
    }

    let mut outcomes = (0, 0);
    for kill in 0..ROUNDS {
        let round = kill + 2;
        // One kill in each of ROUNDS equal slices of [0, 2) submission times.
        let slice = (kill as f64 + rng.random_range(0.0..1.0)) * 2.0 / ROUNDS as f64;
        let kill_after = submission_time.mul_f64(slice);
        // Killed at that moment, or as soon as the answer is in if that is
        // sooner (then the kill tests that the acknowledged files last).
        let submitted = std::thread::scope(|scope| {
            let (answered, answer) = std::sync::mpsc::channel();
            scope.spawn(move || answered.send(submit(round)));
            let early = answer.recv_timeout(kill_after).ok();
            server.child.kill().unwrap(); // SIGKILL
            server.child.wait().unwrap();
            early.unwrap_or_else(|| answer.recv().unwrap())
        });
        server = common::serve(&app.database_url, data_dir.path(), port);
        let nodes = check_no_orphans(&url, &token, &app.state.store).await;
        let prefix = format!("f{round:02}x");
        let present: BTreeSet<String> = nodes
            .iter()
            .filter(|(s, _)| s.starts_with(&prefix))
            .map(|(_, n)| n.id.clone())
            .collect();
        match submitted {
            Some((200, body)) => {
                assert_eq!(
                    present,
                    ids_of(&body),
                    "round {round}: an acknowledged submission is not what is stored"
                );
                acknowledged.insert(round, present);
                outcomes.0 += 1;
            }
            other => {
                assert!(
                    present.is_empty() || present.len() == BATCH,
                    "round {round}: half-written submission ({} of {BATCH}); client saw {other:?}",
                    present.len()
                );
                outcomes.1 += 1;
            }
        }
        for (earlier, ids) in &acknowledged {
            let prefix = format!("f{earlier:02}x");
            let stored: BTreeSet<String> = nodes
                .iter()
                .filter(|(s, _)| s.starts_with(&prefix))
                .map(|(_, n)| n.id.clone())
                .collect();
            assert_eq!(&stored, ids, "round {earlier}: acknowledged files lost");
        }
        // The alias a submission gives each record resolves to the node's record.
        let (&last, _) = acknowledged.last_key_value().unwrap();
        let submitter_id = format!("f{last:02}x{:05}", BATCH - 1);
        let (status, record) = common::send(
            "GET",
            &format!("{url}/index/{PROJECT_ID}/{submitter_id}"),
            &token,
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{record}");
        assert_eq!(
            record["did"].as_str(),
            Some(&*nodes[&submitter_id].object_id)
        );
    }
    assert!(
        outcomes.0 > 0 && outcomes.1 > 0,
        "kills should hit both before and after the answer: {outcomes:?}"
    );
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

// --------------------------------------------------- contradicting files

/// A batch with one new file and one that contradicts the index is refused
/// whole: the new file's node and record are not written either.
#[tokio::test]
async fn a_contradicting_data_file_writes_neither_node_nor_record() {
    let app = TestApp::with_study().await;
    let store = &app.state.store;
    let first_md5 = "0123456789abcdef0123456789abcdef";
    let reply = app
        .admin_json(
            "PUT",
            SUBMIT,
            &json!([clinical_file("cf-first", first_md5, 1234, to_study())]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let registered = records_with_md5(store, first_md5).await;
    assert_eq!(registered.len(), 1, "{registered:?}");
    let did = registered[0].did.clone();
    let nodes = app
        .graphql(
            &app.admin_token,
            "{ clinical_file(first: 0) { submitter_id object_id } }",
        )
        .await
        .json();
    assert_eq!(
        nodes["data"]["clinical_file"],
        json!([{"submitter_id": "cf-first", "object_id": did}])
    );
    let stats_before = app.get("/index/_stats", None).await.json();
    assert_eq!(stats_before, json!({"fileCount": 1, "totalFileSize": 1234}));
    let record_before = app.get(&format!("/index/index/{did}"), None).await;
    assert_eq!(record_before.status, StatusCode::OK);
    let record_before = record_before.json();

    let unindexed = "00000000-0000-4000-8000-00000000abcd";
    // (case, the new file's md5, the contradicting nodes, the did they name)
    let cases = [
        (
            "md5",
            "11111111111111111111111111111111",
            vec![clinical_file(
                "cf-contra-md5",
                "22222222222222222222222222222222",
                1234,
                json!({"object_id": did, "studies": {"submitter_id": "study"}}),
            )],
        ),
        (
            "size",
            "33333333333333333333333333333333",
            vec![clinical_file(
                "cf-contra-size",
                first_md5,
                1235,
                json!({"object_id": did, "studies": {"submitter_id": "study"}}),
            )],
        ),
        (
            // Both name a did no record has yet: the first would register it.
            "same-batch",
            "44444444444444444444444444444444",
            vec![
                clinical_file(
                    "cf-registers",
                    "55555555555555555555555555555555",
                    10,
                    json!({"object_id": unindexed, "studies": {"submitter_id": "study"}}),
                ),
                clinical_file(
                    "cf-contra-same-batch",
                    "66666666666666666666666666666666",
                    10,
                    json!({"object_id": unindexed, "studies": {"submitter_id": "study"}}),
                ),
            ],
        ),
        (
            // The first file itself, changed: its node already names the record.
            "update",
            "77777777777777777777777777777777",
            vec![clinical_file(
                "cf-first",
                "88888888888888888888888888888888",
                1234,
                to_study(),
            )],
        ),
    ];
    for (case, new_md5, contradicting) in &cases {
        let new_file = clinical_file(&format!("cf-new-{case}"), new_md5, 777, to_study());
        let mut batch = vec![new_file];
        batch.extend(contradicting.iter().cloned());
        let reply = app.admin_json("PUT", SUBMIT, &Value::Array(batch)).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{case}: {}",
            reply.text()
        );
        let body = reply.json();
        assert_eq!(body["success"], json!(false), "{case}: {body}");
        let entities = body["entities"].as_array().unwrap();
        let mismatches: Vec<(&Value, &str)> = entities
            .iter()
            .flat_map(|e| {
                e["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(move |err| Some((e, err["message"].as_str()?)))
            })
            .filter(|(_, m)| m.starts_with("Provided hash ("))
            .collect();
        assert_eq!(mismatches.len(), 1, "{case}: {body}");
        let (entity, message) = mismatches[0];
        assert!(message.contains("do not match"), "{case}: {message}");
        assert_eq!(
            entity["unique_keys"][0]["submitter_id"],
            contradicting.last().unwrap()["submitter_id"],
            "{case}: the error is on the contradicting node: {body}"
        );

        // Nothing of the batch was written: no node, no record.
        let nodes = app
            .graphql(
                &app.admin_token,
                "{ clinical_file(first: 0) { submitter_id object_id md5sum } }",
            )
            .await
            .json();
        assert_eq!(
            nodes["data"]["clinical_file"],
            json!([{"submitter_id": "cf-first", "object_id": did, "md5sum": first_md5}]),
            "{case}"
        );
        let export = app
            .get(
                &format!("{SUBMIT}/export/?node_label=clinical_file&format=json"),
                Some(&app.admin_token),
            )
            .await;
        assert_eq!(export.status, StatusCode::OK, "{}", export.text());
        let exported: Vec<Value> = export.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["submitter_id"].clone())
            .collect();
        assert_eq!(exported, vec![json!("cf-first")], "{case}");
        assert_eq!(
            app.get("/index/_stats", None).await.json(),
            stats_before,
            "{case}"
        );
        assert!(records_with_md5(store, new_md5).await.is_empty(), "{case}");
        for contra in contradicting {
            let md5 = contra["md5sum"].as_str().unwrap();
            if md5 != first_md5 {
                assert!(records_with_md5(store, md5).await.is_empty(), "{case}");
            }
        }
        let unindexed_record = app.get(&format!("/index/index/{unindexed}"), None).await;
        assert_eq!(unindexed_record.status, StatusCode::NOT_FOUND, "{case}");
        let record = app.get(&format!("/index/index/{did}"), None).await.json();
        assert_eq!(
            record, record_before,
            "{case}: the first file's record changed"
        );
    }

    // The new files alone are fine: the refusals above were the contradictions'.
    let new_files: Vec<Value> = cases
        .iter()
        .map(|(case, md5, _)| clinical_file(&format!("cf-new-{case}"), md5, 777, to_study()))
        .collect();
    let reply = app
        .admin_json("PUT", SUBMIT, &Value::Array(new_files))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        app.get("/index/_stats", None).await.json(),
        json!({"fileCount": 5, "totalFileSize": 1234 + 4 * 777})
    );
    assert_eq!(app.count("clinical_file", PROJECT_ID).await, 5);
}

// ------------------------------------------------------ the index's writes

fn receipt_keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    keys
}

fn assert_error(reply: &common::Reply, status: StatusCode, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
    let body = reply.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: indexd's {{\"error\": ...}} expected, got {body}"
    );
}

#[tokio::test]
async fn index_writes_need_grants_and_the_right_rev() {
    let app = TestApp::new(None).await;
    app.project("prog", "proj").await;
    app.state
        .store
        .upsert_policy(&PolicyRow {
            id: "proj-reader".into(),
            role_ids: vec!["reader".into()],
            resource_paths: vec![AUTHZ.into()],
        })
        .await
        .unwrap();
    let (_, _, reader) = app.user("reader", &["proj-reader"]).await;
    let reader = Some(reader.as_str());
    let md5 = "0cc175b9c0f1b6a831c399e269772661";
    let body = json!({
        "form": "object",
        "size": 123,
        "hashes": {"md5": md5},
        "urls": ["s3://bucket/a.tsv"],
        "authz": [AUTHZ],
        "file_name": "a.tsv",
    });
    let empty = json!({"fileCount": 0, "totalFileSize": 0});

    // A reader may read the project's records but not write them.
    let reply = app.send_json("POST", "/index/index/", reader, &body).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "reader's POST");
    assert_eq!(app.get("/index/_stats", None).await.json(), empty);
    let listed = app
        .get(&format!("/index/index/?hash=md5:{md5}"), None)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    assert_eq!(listed.json()["records"], json!([]));
    let reply = app.send_json("POST", "/index/index/", None, &body).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "anonymous POST");

    // The administrator may: the answer is the receipt.
    let reply = app.admin_json("POST", "/index/index/", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let created = reply.json();
    assert_eq!(receipt_keys(&created), ["baseid", "did", "rev"]);
    let did = created["did"].as_str().unwrap().to_string();
    let rev = created["rev"].as_str().unwrap().to_string();
    let baseid = created["baseid"].as_str().unwrap().to_string();
    assert_ne!(did, baseid);
    let path = format!("/index/index/{did}");
    let stored = app.get(&path, None).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text());
    let stored = stored.json();
    assert_eq!(stored["rev"], json!(rev));
    assert_eq!(stored["baseid"], json!(baseid));
    assert_eq!(stored["hashes"], json!({"md5": md5}));
    assert_eq!(stored["size"], json!(123));
    assert_eq!(stored["urls"], json!(["s3://bucket/a.tsv"]));
    assert_eq!(stored["authz"], json!([AUTHZ]));
    assert_eq!(
        app.get("/index/_stats", None).await.json(),
        json!({"fileCount": 1, "totalFileSize": 123})
    );

    // A write names the rev it read: a wrong or missing one changes nothing.
    let change = json!({"urls": ["s3://bucket/b.tsv"]});
    let reply = app
        .send_json("PUT", &format!("{path}?rev={rev}"), reader, &change)
        .await;
    assert_error(&reply, StatusCode::FORBIDDEN, "reader's PUT");
    let reply = app
        .admin_json("PUT", &format!("{path}?rev=0badc0de"), &change)
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "PUT with a wrong rev");
    let reply = app.admin_json("PUT", &path, &change).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "PUT without a rev");
    assert_eq!(app.get(&path, None).await.json(), stored, "refused PUTs");

    let reply = app
        .admin_json("PUT", &format!("{path}?rev={rev}"), &change)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let updated = reply.json();
    assert_eq!(receipt_keys(&updated), ["baseid", "did", "rev"]);
    assert_eq!(updated["did"], json!(did));
    assert_eq!(updated["baseid"], json!(baseid));
    let new_rev = updated["rev"].as_str().unwrap().to_string();
    assert_ne!(new_rev, rev);
    let after = app.get(&path, None).await.json();
    assert_eq!(after["rev"], json!(new_rev));
    assert_eq!(after["urls"], json!(["s3://bucket/b.tsv"]));
    assert_eq!(after["hashes"], stored["hashes"]);
    assert_eq!(after["size"], stored["size"]);
    assert_eq!(after["file_name"], json!("a.tsv"));
    // The rev read before the update is stale now.
    let reply = app
        .admin_json(
            "PUT",
            &format!("{path}?rev={rev}"),
            &json!({"urls": ["s3://bucket/c.tsv"]}),
        )
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "PUT with a stale rev");
    assert_eq!(app.get(&path, None).await.json(), after);

    // A new version: another did, the same baseid.
    let second_md5 = "92eb5ffee6ae2fec3ad71c777531578f";
    let version = json!({
        "form": "object",
        "size": 456,
        "hashes": {"md5": second_md5},
        "urls": ["s3://bucket/a2.tsv"],
        "authz": [AUTHZ],
    });
    let reply = app.send_json("POST", &path, reader, &version).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "reader's new version");
    let reply = app.admin_json("POST", &path, &version).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let second = reply.json();
    assert_eq!(receipt_keys(&second), ["baseid", "did", "rev"]);
    let second_did = second["did"].as_str().unwrap().to_string();
    assert_ne!(second_did, did);
    assert_eq!(second["baseid"], json!(baseid));
    let versions = app.get(&format!("{path}/versions"), None).await;
    assert_eq!(versions.status, StatusCode::OK, "{}", versions.text());
    let versions = versions.json();
    let listed: BTreeMap<&str, &str> = versions
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v["did"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        BTreeMap::from([("0", did.as_str()), ("1", second_did.as_str())]),
        "{versions}"
    );
    assert_eq!(versions["1"]["hashes"], json!({"md5": second_md5}));
    for member in [&did, &second_did] {
        let latest = app
            .get(&format!("/index/index/{member}/latest"), None)
            .await;
        assert_eq!(latest.status, StatusCode::OK, "{}", latest.text());
        assert_eq!(latest.json()["did"], json!(second_did));
    }
    // The baseid names the newest version.
    let by_baseid = app.get(&format!("/index/index/{baseid}"), None).await;
    assert_eq!(by_baseid.json()["did"], json!(second_did));
    // The old version is kept as it was.
    assert_eq!(app.get(&path, None).await.json(), after);

    // Deletion: the grant and the current rev again.
    let delete = |query: &str| format!("{path}{query}");
    let reply = app
        .request(
            "DELETE",
            &delete(&format!("?rev={new_rev}")),
            reader,
            "application/json",
            Vec::new(),
        )
        .await;
    assert_error(&reply, StatusCode::FORBIDDEN, "reader's DELETE");
    let admin = Some(app.admin_token.as_str());
    let reply = app
        .request("DELETE", &delete(""), admin, "application/json", Vec::new())
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "DELETE without a rev");
    let reply = app
        .request(
            "DELETE",
            &delete(&format!("?rev={rev}")),
            admin,
            "application/json",
            Vec::new(),
        )
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "DELETE with a stale rev");
    assert_eq!(app.get(&path, None).await.json(), after);
    let reply = app
        .request(
            "DELETE",
            &delete(&format!("?rev={new_rev}")),
            admin,
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_error(
        &app.get(&path, None).await,
        StatusCode::NOT_FOUND,
        "GET deleted",
    );
    assert_error(
        &app.get(&format!("/index/{did}"), None).await,
        StatusCode::NOT_FOUND,
        "resolve deleted",
    );
    let versions = app
        .get(&format!("/index/index/{second_did}/versions"), None)
        .await;
    let remaining: Vec<Value> = versions
        .json()
        .as_object()
        .unwrap()
        .values()
        .cloned()
        .collect();
    assert_eq!(remaining.len(), 1, "{}", versions.text());
    assert_eq!(remaining[0]["did"], json!(second_did));
    assert_eq!(
        app.get("/index/_stats", None).await.json(),
        json!({"fileCount": 1, "totalFileSize": 456})
    );

    // A did with a prefix: the slash is part of the did, not of the route.
    let prefixed = format!("dg.TEST/{}", uuid::Uuid::new_v4());
    let mut body = body.clone();
    body["did"] = json!(prefixed);
    body["hashes"] = json!({"md5": "4a8a08f09d37b73795649038408b5f33"});
    let reply = app.admin_json("POST", "/index/index/", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let receipt = reply.json();
    assert_eq!(receipt["did"], json!(prefixed));
    let prefixed_rev = receipt["rev"].as_str().unwrap().to_string();
    let prefixed_path = format!("/index/index/{prefixed}");
    for path in [prefixed_path.clone(), format!("/index/{prefixed}")] {
        let got = app.get(&path, None).await;
        assert_eq!(got.status, StatusCode::OK, "GET {path}: {}", got.text());
        assert_eq!(got.json()["did"], json!(prefixed), "GET {path}");
    }
    let aliases_path = format!("{prefixed_path}/aliases");
    let aliases = app.get(&aliases_path, None).await;
    assert_eq!(aliases.status, StatusCode::OK, "{}", aliases.text());
    assert_eq!(aliases.json(), json!({"aliases": []}));
    let alias = json!({"aliases": [{"value": "my-file.tsv"}]});
    let reply = app.send_json("POST", &aliases_path, reader, &alias).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "reader's alias");
    let reply = app.admin_json("POST", &aliases_path, &alias).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json(), alias);
    assert_eq!(app.get(&aliases_path, None).await.json(), alias);
    let resolved = app.get("/index/my-file.tsv", None).await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.text());
    assert_eq!(resolved.json()["did"], json!(prefixed));
    for part in ["versions", "latest"] {
        let got = app.get(&format!("{prefixed_path}/{part}"), None).await;
        assert_eq!(got.status, StatusCode::OK, "{part}: {}", got.text());
        let got = got.json();
        let record = if part == "versions" { &got["0"] } else { &got };
        assert_eq!(record["did"], json!(prefixed), "{part}: {got}");
    }
    let reply = app
        .admin_json(
            "PUT",
            &format!("{prefixed_path}?rev={prefixed_rev}"),
            &json!({"file_name": "renamed.tsv"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let prefixed_rev = reply.json()["rev"].as_str().unwrap().to_string();
    assert_eq!(
        app.get(&prefixed_path, None).await.json()["file_name"],
        json!("renamed.tsv")
    );
    let reply = app
        .request(
            "DELETE",
            &format!("{prefixed_path}?rev={prefixed_rev}"),
            admin,
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_error(
        &app.get(&prefixed_path, None).await,
        StatusCode::NOT_FOUND,
        "GET deleted prefixed",
    );
    // Its alias went with it.
    assert_error(
        &app.get("/index/my-file.tsv", None).await,
        StatusCode::NOT_FOUND,
        "the alias of a deleted record",
    );
}

/// indexd's admin rule: `(indexd, m)` on `/services/indexd/admin` allows `m`
/// on every record, and on a record without `authz` so does `/programs`.
#[tokio::test]
async fn the_index_admin_resource_grants_every_record() {
    let app = TestApp::new(None).await;
    let store = &app.state.store;
    store
        .upsert_role(&RoleRow {
            id: "indexd_admin".into(),
            permissions: json!([{"id": "indexd_admin", "action": {"service": "indexd", "method": "*"}}]),
        })
        .await
        .unwrap();
    for (id, resource) in [
        ("index-admin", "/services/indexd/admin"),
        ("programs-index", "/programs"),
    ] {
        store
            .upsert_policy(&PolicyRow {
                id: id.into(),
                role_ids: vec!["indexd_admin".into()],
                resource_paths: vec![resource.into()],
            })
            .await
            .unwrap();
    }
    let (_, _, admin) = app.user("index-admin", &["index-admin"]).await;
    let (_, _, programs) = app.user("programs-index", &["programs-index"]).await;
    let record = |authz: Value| {
        json!({
            "form": "object", "size": 1, "urls": [], "authz": authz,
            "hashes": {"md5": "0cc175b9c0f1b6a831c399e269772661"},
        })
    };
    let elsewhere = json!(["/open/elsewhere"]);
    let reply = app
        .send_json(
            "POST",
            "/index/index/",
            Some(&admin),
            &record(elsewhere.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = app
        .send_json("POST", "/index/index/", Some(&programs), &record(elsewhere))
        .await;
    assert_error(
        &reply,
        StatusCode::FORBIDDEN,
        "/programs grant on another resource",
    );
    for token in [&admin, &programs] {
        let reply = app
            .send_json("POST", "/index/index/", Some(token), &record(json!([])))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(app.get("/index/_stats", None).await.json()["fileCount"], 3);
}

/// `commons authz import` of a Gen3 user.yaml grants the index's rights as
/// Gen3 does: `indexd` on `/services/indexd/admin` for every record,
/// `file_upload` on `/data_file` for blank records, a project's `create`
/// for records under it.
#[tokio::test]
async fn user_yaml_grants_index_rights_as_gen3() {
    let app = TestApp::new(None).await;
    let store = &app.state.store;
    commons::auth::import_user_yaml(
        store,
        r#"
authz:
  resources:
    - name: data_file
    - name: services
      subresources:
        - name: indexd
          subresources:
            - name: admin
    - name: programs
      subresources:
        - name: prog
          subresources:
            - name: projects
              subresources:
                - name: proj
  policies:
    - id: indexd_admin
      role_ids: [indexd_admin]
      resource_paths: [/services/indexd/admin]
    - id: data_upload
      role_ids: [file_uploader]
      resource_paths: [/data_file]
    - id: proj_creator
      role_ids: [creator]
      resource_paths: [/programs/prog/projects/proj]
  roles:
    - id: indexd_admin
      permissions:
        - id: indexd_admin
          action: {service: indexd, method: '*'}
    - id: file_uploader
      permissions:
        - id: file_upload
          action: {service: '*', method: file_upload}
    - id: creator
      permissions:
        - id: create
          action: {service: '*', method: create}
users:
  ian: {policies: [indexd_admin]}
  uma: {policies: [data_upload]}
  sam: {policies: [proj_creator]}
"#,
    )
    .await
    .unwrap();
    let mut tokens = Vec::new();
    for name in ["ian", "uma", "sam"] {
        let user = store.user_by_name(name).await.unwrap().unwrap();
        tokens.push(app.state.tokens.issue_access_token(
            &user,
            vec!["openid".into(), "user".into()],
            600,
            None,
        ));
    }
    let [ian, uma, sam] = <[String; 3]>::try_from(tokens).unwrap();
    let record = |authz: &str| {
        json!({
            "form": "object", "size": 1, "urls": [], "authz": [authz],
            "hashes": {"md5": "0cc175b9c0f1b6a831c399e269772661"},
        })
    };
    let app = &app;
    let post = |token: &str, body: Value| {
        let token = token.to_string();
        async move {
            app.send_json("POST", "/index/index/", Some(&token), &body)
                .await
                .status
        }
    };
    assert_eq!(post(&ian, record("/programs/other")).await, StatusCode::OK);
    assert_eq!(post(&sam, record(AUTHZ)).await, StatusCode::OK);
    assert_eq!(
        post(&sam, record("/programs/other")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(post(&uma, record(AUTHZ)).await, StatusCode::FORBIDDEN);
    let blank = app
        .send_json(
            "POST",
            "/index/index/blank/",
            Some(&uma),
            &json!({"uploader": "uma", "file_name": "reads.fastq.gz"}),
        )
        .await;
    assert_eq!(blank.status, StatusCode::CREATED, "{}", blank.text());
    let blank = app
        .send_json(
            "POST",
            "/index/index/blank/",
            Some(&sam),
            &json!({"uploader": "sam", "file_name": "reads.fastq.gz"}),
        )
        .await;
    assert_eq!(blank.status, StatusCode::FORBIDDEN, "{}", blank.text());
    assert_eq!(app.get("/index/_stats", None).await.json()["fileCount"], 3);
}

/// Creates that arrive together are committed together (one statement),
/// yet each gets its own answer: a taken did fails only its own request.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_each_get_their_own_answer() {
    let app = TestApp::new(None).await;
    let record = |i: usize, did: &str| {
        json!({
            "did": did, "form": "object", "size": i, "urls": [], "authz": [AUTHZ],
            "hashes": {"md5": format!("{i:032x}")},
        })
    };
    let taken = "dg.TEST/00000000-0000-4000-8000-000000000001";
    let bodies: Vec<Value> = (0..60)
        .map(|i| match i {
            17 | 41 => record(i, taken),
            _ => record(i, &uuid::Uuid::new_v4().to_string()),
        })
        .collect();
    let replies = futures::future::join_all(
        bodies
            .iter()
            .map(|body| app.admin_json("POST", "/index/index/", body)),
    )
    .await;
    let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    let created = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!((created, conflicts), (59, 1), "{statuses:?}");
    assert_eq!(app.get("/index/_stats", None).await.json()["fileCount"], 59);
    for (reply, body) in replies.iter().zip(&bodies) {
        if reply.status == StatusCode::OK {
            let stored = app
                .get(
                    &format!("/index/index/{}", body["did"].as_str().unwrap()),
                    None,
                )
                .await
                .json();
            assert_eq!(
                stored["size"], body["size"],
                "each answer is its own record's"
            );
        }
    }
}

/// Two data files of different types may share a submitter id: both are
/// registered, and the alias `P-Q/<submitter_id>` goes to the first.
#[tokio::test]
async fn two_files_with_one_submitter_id_share_no_alias() {
    let app = TestApp::with_study().await;
    let md5s = [
        "11111111111111111111111111111111",
        "22222222222222222222222222222222",
    ];
    let reply = app
        .admin_json(
            "PUT",
            SUBMIT,
            &json!([
                clinical_file("same", md5s[0], 10, to_study()),
                {"type": "subject", "submitter_id": "s1", "studies": {"submitter_id": "study"}},
                {"type": "sample", "submitter_id": "sa1", "subjects": {"submitter_id": "s1"}},
                {"type": "aliquot", "submitter_id": "al1", "samples": {"submitter_id": "sa1"}},
                {
                    "type": "sequencing_file", "submitter_id": "same",
                    "file_name": "same.bam", "file_size": 20, "md5sum": md5s[1],
                    "data_category": "Sequencing Reads", "data_type": "Aligned Reads",
                    "data_format": "BAM", "aliquots": {"submitter_id": "al1"},
                },
            ]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let store = &app.state.store;
    let first = records_with_md5(store, md5s[0]).await;
    let second = records_with_md5(store, md5s[1]).await;
    assert_eq!((first.len(), second.len()), (1, 1));
    let aliased = app.get(&format!("/index/{PROJECT_ID}/same"), None).await;
    assert_eq!(aliased.status, StatusCode::OK, "{}", aliased.text());
    assert_eq!(aliased.json()["did"], json!(first[0].did));
}

/// SQLite's write-ahead log stays bounded under creates that never pause.
/// A passive checkpoint copies only what was logged when it began, so under
/// such load the log never started over: it grew to 7.7 GB beside a 149 MB
/// database. Eight writers for five seconds, each record its own commit.
#[tokio::test(flavor = "multi_thread")]
async fn the_write_ahead_log_starts_over_under_writes_that_never_pause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("commons.db");
    let store = std::sync::Arc::new(
        Store::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap(),
    );
    let until = Instant::now() + Duration::from_secs(5);
    let writers: Vec<_> = (0..8u64)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let index = commons::file_index::FileIndex {
                    store: &store,
                    prefix: "",
                    landing: None,
                };
                let mut random = rand::rngs::StdRng::seed_from_u64(writer);
                let mut written = 0u64;
                while Instant::now() < until {
                    let record = index
                        .new_record(
                            &json!({
                                "did": uuid::Uuid::from_u128(random.random()).to_string(),
                                "hashes": {"md5": format!("{:032x}", random.random::<u128>())},
                                "size": written,
                                "urls": [format!("s3://bucket/{writer}/{written}")],
                                "authz": ["/programs/p/projects/q"],
                                "form": "object",
                            }),
                            None,
                        )
                        .unwrap();
                    store.index_insert(&[(record, Vec::new())]).await.unwrap();
                    written += 1;
                }
                written
            })
        })
        .collect();
    let mut written = 0;
    for writer in writers {
        written += writer.await.unwrap();
    }
    let log = std::fs::metadata(dir.path().join("commons.db-wal"))
        .unwrap()
        .len();
    assert!(written > 2_000, "only {written} records written");
    assert!(
        log < 256 << 20,
        "{} MiB of log after {written} records",
        log >> 20
    );
}
