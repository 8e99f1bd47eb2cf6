//! Host + path routing: which app serves a request. Host-specific patterns win over
//! host-less ones; among those, the longest path prefix wins (on segment boundaries).

use crate::edge::path::under_prefix;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutePattern {
    /// Lowercased host (optionally `host:port`); `None` = any host.
    pub host: Option<String>,
    /// Path prefix, no trailing slash except for `/` (lowercase when case-insensitive).
    pub prefix: String,
    /// Of a `caseInsensitivePaths` app: compared with the lowercase path.
    pub case_insensitive: bool,
}

impl RoutePattern {
    /// `host/path`, `host` or `/path`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty route pattern".into());
        }
        if s.contains("://") {
            return Err(format!(
                "route pattern `{s}` must not have a scheme: write `host/path` or `/path`"
            ));
        }
        let (host, path) = match s.find('/') {
            Some(0) => (None, s),
            Some(i) => (Some(&s[..i]), &s[i..]),
            None => (Some(s), "/"),
        };
        if let Some(h) = host {
            let ok = h
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]*".contains(c));
            if !ok || h.starts_with('.') || h.starts_with(':') {
                return Err(format!(
                    "`{h}` is not a valid host name in route pattern `{s}`"
                ));
            }
        }
        if path.contains("..") || path.contains("//") || path.contains('?') || path.contains('#') {
            return Err(format!("route pattern `{s}` must have a plain path prefix"));
        }
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            path.trim_end_matches('/').to_string()
        };
        Ok(Self {
            host: host.map(|h| h.to_ascii_lowercase()),
            prefix,
            case_insensitive: false,
        })
    }

    /// The pattern of a `caseInsensitivePaths` app.
    pub fn case_insensitive(self) -> Self {
        Self {
            prefix: crate::edge::path::fold_case(&self.prefix),
            case_insensitive: true,
            ..self
        }
    }

    fn matches(&self, host: &str, host_with_port: &str, path: &str) -> bool {
        let host_ok = match &self.host {
            None => true,
            Some(h) if h.contains(':') => h == host_with_port,
            Some(h) => match h.strip_prefix("*.") {
                Some(suffix) => {
                    host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}"))
                }
                None => h == host,
            },
        };
        host_ok
            && if self.case_insensitive && self.prefix != "/" {
                under_prefix(&crate::edge::path::fold_case(path), &self.prefix)
            } else {
                under_prefix(path, &self.prefix)
            }
    }
}

#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<(RoutePattern, usize)>,
}

impl Router {
    pub fn new(mut routes: Vec<(RoutePattern, usize)>) -> Self {
        routes.sort_by_key(|(r, _)| {
            (
                r.host.is_none(),
                r.host.as_ref().is_some_and(|h| h.starts_with("*.")),
                std::cmp::Reverse(r.prefix.len()),
            )
        });
        Self { routes }
    }

    /// Every pattern and the index it routes to (for checks of overlapping routes).
    pub fn patterns(&self) -> impl Iterator<Item = (&RoutePattern, usize)> {
        self.routes.iter().map(|(r, i)| (r, *i))
    }

    /// Index of the app serving `host` (lowercase, no port) and `path` (normalized).
    pub fn route(&self, host: &str, host_with_port: &str, path: &str) -> Option<usize> {
        self.routes
            .iter()
            .find(|(r, _)| r.matches(host, host_with_port, path))
            .map(|(_, i)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_host_then_longest_prefix() {
        let p = |s| RoutePattern::parse(s).unwrap();
        let r = Router::new(vec![
            (p("/"), 0),
            (p("/legacy"), 1),
            (p("app.example.com/"), 2),
            (p("app.example.com/api/"), 3),
            (p("*.example.org"), 4),
        ]);
        assert_eq!(r.route("other", "other", "/x"), Some(0));
        assert_eq!(r.route("other", "other", "/legacy/a"), Some(1));
        assert_eq!(r.route("other", "other", "/legacyx"), Some(0));
        assert_eq!(
            r.route("app.example.com", "app.example.com", "/legacy"),
            Some(2)
        );
        assert_eq!(
            r.route("app.example.com", "app.example.com", "/api/v1"),
            Some(3)
        );
        assert_eq!(r.route("a.example.org", "a.example.org", "/"), Some(4));
        assert_eq!(r.route("example.org", "example.org", "/"), Some(0));
        let only = Router::new(vec![(p("/legacy"), 0)]);
        assert_eq!(only.route("h", "h", "/"), None);
    }

    #[test]
    fn parse_errors() {
        assert!(RoutePattern::parse("https://x/").is_err());
        assert!(RoutePattern::parse("bad host/").is_err());
        assert!(RoutePattern::parse("/a/../b").is_err());
        assert_eq!(
            RoutePattern::parse("App.Example.com")
                .unwrap()
                .host
                .as_deref(),
            Some("app.example.com")
        );
        assert_eq!(RoutePattern::parse("/x/").unwrap().prefix, "/x");
    }

    #[test]
    fn case_insensitive_patterns_match_any_case() {
        let p = |s| RoutePattern::parse(s).unwrap();
        let r = Router::new(vec![(p("/"), 0), (p("/Legacy").case_insensitive(), 1)]);
        assert_eq!(r.route("h", "h", "/LEGACY/x"), Some(1));
        assert_eq!(r.route("h", "h", "/legacy"), Some(1));
        assert_eq!(r.route("h", "h", "/legacyx"), Some(0));
    }
}
