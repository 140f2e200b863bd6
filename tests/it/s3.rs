//! Data files in an S3-compatible bucket (FILES.md F2): a real S3 server
//! that checks SigV4 signatures (`s3s-fs`, installed by `.ci/run`) holds
//! the bytes; clients PUT and GET through presigned URLs and Commons never
//! carries them. The server itself refuses a tampered or expired URL; a
//! single PUT is indexed on the next read, a multipart upload at
//! `complete` (with the part ETags checked against the bucket's).

use crate::common;

use axum::http::StatusCode;
use common::{Reply, TestApp, free_port, http};
use serde_json::{Value, json};

use commons::storage::{S3Settings, StorageConfig};
use commons::store::{PolicyRow, RoleRow};

const ACCESS_KEY: &str = "AKCOMMONSTEST";
const SECRET_KEY: &str = "SKCOMMONSTEST";
const BUCKET: &str = "commons-test";

/// An `s3s-fs` server on a free port, killed when dropped.
struct S3Server {
    child: std::process::Child,
    endpoint: String,
    root: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start the S3 server, or None (with a notice) where it is not installed;
/// in CI a missing server is a failure.
fn s3_server() -> Option<S3Server> {
    let program = std::env::var("COMMONS_TEST_S3S_FS").unwrap_or_else(|_| "s3s-fs".into());
    let installed = std::process::Command::new(&program)
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{program} (the S3 test server, `cargo install s3s-fs --features binary`) is missing, and CI requires it"
        );
        eprintln!("SKIPPED: {program} is not installed (cargo install s3s-fs --features binary)");
        return None;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join(BUCKET)).unwrap();
    let port = free_port();
    let child = std::process::Command::new(&program)
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        root,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some(server)
}

/// A commons whose objects go to the bucket, with an uploader `alice`.
async fn commons(s3: &S3Server) -> (TestApp, String) {
    commons_with(s3, vec![format!("s3://{BUCKET}/uploads")]).await
}

/// A commons with these `--storage` locations, with an uploader `alice`.
async fn commons_with(s3: &S3Server, locations: Vec<String>) -> (TestApp, String) {
    // SAFETY: nextest runs every test in a process of its own, and this
    // one sets its credentials before any thread reads the environment.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    }
    let storage = StorageConfig {
        locations,
        s3: S3Settings {
            endpoint: Some(s3.endpoint.clone()),
            region: "us-east-1".into(),
            path_style: true,
        },
    };
    let app = TestApp::with_storage(None, Some(storage)).await;
    let store = &app.state.store;
    store
        .upsert_role(&RoleRow {
            id: "file_uploader".into(),
            permissions: json!([{"id": "u", "action": {"service": "fence", "method": "file_upload"}}]),
        })
        .await
        .unwrap();
    store
        .upsert_policy(&PolicyRow {
            id: "data_upload".into(),
            role_ids: vec!["file_uploader".into()],
            resource_paths: vec!["/data_file".into()],
        })
        .await
        .unwrap();
    let (_, _, alice) = app.user("alice", &["data_upload"]).await;
    (app, alice)
}

async fn call(app: &TestApp, method: &str, path: &str, token: &str, body: Value) -> Reply {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    app.request(method, path, Some(token), "application/json", bytes)
        .await
}

/// A request straight to the bucket: (status, ETag, body).
fn to_bucket(method: &str, url: &str, body: &[u8]) -> (u16, Option<String>, Vec<u8>) {
    let agent = http();
    let response = match method {
        "PUT" => agent.put(url).send(body),
        "GET" => agent.get(url).call(),
        "HEAD" => agent.head(url).call(),
        other => panic!("no {other}"),
    };
    let mut response = response.unwrap();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string());
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_vec().unwrap_or_default();
    (status, etag, body)
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

