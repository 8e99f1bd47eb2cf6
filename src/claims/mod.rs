//! Session attributes and the expressions that read them: `connector.attribute` references
//! (rules, mappings) and `{{ connector.attribute }}` templates (header values).

use std::borrow::Cow;
use std::collections::BTreeMap;

pub mod oidc;

use serde_json::Value;

/// A user's attributes, keyed `<connector>.<name>` (`local.email`, `okta.groups`).
pub type Attributes = BTreeMap<String, Value>;

/// A parsed `connector.attribute` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrRef {
    key: String,
    dot: usize,
}

impl AttrRef {
    /// Parses `connector.attribute`; both parts non-empty, no spaces.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let Some(dot) = s.find('.') else {
            return Err(format!(
                "`{s}` is not an attribute reference: write `connector.attribute`"
            ));
        };
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
        };
        if dot == 0 || !ok(&s[..dot]) || !ok(&s[dot + 1..]) {
            return Err(format!(
                "`{s}` is not an attribute reference: write `connector.attribute`"
            ));
        }
        Ok(Self {
            key: s.to_string(),
            dot,
        })
    }
    pub fn connector(&self) -> &str {
        &self.key[..self.dot]
    }
    pub fn key(&self) -> &str {
        &self.key
    }
    pub fn get<'a>(&self, attrs: &'a Attributes) -> Option<&'a Value> {
        attrs.get(&self.key)
    }
}

/// An attribute value as text: lists joined with `,`, scalars as written; `None` for null.
pub fn render_value(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Array(items) => Some(Cow::Owned(
            items
                .iter()
                .filter_map(render_value)
                .collect::<Vec<_>>()
                .join(","),
        )),
        Value::Object(_) => Some(Cow::Owned(v.to_string())),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Attr(AttrRef),
}

/// Text with `{{ connector.attribute }}` placeholders, parsed once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return Err(format!("unclosed `{{{{` in `{s}`"));
            };
            parts.push(Part::Attr(AttrRef::parse(&after[..end])?));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("`}}}}` without `{{{{` in `{s}`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// The attribute references it uses.
    pub fn refs(&self) -> impl Iterator<Item = &AttrRef> {
        self.parts.iter().filter_map(|p| match p {
            Part::Attr(a) => Some(a),
            Part::Literal(_) => None,
        })
    }

    /// Renders with `attrs`; `None` when every placeholder is missing (nothing to say).
    pub fn render(&self, attrs: &Attributes) -> Option<String> {
        let mut out = String::new();
        let mut any_placeholder = false;
        let mut any_value = false;
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Attr(a) => {
                    any_placeholder = true;
                    if let Some(v) = a.get(attrs).and_then(render_value) {
                        any_value = true;
                        out.push_str(&v);
                    }
                }
            }
        }
        (any_value || !any_placeholder).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_render_lists_and_skip_missing() {
        let mut a = Attributes::new();
        a.insert("okta.email".into(), json!("a@x.org"));
        a.insert("okta.groups".into(), json!(["admins", "staff"]));
        a.insert("okta.n".into(), json!(3));
        let t = Template::parse("{{ okta.email }}").unwrap();
        assert_eq!(t.render(&a).as_deref(), Some("a@x.org"));
        let t = Template::parse("g={{okta.groups}};n={{ okta.n }}").unwrap();
        assert_eq!(t.render(&a).as_deref(), Some("g=admins,staff;n=3"));
        assert_eq!(
            Template::parse("{{ okta.missing }}").unwrap().render(&a),
            None
        );
        assert_eq!(
            Template::parse("static").unwrap().render(&a).as_deref(),
            Some("static")
        );
        assert!(Template::parse("{{ okta.email").is_err());
        assert!(Template::parse("{{ email }}").is_err());
    }

    #[test]
    fn attr_refs() {
        let r = AttrRef::parse("okta.email").unwrap();
        assert_eq!(r.connector(), "okta");
        assert!(AttrRef::parse(".x").is_err());
        assert!(AttrRef::parse("a b.c").is_err());
    }
}
