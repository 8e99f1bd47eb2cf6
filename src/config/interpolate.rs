//! Substitutions applied to every string of the document before it is decoded:
//! `{{ env.NAME }}` (environment variable, inside any string) and `<name>` (a whole string that
//! is a secret reference, resolved through the secret provider). `{{ connector.attr }}`
//! placeholders are left alone: they are rendered per request.

use std::sync::LazyLock;

use regex::Regex;
use serde_yaml_ng::Value;

use super::source::{ConfigPath, Diagnostics};
use crate::secrets::SecretProvider;

static ENV_TEMPLATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}").expect("static regex")
});
static SECRET_REF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^<([A-Za-z0-9_][A-Za-z0-9_.\-]*)>$").expect("static regex"));

/// Rewrites `value` in place; unresolved references are reported at their path.
pub fn interpolate(
    value: &mut Value,
    path: &ConfigPath,
    secrets: &SecretProvider,
    diags: &mut Diagnostics,
) {
    match value {
        Value::String(s) => {
            if let Some(new) = substitute(s, path, secrets, diags) {
                *s = new;
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &path.index(i), secrets, diags);
            }
        }
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                let key = k.as_str().unwrap_or("?").to_string();
                interpolate(v, &path.key(&key), secrets, diags);
            }
        }
        Value::Tagged(t) => interpolate(&mut t.value, path, secrets, diags),
        _ => {}
    }
}

fn substitute(
    s: &str,
    path: &ConfigPath,
    secrets: &SecretProvider,
    diags: &mut Diagnostics,
) -> Option<String> {
    let mut out = None;
    if ENV_TEMPLATE.is_match(s) {
        let replaced = ENV_TEMPLATE.replace_all(s, |c: &regex::Captures<'_>| {
            let name = &c[1];
            match std::env::var(name) {
                Ok(v) => v,
                Err(_) => {
                    diags.error_hint(
                        path,
                        format!("environment variable `{name}` is not set"),
                        format!("export {name}=... before starting, or remove the {{{{ env.{name} }}}} template"),
                    );
                    String::new()
                }
            }
        });
        out = Some(replaced.into_owned());
    }
    let current = out.as_deref().unwrap_or(s);
    if let Some(c) = SECRET_REF.captures(current) {
        let name = c[1].to_string();
        match secrets.resolve(&name) {
            Some(v) => out = Some(v.expose().to_string()),
            None => diags.error_hint(
                path,
                format!("secret `<{name}>` is not defined"),
                secrets.how_to_set(&name),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_templates_and_secrets() {
        std::env::set_var("TESSERA_T_HOST", "example.org");
        std::env::set_var("TEST_SECRET_ONE", "s3cr3t");
        let mut v: Value = serde_yaml_ng::from_str(
            "a: 'https://{{ env.TESSERA_T_HOST }}/x'\nb: <test.secret.one>\nc: '{{ okta.email }}'\nd: <missing.secret>\ne: '{{env.TESSERA_T_NOPE}}'\n",
        )
        .unwrap();
        let mut d = Diagnostics::default();
        interpolate(&mut v, &ConfigPath::root(), &SecretProvider::Env, &mut d);
        assert_eq!(v["a"].as_str(), Some("https://example.org/x"));
        assert_eq!(v["b"].as_str(), Some("s3cr3t"));
        assert_eq!(v["c"].as_str(), Some("{{ okta.email }}"));
        assert_eq!(d.items.len(), 2);
        assert_eq!(
            d.items[0].message,
            "secret `<missing.secret>` is not defined"
        );
        assert_eq!(
            d.items[0].hint.as_deref(),
            Some("set the environment variable MISSING_SECRET")
        );
        assert_eq!(
            d.items[1].message,
            "environment variable `TESSERA_T_NOPE` is not set"
        );
    }
}
