//! Reading dictionary sources (a folder of YAML files, a `schema.json` bundle,
//! or a URL to one) and deriving the node model from them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::resolve::{Sources, resolve};
use super::{
    Backref, Dictionary, DictionaryError, ItemKind, Link, Multiplicity, NodeType, PropKind,
    Property, Subgroup,
};

/// Files that are shared fragments rather than node schemas.
const SHARED_FILES: [&str; 4] = [
    "_definitions.yaml",
    "_terms.yaml",
    "_settings.yaml",
    "metaschema.yaml",
];

/// The YAML files of `dictionary/`, compiled into the binary.
#[derive(rust_embed::Embed)]
#[folder = "dictionary/"]
struct BundledDictionary;

/// The dictionary bundled with Commons, used when no `--dictionary` is given.
pub fn bundled() -> Result<Dictionary, DictionaryError> {
    let mut sources = Sources::new();
    for name in BundledDictionary::iter().filter(|n| n.ends_with(".yaml")) {
        let file = BundledDictionary::get(&name).expect("listed by iter");
        let text = std::str::from_utf8(&file.data)
            .map_err(|e| DictionaryError(format!("bundled {name}: {e}")))?;
        sources.insert(name.to_string(), parse_yaml(&name, text)?);
    }
    build(sources)
}

/// Load from a folder, a folder with a `schemas/` subfolder, a JSON bundle file,
/// or an http(s) URL to a bundle; `None` means the bundled dictionary.
pub fn load(source: Option<&str>) -> Result<Dictionary, DictionaryError> {
    match source {
        None => bundled(),
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            let text = fetch(url)?;
            let bundle: Value = serde_json::from_str(&text)
                .map_err(|e| DictionaryError(format!("{url}: not a JSON bundle: {e}")))?;
            load_bundle_value(url, bundle)
        }
        Some(path) => load_path(Path::new(path)),
    }
}

fn fetch(url: &str) -> Result<String, DictionaryError> {
    let agent = crate::outbound::agent(true);
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| DictionaryError(format!("{url}: cannot fetch dictionary: {e}")))?;
    response
        .body_mut()
        .read_to_string()
        .map_err(|e| DictionaryError(format!("{url}: cannot read dictionary: {e}")))
}

pub fn load_path(path: &Path) -> Result<Dictionary, DictionaryError> {
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DictionaryError(format!("{}: {e}", path.display())))?;
        let bundle: Value = serde_json::from_str(&text)
            .map_err(|e| DictionaryError(format!("{}: not a JSON bundle: {e}", path.display())))?;
        return load_bundle_value(&path.display().to_string(), bundle);
    }
    let dir = yaml_folder(path)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| DictionaryError(format!("{}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut sources = Sources::new();
    for file in files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let name = name.replace(".yml", ".yaml");
        let text = std::fs::read_to_string(&file)
            .map_err(|e| DictionaryError(format!("{}: {e}", file.display())))?;
        sources.insert(
            name.clone(),
            parse_yaml(&file.display().to_string(), &text)?,
        );
    }
    build(sources)
}

/// A folder holding the YAML files directly, or in its `schemas/` subfolder.
fn yaml_folder(path: &Path) -> Result<PathBuf, DictionaryError> {
    let has_yaml = |dir: &Path| {
        dir.join("_definitions.yaml").is_file()
            || std::fs::read_dir(dir).is_ok_and(|mut it| {
                it.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml")))
            })
    };
    if !path.is_dir() {
        return Err(DictionaryError(format!(
            "{}: no such dictionary folder or file",
            path.display()
        )));
    }
    if has_yaml(path) {
        return Ok(path.to_path_buf());
    }
    let schemas = path.join("schemas");
    if schemas.is_dir() && has_yaml(&schemas) {
        return Ok(schemas);
    }
    Err(DictionaryError(format!(
        "{}: no YAML node schemas here or in its schemas/ folder",
        path.display()
    )))
}

