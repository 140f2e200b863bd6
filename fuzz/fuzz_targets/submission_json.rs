//! JSON submission documents: parsing, schema validation and natural keys of
//! any document, for every node type of gdcdictionary, never panic.
#![no_main]

use std::sync::OnceLock;

use commons::dictionary::Dictionary;
use commons::validate::Validators;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn model() -> &'static (Dictionary, Validators) {
    static MODEL: OnceLock<(Dictionary, Validators)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/dictionaries/gdcdictionary");
        let dictionary = commons::dictionary::load_path(std::path::Path::new(path)).expect("gdcdictionary loads");
        let validators = Validators::compile(&dictionary).expect("validators compile");
        (dictionary, validators)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let (dictionary, validators) = model();
    let docs = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    for doc in docs {
        let Some(obj) = doc.as_object() else { continue };
        let type_name = obj.get("type").and_then(Value::as_str).unwrap_or("case");
        let Some(node) = dictionary.node(type_name) else { continue };
        let _ = validators.check(&node.id, &doc);
        let _ = commons::submission::natural_key_of(node, "P-Q", obj);
    }
});
