//! Synthetic, valid records for any dictionary: every submittable node type,
//! parents before children, with required properties and links filled from
//! the schemas themselves (enums, numeric bounds, patterns, formats).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::dictionary::{Dictionary, NodeType};
use crate::formats::{Delimited, cell_text, delimited_line};

/// Submittable node types (those with `project_id`), parents first.
pub fn submission_order(dictionary: &Dictionary) -> Vec<&NodeType> {
    let mut placed: HashSet<&str> = HashSet::new();
    let mut order = Vec::new();
    let pending: Vec<&NodeType> = dictionary
        .nodes()
        .iter()
        .filter(|n| n.is_project_scoped())
        .collect();
    // Program and project exist before any submission.
    placed.insert("program");
    placed.insert("project");
    loop {
        let before = order.len();
        for node in &pending {
            if placed.contains(node.id.as_str()) {
                continue;
            }
            let ready = node
                .links
                .iter()
                .filter(|l| l.required || in_required_group(node, &l.name))
                .all(|l| placed.contains(l.target_type.as_str()) || l.target_type == node.id);
            if ready {
                placed.insert(&node.id);
                order.push(*node);
            }
        }
        if order.len() == before {
            break;
        }
    }
    order
}

fn in_required_group(node: &NodeType, link: &str) -> bool {
    node.subgroups
        .iter()
        .any(|g| g.required && g.members.first().is_some_and(|m| m == link))
}

/// `count` valid records of every submittable type for project `code`.
pub fn records(dictionary: &Dictionary, code: &str, count: usize) -> Vec<Value> {
    records_by_type(dictionary, code, count, 0)
        .into_iter()
        .flat_map(|(_, records)| records)
        .collect()
}

/// Valid records per submittable type, in submission order; `seed` varies
/// the values (enum choices, numbers, booleans) reproducibly.
pub fn records_by_type<'d>(
    dictionary: &'d Dictionary,
    code: &str,
    count: usize,
    seed: u64,
) -> Vec<(&'d NodeType, Vec<Value>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut made: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for node in submission_order(dictionary) {
        let records = (0..count)
            .map(|i| record(dictionary, node, code, i, &made, &mut rng))
            .collect();
        made.insert(node.id.clone(), count);
        out.push((node, records));
    }
    out
}

/// The submitter_id of the `i`-th generated record of `node_type`.
pub fn submitter_id(node_type: &str, i: usize) -> String {
    format!("{node_type}-{i:05}")
}

fn record(
    dictionary: &Dictionary,
    node: &NodeType,
    code: &str,
    i: usize,
    made: &HashMap<String, usize>,
    rng: &mut StdRng,
) -> Value {
    let mut doc = Map::new();
    doc.insert("type".into(), Value::String(node.id.clone()));
    doc.insert(
        "submitter_id".into(),
        Value::String(submitter_id(&node.id, i)),
    );
    let properties = node.schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for property in &node.properties {
        let name = &property.name;
        // Properties with defaults (state, file_state) are left to the server,
        // and so is `object_id`: the file index assigns it.
        let defaulted = property.default.is_some() && !node.is_required(name);
        if node.is_system_property(name)
            || defaulted
            || name == "object_id"
            || doc.contains_key(name)
            || name == "project_id"
        {
            continue;
        }
        let schema = &properties[name];
        if let Some(value) = example(schema, name, i, rng) {
            doc.insert(name.clone(), value);
        } else if node.is_required(name) {
            doc.insert(name.clone(), Value::String(format!("{name}-{i}")));
        }
    }
    if node.is_data_file() && doc.contains_key("file_size") {
        // The same record always describes the same file: its index record
        // refuses a node that changes a registered file's size.
        let digest = Sha256::digest(submitter_id(&node.id, i).as_bytes());
        let size = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 1_000_000;
        doc.insert("file_size".into(), json!(1 + i64::from(size)));
    }
    for link in &node.links {
        if !(link.required || in_required_group(node, &link.name)) {
            continue;
        }
        let target = if link.target_type == "project" {
            json!({"code": code})
        } else {
            let available = made.get(&link.target_type).copied().unwrap_or(0).max(1);
            let key = dictionary
                .node(&link.target_type)
                .and_then(|t| t.natural_key.iter().find(|k| *k != "project_id").cloned())
                .unwrap_or_else(|| "submitter_id".into());
            json!({key: submitter_id(&link.target_type, i % available)})
        };
        doc.insert(link.name.clone(), target);
    }
    Value::Object(doc)
}

