//! Large requests. Uploads larger than one chunk are validated and written
//! chunk by chunk into one transaction, yet behave as one request: links may
//! point forward to later chunks, a duplicate or an error in any chunk leaves
//! nothing written, and the reply lists every entity. Exports name hundreds
//! of ids in one GET or POST; a whole type streams out in order, page by page.

use crate::common;

use axum::http::StatusCode;
use common::{Reply, TestApp};
use commons::submission::UPLOAD_CHUNK;
use serde_json::{Value, json};

const P: &str = "prog";
const Q: &str = "proj";
const PID: &str = "prog-proj";

fn path() -> String {
    format!("/api/v0/submission/{P}/{Q}")
}

fn study() -> Value {
    json!({"type": "study", "submitter_id": "study-1", "projects": {"code": Q}})
}

fn subject(i: usize) -> Value {
    json!({"type": "subject", "submitter_id": format!("subject-{i}"), "studies": {"submitter_id": "study-1"}})
}

fn sample(i: usize, subjects: usize) -> Value {
    json!({"type": "sample", "submitter_id": format!("sample-{i}"),
           "subjects": {"submitter_id": format!("subject-{}", i % subjects)}})
}

/// PUT `rows` subjects as one TSV request, subject `i` linked to study `study(i)`.
async fn put_subjects_tsv(
    app: &TestApp,
    rows: usize,
    study: impl Fn(usize) -> &'static str,
) -> Reply {
    let mut tsv = String::from("type\tsubmitter_id\tstudies.submitter_id\n");
    for i in 0..rows {
        tsv.push_str(&format!("subject\tsubject-{i}\t{}\n", study(i)));
    }
    let token = app.admin_token.clone();
    app.request(
        "PUT",
        &path(),
        Some(&token),
        "text/tab-separated-values",
        tsv.into_bytes(),
    )
    .await
}

async fn app() -> TestApp {
    let app = TestApp::new(None).await;
    app.project(P, Q).await;
    app
}

#[tokio::test]
async fn links_may_point_to_entities_in_later_chunks() {
    let app = app().await;
    // Children first: every sample of the first chunk links to a subject
    // that arrives only in the last one, after the study it links to.
    let samples = UPLOAD_CHUNK + 500;
    let subjects = 300;
    let mut docs: Vec<Value> = (0..samples).map(|i| sample(i, subjects)).collect();
    docs.extend((0..subjects).map(subject));
    docs.push(study());
    let reply = app.admin_json("PUT", &path(), &Value::Array(docs)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", &reply.text()[..2000]);
    let body = reply.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["created_entity_count"], samples + subjects + 1);
    let entities = body["entities"].as_array().unwrap();
    assert_eq!(entities.len(), samples + subjects + 1);
    assert!(entities.iter().all(|e| e["valid"] == true));
    assert_eq!(app.count("sample", PID).await, samples as i64);
    assert_eq!(app.count("subject", PID).await, subjects as i64);

    let linked = app
        .graphql(
            &app.admin_token,
            r#"{ sample(submitter_id: "sample-0") { subjects { submitter_id studies { submitter_id } } } }"#,
        )
        .await
        .json();
    assert_eq!(
        linked["data"]["sample"][0]["subjects"][0],
        json!({"submitter_id": "subject-0", "studies": [{"submitter_id": "study-1"}]})
    );
}

#[tokio::test]
async fn an_error_in_the_last_chunk_leaves_nothing_written() {
    let app = app().await;
    app.admin_json("PUT", &path(), &study()).await;
    let rows = 2 * UPLOAD_CHUNK + 10;
    let reply = put_subjects_tsv(&app, rows, |i| {
        if i == rows - 1 {
            "no-such-study"
        } else {
            "study-1"
        }
    })
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let body = reply.json();
    assert_eq!(body["entity_error_count"], 1, "{}", body["message"]);
    assert_eq!(body["created_entity_count"], 0);
    let entities = body["entities"].as_array().unwrap();
    assert_eq!(entities.len(), rows);
    let bad = &entities[rows - 1];
    assert_eq!(bad["errors"][0]["type"], "INVALID_LINK", "{bad}");
    assert!(
        bad["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-study"),
        "{bad}"
    );
    assert_eq!(app.count("subject", PID).await, 0);
}

