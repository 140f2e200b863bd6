//! GraphQL over HTTP against gdcdictionary with generated data: results are
//! compared with expectations computed in the test from the submitted
//! records (not by the same SQL), and every root field runs one statement.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use axum::http::StatusCode;
use common::TestApp;
use commons::sql::Dialect;
use serde_json::{Value, json};

const PID: &str = "prog-proj";

fn gdc() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/dictionaries/gdcdictionary")
}

/// A project with 1 experiment, 12 cases, samples spread over cases, aliquots.
async fn fixture() -> (TestApp, Vec<Value>) {
    let app = TestApp::new(Some(&gdc())).await;
    app.project("prog", "proj").await;
    let mut records =
        vec![json!({"type": "experiment", "submitter_id": "exp", "projects": {"code": "proj"}})];
    for i in 0..12 {
        let site = if i % 3 == 0 { "Lung" } else { "Liver" };
        records.push(
            json!({"type": "case", "submitter_id": format!("case-{i:02}"), "primary_site": site,
                            "experiments": {"submitter_id": "exp"}}),
        );
    }
    for j in 0..30 {
        records.push(
            json!({"type": "sample", "submitter_id": format!("sample-{j:02}"),
                            "cases": {"submitter_id": format!("case-{:02}", j % 4)},
                            "current_weight": j as f64 + 0.5, "is_ffpe": j % 2 == 0}),
        );
    }
    for k in 0..10 {
        records.push(
            json!({"type": "aliquot", "submitter_id": format!("aliquot-{k:02}"),
                            "samples": {"submitter_id": format!("sample-{:02}", k)}}),
        );
    }
    let reply = app
        .admin_json(
            "PUT",
            "/api/v0/submission/prog/proj",
            &Value::Array(records.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    (app, records)
}

async fn data(app: &TestApp, query: &str) -> Value {
    let reply = app.graphql(&app.admin_token, query).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text());
    let body = reply.json();
    assert!(body.get("errors").is_none(), "{body}");
    body["data"].clone()
}

fn sids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["submitter_id"].as_str().unwrap().to_string())
        .collect()
}

/// case submitter_id -> sorted sample submitter_ids, from the submitted records.
fn samples_by_case(records: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in records.iter().filter(|r| r["type"] == "case") {
        out.entry(r["submitter_id"].as_str().unwrap().into())
            .or_default();
    }
    for r in records.iter().filter(|r| r["type"] == "sample") {
        let case = r["cases"]["submitter_id"].as_str().unwrap().to_string();
        out.entry(case)
            .or_default()
            .insert(r["submitter_id"].as_str().unwrap().into());
    }
    out
}

#[tokio::test]
async fn nested_links_and_counts_match_the_submitted_graph() {
    let (app, records) = fixture().await;
    let expected = samples_by_case(&records);
    let before = app.state.store.graphql_statement_count();
    let d = data(
        &app,
        r#"{ case(project_id: "prog-proj", first: 0, order_by_asc: "submitter_id") {
               submitter_id _samples_count
               samples(first: 0, order_by_asc: "submitter_id") { submitter_id aliquots { submitter_id } }
               page: samples { id }
               experiments { submitter_id projects { code } } } }"#,
    )
    .await;
    assert_eq!(
        app.state.store.graphql_statement_count() - before,
        1,
        "one statement per root field"
    );
    let cases = d["case"].as_array().unwrap();
    assert_eq!(
        sids(&d["case"]),
        expected.keys().cloned().collect::<Vec<_>>()
    );
    for case in cases {
        let want = &expected[case["submitter_id"].as_str().unwrap()];
        assert_eq!(case["_samples_count"], want.len(), "{case}");
        assert_eq!(
            sids(&case["samples"]),
            want.iter().cloned().collect::<Vec<_>>()
        );
        assert_eq!(
            case["page"].as_array().unwrap().len(),
            want.len().min(10),
            "default first: 10"
        );
        assert_eq!(
            case["experiments"],
            json!([{"submitter_id": "exp", "projects": [{"code": "proj"}]}])
        );
        for sample in case["samples"].as_array().unwrap() {
            let n: usize = sample["submitter_id"].as_str().unwrap()[7..]
                .parse()
                .unwrap();
            let aliquots = if n < 10 {
                vec![format!("aliquot-{n:02}")]
            } else {
                vec![]
            };
            assert_eq!(sids(&sample["aliquots"]), aliquots);
        }
    }
}

#[tokio::test]
async fn several_root_fields_run_one_statement_each() {
    let (app, _) = fixture().await;
    let before = app.state.store.graphql_statement_count();
    let d = data(
        &app,
        r#"{ a: _case_count(project_id: "prog-proj") b: _sample_count
             c: case(first: 2) { samples { aliquots { samples { submitter_id } } } } }"#,
    )
    .await;
    assert_eq!(app.state.store.graphql_statement_count() - before, 3);
    assert_eq!(d["a"], 12);
    assert_eq!(d["b"], 30);
    let keys: Vec<&String> = d.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["a", "b", "c"], "root fields answer in query order");
}

