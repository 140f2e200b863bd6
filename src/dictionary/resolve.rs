//! `$ref` resolution as Gen3's dictionaryutils does it (DICTIONARY.md §5): the
//! referenced fragment is merged into the object holding the `$ref`, its keys
//! replacing siblings of the same name, and `#/...` refers to the document that
//! contains the reference text. Fragments are read as jsonschema's resolver reads
//! them (leading slashes optional, percent-decoded, `~0`/`~1` escapes, list
//! indices), and a `$ref` may be a list of references merged in order, as the
//! GDC's own loader allows.

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
        path: Vec::new(),
    }
    .value(doc, value)
}

struct Resolver<'a> {
    sources: &'a Sources,
    strict: bool,
    /// References being expanded, to report cycles instead of overflowing the stack.
    stack: Vec<String>,
    /// Where in the current document the walk is, for error messages.
    path: Vec<String>,
}

impl Resolver<'_> {
    fn value(&mut self, doc: &str, value: &Value) -> Result<Value, DictionaryError> {
        match value {
            Value::Object(map) => self.object(doc, map),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    self.path.push(i.to_string());
                    let resolved = self.value(doc, item);
                    self.path.pop();
                    out.push(resolved?);
                }
                Ok(Value::Array(out))
            }
            other => Ok(other.clone()),
        }
    }

    /// `file: key/path` of the value being resolved.
    fn place(&self, doc: &str) -> String {
        if self.path.is_empty() {
            doc.to_string()
        } else {
            format!("{doc}: {}", self.path.join("/"))
        }
    }

    fn error(&self, doc: &str, message: String) -> DictionaryError {
        DictionaryError(format!("{}: {message}", self.place(doc)))
    }

    fn object(&mut self, doc: &str, map: &Map<String, Value>) -> Result<Value, DictionaryError> {
        let mut out = Map::new();
        let mut fragments = Vec::new();
        for (key, v) in map {
            self.path.push(key.clone());
            let resolved = if key.starts_with("$ref") {
                self.references(doc, key, v).map(|found| match found {
                    Some(resolved) => fragments.extend(resolved),
                    None => {
                        out.insert(key.clone(), v.clone());
                    }
                })
            } else {
                self.value(doc, v).map(|resolved| {
                    out.insert(key.clone(), resolved);
                })
            };
            self.path.pop();
            resolved?;
        }
        for fragment in fragments {
            match fragment {
                Value::Object(f) => out.extend(f),
                // A reference to a non-object replaces the whole value when it stands alone.
                other if out.is_empty() => return Ok(other),
                other => {
                    return Err(self.error(
                        doc,
                        format!("a $ref next to other keys must point at an object, found {other}"),
                    ));
                }
            }
        }
        Ok(Value::Object(out))
    }

    /// The resolved targets of a `$ref*` key, in order; None where a lenient
    /// walk leaves a reference that does not resolve as written.
    fn references(
        &mut self,
        doc: &str,
        key: &str,
        value: &Value,
    ) -> Result<Option<Vec<Value>>, DictionaryError> {
        let references: Vec<&str> = match value {
            Value::String(reference) => vec![reference.as_str()],
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str().ok_or_else(|| {
                        self.error(
                            doc,
                            format!("`{key}` must list references as strings, found {item}"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(self.error(
                    doc,
                    format!("`{key}` must be a reference or a list of them, found {other}"),
                ));
            }
        };
        let resolved: Result<Vec<Value>, _> = references
            .into_iter()
            .map(|reference| self.reference(doc, reference))
            .collect();
        match resolved {
            Ok(resolved) => Ok(Some(resolved)),
            Err(_) if !self.strict => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn reference(&mut self, doc: &str, reference: &str) -> Result<Value, DictionaryError> {
        let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let target_doc = if file.is_empty() { doc } else { file };
        let key = format!("{target_doc}#{pointer}");
        if self.stack.contains(&key) {
            return Err(self.error(
                doc,
                format!("reference cycle through {}", self.stack.join(" -> ")),
            ));
        }
        let source = self.sources.get(target_doc).ok_or_else(|| {
            self.error(
                doc,
                format!("$ref '{reference}' names unknown file '{target_doc}'"),
            )
        })?;
        let fragment = fragment(source, pointer).ok_or_else(|| {
            self.error(
                doc,
                format!("$ref '{reference}' points at nothing in '{target_doc}'"),
            )
        })?;
        // Inside the target, places are named from the referenced fragment.
        let outer = std::mem::replace(
            &mut self.path,
            pointer
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        );
        self.stack.push(key);
        let resolved = self.value(target_doc, fragment);
        self.stack.pop();
        self.path = outer;
        resolved
    }
}

/// The part of `document` a reference's fragment names. As jsonschema reads
/// fragments, `#shipment_origin` means `#/shipment_origin`, the fragment is
/// percent-decoded, `~1` and `~0` stand for `/` and `~`, and lists take indices.
fn fragment<'a>(document: &'a Value, pointer: &str) -> Option<&'a Value> {
    let path = pointer.trim_matches('/');
    if path.is_empty() {
        return Some(document);
    }
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    path.split('/').try_fold(document, |value, part| {
        let part = part.replace("~1", "/").replace("~0", "~");
        match value {
            Value::Object(map) => map.get(&part),
            Value::Array(items) => items.get(part.parse::<usize>().ok()?),
            _ => None,
        }
    })
}
