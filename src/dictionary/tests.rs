//! Unit tests of the dictionary loader, against the reference dictionaries.

use serde_json::json;

use super::*;

fn reference(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/dictionaries")
        .join(name)
}

/// The `_definitions.yaml` entries Gen3's built-in `data_release` refers to.
fn gen3_definitions() -> serde_json::Value {
    json!({"UUID": {"type": "string"}, "datetime": {"type": "string"}, "to_one": {"type": "object"}})
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
        "_definitions.yaml": gen3_definitions(),
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

/// A small valid dictionary as a bundle, for tests that change one part of it.
fn small_bundle() -> serde_json::Value {
    json!({
        "_definitions.yaml": {
            "UUID": {"type": "string"}, "datetime": {"type": "string"},
            "to_one": {"type": "object"}, "size": {"type": "integer", "minimum": 0},
            "labelled": {"description": "labelled", "maximum": 10},
        },
        "program.yaml": {
            "id": "program", "category": "administrative", "type": "object", "links": [],
            "properties": {"name": {"type": "string"}}, "uniqueKeys": [["id"], ["name"]],
        },
        "thing.yaml": {
            "id": "thing", "category": "x", "type": "object",
            "links": [{"name": "programs", "backref": "things", "label": "of",
                       "target_type": "program", "multiplicity": "many_to_one", "required": true}],
            "properties": {"programs": {"$ref": "_definitions.yaml#/to_one"},
                           "size": {"type": "integer"}},
        },
    })
}

#[test]
fn a_list_of_references_merges_in_order_like_several_ref_keys() {
    let with = |size: serde_json::Value| {
        let mut bundle = small_bundle();
        bundle["thing.yaml"]["properties"]["size"] = size;
        let d = load_bundle_value("bundle", bundle).unwrap();
        d.node("thing").unwrap().schema["properties"]["size"].clone()
    };
    let listed = with(json!({"$ref": ["_definitions.yaml#/size", "_definitions.yaml#labelled"]}));
    let keyed =
        with(json!({"$ref": "_definitions.yaml#/size", "$ref2": "_definitions.yaml#/labelled"}));
    assert_eq!(listed, keyed);
    assert_eq!(
        listed,
        json!({"type": "integer", "minimum": 0, "description": "labelled", "maximum": 10})
    );
}

#[test]
fn gen3s_built_in_nodes_join_every_dictionary_unless_it_defines_them() {
    let d = load_bundle_value("bundle", small_bundle()).unwrap();
    let release = d.node("data_release").expect("data_release is built in");
    assert_eq!(release.link("roots").unwrap().target_type, "root");
    assert_eq!(release.schema["properties"]["id"]["type"], json!("string"));
    assert!(
        d.node("root")
            .is_some_and(|r| r.backrefs.iter().any(|b| b.name == "data_releases"))
    );

    let mut own = small_bundle();
    own["my_root.yaml"] = json!({"id": "root", "category": "internal", "type": "object",
        "title": "Mine", "links": [], "properties": {}});
    let d = load_bundle_value("bundle", own).unwrap();
    assert_eq!(d.node("root").unwrap().title, "Mine");
}

/// Each kind of broken dictionary: the change, then words the message must hold
/// (the file, the key or place, and the reason).
#[test]
fn a_broken_dictionary_is_refused_naming_file_key_and_reason() {
    type Change = fn(&mut serde_json::Value);
    let cases: Vec<(Change, &[&str])> = vec![
        (
            |b| b["thing.yaml"]["properties"]["size"] = json!({"$ref": "nowhere.yaml#/size"}),
            &[
                "thing.yaml",
                "properties/size",
                "unknown file 'nowhere.yaml'",
            ],
        ),
        (
            |b| {
                b["thing.yaml"]["properties"]["size"] =
                    json!({"$ref": "_definitions.yaml#/nothing"})
            },
            &["thing.yaml", "properties/size", "points at nothing"],
        ),
        (
            |b| b["thing.yaml"]["properties"]["size"] = json!({"$ref": 7}),
            &["thing.yaml", "properties/size", "must be a reference"],
        ),
        (
            |b| {
                b["thing.yaml"]["properties"]["size"] =
                    json!({"$ref": ["_definitions.yaml#/size", 1]})
            },
            &["thing.yaml", "properties/size", "references as strings"],
        ),
        (
            |b| {
                b["thing.yaml"]["properties"]["size"] = json!({"$ref": "_definitions.yaml#/loop"});
                b["_definitions.yaml"]["loop"] = json!({"$ref": "#/loop"});
            },
            &["reference cycle", "_definitions.yaml#/loop"],
        ),
        (
            |b| {
                b["thing.yaml"]["properties"]["size"] =
                    json!({"description": "x", "$ref": "_definitions.yaml#/UUID/type"})
            },
            &["thing.yaml", "properties/size", "must point at an object"],
        ),
        (
            |b| {
                b["thing.yaml"].as_object_mut().unwrap().remove("id");
            },
            &["thing.yaml", "missing key 'id'"],
        ),
        (
            |b| b["thing.yaml"]["id"] = json!("a thing"),
            &["thing.yaml", "key 'id'", "must match"],
        ),
        (
            |b| b["thing.yaml"]["links"][0]["target_type"] = json!("nowhere"),
            &["thing", "programs", "target_type 'nowhere'"],
        ),
        (
            |b| {
                b["thing.yaml"]["links"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("backref");
            },
            &["thing.yaml", "key 'links'", "lacks 'backref'"],
        ),
        (
            |b| b["thing.yaml"]["links"][0]["multiplicity"] = json!("some"),
            &["thing.yaml", "key 'links'", "unknown multiplicity 'some'"],
        ),
        (
            |b| {
                b["thing.yaml"]["properties"]
                    .as_object_mut()
                    .unwrap()
                    .remove("programs");
            },
            &["thing.yaml", "key 'links'", "no entry under properties"],
        ),
        (
            |b| b["thing.yaml"]["links"] = json!({"name": "programs"}),
            &["thing.yaml", "key 'links'", "expected a list"],
        ),
        (
            |b| b["thing.yaml"]["properties"] = json!(["size"]),
            &["thing.yaml", "key 'properties'", "expected a mapping"],
        ),
        (
            |b| b["thing.yaml"]["uniqueKeys"] = json!([["id"], ["colour"]]),
            &[
                "thing.yaml",
                "key 'uniqueKeys'",
                "'colour' is not a property",
            ],
        ),
        (
            |b| b["thing.yaml"]["validators"] = json!(["check"]),
            &["thing.yaml", "key 'validators'", "not supported"],
        ),
        (
            |b| b["program.yaml"]["properties"]["things"] = json!({"type": "string"}),
            &["program", "backref 'things'", "clashes"],
        ),
        (
            |b| b["other.yaml"] = b["thing.yaml"].clone(),
            &["node id 'thing'", "defined twice"],
        ),
        (
            |b| {
                b["_definitions.yaml"]
                    .as_object_mut()
                    .unwrap()
                    .remove("datetime");
            },
            &[
                "data_release.yaml",
                "_definitions.yaml#/datetime",
                "points at nothing",
                "Gen3's loader adds",
            ],
        ),
        (
            |b| b["thing.yaml"] = json!(["not", "a", "mapping"]),
            &["thing.yaml", "must be a mapping"],
        ),
    ];
    for (change, words) in cases {
        let mut bundle = small_bundle();
        change(&mut bundle);
        let message = load_bundle_value("bundle", bundle)
            .expect_err(&format!("refused: {words:?}"))
            .to_string();
        for word in words {
            assert!(message.contains(word), "{word:?} not in: {message}");
        }
    }
}

#[test]
fn yaml_errors_name_the_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in [
        (
            "_definitions.yaml",
            "UUID: {type: string}\ndatetime: {type: string}\nto_one: {type: object}\n",
        ),
        (
            "program.yaml",
            "id: program\ntype: object\nlinks: []\nproperties:\n  name: {type: string}\n",
        ),
    ] {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    for (text, reason) in [
        ("id: thing\nproperties: [a, b\n", "line"),
        ("id: thing\nproperties: *nowhere\n", "unknown anchor"),
        (
            "id: thing\nvalue: !!python/tuple [1]\n",
            "could not determine a constructor",
        ),
        ("id: thing\n---\nid: other\n", "single document"),
        ("id: thing\nvalue: !!int ten\n", "invalid integer"),
    ] {
        std::fs::write(dir.path().join("thing.yaml"), text).unwrap();
        let message = load_path(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains("thing.yaml")
                && message.contains("invalid YAML")
                && message.contains(reason),
            "{text:?}: {message}"
        );
    }
}

#[test]
fn a_dictionary_of_its_own_data_release_needs_none_of_the_built_in_references() {
    let mut bundle = small_bundle();
    bundle["_definitions.yaml"]
        .as_object_mut()
        .unwrap()
        .remove("datetime");
    bundle["release.yaml"] = json!({"id": "data_release", "category": "internal", "type": "object",
        "title": "Ours", "links": [], "properties": {}});
    let d = load_bundle_value("bundle", bundle).unwrap();
    assert_eq!(d.node("data_release").unwrap().title, "Ours");
}
