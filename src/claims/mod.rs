//! Session attributes and the expressions that read them: `connector.attribute` references
//! (rules, mappings) and `{{ connector.attribute }}` templates (header values).
//!
//! Header values (`Template::render_header`) use one documented list format, so an upstream
//! can always tell one value from several:
//! - every placeholder's value is a list of items: a list attribute's elements, or the single
//!   value of a scalar (a scalar and a one-element list render the same: LDAP gives one value
//!   as a string and several as a list, and the upstream must not care);
//! - items are joined by `,` (no space), as before;
//! - an item that is empty, contains `,`, `"` or `\`, or starts or ends with white space is sent
//!   as an RFC 9110 quoted-string (`"staff,admins"`, with `\"` and `\\` escapes); any other
//!   item is sent as is, so a plain list is byte-identical to a plain `,` join;
//! - an item with a control character (CR, LF, NUL, TAB, DEL, C1) cannot be carried: it alone
//!   is left out, with a warning naming the header and the attribute (never the value); the
//!   other items are still sent;
//! - a header whose placeholders all have no (kept) item is not sent.
//!
//! Rules and claims keep comparing and mapping raw values (`render_value`): only the header
//! rendering quotes.

use std::borrow::Cow;
use std::collections::BTreeMap;

pub mod oidc;

use http::{HeaderName, HeaderValue};
use serde_json::Value;

/// A user's attributes, keyed `<connector>.<name>` (`local.email`, `okta.groups`).
pub type Attributes = BTreeMap<String, Value>;

/// `attrs["<connector>.<name>"]`: the key is put together on the stack, so a lookup on the
/// request path (`<idp>.authenticated`, `<idp>.sub`) allocates nothing.
pub fn qualified<'a>(attrs: &'a Attributes, connector: &str, name: &str) -> Option<&'a Value> {
    let mut buf = [0u8; 128];
    let len = connector.len() + 1 + name.len();
    let Some(key) = buf.get_mut(..len) else {
        return attrs.get(&format!("{connector}.{name}"));
    };
    let (head, tail) = key.split_at_mut(connector.len());
    head.copy_from_slice(connector.as_bytes());
    tail[0] = b'.';
    tail[1..].copy_from_slice(name.as_bytes());
    // Two `str`s and an ASCII dot: always UTF-8.
    attrs.get(std::str::from_utf8(key).ok()?)
}

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
        if s.chars().any(char::is_control) {
            // The template is a header value: a control character could never be sent.
            return Err(format!(
                "`{}` contains a control character, which a header value cannot carry",
                s.escape_debug()
            ));
        }
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

    /// Renders the value of header `header` with `attrs` in the documented list format (see the
    /// module doc); `None` when no placeholder has a kept item (nothing to say). The result is
    /// always a valid header value: literals were checked at parse time, items with control
    /// characters are left out (logged, without the value) and the rest are quoted as needed.
    pub fn render_header(&self, header: &HeaderName, attrs: &Attributes) -> Option<HeaderValue> {
        let mut out = String::with_capacity(64);
        let mut any_placeholder = false;
        let mut any_value = false;
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Attr(a) => {
                    any_placeholder = true;
                    let Some(v) = a.get(attrs) else { continue };
                    let (kept, dropped) = push_list(&mut out, v);
                    any_value |= kept > 0;
                    if dropped > 0 {
                        tracing::warn!(
                            header = %header,
                            attribute = a.key(),
                            dropped,
                            "identity header: attribute values with control characters left out (the other values are sent)"
                        );
                    }
                }
            }
        }
        if any_placeholder && !any_value {
            return None;
        }
        // Cannot fail (see above); `try_from(String)` keeps the buffer instead of copying it.
        HeaderValue::try_from(out).ok()
    }
}

/// Appends the items of `v` to `out` (comma-separated, quoted as needed); returns how many
/// items were written and how many were left out for carrying a control character. (On the
/// hot path of every proxied request: no allocation for plain values.)
fn push_list(out: &mut String, v: &Value) -> (usize, usize) {
    let (mut kept, mut dropped) = (0, 0);
    let mut push = |item: Option<Cow<'_, str>>| {
        let Some(item) = item else { return };
        match classify(&item) {
            Item::Control => dropped += 1,
            kind => {
                if kept > 0 {
                    out.push(',');
                }
                push_item(out, &item, kind);
                kept += 1;
            }
        }
    };
    match v {
        Value::Array(items) => items.iter().map(header_item).for_each(&mut push),
        other => push(header_item(other)),
    }
    (kept, dropped)
}

