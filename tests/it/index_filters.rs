//! indexd's JSON listing filters: `urls_metadata` (records with a url
//! containing a part whose metadata holds given pairs) and `negate_params`
//! (records that do not match urls, acl, authz, file_name, version,
//! metadata or urls_metadata, with indexd's joins: a negated list keeps
//! only records that have such a list).

use crate::common;

use axum::http::StatusCode;
use common::TestApp;
use serde_json::{Value, json};

/// Create a record as the administrator.
async fn create(app: &TestApp, did: &str, body: Value) {
    let mut body = body;
    body["did"] = json!(did);
    body["form"] = json!("object");
    body["size"] = json!(10);
    body["hashes"] = json!({"md5": format!("{:0>32}", did.len())});
    let reply = app.admin_json("POST", "/index/index/", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

/// The dids a listing with this query string answers, sorted.
async fn dids(app: &TestApp, query: &str) -> Vec<String> {
    let reply = app.get(&format!("/index/index?{query}"), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text());
    let mut dids: Vec<String> = reply.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["did"].as_str().unwrap().to_string())
        .collect();
    dids.sort();
    dids
}

fn encoded(value: Value) -> String {
    percent_encoding::utf8_percent_encode(&value.to_string(), percent_encoding::NON_ALPHANUMERIC)
        .to_string()
}

#[tokio::test]
async fn url_metadata_and_negated_filters_select_as_indexd_does() {
    let app = TestApp::new(None).await;
    let a = "11111111-1111-4111-8111-111111111111";
    let b = "22222222-2222-4222-8222-222222222222";
    let c = "33333333-3333-4333-8333-333333333333";
    create(
        &app,
        a,
        json!({"file_name": "a.bam", "version": "1", "acl": ["phs1"], "authz": ["/programs/p"],
               "urls": ["s3://bucket/a.bam", "gs://other/a.bam"],
               "urls_metadata": {"s3://bucket/a.bam": {"state": "validated", "tier": "hot"}},
               "metadata": {"release": "r1"}}),
    )
    .await;
    create(
        &app,
        b,
        json!({"file_name": "b.bam", "version": "2", "acl": ["phs2"], "authz": [],
               "urls": ["s3://bucket/b.bam"],
               "urls_metadata": {"s3://bucket/b.bam": {"state": "uploaded"}},
               "metadata": {"release": "r2", "kind": "x"}}),
    )
    .await;
    create(
        &app,
        c,
        json!({"file_name": "c.bam", "acl": [], "authz": ["/programs/p"], "urls": [],
               "metadata": {}}),
    )
    .await;

    // urls_metadata: a url containing the part, with every pair.
    let q = |v: Value| format!("urls_metadata={}", encoded(v));
    assert_eq!(
        dids(&app, &q(json!({"bucket": {"state": "validated"}}))).await,
        [a]
    );
    assert_eq!(
        dids(&app, &q(json!({"bucket/": {}}))).await,
        [a, b],
        "records with any metadata on a matching url"
    );
    assert!(
        dids(&app, &q(json!({"gs://": {"state": "validated"}})))
            .await
            .is_empty()
    );
    assert!(
        dids(
            &app,
            &q(json!({"a.bam": {"state": "validated", "tier": "cold"}}))
        )
        .await
        .is_empty()
    );
    let echoed = app
        .get(
            &format!(
                "/index/index?{}",
                q(json!({"bucket": {"state": "validated"}}))
            ),
            None,
        )
        .await
        .json();
    assert_eq!(
        echoed["urls_metadata"],
        json!({"bucket": {"state": "validated"}})
    );

    // negate_params.
    let n = |v: Value| format!("negate_params={}", encoded(v));
    assert_eq!(dids(&app, &n(json!({"file_name": "a.bam"}))).await, [b, c]);
    assert_eq!(
        dids(&app, &n(json!({"version": "1"}))).await,
        [b],
        "a null version never matches, as in SQL"
    );
    assert_eq!(
        dids(&app, &n(json!({"urls": ["s3://bucket/a.bam"]}))).await,
        [b],
        "only records that have urls"
    );
    assert_eq!(dids(&app, &n(json!({"acl": ["phs1"]}))).await, [b]);
    assert_eq!(
        dids(&app, &n(json!({"authz": ["/programs/p"]}))).await,
        Vec::<String>::new()
    );
    assert_eq!(
        dids(&app, &n(json!({"metadata": {"release": "r1"}}))).await,
        [b, c]
    );
    assert_eq!(
        dids(&app, &n(json!({"metadata": {"kind": null}}))).await,
        [a, c],
        "no such key"
    );
    assert_eq!(
        dids(
            &app,
            &n(json!({"urls_metadata": {"bucket": {"state": "validated"}}}))
        )
        .await,
        [b],
        "only records with url metadata, none of whose bucket urls is validated"
    );
    assert_eq!(
        dids(&app, &n(json!({"urls_metadata": {"b.bam": {}}}))).await,
        [a],
        "a url with metadata not containing the part"
    );
    assert_eq!(
        dids(
            &app,
            &n(json!({"urls_metadata": {"bucket": {"tier": null}}}))
        )
        .await,
        [b],
        "a url with metadata that is not a bucket url holding tier"
    );
    // Both filters with the others.
    assert_eq!(
        dids(
            &app,
            &format!(
                "{}&{}",
                q(json!({"bucket": {}})),
                n(json!({"acl": ["phs2"]}))
            )
        )
        .await,
        [a]
    );

    // Refusals, in indexd's words where it has them.
    for (query, says) in [
        (
            "urls_metadata=%7Bnot-json",
            "urls_metadata must be a valid json string",
        ),
        (
            "negate_params=%5B1%5D",
            "negate_params must be a JSON object",
        ),
        (&*n(json!({"size": 3})), "cannot negate \\\"size\\\""),
        (
            &*q(json!({"bucket": "validated"})),
            "urls_metadata must map",
        ),
    ] {
        let reply = app.get(&format!("/index/index?{query}"), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(reply.text().contains(says), "{query}: {}", reply.text());
    }
}