#[tokio::test]
async fn a_duplicate_in_a_later_chunk_is_a_transactional_error() {
    let app = app().await;
    let mut docs = vec![study()];
    docs.extend((0..UPLOAD_CHUNK + 5).map(subject));
    docs.push(subject(3));
    let reply = app.admin_json("PUT", &path(), &Value::Array(docs)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let body = reply.json();
    assert_eq!(body["transactional_error_count"], 1, "{}", body["message"]);
    assert_eq!(body["transactional_errors"][0]["type"], "NOT_UNIQUE");
    assert_eq!(app.count("subject", PID).await, 0);
    assert_eq!(app.count("study", PID).await, 0);
}

#[tokio::test]
async fn a_syntax_error_after_the_first_chunk_leaves_nothing_written() {
    let app = app().await;
    let mut docs = vec![study()];
    docs.extend((0..UPLOAD_CHUNK + 5).map(subject));
    let mut text = Value::Array(docs).to_string();
    text.truncate(text.len() - 3);
    let token = app.admin_token.clone();
    let reply = app
        .request(
            "PUT",
            &path(),
            Some(&token),
            "application/json",
            text.into_bytes(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("Unable to parse json"),
        "{}",
        reply.text()
    );
    assert_eq!(app.count("subject", PID).await, 0);
    assert_eq!(app.count("study", PID).await, 0);
}

#[tokio::test]
async fn a_reply_larger_than_its_memory_spool_arrives_whole() {
    let app = app().await;
    app.admin_json("PUT", &path(), &study()).await;
    // About 200 bytes of reply per entity: well past the 4 MiB kept in memory.
    let rows = 30_000;
    let reply = put_subjects_tsv(&app, rows, |_| "study-1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.len() > 4 << 20, "{} bytes", reply.body.len());
    let body = reply.json();
    assert_eq!(body["created_entity_count"], rows);
    let entities = body["entities"].as_array().unwrap();
    assert_eq!(entities.len(), rows);
    assert_eq!(
        entities[rows - 1]["unique_keys"][0]["submitter_id"],
        format!("subject-{}", rows - 1)
    );
    assert_eq!(app.count("subject", PID).await, rows as i64);

    // A bulk write on PostgreSQL refreshes the planner's statistics and the
    // visibility map at once, rather than whenever autovacuum gets there.
    if app.state.store.dialect() == commons::sql::Dialect::Postgres {
        assert!(
            nodes_vacuumed(&app).await,
            "nodes was not vacuumed after a bulk write"
        );
    }
}

#[tokio::test]
async fn small_uploads_add_up_to_a_statistics_refresh() {
    let app = app().await;
    if app.state.store.dialect() != commons::sql::Dialect::Postgres {
        return;
    }
    app.admin_json("PUT", &path(), &study()).await;
    // Three requests of 4,000, each under the 10,000 that one bulk write needs:
    // together they are written as much as one.
    for _ in 0..3 {
        let reply = put_subjects_tsv(&app, 4_000, |_| "study-1").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert!(
        nodes_vacuumed(&app).await,
        "nodes was not vacuumed after 12,000 entities in three requests"
    );
}

/// SQLite's writer does not checkpoint as it commits: a checkpoint in the
/// background copies each committed upload from the write-ahead log into the
/// database file, or the log would only ever grow.
#[tokio::test]
async fn sqlite_uploads_reach_the_database_file_after_the_reply() {
    let app = app().await;
    let Some(file) = app.database_url.strip_prefix("sqlite://") else {
        return;
    };
    let size = || std::fs::metadata(file).unwrap().len();
    app.admin_json("PUT", &path(), &study()).await;
    let before = size();
    let reply = put_subjects_tsv(&app, 5_000, |_| "study-1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    for _ in 0..100 {
        if size() > before + (1 << 20) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "5,000 subjects did not reach {file} in 10 s: {before} -> {} bytes",
        size()
    );
}

/// Every upload looks its entities up by natural key. On PostgreSQL the
/// lookup named the type too, and a type written since the statistics were
/// last refreshed then looked absent: the planner walked every node of the
/// type once per key (4 s for 5,000 keys). The lookup must go through the
/// key's index whatever the statistics say.
#[tokio::test]
async fn natural_key_lookups_go_through_the_key_index_whatever_the_statistics() {
    use commons::sql::Dialect;
    let app = app().await;
    app.admin_json("PUT", &path(), &study()).await;
    let reply = put_subjects_tsv(&app, 1_000, |_| "study-1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let dialect = app.state.store.dialect();
    if dialect == Dialect::Postgres {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(&app.database_url)
            .await
            .unwrap();
        // Statistics that know subjects and no samples.
        sqlx::query("ANALYZE nodes").execute(&mut db).await.unwrap();
    }
    let samples: Vec<Value> = (0..3_000).map(|i| sample(i, 1_000)).collect();
    let reply = app.admin_json("PUT", &path(), &json!(samples)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let keys: Vec<String> = (0..3_000)
        .map(|i| format!("{PID}\u{1f}sample-{i}"))
        .collect();
    let keys = serde_json::to_string(&keys).unwrap();
    let lookup = dialect.natural_key_lookup("node_id, node_type");
    let plan: Vec<String> = match dialect {
        Dialect::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            sqlx::query_scalar(&format!("EXPLAIN {lookup}"))
                .bind(&keys)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
        Dialect::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {lookup}"))
                .bind(&keys)
                .fetch_all(&pool)
                .await
                .unwrap();
            rows.iter()
                .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
                .collect()
        }
    };
    let plan = plan.join("\n");
    match dialect {
        // A table this small may be read whole into a hash join, which is as
        // good; what must not happen is a walk of the type per key.
        Dialect::Postgres => {
            for walk in ["Join Filter", "Index Cond: (node_type ="] {
                assert!(!plan.contains(walk), "{walk}:\n{plan}");
            }
        }
        Dialect::Sqlite => assert!(
            plan.contains("USING INDEX nodes_natural_key (natural_key=?)"),
            "{plan}"
        ),
    }
}

/// Whether PostgreSQL's `nodes` gets vacuumed and analyzed within 30 s.
async fn nodes_vacuumed(app: &TestApp) -> bool {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    for _ in 0..300 {
        let vacuumed: bool = sqlx::query_scalar(
            "SELECT last_vacuum IS NOT NULL AND last_analyze IS NOT NULL \
             FROM pg_stat_user_tables WHERE relname = 'nodes'",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        if vacuumed {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn hundreds_of_ids_export_by_get_and_by_post() {
    let app = app().await;
    let mut docs = vec![study()];
    docs.extend((0..600).map(subject));
    let reply = app.admin_json("PUT", &path(), &Value::Array(docs)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let ids: Vec<String> = reply.json()["entities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "subject")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 600);

    let token = app.admin_token.clone();
    let url = format!("{}/export?ids={}&format=json", path(), ids.join(","));
    assert!(url.len() > 20_000);
    let exported = app.get(&url, Some(&token)).await;
    assert_eq!(exported.status, StatusCode::OK, "{}", exported.text());
    assert_eq!(exported.json().as_array().unwrap().len(), 600);

    let posted = app
        .admin_json(
            "POST",
            &format!("{}/export", path()),
            &json!({"ids": ids, "format": "tsv"}),
        )
        .await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.text());
    assert_eq!(posted.text().lines().count(), 601);
}

/// A whole type is exported page by page, several pages read at once: every
/// node comes out once, in submission order, with its link, also when other
/// types' nodes were written between its pages.
#[tokio::test]
async fn a_type_of_several_export_pages_comes_out_whole_and_in_order() {
    let app = app().await;
    let subjects = 2 * commons::export::PAGE_SIZE as usize + 500;
    let split = commons::export::PAGE_SIZE as usize + 300;
    let mut first = vec![study()];
    first.extend((0..split).map(subject));
    let between: Vec<Value> = (0..700).map(|i| sample(i, split)).collect();
    let last: Vec<Value> = (split..subjects).map(subject).collect();
    for docs in [first, between, last] {
        let reply = app.admin_json("PUT", &path(), &Value::Array(docs)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", &reply.text()[..500]);
    }
    let token = app.admin_token.clone();
    let wanted: Vec<String> = (0..subjects).map(|i| format!("subject-{i}")).collect();

    let tsv = app
        .get(
            &format!("{}/export/?node_label=subject&format=tsv", path()),
            Some(&token),
        )
        .await;
    assert_eq!(tsv.status, StatusCode::OK);
    let text = tsv.text();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (sid, study_key) = (column("submitter_id"), column("studies.submitter_id"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    let exported: Vec<String> = rows.iter().map(|r| r[sid].to_string()).collect();
    assert_eq!(exported, wanted);
    assert!(rows.iter().all(|r| r[study_key] == "study-1"));

    let json = app
        .get(
            &format!("{}/export/?node_label=subject&format=json", path()),
            Some(&token),
        )
        .await;
    assert_eq!(json.status, StatusCode::OK);
    let objects = json.json()["data"].as_array().unwrap().clone();
    let exported: Vec<String> = objects
        .iter()
        .map(|o| o["submitter_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(exported, wanted);
    assert!(
        objects
            .iter()
            .all(|o| o["studies"][0]["submitter_id"] == "study-1")
    );
}
