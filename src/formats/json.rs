//! A JSON submission body read document by document as it streams: an
//! array of documents or one document, each bounded in size, none held
//! longer than it takes to hand it on.

use serde_json::Value;

use super::{BoundedReader, DocumentLimits, oversized_value};

/// Why a JSON body could not be read as documents.
#[derive(Debug)]
pub enum JsonBodyError {
    /// Reading the body failed (too large, the client went away...).
    Read(std::io::Error),
    /// The text is not JSON.
    Syntax(serde_json::Error),
    /// A value of a document is larger than one value may be.
    ValueTooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    /// The body is JSON but neither an object nor an array: the Python type
    /// name sheepdog reports for it.
    NotDocuments(&'static str),
}

/// Parse a JSON body (an array of documents, or one document) and pass each
/// document to `emit`, with the input bytes it took, as soon as it is read;
/// `emit` returns false to stop.
pub fn read_json_documents(
    reader: impl std::io::Read,
    documents: DocumentLimits,
    mut emit: impl FnMut(Value, u64) -> bool,
) -> Result<(), JsonBodyError> {
    use serde::Deserializer as _;
    let (reader, bound) = BoundedReader::new(reader, documents.max_document_bytes);
    let mut deserializer = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let parse_error = |e: serde_json::Error| match e.io_error_kind() {
        Some(_) => JsonBodyError::Read(std::io::Error::from(e)),
        None => JsonBodyError::Syntax(e),
    };
    let mut oversized = None;
    let mut before = 0;
    let checked = |doc: Value| {
        bound.next_document();
        let consumed = bound.consumed();
        if let Some((key, size)) = oversized_value(&doc, documents.max_cell_bytes) {
            oversized = Some(JsonBodyError::ValueTooLarge {
                key,
                size,
                limit: documents.max_cell_bytes,
            });
            return false;
        }
        let bytes = consumed - before;
        before = consumed;
        emit(doc, bytes)
    };
    let outcome = deserializer.deserialize_any(JsonDocuments(checked));
    if let Some(error) = oversized {
        return Err(error);
    }
    let outcome = outcome.map_err(parse_error)?;
    if let Some(kind) = outcome {
        return Err(JsonBodyError::NotDocuments(kind));
    }
    deserializer.end().map_err(parse_error)
}

/// Visits a JSON body's documents; its value is the Python type name of a
/// body that is neither an object nor an array (as sheepdog reports it).
struct JsonDocuments<F>(F);

impl<'de, F: FnMut(Value) -> bool> serde::de::Visitor<'de> for JsonDocuments<F> {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object or an array of objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        mut self,
        mut seq: A,
    ) -> Result<Self::Value, A::Error> {
        while let Some(doc) = seq.next_element::<Value>()? {
            if !(self.0)(doc) {
                break;
            }
        }
        Ok(None)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, map: A) -> Result<Self::Value, A::Error> {
        use serde::Deserialize as _;
        let doc = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        (self.0)(doc);
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Some("str"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Some("number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Some("number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Some("number"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Some("bool"))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some("NoneType"))
    }
}
