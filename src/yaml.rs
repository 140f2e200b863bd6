//! YAML as Gen3 reads it: PyYAML's safe loader, which follows YAML 1.1.
//!
//! Gen3 reads dictionaries and fence's `user.yaml` with PyYAML, where `Y` and `N`
//! are strings while `yes`, `on` and `off` are booleans, `0777` is octal, `1:30`
//! is 90 and `1e5` is a string. A YAML 1.2 reader gives other values for the same
//! text, so this module builds JSON values from saphyr-parser's events and types
//! plain scalars by the YAML 1.1 rules PyYAML's resolver applies.
//!
//! JSON lacks three of YAML 1.1's values. Dates and timestamps become the text a
//! Flask service (sheepdog) answers for them (`Fri, 14 Dec 2001 00:00:00 GMT`);
//! `.inf` becomes the largest finite number, which bounds nothing either; `.nan`
//! becomes null.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, StrInput, Tag};
use serde_json::{Map, Number, Value};

/// Where and why a YAML text could not be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The one document of `text` as PyYAML's `safe_load` reads it (null when empty).
pub fn from_str(text: &str) -> Result<Value, YamlError> {
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        depth: 0,
        values: 0,
    };
    let mut document = None;
    loop {
        let (event, span) = reader.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Ok(document.unwrap_or(Value::Null)),
            Event::DocumentStart(_) => {
                if document.is_some() {
                    return Err(error(span, "expected a single document in the stream"));
                }
                let (event, span) = reader.next()?;
                document = Some(match event {
                    // An empty document (`---` alone) is null.
                    Event::DocumentEnd | Event::StreamEnd => Value::Null,
                    event => reader.node(event, span)?,
                });
            }
            _ => return Err(error(span, "unexpected event outside a document")),
        }
    }
}

const CORE: &str = "tag:yaml.org,2002:";

struct Reader<'a> {
    parser: Parser<'a, StrInput<'a>>,
    anchors: HashMap<usize, Value>,
    /// Collections open around the current node.
    depth: usize,
    /// Values built so far, aliases counted in full (a "billion laughs"
    /// document of nested aliases stops at [`MAX_VALUES`]).
    values: usize,
}

/// Deepest nesting of collections read.
const MAX_DEPTH: usize = 256;
/// Most values one document may expand to.
const MAX_VALUES: usize = 10_000_000;

