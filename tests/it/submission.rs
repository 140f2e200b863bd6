//! Submission, update, rejection, export and deletion over HTTP, with the
//! bundled dictionary and every reference dictionary, using records generated
//! from each dictionary itself.

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use axum::http::StatusCode;
use common::TestApp;
use serde_json::{Value, json};

const P: &str = "prog";
const Q: &str = "proj";
const PID: &str = "prog-proj";

fn path() -> String {
    format!("/api/v0/submission/{P}/{Q}")
}

/// Counts of every submittable type in the project.
async fn counts(app: &TestApp) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for node in commons::simulate::submission_order(&app.state.dictionary) {
        out.insert(node.id.clone(), app.count(&node.id, PID).await);
    }
    out
}

async fn round_trip(dictionary: Option<&Path>) {
    let name = dictionary.map_or("bundled".into(), |p| p.display().to_string());
    let app = TestApp::new(dictionary).await;
    app.project(P, Q).await;
    let order: Vec<String> = commons::simulate::submission_order(&app.state.dictionary)
        .iter()
        .map(|n| n.id.clone())
        .collect();
    assert!(
        order.len() >= 3,
        "{name}: too few submittable types: {order:?}"
    );
    let records = commons::simulate::records(&app.state.dictionary, Q, 2);

    // A batch with one unknown property is rejected whole: nothing is stored.
    let mut bad = records.clone();
    bad.last_mut().unwrap()["no_such_property"] = json!("x");
    let reply = app.admin_json("PUT", &path(), &Value::Array(bad)).await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{name}: {}",
        reply.text()
    );
    let body = reply.json();
    assert_eq!(body["entity_error_count"], 1, "{name}: {body}");
    assert!(
        counts(&app).await.values().all(|&n| n == 0),
        "{name}: a rejected batch left records"
    );

    // A dry run validates everything and writes nothing.
    let reply = app
        .admin_json(
            "PUT",
            &format!("{}/_dry_run", path()),
            &Value::Array(records.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.text());
    assert_eq!(reply.json()["success"], true, "{name}: {}", reply.text());
    assert!(
        counts(&app).await.values().all(|&n| n == 0),
        "{name}: a dry run wrote records"
    );

    // The whole generated graph in one request.
    let reply = app
        .admin_json("PUT", &path(), &Value::Array(records.clone()))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{name}: {}", reply.text());
    let body = reply.json();
    assert_eq!(
        body["created_entity_count"],
        records.len(),
        "{name}: {body}"
    );
    let ids: Vec<(String, String)> = body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for node in &order {
        assert_eq!(app.count(node, PID).await, 2, "{name}: {node}");
    }

    // Every type exported as TSV and re-uploaded unchanged updates, never creates.
    for node in &order {
        let reply = app
            .get(
                &format!("{}/export/?node_label={node}&format=tsv", path()),
                Some(&app.admin_token),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{name}: {node}: {}",
            reply.text()
        );
        let tsv = reply.body.clone();
        let reupload = app
            .request(
                "PUT",
                &path(),
                Some(&app.admin_token),
                "text/tab-separated-values",
                tsv.clone(),
            )
            .await;
        assert_eq!(
            reupload.status,
            StatusCode::OK,
            "{name}: {node}: {}",
            reupload.text()
        );
        let body = reupload.json();
        assert_eq!(body["created_entity_count"], 0, "{name}: {node}: {body}");
        assert_eq!(body["updated_entity_count"], 2, "{name}: {node}: {body}");
        let again = app
            .get(
                &format!("{}/export/?node_label={node}&format=tsv", path()),
                Some(&app.admin_token),
            )
            .await;
        assert_eq!(
            again.body, tsv,
            "{name}: {node}: the round trip changed the export"
        );
    }

    // Deleting a parent with children is refused and deletes nothing.
    let first_with_children = order
        .iter()
        .find(|t| {
            order.iter().any(|c| {
                app.state
                    .dictionary
                    .node(c)
                    .unwrap()
                    .links
                    .iter()
                    .any(|l| &l.target_type == *t && l.required)
            })
        })
        .expect("some type has required children");
    let parent_id = &ids
        .iter()
        .find(|(t, _)| t == first_with_children)
        .unwrap()
        .1;
    let reply = app
        .request(
            "DELETE",
            &format!("{}/entities/{parent_id}", path()),
            Some(&app.admin_token),
            "",
            vec![],
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "{name}: {}",
        reply.text()
    );
    assert_eq!(app.count(first_with_children, PID).await, 2, "{name}");

    // Children first, everything can be deleted.
    for node in order.iter().rev() {
        let batch: Vec<&str> = ids
            .iter()
            .filter(|(t, _)| t == node)
            .map(|(_, id)| id.as_str())
            .collect();
        let reply = app
            .request(
                "DELETE",
                &format!("{}/entities/{}", path(), batch.join(",")),
                Some(&app.admin_token),
                "",
                vec![],
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{name}: {node}: {}",
            reply.text()
        );
        assert_eq!(reply.json()["deleted_entity_count"], 2, "{name}: {node}");
    }
    assert!(
        counts(&app).await.values().all(|&n| n == 0),
        "{name}: records left after deletion"
    );
}

