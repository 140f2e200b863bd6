//! Faults during data-file uploads to the local store: a server killed
//! (SIGKILL) in the middle of a single PUT or of a multipart upload leaves
//! no partial object where a download would find it and a blank record the
//! user can upload to again; a full disk refuses the upload with a clear
//! error (507) and loses nothing stored before.

use crate::common;

use std::io::Write;

use axum::http::StatusCode;
use common::{PUBLIC_URL, TestApp};
use serde_json::{Value, json};

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

/// A JSON call to a real server: (status, body).
fn call(url: &str, method: &str, path: &str, token: &str, body: Value) -> (u16, Value) {
    let body = (!body.is_null()).then(|| body.to_string());
    common::send(method, &format!("{url}{path}"), token, body).expect("the server answers")
}

/// A signed URL of the server, as a path (the server signs for the public URL).
fn path_of(signed: &str) -> String {
    signed.strip_prefix(PUBLIC_URL).unwrap().to_string()
}

/// PUT `bytes` to a signed URL of the server at `url`: (status, ETag).
fn put(url: &str, signed: &str, bytes: &[u8]) -> (u16, String) {
    let response = common::http()
        .put(format!("{url}{}", path_of(signed)))
        .send(bytes)
        .unwrap();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (response.status().as_u16(), etag)
}

/// Start a PUT of `declared` bytes to a signed URL, send `sent` of them,
/// and leave the connection open (the caller kills the server meanwhile).
fn half_put(port: u16, signed: &str, declared: usize, sent: usize) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "PUT {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n\r\n",
        path_of(signed)
    )
    .unwrap();
    stream.write_all(&vec![b'x'; sent]).unwrap();
    stream.flush().unwrap();
    // Let the server take the bytes in before it dies.
    std::thread::sleep(std::time::Duration::from_millis(300));
    stream
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_upload_leaves_a_blank_record_to_upload_again() {
    let app = TestApp::new(None).await;
    let token = app.admin_token.clone();
    let data_dir = tempfile::tempdir().unwrap();
    let objects = data_dir.path().join("objects");
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");

    // A single PUT cut off by SIGKILL.
    let mut server = common::serve(&app.database_url, data_dir.path(), port);
    let (status, single) = call(
        &url,
        "POST",
        "/user/data/upload",
        &token,
        json!({"file_name": "one.bin"}),
    );
    assert_eq!(status, 201, "{single}");
    let single_guid = single["guid"].as_str().unwrap().to_string();
    let _cut = half_put(port, single["url"].as_str().unwrap(), 64 << 20, 8 << 20);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(
        !objects.join(&single_guid).exists(),
        "no partial object at the key: {:?}",
        files_under(&objects)
    );

    // A multipart upload cut off in its second part.
    let mut server = common::serve(&app.database_url, data_dir.path(), port);
    let (status, init) = call(
        &url,
        "POST",
        "/user/data/multipart/init",
        &token,
        json!({"file_name": "two.bin"}),
    );
    assert_eq!(status, 201, "{init}");
    let multi_guid = init["guid"].as_str().unwrap().to_string();
    let upload_id = init["uploadId"].as_str().unwrap().to_string();
    let key = format!("{multi_guid}/two.bin");
    let part_url = |number: u16| {
        let (status, body) = call(
            &url,
            "POST",
            "/user/data/multipart/upload",
            &token,
            json!({"key": key, "uploadId": upload_id, "partNumber": number}),
        );
        assert_eq!(status, 200, "{body}");
        body["presigned_url"].as_str().unwrap().to_string()
    };
    let first = vec![1u8; 5 << 20];
    let (status, etag1) = put(&url, &part_url(1), &first);
    assert_eq!(status, 200);
    let _cut = half_put(port, &part_url(2), 4 << 20, 1 << 20);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(
        !objects.join(&multi_guid).exists(),
        "no object before complete"
    );
    drop(server);

    // After the restart: both records blank, both uploads can be finished.
    let _server = common::serve(&app.database_url, data_dir.path(), port);
    for guid in [&single_guid, &multi_guid] {
        let (status, record) = call(
            &url,
            "GET",
            &format!("/index/index/{guid}"),
            &token,
            Value::Null,
        );
        assert_eq!(status, 200);
        assert_eq!(record["size"], Value::Null, "{record}");
        assert_eq!(record["urls"], json!([]));
    }
    let (status, again) = call(
        &url,
        "GET",
        &format!("/user/data/upload/{single_guid}?file_name=one.bin"),
        &token,
        Value::Null,
    );
    assert_eq!(status, 200, "{again}");
    let whole = vec![9u8; 3 << 20];
    assert_eq!(put(&url, again["url"].as_str().unwrap(), &whole).0, 200);
    let (_, record) = call(
        &url,
        "GET",
        &format!("/index/index/{single_guid}"),
        &token,
        Value::Null,
    );
    assert_eq!(record["hashes"]["md5"], md5_hex(&whole));

    let second = b"the rest".to_vec();
    let (status, etag2) = put(&url, &part_url(2), &second);
    assert_eq!(status, 200);
    let (status, done) = call(
        &url,
        "POST",
        "/user/data/multipart/complete",
        &token,
        json!({"key": key, "uploadId": upload_id, "parts": [
            {"PartNumber": 1, "ETag": etag1}, {"PartNumber": 2, "ETag": etag2}]}),
    );
    assert_eq!(status, 200, "{done}");
    let (_, record) = call(
        &url,
        "GET",
        &format!("/index/index/{multi_guid}"),
        &token,
        Value::Null,
    );
    assert_eq!(record["hashes"]["md5"], md5_hex(&[first, second].concat()));
}

