//! `commons backup` and `commons restore`, run as a user would while the
//! server runs: the restored commons holds every record and still accepts
//! the keys and tokens of the original.

use crate::common;

use std::process::Command;
use std::sync::Arc;

use axum::http::StatusCode;
use common::{PUBLIC_URL, TestApp};

fn commons(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_commons"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "commons {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_and_restore_round_trip_every_record() {
    let app = TestApp::with_simulated(4).await;

    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("commons.backup");
    let backup = backup.to_str().unwrap();
    let source_dir = dir.path().join("unused");
    commons(&[
        "backup",
        "--out",
        backup,
        "--database-url",
        &app.database_url,
        "--data-dir",
        source_dir.to_str().unwrap(),
    ]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(backup).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup holds secrets: owner-only");
    let wal = std::fs::metadata(format!("{backup}-wal")).map_or(0, |m| m.len());
    assert_eq!(
        wal, 0,
        "the backup file alone is complete (WAL checkpointed)"
    );
    let restored_dir = dir.path().join("restored");
    commons(&[
        "restore",
        "--from",
        backup,
        "--data-dir",
        restored_dir.to_str().unwrap(),
    ]);

    let store = commons::store::Store::open(&commons::store::Store::default_url(&restored_dir))
        .await
        .unwrap();
    let state = commons::cli::app_state(
        commons::dictionary::load(None).unwrap(),
        store,
        PUBLIC_URL,
        commons::auth::Lifetimes::default(),
        commons::graphql::Limits::default(),
        &commons::storage::StorageConfig::local(&restored_dir.join("objects")),
    )
    .await
    .unwrap();
    let restored = TestApp::from_state(Arc::new(state), app.admin_token.clone());
    for node in commons::simulate::submission_order(&app.state.dictionary) {
        let path = format!(
            "/api/v0/submission/prog/proj/export/?node_label={}&format=json",
            node.id
        );
        let original = app.get(&path, Some(&app.admin_token)).await;
        let copy = restored.get(&path, Some(&app.admin_token)).await;
        assert_eq!(copy.status, StatusCode::OK, "{}", copy.text());
        assert_eq!(original.json(), copy.json(), "{}", node.id);
        assert_eq!(original.json()["data"].as_array().unwrap().len(), 4);
    }
    // A backup never overwrites, and a restore only goes into an empty database.
    let again = Command::new(env!("CARGO_BIN_EXE_commons"))
        .args([
            "backup",
            "--out",
            backup,
            "--database-url",
            &app.database_url,
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let into_full = Command::new(env!("CARGO_BIN_EXE_commons"))
        .args([
            "restore",
            "--from",
            backup,
            "--data-dir",
            restored_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!into_full.status.success());
}
