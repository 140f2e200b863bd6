//! `commons migrate-data`: a populated commons copied into an empty database
//! (of the other backend when the tests run on PostgreSQL) answers exactly as
//! the original: same records, links, ids, users and valid tokens.

use crate::common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::{PUBLIC_URL, TestApp};
use commons::auth::Lifetimes;
use commons::graphql::Limits;
use commons::store::Store;
use serde_json::Value;

#[tokio::test]
async fn a_copied_commons_answers_like_the_original() {
    let app = TestApp::with_simulated(3).await;

    let dir = tempfile::tempdir().unwrap();
    let target = Store::open(&Store::default_url(dir.path())).await.unwrap();
    let summary = target.copy_from(&app.state.store).await.unwrap();
    assert!(
        summary.iter().any(|(t, n)| *t == "nodes" && *n > 10),
        "{summary:?}"
    );
    let copy = commons::cli::app_state(
        commons::dictionary::load(None).unwrap(),
        target,
        PUBLIC_URL,
        Lifetimes::default(),
        Limits::default(),
        &commons::storage::StorageConfig::local(&dir.path().join("objects")),
    )
    .await
    .unwrap();
    let copy = TestApp::from_state(Arc::new(copy), app.admin_token.clone());

    let query = "{ study(first: 0) { id submitter_id subjects(first: 0) { id submitter_id samples(first: 0) { id } } } _subject_count }";
    let before = app.graphql(&app.admin_token, query).await;
    let after = copy.graphql(&app.admin_token, query).await;
    assert_eq!(
        after.status,
        StatusCode::OK,
        "the original admin token verifies on the copy: {}",
        after.text()
    );
    assert_eq!(before.json(), after.json());
    for node in commons::simulate::submission_order(&app.state.dictionary) {
        let path = format!(
            "/api/v0/submission/prog/proj/export/?node_label={}&format=tsv",
            node.id
        );
        assert_eq!(
            app.get(&path, Some(&app.admin_token)).await.body,
            copy.get(&path, Some(&app.admin_token)).await.body
        );
    }

    // The copy keeps working: a new submission lands after the copied ones.
    let more = commons::simulate::records(&copy.state.dictionary, "proj", 4);
    let reply = copy
        .admin_json("PUT", "/api/v0/submission/prog/proj", &Value::Array(more))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    // A non-empty target is refused.
    let again = copy
        .state
        .store
        .copy_from(&app.state.store)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("empty"), "{again}");
}
