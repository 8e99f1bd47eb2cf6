//! Authorization rules over session attributes: `and` / `or` / `not` trees of conditions
//! (`equals`, `contains`, `in`, `matches`). Parsed by hand from YAML so every mistake is
//! reported at its own position.
//!
//! Semantics (documented in the README):
//! - a missing attribute satisfies no condition (so `not` of it is true);
//! - `equals`: a single-valued attribute equals the text (a list never equals);
//! - `contains`: a list has the element, or a string has the substring;
//! - `in`: the attribute, or any element of a list attribute, is one of the values;
//! - `matches`: the attribute, or any element, *fully* matches the regex.

use regex::Regex;
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

use crate::claims::{render_value, AttrRef, Attributes};
use crate::config::source::{ConfigPath, Diagnostics};

#[derive(Debug, Clone)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Equals(AttrRef, String),
    Contains(AttrRef, String),
    In(AttrRef, Vec<String>),
    Matches(AttrRef, Regex),
}

impl Rule {
    pub fn evaluate(&self, attrs: &Attributes) -> bool {
        match self {
            Rule::And(rules) => rules.iter().all(|r| r.evaluate(attrs)),
            Rule::Or(rules) => rules.iter().any(|r| r.evaluate(attrs)),
            Rule::Not(rule) => !rule.evaluate(attrs),
            Rule::Equals(a, want) => match a.get(attrs) {
                Some(Value::Array(_)) | None => false,
                Some(v) => render_value(v).is_some_and(|s| s == *want),
            },
            Rule::Contains(a, want) => match a.get(attrs) {
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|i| render_value(i).is_some_and(|s| s == *want)),
                Some(Value::String(s)) => s.contains(want.as_str()),
                _ => false,
            },
            Rule::In(a, set) => any_scalar(a.get(attrs), |s| set.iter().any(|w| w == s)),
            Rule::Matches(a, re) => any_scalar(a.get(attrs), |s| re.is_match(s)),
        }
    }

    /// The attribute references the rule reads (for start-up checks).
    pub fn refs(&self) -> Vec<&AttrRef> {
        match self {
            Rule::And(rs) | Rule::Or(rs) => rs.iter().flat_map(|r| r.refs()).collect(),
            Rule::Not(r) => r.refs(),
            Rule::Equals(a, _) | Rule::Contains(a, _) | Rule::In(a, _) | Rule::Matches(a, _) => {
                vec![a]
            }
        }
    }
}

/// The attribute's value, or any element of a list, satisfies `pred`.
fn any_scalar(v: Option<&Value>, pred: impl Fn(&str) -> bool) -> bool {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .any(|i| render_value(i).is_some_and(|s| pred(&s))),
        Some(Value::Object(_)) | Some(Value::Null) | None => false,
        Some(v) => render_value(v).is_some_and(|s| pred(&s)),
    }
}

const OPERATORS: [&str; 4] = ["equals", "contains", "in", "matches"];

/// Parses a rule tree; problems go to `diags` and yield `None`.
pub fn parse_rule(v: &Yaml, path: &ConfigPath, diags: &mut Diagnostics) -> Option<Rule> {
    let Yaml::Mapping(m) = v else {
        diags.error_hint(
            path,
            "a rule must be a mapping",
            "write `{ attribute: okta.groups, contains: admins }` or `and:` / `or:` / `not:`",
        );
        return None;
    };
    let keys: Vec<String> = m
        .keys()
        .map(|k| k.as_str().unwrap_or("?").to_string())
        .collect();
    for combinator in ["and", "or"] {
        if let Some(list) = m.get(combinator) {
            if keys.len() != 1 {
                diags.error(
                    path,
                    format!("`{combinator}` must be the only key of its rule"),
                );
                return None;
            }
            let p = path.key(combinator);
            let Yaml::Sequence(items) = list else {
                diags.error(&p, format!("`{combinator}` takes a list of rules"));
                return None;
            };
            if items.is_empty() {
                diags.error(&p, format!("`{combinator}` needs at least one rule"));
                return None;
            }
            let parsed: Vec<Option<Rule>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_rule(item, &p.index(i), diags))
                .collect();
            let rules: Option<Vec<Rule>> = parsed.into_iter().collect();
            return rules.map(|rs| {
                if combinator == "and" {
                    Rule::And(rs)
                } else {
                    Rule::Or(rs)
                }
            });
        }
    }
    if let Some(inner) = m.get("not") {
        if keys.len() != 1 {
            diags.error(path, "`not` must be the only key of its rule");
            return None;
        }
        return parse_rule(inner, &path.key("not"), diags).map(|r| Rule::Not(Box::new(r)));
    }
    parse_condition(m, &keys, path, diags)
}