/// A value satisfying a property schema, or None when none can be derived.
fn example(schema: &Value, name: &str, i: usize, rng: &mut StdRng) -> Option<Value> {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let options: Vec<&Value> = options.iter().filter(|v| !v.is_null()).collect();
        return (!options.is_empty()).then(|| options[rng.random_range(0..options.len())].clone());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(first) = schema
            .get(key)
            .and_then(Value::as_array)
            .and_then(|v| v.first())
        {
            return example(first, name, i, rng);
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")?,
        _ => return None,
    };
    match kind {
        "string" => string_example(schema, name, i),
        "integer" | "number" => {
            let min = schema.get("minimum").and_then(Value::as_f64).unwrap_or(0.0);
            let max = schema
                .get("maximum")
                .and_then(Value::as_f64)
                .unwrap_or(min + 100.0)
                .max(min);
            // Stay off the bounds: exclusive limits must hold too.
            let (low, high) = if max - min >= 2.0 {
                (min + 1.0, max - 1.0)
            } else {
                (min, max)
            };
            let v = if high > low {
                rng.random_range(low..=high)
            } else {
                low
            };
            if kind == "integer" {
                Some(json!(v.round() as i64))
            } else {
                Some(json!((v * 100.0).round() / 100.0))
            }
        }
        "boolean" => Some(Value::Bool(rng.random_bool(0.5))),
        "array" => {
            let item = schema
                .get("items")
                .and_then(|items| example(items, name, i, rng))?;
            Some(Value::Array(vec![item]))
        }
        _ => None,
    }
}

fn string_example(schema: &Value, name: &str, i: usize) -> Option<Value> {
    if schema.get("format").and_then(Value::as_str) == Some("date-time") {
        return Some(Value::String("2024-01-02T03:04:05+00:00".into()));
    }
    let Some(pattern) = schema.get("pattern").and_then(Value::as_str) else {
        return Some(Value::String(format!("{name}-{i}")));
    };
    let regex = regex::Regex::new(pattern).ok()?;
    let candidates = [
        format!("{name}-{i}"),
        format!("{:032x}", i + 1),
        uuid::Uuid::from_u128(i as u128 + 1).to_string(),
        "2024-01-02".to_string(),
        "C00.0".to_string(),
        "10.1000/example".to_string(),
        "ABC123".to_string(),
        "abc".to_string(),
        "1".to_string(),
    ];
    candidates
        .into_iter()
        .find(|c| regex.is_match(c))
        .map(Value::String)
}

/// Output format of [`write_files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Tsv,
    Json,
}

/// What `commons simulate` wrote.
#[derive(Debug)]
pub struct Written {
    /// Files in submission order (also listed in `submission_order.txt`).
    pub files: Vec<PathBuf>,
    pub records: usize,
}