/// How many values `value` holds, itself included.
fn value_count(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(value_count).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(value_count).sum::<usize>(),
        _ => 1,
    }
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), YamlError> {
        match self.parser.next_event() {
            Some(Ok(pair)) => Ok(pair),
            Some(Err(e)) => Err(YamlError {
                line: e.marker().line(),
                column: e.marker().col() + 1,
                message: e.info().to_string(),
            }),
            None => Ok((Event::StreamEnd, Span::default())),
        }
    }

    fn node(&mut self, event: Event<'a>, span: Span) -> Result<Value, YamlError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(error(span, "the document expands to too many values"));
        }
        let collection = matches!(event, Event::SequenceStart(..) | Event::MappingStart(..));
        if collection {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(error(span, "collections nested too deeply"));
            }
        }
        let built = self.build(event, span);
        if collection {
            self.depth -= 1;
        }
        built
    }

    fn build(&mut self, event: Event<'a>, span: Span) -> Result<Value, YamlError> {
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                (scalar(&text, style, tag.as_deref(), span)?, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                collection_tag(tag.as_deref(), "seq", span)?;
                let mut items = Vec::new();
                loop {
                    let (event, span) = self.next()?;
                    if matches!(event, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(event, span)?);
                }
                (Value::Array(items), anchor)
            }
            Event::MappingStart(anchor, tag) => {
                let set = collection_tag(tag.as_deref(), "map", span)?;
                (self.mapping(set)?, anchor)
            }
            Event::Alias(id) => {
                let value = self
                    .anchors
                    .get(&id)
                    .ok_or_else(|| error(span, "found undefined alias"))?;
                self.values += value_count(value);
                if self.values > MAX_VALUES {
                    return Err(error(span, "the document expands to too many values"));
                }
                return Ok(value.clone());
            }
            _ => return Err(error(span, "expected a node")),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        Ok(value)
    }

    /// A mapping with PyYAML's merge keys: `<<: *a` or `<<: [*a, *b]` supply
    /// entries that the mapping's own keys override, earlier merges before later.
    fn mapping(&mut self, set: bool) -> Result<Value, YamlError> {
        let mut merged: Vec<(String, Value)> = Vec::new();
        let mut own: Vec<(String, Value)> = Vec::new();
        loop {
            let (event, span) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                break;
            }
            let plain_key = match &event {
                Event::Scalar(text, ScalarStyle::Plain, _, None) => Some(text.to_string()),
                _ => None,
            };
            let is_merge = plain_key.as_deref() == Some("<<");
            let key = match plain_key.as_deref() {
                // PyYAML reads these two as strings only in a key's place.
                Some("<<" | "=") => Value::String(plain_key.unwrap_or_default()),
                _ => self.node(event, span)?,
            };
            let (event, value_span) = self.next()?;
            let value = self.node(event, value_span)?;
            if is_merge {
                merged.extend(merge_entries(value, value_span)?);
                continue;
            }
            let value = if set { Value::Null } else { value };
            own.push((key_text(key, span)?, value));
        }
        let mut out = Map::new();
        for (key, value) in merged.into_iter().chain(own) {
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// The entries a merge key's value supplies, in the order they apply (later wins).
fn merge_entries(value: Value, span: Span) -> Result<Vec<(String, Value)>, YamlError> {
    let not_mapping = || error(span, "expected a mapping or list of mappings for merging");
    match value {
        Value::Object(map) => Ok(map.into_iter().collect()),
        Value::Array(items) => {
            let mut entries = Vec::new();
            // The first mapping of the list wins, so it applies last.
            for item in items.into_iter().rev() {
                let Value::Object(map) = item else {
                    return Err(not_mapping());
                };
                entries.extend(map);
            }
            Ok(entries)
        }
        _ => Err(not_mapping()),
    }
}

/// A mapping key as JSON text writes it (`1` -> "1", `true` -> "true").
fn key_text(key: Value, span: Span) -> Result<String, YamlError> {
    match key {
        Value::String(s) => Ok(s),
        Value::Null => Ok("null".into()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Array(_) | Value::Object(_) => Err(error(span, "found unhashable key")),
    }
}

/// Checks a collection's explicit tag; true for `!!set` (a mapping of nulls).
fn collection_tag(tag: Option<&Tag>, kind: &str, span: Span) -> Result<bool, YamlError> {
    let Some(tag) = tag else { return Ok(false) };
    let name = tag_name(tag);
    if tag_name(tag) == "!" || name == format!("{CORE}{kind}") {
        return Ok(false);
    }
    if kind == "map" && name == format!("{CORE}set") {
        return Ok(true);
    }
    Err(unknown_tag(&name, span))
}

fn tag_name(tag: &Tag) -> String {
    format!("{}{}", tag.handle, tag.suffix)
}

fn unknown_tag(name: &str, span: Span) -> YamlError {
    error(
        span,
        &format!("could not determine a constructor for the tag '{name}'"),
    )
}

fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    span: Span,
) -> Result<Value, YamlError> {
    // PyYAML types a scalar tagged with the bare `!` as if it had no tag.
    let tag = tag.filter(|tag| tag_name(tag) != "!");
    let kind = match tag {
        None if style == ScalarStyle::Plain => resolve(text),
        None => Kind::Str,
        Some(tag) => {
            let name = tag_name(tag);
            match name.strip_prefix(CORE) {
                Some("str") => Kind::Str,
                Some("int") => Kind::Int,
                Some("float") => Kind::Float,
                Some("bool") => Kind::Bool,
                Some("null") => Kind::Null,
                Some("timestamp") => Kind::Timestamp,
                _ => return Err(unknown_tag(&name, span)),
            }
        }
    };
    if let Kind::Implicit(tag) = kind {
        return Err(unknown_tag(&format!("{CORE}{tag}"), span));
    }
    let invalid = |what: &str| error(span, &format!("invalid {what} value {text:?}"));
    Ok(match kind {
        Kind::Str => Value::String(text.to_string()),
        Kind::Null => Value::Null,
        Kind::Bool => Value::Bool(match text.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" => true,
            "no" | "false" | "off" => false,
            _ => return Err(invalid("boolean")),
        }),
        Kind::Int => integer(text).ok_or_else(|| invalid("integer"))?,
        Kind::Float => float(text).ok_or_else(|| invalid("float"))?,
        Kind::Timestamp => timestamp(text).ok_or_else(|| invalid("timestamp"))?,
        Kind::Implicit(_) => unreachable!("refused above"),
    })
}