fn parse_condition(
    m: &serde_yaml_ng::Mapping,
    keys: &[String],
    path: &ConfigPath,
    diags: &mut Diagnostics,
) -> Option<Rule> {
    let mut ok = true;
    for k in keys {
        if k != "attribute" && !OPERATORS.contains(&k.as_str()) {
            let all: Vec<String> = ["attribute", "and", "or", "not"]
                .iter()
                .chain(OPERATORS.iter())
                .map(|s| s.to_string())
                .collect();
            let hint = match crate::config::decode::closest(k, &all) {
                Some(b) => format!("did you mean `{b}`?"),
                None => format!("valid keys here: {}", all.join(", ")),
            };
            diags.error_hint(&path.key(k), format!("unknown key `{k}` in rule"), hint);
            ok = false;
        }
    }
    let attr = match m.get("attribute") {
        Some(Yaml::String(s)) => match AttrRef::parse(s) {
            Ok(a) => Some(a),
            Err(e) => {
                diags.error(&path.key("attribute"), e);
                None
            }
        },
        Some(_) => {
            diags.error(
                &path.key("attribute"),
                "`attribute` must be a string like `okta.email`",
            );
            None
        }
        None => {
            diags.error_hint(
                path,
                "a condition needs `attribute`",
                "write `{ attribute: okta.groups, contains: admins }`",
            );
            None
        }
    };
    let ops: Vec<&str> = OPERATORS
        .iter()
        .copied()
        .filter(|o| m.contains_key(*o))
        .collect();
    if ops.len() != 1 {
        diags.error_hint(
            path,
            if ops.is_empty() {
                "a condition needs one operator".to_string()
            } else {
                format!(
                    "a condition takes one operator, found {}",
                    ops.join(" and ")
                )
            },
            "use exactly one of equals, contains, in, matches",
        );
        return None;
    }
    let op = ops[0];
    let p = path.key(op);
    let value = &m[op];
    let rule = match op {
        "in" => {
            let Yaml::Sequence(items) = value else {
                diags.error(&p, "`in` takes a list of values");
                return None;
            };
            let mut set = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match scalar_text(item) {
                    Some(s) => set.push(s),
                    None => {
                        diags.error(&p.index(i), "values of `in` must be strings");
                        ok = false;
                    }
                }
            }
            attr.map(|a| Rule::In(a, set))
        }
        _ => {
            let Some(text) = scalar_text(value) else {
                diags.error(&p, format!("`{op}` takes a string"));
                return None;
            };
            match op {
                "equals" => attr.map(|a| Rule::Equals(a, text)),
                "contains" => attr.map(|a| Rule::Contains(a, text)),
                _ => match Regex::new(&format!("^(?:{text})$")) {
                    Ok(re) => attr.map(|a| Rule::Matches(a, re)),
                    Err(e) => {
                        diags.error(&p, format!("invalid regex: {}", first_line(&e.to_string())));
                        None
                    }
                },
            }
        }
    };
    if ok {
        rule
    } else {
        None
    }
}

fn scalar_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(yaml: &str) -> Rule {
        let v: Yaml = serde_yaml_ng::from_str(yaml).unwrap();
        let mut d = Diagnostics::default();
        let r = parse_rule(&v, &ConfigPath::root(), &mut d);
        assert!(d.is_empty(), "{:?}", d.items);
        r.unwrap()
    }

    fn attrs() -> Attributes {
        let mut a = Attributes::new();
        a.insert("idp.email".into(), json!("alice@example.com"));
        a.insert("idp.groups".into(), json!(["admins", "staff"]));
        a.insert("idp.level".into(), json!(3));
        a
    }

    #[test]
    fn operators() {
        let a = attrs();
        assert!(rule("{attribute: idp.email, equals: alice@example.com}").evaluate(&a));
        assert!(!rule("{attribute: idp.email, equals: alice}").evaluate(&a));
        assert!(!rule("{attribute: idp.groups, equals: admins}").evaluate(&a));
        assert!(rule("{attribute: idp.groups, contains: admins}").evaluate(&a));
        assert!(!rule("{attribute: idp.groups, contains: admin}").evaluate(&a));
        assert!(rule("{attribute: idp.email, contains: '@example'}").evaluate(&a));
        assert!(rule("{attribute: idp.level, in: [2, 3]}").evaluate(&a));
        assert!(rule("{attribute: idp.groups, in: [x, staff]}").evaluate(&a));
        assert!(!rule("{attribute: idp.groups, in: [x]}").evaluate(&a));
        assert!(rule("{attribute: idp.email, matches: '.*@example\\.com'}").evaluate(&a));
        // full match, not a search
        assert!(!rule("{attribute: idp.email, matches: 'example'}").evaluate(&a));
        assert!(!rule("{attribute: idp.missing, equals: x}").evaluate(&a));
        assert!(rule("{not: {attribute: idp.missing, equals: x}}").evaluate(&a));
    }

    #[test]
    fn combinators() {
        let a = attrs();
        assert!(rule(
            "or: [{attribute: idp.email, equals: x}, {attribute: idp.groups, contains: staff}]"
        )
        .evaluate(&a));
        assert!(!rule(
            "and: [{attribute: idp.email, equals: x}, {attribute: idp.groups, contains: staff}]"
        )
        .evaluate(&a));
        assert!(rule("and: [{not: {attribute: idp.email, equals: x}}, {attribute: idp.groups, contains: staff}]").evaluate(&a));
    }

    #[test]
    fn errors() {
        let check = |yaml: &str, msg: &str| {
            let v: Yaml = serde_yaml_ng::from_str(yaml).unwrap();
            let mut d = Diagnostics::default();
            assert!(parse_rule(&v, &ConfigPath::root(), &mut d).is_none());
            assert!(
                d.items.iter().any(|i| i.message.contains(msg)),
                "{:?}",
                d.items
            );
        };
        check("{attribute: a.b, matches: '('}", "invalid regex");
        check("{attribute: a.b}", "a condition needs one operator");
        check(
            "{attribute: a.b, equals: x, contains: y}",
            "found equals and contains",
        );
        check(
            "{attribute: ab, equals: x}",
            "is not an attribute reference",
        );
        check(
            "{atribute: a.b, equals: x}",
            "unknown key `atribute` in rule",
        );
        check("or: []", "needs at least one rule");
        check("[x]", "a rule must be a mapping");
    }
}