/// A `schema.json` bundle: file names (with `.yaml`) mapped to parsed documents.
pub fn load_bundle_value(origin: &str, bundle: Value) -> Result<Dictionary, DictionaryError> {
    let Value::Object(map) = bundle else {
        return Err(DictionaryError(format!(
            "{origin}: a dictionary bundle must be a JSON object of file name -> document"
        )));
    };
    build(map)
}

fn parse_yaml(origin: &str, text: &str) -> Result<Value, DictionaryError> {
    crate::yaml::from_str(text).map_err(|e| DictionaryError(format!("{origin}: invalid YAML: {e}")))
}

/// The node types Gen3's loader adds to every dictionary that defines no node
/// of the same file name or id.
const GEN3_NODES: [(&str, &str); 2] = [
    ("root.yaml", include_str!("gen3/root.yaml")),
    ("data_release.yaml", include_str!("gen3/data_release.yaml")),
];

fn build(mut sources: Sources) -> Result<Dictionary, DictionaryError> {
    // The dictionary's own node of the same file name or id replaces a
    // built-in one (which then needs none of its references).
    let own_ids: Vec<&str> = sources
        .iter()
        .filter(|(file, _)| !SHARED_FILES.contains(&file.as_str()))
        .filter_map(|(_, raw)| raw.get("id").and_then(Value::as_str))
        .collect();
    let mut builtins = Vec::new();
    for (file, text) in GEN3_NODES {
        let raw = parse_yaml(file, text)?;
        let id = raw.get("id").and_then(Value::as_str).unwrap_or_default();
        if !sources.contains_key(file) && !own_ids.contains(&id) {
            builtins.push((file, raw));
        }
    }
    let mut added = Vec::new();
    for (file, raw) in builtins {
        sources.insert(file.to_string(), raw);
        added.push(file);
    }
    // A node's resolved document is kept once, as its `schema`.
    let mut documents = Map::new();
    let mut parsed = Vec::new();
    for (file, raw) in &sources {
        let shared = SHARED_FILES.contains(&file.as_str());
        let builtin = added.contains(&file.as_str());
        let resolved = resolve(&sources, file, raw, !shared).map_err(|e| {
            if builtin {
                DictionaryError(format!(
                    "{} (a node type Gen3's loader adds to every dictionary)",
                    e.0
                ))
            } else {
                e
            }
        })?;
        let base = file.trim_end_matches(".yaml").to_string();
        if shared {
            documents.insert(base, resolved);
        } else {
            parsed.push((base, node_type(file, resolved)?, builtin));
        }
    }
    if parsed.iter().all(|(_, _, builtin)| *builtin) {
        return Err(DictionaryError(
            "the dictionary defines no node types".into(),
        ));
    }
    let mut nodes = Vec::new();
    let mut files = HashMap::new();
    for (base, node, _) in parsed {
        files.insert(base, nodes.len());
        nodes.push(node);
    }
    let mut index = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        if index.insert(node.id.clone(), i).is_some() {
            return Err(DictionaryError(format!(
                "node id '{}' is defined twice",
                node.id
            )));
        }
    }
    attach_backrefs(&mut nodes, &index)?;
    let settings = documents.get("_settings").cloned().unwrap_or(Value::Null);
    let setting = |key: &str| {
        settings
            .get(key)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_else(|| "Unknown".to_string())
    };
    Ok(Dictionary {
        version: setting("_dict_version"),
        commit: setting("_dict_commit"),
        nodes,
        index,
        files,
        documents,
    })
}

