//! Dictionary loader and YAML reader: any YAML text as a node schema next to a small valid
//! dictionary must load or fail with an error, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(node) = commons::yaml::from_str(text) else { return };
    let bundle = json!({
        "_definitions.yaml": {"id": "_definitions",
            "to_one": {"type": "object"}, "UUID": {"type": "string"},
            "datetime": {"type": "string"}},
        "program.yaml": {"id": "program", "type": "object", "category": "administrative",
            "links": [], "properties": {"name": {"type": "string"}}, "uniqueKeys": [["id"], ["name"]]},
        "fuzzed.yaml": node,
    });
    if let Ok(dictionary) = commons::dictionary::load_bundle_value("fuzz", bundle) {
        let _ = commons::validate::Validators::compile(&dictionary);
        let _ = dictionary.depth();
    }
});
