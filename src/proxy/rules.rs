//! Authorization rules over session attributes: `and` / `or` / `not` trees of conditions
//! (`equals`, `contains`, `containsText`, `in`, `matches`). Parsed by hand from YAML so every
//! mistake is reported at its own position.
//!
//! Semantics (documented in the README). A single value counts as a one-element list: LDAP
//! gives one value as a string and several as a list, and a rule must mean the same for both.
//! - a missing attribute satisfies no condition (so `not` of it is true);
//! - `equals`: a single-valued attribute equals the text (a list never equals);
//! - `contains`: list membership: an element (or the single value) equals the text exactly.
//!   Never a substring test: `contains: admins` does not match `sysadmins-readonly`;
//! - `containsText`: an element (or the single value) has the text as a substring, for the
//!   rare rule that really means it (the unmistakable name is the point);
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
    ContainsText(AttrRef, String),
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
            Rule::Contains(a, want) => any_scalar(a.get(attrs), |s| s == want),
            Rule::ContainsText(a, want) => any_scalar(a.get(attrs), |s| s.contains(want.as_str())),
            Rule::In(a, set) => any_scalar(a.get(attrs), |s| set.iter().any(|w| w == s)),
            Rule::Matches(a, re) => any_scalar(a.get(attrs), |s| re.is_match(s)),
        }
    }

    /// The attribute references the rule reads (for start-up checks).
    pub fn refs(&self) -> Vec<&AttrRef> {
        match self {
            Rule::And(rs) | Rule::Or(rs) => rs.iter().flat_map(|r| r.refs()).collect(),
            Rule::Not(r) => r.refs(),
            Rule::Equals(a, _)
            | Rule::Contains(a, _)
            | Rule::ContainsText(a, _)
            | Rule::In(a, _)
            | Rule::Matches(a, _) => vec![a],
        }
    }
}

/// The attribute's value, or any element of a list, satisfies `pred`. Only scalar elements
/// count: a nested list or object is not compared as text (its rendering would join items).
fn any_scalar(v: Option<&Value>, pred: impl Fn(&str) -> bool) -> bool {
    let scalar = |v: &Value| match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => {
            render_value(v).is_some_and(|s| pred(&s))
        }
        Value::Array(_) | Value::Object(_) | Value::Null => false,
    };
    match v {
        Some(Value::Array(items)) => items.iter().any(scalar),
        Some(v) => scalar(v),
        None => false,
    }
}