fn node_type(file: &str, document: Value) -> Result<NodeType, DictionaryError> {
    let schema = &document;
    let fail = |msg: String| DictionaryError(format!("{file}: {msg}"));
    let obj = schema
        .as_object()
        .ok_or_else(|| fail("a node schema must be a mapping".into()))?;
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("missing key 'id'".into()))?
        .to_string();
    let fail = |key: &str, msg: String| {
        DictionaryError(format!("{file}: node '{id}', key '{key}': {msg}"))
    };
    if !is_identifier(&id) {
        return Err(fail("id", "must match ^[A-Za-z_][A-Za-z0-9_]*$".into()));
    }
    if let Some(validators) = obj.get("validators")
        && !validators.is_null()
        && validators.as_array().is_some_and(|v| !v.is_empty())
    {
        return Err(fail(
            "validators",
            "named validators are not supported".into(),
        ));
    }
    let category = obj
        .get("category")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    let title = obj
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or(&id)
        .to_string();
    let string_list = |key: &str| -> Result<Vec<String>, DictionaryError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| fail(key, format!("expected a list of names, found {v}")))
                })
                .collect(),
            Some(other) => Err(fail(key, format!("expected a list, found {other}"))),
        }
    };
    let required = string_list("required")?;
    let system_properties = string_list("systemProperties")?;

    let mut links = Vec::new();
    let mut subgroups = Vec::new();
    if let Some(entries) = obj.get("links") {
        let entries = entries
            .as_array()
            .ok_or_else(|| fail("links", "expected a list".into()))?;
        for entry in entries {
            parse_link_entry(entry, &mut links, &mut subgroups)
                .map_err(|msg| fail("links", msg))?;
        }
    }

    let props = match obj.get("properties") {
        Some(Value::Object(p)) => p.clone(),
        None => Map::new(),
        Some(other) => {
            return Err(fail(
                "properties",
                format!("expected a mapping, found {other}"),
            ));
        }
    };
    for link in &links {
        if !props.contains_key(&link.name) {
            return Err(fail(
                "links",
                format!("link '{}' has no entry under properties", link.name),
            ));
        }
    }
    let mut properties = Vec::new();
    for (name, prop) in &props {
        if name == "id" || name == "type" || links.iter().any(|l| &l.name == name) {
            continue;
        }
        properties.push(Property {
            name: name.clone(),
            kind: prop_kind(prop),
            default: prop.get("default").cloned(),
        });
    }

    let mut unique_keys = Vec::new();
    if let Some(Value::Array(keys)) = obj.get("uniqueKeys") {
        for key in keys {
            let names: Vec<String> = key
                .as_array()
                .ok_or_else(|| {
                    fail(
                        "uniqueKeys",
                        format!("expected lists of names, found {key}"),
                    )
                })?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            if names.iter().any(|n| n == "id") {
                continue;
            }
            for n in &names {
                if !props.contains_key(n) {
                    return Err(fail("uniqueKeys", format!("'{n}' is not a property")));
                }
            }
            unique_keys.push(names);
        }
    }
    let natural_key = unique_keys.first().cloned().unwrap_or_default();

    Ok(NodeType {
        schema: document,
        id,
        title,
        category,
        properties,
        links,
        subgroups,
        backrefs: Vec::new(),
        required,
        system_properties,
        natural_key,
        unique_keys,
    })
}

fn parse_link_entry(
    entry: &Value,
    links: &mut Vec<Link>,
    subgroups: &mut Vec<Subgroup>,
) -> Result<Vec<String>, String> {
    if let Some(members) = entry.get("subgroup") {
        let members = members
            .as_array()
            .ok_or_else(|| format!("subgroup must be a list, found {members}"))?;
        let mut names = Vec::new();
        for member in members {
            names.extend(parse_link_entry(member, links, subgroups)?);
        }
        subgroups.push(Subgroup {
            members: names.clone(),
            required: entry
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            exclusive: entry
                .get("exclusive")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        });
        return Ok(names);
    }
    let field = |key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("link {entry} lacks '{key}'"))
    };
    let name = field("name")?;
    let multiplicity = field("multiplicity")?;
    let link = Link {
        multiplicity: Multiplicity::parse(&multiplicity)
            .ok_or_else(|| format!("link '{name}': unknown multiplicity '{multiplicity}'"))?,
        backref: field("backref")?,
        label: field("label").unwrap_or_default(),
        target_type: field("target_type")?,
        required: entry
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        name: name.clone(),
    };
    links.push(link);
    Ok(vec![name])
}

