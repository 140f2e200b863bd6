//! fence's data endpoints over the local store (FILES.md F2): upload to a
//! signed URL fills the blank record at once, download by signed URL with
//! `Range`, the authorization rules (file_upload, write-storage,
//! read-storage, delete, the uploader, public `acl`), and the refusals.

use crate::common;

use axum::http::StatusCode;
use common::{PUBLIC_URL, Reply, TestApp};
use serde_json::{Value, json};

use commons::store::{PolicyRow, RoleRow};

/// A role of one permission.
async fn role(app: &TestApp, id: &str, service: &str, method: &str) {
    app.state
        .store
        .upsert_role(&RoleRow {
            id: id.into(),
            permissions: json!([{"id": id, "action": {"service": service, "method": method}}]),
        })
        .await
        .unwrap();
}

async fn policy(app: &TestApp, id: &str, roles: &[&str], resource: &str) {
    app.state
        .store
        .upsert_policy(&PolicyRow {
            id: id.into(),
            role_ids: roles.iter().map(|r| r.to_string()).collect(),
            resource_paths: vec![resource.into()],
        })
        .await
        .unwrap();
}

const PROJECT: &str = "/programs/prog/projects/proj";

/// A commons with users: alice may upload, bob has no grants, carol may
/// upload to, read and delete the project's files, dave may only read them.
async fn commons() -> (TestApp, [String; 4]) {
    let app = TestApp::new(None).await;
    role(&app, "file_uploader", "fence", "file_upload").await;
    role(&app, "storage_writer", "*", "write-storage").await;
    role(&app, "storage_reader", "*", "read-storage").await;
    policy(&app, "data_upload", &["file_uploader"], "/data_file").await;
    policy(
        &app,
        "proj-storage",
        &["creator", "storage_writer", "storage_reader", "deleter"],
        PROJECT,
    )
    .await;
    policy(&app, "proj-storage-reader", &["storage_reader"], PROJECT).await;
    let (_, _, alice) = app.user("alice", &["data_upload"]).await;
    let (_, _, bob) = app.user("bob", &[]).await;
    let (_, _, carol) = app.user("carol", &["proj-storage"]).await;
    let (_, _, dave) = app.user("dave", &["proj-storage-reader"]).await;
    (app, [alice, bob, carol, dave])
}

async fn json_call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Reply {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    app.request(method, path, token, "application/json", bytes)
        .await
}

/// The path of a signed URL, as the in-process service takes it.
fn path_of(url: &str) -> String {
    url.strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("{url} is not under {PUBLIC_URL}"))
        .to_string()
}

async fn put_bytes(app: &TestApp, url: &str, bytes: &[u8]) -> Reply {
    app.request(
        "PUT",
        &path_of(url),
        None,
        "application/octet-stream",
        bytes.to_vec(),
    )
    .await
}

