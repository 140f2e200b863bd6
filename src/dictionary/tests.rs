use serde_json::json;

use super::*;

fn reference(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/dictionaries")
        .join(name)
}

#[test]
fn bundled_dictionary_loads_with_links_and_backrefs() {
    let d = load(None).expect("the bundled dictionary loads");
    let project = d.node("project").expect("project node");
    assert!(project.link("programs").is_some());
    assert!(
        d.node("program")
            .unwrap()
            .backrefs
            .iter()
            .any(|b| b.name == "projects")
    );
    assert!(d.nodes().iter().any(|n| n.is_data_file()));
    assert!(d.depth() >= 4, "depth {}", d.depth());
}

#[test]
fn gdcdictionary_resolves_refs_and_null_allowance() {
    let d = load_path(&reference("gdcdictionary")).expect("gdcdictionary loads");
    let case = d.node("case").unwrap();
    assert_eq!(case.natural_key, vec!["project_id", "submitter_id"]);
    assert!(case.link("experiments").is_some_and(|l| l.required));
    // Served schema keeps the source form; the validation schema allows null.
    let served = &case.schema["properties"]["primary_site"]["type"];
    let validation_schema = case.validation_schema();
    let validated = &validation_schema["properties"]["primary_site"]["type"];
    assert_eq!(served, &json!("string"));
    assert_eq!(validated, &json!(["string", "null"]));
    // `$ref` merged: ubiquitous properties appear on every node.
    assert!(case.property("created_datetime").is_some());
    let sample = d.node("sample").unwrap();
    assert!(
        sample
            .backrefs
            .iter()
            .any(|b| b.name == "aliquots" && b.source_type == "aliquot")
    );
}

#[test]
fn every_reference_dictionary_loads() {
    for entry in std::fs::read_dir(reference("")).expect("reference dictionaries folder") {
        let path = entry.unwrap().path();
        let d = load_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(d.node("project").is_some(), "{}", path.display());
    }
}

#[test]
fn broken_dictionary_names_file_node_and_key() {
    let bundle = json!({
        "_definitions.yaml": {"id": "_definitions"},
        "thing.yaml": {
            "id": "thing", "category": "x", "type": "object",
            "links": [{"name": "parents", "backref": "things", "label": "of",
                       "target_type": "nowhere", "multiplicity": "many_to_one", "required": true}],
            "properties": {"parents": {"$ref": "_definitions.yaml#/to_one"}}
        }
    });
    let err = load_bundle_value("bundle", bundle).unwrap_err().to_string();
    assert!(
        err.contains("thing.yaml") && err.contains("to_one"),
        "{err}"
    );
}

#[test]
fn unknown_link_target_is_a_load_error() {
    let bundle = json!({
        "thing.yaml": {
            "id": "thing", "category": "x", "type": "object",
            "links": [{"name": "parents", "backref": "things", "label": "of",
                       "target_type": "nowhere", "multiplicity": "many_to_one", "required": true}],
            "properties": {"parents": {"type": "object"}}
        }
    });
    let err = load_bundle_value("bundle", bundle).unwrap_err().to_string();
    assert!(err.contains("nowhere") && err.contains("thing"), "{err}");
}
