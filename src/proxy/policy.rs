//! Policy locations: which policy of an app governs a path.
//! Regex locations (`~ re`, `~* re` case-insensitive) are tried first in file order, as in
//! nginx; otherwise the longest matching path prefix wins. No match means deny (fail closed).

use regex::Regex;

use super::rules::Rule;
use crate::edge::path::under_prefix;

#[derive(Debug, Clone)]
pub enum Location {
    Prefix(String),
    Regex(Regex),
}

impl Location {
    /// Parses `/prefix`, `~ regex` or `~* regex`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(re) = s.strip_prefix("~*") {
            return Regex::new(&format!("(?i){}", re.trim()))
                .map(Location::Regex)
                .map_err(|e| {
                    format!(
                        "invalid regex: {}",
                        super::rules::first_line(&e.to_string())
                    )
                });
        }
        if let Some(re) = s.strip_prefix('~') {
            return Regex::new(re.trim()).map(Location::Regex).map_err(|e| {
                format!(
                    "invalid regex: {}",
                    super::rules::first_line(&e.to_string())
                )
            });
        }
        if s.starts_with('/') {
            return Ok(Location::Prefix(s.to_string()));
        }
        Err(format!(
            "location `{s}` must be a path starting with `/` or a regex starting with `~`"
        ))
    }
}

impl Location {
    /// The location of a `caseInsensitivePaths` app, which matches lowercase paths: prefixes
    /// folded, regexes made case-insensitive.
    pub fn folded(self) -> Self {
        match self {
            Location::Prefix(p) => Location::Prefix(crate::edge::path::fold_case(&p)),
            Location::Regex(re) => Regex::new(&format!("(?i){}", re.as_str()))
                .map(Location::Regex)
                .unwrap_or(Location::Regex(re)),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Authorization {
    AllowAll,
    Rules(Rule),
    /// An extension's IsAuthorized hook decides (see `ProxyApp::handle`).
    Extension(crate::extensions::Hook),
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub location_text: String,
    pub location: Location,
    pub allow_unauthenticated: bool,
    /// Connectors that can authenticate a user here.
    pub idps: Vec<String>,
    pub authorization: Authorization,
    /// Extension hooks replacing the session check / the login decision.
    pub is_authenticated_se: Option<crate::extensions::Hook>,
    pub authenticate_se: Option<crate::extensions::Hook>,
    /// Bearer access tokens this location accepts (`authentication.bearer`).
    pub bearer: Option<super::bearer::BearerPolicy>,
}

impl Policy {
    /// Only a bearer token opens this location: no sign-in, no hook, not public. A request
    /// without a token is answered with a bearer challenge, never sent to a login page.
    pub fn bearer_only(&self) -> bool {
        self.bearer.is_some()
            && self.idps.is_empty()
            && !self.allow_unauthenticated
            && self.is_authenticated_se.is_none()
            && self.authenticate_se.is_none()
    }

    /// The static decision; `None` when an extension decides.
    pub fn authorizes(&self, attrs: &crate::claims::Attributes) -> Option<bool> {
        match &self.authorization {
            Authorization::AllowAll => Some(true),
            Authorization::Rules(r) => Some(r.evaluate(attrs)),
            Authorization::Extension(_) => None,
        }
    }
}

/// An app's policies, arranged for lookup.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    regexes: Vec<Policy>,
    /// Longest prefix first.
    prefixes: Vec<Policy>,
}

impl PolicySet {
    pub fn new(policies: Vec<Policy>) -> Self {
        let (regexes, mut prefixes): (Vec<_>, Vec<_>) = policies
            .into_iter()
            .partition(|p| matches!(p.location, Location::Regex(_)));
        prefixes.sort_by_key(|p| match &p.location {
            Location::Prefix(s) => std::cmp::Reverse(s.trim_end_matches('/').len()),
            Location::Regex(_) => std::cmp::Reverse(0),
        });
        Self { regexes, prefixes }
    }

    pub fn find(&self, path: &str) -> Option<&Policy> {
        self.regexes
            .iter()
            .find(|p| matches!(&p.location, Location::Regex(re) if re.is_match(path)))
            .or_else(|| {
                self.prefixes.iter().find(|p| {
                    matches!(&p.location, Location::Prefix(prefix) if under_prefix(path, prefix))
                })
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.regexes.iter().chain(self.prefixes.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(loc: &str) -> Policy {
        Policy {
            location_text: loc.into(),
            location: Location::parse(loc).unwrap(),
            allow_unauthenticated: false,
            idps: vec![],
            authorization: Authorization::AllowAll,
            is_authenticated_se: None,
            authenticate_se: None,
            bearer: None,
        }
    }

    #[test]
    fn regex_first_then_longest_prefix() {
        let set = PolicySet::new(vec![
            policy("/"),
            policy("~ \\.(css|js)$"),
            policy("/admin"),
            policy("/admin/public"),
            policy("~* ^/SHOUT"),
        ]);
        let find = |p: &str| set.find(p).map(|p| p.location_text.clone());
        assert_eq!(find("/x").as_deref(), Some("/"));
        assert_eq!(find("/admin/a.css").as_deref(), Some("~ \\.(css|js)$"));
        assert_eq!(find("/admin").as_deref(), Some("/admin"));
        assert_eq!(find("/admin/x").as_deref(), Some("/admin"));
        assert_eq!(find("/administrator").as_deref(), Some("/"));
        assert_eq!(find("/admin/public/y").as_deref(), Some("/admin/public"));
        assert_eq!(find("/shout/x").as_deref(), Some("~* ^/SHOUT"));
        let no_root = PolicySet::new(vec![policy("/admin")]);
        assert!(no_root.find("/other").is_none());
    }

    #[test]
    fn bad_locations() {
        assert!(Location::parse("admin").is_err());
        assert!(Location::parse("~ (")
            .unwrap_err()
            .starts_with("invalid regex"));
    }
}
