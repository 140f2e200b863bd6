//! `commons index import` and `commons index export`, run as an operator
//! would against the database a server uses: the manifest's rows become
//! the records the HTTP API serves, a bad row stops the import before
//! anything is written, and an export reads back in unchanged.

use crate::common;

use std::process::{Command, Output};

use axum::http::StatusCode;
use common::TestApp;

fn commons(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_commons"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const MD5_A: &str = "0cc175b9c0f1b6a831c399e269772661";
const MD5_B: &str = "92eb5ffee6ae2fec3ad71c777531578f";
const GUID_A: &str = "dg.TEST/9a0e4b6e-4b1c-4d7a-9f3e-1e2d3c4b5a60";

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_imports_exports_and_imports_again_unchanged() {
    let app = TestApp::new(None).await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data_dir = data_dir.to_str().unwrap();
    let manifest = dir.path().join("manifest.tsv");
    std::fs::write(
        &manifest,
        format!(
            "guid\tmd5\tsize\tacl\tauthz\turls\tfile_name\n\
             {GUID_A}\t{MD5_A}\t1\t['Open']\t/programs/p/projects/q\ts3://bucket/a%20b.txt gs://bucket/a.txt\ta b.txt\n\
             \t{MD5_B}\t2\tphs1,phs2\t[/programs/p]\t\tb.txt\n"
        ),
    )
    .unwrap();
    let import = |path: &str| {
        commons(&[
            "index",
            "import",
            path,
            "--database-url",
            &app.database_url,
            "--data-dir",
            data_dir,
            "--index-prefix",
            "dg.TEST/",
        ])
    };
    let output = import(manifest.to_str().unwrap());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("2 records created"),
        "{}",
        stderr(&output)
    );

    // The records are the HTTP API's, prefixed did and all.
    let reply = app.get(&format!("/index/index/{GUID_A}"), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let a = reply.json();
    assert_eq!(a["acl"], serde_json::json!(["*"]));
    assert_eq!(
        a["urls"],
        serde_json::json!(["s3://bucket/a b.txt", "gs://bucket/a.txt"])
    );
    assert_eq!(a["file_name"], "a b.txt");
    let reply = app
        .get(&format!("/index/index/?hash=md5:{MD5_B}&size=2"), None)
        .await;
    let b = &reply.json()["records"][0];
    assert!(
        b["did"].as_str().unwrap().starts_with("dg.TEST/"),
        "a minted did carries the prefix: {b}"
    );
    assert_eq!(b["acl"], serde_json::json!(["phs1", "phs2"]));
    assert_eq!(b["authz"], serde_json::json!(["/programs/p"]));

    // Export, then import the export: nothing changes.
    let exported = dir.path().join("export.tsv");
    let output = commons(&[
        "index",
        "export",
        "--out",
        exported.to_str().unwrap(),
        "--database-url",
        &app.database_url,
        "--data-dir",
        data_dir,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&exported).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("s3://bucket/a%20b.txt"), "{text}");
    let output = import(exported.to_str().unwrap());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("0 records created, 0 updated, 2 unchanged"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        app.get(&format!("/index/index/{GUID_A}"), None)
            .await
            .json(),
        a
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_row_stops_the_import_before_anything_is_written() {
    let app = TestApp::new(None).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.tsv");
    let mut text = String::from("guid\tmd5\tsize\tacl\tauthz\turls\tfile_name\n");
    for i in 0..50 {
        text.push_str(&format!(
            "\t{MD5_A}\t{i}\t*\t/programs/p\ts3://b/{i}\tf{i}\n"
        ));
    }
    text.push_str("\tnot-an-md5\t7\t*\t/programs/p\ts3://b/x\tx\n");
    std::fs::write(&manifest, text).unwrap();
    let output = commons(&[
        "index",
        "import",
        manifest.to_str().unwrap(),
        "--database-url",
        &app.database_url,
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("line 52"), "{}", stderr(&output));
    let stats = app.get("/index/_stats", None).await.json();
    assert_eq!(stats["fileCount"], 0, "nothing was written: {stats}");

    // A guid indexed with another md5 is refused too, naming the line.
    let reply = app
        .admin_json(
            "POST",
            "/index/index/",
            &serde_json::json!({
                "did": GUID_A, "form": "object", "size": 1,
                "hashes": {"md5": MD5_A}, "urls": [], "authz": ["/programs/p"],
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    std::fs::write(
        &manifest,
        format!("guid\tmd5\tsize\n{GUID_A}\t{MD5_B}\t1\n"),
    )
    .unwrap();
    let output = commons(&[
        "index",
        "import",
        manifest.to_str().unwrap(),
        "--database-url",
        &app.database_url,
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("line 2") && stderr(&output).contains("different size or md5"),
        "{}",
        stderr(&output)
    );
    let record = app
        .get(&format!("/index/index/{GUID_A}"), None)
        .await
        .json();
    assert_eq!(record["hashes"]["md5"], MD5_A);
}

/// A row refused only when it is written (its guid is indexed with another
/// md5), after a first batch of 10,000 rows went into the transaction:
/// nothing of the manifest is kept.
#[tokio::test(flavor = "multi_thread")]
async fn an_import_is_all_or_nothing_across_batches() {
    let app = TestApp::new(None).await;
    let reply = app
        .admin_json(
            "POST",
            "/index/index/",
            &serde_json::json!({
                "did": GUID_A, "form": "object", "size": 1,
                "hashes": {"md5": MD5_A}, "urls": [], "authz": ["/programs/p"],
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.tsv");
    let mut text = String::from("guid\tmd5\tsize\tauthz\n");
    for i in 0..10_050 {
        text.push_str(&format!("\t{MD5_A}\t{}\t/programs/p\n", i + 10));
    }
    text.push_str(&format!("{GUID_A}\t{MD5_B}\t1\t/programs/p\n"));
    std::fs::write(&manifest, text).unwrap();
    let output = commons(&[
        "index",
        "import",
        manifest.to_str().unwrap(),
        "--database-url",
        &app.database_url,
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("line 10052") && stderr(&output).contains("different size or md5"),
        "{}",
        stderr(&output)
    );
    let stats = app.get("/index/_stats", None).await.json();
    assert_eq!(
        stats["fileCount"], 1,
        "only the record from before: {stats}"
    );
}