#[tokio::test]
async fn single_uploads_go_straight_to_the_bucket_which_checks_the_signatures() {
    let Some(s3) = s3_server() else { return };
    let (app, alice) = commons(&s3).await;
    let reply = call(
        &app,
        "POST",
        "/user/data/upload",
        &alice,
        json!({"file_name": "reads.bam"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let answer = reply.json();
    let guid = answer["guid"].as_str().unwrap().to_string();
    let put_url = answer["url"].as_str().unwrap().to_string();
    assert!(
        put_url.starts_with(&format!(
            "{}/{BUCKET}/uploads/{guid}/reads.bam?",
            s3.endpoint
        )) && put_url.contains("X-Amz-Signature="),
        "{put_url}"
    );
    let bytes = b"ACGT".repeat(1000);

    // The bucket, not Commons, refuses a changed signature.
    // The signature ends the URL: change its last digit.
    let last = if put_url.ends_with('0') { "1" } else { "0" };
    let tampered = format!("{}{last}", &put_url[..put_url.len() - 1]);
    assert_eq!(to_bucket("PUT", &tampered, &bytes).0, 403);
    let (status, etag, _) = to_bucket("PUT", &put_url, &bytes);
    assert_eq!(status, 200);
    assert_eq!(etag.unwrap().trim_matches('"'), md5_hex(&bytes));
    assert!(
        s3.root
            .path()
            .join(BUCKET)
            .join("uploads")
            .join(&guid)
            .join("reads.bam")
            .exists(),
        "the object is in the bucket"
    );

    // The first read shows size and MD5; the record points at the bucket.
    let record = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(record["size"], bytes.len());
    assert_eq!(record["hashes"]["md5"], md5_hex(&bytes));
    assert_eq!(
        record["urls"],
        json!([format!("s3://{BUCKET}/uploads/{guid}/reads.bam")])
    );

    // Download through a presigned GET, and an expired one refused by the bucket.
    let download = call(
        &app,
        "GET",
        &format!("/user/data/download/{guid}?protocol=s3"),
        &alice,
        Value::Null,
    )
    .await;
    assert_eq!(download.status, StatusCode::OK, "{}", download.text());
    let get_url = download.json()["url"].as_str().unwrap().to_string();
    let (status, _, body) = to_bucket("GET", &get_url, b"");
    assert_eq!(status, 200);
    assert!(body == bytes, "byte for byte");
    let short = call(
        &app,
        "GET",
        &format!("/user/data/download/{guid}?expires_in=1"),
        &alice,
        Value::Null,
    )
    .await
    .json()["url"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        to_bucket("GET", &short, b"").0,
        403,
        "expired at the bucket"
    );

    // Deleting removes the object from the bucket, then the record.
    let deleted = call(
        &app,
        "DELETE",
        &format!("/user/data/{guid}"),
        &alice,
        Value::Null,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    assert_eq!(to_bucket("GET", &get_url, b"").0, 404);
    assert_eq!(
        app.get(&format!("/index/index/{guid}"), None).await.status,
        StatusCode::NOT_FOUND
    );
}

/// Start a multipart upload and PUT `parts` straight to the bucket:
/// (guid, uploadId, the parts' ETags).
async fn multipart_parts(
    app: &TestApp,
    token: &str,
    file_name: &str,
    parts: &[Vec<u8>],
) -> (String, String, Vec<String>) {
    let reply = call(
        app,
        "POST",
        "/user/data/multipart/init",
        token,
        json!({"file_name": file_name}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let answer = reply.json();
    let guid = answer["guid"].as_str().unwrap().to_string();
    let upload_id = answer["uploadId"].as_str().unwrap().to_string();
    let mut etags = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let reply = call(
            app,
            "POST",
            "/user/data/multipart/upload",
            token,
            json!({"key": format!("{guid}/{file_name}"), "uploadId": upload_id, "partNumber": index + 1}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let url = reply.json()["presigned_url"].as_str().unwrap().to_string();
        assert!(
            url.contains("uploadId=") && url.contains("partNumber="),
            "{url}"
        );
        let (status, etag, _) = to_bucket("PUT", &url, part);
        assert_eq!(status, 200);
        etags.push(etag.expect("a part's PUT answers its ETag"));
    }
    (guid, upload_id, etags)
}

fn complete_body(guid: &str, file_name: &str, upload_id: &str, etags: &[String]) -> Value {
    let parts: Vec<Value> = etags
        .iter()
        .enumerate()
        .map(|(i, etag)| json!({"PartNumber": i + 1, "ETag": etag}))
        .collect();
    json!({"key": format!("{guid}/{file_name}"), "uploadId": upload_id, "parts": parts})
}

#[tokio::test]
async fn multipart_uploads_complete_in_the_bucket_with_their_etags_checked() {
    let Some(s3) = s3_server() else { return };
    let (app, alice) = commons(&s3).await;
    let parts = vec![vec![7u8; 5 << 20], b"tail".to_vec()];

    // ETags that are not the parts' are refused, whatever the bucket does
    // with them: nothing is indexed and no object is left.
    let (guid, upload_id, etags) = multipart_parts(&app, &alice, "big.bin", &parts).await;
    let swapped = [etags[1].clone(), etags[0].clone()];
    let refused = call(
        &app,
        "POST",
        "/user/data/multipart/complete",
        &alice,
        complete_body(&guid, "big.bin", &upload_id, &swapped),
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text());
    let blank = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(
        blank["size"],
        Value::Null,
        "nothing indexed after a refusal"
    );
    let object = s3
        .root
        .path()
        .join(BUCKET)
        .join("uploads")
        .join(&guid)
        .join("big.bin");
    assert!(!object.exists(), "no object left behind");

    let (guid, upload_id, etags) = multipart_parts(&app, &alice, "big.bin", &parts).await;
    let done = call(
        &app,
        "POST",
        "/user/data/multipart/complete",
        &alice,
        complete_body(&guid, "big.bin", &upload_id, &etags),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    let whole = parts.concat();
    let record = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(record["size"], whole.len());
    assert_eq!(
        record["hashes"]["md5"],
        md5_hex(&whole),
        "read back and hashed"
    );
    assert!(record["hashes"]["sha256"].is_string());
    let url = call(
        &app,
        "GET",
        &format!("/user/data/download/{guid}"),
        &alice,
        Value::Null,
    )
    .await
    .json()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _, body) = to_bucket("GET", &url, b"");
    assert_eq!(status, 200);
    assert!(body == whole, "byte for byte");
}

#[tokio::test]
async fn with_several_buckets_an_upload_names_its_own() {
    let Some(s3) = s3_server() else { return };
    let folder = tempfile::tempdir().unwrap();
    let (app, alice) = commons_with(
        &s3,
        vec![
            folder.path().display().to_string(),
            format!("s3://{BUCKET}/uploads"),
        ],
    )
    .await;
    let upload = |bucket: Value| {
        let app = &app;
        let alice = alice.clone();
        async move {
            call(
                app,
                "POST",
                "/user/data/upload",
                &alice,
                json!({"file_name": "f.txt", "bucket": bucket}),
            )
            .await
        }
    };
    let default = upload(Value::Null).await.json();
    assert!(
        default["url"]
            .as_str()
            .unwrap()
            .starts_with(common::PUBLIC_URL),
        "the first location is the default: {default}"
    );
    let named = upload(json!(BUCKET)).await.json();
    assert!(
        named["url"].as_str().unwrap().starts_with(&s3.endpoint),
        "{named}"
    );
    let local = upload(json!("local")).await.json();
    assert!(
        local["url"]
            .as_str()
            .unwrap()
            .starts_with(common::PUBLIC_URL)
    );
    let unknown = upload(json!("elsewhere")).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.text().contains("elsewhere"), "{}", unknown.text());
}

#[tokio::test]
async fn a_data_file_node_maps_an_upload_no_one_has_read_yet() {
    let Some(s3) = s3_server() else { return };
    let (app, _) = commons(&s3).await;
    let admin = app.admin_token.clone();
    app.project("prog", "proj").await;
    let study = json!({"type": "study", "submitter_id": "study-1", "study_title": "A study",
        "study_design": "Observational", "projects": {"code": "proj"}});
    let reply = app
        .admin_json("PUT", "/api/v0/submission/prog/proj", &study)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let answer = call(
        &app,
        "POST",
        "/user/data/upload",
        &admin,
        json!({"file_name": "notes.tsv"}),
    )
    .await
    .json();
    let guid = answer["guid"].as_str().unwrap().to_string();
    let bytes = b"a\tb\n".repeat(100);
    assert_eq!(
        to_bucket("PUT", answer["url"].as_str().unwrap(), &bytes).0,
        200
    );
    // Straight to mapping: nothing has read the record since the PUT.
    let node = json!({"type": "clinical_file", "submitter_id": "notes", "file_name": "notes.tsv",
        "file_size": bytes.len(), "md5sum": md5_hex(&bytes), "object_id": guid,
        "data_category": "Clinical", "data_type": "Clinical Supplement", "data_format": "TSV",
        "studies": {"submitter_id": "study-1"}});
    let mapped = app
        .admin_json("PUT", "/api/v0/submission/prog/proj", &node)
        .await;
    assert_eq!(mapped.status, StatusCode::OK, "{}", mapped.text());
    let record = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(record["size"], bytes.len());
    assert_eq!(record["authz"], json!(["/programs/prog/projects/proj"]));
    assert_eq!(record["uploader"], Value::Null);
    assert_eq!(
        record["urls"],
        json!([format!("s3://{BUCKET}/uploads/{guid}/notes.tsv")])
    );
}
