//! Decoding YAML values into the config types while collecting *every* problem, not only the
//! first one serde meets: an unknown key is recorded (with the closest valid key), removed,
//! and decoding is tried again, so one run reports all typos in a section.

use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

use super::source::{ConfigPath, Diagnostics};

/// How many problems one item may report before decoding it is given up.
const MAX_RETRIES: usize = 32;

/// Decodes `value` (found at `path`) into `T`; problems go to `diags`.
pub fn decode<T: DeserializeOwned>(
    value: &Value,
    path: &ConfigPath,
    diags: &mut Diagnostics,
) -> Option<T> {
    let mut value = value.clone();
    // Keys removed after a type error: serde then reports them missing, which is no news.
    let mut removed: Vec<ConfigPath> = Vec::new();
    for _ in 0..MAX_RETRIES {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let mut at = path.clone();
        for seg in err.path().iter() {
            at = match seg {
                serde_path_to_error::Segment::Seq { index } => at.index(*index),
                serde_path_to_error::Segment::Map { key } => at.key(key),
                serde_path_to_error::Segment::Enum { variant } => at.key(variant),
                serde_path_to_error::Segment::Unknown => at,
            };
        }
        let message = err.inner().to_string();
        if let Some((field, expected)) = parse_unknown_field(&message) {
            // serde_path_to_error's path already ends at the unknown key
            let key_path = match at.segments().last() {
                Some(super::source::Seg::Key(k)) if *k == field => at.clone(),
                _ => at.key(&field),
            };
            match closest(&field, &expected) {
                Some(best) => diags.error_hint(
                    &key_path,
                    format!("unknown key `{field}`"),
                    format!("did you mean `{best}`?"),
                ),
                None => diags.error_hint(
                    &key_path,
                    format!("unknown key `{field}`"),
                    if expected.is_empty() {
                        "this section takes no keys".to_string()
                    } else {
                        format!("valid keys here: {}", expected.join(", "))
                    },
                ),
            }
            if !remove_at(&mut value, path, &key_path) {
                return None;
            }
            continue;
        }
        if let Some(field) = parse_missing_field(&message) {
            if !removed.contains(&at.key(&field)) {
                diags.error_hint(
                    &at,
                    format!("missing required key `{field}`"),
                    format!("add `{field}:` here"),
                );
            }
            return None;
        }
        diags.error(&at, clean_type_message(&message));
        // Drop the bad value and keep going, so the rest of the section is checked too.
        if at == *path || !remove_at(&mut value, path, &at) {
            return None;
        }
        removed.push(at);
    }
    None
}

/// `unknown field `x`, expected one of `a`, `b`` -> ("x", ["a", "b"]).
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let field = rest[..end].to_string();
    let expected = rest[end..]
        .split('`')
        .enumerate()
        .filter(|(i, _)| *i > 0 && i % 2 == 0)
        .map(|(_, s)| s.to_string())
        .collect();
    Some((field, expected))
}

fn parse_missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// serde_yaml_ng appends its own (meaningless for a sub-value) position; drop it, and say
/// Rust types the way a YAML author thinks of them.
fn clean_type_message(message: &str) -> String {
    let m = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    let mut m = m.to_string();
    for (rust, yaml) in [
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping"),
    ] {
        m = m.replace(rust, yaml);
    }
    m
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: &'a [String]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

/// Removes the mapping entry at `target` (below `base`, where `value` sits).
fn remove_at(value: &mut Value, base: &ConfigPath, target: &ConfigPath) -> bool {
    use super::source::Seg;
    let rel = &target.segments()[base.segments().len()..];
    let Some((last, parents)) = rel.split_last() else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        node = match (seg, node) {
            (Seg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            (_, Value::Tagged(_)) => return false,
            _ => return false,
        };
    }
    match (last, node) {
        (Seg::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, non_snake_case)]
    struct T {
        address: Option<String>,
        shutdownTimeoutSeconds: Option<u64>,
        name: String,
    }

    #[test]
    fn reports_every_unknown_key_with_suggestion() {
        let v: Value = serde_yaml_ng::from_str("adress: x\nname: n\nfoo: 1\n").unwrap();
        let mut d = Diagnostics::default();
        let t: Option<T> = decode(&v, &ConfigPath::root().key("http"), &mut d);
        assert!(t.is_some());
        assert_eq!(d.items.len(), 2);
        assert_eq!(d.items[0].message, "unknown key `adress`");
        assert_eq!(d.items[0].hint.as_deref(), Some("did you mean `address`?"));
        assert_eq!(d.items[0].path.to_string(), "http.adress");
        assert_eq!(d.items[1].message, "unknown key `foo`");
    }

    #[test]
    fn reports_type_errors_and_missing_keys() {
        let v: Value = serde_yaml_ng::from_str("shutdownTimeoutSeconds: soon\nname: n\n").unwrap();
        let mut d = Diagnostics::default();
        // the bad key is dropped so the rest is still checked
        assert!(decode::<T>(&v, &ConfigPath::root(), &mut d).is_some());
        assert_eq!(d.items[0].path.to_string(), "shutdownTimeoutSeconds");
        assert_eq!(
            d.items[0].message,
            "invalid type: string \"soon\", expected a whole number"
        );
        assert_eq!(
            d.items.len(),
            1,
            "the removed key is not reported again as missing"
        );
        let v: Value = serde_yaml_ng::from_str("address: x\n").unwrap();
        let mut d = Diagnostics::default();
        assert!(decode::<T>(&v, &ConfigPath::root(), &mut d).is_none());
        assert_eq!(d.items[0].message, "missing required key `name`");
    }
}
