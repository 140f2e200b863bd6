//! Every HTTP endpoint, called by every kind of caller, answers with the exact
//! status of the contract, leaks nothing it must not, and changes nothing it
//! must not. An endpoint added to the server without a row here fails the test.

use crate::common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::TestApp;
use serde_json::{Value, json};

use commons::store::PolicyRow;

/// Callers, in the column order of [`ROWS`].
const CALLERS: [&str; 9] = [
    "no token",
    "garbage",
    "bad signature",
    "expired",
    "revoked key",
    "no grants",
    "reader",
    "writer",
    "admin",
];

const X: u16 = 401;

/// (method, route as registered, concrete path, body, expected status per caller)
struct Row {
    method: &'static str,
    route: &'static str,
    path: &'static str,
    body: &'static str,
    content_type: &'static str,
    expect: [u16; 9],
}

const fn row(
    method: &'static str,
    route: &'static str,
    path: &'static str,
    body: &'static str,
    expect: [u16; 9],
) -> Row {
    Row {
        method,
        route,
        path,
        body,
        content_type: "application/json",
        expect,
    }
}

const PUBLIC: [u16; 9] = [200; 9];
const AUTHENTICATED: [u16; 9] = [X, X, X, X, X, 200, 200, 200, 200];
const ADMIN_ONLY: [u16; 9] = [X, X, X, X, X, 403, 403, 403, 200];
const READERS: [u16; 9] = [X, X, X, X, X, 403, 200, 200, 200];
const WRITERS: [u16; 9] = [X, X, X, X, X, 403, 403, 200, 200];
const OPTIONAL_TOKEN: [u16; 9] = [200, 400, 400, 400, 400, 200, 200, 200, 200];
/// Key management needs a browser-session token (scope `credentials`), which
/// tokens minted from API keys never carry, as in fence.
const SESSION_ONLY: [u16; 9] = [X; 9];

