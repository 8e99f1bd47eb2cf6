//! Identity sources. Each connector has a unique name that namespaces the attributes it
//! puts in a session (`<name>.<attribute>`). Login-capable connectors are listed in
//! policies' `idps`; upstream OIDC and LDAP connectors plug in beside `local`.

pub mod local;

use std::collections::HashMap;
use std::sync::Arc;

pub use local::LocalConnector;

#[derive(Debug)]
pub enum Connector {
    Local(LocalConnector),
}

impl Connector {
    pub fn name(&self) -> &str {
        match self {
            Connector::Local(c) => &c.name,
        }
    }
    /// Human-readable label for the IdP picker.
    pub fn display_name(&self) -> String {
        match self {
            Connector::Local(c) => format!("{} (username and password)", c.name),
        }
    }
    pub fn can_login(&self) -> bool {
        true
    }
}

#[derive(Debug, Default)]
pub struct Connectors {
    by_name: HashMap<String, Arc<Connector>>,
}

impl Connectors {
    pub fn insert(&mut self, c: Connector) {
        self.by_name.insert(c.name().to_string(), Arc::new(c));
    }
    pub fn get(&self, name: &str) -> Option<&Arc<Connector>> {
        self.by_name.get(name)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
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
