//! Proxy apps: a legacy web app behind the gateway. `pipeline` runs a request through the
//! app's phases; `policy` and `rules` decide, `headers` builds what the upstream sees,
//! `upstream` calls it.

pub mod bearer;
pub mod forward_auth;
pub mod headers;
pub mod pipeline;
pub mod policy;
pub mod rules;
pub mod upstream;
pub mod upstream_login;

use std::sync::Arc;

use crate::claims::Attributes;
use crate::edge::names::ProtectedNames;
use crate::edge::path::PathRules;
use crate::extensions::Hook;
use headers::InjectedHeader;
use policy::PolicySet;
use upstream::Upstream;

#[derive(Debug, Clone)]
pub struct AppLogout {
    pub location: String,
    pub redirect: String,
    /// `upstreamURL`: the app's own logout, called server-side after a sign-out here.
    pub upstream_url: Option<String>,
}

/// What a denied request gets (`unauthorizedPage`).
#[derive(Debug, Clone, Default)]
pub enum Unauthorized {
    /// The gateway's 403 page.
    #[default]
    Default,
    /// A redirect to this URL or path.
    Redirect(String),
    /// This page, with status 403.
    Page(Arc<str>),
}

/// What an app does with a request its policy lets through.
#[derive(Debug)]
pub enum AppKind {
    /// Forwards it to the app's upstream (`type: proxy`).
    Proxy(Box<Upstream>),
    /// Answers an ingress's forward-auth call with the identity headers; the ingress forwards
    /// (`type: forwardAuth`).
    ForwardAuth(forward_auth::Settings),
}

#[derive(Debug)]
pub struct ProxyApp {
    pub name: String,
    pub kind: AppKind,
    pub preserve_host: bool,
    /// What a denied request gets (`unauthorizedPage`), after `handle_unauthorized_se`.
    pub unauthorized: Unauthorized,
    /// `errorPage`: the page of the gateway's own 5xx answers on this app.
    pub error_page: Option<Arc<str>>,
    /// `handleUnauthorizedSE`: an extension answering denied requests.
    pub handle_unauthorized_se: Option<Hook>,
    /// `modifyRequestSE`: an extension rewriting the upstream request.
    pub modify_request_se: Option<Hook>,
    /// `upstreamLoginSE`: an extension signing the user in at a legacy upstream.
    pub upstream_login: Option<upstream_login::UpstreamLogin>,
    pub headers: Vec<InjectedHeader>,
    pub policies: PolicySet,
    pub logout: Option<AppLogout>,
    /// `attrProviders`: directories consulted after authentication (cached in the session).
    pub attr_providers: Vec<crate::connectors::providers::AttrProvider>,
    /// `loadAttrsSE`: an extension adding attributes after authentication.
    pub load_attrs_se: Option<Hook>,
    /// `modifyResponseSE`: an extension rewriting the upstream's answer.
    pub modify_response_se: Option<Hook>,
    /// `modifyResponseMaxBodyKiB` in bytes: the most of an upstream body that hook reads.
    pub modify_response_max_body: usize,
    /// `headers[].createHeaderSE`: extensions adding upstream headers.
    pub header_hooks: Vec<Hook>,
    /// The headers those hooks are declared to set (`name` beside `createHeaderSE`).
    pub hook_header_names: Vec<http::HeaderName>,
    /// Which paths the app accepts and how it sees them (`pathParameters`,
    /// `caseInsensitivePaths`, `allowTrailingDotOrSpace`).
    pub paths: PathRules,
    /// Protocols a client may upgrade to (lowercase; `websocket` by default).
    pub upgrades: Vec<String>,
    /// Header names no client copy of reaches the upstream, in any spelling: the identity
    /// headers and the trust headers.
    pub protected: ProtectedNames,
}

impl ProxyApp {
    /// The upstream of a proxy app (`None` for a forward-auth app).
    pub fn proxied_to(&self) -> Option<&Upstream> {
        match &self.kind {
            AppKind::Proxy(u) => Some(u),
            AppKind::ForwardAuth(_) => None,
        }
    }
}

/// The subject of the signed-in user, for the access log: `<idp>.sub` of the first of
/// `idps` the session is authenticated by, else of any connector it is authenticated by.
pub(crate) fn subject<'a>(attrs: &'a Attributes, idps: &[String]) -> Option<&'a str> {
    let authenticated = |idp: &str| {
        crate::claims::qualified(attrs, idp, "authenticated")
            == Some(&serde_json::Value::Bool(true))
    };
    let idp = idps
        .iter()
        .map(String::as_str)
        .find(|i| authenticated(i))
        .or_else(|| {
            attrs
                .iter()
                .filter(|(_, v)| **v == serde_json::Value::Bool(true))
                .find_map(|(k, _)| k.strip_suffix(".authenticated"))
        })?;
    crate::claims::qualified(attrs, idp, "sub").and_then(|v| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::subject;
    use serde_json::json;

    #[test]
    fn the_subject_comes_from_the_authenticating_idp() {
        let attrs = [
            ("ldap.sub", json!("uid=a,dc=x")),
            ("ldap.authenticated", json!(true)),
            ("okta.sub", json!("00u1")),
            ("okta.authenticated", json!(true)),
            ("okta.email", json!("a@example.com")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(subject(&attrs, &["okta".into()]), Some("00u1"));
        assert_eq!(subject(&attrs, &["ldap".into()]), Some("uid=a,dc=x"));
        assert!(subject(&attrs, &[]).is_some());
        assert_eq!(subject(&Default::default(), &["okta".into()]), None);
    }
}