/// `{id}` in a path is replaced by the id of a record that has dependents.
const ROWS: &[Row] = &[
    // The portal's page and assets hold no data.
    row("GET", "/", "/", "", PUBLIC),
    row("GET", "/portal/{*path}", "/portal/index.html", "", PUBLIC),
    row("GET", "/files/{*guid}", "/files/{did}", "", PUBLIC),
    row("GET", "/_status", "/_status", "", PUBLIC),
    row("GET", "/api/_status", "/api/_status", "", PUBLIC),
    row("GET", "/_ready", "/_ready", "", PUBLIC),
    // Data files (fence /data): the index record {did} belongs to the project,
    // which no role here lets anyone but the administrator upload to or read
    // the bytes of (`write-storage`, `read-storage`); its url is no object of
    // this commons, so even the administrator finds nothing to sign.
    row(
        "POST",
        "/user/data/upload",
        "/user/data/upload",
        r#"{"file_name": "f.txt"}"#,
        [X, X, X, X, X, 403, 403, 403, 201],
    ),
    row(
        "GET",
        "/user/data/upload/{*guid}",
        "/user/data/upload/{did}",
        "",
        [X, X, X, X, X, 403, 403, 403, 200],
    ),
    row(
        "GET",
        "/user/data/download/{*guid}",
        "/user/data/download/{did}",
        "",
        [X, X, X, X, X, 403, 403, 403, 404],
    ),
    // Multipart uploads need `file_upload` on /data_file, which only the
    // administrator has; {did} already has its bytes, so completing an
    // upload into it is a conflict even for the administrator.
    row(
        "POST",
        "/user/data/multipart/init",
        "/user/data/multipart/init",
        r#"{"file_name": "f.txt"}"#,
        [X, X, X, X, X, 403, 403, 403, 201],
    ),
    row(
        "POST",
        "/user/data/multipart/upload",
        "/user/data/multipart/upload",
        r#"{"key": "{did}/f.txt", "uploadId": "0123456789abcdef0123456789abcdef", "partNumber": 1}"#,
        [X, X, X, X, X, 403, 403, 403, 200],
    ),
    row(
        "POST",
        "/user/data/multipart/complete",
        "/user/data/multipart/complete",
        r#"{"key": "{did}/f.txt", "uploadId": "0123456789abcdef0123456789abcdef", "parts": [{"PartNumber": 1, "ETag": "x"}]}"#,
        [X, X, X, X, X, 403, 403, 403, 409],
    ),
    // Bulk download URLs: anonymous callers get the public ones; every
    // record a caller may not read is listed as failed, not signed.
    row(
        "POST",
        "/user/data/download/bulk",
        "/user/data/download/bulk",
        r#"{"guids": ["{did}"]}"#,
        [200, X, X, X, X, 200, 200, 200, 200],
    ),
    // peregrine's core metadata: found through GraphQL as the caller, so a
    // project the caller cannot read has no such file.
    row(
        "GET",
        "/api/search/coremetadata/{*object_id}",
        "/api/search/coremetadata/{did}",
        "",
        [X, X, X, X, X, 404, 200, 200, 200],
    ),
    row(
        "DELETE",
        "/user/data/{*guid}",
        "/user/data/00000000-0000-4000-8000-000000000000",
        "",
        [X, X, X, X, X, 404, 404, 404, 404],
    ),
    // GA4GH DRS: object metadata is anonymous (tokens are not even read);
    // an access URL follows the download rules above.
    row(
        "GET",
        "/ga4gh/drs/v1/service-info",
        "/ga4gh/drs/v1/service-info",
        "",
        PUBLIC,
    ),
    row(
        "GET",
        "/wts/external_oidc",
        "/wts/external_oidc/",
        "",
        PUBLIC,
    ),
    row(
        "GET",
        "/ga4gh/drs/v1/objects",
        "/ga4gh/drs/v1/objects?limit=5",
        "",
        PUBLIC,
    ),
    row(
        "POST",
        "/ga4gh/drs/v1/objects",
        "/ga4gh/drs/v1/objects",
        r#"{"bulk_object_ids": ["{did}"]}"#,
        PUBLIC,
    ),
    row(
        "GET",
        "/ga4gh/drs/v1/objects/{*rest}",
        "/ga4gh/drs/v1/objects/{did}",
        "",
        PUBLIC,
    ),
    row(
        "POST",
        "/ga4gh/drs/v1/objects/{*rest}",
        "/ga4gh/drs/v1/objects/{did}",
        "{}",
        PUBLIC,
    ),
    row(
        "GET",
        "/ga4gh/drs/v1/objects/{*rest}",
        "/ga4gh/drs/v1/objects/{did}/access/s3",
        "",
        [X, X, X, X, X, 403, 403, 403, 404],
    ),
    // Signed object URLs: the signature is the permission, tokens count for nothing.
    row(
        "GET",
        "/_objects/{*key}",
        "/_objects/{did}/f.txt?expires=99999999999&sig=00",
        "",
        [403; 9],
    ),
    row(
        "PUT",
        "/_objects/{*key}",
        "/_objects/{did}/f.txt?expires=99999999999&sig=00",
        "x",
        [403; 9],
    ),
    // Counts and timings per route, nothing about any user or project.
    row("GET", "/metrics", "/metrics", "", PUBLIC),
    row("GET", "/user/_status", "/user/_status", "", PUBLIC),
    row("GET", "/api/_version", "/api/_version", "", PUBLIC),
    // fence
    row(
        "POST",
        "/user/credentials/api/access_token",
        "/user/credentials/api/access_token",
        "{}",
        [400; 9],
    ),
    row(
        "POST",
        "/user/credentials/cdis/access_token",
        "/user/credentials/cdis/access_token",
        "{}",
        [400; 9],
    ),
    row(
        "POST",
        "/user/credentials/api",
        "/user/credentials/api/",
        "{}",
        SESSION_ONLY,
    ),
    row(
        "GET",
        "/user/credentials/api",
        "/user/credentials/api/",
        "",
        SESSION_ONLY,
    ),
    row(
        "POST",
        "/user/credentials/cdis",
        "/user/credentials/cdis/",
        "{}",
        SESSION_ONLY,
    ),
    row(
        "GET",
        "/user/credentials/cdis",
        "/user/credentials/cdis",
        "",
        SESSION_ONLY,
    ),
    row(
        "DELETE",
        "/user/credentials/api/{jti}",
        "/user/credentials/api/no-such-jti",
        "",
        SESSION_ONLY,
    ),
    row(
        "DELETE",
        "/user/credentials/cdis/{jti}",
        "/user/credentials/cdis/no-such-jti",
        "",
        SESSION_ONLY,
    ),
    row(
        "POST",
        "/user/login/local",
        "/user/login/local",
        "{}",
        [400; 9],
    ),
    // A one-time link is its own credential; tokens neither help nor hurt.
    row(
        "GET",
        "/user/login/link",
        "/user/login/link?token=not-a-link",
        "",
        [X; 9],
    ),
    // Logout always ends in a redirect, whoever calls.
    row("GET", "/user/logout", "/user/logout", "", [200; 9]),
    row("POST", "/user/logout", "/user/logout", "", [302; 9]),
    row("GET", "/user/user", "/user/user", "", AUTHENTICATED),
    row("POST", "/user/user", "/user/user", "", AUTHENTICATED),
    row(
        "GET",
        "/user/.well-known/jwks",
        "/user/.well-known/jwks",
        "",
        PUBLIC,
    ),
    row(
        "GET",
        "/user/.well-known/openid-configuration",
        "/user/.well-known/openid-configuration",
        "",
        PUBLIC,
    ),
    row("GET", "/user/jwt/keys", "/user/jwt/keys", "", PUBLIC),
    // arborist
    row(
        "GET",
        "/authz/mapping",
        "/authz/mapping",
        "",
        OPTIONAL_TOKEN,
    ),
    row(
        "POST",
        "/authz/mapping",
        "/authz/mapping",
        r#"{"username": "admin"}"#,
        ADMIN_ONLY,
    ),
    row(
        "GET",
        "/authz/resources",
        "/authz/resources",
        "",
        OPTIONAL_TOKEN,
    ),
    row(
        "POST",
        "/authz/auth/request",
        "/authz/auth/request",
        r#"{"requests": [{"resource": "/programs/prog", "action": {"service": "*", "method": "read"}}]}"#,
        OPTIONAL_TOKEN,
    ),
    row(
        "POST",
        "/authz/user",
        "/authz/user",
        r#"{"name": "nogrant"}"#,
        [X, X, X, X, X, 403, 403, 403, 409],
    ),
    row("GET", "/authz/user", "/authz/user", "", ADMIN_ONLY),
    row(
        "POST",
        "/authz/user/{name}/policy",
        "/authz/user/nogrant/policy",
        r#"{"policy": "no-such-policy"}"#,
        [X, X, X, X, X, 403, 403, 403, 400],
    ),
    row(
        "DELETE",
        "/authz/user/{name}/policy/{policy}",
        "/authz/user/nogrant/policy/no-such-policy",
        "",
        [X, X, X, X, X, 403, 403, 403, 404],
    ),
    row(
        "POST",
        "/authz/role",
        "/authz/role",
        r#"{"id": "reader", "permissions": [{"id": "r", "action": {"service": "*", "method": "read"}}]}"#,
        [X, X, X, X, X, 403, 403, 403, 409],
    ),
    row("GET", "/authz/role", "/authz/role", "", ADMIN_ONLY),
    row(
        "DELETE",
        "/authz/role/{id}",
        "/authz/role/no-such-role",
        "",
        [X, X, X, X, X, 403, 403, 403, 404],
    ),
    row(
        "POST",
        "/authz/policy",
        "/authz/policy",
        r#"{"id": "proj-reader", "role_ids": ["reader"], "resource_paths": ["/programs/prog"]}"#,
        [X, X, X, X, X, 403, 403, 403, 409],
    ),
    row("GET", "/authz/policy", "/authz/policy", "", ADMIN_ONLY),
    row(
        "DELETE",
        "/authz/policy/{id}",
        "/authz/policy/no-such-policy",
        "",
        [X, X, X, X, X, 403, 403, 403, 404],
    ),
    row(
        "POST",
        "/authz/group/{name}/policy",
        "/authz/group/testers/policy",
        r#"{"policy": "no-such-policy"}"#,
        [X, X, X, X, X, 403, 403, 403, 400],
    ),
    row(
        "POST",
        "/authz/group/{name}/user",
        "/authz/group/testers/user",
        r#"{"username": "nogrant"}"#,
        [X, X, X, X, X, 403, 403, 403, 204],
    ),
    // sheepdog
    row(
        "GET",
        "/api/v0/submission/",
        "/api/v0/submission/",
        "",
        AUTHENTICATED,
    ),
    row(
        "POST",
        "/api/v0/submission/",
        "/api/v0/submission/",
        r#"{"type": "program", "name": "prog", "dbgap_accession_number": "prog"}"#,
        ADMIN_ONLY,
    ),
    row(
        "PUT",
        "/api/v0/submission/",
        "/api/v0/submission",
        r#"{"type": "program", "name": "prog", "dbgap_accession_number": "prog"}"#,
        ADMIN_ONLY,
    ),
    row(
        "PATCH",
        "/api/v0/submission/",
        "/api/v0/submission/",
        r#"{"type": "program", "name": "prog", "dbgap_accession_number": "prog"}"#,
        ADMIN_ONLY,
    ),
    row(
        "GET",
        "/api/v0/submission/_dictionary",
        "/api/v0/submission/_dictionary",
        "",
        PUBLIC,
    ),
    row(
        "GET",
        "/api/v0/submission/_dictionary/{entry}",
        "/api/v0/submission/_dictionary/_all",
        "",
        PUBLIC,
    ),
    row(
        "GET",
        "/api/v0/submission/template",
        "/api/v0/submission/template?format=json",
        "",
        PUBLIC,
    ),
    row(
        "GET",
        "/api/v0/submission/template/{node}",
        "/api/v0/submission/template/study",
        "",
        PUBLIC,
    ),
    row(
        "GET",
        "/api/v0/submission/{program}",
        "/api/v0/submission/prog",
        "",
        AUTHENTICATED,
    ),
    row(
        "PUT",
        "/api/v0/submission/{program}",
        "/api/v0/submission/prog",
        r#"{"type": "project", "code": "proj", "name": "proj", "dbgap_accession_number": "proj"}"#,
        ADMIN_ONLY,
    ),
    row(
        "POST",
        "/api/v0/submission/{program}",
        "/api/v0/submission/prog",
        r#"{"type": "project", "code": "proj", "name": "proj", "dbgap_accession_number": "proj"}"#,
        ADMIN_ONLY,
    ),
    row(
        "PATCH",
        "/api/v0/submission/{program}",
        "/api/v0/submission/prog",
        r#"{"type": "project", "code": "proj", "name": "proj", "dbgap_accession_number": "proj"}"#,
        ADMIN_ONLY,
    ),
    row(
        "DELETE",
        "/api/v0/submission/{program}",
        "/api/v0/submission/prog",
        "",
        [X, X, X, X, X, 403, 403, 403, 400],
    ),
    row(
        "PUT",
        "/api/v0/submission/{program}/{project}",
        "/api/v0/submission/prog/proj",
        "@records",
        WRITERS,
    ),
    row(
        "POST",
        "/api/v0/submission/{program}/{project}",
        "/api/v0/submission/prog/proj",
        r#"[{"type": "nope"}]"#,
        [X, X, X, X, X, 403, 403, 400, 400],
    ),
    row(
        "DELETE",
        "/api/v0/submission/{program}/{project}",
        "/api/v0/submission/prog/proj",
        "",
        [X, X, X, X, X, 403, 403, 403, 400],
    ),
    row(
        "PUT",
        "/api/v0/submission/{program}/{project}/_dry_run",
        "/api/v0/submission/prog/proj/_dry_run",
        "@records",
        WRITERS,
    ),
    row(
        "POST",
        "/api/v0/submission/{program}/{project}/_dry_run",
        "/api/v0/submission/prog/proj/_dry_run",
        "@records",
        WRITERS,
    ),
    row(
        "GET",
        "/api/v0/submission/{program}/{project}/entities/{ids}",
        "/api/v0/submission/prog/proj/entities/{id}",
        "",
        READERS,
    ),
    // A study is no data file: readers get sheepdog's 400 for it.
    row(
        "GET",
        "/api/v0/submission/{program}/{project}/manifest",
        "/api/v0/submission/prog/proj/manifest?ids={id}",
        "",
        [X, X, X, X, X, 403, 400, 400, 400],
    ),
    row(
        "GET",
        "/api/v0/submission/{program}/{project}/upload_manifest",
        "/api/v0/submission/prog/proj/upload_manifest",
        "",
        [X, X, X, X, X, 403, 400, 400, 400],
    ),
    row(
        "DELETE",
        "/api/v0/submission/{program}/{project}/entities/{ids}",
        "/api/v0/submission/prog/proj/entities/{id}",
        "",
        [X, X, X, X, X, 403, 403, 400, 400],
    ),
    row(
        "DELETE",
        "/api/v0/submission/{program}/{project}/entities/_dry_run/{ids}",
        "/api/v0/submission/prog/proj/entities/_dry_run/{id}",
        "",
        [X, X, X, X, X, 403, 403, 400, 400],
    ),
    row(
        "GET",
        "/api/v0/submission/{program}/{project}/export",
        "/api/v0/submission/prog/proj/export/?node_label=study",
        "",
        READERS,
    ),
    row(
        "POST",
        "/api/v0/submission/{program}/{project}/export",
        "/api/v0/submission/prog/proj/export",
        r#"{"node_label": "study", "format": "json"}"#,
        READERS,
    ),
    row(
        "GET",
        "/api/v0/submission/{program}/{project}/_dictionary",
        "/api/v0/submission/prog/proj/_dictionary",
        "",
        AUTHENTICATED,
    ),
    row(
        "GET",
        "/api/v0/submission/{program}/{project}/_dictionary/{entry}",
        "/api/v0/submission/prog/proj/_dictionary/study",
        "",
        AUTHENTICATED,
    ),
    row(
        "GET",
        "/api/v0/submission/{program}/{project}/template",
        "/api/v0/submission/prog/proj/template?format=json",
        "",
        PUBLIC,
    ),
    row(
        "GET",
        "/api/v0/submission/{program}/{project}/template/{node}",
        "/api/v0/submission/prog/proj/template/study",
        "",
        PUBLIC,
    ),
    row(
        "PUT",
        "/api/v0/submission/{program}/{project}/open",
        "/api/v0/submission/prog/proj/open",
        "",
        ADMIN_ONLY,
    ),
    row(
        "POST",
        "/api/v0/submission/{program}/{project}/open",
        "/api/v0/submission/prog/proj/open",
        "",
        ADMIN_ONLY,
    ),
    // peregrine
    row(
        "POST",
        "/api/v0/submission/graphql",
        "/api/v0/submission/graphql",
        "@graphql",
        AUTHENTICATED,
    ),
    row(
        "GET",
        "/api/v0/submission/getschema",
        "/api/v0/submission/getschema",
        "",
        PUBLIC,
    ),
    // indexd: reads are anonymous, as in Gen3; a write needs the `indexd`
    // permission on the record's authz. `{did}` is a record the project's
    // data-file submission registered; the writes below are refused (wrong
    // rev, existing did, unknown record) once authorized, so nothing changes.
    row("GET", "/index/_status", "/index/_status", "", PUBLIC),
    row("GET", "/index/_version", "/index/_version", "", PUBLIC),
    row("GET", "/index/_stats", "/index/_stats", "", PUBLIC),
    row("GET", "/index/index", "/index/index/?limit=5", "", PUBLIC),
    row(
        "POST",
        "/index/index",
        "/index/index/",
        "@index_record",
        INDEX_WRITERS_REFUSED,
    ),
    row(
        "POST",
        "/index/index/blank",
        "/index/index/blank/",
        r#"{"uploader": "admin", "file_name": "f.txt"}"#,
        [X, X, X, X, X, 403, 403, 403, 201],
    ),
    row(
        "PUT",
        "/index/index/blank/{*did}",
        "/index/index/blank/00000000-0000-4000-8000-000000000000?rev=1",
        r#"{"size": 1, "hashes": {"md5": "0cc175b9c0f1b6a831c399e269772661"}}"#,
        [X, X, X, X, X, 404, 404, 404, 404],
    ),
    row(
        "POST",
        "/index/index/blank/{*did}",
        "/index/index/blank/00000000-0000-4000-8000-000000000000",
        "{}",
        [X, X, X, X, X, 404, 404, 404, 404],
    ),
    row(
        "GET",
        "/index/index/{*path}",
        "/index/index/{did}",
        "",
        PUBLIC,
    ),
    row(
        "PUT",
        "/index/index/{*path}",
        "/index/index/{did}?rev=not-the-rev",
        r#"{"urls": []}"#,
        INDEX_WRITERS_REFUSED,
    ),
    row(
        "POST",
        "/index/index/{*path}",
        "/index/index/{did}",
        "@index_record",
        INDEX_WRITERS_REFUSED,
    ),
    row(
        "DELETE",
        "/index/index/{*path}",
        "/index/index/{did}?rev=not-the-rev",
        "",
        INDEX_WRITERS_REFUSED,
    ),
    row(
        "POST",
        "/index/bulk/documents",
        "/index/bulk/documents",
        r#"["{did}"]"#,
        PUBLIC,
    ),
    row("GET", "/index/urls", "/index/urls/?ids={did}", "", PUBLIC),
    row(
        "GET",
        "/index/_query/urls/q",
        "/index/_query/urls/q?include=s3",
        "",
        PUBLIC,
    ),
    row(
        "GET",
        "/index/guid/mint",
        "/index/guid/mint?count=2",
        "",
        PUBLIC,
    ),
    row(
        "GET",
        "/index/guid/prefix",
        "/index/guid/prefix",
        "",
        PUBLIC,
    ),
    row("GET", "/index/{*name}", "/index/{did}", "", PUBLIC),
];