/// A tmpfs of `bytes` mounted at `dir` (root only), unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, bytes: u64) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            return Some(Self(dir.to_path_buf()));
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "mounting a small tmpfs needs root, and CI runs as root"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs (not root)");
        None
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_the_upload_and_keeps_what_was_stored() {
    let root = tempfile::tempdir().unwrap();
    let objects = root.path().join("objects");
    let Some(_disk) = SmallDisk::mount(&objects, 4 << 20) else {
        return;
    };
    let app =
        TestApp::with_storage(None, Some(commons::storage::StorageConfig::local(&objects))).await;
    let token = Some(app.admin_token.as_str());
    let upload = |name: &str| {
        let app = &app;
        let body = json!({"file_name": name}).to_string().into_bytes();
        async move {
            let reply = app
                .request("POST", "/user/data/upload", token, "application/json", body)
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
            reply.json()
        }
    };
    let kept = upload("kept.bin").await;
    let kept_bytes = vec![5u8; 1 << 20];
    let path = |answer: &Value| path_of(answer["url"].as_str().unwrap());
    let stored = app
        .request(
            "PUT",
            &path(&kept),
            None,
            "application/octet-stream",
            kept_bytes.clone(),
        )
        .await;
    assert_eq!(stored.status, StatusCode::OK);

    let too_big = upload("big.bin").await;
    let refused = app
        .request(
            "PUT",
            &path(&too_big),
            None,
            "application/octet-stream",
            vec![6u8; 8 << 20],
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("full"), "{}", refused.text());
    let guid = too_big["guid"].as_str().unwrap();
    let record = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(record["size"], Value::Null, "nothing indexed");
    assert_eq!(
        files_under(&objects)
            .iter()
            .filter(|f| f.starts_with(".incoming/") && !f.contains("multipart"))
            .count(),
        0,
        "no temporary file left: {:?}",
        files_under(&objects)
    );

    // What was stored before is whole.
    let kept_guid = kept["guid"].as_str().unwrap();
    let download = app
        .get(&format!("/user/data/download/{kept_guid}"), token)
        .await
        .json();
    let bytes = app
        .get(&path_of(download["url"].as_str().unwrap()), None)
        .await;
    assert_eq!(bytes.status, StatusCode::OK);
    assert!(bytes.body == kept_bytes);
}