async fn upload(app: &TestApp, token: &str, body: Value, bytes: &[u8]) -> String {
    let reply = json_call(app, "POST", "/user/data/upload", Some(token), body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let answer = reply.json();
    let stored = put_bytes(app, answer["url"].as_str().unwrap(), bytes).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text());
    answer["guid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_upload_is_indexed_when_its_last_byte_arrives_and_downloads_byte_for_byte() {
    let (app, [alice, bob, _, _]) = commons().await;
    let reply = json_call(
        &app,
        "POST",
        "/user/data/upload",
        Some(&alice),
        json!({"file_name": "a.txt"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let answer = reply.json();
    let guid = answer["guid"].as_str().unwrap().to_string();
    let url = answer["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{PUBLIC_URL}/_objects/")), "{url}");

    // A blank record until the bytes are in.
    let record = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(record["uploader"], "alice");
    assert_eq!(record["size"], Value::Null);
    assert_eq!(record["hashes"], json!({}));

    let stored = put_bytes(&app, &url, b"hello world").await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text());
    assert_eq!(
        stored.headers["etag"],
        "\"5eb63bbbe01eeed093cb22bb8f5acdc3\""
    );
    let record = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(record["size"], 11);
    assert_eq!(record["hashes"]["md5"], "5eb63bbbe01eeed093cb22bb8f5acdc3");
    assert_eq!(
        record["hashes"]["sha256"],
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
    assert_eq!(record["file_name"], "a.txt");
    assert!(
        record["urls"][0].as_str().unwrap().starts_with("file://"),
        "{record}"
    );
    // The same URL cannot replace the stored bytes.
    let again = put_bytes(&app, &url, b"other bytes").await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());

    let reply = app
        .get(&format!("/user/data/download/{guid}"), Some(&alice))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let download = reply.json()["url"].as_str().unwrap().to_string();
    let object = app.get(&path_of(&download), None).await;
    assert_eq!(object.status, StatusCode::OK);
    assert_eq!(object.body, b"hello world");
    assert_eq!(object.headers["content-length"], "11");
    assert_eq!(object.headers["accept-ranges"], "bytes");
    assert_eq!(
        object.headers["etag"],
        "\"5eb63bbbe01eeed093cb22bb8f5acdc3\""
    );
    assert!(
        object.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("filename=\"a.txt\"")
    );
    let part = app
        .request_with_headers(
            "GET",
            &path_of(&download),
            &[("range", "bytes=6-")],
            Vec::new(),
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, b"world");
    let head = app
        .request_with_headers("HEAD", &path_of(&download), &[], Vec::new())
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers["content-length"], "11");
    assert!(head.body.is_empty());
    // Compression never touches a data file, even when asked for.
    let gz = app
        .request_with_headers(
            "GET",
            &path_of(&download),
            &[("accept-encoding", "gzip")],
            Vec::new(),
        )
        .await;
    assert!(gz.headers.get("content-encoding").is_none());
    assert_eq!(gz.body, b"hello world");

    // A URL the signature does not cover, or no longer covers.
    let tampered = download.replace("sig=", "sig=00");
    assert_eq!(
        app.get(&path_of(&tampered), None).await.status,
        StatusCode::FORBIDDEN
    );
    let key = format!("{guid}/a.txt");
    let local = app.state.objects.local().unwrap();
    let expired = local.signed_url("GET", &key, -1);
    assert_eq!(
        app.get(&path_of(&expired), None).await.status,
        StatusCode::FORBIDDEN
    );
    let as_put = local.signed_url("PUT", &key, 60);
    assert_eq!(
        app.get(&path_of(&as_put), None).await.status,
        StatusCode::FORBIDDEN
    );

    // Who may have the URL, and how it is asked for.
    let path = format!("/user/data/download/{guid}");
    assert_eq!(
        app.get(&path, Some(&bob)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.get(&path, None).await.status, StatusCode::UNAUTHORIZED);
    let s3 = app.get(&format!("{path}?protocol=s3"), Some(&alice)).await;
    assert_eq!(s3.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s3.json()["message"],
        format!("File {guid} does not have a location with specified protocol s3.")
    );
    let s2 = app.get(&format!("{path}?protocol=s2"), Some(&alice)).await;
    assert_eq!(s2.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        s2.json()["message"],
        "The specified protocol s2 is not supported"
    );
    let zero = app.get(&format!("{path}?expires_in=0"), Some(&alice)).await;
    assert_eq!(zero.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        zero.json()["message"],
        "Requested expiry must be a positive integer; instead got 0"
    );
    let capped = app
        .get(&format!("{path}?expires_in=999999"), Some(&alice))
        .await;
    let expires: i64 = capped.json()["url"]
        .as_str()
        .unwrap()
        .split("expires=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(expires <= commons::store::now_unix() + 3600);
    let redirect = app
        .get(&format!("{path}?redirect=true"), Some(&alice))
        .await;
    assert_eq!(redirect.status, StatusCode::FOUND);
    assert!(
        redirect.headers["location"]
            .to_str()
            .unwrap()
            .contains("/_objects/")
    );

    // Deleting: not by another user; by the uploader, objects then record.
    let reply = app
        .request(
            "DELETE",
            &format!("/user/data/{guid}"),
            Some(&bob),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = app
        .request(
            "DELETE",
            &format!("/user/data/{guid}"),
            Some(&alice),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    assert_eq!(
        app.get(&format!("/index/index/{guid}"), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&path_of(&download), None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn uploads_to_a_project_follow_its_storage_grants() {
    let (app, [alice, bob, carol, dave]) = commons().await;
    let to_project = json!({"file_name": "p.bin", "authz": [PROJECT]});
    for (who, token) in [("bob", &bob), ("dave", &dave), ("alice", &alice)] {
        let reply = json_call(
            &app,
            "POST",
            "/user/data/upload",
            Some(token),
            to_project.clone(),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{who}: {}",
            reply.text()
        );
    }
    let plain = json_call(
        &app,
        "POST",
        "/user/data/upload",
        Some(&bob),
        json!({"file_name": "x"}),
    )
    .await;
    assert_eq!(plain.status, StatusCode::FORBIDDEN);
    let missing = json_call(&app, "POST", "/user/data/upload", Some(&alice), json!({})).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);

    let guid = upload(&app, &carol, to_project, &[7u8; 1000]).await;
    let record = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(
        record["uploader"],
        Value::Null,
        "a project's file has no uploader"
    );
    assert_eq!(record["authz"], json!([PROJECT]));
    assert_eq!(record["size"], 1000);

    // dave reads it, but may neither upload its content nor delete it.
    let reply = app
        .get(&format!("/user/data/download/{guid}"), Some(&dave))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let object = app
        .get(&path_of(reply.json()["url"].as_str().unwrap()), None)
        .await;
    assert_eq!(object.body, vec![7u8; 1000]);
    assert_eq!(
        app.get(&format!("/user/data/upload/{guid}"), Some(&dave))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let refused = app
        .request(
            "DELETE",
            &format!("/user/data/{guid}"),
            Some(&dave),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.json()["message"],
        "You do not have arborist permissions to delete this file."
    );
    let deleted = app
        .request(
            "DELETE",
            &format!("/user/data/{guid}"),
            Some(&carol),
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
}

#[tokio::test]
async fn blank_records_public_files_and_upload_urls() {
    let (app, [alice, bob, _, _]) = commons().await;
    // A blank record has nothing to download yet; its uploader can get a
    // new URL to upload to (upload_file_to_guid), others cannot.
    let reply = json_call(
        &app,
        "POST",
        "/user/data/upload",
        Some(&alice),
        json!({"file_name": "later.txt"}),
    )
    .await;
    let guid = reply.json()["guid"].as_str().unwrap().to_string();
    let nothing = app
        .get(&format!("/user/data/download/{guid}"), Some(&alice))
        .await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);
    assert_eq!(nothing.json()["message"], "Can't find any file locations.");
    assert_eq!(
        app.get(&format!("/user/data/upload/{guid}"), Some(&bob))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let again = app
        .get(
            &format!("/user/data/upload/{guid}?file_name=renamed.txt"),
            Some(&alice),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    let url = again.json()["url"].as_str().unwrap().to_string();
    assert!(url.contains("/renamed.txt?"), "{url}");
    assert_eq!(
        put_bytes(&app, &url, b"at last").await.status,
        StatusCode::OK
    );
    let record = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(record["size"], 7);
    assert_eq!(
        app.get(
            "/user/data/download/00000000-0000-4000-8000-000000000000",
            Some(&alice)
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // A public record elsewhere: anyone gets its url as it is.
    let reply = app
        .admin_json(
            "POST",
            "/index/index/",
            &json!({"form": "object", "size": 3, "hashes": {"md5": "900150983cd24fb0d6963f7d28e17f72"},
                    "urls": ["https://example.org/abc"], "acl": ["*"], "authz": []}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let public = reply.json()["did"].as_str().unwrap().to_string();
    let reply = app
        .get(&format!("/user/data/download/{public}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["url"], "https://example.org/abc");
}

/// Start a multipart upload as `token`: (guid, uploadId).
async fn multipart_init(app: &TestApp, token: &str, file_name: &str) -> (String, String) {
    let reply = json_call(
        app,
        "POST",
        "/user/data/multipart/init",
        Some(token),
        json!({"file_name": file_name}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let answer = reply.json();
    (
        answer["guid"].as_str().unwrap().to_string(),
        answer["uploadId"].as_str().unwrap().to_string(),
    )
}

/// PUT one part to the URL fence hands out for it: its ETag.
async fn put_part(
    app: &TestApp,
    token: &str,
    key: &str,
    upload_id: &str,
    number: u16,
    bytes: &[u8],
) -> String {
    let reply = json_call(
        app,
        "POST",
        "/user/data/multipart/upload",
        Some(token),
        json!({"key": key, "uploadId": upload_id, "partNumber": number}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let url = reply.json()["presigned_url"].as_str().unwrap().to_string();
    let stored = put_bytes(app, &url, bytes).await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.text());
    stored.headers["etag"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_multipart_upload_is_indexed_at_complete_and_refuses_wrong_etags() {
    let (app, [alice, bob, _, _]) = commons().await;
    let (guid, upload_id) = multipart_init(&app, &alice, "big.bin").await;
    let key = format!("{guid}/big.bin");
    let blank = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(blank["uploader"], "alice");
    assert_eq!(blank["size"], Value::Null);

    let first: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 251) as u8).collect();
    let second = b"the last part may be small".to_vec();
    let etag1 = put_part(&app, &alice, &key, &upload_id, 1, &first).await;
    let etag2 = put_part(&app, &alice, &key, &upload_id, 2, &second).await;
    assert!(etag1.starts_with('"') && etag1.len() == 34, "{etag1}");

    // Refusals: no grant, missing arguments, a wrong ETag (nothing indexed).
    let complete = |parts: Value| json!({"key": key, "uploadId": upload_id, "parts": parts});
    let good = json!([{"PartNumber": 2, "ETag": etag2}, {"PartNumber": 1, "ETag": etag1}]);
    let refused = json_call(
        &app,
        "POST",
        "/user/data/multipart/complete",
        Some(&bob),
        complete(good.clone()),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let missing = json_call(
        &app,
        "POST",
        "/user/data/multipart/complete",
        Some(&alice),
        json!({"key": key}),
    )
    .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.text().contains("uploadId"), "{}", missing.text());
    let wrong = json_call(
        &app,
        "POST",
        "/user/data/multipart/complete",
        Some(&alice),
        complete(json!([{"PartNumber": 1, "ETag": etag2}, {"PartNumber": 2, "ETag": etag2}])),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::CONFLICT, "{}", wrong.text());
    let still_blank = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(still_blank["size"], Value::Null);

    // Parts given out of order are joined in order; the record is filled at once.
    let done = json_call(
        &app,
        "POST",
        "/user/data/multipart/complete",
        Some(&alice),
        complete(good.clone()),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(done.json(), json!({"message": "OK"}));
    let mut whole = first.clone();
    whole.extend_from_slice(&second);
    let record = app.get(&format!("/index/index/{guid}"), None).await.json();
    assert_eq!(record["size"], whole.len());
    let md5 = {
        use md5::Digest;
        hex::encode(md5::Md5::digest(&whole))
    };
    assert_eq!(record["hashes"]["md5"], md5);
    assert_eq!(record["file_name"], "big.bin");

    let url = json_call(
        &app,
        "GET",
        &format!("/user/data/download/{guid}"),
        Some(&alice),
        Value::Null,
    )
    .await
    .json()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let body = app.get(&path_of(&url), None).await;
    assert_eq!(body.status, StatusCode::OK);
    assert!(
        body.body == whole,
        "the download is the upload, byte for byte"
    );

    // Completing again: the upload is gone and the record full.
    let again = json_call(
        &app,
        "POST",
        "/user/data/multipart/complete",
        Some(&alice),
        complete(good),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
    let bad_number = json_call(
        &app,
        "POST",
        "/user/data/multipart/upload",
        Some(&alice),
        json!({"key": key, "uploadId": upload_id, "partNumber": 10001}),
    )
    .await;
    assert_eq!(bad_number.status, StatusCode::BAD_REQUEST);

    // A complete naming thousands of parts is read (not refused as too
    // large): here the parts were never uploaded.
    let (many_guid, many_id) = multipart_init(&app, &alice, "many.bin").await;
    let parts: Vec<Value> = (1..=3000)
        .map(|n| json!({"PartNumber": n, "ETag": format!("\"{:032x}\"", n)}))
        .collect();
    let body = json!({"key": format!("{many_guid}/many.bin"), "uploadId": many_id, "parts": parts});
    assert!(body.to_string().len() > 64 << 10);
    let many = json_call(
        &app,
        "POST",
        "/user/data/multipart/complete",
        Some(&alice),
        body,
    )
    .await;
    assert_eq!(many.status, StatusCode::BAD_REQUEST, "{}", many.text());
    assert!(
        many.text().contains("part 1 was never uploaded"),
        "{}",
        many.text()
    );
}

#[tokio::test]
async fn bulk_download_urls_list_what_each_caller_may_not_read() {
    let (app, [alice, bob, carol, _]) = commons().await;
    let mine = upload(&app, &alice, json!({"file_name": "mine.txt"}), b"mine").await;
    let project = upload(
        &app,
        &carol,
        json!({"file_name": "p.txt", "authz": [PROJECT]}),
        b"project",
    )
    .await;
    let missing = "00000000-0000-4000-8000-000000000000";
    let ask = |token: Option<String>| {
        let app = &app;
        let (mine, project) = (mine.clone(), project.clone());
        async move {
            let reply = app
                .request(
                    "POST",
                    "/user/data/download/bulk?expires_in=60",
                    token.as_deref(),
                    "application/json",
                    json!({"guids": [mine, project, missing]})
                        .to_string()
                        .into_bytes(),
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            reply.json()
        }
    };
    let as_alice = ask(Some(alice.clone())).await;
    assert_eq!(as_alice["urls"].as_array().unwrap().len(), 1);
    assert_eq!(as_alice["urls"][0]["drs_object_id"], mine.as_str());
    let url = as_alice["urls"][0]["url"].as_str().unwrap();
    assert_eq!(app.get(&path_of(url), None).await.body, b"mine");
    let failed = &as_alice["failed_guids"];
    assert!(
        failed
            .as_array()
            .unwrap()
            .contains(&json!({"error_code": 401, "object_ids": [project]})),
        "{failed}"
    );
    assert!(
        failed
            .as_array()
            .unwrap()
            .contains(&json!({"error_code": 404, "object_ids": [missing]})),
        "{failed}"
    );
    let as_carol = ask(Some(carol)).await;
    assert_eq!(as_carol["urls"][0]["drs_object_id"], project.as_str());
    for nobody in [ask(Some(bob)).await, ask(None).await] {
        assert_eq!(nobody["urls"], json!([]), "{nobody}");
    }
    let too_many: Vec<String> = (0..1001).map(|i| format!("g{i}")).collect();
    let refused = json_call(
        &app,
        "POST",
        "/user/data/download/bulk",
        Some(&alice),
        json!({"guids": too_many}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn uploads_and_deletions_need_the_data_scope_as_in_fence() {
    let (app, [alice, _, carol, _]) = commons().await;
    // A key of alice's grants but without the `data` scope.
    let (_, _, narrow) = app
        .user_with_scopes("alina", &["data_upload"], &["user"])
        .await;
    for (method, path, body) in [
        ("POST", "/user/data/upload", json!({"file_name": "x.txt"})),
        (
            "POST",
            "/user/data/multipart/init",
            json!({"file_name": "x.txt"}),
        ),
    ] {
        let refused = json_call(&app, method, path, Some(&narrow), body.clone()).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(refused.text().contains("data"), "{}", refused.text());
        let allowed = json_call(&app, method, path, Some(&alice), body).await;
        assert_eq!(allowed.status, StatusCode::CREATED, "{path}");
    }
    let guid = upload(&app, &alice, json!({"file_name": "mine.txt"}), b"mine").await;
    let refused = json_call(
        &app,
        "DELETE",
        &format!("/user/data/{guid}"),
        Some(&narrow),
        Value::Null,
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // Downloads, as in fence, need no particular scope.
    let (_, _, reader) = app
        .user_with_scopes("rhea", &["proj-storage-reader"], &["user"])
        .await;
    let in_project = upload(
        &app,
        &carol,
        json!({"file_name": "p.txt", "authz": [PROJECT]}),
        b"p",
    )
    .await;
    let download = json_call(
        &app,
        "GET",
        &format!("/user/data/download/{in_project}"),
        Some(&reader),
        Value::Null,
    )
    .await;
    assert_eq!(download.status, StatusCode::OK, "{}", download.text());
}
