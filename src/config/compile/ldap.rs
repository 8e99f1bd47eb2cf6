//! `type: ldap` connectors and apps' `attrProviders` (which name them).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{check_attr_ref, unknown_ref, Ctx};
use crate::claims::AttrRef;
use crate::config::model::{AttrProviderConfig, LdapConnectorConfig};
use crate::config::source::ConfigPath;
use crate::connectors::ldap::{check_dn, check_filter, LdapSettings, RESERVED_ATTRIBUTES};
use crate::connectors::providers::AttrProvider;
use crate::connectors::{Connector, Connectors, LdapConnector};
use crate::secrets::SecretString;
use crate::tls;

const DEFAULT_TIMEOUT_MILLIS: u64 = 2000;
const DEFAULT_POOL_SIZE: usize = 8;

/// An attribute description as LDAP names it: a name (letter, then letters, digits, `-`) or
/// a numeric OID.
fn valid_attribute(a: &str) -> bool {
    let name = !a.is_empty()
        && a.starts_with(|c: char| c.is_ascii_alphabetic())
        && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let oid = !a.is_empty()
        && a.chars().all(|c| c.is_ascii_digit() || c == '.')
        && !a.starts_with('.')
        && !a.ends_with('.');
    name || oid
}

pub(super) fn compile_ldap(
    cfg: LdapConnectorConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<LdapConnector> {
    let errors_before = ctx.diags.items.len();
    // url
    let mut tls_needed = cfg.startTLS;
    match url::Url::parse(&cfg.url) {
        Err(e) => ctx.diags.error_hint(
            &p.key("url"),
            format!("`{}` is not a valid URL: {e}", cfg.url),
            "write ldaps://ldap.example.com:636 or ldap://ldap.example.com:389",
        ),
        Ok(u) => {
            match u.scheme() {
                "ldap" => {}
                "ldaps" => {
                    tls_needed = true;
                    if cfg.startTLS {
                        ctx.diags.error_hint(
                            &p.key("startTLS"),
                            "StartTLS is for ldap:// URLs; ldaps:// is TLS from the start",
                            "remove `startTLS`, or use an ldap:// URL",
                        );
                    }
                }
                other => ctx.diags.error_hint(
                    &p.key("url"),
                    format!("URL scheme `{other}` is not supported"),
                    "use ldaps:// (or ldap:// with `startTLS: true`)",
                ),
            }
            if u.host_str().is_none_or(str::is_empty) {
                ctx.diags.error(&p.key("url"), "the URL has no host");
            }
            if !matches!(u.path(), "" | "/")
                || u.query().is_some()
                || u.fragment().is_some()
                || !u.username().is_empty()
                || u.password().is_some()
            {
                ctx.diags.error_hint(
                    &p.key("url"),
                    "the URL must be only scheme, host and port",
                    "set the search base with `baseDN` and the account with `bindDN`",
                );
            }
        }
    }
    // TLS trust
    let tls_config = match cfg.tls.as_deref() {
        Some(name) => match ctx.tls.get(name) {
            None => {
                let known = ctx.tls.keys().cloned().collect();
                unknown_ref(ctx, &p.key("tls"), "TLS profile", name, known);
                None
            }
            Some(prof) => {
                if !tls_needed {
                    ctx.diags.error_hint(
                        &p.key("tls"),
                        "a TLS profile is set but the connection is plain ldap://",
                        "use an ldaps:// URL or `startTLS: true`",
                    );
                }
                let ca = prof.caFile.as_deref().map(|c| ctx.file(c));
                tls::client_config(ca.as_deref(), prof.minVersion.as_deref())
                    .map_err(|e| {
                        ctx.diags
                            .error(&ConfigPath::root().key("tls").key(name).key("caFile"), e)
                    })
                    .ok()
                    .map(Arc::new)
            }
        },
        None if tls_needed => tls::client_config(None, None)
            .map_err(|e| ctx.diags.error(&p.key("tls"), e))
            .ok()
            .map(Arc::new),
        None => None,
    };
    // DNs, filter, attributes
    for (key, dn) in [("bindDN", &cfg.bindDN), ("baseDN", &cfg.baseDN)] {
        if let Err(e) = check_dn(dn) {
            ctx.diags.error(&p.key(key), e);
        }
    }
    if cfg.bindPassword.is_empty() {
        ctx.diags.error_hint(
            &p.key("bindPassword"),
            "the service account's password is empty",
            "use a secret reference such as <ldap.password>",
        );
    }
    if let Err(e) = check_filter(&cfg.searchFilter) {
        ctx.diags.error_hint(
            &p.key("searchFilter"),
            e,
            "e.g. \"(mail={username})\" or \"(&(objectClass=person)(uid={username}))\"",
        );
    }
    if cfg.attributes.is_empty() {
        ctx.diags.error_hint(
            &p.key("attributes"),
            "list the attributes to fetch",
            "e.g. attributes: [mail, givenName, sn, memberOf]",
        );
    }
    let mut seen = HashSet::new();
    for (i, a) in cfg.attributes.iter().enumerate() {
        let ap = p.key("attributes").index(i);
        if !valid_attribute(a) {
            ctx.diags
                .error(&ap, format!("`{a}` is not an LDAP attribute name"));
        } else if RESERVED_ATTRIBUTES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(a))
        {
            ctx.diags.error(
                &ap,
                format!("`{}.{a}` is set by the connector itself", cfg.name),
            );
        } else if !seen.insert(a.to_ascii_lowercase()) {
            ctx.diags.error(
                &ap,
                format!("attribute `{a}` is listed twice (names are case-insensitive)"),
            );
        }
    }
    // limits
    let timeout_ms = cfg.timeoutMillis.unwrap_or(DEFAULT_TIMEOUT_MILLIS);
    if timeout_ms == 0 {
        ctx.diags.error(
            &p.key("timeoutMillis"),
            "`timeoutMillis` must be greater than 0",
        );
    }
    let pool_size = cfg.poolSize.unwrap_or(DEFAULT_POOL_SIZE);
    if pool_size == 0 {
        ctx.diags
            .error(&p.key("poolSize"), "`poolSize` must be greater than 0");
    }
    let throttle = super::limits::throttle(cfg.throttle.as_ref(), &p.key("throttle"), ctx);
    if ctx.diags.items.len() > errors_before {
        return None;
    }
    let settings = LdapSettings {
        url: cfg.url,
        start_tls: cfg.startTLS,
        tls: tls_config,
        bind_dn: cfg.bindDN,
        bind_password: SecretString::new(cfg.bindPassword),
        base_dn: cfg.baseDN,
        search_filter: cfg.searchFilter,
        attributes: cfg.attributes,
        timeout: Duration::from_millis(timeout_ms),
        pool_size,
        refresh: cfg
            .refreshSeconds
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
    };
    Some(LdapConnector::new(cfg.name, settings, throttle))
}