const OPERATORS: [&str; 5] = ["equals", "contains", "containsText", "in", "matches"];

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
            "use exactly one of equals, contains, containsText, in, matches",
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
                "containsText" => attr.map(|a| Rule::ContainsText(a, text)),
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
        // `contains` is membership, never a substring test (a single value is a one-element
        // list); `containsText` is the substring test, by name.
        assert!(!rule("{attribute: idp.email, contains: '@example'}").evaluate(&a));
        assert!(rule("{attribute: idp.email, contains: alice@example.com}").evaluate(&a));
        assert!(rule("{attribute: idp.email, containsText: '@example'}").evaluate(&a));
        assert!(rule("{attribute: idp.groups, containsText: dmin}").evaluate(&a));
        assert!(!rule("{attribute: idp.groups, containsText: nobody}").evaluate(&a));
        assert!(rule("{attribute: idp.level, contains: 3}").evaluate(&a));
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
    fn contains_is_membership_not_a_substring() {
        // Issue #12 finding 9: a user whose single group is `sysadmins-readonly` passed
        // `contains: admins`.
        let mut a = Attributes::new();
        a.insert("ldap.groups".into(), json!("sysadmins-readonly"));
        a.insert("ldap.list".into(), json!(["sysadmins-readonly", "staff"]));
        let r = rule("{attribute: ldap.groups, contains: admins}");
        assert!(!r.evaluate(&a));
        assert!(!rule("{attribute: ldap.list, contains: admins}").evaluate(&a));
        a.insert("ldap.groups".into(), json!("admins"));
        assert!(r.evaluate(&a), "a single value is a one-element list");
        a.insert("ldap.groups".into(), json!([["admins"]]));
        assert!(!r.evaluate(&a), "nested lists are not flattened");
        let t = rule("{attribute: ldap.list, containsText: admins}");
        assert!(t.evaluate(&a));
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
        check(
            "{attribute: a.b, containstext: x}",
            "unknown key `containstext` in rule",
        );
        check("[x]", "a rule must be a mapping");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use serde_json::json;

        const ATTR: &str = "x.a";

        fn attr() -> AttrRef {
            AttrRef::parse(ATTR).unwrap()
        }

        /// Short texts over a small alphabet, so that equal and substring cases are common.
        fn text() -> impl Strategy<Value = String> {
            "[ab,]{0,3}"
        }

        fn scalar() -> impl Strategy<Value = Value> {
            prop_oneof![
                6 => text().prop_map(Value::from),
                1 => (0i64..3).prop_map(Value::from),
                1 => any::<bool>().prop_map(Value::from),
                1 => Just(Value::Null),
            ]
        }

        /// An attribute value: a scalar, a list of scalars, or a list with nested values.
        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                scalar(),
                proptest::collection::vec(scalar(), 0..5).prop_map(Value::Array),
                proptest::collection::vec(scalar(), 0..3)
                    .prop_map(|v| Value::Array(vec![Value::Array(v), json!({"k": "a"})])),
            ]
        }

        fn leaf() -> impl Strategy<Value = Rule> {
            prop_oneof![
                text().prop_map(|t| Rule::Equals(attr(), t)),
                text().prop_map(|t| Rule::Contains(attr(), t)),
                text().prop_map(|t| Rule::ContainsText(attr(), t)),
                proptest::collection::vec(text(), 0..3).prop_map(|s| Rule::In(attr(), s)),
                "[ab]\\*?".prop_map(|t| Rule::Matches(
                    attr(),
                    Regex::new(&format!("^(?:{t})$")).unwrap()
                )),
            ]
        }

        fn tree() -> impl Strategy<Value = Rule> {
            leaf().prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 1..4).prop_map(Rule::And),
                    proptest::collection::vec(inner.clone(), 1..4).prop_map(Rule::Or),
                    inner.prop_map(|r| Rule::Not(Box::new(r))),
                ]
            })
        }

        fn with(v: Value) -> Attributes {
            let mut a = Attributes::new();
            a.insert(ATTR.into(), v);
            a
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Invariant: `contains X` on a list holds iff some (scalar) element's text equals X
            /// exactly — never because X is a substring of an element or of the joined list.
            #[test]
            fn contains_is_exact_membership(items in proptest::collection::vec(scalar(), 0..5), want in text()) {
                let expected = items.iter().any(|i| match i {
                    Value::String(s) => *s == want,
                    Value::Number(n) => n.to_string() == want,
                    Value::Bool(b) => b.to_string() == want,
                    _ => false,
                });
                let a = with(Value::Array(items));
                prop_assert_eq!(Rule::Contains(attr(), want).evaluate(&a), expected);
            }

            /// Invariant: a single value and the one-element list of it decide every operator
            /// but `equals` (which, by definition, a list never satisfies) alike.
            #[test]
            fn a_scalar_is_a_one_element_list(v in scalar(), r in leaf()) {
                prop_assume!(!matches!(r, Rule::Equals(..)));
                prop_assert_eq!(r.evaluate(&with(v.clone())), r.evaluate(&with(json!([v]))));
            }

            /// Invariant: not(not r) == r, for every rule and value.
            #[test]
            fn double_negation(r in tree(), v in value()) {
                let a = with(v);
                let nn = Rule::Not(Box::new(Rule::Not(Box::new(r.clone()))));
                prop_assert_eq!(nn.evaluate(&a), r.evaluate(&a));
            }

            /// Invariant: `and` is `all` and `or` is `any` of the parts; De Morgan holds.
            #[test]
            fn and_or_are_all_any(rs in proptest::collection::vec(tree(), 1..4), v in value()) {
                let a = with(v);
                let each: Vec<bool> = rs.iter().map(|r| r.evaluate(&a)).collect();
                prop_assert_eq!(Rule::And(rs.clone()).evaluate(&a), each.iter().all(|b| *b));
                prop_assert_eq!(Rule::Or(rs.clone()).evaluate(&a), each.iter().any(|b| *b));
                let negated: Vec<Rule> = rs.iter().cloned().map(|r| Rule::Not(Box::new(r))).collect();
                prop_assert_eq!(
                    Rule::Not(Box::new(Rule::Or(rs))).evaluate(&a),
                    Rule::And(negated).evaluate(&a)
                );
            }

            /// Invariant: a missing (or null) attribute satisfies no leaf condition, whatever
            /// its operand; so `not` of any leaf over it holds.
            #[test]
            fn a_missing_attribute_satisfies_no_leaf(r in leaf(), other in value()) {
                let mut a = Attributes::new();
                a.insert("y.other".into(), other);
                prop_assert!(!r.evaluate(&a));
                prop_assert!(!r.evaluate(&with(Value::Null)));
                prop_assert!(Rule::Not(Box::new(r)).evaluate(&a));
            }
        }
    }
}
