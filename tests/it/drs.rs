//! GA4GH DRS 1.5 over the file index and the local store (FILES.md 1.4,
//! F3): service-info, objects (anonymous, `created_time` never empty),
//! list, bulk, access URLs with the data endpoints' rules, and DRS errors.

use crate::common;

use axum::http::StatusCode;
use common::{PUBLIC_URL, TestApp};
use serde_json::{Value, json};

use commons::store::{PolicyRow, RoleRow};

async fn uploader(app: &TestApp) -> String {
    app.state
        .store
        .upsert_role(&RoleRow {
            id: "file_uploader".into(),
            permissions: json!([{"id": "u", "action": {"service": "fence", "method": "file_upload"}}]),
        })
        .await
        .unwrap();
    app.state
        .store
        .upsert_policy(&PolicyRow {
            id: "data_upload".into(),
            role_ids: vec!["file_uploader".into()],
            resource_paths: vec!["/data_file".into()],
        })
        .await
        .unwrap();
    app.user("uma", &["data_upload"]).await.2
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> common::Reply {
    app.request(
        "POST",
        path,
        token,
        "application/json",
        body.to_string().into_bytes(),
    )
    .await
}

/// A stored file of `token`'s user: its guid.
async fn stored_file(app: &TestApp, token: &str, bytes: &[u8]) -> String {
    let reply = post(
        app,
        "/user/data/upload",
        Some(token),
        json!({"file_name": "reads.bam"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let answer = reply.json();
    let url = answer["url"].as_str().unwrap();
    let put = app
        .request(
            "PUT",
            url.strip_prefix(PUBLIC_URL).unwrap(),
            None,
            "application/octet-stream",
            bytes.to_vec(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    answer["guid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn drs_objects_describe_index_records_and_access_follows_the_download_rules() {
    let app = TestApp::new(None).await;
    let uma = uploader(&app).await;
    let (_, _, other) = app.user("other", &[]).await;
    let guid = stored_file(&app, &uma, b"ACGT").await;

    let info = app.get("/ga4gh/drs/v1/service-info", None).await;
    assert_eq!(info.status, StatusCode::OK);
    let info = info.json();
    assert_eq!(info["type"]["artifact"], "drs");
    assert_eq!(info["type"]["version"], "1.5.0");
    assert_eq!(info["drs"]["objectCount"], 1);
    assert_eq!(info["drs"]["totalObjectSize"], 4);

    // Metadata needs no token.
    let object = app
        .get(&format!("/ga4gh/drs/v1/objects/{guid}"), None)
        .await;
    assert_eq!(object.status, StatusCode::OK, "{}", object.text());
    let object = object.json();
    assert_eq!(object["id"], guid.as_str());
    assert_eq!(object["self_uri"], format!("drs://{guid}"));
    assert_eq!(object["name"], "reads.bam");
    assert_eq!(object["size"], 4);
    assert_eq!(
        object["checksums"],
        json!([
            {"checksum": "f1f8f4bf413b16ad135722aa4591043e", "type": "md5"},
            {"checksum": "1dff3e84fe7877e0673b69bbddcf40124e396e3f9943dd890c91b6a09adb9af0", "type": "sha256"}
        ])
    );
    // drs-pull parses these: never empty.
    for field in ["created_time", "updated_time", "index_created_time"] {
        assert!(
            object[field].as_str().is_some_and(|t| !t.is_empty()),
            "{field}: {object}"
        );
    }
    let method = &object["access_methods"][0];
    assert_eq!(method["access_id"], "file");
    assert_eq!(method["type"], "file");
    assert!(
        method["access_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("file://")
    );
    assert_eq!(method["authorizations"]["drs_object_id"], guid.as_str());

    // Access: a token and the download rules; the URL serves the bytes.
    let access = format!("/ga4gh/drs/v1/objects/{guid}/access/file");
    assert_eq!(
        app.get(&access, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get(&access, Some(&other)).await.status,
        StatusCode::FORBIDDEN
    );
    let reply = app.get(&access, Some(&uma)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let url = reply.json()["url"].as_str().unwrap().to_string();
    let bytes = app.get(url.strip_prefix(PUBLIC_URL).unwrap(), None).await;
    assert_eq!(bytes.body, b"ACGT");
    let s3 = app
        .get(
            &format!("/ga4gh/drs/v1/objects/{guid}/access/s3"),
            Some(&uma),
        )
        .await;
    assert_eq!(s3.status, StatusCode::NOT_FOUND);
    let no_id = app
        .get(&format!("/ga4gh/drs/v1/objects/{guid}/access/"), Some(&uma))
        .await;
    assert_eq!(no_id.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_id.json()["message"], "Access ID/Protocol is required.");

    // Errors in DRS's shape.
    let missing = app
        .get(
            "/ga4gh/drs/v1/objects/00000000-0000-4000-8000-000000000000",
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["status_code"], 404);
    assert!(missing.json()["msg"].is_string());

    // Lists and bulk.
    let listed = app.get("/ga4gh/drs/v1/objects?limit=10", None).await.json();
    assert_eq!(listed["drs_objects"][0]["id"], guid.as_str());
    let bulk = post(
        &app,
        "/ga4gh/drs/v1/objects",
        None,
        json!({"bulk_object_ids": [guid, "00000000-0000-4000-8000-000000000000"]}),
    )
    .await;
    assert_eq!(bulk.status, StatusCode::OK, "{}", bulk.text());
    let bulk = bulk.json();
    assert_eq!(
        bulk["summary"],
        json!({"requested": 2, "resolved": 1, "unresolved": 1})
    );
    assert_eq!(
        bulk["unresolved_drs_objects"],
        json!([{"error_code": 404, "object_ids": ["00000000-0000-4000-8000-000000000000"]}])
    );
    let malformed = post(&app, "/ga4gh/drs/v1/objects", None, json!({})).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        malformed.json()["msg"],
        "Request is malformed. Missing bulk object ids."
    );
    let too_many: Vec<String> = (0..101).map(|i| format!("id-{i}")).collect();
    let large = post(
        &app,
        "/ga4gh/drs/v1/objects",
        None,
        json!({"bulk_object_ids": too_many}),
    )
    .await;
    assert_eq!(large.status, StatusCode::PAYLOAD_TOO_LARGE);

    let urls = post(
        &app,
        "/ga4gh/drs/v1/objects/access",
        Some(&uma),
        json!({"bulk_object_access_ids": [{"bulk_object_id": guid, "bulk_access_ids": ["file", "s3"]}]}),
    )
    .await;
    assert_eq!(urls.status, StatusCode::OK, "{}", urls.text());
    let urls = urls.json();
    assert_eq!(
        urls["summary"],
        json!({"requested": 2, "resolved": 1, "unresolved": 1})
    );
    assert_eq!(
        urls["resolved_drs_object_access_urls"][0]["drs_access_id"],
        "file"
    );
    assert_eq!(
        urls["unresolved_drs_objects"],
        json!([{"error_code": 404, "object_ids": [guid]}])
    );

    let oidc = app.get("/wts/external_oidc/", None).await;
    assert_eq!(oidc.status, StatusCode::OK);
    assert_eq!(oidc.json(), json!({"providers": []}));
}

#[tokio::test]
async fn core_metadata_describes_a_readable_data_file_in_three_formats() {
    let app = TestApp::new(None).await;
    app.project("prog", "proj").await;
    let records = commons::simulate::records(&app.state.dictionary, "proj", 1);
    let reply = app
        .admin_json(
            "PUT",
            "/api/v0/submission/prog/proj",
            &Value::Array(records),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let indexed = app
        .state
        .store
        .index_list(&commons::store::IndexQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let did = indexed[0].did.clone();
    let path = format!("/api/search/coremetadata/{did}");
    let admin = Some(app.admin_token.as_str());

    let metadata = app.get(&path, admin).await;
    assert_eq!(metadata.status, StatusCode::OK, "{}", metadata.text());
    let metadata = metadata.json();
    assert_eq!(metadata["object_id"], did.as_str());
    assert_eq!(metadata["project_id"], "prog-proj");
    let node_type = metadata["type"].as_str().unwrap();
    assert!(
        app.state.dictionary.node(node_type).unwrap().is_data_file(),
        "{node_type}"
    );
    assert_eq!(metadata["md5sum"], indexed[0].hashes["md5"].as_str());
    assert!(
        metadata["citation"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{did}.")),
        "{metadata}"
    );
    assert!(
        metadata.get("updated_datetime").is_none(),
        "the citation took it"
    );

    let bearer = format!("Bearer {}", app.admin_token);
    let bibtex = app
        .request_with_headers(
            "GET",
            &path,
            &[("authorization", &bearer), ("accept", "x-bibtex")],
            Vec::new(),
        )
        .await;
    assert!(
        bibtex.text().starts_with(&format!("@misc {{{did}, ")),
        "{}",
        bibtex.text()
    );
    let ld = app
        .request_with_headers(
            "GET",
            &path,
            &[
                ("authorization", &bearer),
                ("accept", "application/vnd.schemaorg.ld+json"),
            ],
            Vec::new(),
        )
        .await
        .json();
    assert_eq!(ld["@type"], "Dataset");
    assert_eq!(ld["identifier"][0]["value"], did.as_str());
    assert_eq!(ld["name"], metadata["file_name"]);

    // Not readable is not found; no token is refused.
    let (_, _, stranger) = app.user("stranger", &[]).await;
    let hidden = app.get(&path, Some(&stranger)).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert!(!hidden.text().contains("prog-proj"));
    assert_eq!(app.get(&path, None).await.status, StatusCode::UNAUTHORIZED);
    let unknown = app
        .get("/api/search/coremetadata/no-such-file", admin)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json()["message"],
        "object_id \"no-such-file\" not found"
    );
}