#[tokio::test]
async fn bundled_dictionary_round_trip() {
    round_trip(None).await;
}

#[tokio::test]
async fn every_reference_dictionary_round_trip() {
    for dictionary in common::reference_dictionaries() {
        round_trip(Some(&dictionary)).await;
    }
}

/// A new entity's links are written without a check for an existing edge,
/// so one that names the same target twice must still store it once, and
/// updating it with a second target adds just that one.
#[tokio::test]
async fn a_target_named_twice_is_linked_once() {
    let app = TestApp::new(None).await;
    app.project(P, Q).await;
    let subject =
        |s: &str| json!({"type": "subject", "submitter_id": s, "studies": {"submitter_id": "st"}});
    let file = |subjects: Value| {
        json!({"type": "clinical_file", "submitter_id": "cf", "file_name": "cf.tsv", "file_size": 1,
               "md5sum": "0123456789abcdef0123456789abcdef", "data_category": "Clinical",
               "data_type": "Clinical Supplement", "data_format": "TSV", "subjects": subjects})
    };
    let docs = json!([
        {"type": "study", "submitter_id": "st", "projects": {"code": Q}},
        subject("a"),
        subject("b"),
        file(json!([{"submitter_id": "a"}, {"submitter_id": "a"}])),
    ]);
    let reply = app.admin_json("PUT", &path(), &docs).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    async fn linked(app: &TestApp) -> Vec<String> {
        let query = r#"{ clinical_file { subjects { submitter_id } } }"#;
        let data = app.graphql(&app.admin_token, query).await.json();
        let mut ids: Vec<String> = data["data"]["clinical_file"][0]["subjects"]
            .as_array()
            .unwrap_or_else(|| panic!("{data}"))
            .iter()
            .map(|s| s["submitter_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }
    assert_eq!(linked(&app).await, ["a"]);
    let again = json!([file(
        json!([{"submitter_id": "a"}, {"submitter_id": "b"}, {"submitter_id": "b"}])
    )]);
    let reply = app.admin_json("PUT", &path(), &again).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(linked(&app).await, ["a", "b"]);
}

#[tokio::test]
async fn post_is_create_only_and_conflicts_report_per_entity() {
    let app = TestApp::new(None).await;
    app.project(P, Q).await;
    let records = commons::simulate::records(&app.state.dictionary, Q, 1);
    let reply = app
        .admin_json("POST", &path(), &Value::Array(records.clone()))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let reply = app
        .admin_json("POST", &path(), &Value::Array(records[..1].to_vec()))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let entity = &reply.json()["entities"][0];
    assert_eq!(entity["valid"], false);
    assert!(
        entity["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{entity}"
    );
}

#[tokio::test]
async fn invalid_documents_get_typed_errors_and_nothing_is_written() {
    let app = TestApp::new(None).await;
    app.project(P, Q).await;
    let records = commons::simulate::records(&app.state.dictionary, Q, 1);
    let first = records[0].clone();
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"submitter_id": "x"}), "type", "INVALID_TYPE"),
        (
            json!({"type": "no_such_type", "submitter_id": "x"}),
            "type",
            "INVALID_TYPE",
        ),
        (json!([1]), "", "INVALID_VALUE"),
        (
            {
                let mut d = first.clone();
                d.as_object_mut().unwrap().remove("submitter_id");
                d
            },
            "submitter_id",
            "MISSING_PROPERTY",
        ),
        (
            {
                let mut d = first.clone();
                d["id"] = json!("not-a-uuid");
                d
            },
            "id",
            "INVALID_VALUE",
        ),
    ];
    for (doc, key, kind) in cases {
        let body = if doc.is_array() {
            doc.clone()
        } else {
            json!([doc])
        };
        let reply = app.admin_json("POST", &path(), &body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{doc}: {}",
            reply.text()
        );
        let errors = reply.json()["entities"][0]["errors"].clone();
        assert!(
            errors.as_array().unwrap().iter().any(|e| e["type"] == kind
                && (key.is_empty() || e["keys"].as_array().unwrap().iter().any(|k| k == key))),
            "{doc}: expected {kind} on {key}: {errors}"
        );
    }
    let reply = app
        .request(
            "PUT",
            &path(),
            Some(&app.admin_token),
            "application/json",
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("Unable to parse json")
    );
    let reply = app
        .request(
            "PUT",
            &path(),
            Some(&app.admin_token),
            "text/tab-separated-values",
            b"type\t.bad\nx\ty\n".to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("Invalid link name"),
        "{}",
        reply.text()
    );
    assert!(counts(&app).await.values().all(|&n| n == 0));
}