#[tokio::test]
async fn filters_paging_and_ordering() {
    let (app, records) = fixture().await;
    let lung: BTreeSet<String> = records
        .iter()
        .filter(|r| r["type"] == "case" && r["primary_site"] == "Lung")
        .map(|r| r["submitter_id"].as_str().unwrap().into())
        .collect();
    let d = data(&app, r#"{ c: case(primary_site: "Lung", first: 0) { submitter_id } n: _case_count(primary_site: ["Lung"]) }"#).await;
    assert_eq!(sids(&d["c"]).into_iter().collect::<BTreeSet<_>>(), lung);
    assert_eq!(d["n"], lung.len());

    let mut seen = Vec::new();
    for offset in (0..12).step_by(5) {
        let d = data(&app, &format!(r#"{{ case(first: 5, offset: {offset}, order_by_desc: "submitter_id") {{ submitter_id }} }}"#)).await;
        seen.extend(sids(&d["case"]));
    }
    let mut want: Vec<String> = (0..12).map(|i| format!("case-{i:02}")).collect();
    want.reverse();
    assert_eq!(seen, want);

    let d = data(&app, r#"{ sample(is_ffpe: true, first: 0) { submitter_id } heavy: sample(current_weight: [29.5, 3.5], first: 0) { submitter_id } }"#).await;
    assert_eq!(sids(&d["sample"]).len(), 15);
    assert_eq!(
        sids(&d["heavy"]).into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from(["sample-03".into(), "sample-29".into()])
    );

    let d = data(
        &app,
        r#"{ case(quick_search: "CASE-1", first: 0) { submitter_id } }"#,
    )
    .await;
    assert_eq!(sids(&d["case"]), vec!["case-10", "case-11"]);

    let d = data(&app, r#"{ with: case(with_links: ["samples"], first: 0) { submitter_id } without: _case_count(without_links: ["samples"]) }"#).await;
    assert_eq!(sids(&d["with"]).len(), 4);
    assert_eq!(d["without"], 8);

    let d = data(
        &app,
        r#"{ case(not: [{primary_site: "Liver"}], first: 0) { submitter_id } }"#,
    )
    .await;
    assert_eq!(sids(&d["case"]).into_iter().collect::<BTreeSet<_>>(), lung);
}

#[tokio::test]
async fn with_path_to_follows_gen3_path_rules() {
    let (app, records) = fixture().await;
    let expected = samples_by_case(&records);
    let d = data(
        &app,
        r#"{ aliquot(with_path_to: [{type: "case", submitter_id: "case-01"}], first: 0) { submitter_id }
             none: aliquot(with_path_to: {type: "experiment", submitter_id: "exp"}) { id }
             bad: case(with_path_to: {type: "BAD_TYPE"}) { id }
             not: _aliquot_count(without_path_to: [{type: "case", submitter_id: "case-01"}]) }"#,
    )
    .await;
    let want: Vec<String> = expected["case-01"]
        .iter()
        .filter_map(|s| {
            let n: usize = s[7..].parse().unwrap();
            (n < 10).then(|| format!("aliquot-{n:02}"))
        })
        .collect();
    assert_eq!(sids(&d["aliquot"]), want);
    assert_eq!(
        d["none"],
        json!([]),
        "experiment is beyond case from aliquot"
    );
    assert_eq!(d["bad"], json!([]));
    assert_eq!(d["not"], 10 - want.len());
}

#[tokio::test]
async fn node_and_datanode_search_every_type() {
    let (app, _) = fixture().await;
    let d = data(&app, r#"{ node(submitter_id: "case-03") { __typename id type project_id ... on case { primary_site } } }"#).await;
    assert_eq!(d["node"][0]["__typename"], "case");
    assert_eq!(d["node"][0]["primary_site"], "Lung");
    assert_eq!(d["node"][0]["project_id"], PID);
    let d = data(&app, r#"{ datanode(first: 0) { id type } }"#).await;
    assert_eq!(d["datanode"], json!([]));
}

/// The one-root-list requests that are streamed row by row answer exactly
/// what the resolvers answer when the whole response is built in memory.
#[tokio::test]
async fn streamed_lists_match_the_resolved_ones() {
    use commons::graphql::{Answer, RequestContext, answer, execute};
    use futures::StreamExt;
    let (app, _) = fixture().await;
    // Enough samples for a response of several chunks.
    let more: Vec<Value> = (0..2000)
        .map(|i| {
            json!({"type": "sample", "submitter_id": format!("bulk-{i:04}"),
                        "cases": {"submitter_id": "case-01"}})
        })
        .collect();
    let reply = app
        .admin_json("PUT", "/api/v0/submission/prog/proj", &Value::Array(more))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let state = &app.state;
    let context = || RequestContext {
        store: state.store.clone(),
        dictionary: state.dictionary.clone(),
        scope: commons::plan::ReadScope::All,
        timeout: std::time::Duration::from_secs(60),
        stream: None,
        budget: commons::graphql::Budget::new(&commons::graphql::Limits::default()),
    };
    let streamed = [
        (
            r#"{ case(first: 0) { id submitter_id primary_site __typename } }"#,
            json!({}),
        ),
        (
            r#"{ c: case(first: 2000, offset: 7, order_by_desc: "submitter_id") { sid: submitter_id
                 samples(first: 0) { submitter_id current_weight is_ffpe _aliquots_count
                                     aliquots { submitter_id } }
                 _samples_count experiments { __typename submitter_id } } }"#,
            json!({}),
        ),
        (
            "query Q($n: Int) { sample(first: $n, offset: 3) { submitter_id ...F id id } }
             fragment F on sample { current_weight cases { submitter_id } }",
            json!({"n": 5000}),
        ),
        (
            r#"{ sample(first: 0) { id submitter_id type } }"#,
            json!({}),
        ),
        (r#"{ case { id _samples_count } }"#, json!({})),
        (
            "{ case(first: 0) { ...A ...B } }
             fragment A on case { samples { id } }
             fragment B on case { samples { submitter_id } }",
            json!({}),
        ),
        (
            r#"{ sample(quick_search: "SAMPLE-1", first: 0) { submitter_id } }"#,
            json!({}),
        ),
        (
            r#"{ aliquot(submitter_id: ["nothing"], first: -1) { id } }"#,
            json!({}),
        ),
    ];
    for (query, variables) in streamed {
        let (status, expected) = execute(
            &state.schema,
            context(),
            query.into(),
            variables.clone(),
            None,
        )
        .await;
        assert_eq!(status, 200, "{expected}");
        let Answer::Stream(deferred) = answer(
            &state.schema,
            context(),
            query.into(),
            variables.clone(),
            None,
        )
        .await
        else {
            panic!("not streamed: {query}");
        };
        let key = deferred.key.clone();
        let chunks: Vec<String> = deferred
            .rows(state.store.clone(), std::time::Duration::from_secs(60))
            .map(|chunk| String::from_utf8(chunk.unwrap().to_vec()).unwrap())
            .collect()
            .await;
        let rows: Value = serde_json::from_str(&format!("[{}]", chunks.join(","))).unwrap();
        if query.contains("type } }") {
            assert!(chunks.len() > 1, "2030 samples take several chunks");
        }
        assert_eq!(json!({"data": {key: rows}}), expected, "{query}");
        // Over HTTP the same answer arrives, framed as one JSON document.
        let reply = app
            .request(
                "POST",
                "/api/v0/submission/graphql",
                Some(&app.admin_token),
                "application/json",
                json!({"query": query, "variables": variables})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json(), expected, "{query}");
    }
    for query in [
        "{ case(first: 0) { id } experiment { id } }",
        "{ case(first: 0) { _links { id } } }",
        "{ case(first: 0) { id @skip(if: true) submitter_id } }",
        "{ node(first: 0) { id } }",
    ] {
        let reply = answer(&state.schema, context(), query.into(), json!({}), None).await;
        assert!(
            matches!(reply, Answer::Json(200, _)),
            "{query} is answered whole"
        );
    }
}

/// Databases cap a function's arguments, so an object of more than 50 fields
/// is built in parts and merged: nested and at the root, streamed or not,
/// every field comes back.
#[tokio::test]
async fn selections_wider_than_one_json_call_come_back_whole() {
    let (app, _) = fixture().await;
    let fields = |prefix: &str| {
        (0..60)
            .map(|i| format!("{prefix}{i}: submitter_id"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let selection = format!(
        "{{ {} samples(first: 1, submitter_id: \"sample-00\") {{ {} }} }}",
        fields("c"),
        fields("s")
    );
    for root in [r#"case(submitter_id: "case-00")"#, "case(first: 0)"] {
        let data = data(&app, &format!("{{ case: {root} {selection} }}")).await;
        let case = data["case"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["c0"] == "case-00")
            .unwrap_or_else(|| panic!("{root}: {data}"));
        for i in 0..60 {
            assert_eq!(case[format!("c{i}")], "case-00", "{root}: {case}");
            assert_eq!(
                case["samples"][0][format!("s{i}")],
                "sample-00",
                "{root}: {case}"
            );
        }
    }
}

#[tokio::test]
async fn node_type_lists_the_dictionary() {
    let app = TestApp::new(Some(&gdc())).await;
    // Expected from the dictionary files themselves, not from the schema code.
    let mut clinical: Vec<(String, String)> = std::fs::read_dir(gdc().join("schemas"))
        .unwrap()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).ok()?;
            let doc: Value = commons::yaml::from_str(&text).ok()?;
            (doc["category"] == "clinical").then(|| {
                let text = |key: &str| doc[key].as_str().unwrap().to_string();
                (text("id"), text("title"))
            })
        })
        .collect();
    clinical.sort();
    assert!(clinical.len() > 3, "gdcdictionary has clinical types");
    let d = data(
        &app,
        r#"{ _node_type(category: "clinical", first: 0, order_by_asc: "id") { id title category } }"#,
    )
    .await;
    let got: Vec<(String, String)> = d["_node_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            assert_eq!(n["category"], "clinical");
            (
                n["id"].as_str().unwrap().into(),
                n["title"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(got, clinical);
    let d = data(&app, r#"{ _node_type { id } }"#).await;
    assert_eq!(
        d["_node_type"].as_array().unwrap().len(),
        10,
        "first defaults to 10"
    );
    let d = data(
        &app,
        r#"{ _node_type(order_by_desc: "id", first: 2) { id } }"#,
    )
    .await;
    let ids: Vec<&str> = d["_node_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted);
}

#[tokio::test]
async fn errors_use_the_peregrine_envelope() {
    let (app, _) = fixture().await;
    let reply = app
        .graphql(&app.admin_token, "{ case-1: case { id } }")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let body = reply.json();
    assert!(
        body["data"].is_null() && body["errors"][0].is_string(),
        "{body}"
    );

    let reply = app
        .graphql(
            &app.admin_token,
            r#"{ case(order_by_asc: "nope") { id } n: _case_count }"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let body = reply.json();
    assert_eq!(body["data"]["case"], Value::Null);
    assert_eq!(body["data"]["n"], 12, "other fields still resolve");
    assert_eq!(body["errors"], json!(["Cannot order by nope on case"]));

    let reply = app.graphql(&app.admin_token, "{ _totalCount }").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    let reply = app
        .send_json(
            "POST",
            "/api/v0/submission/graphql",
            Some(&app.admin_token),
            &json!({"query": "{ _case_count }", "variables": "{bad"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["errors"][0], "Unable to parse variables");

    let deep = format!(
        "{{ case {{ {} id {} }} }}",
        "samples { cases { ".repeat(15),
        "} } ".repeat(15)
    );
    let reply = app.graphql(&app.admin_token, &deep).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "depth limit");
}

#[tokio::test]
async fn introspection_is_served_without_credentials() {
    let app = TestApp::new(Some(&gdc())).await;
    let reply = app.get("/api/v0/submission/getschema", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let schema = reply.json()["data"]["__schema"].clone();
    assert_eq!(schema["queryType"]["name"], "Root");
    let types: Vec<&str> = schema["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in [
        "case",
        "Node",
        "DataNode",
        "WithPathToInput",
        "NotPropertiesInput_case",
    ] {
        assert!(types.contains(&name), "{name}");
    }

    // Kept compressed: sent as it is to clients that accept gzip (gzip's own
    // entry decides over `*`), inflated for the others.
    assert!(reply.headers.get("content-encoding").is_none());
    for (accept, compressed) in [
        ("br;q=1.0, gzip;q=0.8", true),
        ("*", true),
        ("gzip;q=0, identity", false),
        ("gzip; Q=0.0, *", false),
        ("deflate", false),
    ] {
        let answer = app
            .request_with_headers(
                "GET",
                "/api/v0/submission/getschema",
                &[("accept-encoding", accept)],
                Vec::new(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{accept}");
        assert_eq!(answer.headers["vary"], "accept-encoding", "{accept}");
        let body = if compressed {
            assert_eq!(answer.headers["content-encoding"], "gzip", "{accept}");
            assert!(answer.body.len() * 5 < reply.body.len(), "{accept}");
            let mut inflated = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(&answer.body[..]),
                &mut inflated,
            )
            .unwrap();
            inflated
        } else {
            assert!(answer.headers.get("content-encoding").is_none(), "{accept}");
            answer.body
        };
        assert_eq!(body, reply.body, "{accept}");
    }
}

#[tokio::test]
async fn links_lists_every_readable_neighbour_without_a_page_limit() {
    let (app, records) = fixture().await;
    let expected = samples_by_case(&records);
    let d = data(
        &app,
        r#"{ case(submitter_id: "case-00") { _links { __typename submitter_id ... on sample { submitter_id } } }
             experiment { _links(first: 1) { type } } }"#,
    )
    .await;
    let links = d["case"][0]["_links"].as_array().unwrap();
    let samples: BTreeSet<String> = links
        .iter()
        .filter(|l| l["__typename"] == "sample")
        .map(|l| l["submitter_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        &samples,
        &expected["case-00"],
        "all {} samples, not 10",
        expected["case-00"].len()
    );
    assert!(
        links.iter().any(|l| l["__typename"] == "experiment"),
        "parents too"
    );
    // The experiment's neighbours: 12 cases and its project; `first` does not cut `_links`.
    let types: Vec<&str> = d["experiment"][0]["_links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.iter().filter(|t| **t == "case").count(), 12);
    assert!(types.contains(&"project"));
}

#[tokio::test]
async fn transaction_log_is_an_audit_trail_of_readable_projects() {
    let (app, _) = fixture().await;
    let bad = app
        .admin_json(
            "PUT",
            "/api/v0/submission/prog/proj",
            &json!([{"type": "case", "submitter_id": "x"}]),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let d = data(&app, r#"{ case(submitter_id: "case-00") { id } }"#).await;
    let case_id = d["case"][0]["id"].as_str().unwrap().to_string();
    let d = data(
        &app,
        &format!(
            r#"{{ ok: transaction_log(project_id: "prog-proj", type: "upload", state: "SUCCEEDED", first: 0) {{
                    id type role submitter is_dry_run state project_id program project snapshots {{ id action }} }}
                 failed: _transaction_log_count(project_id: ["prog-proj"], state: "FAILED")
                 touching: transaction_log(entities: ["{case_id}"]) {{ id }}
                 newest: transaction_log(first: 1, order_by_desc: "id") {{ state }} }}"#
        ),
    )
    .await;
    let ok = d["ok"].as_array().unwrap();
    assert_eq!(
        ok.len(),
        2,
        "the project's creation and the fixture's upload: {d}"
    );
    assert_eq!(
        ok[0]["snapshots"].as_array().unwrap().len(),
        1,
        "the project node"
    );
    let log = &ok[1];
    assert_eq!(
        (
            log["type"].as_str(),
            log["role"].as_str(),
            log["submitter"].as_str()
        ),
        (Some("upload"), Some("update"), Some("admin"))
    );
    assert_eq!(
        (log["program"].as_str(), log["project"].as_str()),
        (Some("prog"), Some("proj"))
    );
    assert_eq!(log["snapshots"].as_array().unwrap().len(), 1 + 12 + 30 + 10);
    assert!(
        log["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == case_id.as_str())
    );
    assert_eq!(d["failed"], 1);
    assert_eq!(d["touching"].as_array().unwrap().len(), 1);
    assert_eq!(d["newest"][0]["state"], "FAILED");

    let (_, _, outsider) = app.user("outsider", &[]).await;
    let reply = app
        .graphql(
            &outsider,
            "{ transaction_log(first: 0) { id } n: _transaction_log_count }",
        )
        .await;
    assert_eq!(
        reply.json()["data"],
        json!({"transaction_log": [], "n": 0}),
        "no logs of unreadable projects or programs"
    );
}

/// Counts by project come from counts maintained by every write: they follow
/// creations, updates (no change), deletions and a second project, agree with
/// the nodes stored, and show a reader only the projects it may read.
#[tokio::test]
async fn maintained_counts_follow_every_write_and_respect_read_access() {
    let (app, _) = fixture().await;
    app.project("prog", "other").await;
    let other: Vec<Value> = (0..5)
        .map(|i| json!({"type": "case", "submitter_id": format!("other-{i}"), "experiments": {"submitter_id": "exp-o"}}))
        .chain([json!({"type": "experiment", "submitter_id": "exp-o", "projects": {"code": "other"}})])
        .collect();
    let reply = app
        .admin_json(
            "PUT",
            "/api/v0/submission/prog/other",
            &Value::Array(other.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let counts = r#"{ all: _case_count mine: _case_count(project_id: "prog-proj")
                      both: _case_count(project_id: ["prog-proj", "prog-other"]) none: _case_count(project_id: "prog-none")
                      paged: _case_count(project_id: "prog-other", first: 1, offset: 3)
                      samples: _sample_count(project_id: "prog-proj") programs: _program_count }"#;
    let want = json!({"all": 17, "mine": 12, "both": 17, "none": 0, "paged": 5, "samples": 30, "programs": 1});
    assert_eq!(data(&app, counts).await, want);

    // Updating every record of the other project changes no count.
    let reply = app
        .admin_json("PUT", "/api/v0/submission/prog/other", &Value::Array(other))
        .await;
    assert_eq!(reply.json()["updated_entity_count"], 6, "{}", reply.text());
    assert_eq!(data(&app, counts).await, want);

    // Deleting three aliquots and the samples nobody links to lowers both counts.
    let d = data(&app, r#"{ sample(project_id: "prog-proj", first: 0) { id _aliquots_count } aliquot(first: 3) { id } }"#).await;
    let mut doomed: Vec<&str> = d["aliquot"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let lone_samples: Vec<&str> = d["sample"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["_aliquots_count"] == 0)
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    doomed.extend(&lone_samples);
    let reply = app
        .request(
            "DELETE",
            &format!("/api/v0/submission/prog/proj/entities/{}", doomed.join(",")),
            Some(&app.admin_token.clone()),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let d = data(&app, r#"{ s: _sample_count(project_id: "prog-proj") a: _aliquot_count s_scan: _sample_count(quick_search: "sample") a_scan: _aliquot_count(quick_search: "aliquot") }"#).await;
    assert_eq!(d["s"], 30 - lone_samples.len());
    assert_eq!(d["a"], 7);
    assert_eq!(d["s"], d["s_scan"], "maintained and scanned counts agree");
    assert_eq!(d["a"], d["a_scan"], "maintained and scanned counts agree");
    assert!(
        app.state
            .store
            .integrity_problems()
            .await
            .unwrap()
            .is_empty()
    );

    // A reader of one project counts only that project's nodes.
    app.state
        .store
        .upsert_policy(&commons::store::PolicyRow {
            id: "other-reader".into(),
            role_ids: vec!["reader".into()],
            resource_paths: vec!["/programs/prog/projects/other".into()],
        })
        .await
        .unwrap();
    let (_, _, reader) = app.user("reader", &["other-reader"]).await;
    let reply = app.graphql(&reader, r#"{ all: _case_count mine: _case_count(project_id: "prog-proj") samples: _sample_count }"#).await;
    assert_eq!(
        reply.json()["data"],
        json!({"all": 5, "mine": 0, "samples": 0})
    );
}

/// SQLite has no statistics: the planner must be steered so that a node's
/// neighbours are found through `edges` (children by their `seq`, in the
/// index's order, never sorted) and a few projects' rows through
/// `nodes_by_type_project`, never by walking a whole type through
/// `nodes_by_type` (seconds per request at 100,000 samples), which only a root
/// list of every project should use.
#[tokio::test]
async fn sqlite_walks_a_whole_type_only_for_root_lists_of_every_project() {
    use commons::plan::ReadScope;
    use commons::plan::{RootList, Selection, root_list};
    use commons::sql::BindValue;

    let dictionary = commons::dictionary::load_path(&gdc()).unwrap();
    let field = |name: &str, args: Vec<(String, Value)>, children: Vec<Selection>| Selection {
        key: name.into(),
        name: name.into(),
        args,
        children,
    };
    let sid = || field("submitter_id", vec![], vec![]);
    let nested = |args: Vec<(String, Value)>| {
        field(
            "case",
            args,
            vec![
                sid(),
                field(
                    "samples",
                    vec![],
                    vec![sid(), field("aliquots", vec![], vec![sid()])],
                ),
            ],
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let url = commons::store::Store::default_url(dir.path());
    drop(commons::store::Store::open(&url).await.unwrap());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let plan = |scope: ReadScope, selection: Selection| {
        let pool = pool.clone();
        let dictionary = &dictionary;
        async move {
            let statement = root_list(
                dictionary,
                Dialect::Sqlite,
                &scope,
                RootList::Type("case"),
                &selection,
            )
            .unwrap();
            let sql = format!("EXPLAIN QUERY PLAN {}", statement.sql);
            let mut query = sqlx::query(&sql);
            for bind in &statement.binds {
                query = match bind {
                    BindValue::Text(s) => query.bind(s.clone()),
                    BindValue::Int(i) => query.bind(*i),
                    BindValue::Float(f) => query.bind(*f),
                };
            }
            let rows = query.fetch_all(&pool).await.unwrap();
            let details: Vec<String> = rows
                .iter()
                .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
                .collect();
            details.join("\n")
        }
    };
    let first = || vec![("first".to_string(), json!(100))];

    let everything = plan(ReadScope::All, nested(first())).await;
    let steps = |pattern: &str| everything.lines().filter(|l| l.contains(pattern)).count();
    assert!(
        everything.contains("SEARCH n1 USING INDEX nodes_by_type (node_type=?)"),
        "{everything}"
    );
    assert_eq!(
        steps("nodes_by_type "),
        1,
        "only the root list walks its type:\n{everything}"
    );
    // A child comes by its integer key, carried in edges_by_dst, not through
    // the UUID-keyed node_id index.
    assert_eq!(
        steps("USING COVERING INDEX edges_by_dst"),
        2,
        "samples and aliquots:\n{everything}"
    );
    assert_eq!(
        steps("USING INTEGER PRIMARY KEY (rowid=?)"),
        2,
        "samples and aliquots:\n{everything}"
    );
    // A parent's children come out of edges_by_dst in storage order, so a
    // page of them stops after its rows instead of sorting them all.
    assert_eq!(steps("TEMP B-TREE"), 0, "no list is sorted:\n{everything}");

    let one_project = ReadScope::Projects(BTreeSet::from([PID.to_string()]));
    let mut by_argument = first();
    by_argument.push(("project_id".into(), json!(PID)));
    for restricted in [
        plan(one_project, nested(first())).await,
        plan(ReadScope::All, nested(by_argument)).await,
    ] {
        assert!(
            !restricted.contains("nodes_by_type "),
            "a few projects' rows never walk the whole type:\n{restricted}"
        );
        assert!(restricted.contains("nodes_by_type_project"), "{restricted}");
    }
}

/// A page at an offset is chosen before its rows are shaped: the rows it
/// skips never have their objects built or their nested lists read (on
/// PostgreSQL, left to itself, 1,000 samples at offset 90,000 took 60 ms
/// instead of 15). The answer is checked on both backends; PostgreSQL's
/// executed plan must run the nested list once per row of the page.
#[tokio::test]
async fn an_offset_page_shapes_only_its_own_rows() {
    use commons::plan::ReadScope;
    use commons::plan::{RootList, Selection, root_list};
    use commons::sql::BindValue;

    let (app, _) = fixture().await;
    let query = "{ case(first: 2, offset: 1) { submitter_id samples(first: 2, offset: 1) { submitter_id } } }";
    let d = data(&app, query).await;
    // Samples go to case j % 4 in submission order.
    assert_eq!(
        d["case"],
        json!([
            {"submitter_id": "case-01", "samples": [{"submitter_id": "sample-05"}, {"submitter_id": "sample-09"}]},
            {"submitter_id": "case-02", "samples": [{"submitter_id": "sample-06"}, {"submitter_id": "sample-10"}]},
        ])
    );
    if app.state.store.dialect() != Dialect::Postgres {
        return;
    }
    let field = |name: &str, args: Vec<(String, Value)>, children: Vec<Selection>| Selection {
        key: name.into(),
        name: name.into(),
        args,
        children,
    };
    let page = || {
        vec![
            ("first".to_string(), json!(2)),
            ("offset".to_string(), json!(1)),
        ]
    };
    let sid = || field("submitter_id", vec![], vec![]);
    let selection = field(
        "case",
        page(),
        vec![sid(), field("samples", page(), vec![sid()])],
    );
    let dictionary = commons::dictionary::load_path(&gdc()).unwrap();
    let statement = root_list(
        &dictionary,
        Dialect::Postgres,
        &ReadScope::All,
        RootList::Type("case"),
        &selection,
    )
    .unwrap();
    let sql = format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", statement.sql);
    let mut explain = sqlx::query_scalar::<_, Value>(&sql);
    for bind in &statement.binds {
        explain = match bind {
            BindValue::Text(s) => explain.bind(s.clone()),
            BindValue::Int(i) => explain.bind(*i),
            BindValue::Float(f) => explain.bind(*f),
        };
    }
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let plan = explain.fetch_one(&pool).await.unwrap();
    fn subplan_loops(node: &Value, out: &mut Vec<i64>) {
        if node.get("Subplan Name").is_some() {
            out.push(node["Actual Loops"].as_i64().unwrap());
        }
        for child in node["Plans"].as_array().into_iter().flatten() {
            subplan_loops(child, out);
        }
    }
    let mut loops = Vec::new();
    subplan_loops(&plan[0]["Plan"], &mut loops);
    assert_eq!(
        loops,
        vec![2],
        "the samples of the page's two cases only:\n{plan:#}"
    );
}

/// Data files under the fixture's aliquots: one data_file, one metadata_file.
async fn with_files(app: &TestApp) {
    let files = json!([
        {"type": "read_group", "submitter_id": "rg-1", "aliquots": {"submitter_id": "aliquot-00"}},
        {"type": "submitted_unaligned_reads", "submitter_id": "reads-1", "file_name": "r1.fastq",
         "file_size": 42, "md5sum": "0123456789abcdef0123456789abcdef", "data_category": "Sequencing Reads",
         "data_type": "Unaligned Reads", "data_format": "FASTQ", "experimental_strategy": "WGS",
         "read_groups": {"submitter_id": "rg-1"}},
        {"type": "experimental_metadata", "submitter_id": "meta-1", "file_name": "m.xml",
         "file_size": 7, "md5sum": "fedcba9876543210fedcba9876543210", "data_category": "Metadata",
         "data_type": "Experimental Metadata", "data_format": "SRA XML",
         "experiments": {"submitter_id": "exp"}},
    ]);
    let reply = app
        .admin_json("PUT", "/api/v0/submission/prog/proj", &files)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

/// Answers recorded from peregrine for the same requests (GRAPHQL.md §4, §7).
#[tokio::test]
async fn answers_match_peregrines_for_datanode_internal_nodes_viewer_and_logs() {
    let (app, _) = fixture().await;
    with_files(&app).await;
    // DataNode: the union of the file types' non-link properties, system
    // properties and submitter_id included; integers are Floats.
    let d = data(
        &app,
        r#"{ datanode(first: 0, order_by_asc: "submitter_id") {
               id type submitter_id project_id file_name file_size state data_format } }"#,
    )
    .await;
    let files = d["datanode"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{d}");
    let reads = files
        .iter()
        .find(|f| f["type"] == "submitted_unaligned_reads")
        .unwrap();
    assert_eq!(reads["submitter_id"], "reads-1");
    assert_eq!(reads["project_id"], PID);
    assert_eq!(reads["file_name"], "r1.fastq");
    assert_eq!(reads["file_size"], json!(42.0));
    assert_eq!(reads["data_format"], "FASTQ");
    let d = data(
        &app,
        r#"{ datanode(submitter_id: "meta-1") { type file_size } }"#,
    )
    .await;
    assert_eq!(
        d["datanode"],
        json!([{"type": "experimental_metadata", "file_size": 7.0}])
    );

    // Gen3's built-in node types answer, empty.
    let d = data(
        &app,
        "{ _data_release_count _root_count root { id schema_version } data_release { name released } }",
    )
    .await;
    assert_eq!(
        d,
        json!({"_data_release_count": 0, "_root_count": 0, "root": [], "data_release": []})
    );

    // No schema defaults on a project: released and releasable stay null.
    let d = data(&app, "{ project { code state released releasable } }").await;
    assert_eq!(
        d["project"],
        json!([{"code": "proj", "state": "open", "released": null, "releasable": null}])
    );

    // viewer: the root fields again, transaction logs aside.
    let d = data(
        &app,
        r#"{ viewer { _case_count case(first: 2, order_by_asc: "submitter_id") { submitter_id }
                      node(submitter_id: "exp") { type } datanode(of_type: ["experimental_metadata"]) { submitter_id }
                      _node_type(id: "case") { id } } }"#,
    )
    .await;
    assert_eq!(
        d["viewer"],
        json!({"_case_count": 12, "case": [{"submitter_id": "case-00"}, {"submitter_id": "case-01"}],
               "node": [{"type": "experiment"}], "datanode": [{"submitter_id": "meta-1"}],
               "_node_type": [{"id": "case"}]})
    );
    let reply = app
        .graphql(&app.admin_token, "{ viewer { transaction_log { id } } }")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());

    // Transaction logs: program, project and last; documents and responses.
    let d = data(
        &app,
        r#"{ all: _transaction_log_count(program: "prog", project: "proj")
             none: _transaction_log_count(program: "prog", project: "other")
             last: transaction_log(last: 1) { id program project type quick_search related_cases { id }
               documents { doc_format doc_size name doc
                 response { success code entity_error_count created_entity_count updated_entity_count
                            entities { type action valid unique_keys } } } } }"#,
    )
    .await;
    // The project's creation and two uploads.
    assert_eq!(d["all"], json!(3), "{d}");
    assert_eq!(d["none"], json!(0));
    let last = &d["last"][0];
    assert_eq!(last["program"], "prog");
    assert_eq!(last["project"], "proj");
    assert_eq!(last["type"], "upload");
    assert_eq!(last["quick_search"], Value::Null);
    assert_eq!(last["related_cases"], json!([]));
    let document = &last["documents"][0];
    assert_eq!(document["doc_format"], "JSON");
    let doc: Value = serde_json::from_str(document["doc"].as_str().unwrap()).unwrap();
    assert_eq!(doc[1]["submitter_id"], "reads-1");
    assert_eq!(
        document["doc_size"],
        json!(document["doc"].as_str().unwrap().len())
    );
    let response = &document["response"];
    assert_eq!(response["success"], json!(true));
    assert_eq!(response["code"], json!(200));
    assert_eq!(response["entity_error_count"], json!(0));
    assert_eq!(response["created_entity_count"], json!(3));
    assert_eq!(response["entities"].as_array().unwrap().len(), 3);
    assert_eq!(response["entities"][0]["action"], "create");
    assert_eq!(response["entities"][0]["valid"], json!(true));
    // The last N by id, newest first.
    let d = data(
        &app,
        "{ transaction_log(last: 2) { id } every: transaction_log(first: 0) { id } }",
    )
    .await;
    let ids = |v: &Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let every = ids(&d["every"]);
    let mut newest: Vec<i64> = every.clone();
    newest.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids(&d["transaction_log"]), newest[..2]);
}

/// #28.3: a query whose lists could return too many rows (estimated from
/// the `first` of every level and the rows per type) is refused before
/// anything runs; an answer built in memory past its byte limit is refused
/// with the limit named.
#[tokio::test]
async fn answers_are_bounded_by_estimated_rows_and_bytes() {
    use commons::graphql::{Budget, Limits, RequestContext, execute};
    let (app, _) = fixture().await;
    let run = |limits: Limits, query: String| {
        let context = RequestContext {
            store: app.state.store.clone(),
            dictionary: app.state.dictionary.clone(),
            scope: commons::plan::ReadScope::All,
            timeout: std::time::Duration::from_secs(60),
            stream: None,
            budget: Budget::new(&limits),
        };
        execute(&app.state.schema, context, query, json!({}), None)
    };
    let rows = Limits {
        max_estimated_rows: 1_000,
        ..Limits::default()
    };
    // One experiment, twelve cases: every hop back to the cases multiplies by 12.
    let hops = "{ experiment(first: 0) { cases(first: 0) { experiments(first: 0) { cases(first: 0) { \
                experiments(first: 0) { cases(first: 0) { submitter_id } } } } } } }";
    let before = app.state.store.graphql_statement_count();
    let (status, body) = run(rows, hops.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("--graphql-max-rows"), "{body}");
    assert_eq!(
        app.state.store.graphql_statement_count(),
        before,
        "refused before running"
    );
    let one_hop = "{ experiment(first: 0) { cases(first: 0) { submitter_id } } }";
    let (status, body) = run(rows, one_hop.to_string()).await;
    assert_eq!(status, 200, "{body}");
    // Aliased copies add up.
    let copies: String = (0..100)
        .map(|i| format!("c{i}: experiment(first: 0) {{ cases(first: 0) {{ experiments(first: 0) {{ id }} }} }} "))
        .collect();
    let (status, body) = run(rows, format!("{{ {copies} }}")).await;
    assert_eq!(status, 400, "{body}");
    // The default limit lets ordinary nested queries through.
    let reply = app.graphql(&app.admin_token, hops).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let bytes = Limits {
        max_answer_bytes: 2_000,
        ..Limits::default()
    };
    let query = "{ sample(first: 0) { id submitter_id } _case_count }".to_string();
    let (status, body) = run(bytes, query).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("--graphql-max-answer-bytes"),
        "{body}"
    );
}