/// One item of a value in a header: nested lists and objects as JSON text (null: none).
fn header_item(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Array(_) => Some(Cow::Owned(v.to_string())),
        other => render_value(other),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    /// Sent as is.
    Plain,
    /// Sent as an RFC 9110 quoted-string (it could be misread as list syntax).
    Quoted,
    /// Left out: a control character could split or corrupt the header.
    Control,
}

/// One pass over the item: control characters, list syntax (`,` `"` `\`), white space at
/// either end, emptiness.
fn classify(item: &str) -> Item {
    let edge_space = item.starts_with(char::is_whitespace) || item.ends_with(char::is_whitespace);
    let mut quote = item.is_empty() || edge_space;
    if item.is_ascii() {
        for &b in item.as_bytes() {
            match b {
                0..=0x1f | 0x7f => return Item::Control,
                b',' | b'"' | b'\\' => quote = true,
                _ => {}
            }
        }
    } else {
        for c in item.chars() {
            if c.is_control() {
                return Item::Control;
            }
            quote |= matches!(c, ',' | '"' | '\\');
        }
    }
    if quote {
        Item::Quoted
    } else {
        Item::Plain
    }
}

/// One list item: as is when it cannot be misread, else as an RFC 9110 quoted-string.
fn push_item(out: &mut String, item: &str, kind: Item) {
    if kind == Item::Plain {
        out.push_str(item);
        return;
    }
    out.push('"');
    for c in item.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Splits a header value rendered from a single placeholder back into its items, per the
/// documented format (RFC 9110 list with quoted-strings); `None` if it is not well-formed.
#[cfg(test)]
pub(crate) fn split_header_list(s: &str) -> Option<Vec<String>> {
    let ows = |c: char| c == ' ' || c == '\t';
    let mut items = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(ows);
        if rest.is_empty() {
            return Some(items);
        }
        if let Some(q) = rest.strip_prefix('"') {
            let mut item = String::new();
            let mut chars = q.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => item.push(chars.next()?.1),
                    (i, '"') => break i + 1,
                    (_, c) => item.push(c),
                }
            };
            items.push(item);
            rest = q[end..].trim_start_matches(ows);
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None if rest.is_empty() => return Some(items),
                None => return None,
            }
        } else {
            let (item, next) = match rest.find(',') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            let item = item.trim_end_matches(ows);
            // RFC 9110 §5.6.1: empty elements do not count.
            if !item.is_empty() {
                items.push(item.to_string());
            }
            match next {
                Some(r) => rest = r,
                None => return Some(items),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn render(t: &str, a: &Attributes) -> Option<String> {
        let h = HeaderName::from_static("x-test");
        Template::parse(t)
            .unwrap()
            .render_header(&h, a)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn templates_render_lists_and_skip_missing() {
        let mut a = Attributes::new();
        a.insert("okta.email".into(), json!("a@x.org"));
        a.insert("okta.groups".into(), json!(["admins", "staff"]));
        a.insert("okta.n".into(), json!(3));
        assert_eq!(render("{{ okta.email }}", &a).as_deref(), Some("a@x.org"));
        assert_eq!(
            render("g={{okta.groups}};n={{ okta.n }}", &a).as_deref(),
            Some("g=admins,staff;n=3")
        );
        assert_eq!(render("{{ okta.missing }}", &a), None);
        assert_eq!(render("static", &a).as_deref(), Some("static"));
        assert!(Template::parse("{{ okta.email").is_err());
        assert!(Template::parse("{{ email }}").is_err());
    }

    #[test]
    fn list_items_that_could_be_misread_are_quoted() {
        let mut a = Attributes::new();
        // One LDAP value `staff,admins` (a string) is not two groups.
        a.insert("ldap.ou".into(), json!("staff,admins"));
        a.insert(
            "ldap.groups".into(),
            json!(["staff,admins", "a\"b", "c\\d", " pad", "", "plain", 7, null]),
        );
        a.insert("ldap.dn".into(), json!("uid=a,dc=x"));
        a.insert("ldap.nested".into(), json!([["x", "y"], {"k": 1}]));
        assert_eq!(
            render("{{ ldap.ou }}", &a).as_deref(),
            Some("\"staff,admins\"")
        );
        assert_eq!(
            render("{{ ldap.groups }}", &a).as_deref(),
            Some(r#""staff,admins","a\"b","c\\d"," pad","",plain,7"#)
        );
        assert_eq!(
            render("{{ ldap.dn }}", &a).as_deref(),
            Some("\"uid=a,dc=x\"")
        );
        assert_eq!(
            render("{{ ldap.nested }}", &a).as_deref(),
            Some(r#""[\"x\",\"y\"]","{\"k\":1}""#)
        );
    }

    #[test]
    fn only_items_with_control_characters_are_left_out() {
        let mut a = Attributes::new();
        a.insert(
            "ldap.groups".into(),
            json!([
                "staff",
                "evil\r\nX-Admin: 1",
                "admins",
                "nul\u{0}",
                "tab\t",
                "del\u{7f}"
            ]),
        );
        a.insert("ldap.mail".into(), json!("a@x\nb"));
        a.insert("ldap.empty".into(), json!([]));
        assert_eq!(
            render("{{ ldap.groups }}", &a).as_deref(),
            Some("staff,admins")
        );
        // A scalar with CR/LF: nothing left to send.
        assert_eq!(render("{{ ldap.mail }}", &a), None);
        assert_eq!(render("{{ ldap.empty }}", &a), None);
        assert_eq!(
            render("m={{ ldap.mail }};g={{ ldap.groups }}", &a).as_deref(),
            Some("m=;g=staff,admins")
        );
        // Literals are checked once, at parse time.
        let e = Template::parse("a\r\nb: {{ ldap.mail }}").unwrap_err();
        assert!(e.contains("control character"), "{e}");
    }

    #[test]
    fn attr_refs() {
        let r = AttrRef::parse("okta.email").unwrap();
        assert_eq!(r.connector(), "okta");
        assert!(AttrRef::parse(".x").is_err());
        assert!(AttrRef::parse("a b.c").is_err());
    }

    /// Attribute values as sessions hold them: strings (any characters, control characters
    /// and the list format's own `,` `"` `\` included), numbers, booleans, null, and lists of
    /// those.
    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => "[ -~]{0,8}".prop_map(Value::from),
            4 => "[a,\"\\\\ \r\n\t\u{0}\u{7f}\u{85}é]{0,6}".prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<bool>().prop_map(Value::from),
            1 => Just(Value::Null),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            scalar(),
            proptest::collection::vec(scalar(), 0..6).prop_map(Value::Array),
        ]
    }

    /// The items the documented format keeps for `v`, as text.
    fn kept(v: &Value) -> Vec<String> {
        let items: Vec<Cow<'_, str>> = match v {
            Value::Array(items) => items.iter().filter_map(header_item).collect(),
            other => header_item(other).into_iter().collect(),
        };
        items
            .into_iter()
            .filter(|s| !s.chars().any(char::is_control))
            .map(Cow::into_owned)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Invariant: whatever the attribute values, a rendered header is a valid header value
        /// with no CR, LF or NUL (it can neither split the request nor be refused by hyper).
        #[test]
        fn rendered_headers_are_always_valid(v in value(), w in value()) {
            let mut a = Attributes::new();
            a.insert("x.v".into(), v);
            a.insert("x.w".into(), w);
            let t = Template::parse("pre {{ x.v }};{{ x.w }} post").unwrap();
            if let Some(h) = t.render_header(&HeaderName::from_static("x-test"), &a) {
                prop_assert!(!h.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
                prop_assert!(HeaderValue::from_bytes(h.as_bytes()).is_ok());
            }
        }

        /// Invariant: splitting a header rendered from one placeholder by the documented format
        /// gives back exactly the kept items, in order (none is merged, split or altered), and
        /// the header is absent exactly when no item is kept.
        #[test]
        fn rendered_lists_split_back_into_the_kept_items(v in value()) {
            let mut a = Attributes::new();
            a.insert("x.v".into(), v.clone());
            let t = Template::parse("{{ x.v }}").unwrap();
            let rendered = t.render_header(&HeaderName::from_static("x-test"), &a);
            let want = kept(&v);
            match rendered {
                None => prop_assert!(want.is_empty()),
                Some(h) => {
                    let text = std::str::from_utf8(h.as_bytes()).unwrap();
                    prop_assert_eq!(split_header_list(text), Some(want));
                }
            }
        }

        /// Invariant: a list of plain items (no `,` `"` `\`, no edge white space, not empty)
        /// renders byte-identical to a plain `,` join, as before the format was introduced.
        #[test]
        fn plain_lists_are_unchanged(items in proptest::collection::vec("[a-zA-Z0-9=._-]{1,8}", 1..6)) {
            let mut a = Attributes::new();
            a.insert("x.v".into(), json!(items));
            let t = Template::parse("{{ x.v }}").unwrap();
            let h = t.render_header(&HeaderName::from_static("x-test"), &a).unwrap();
            prop_assert_eq!(h.to_str().unwrap(), items.join(","));
        }
    }
}
