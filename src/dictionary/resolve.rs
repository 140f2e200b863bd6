//! `$ref` resolution as Gen3's dictionaryutils does it (DICTIONARY.md §5): the
//! referenced fragment is merged into the object holding the `$ref`, its keys
//! replacing siblings of the same name, and `#/...` refers to the document that
//! contains the reference text.

use serde_json::{Map, Value};

use super::DictionaryError;

/// Raw source documents keyed by file name (`case.yaml`, `_definitions.yaml`).
pub type Sources = Map<String, Value>;

/// Resolve every `$ref` inside `value`, which lives in document `doc`.
///
/// Node schemas resolve strictly. Shared fragment files (`_definitions.yaml`)
/// resolve leniently, as Gen3 only resolves what nodes use: a dangling
/// reference that no node reaches (real dictionaries have some) stays as written.
pub fn resolve(
    sources: &Sources,
    doc: &str,
    value: &Value,
    strict: bool,
) -> Result<Value, DictionaryError> {
    Resolver {
        sources,
        strict,
        stack: Vec::new(),
    }
    .value(doc, value)
}

struct Resolver<'a> {
    sources: &'a Sources,
    strict: bool,
    /// References being expanded, to report cycles instead of overflowing the stack.
    stack: Vec<String>,
}

impl Resolver<'_> {
    fn value(&mut self, doc: &str, value: &Value) -> Result<Value, DictionaryError> {
        match value {
            Value::Object(map) => self.object(doc, map),
            Value::Array(items) => items
                .iter()
                .map(|v| self.value(doc, v))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }

    fn object(&mut self, doc: &str, map: &Map<String, Value>) -> Result<Value, DictionaryError> {
        let mut out = Map::new();
        let mut fragments = Vec::new();
        for (key, v) in map {
            if key.starts_with("$ref") {
                let reference = v.as_str().ok_or_else(|| {
                    DictionaryError(format!("{doc}: `{key}` must be a string, found {v}"))
                })?;
                match self.reference(doc, reference) {
                    Ok(fragment) => fragments.push(fragment),
                    Err(_) if !self.strict => {
                        out.insert(key.clone(), v.clone());
                    }
                    Err(e) => return Err(e),
                }
            } else {
                out.insert(key.clone(), self.value(doc, v)?);
            }
        }
        for fragment in fragments {
            match fragment {
                Value::Object(f) => out.extend(f),
                // A reference to a non-object replaces the whole value when it stands alone.
                other if out.is_empty() => return Ok(other),
                other => {
                    return Err(DictionaryError(format!(
                        "{doc}: a $ref next to other keys must point at an object, found {other}"
                    )));
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn reference(&mut self, doc: &str, reference: &str) -> Result<Value, DictionaryError> {
        let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let target_doc = if file.is_empty() { doc } else { file };
        let key = format!("{target_doc}#{pointer}");
        if self.stack.contains(&key) {
            return Err(DictionaryError(format!(
                "{doc}: reference cycle through {}",
                self.stack.join(" -> ")
            )));
        }
        let source = self.sources.get(target_doc).ok_or_else(|| {
            DictionaryError(format!(
                "{doc}: $ref '{reference}' names unknown file '{target_doc}'"
            ))
        })?;
        let fragment = source.pointer(pointer).ok_or_else(|| {
            DictionaryError(format!(
                "{doc}: $ref '{reference}' points at nothing in '{target_doc}'"
            ))
        })?;
        self.stack.push(key);
        let resolved = self.value(target_doc, fragment);
        self.stack.pop();
        resolved
    }
}