/// An indexd write that the token's grants allow but the request's content
/// refuses (409: a wrong `rev` or a did already taken).
const INDEX_WRITERS_REFUSED: [u16; 9] = [X, X, X, X, X, 403, 403, 409, 409];

/// Route patterns registered in src/server, with the prefix each file is nested under.
fn registered_routes() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let route = regex::Regex::new(r#"\.route\(\s*"([^"]+)""#).unwrap();
    let mut out = BTreeSet::new();
    let mut scanned = BTreeSet::new();
    for (file, prefixes) in [
        ("mod.rs", vec![""]),
        ("observe.rs", vec![""]),
        ("portal.rs", vec![""]),
        ("fence.rs", vec!["/user"]),
        ("data.rs", vec!["/user"]),
        ("objects.rs", vec![""]),
        ("drs.rs", vec![""]),
        ("coremetadata.rs", vec![""]),
        ("session.rs", vec!["/user"]),
        ("arborist.rs", vec!["/authz"]),
        ("sheepdog/mod.rs", vec!["/api/v0/submission"]),
        ("graphql.rs", vec!["/api/v0/submission"]),
        ("indexd.rs", vec!["/index"]),
    ] {
        scanned.insert(dir.join(file));
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for cap in route.captures_iter(&text) {
            for prefix in &prefixes {
                let path = if &cap[1] == "/" && !prefix.is_empty() {
                    format!("{prefix}/")
                } else {
                    format!("{prefix}{}", &cap[1])
                };
                out.insert(path);
            }
        }
    }
    // A file that registers routes must be one of those read above.
    let mut pending = vec![dir];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read_to_string(&path).unwrap().contains(".route(") {
                assert!(
                    scanned.contains(&path),
                    "{} registers routes the test does not read",
                    path.display()
                );
            }
        }
    }
    out
}