enum Kind {
    Str,
    Null,
    Bool,
    Int,
    Float,
    Timestamp,
    /// `<<` and `=` outside a key: typed, but with no value the safe loader builds.
    Implicit(&'static str),
}

static BOOL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$")
        .expect("valid regex")
});
static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?",
        r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
        r"|[-+]?\.(?:inf|Inf|INF)",
        r"|\.(?:nan|NaN|NAN))$",
    ))
    .expect("valid regex")
});
static INT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:[-+]?0b[0-1_]+",
        r"|[-+]?0[0-7_]+",
        r"|[-+]?(?:0|[1-9][0-9_]*)",
        r"|[-+]?0x[0-9a-fA-F_]+",
        r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
    ))
    .expect("valid regex")
});
static NULL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:~|null|Null|NULL|)$").expect("valid regex"));
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?P<year>[0-9]{4})-(?P<month>[0-9][0-9]?)-(?P<day>[0-9][0-9]?)",
        r"(?:(?:[Tt]|[ \t]+)(?P<hour>[0-9][0-9]?):(?P<minute>[0-9][0-9]):(?P<second>[0-9][0-9])",
        r"(?:\.(?P<fraction>[0-9]*))?",
        r"(?:[ \t]*(?P<tz>Z|(?P<sign>[-+])(?P<tzhour>[0-9][0-9]?)(?::(?P<tzminute>[0-9][0-9]))?))?)?$",
    ))
    .expect("valid regex")
});
/// The implicit timestamp: a date alone takes exactly 4-2-2 digits.
static IMPLICIT_TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}",
        r"|[0-9]{4}-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?",
        r"(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9]{2})?))?)$",
    ))
    .expect("valid regex")
});

/// The type of an untagged plain scalar, tried in the resolver's order.
fn resolve(text: &str) -> Kind {
    if BOOL.is_match(text) {
        Kind::Bool
    } else if FLOAT.is_match(text) {
        Kind::Float
    } else if INT.is_match(text) {
        Kind::Int
    } else if NULL.is_match(text) {
        Kind::Null
    } else if IMPLICIT_TIMESTAMP.is_match(text) {
        Kind::Timestamp
    } else if text == "<<" {
        Kind::Implicit("merge")
    } else if text == "=" {
        Kind::Implicit("value")
    } else {
        Kind::Str
    }
}

/// Splits off the sign and drops `_`, as PyYAML's number constructors do.
fn sign_and_digits(text: &str) -> (bool, String) {
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    match digits.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, digits.trim_start_matches('+').to_string()),
    }
}

