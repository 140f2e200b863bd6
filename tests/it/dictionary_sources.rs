//! Every way of naming a dictionary loads the same model: a YAML folder, a
//! folder with `schemas/`, a `schema.json` bundle file, and an http URL to a
//! bundle (Gen3's DICTIONARY_URL), served here on loopback.

use std::path::Path;

use serde_json::{Map, Value};

fn reference(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/dictionaries")
        .join(name)
}

/// The `schema.json` form of a YAML folder: file name -> parsed document.
fn bundle(folder: &Path) -> Value {
    let mut out = Map::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: Value = commons::yaml::from_str(&text).unwrap();
            out.insert(
                path.file_name().unwrap().to_string_lossy().into_owned(),
                doc,
            );
        }
    }
    Value::Object(out)
}

fn summary(d: &commons::dictionary::Dictionary) -> Vec<(String, usize, usize)> {
    let mut nodes: Vec<_> = d
        .nodes()
        .iter()
        .map(|n| (n.id.clone(), n.properties.len(), n.links.len()))
        .collect();
    nodes.sort();
    nodes
}

#[tokio::test(flavor = "multi_thread")]
async fn folder_schemas_folder_bundle_file_and_url_load_the_same_model() {
    let folder = reference("gdcdictionary");
    let from_parent = commons::dictionary::load_path(&folder).unwrap();
    let from_schemas = commons::dictionary::load_path(&folder.join("schemas")).unwrap();
    assert_eq!(summary(&from_parent), summary(&from_schemas));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.json");
    let bundle = bundle(&folder.join("schemas"));
    std::fs::write(&file, bundle.to_string()).unwrap();
    let from_file = commons::dictionary::load_path(&file).unwrap();
    assert_eq!(summary(&from_parent), summary(&from_file));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/schema.json", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/schema.json",
        axum::routing::get(move || async move { axum::Json(bundle) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let from_url =
        tokio::task::spawn_blocking(move || commons::dictionary::load(Some(&url)).unwrap())
            .await
            .unwrap();
    assert_eq!(summary(&from_parent), summary(&from_url));

    let missing = tokio::task::spawn_blocking(|| {
        commons::dictionary::load(Some("http://127.0.0.1:9/none.json"))
    })
    .await
    .unwrap();
    assert!(missing.unwrap_err().to_string().contains("cannot fetch"));
}