#[tokio::test]
async fn duplicate_natural_keys_in_one_request_are_a_transactional_error() {
    let app = TestApp::new(None).await;
    app.project(P, Q).await;
    let records = commons::simulate::records(&app.state.dictionary, Q, 1);
    let doubled = vec![records[0].clone(), records[0].clone()];
    let reply = app.admin_json("PUT", &path(), &Value::Array(doubled)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["transactional_error_count"], 1, "{body}");
    assert_eq!(body["transactional_errors"][0]["type"], "NOT_UNIQUE");
}

#[tokio::test]
async fn templates_and_dictionary_are_public() {
    let app = TestApp::new(None).await;
    let reply = app.get("/api/v0/submission/_dictionary", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.json()["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "/v0/submission/_dictionary/_all")
    );
    let all = app
        .get("/api/v0/submission/_dictionary/_all", None)
        .await
        .json();
    assert!(all.get("_definitions").is_some() && all.get("project").is_some());
    let reply = app.get("/api/v0/submission/_dictionary/nope", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let order = commons::simulate::submission_order(&app.state.dictionary);
    let node = &order[0].id;
    let reply = app
        .get(
            &format!("/api/v0/submission/template/{node}?format=tsv"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.text();
    assert!(text.starts_with("*type\t"), "{text}");
    assert!(text.lines().nth(1).unwrap().starts_with(node.as_str()));
    let reply = app.get("/api/v0/submission/template/nope", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = app
        .get(
            &format!("/api/v0/submission/template/{node}?format=xml"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn ids_in_upper_case_are_stored_and_linked_in_lower_case() {
    let app = TestApp::new(None).await;
    app.project(P, Q).await;
    let id = uuid::Uuid::new_v4();
    let docs = json!([
        {"type": "study", "id": id.to_string().to_uppercase(), "submitter_id": "study-x",
         "projects": {"code": Q}},
        {"type": "subject", "submitter_id": "subject-x", "studies": {"id": id.to_string()}},
    ]);
    let reply = app.admin_json("PUT", &path(), &docs).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["entities"][0]["id"], id.to_string());
    let token = app.admin_token.clone();
    let linked = app
        .graphql(
            &token,
            r#"{ subject(submitter_id: "subject-x") { studies { id submitter_id } } }"#,
        )
        .await
        .json();
    assert_eq!(
        linked["data"]["subject"][0]["studies"][0],
        json!({"id": id.to_string(), "submitter_id": "study-x"})
    );
}

fn gdcdictionary() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/dictionaries/gdcdictionary")
}

/// gdcdictionary records down to an aliquot, for the tests below.
async fn gdc_project() -> TestApp {
    let app = TestApp::new(Some(&gdcdictionary())).await;
    app.project(P, Q).await;
    let records = json!([
        {"type": "experiment", "submitter_id": "exp", "projects": {"code": Q}},
        {"type": "case", "submitter_id": "case-1", "experiments": {"submitter_id": "exp"}},
        {"type": "sample", "submitter_id": "sample-1", "cases": {"submitter_id": "case-1"}},
        {"type": "aliquot", "submitter_id": "aliquot-1", "samples": {"submitter_id": "sample-1"}},
    ]);
    let reply = app.admin_json("PUT", &path(), &records).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    app
}

/// Values that YAML 1.1 would read as booleans or numbers stay the strings
/// they are, through TSV and JSON, export and GraphQL; `analyte_type_id: Y`
/// (an enum value of gdcdictionary) is valid.
#[tokio::test]
async fn yaml_lookalike_values_round_trip_exactly() {
    let app = gdc_project().await;
    let tsv = "type\tsubmitter_id\tsamples.submitter_id\tanalyte_type_id\tsource_center\n\
               aliquot\ttsv-1\tsample-1\tY\ton\n\
               aliquot\ttsv-2\tsample-1\tX\t0777\n";
    let reply = app.admin_tsv("PUT", &path(), tsv).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = app
        .admin_json(
            "PUT",
            &path(),
            &json!([{"type": "aliquot", "submitter_id": "json-1", "analyte_type_id": "Y",
                     "source_center": "1e5", "samples": {"submitter_id": "sample-1"}}]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = app
        .graphql(
            &app.admin_token,
            r#"{ aliquot(first: 0, order_by_asc: "submitter_id") { submitter_id analyte_type_id source_center } }"#,
        )
        .await;
    assert_eq!(
        reply.json()["data"]["aliquot"],
        json!([
            {"submitter_id": "aliquot-1", "analyte_type_id": null, "source_center": null},
            {"submitter_id": "json-1", "analyte_type_id": "Y", "source_center": "1e5"},
            {"submitter_id": "tsv-1", "analyte_type_id": "Y", "source_center": "on"},
            {"submitter_id": "tsv-2", "analyte_type_id": "X", "source_center": "0777"},
        ])
    );
    let export = app
        .get(
            &format!("{}/export/?node_label=aliquot&format=tsv", path()),
            Some(&app.admin_token),
        )
        .await
        .text();
    for cell in ["\tY\t", "\ton\t", "\t0777\t", "\t1e5\t"] {
        assert!(
            export.contains(cell) || export.contains(&cell[..cell.len() - 1]),
            "{cell:?} in {export}"
        );
    }
    let served = app
        .get("/api/v0/submission/_dictionary/aliquot", None)
        .await
        .json();
    let values = served["properties"]["analyte_type_id"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        values.contains(&json!("Y")) && !values.contains(&json!(true)),
        "{values:?}"
    );
}

async fn diagnosis_links(app: &TestApp) -> Value {
    app.graphql(
        &app.admin_token,
        r#"{ sample(first: 0, order_by_asc: "submitter_id") { submitter_id _diagnoses_count } }"#,
    )
    .await
    .json()["data"]["sample"]
        .clone()
}

/// A JSON null for an optional link removes the stored link (sheepdog's only
/// way to drop one); on a new entity it is as if the link were absent; a
/// required link cannot be null.
#[tokio::test]
async fn a_null_optional_link_removes_it() {
    let app = gdc_project().await;
    let records = json!([
        {"type": "diagnosis", "submitter_id": "diag-1", "cases": {"submitter_id": "case-1"},
         "age_at_diagnosis": 50, "days_to_last_follow_up": 10, "vital_status": "alive",
         "primary_diagnosis": "x", "morphology": "x", "tissue_or_organ_of_origin": "x",
         "site_of_resection_or_biopsy": "x", "classification_of_tumor": "primary",
         "tumor_stage": "x", "tumor_grade": "x", "progression_or_recurrence": "no",
         "days_to_recurrence": 1, "days_to_last_known_disease_status": 1,
         "last_known_disease_status": "Distant met recurrence/progression"},
        {"type": "sample", "submitter_id": "sample-2", "cases": {"submitter_id": "case-1"},
         "diagnoses": {"submitter_id": "diag-1"}},
        {"type": "sample", "submitter_id": "sample-3", "cases": {"submitter_id": "case-1"},
         "diagnoses": null},
    ]);
    let reply = app.admin_json("PUT", &path(), &records).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        diagnosis_links(&app).await,
        json!([{"submitter_id": "sample-1", "_diagnoses_count": 0},
               {"submitter_id": "sample-2", "_diagnoses_count": 1},
               {"submitter_id": "sample-3", "_diagnoses_count": 0}])
    );
    let reply = app
        .admin_json(
            "PUT",
            &path(),
            &json!({"type": "sample", "submitter_id": "sample-2", "diagnoses": null,
                    "cases": {"submitter_id": "case-1"}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        diagnosis_links(&app).await[1],
        json!({"submitter_id": "sample-2", "_diagnoses_count": 0})
    );
    let reply = app
        .admin_json(
            "PUT",
            &path(),
            &json!({"type": "sample", "submitter_id": "sample-2", "cases": null}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert!(reply.text().contains("cases"), "{}", reply.text());
}

/// `GET /P/Q/manifest` (and `/upload_manifest`) as sheepdog answers it.
#[tokio::test]
async fn the_submission_manifest_lists_data_files_as_sheepdog_does() {
    let app = gdc_project().await;
    let records = json!([
        {"type": "read_group", "submitter_id": "rg-1", "aliquots": {"submitter_id": "aliquot-1"}},
        {"type": "submitted_unaligned_reads", "submitter_id": "reads-1", "file_name": "r1.fastq",
         "file_size": 42, "md5sum": "0123456789abcdef0123456789abcdef", "data_category": "Sequencing Reads",
         "data_type": "Unaligned Reads", "data_format": "FASTQ", "experimental_strategy": "WGS",
         "read_groups": {"submitter_id": "rg-1"}},
    ]);
    let reply = app.admin_json("PUT", &path(), &records).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let ids: Vec<String> = reply.json()["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let token = Some(app.admin_token.as_str());
    for route in ["manifest", "upload_manifest"] {
        let reply = app.get(&format!("{}/{route}", path()), token).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        // Gen3's body, and the request's id (README "Operating Commons").
        let id = reply.headers["x-request-id"].to_str().unwrap();
        assert_eq!(
            reply.json(),
            json!({"message": "No ids specified. Use query parameter 'ids', e.g. 'ids=id1,id2'.", "request_id": id})
        );
    }
    let reply = app
        .get(&format!("{}/manifest?ids={}", path(), ids[1]), token)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.headers["content-disposition"],
        "attachment; filename=submission_manifest.yaml"
    );
    let manifest = commons::yaml::from_str(&reply.text()).unwrap();
    let file = &manifest["files"][0];
    assert_eq!(manifest["files"].as_array().unwrap().len(), 1);
    assert_eq!(file["id"], json!(ids[1]));
    assert_eq!(file["type"], "submitted_unaligned_reads");
    assert_eq!(file["project_id"], PID);
    assert_eq!(file["file_size"], json!(42));
    assert_eq!(file["local_file_path"], "r1.fastq");
    assert_eq!(
        file["read_groups"],
        json!([{"node_id": ids[0], "submitter_id": "rg-1"}])
    );
    assert_eq!(file["core_metadata_collections"], json!([]));
    for hidden in ["state", "file_state", "created_datetime", "urls"] {
        assert!(file.get(hidden).is_none(), "{hidden} in {file}");
    }
    let text = reply.text();
    let keys: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("  -") && !l.starts_with("    "))
        .map(|l| {
            l.trim_start_matches("- ")
                .trim_start()
                .split(':')
                .next()
                .unwrap()
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "keys are sorted");
    let reply = app
        .get(
            &format!("{}/manifest?ids={},{}", path(), ids[0], ids[1]),
            token,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json()["message"],
        format!("read_group {} is not a data file.", ids[0])
    );
    let missing = "00000000-0000-4000-8000-000000000000";
    let reply = app
        .get(&format!("{}/manifest?ids={missing}", path()), token)
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["message"], format!("Unable to find {missing}"));
}