fn integer(text: &str) -> Option<Value> {
    let (negative, digits) = sign_and_digits(text);
    let magnitude: i128 = if digits == "0" {
        0
    } else if let Some(bits) = digits.strip_prefix("0b") {
        i128::from_str_radix(bits, 2).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if digits.starts_with('0') {
        i128::from_str_radix(&digits, 8).ok()?
    } else if digits.contains(':') {
        match sexagesimal_integer(&digits) {
            Some(value) => value,
            // Past i128, as a number JSON can hold.
            None => {
                let value = sexagesimal(&digits)?;
                return Some(finite(if negative { -value } else { value }));
            }
        }
    } else {
        digits.parse().ok()?
    };
    let value = if negative { -magnitude } else { magnitude };
    Some(match (i64::try_from(value), u64::try_from(value)) {
        (Ok(v), _) => Value::from(v),
        (_, Ok(v)) => Value::from(v),
        _ => finite(value as f64),
    })
}

fn float(text: &str) -> Option<Value> {
    let (negative, digits) = sign_and_digits(&text.to_ascii_lowercase());
    let magnitude = match digits.as_str() {
        ".inf" => f64::INFINITY,
        ".nan" => return Some(Value::Null),
        _ if digits.contains(':') => sexagesimal(&digits)?,
        _ => parse_float(&digits)?,
    };
    Some(finite(if negative { -magnitude } else { magnitude }))
}

/// Python's `float()` also takes `1.` and `1.e+5`.
fn parse_float(text: &str) -> Option<f64> {
    text.replace(".e", ".0e").parse().ok()
}

/// `a:b:c` in base 60, summed from the least significant part up as PyYAML
/// does (the order matters for floats).
fn sexagesimal(digits: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut base = 1.0;
    for part in digits.rsplit(':') {
        total += parse_float(part)? * base;
        base *= 60.0;
    }
    Some(total)
}

/// [`sexagesimal`] in integers; None past i128's range.
fn sexagesimal_integer(digits: &str) -> Option<i128> {
    let mut total: i128 = 0;
    let mut base: i128 = 1;
    for part in digits.rsplit(':') {
        total = total.checked_add(part.parse::<i128>().ok()?.checked_mul(base)?)?;
        base = base.checked_mul(60)?;
    }
    Some(total)
}

fn finite(value: f64) -> Value {
    Value::Number(Number::from_f64(value.clamp(f64::MIN, f64::MAX)).expect("finite"))
}

/// A date or timestamp as Flask's JSON encoder writes it (RFC 1123, in UTC).
fn timestamp(text: &str) -> Option<Value> {
    let parts = TIMESTAMP.captures(text)?;
    let number = |name: &str| {
        parts
            .name(name)
            .map_or(Some(0), |m| m.as_str().parse::<u32>().ok())
    };
    let date = NaiveDate::from_ymd_opt(
        parts["year"].parse().ok()?,
        number("month")?,
        number("day")?,
    )?;
    let mut fraction = parts
        .name("fraction")
        .map_or("", |m| m.as_str())
        .to_string();
    fraction.truncate(6);
    let micros = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").parse().ok()?
    };
    let time = NaiveTime::from_hms_micro_opt(
        number("hour")?,
        number("minute")?,
        number("second")?,
        micros,
    )?;
    let local = NaiveDateTime::new(date, time);
    let offset_seconds = match parts.name("sign") {
        Some(sign) => {
            let seconds = (number("tzhour")? * 60 + number("tzminute")?) as i32 * 60;
            if sign.as_str() == "-" {
                -seconds
            } else {
                seconds
            }
        }
        None => 0,
    };
    let at = FixedOffset::east_opt(offset_seconds)?
        .from_local_datetime(&local)
        .single()?
        .with_timezone(&Utc);
    Some(Value::String(
        at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
    ))
}