#[test]
fn every_registered_route_has_a_row() {
    let covered: BTreeSet<String> = ROWS.iter().map(|r| r.route.to_string()).collect();
    let missing: Vec<String> = registered_routes().difference(&covered).cloned().collect();
    assert!(
        missing.is_empty(),
        "routes without an authorization row: {missing:?}"
    );
}

#[tokio::test]
async fn every_endpoint_answers_every_caller_with_the_contract_status() {
    let app = TestApp::new(None).await;
    app.project("prog", "proj").await;
    let records = commons::simulate::records(&app.state.dictionary, "proj", 1);
    let reply = app
        .admin_json(
            "PUT",
            "/api/v0/submission/prog/proj",
            &Value::Array(records.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    let study = body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "study")
        .unwrap();
    let study_id = study["id"].as_str().unwrap().to_string();
    let secret = study["unique_keys"][0]["submitter_id"]
        .as_str()
        .unwrap()
        .to_string();
    let store = &app.state.store;
    for (id, roles) in [
        ("proj-reader", vec!["reader"]),
        (
            "proj-writer",
            vec!["reader", "creator", "updater", "deleter"],
        ),
    ] {
        store
            .upsert_policy(&PolicyRow {
                id: id.into(),
                role_ids: roles.into_iter().map(str::to_string).collect(),
                resource_paths: vec!["/programs/prog/projects/proj".into()],
            })
            .await
            .unwrap();
    }
    let (_, _, no_grants) = app.user("nogrant", &[]).await;
    let (_, _, reader) = app.user("reader", &["proj-reader"]).await;
    let (_, _, writer) = app.user("writer", &["proj-writer"]).await;
    let (revoked_user, revoked_key, revoked) = app.user("revoked", &["proj-writer"]).await;
    let jti = revoked_key["key_id"].as_str().unwrap();
    assert!(store.revoke_api_key(jti, revoked_user.id).await.unwrap());
    let admin_user = app.admin_user().await;
    let expired = app.state.tokens.issue_access_token(
        &admin_user,
        vec!["openid".into(), "user".into()],
        -10,
        None,
    );
    let bad_signature = {
        let mut t = app.admin_token.clone();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        t
    };
    let tokens: [Option<String>; 9] = [
        None,
        Some("not-a-token".into()),
        Some(bad_signature),
        Some(expired),
        Some(revoked),
        Some(no_grants),
        Some(reader),
        Some(writer),
        Some(app.admin_token.clone()),
    ];
    let indexed = store
        .index_list(&commons::store::IndexQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let did = indexed
        .first()
        .expect("the data-file submission registered its files")
        .did
        .clone();
    let index_record = json!({
        "did": did,
        "form": "object",
        "size": 1,
        "hashes": {"md5": "0cc175b9c0f1b6a831c399e269772661"},
        "urls": [],
        "authz": ["/programs/prog/projects/proj"],
    });
    let before = snapshot(&app).await;
    let index_before = store.index_record(&did).await.unwrap();

    let mut failures = Vec::new();
    for row in ROWS {
        for (i, token) in tokens.iter().enumerate() {
            let body = match row.body {
                "@records" => Value::Array(records.clone()).to_string(),
                "@graphql" => json!({"query": "{ study(first: 0) { submitter_id } }"}).to_string(),
                "@index_record" => index_record.to_string(),
                other => other.replace("{did}", &did),
            };
            let path = row.path.replace("{id}", &study_id).replace("{did}", &did);
            let reply = app
                .request(
                    row.method,
                    &path,
                    token.as_deref(),
                    row.content_type,
                    body.into_bytes(),
                )
                .await;
            if reply.status.as_u16() != row.expect[i] {
                failures.push(format!(
                    "{} {} as {}: expected {}, got {} {}",
                    row.method,
                    path,
                    CALLERS[i],
                    row.expect[i],
                    reply.status,
                    reply.text().chars().take(160).collect::<String>()
                ));
            }
            if reply.status.is_client_error() && reply.text().contains(&secret) {
                failures.push(format!(
                    "{} {} as {}: an error response leaked a record",
                    row.method, path, CALLERS[i]
                ));
            }
            if row.body == "@graphql" && reply.status == StatusCode::OK {
                let rows = reply.json()["data"]["study"].as_array().unwrap().len();
                let visible = matches!(CALLERS[i], "reader" | "writer" | "admin");
                if (rows > 0) != visible {
                    failures.push(format!("GraphQL as {}: saw {rows} studies", CALLERS[i]));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        snapshot(&app).await,
        before,
        "the calls changed stored records"
    );
    assert_eq!(
        store.index_record(&did).await.unwrap(),
        index_before,
        "the calls changed the index record"
    );
}

/// Every record of the project as the administrator exports it.
async fn snapshot(app: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for node in commons::simulate::submission_order(&app.state.dictionary) {
        let reply = app
            .get(
                &format!(
                    "/api/v0/submission/prog/proj/export/?node_label={}&format=tsv",
                    node.id
                ),
                Some(&app.admin_token),
            )
            .await;
        out.push(reply.text());
    }
    out
}