fn attach_backrefs(
    nodes: &mut [NodeType],
    index: &HashMap<String, usize>,
) -> Result<(), DictionaryError> {
    let mut received: Vec<(usize, Backref)> = Vec::new();
    for node in nodes.iter() {
        for link in &node.links {
            let target = index.get(&link.target_type).ok_or_else(|| {
                DictionaryError(format!(
                    "node '{}', link '{}': target_type '{}' is not a node in the dictionary",
                    node.id, link.name, link.target_type
                ))
            })?;
            received.push((
                *target,
                Backref {
                    name: link.backref.clone(),
                    source_type: node.id.clone(),
                    link_name: link.name.clone(),
                },
            ));
        }
    }
    for (target, backref) in received {
        let node = &mut nodes[target];
        let clash = node.property(&backref.name).is_some()
            || node.link(&backref.name).is_some()
            || node.backrefs.iter().any(|b| b.name == backref.name);
        if clash {
            return Err(DictionaryError(format!(
                "node '{}': backref '{}' from '{}' clashes with an existing property, link or backref of the same name",
                node.id, backref.name, backref.source_type
            )));
        }
        node.backrefs.push(backref);
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn first_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(s) => Some(s),
        Value::Array(items) => items.first().and_then(Value::as_str),
        _ => None,
    }
}

fn prop_kind(schema: &Value) -> PropKind {
    match first_type(schema) {
        Some("integer") => PropKind::Integer,
        Some("number") => PropKind::Number,
        Some("boolean") => PropKind::Boolean,
        Some("array") => PropKind::Array(match schema.get("items").and_then(first_type) {
            Some("integer") => ItemKind::Integer,
            Some("number") => ItemKind::Number,
            Some("boolean") => ItemKind::Boolean,
            _ => ItemKind::String,
        }),
        _ => PropKind::String,
    }
}

/// DICTIONARY.md §6: optional properties also accept `null`.
pub(super) fn validation_schema(schema: &Value, required: &[String]) -> Value {
    let mut out = schema.clone();
    if let Some(obj) = out.as_object_mut() {
        // `id` is a base-URI keyword in draft 4; the node id must not act as one.
        obj.remove("id");
        obj.remove("$schema");
        if let Some(Value::Object(props)) = obj.get_mut("properties") {
            for (name, prop) in props.iter_mut() {
                if required.iter().any(|r| r == name) {
                    continue;
                }
                allow_null(prop);
            }
        }
    }
    out
}

fn allow_null(prop: &mut Value) {
    let Some(obj) = prop.as_object_mut() else {
        return;
    };
    match obj.get_mut("type") {
        Some(Value::String(t)) if t != "null" => {
            let t = std::mem::take(t);
            obj.insert(
                "type".into(),
                Value::Array(vec![Value::String(t), "null".into()]),
            );
        }
        Some(Value::Array(types)) => {
            if !types.iter().any(|t| t == "null") {
                types.push("null".into());
            }
        }
        Some(_) => {}
        None => {
            // The first of `enum`, `anyOf`, `oneOf` that the property has
            // (dictionaryutils' order) also admits null.
            if let Some(Value::Array(values)) = obj.get_mut("enum") {
                if !values.iter().any(Value::is_null) {
                    values.push(Value::Null);
                }
            } else if let Some(Value::Array(choices)) = obj.get_mut("anyOf") {
                choices.push(json!({"type": "null"}));
            } else if let Some(Value::Array(choices)) = obj.get_mut("oneOf") {
                choices.push(json!({"type": "null"}));
            }
        }
    }
}