fn error(span: Span, message: &str) -> YamlError {
    YamlError {
        line: span.start.line(),
        column: span.start.col() + 1,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(text: &str) -> Value {
        from_str(text).unwrap()
    }

    #[test]
    fn plain_scalars_follow_yaml_1_1() {
        let doc = load(concat!(
            "[Y, N, y, n, yes, No, ON, off, True, 1e5, 1.0e+5, 1., .5, 0777, 08, 0x1F, 0b101,\n",
            " 1_000, 1:30, 190:20:30.15, -0, .inf, -.Inf, .nan, ~, null, NULL, '', \"yes\",\n",
            " 2001-12-14, 2001-12-14t21:59:43.10-05:00, 2001-1-2, '=', Null]"
        ));
        assert_eq!(
            doc,
            json!([
                "Y",
                "N",
                "y",
                "n",
                true,
                false,
                true,
                false,
                true,
                "1e5",
                100000.0,
                1.0,
                0.5,
                511,
                "08",
                31,
                5,
                1000,
                90,
                685230.15,
                0,
                f64::MAX,
                f64::MIN,
                null,
                null,
                null,
                null,
                "",
                "yes",
                "Fri, 14 Dec 2001 00:00:00 GMT",
                "Sat, 15 Dec 2001 02:59:43 GMT",
                "2001-1-2",
                "=",
                null
            ])
        );
    }

    #[test]
    fn explicit_tags_override_resolution() {
        let doc = load("a: !!str yes\nb: !!int '0x10'\nc: !!float '1'\nd: !!set {x, y}\ne: ! 12");
        assert_eq!(
            doc,
            json!({"a": "yes", "b": 16, "c": 1.0, "d": {"x": null, "y": null}, "e": 12})
        );
        for refused in ["a: !!python/object foo", "a: =", "a: <<", "a: [1, <<]"] {
            let e = from_str(refused).unwrap_err();
            assert!(
                e.message.contains("could not determine a constructor"),
                "{refused}: {e}"
            );
        }
        assert_eq!(load("{=: 1, '<<': 2}"), json!({"=": 1, "<<": 2}));
    }

    #[test]
    fn anchors_and_merge_keys_apply_in_pyyaml_order() {
        let doc = load(concat!(
            "base: &b {x: 1, y: 1}\nother: &o {y: 2, z: 2}\n",
            "one: {<<: *b, x: 0}\nlist: {<<: [*b, *o]}\nkeys: {1: a, true: b, ~: c}\n"
        ));
        assert_eq!(doc["one"], json!({"x": 0, "y": 1}));
        assert_eq!(doc["list"], json!({"y": 1, "z": 2, "x": 1}));
        assert_eq!(doc["keys"], json!({"1": "a", "true": "b", "null": "c"}));
    }

    #[test]
    fn nesting_alias_bombs_and_huge_numbers_are_bounded() {
        let deep = format!("{}1", "- ".repeat(300));
        let refused = from_str(&deep).unwrap_err();
        assert!(refused.message.contains("nested too deeply"), "{refused}");
        // Flow collections: the parser's own limit may come first.
        assert!(from_str(&format!("{}1{}", "[".repeat(3000), "]".repeat(3000))).is_err());
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..12 {
            let prev = (b'a' + level - 1) as char;
            let name = (b'a' + level) as char;
            bomb.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(
            from_str(&bomb)
                .unwrap_err()
                .message
                .contains("too many values")
        );
        let long = vec!["59"; 40].join(":");
        assert!(load(&long).as_f64().is_some_and(|v| v > 1e60), "{long}");
    }

    #[test]
    fn errors_name_the_place() {
        let e = from_str("a: [1, 2\nb: 3").unwrap_err();
        assert!(e.line >= 1, "{e}");
        assert!(
            from_str("a: 1\n---\nb: 2")
                .unwrap_err()
                .message
                .contains("single document")
        );
        assert!(from_str("a: *missing").is_err());
        assert_eq!(load(""), Value::Null);
        assert!(
            from_str("a: !!int 12x")
                .unwrap_err()
                .message
                .contains("invalid integer")
        );
    }
}
