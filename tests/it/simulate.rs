//! `commons simulate` output for every dictionary is accepted by the server
//! file by file in the order it lists, and each planted bad record is refused.

use crate::common;

use std::path::Path;

use axum::http::StatusCode;
use common::TestApp;
use commons::simulate::{FileFormat, write_files};

async fn submit_all(dictionary: Option<&Path>, format: FileFormat) {
    let name = dictionary.map_or("bundled".into(), |p| p.display().to_string());
    let app = TestApp::new(dictionary).await;
    app.project("sim", "proj").await;
    let out = tempfile::tempdir().unwrap();
    let written = write_files(
        &app.state.dictionary,
        "sim-proj",
        3,
        7,
        format,
        true,
        out.path(),
    )
    .unwrap();
    let order = std::fs::read_to_string(out.path().join("submission_order.txt")).unwrap();
    assert_eq!(order.lines().count(), written.files.len(), "{name}");
    let problems = std::fs::read_to_string(out.path().join("invalid.tsv")).unwrap();
    assert_eq!(
        problems.lines().count(),
        written.files.len() + 1,
        "{name}: one bad record per file"
    );
    let content_type = match format {
        FileFormat::Tsv => "text/tab-separated-values",
        FileFormat::Json => "application/json",
    };
    for file in order.lines() {
        let body = std::fs::read(out.path().join(file)).unwrap();
        let reply = app
            .request(
                "PUT",
                "/api/v0/submission/sim/proj",
                Some(&app.admin_token),
                content_type,
                body.clone(),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{name}: {file}: the bad record must be refused"
        );
        let envelope = reply.json();
        assert_eq!(
            envelope["entity_error_count"], 1,
            "{name}: {file}: {envelope}"
        );
        // Without its last record (the bad one) the file is accepted whole.
        let valid = match format {
            FileFormat::Tsv => {
                let text = String::from_utf8(body).unwrap();
                let lines: Vec<&str> = text.lines().collect();
                (lines[..lines.len() - 1].join("\n") + "\n").into_bytes()
            }
            FileFormat::Json => {
                let mut records: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                records.pop();
                serde_json::to_vec(&records).unwrap()
            }
        };
        let reply = app
            .request(
                "PUT",
                "/api/v0/submission/sim/proj",
                Some(&app.admin_token),
                content_type,
                valid,
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{name}: {file}: {}",
            reply.text()
        );
        assert_eq!(reply.json()["created_entity_count"], 3, "{name}: {file}");
    }
}

#[tokio::test]
async fn simulated_files_load_for_every_dictionary() {
    submit_all(None, FileFormat::Tsv).await;
    submit_all(None, FileFormat::Json).await;
    for dictionary in common::reference_dictionaries() {
        submit_all(Some(&dictionary), FileFormat::Tsv).await;
    }
}
