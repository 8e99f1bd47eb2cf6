//! Identity sources. Each connector has a unique name that namespaces the attributes it
//! puts in a session (`<name>.<attribute>`). Login-capable connectors are listed in
//! policies' `idps`; upstream OIDC and LDAP connectors plug in beside `local`.

pub mod access_tokens;
pub mod assurance;
pub mod ldap;
pub mod local;
pub mod oidc;
pub mod providers;
pub mod username;

use std::collections::HashMap;
use std::sync::Arc;

pub use ldap::LdapConnector;
pub use local::LocalConnector;
pub use oidc::OidcConnector;

#[derive(Debug)]
pub enum Connector {
    Local(LocalConnector),
    Oidc(OidcConnector),
    Ldap(LdapConnector),
}

impl Connector {
    pub fn name(&self) -> &str {
        match self {
            Connector::Local(c) => &c.name,
            Connector::Oidc(c) => &c.name,
            Connector::Ldap(c) => &c.name,
        }
    }
    /// Human-readable label for the IdP picker.
    pub fn display_name(&self) -> String {
        match self {
            Connector::Local(c) => format!("{} (username and password)", c.name),
            Connector::Oidc(c) if !c.available() => {
                format!("{} ({}, currently unavailable)", c.name, c.preset.label())
            }
            Connector::Oidc(c) => format!("{} ({})", c.name, c.preset.label()),
            Connector::Ldap(c) => format!("{} (directory username and password)", c.name),
        }
    }
    pub fn can_login(&self) -> bool {
        true
    }
}

#[derive(Debug, Default, Clone)]
pub struct Connectors {
    by_name: HashMap<String, Arc<Connector>>,
    /// What a login at each connector achieves (`acr`, `amr`), by name.
    assurance: HashMap<String, assurance::Assurance>,
}

impl Connectors {
    pub fn insert(&mut self, c: Connector) {
        self.by_name.insert(c.name().to_string(), Arc::new(c));
    }
    /// Sets what a login at connector `name` achieves (`connectors[].acr`, `amr`).
    pub fn set_assurance(&mut self, name: &str, a: assurance::Assurance) {
        self.assurance.insert(name.to_string(), a);
    }
    /// What a login at connector `name` achieves, `at` (Unix seconds), with the upstream
    /// IdP's tokens when it has them (see `Assurance::achieved`); nothing stated for a
    /// connector without settings.
    pub fn achieved(
        &self,
        name: &str,
        upstream: Option<&oidc::UpstreamTokens>,
        at: u64,
    ) -> assurance::Authentication {
        match self.assurance.get(name) {
            Some(a) => a.achieved(upstream, at),
            None => assurance::Assurance::default().achieved(upstream, at),
        }
    }
    /// The connectors' configured assurances, by name.
    pub fn assurances(&self) -> impl Iterator<Item = (&str, &assurance::Assurance)> {
        self.assurance.iter().map(|(n, a)| (n.as_str(), a))
    }
    /// The configured `acr` of connector `name`.
    pub fn acr_of(&self, name: &str) -> Option<&str> {
        self.assurance.get(name)?.acr.as_deref()
    }
    pub fn get(&self, name: &str) -> Option<&Arc<Connector>> {
        self.by_name.get(name)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
    /// The upstream OpenID Connect connectors.
    pub fn oidc(&self) -> impl Iterator<Item = &OidcConnector> {
        self.by_name.values().filter_map(|c| match c.as_ref() {
            Connector::Oidc(o) => Some(o),
            _ => None,
        })
    }
    /// The LDAP connectors (readiness pings them).
    pub fn ldap(&self) -> impl Iterator<Item = &LdapConnector> {
        self.by_name.values().filter_map(|c| match c.as_ref() {
            Connector::Ldap(l) => Some(l),
            _ => None,
        })
    }
    /// Names of every connector a user can log in with, sorted.
    pub fn login_capable(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_name
            .values()
            .filter(|c| c.can_login())
            .map(|c| c.name().to_string())
            .collect();
        v.sort();
        v
    }
}