/// An app's `attrProviders`: each an `ldap` connector and a valid attribute reference of
/// another connector.
pub(in crate::config) fn compile_attr_providers(
    list: &[AttrProviderConfig],
    p: &ConfigPath,
    connectors: &Connectors,
    ctx: &mut Ctx<'_>,
) -> Option<Vec<AttrProvider>> {
    let errors_before = ctx.diags.items.len();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, ap) in list.iter().enumerate() {
        let ip = p.key("attrProviders").index(i);
        if !ctx.connectors.contains(&ap.connector) {
            let known = ctx.connectors.iter().cloned().collect();
            unknown_ref(ctx, &ip.key("connector"), "connector", &ap.connector, known);
        } else {
            match connectors.get(&ap.connector).map(|c| c.as_ref()) {
                Some(Connector::Ldap(_)) | None => {} // None: broken, already reported
                Some(_) => ctx.diags.error_hint(
                    &ip.key("connector"),
                    format!("connector `{}` cannot provide attributes", ap.connector),
                    "attribute providers are `type: ldap` connectors",
                ),
            }
        }
        if !seen.insert(ap.connector.clone()) {
            ctx.diags.error(
                &ip.key("connector"),
                format!("`{}` is listed twice", ap.connector),
            );
        }
        match AttrRef::parse(&ap.usernameMapping) {
            Err(e) => ctx.diags.error_hint(
                &ip.key("usernameMapping"),
                e,
                "e.g. usernameMapping: local.username",
            ),
            Ok(r) if r.connector() == ap.connector => ctx.diags.error_hint(
                &ip.key("usernameMapping"),
                format!(
                    "`{}` would look `{}` up by its own attribute",
                    r.key(),
                    ap.connector
                ),
                "map the username from the connector users sign in with, e.g. local.username",
            ),
            Ok(r) => {
                check_attr_ref(&r, &ip.key("usernameMapping"), ctx);
                out.push(AttrProvider::new(ap.connector.clone(), r));
            }
        }
    }
    (ctx.diags.items.len() == errors_before).then_some(out)
}
