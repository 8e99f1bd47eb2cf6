//! Secret providers: where `<name>` references in the configuration are resolved.
//!
//! `env://` (default): `<okta.secret>` -> environment variable `OKTA_SECRET`.
//! `secretfile:///path/secrets.yaml`: a YAML mapping; `<okta.secret>` -> key `okta.secret`,
//! or nested `okta: { secret: ... }`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("unsupported secret provider `{0}` (use env:// or secretfile:///path/secrets.yaml)")]
    UnsupportedProvider(String),
    #[error("cannot read secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret file {path} is not a YAML mapping of names to strings: {message}")]
    Parse { path: PathBuf, message: String },
}

/// A string that never shows itself in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: String) -> Self {
        Self(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Where secret references are looked up.
#[derive(Debug, Clone)]
pub enum SecretProvider {
    Env,
    File {
        path: PathBuf,
        values: HashMap<String, SecretString>,
    },
}

impl SecretProvider {
    /// Parses a provider URL (`env://`, `secretfile:///abs/path.yaml`); `None` = `env://`.
    pub fn from_url(url: Option<&str>) -> Result<Self, SecretError> {
        let url = url.unwrap_or("env://").trim();
        if url.is_empty() || url == "env://" || url == "env" {
            return Ok(Self::Env);
        }
        let Some(path) = url.strip_prefix("secretfile://") else {
            return Err(SecretError::UnsupportedProvider(url.to_string()));
        };
        let path = PathBuf::from(path);
        let text = std::fs::read_to_string(&path).map_err(|source| SecretError::Read {
            path: path.clone(),
            source,
        })?;
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).map_err(|e| SecretError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let mut values = HashMap::new();
        flatten("", &doc, &mut values).map_err(|message| SecretError::Parse {
            path: path.clone(),
            message,
        })?;
        Ok(Self::File { path, values })
    }

    /// Looks up `name` (the text between `<` and `>`).
    pub fn resolve(&self, name: &str) -> Option<SecretString> {
        match self {
            Self::Env => std::env::var(env_name(name)).ok().map(SecretString::new),
            Self::File { values, .. } => values.get(name).cloned(),
        }
    }

    /// Tells an operator how to provide `name`.
    pub fn how_to_set(&self, name: &str) -> String {
        match self {
            Self::Env => format!("set the environment variable {}", env_name(name)),
            Self::File { path, .. } => format!("add `{name}` to {}", path.display()),
        }
    }
}

/// `okta.secret` -> `OKTA_SECRET`; `exampleApp.secret` -> `EXAMPLEAPP_SECRET`.
pub fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn flatten(
    prefix: &str,
    v: &serde_yaml_ng::Value,
    out: &mut HashMap<String, SecretString>,
) -> Result<(), String> {
    use serde_yaml_ng::Value;
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                let Some(k) = k.as_str() else {
                    return Err("keys must be strings".into());
                };
                let key = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out)?;
            }
            Ok(())
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), SecretString::new(s.clone()));
            Ok(())
        }
        Value::Number(n) => {
            out.insert(prefix.to_string(), SecretString::new(n.to_string()));
            Ok(())
        }
        _ if prefix.is_empty() => Err("the document must be a mapping".into()),
        _ => Err(format!("`{prefix}` must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert_eq!(env_name("okta.secret"), "OKTA_SECRET");
        assert_eq!(env_name("exampleApp.secret"), "EXAMPLEAPP_SECRET");
    }

    #[test]
    fn file_provider_flat_and_nested() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(&p, "okta:\n  secret: s1\nredis.password: s2\n").unwrap();
        let prov =
            SecretProvider::from_url(Some(&format!("secretfile://{}", p.display()))).unwrap();
        assert_eq!(prov.resolve("okta.secret").unwrap().expose(), "s1");
        assert_eq!(prov.resolve("redis.password").unwrap().expose(), "s2");
        assert!(prov.resolve("nope").is_none());
        assert_eq!(
            format!("{:?}", prov.resolve("okta.secret").unwrap()),
            "SecretString(<redacted>)"
        );
    }

    #[test]
    fn unknown_provider() {
        assert!(matches!(
            SecretProvider::from_url(Some("vault://x")),
            Err(SecretError::UnsupportedProvider(_))
        ));
    }
}
