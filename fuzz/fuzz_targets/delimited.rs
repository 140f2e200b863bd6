//! TSV/CSV to entity documents with the gdcdictionary model: any bytes parse
//! or fail with a message, never panic.
#![no_main]

use std::sync::OnceLock;

use commons::dictionary::Dictionary;
use commons::formats::{Delimited, parse_delimited};
use libfuzzer_sys::fuzz_target;

fn dictionary() -> &'static Dictionary {
    static DICTIONARY: OnceLock<Dictionary> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/dictionaries/gdcdictionary");
        commons::dictionary::load_path(std::path::Path::new(path)).expect("gdcdictionary loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_delimited(dictionary(), text.as_bytes(), Delimited::Tsv);
    let _ = parse_delimited(dictionary(), text.as_bytes(), Delimited::Csv);
});