/// Write `count` records per submittable type into `out`, one file per type
/// in submission order, with `submission_order.txt` listing them. With
/// `invalid`, each file also gets one bad record, described in `invalid.tsv`.
pub fn write_files(
    dictionary: &Dictionary,
    project_id: &str,
    count: usize,
    seed: u64,
    format: FileFormat,
    invalid: bool,
    out: &Path,
) -> std::io::Result<Written> {
    std::fs::create_dir_all(out)?;
    let code = project_id.split_once('-').map_or(project_id, |(_, c)| c);
    let mut files = Vec::new();
    let mut problems = vec![delimited_line(
        &["file".into(), "submitter_id".into(), "problem".into()],
        Delimited::Tsv,
    )];
    let mut total = 0;
    for (n, (node, mut records)) in records_by_type(dictionary, code, count, seed)
        .into_iter()
        .enumerate()
    {
        for record in &mut records {
            record["project_id"] = json!(project_id);
        }
        let name = format!(
            "{:02}_{}.{}",
            n + 1,
            node.id,
            if format == FileFormat::Tsv {
                "tsv"
            } else {
                "json"
            }
        );
        if invalid && let Some((record, problem)) = invalid_record(node, &records) {
            problems.push(delimited_line(
                &[
                    name.clone(),
                    record["submitter_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    problem,
                ],
                Delimited::Tsv,
            ));
            records.push(record);
        }
        total += records.len();
        let path = out.join(&name);
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        match format {
            FileFormat::Json => serde_json::to_writer_pretty(&mut file, &records)?,
            FileFormat::Tsv => write_tsv(&mut file, node, &records)?,
        }
        file.flush()?;
        files.push(path);
    }
    let order: String = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| format!("{}\n", n.to_string_lossy())))
        .collect();
    std::fs::write(out.join("submission_order.txt"), order)?;
    if invalid {
        std::fs::write(out.join("invalid.tsv"), problems.concat())?;
    }
    Ok(Written {
        files,
        records: total,
    })
}

/// One record that the server must refuse, and why.
fn invalid_record(node: &NodeType, records: &[Value]) -> Option<(Value, String)> {
    let mut bad = records.first()?.clone();
    bad["submitter_id"] = json!(format!("{}-invalid", node.id));
    let enum_property = node.properties.iter().find(|p| {
        !node.is_system_property(&p.name)
            && node.schema["properties"][&p.name].get("enum").is_some()
    });
    if let Some(property) = enum_property {
        bad[&property.name] = json!("not-a-permitted-value");
        return Some((
            bad,
            format!("'{}' is not one of its enum values", property.name),
        ));
    }
    if let Some(link) = node
        .links
        .iter()
        .find(|l| l.required && l.target_type != "project")
    {
        bad[&link.name] = json!({"submitter_id": "no-such-parent"});
        return Some((
            bad,
            format!("'{}' links to a record that does not exist", link.name),
        ));
    }
    bad.as_object_mut()?.remove("submitter_id");
    Some((
        bad,
        "submitter_id is missing (the last record of the file)".into(),
    ))
}

/// Records as TSV: `type`, properties, then one `<link>.<key>` column per link.
fn write_tsv(out: &mut impl Write, node: &NodeType, records: &[Value]) -> std::io::Result<()> {
    let mut columns: Vec<String> = vec!["type".into()];
    for record in records {
        for key in record.as_object().into_iter().flat_map(|o| o.keys()) {
            if !columns.contains(key) && node.link(key).is_none() {
                columns.push(key.clone());
            }
        }
    }
    let mut links: Vec<(String, String)> = Vec::new();
    for record in records {
        for link in &node.links {
            if let Some(target) = record.get(&link.name).and_then(Value::as_object)
                && let Some(key) = target.keys().next()
                && !links.iter().any(|(l, _)| l == &link.name)
            {
                links.push((link.name.clone(), key.clone()));
            }
        }
    }
    let mut header = columns.clone();
    header.extend(links.iter().map(|(l, k)| format!("{l}.{k}")));
    out.write_all(&delimited_line(&header, Delimited::Tsv))?;
    for record in records {
        let mut cells: Vec<String> = columns.iter().map(|c| cell_text(record.get(c))).collect();
        cells.extend(
            links
                .iter()
                .map(|(l, k)| cell_text(record.get(l).and_then(|t| t.get(k)))),
        );
        out.write_all(&delimited_line(&cells, Delimited::Tsv))?;
    }
    Ok(())
}
