//! `connectors`: local users, upstream OIDC IdPs, LDAP directories.

use crate::claims::Attributes;
use crate::config::decode::decode;
use crate::config::source::ConfigPath;
use crate::connectors::assurance::{is_token, Assurance};
use crate::connectors::local::{check_hash, LocalUser};
use crate::connectors::{Connector, Connectors, LocalConnector};
use serde_yaml_ng::Value;
use std::collections::{HashMap, HashSet};

use super::*;

pub(super) fn yaml_to_attr(v: &Value) -> Option<serde_json::Value> {
    match v {
        Value::String(s) => Some(s.clone().into()),
        Value::Bool(b) => Some((*b).into()),
        Value::Number(n) => serde_json::to_value(n).ok(),
        Value::Sequence(items) => items
            .iter()
            .map(|i| match i {
                Value::Sequence(_) | Value::Mapping(_) | Value::Null | Value::Tagged(_) => None,
                other => yaml_to_attr(other),
            })
            .collect::<Option<Vec<_>>>()
            .map(serde_json::Value::Array),
        _ => None,
    }
}

pub(super) fn compile_connectors(v: Option<&Value>, ctx: &mut Ctx<'_>) -> Connectors {
    let path = ConfigPath::root().key("connectors");
    let mut out = Connectors::default();
    let mut seen = HashSet::new();
    for (i, item) in list(v, &path, ctx).iter().enumerate() {
        let p = path.index(i);
        let Some((t, rest)) = tagged(
            item,
            &p,
            &CONNECTOR_TYPES,
            &PLANNED_CONNECTOR_TYPES,
            "connector",
            ctx,
        ) else {
            // still reserve the name so references to it do not cascade into more errors
            if let Some(n) = item.get("name").and_then(Value::as_str) {
                ctx.connectors.insert(n.to_string());
            }
            continue;
        };
        // Reserve the name first, so references to a broken connector do not cascade.
        let name = rest.get("name").and_then(Value::as_str).map(str::to_string);
        if let Some(n) = &name {
            if !check_name(n, &p.key("name"), &mut seen, "connector", ctx) {
                continue;
            }
            ctx.connectors.insert(n.clone());
        }
        // What a login there achieves (`acr`, `amr`): read before the connector takes its
        // settings; a bad value fails the connector like any other setting.
        let connector = match t.as_str() {
            "local" => decode::<LocalConnectorConfig>(&rest, &p, ctx.diags).and_then(|mut cfg| {
                let a = compile_assurance(cfg.acr.take(), cfg.amr.take(), PASSWORD, &p, ctx);
                compile_local(cfg, &p, ctx)
                    .zip(a)
                    .map(|(c, a)| (Connector::Local(c), a))
            }),
            "oidc" | "okta" | "azure" | "auth0" | "keycloak" => {
                decode::<OidcConnectorConfig>(&rest, &p, ctx.diags).and_then(|mut cfg| {
                    let a = compile_assurance(cfg.acr.take(), cfg.amr.take(), &[], &p, ctx);
                    crate::config::upstream::compile_oidc_connector(&t, cfg, &p, ctx)
                        .zip(a)
                        .map(|(c, a)| (Connector::Oidc(c), a))
                })
            }
            "ldap" => decode::<LdapConnectorConfig>(&rest, &p, ctx.diags).and_then(|mut cfg| {
                let a = compile_assurance(cfg.acr.take(), cfg.amr.take(), PASSWORD, &p, ctx);
                ldap::compile_ldap(cfg, &p, ctx)
                    .zip(a)
                    .map(|(c, a)| (Connector::Ldap(c), a))
            }),
            _ => None,
        };
        if let Some((c, a)) = connector {
            out.set_assurance(c.name(), a);
            out.insert(c);
        }
    }
    out
}

/// What a password login uses, unless `amr` says otherwise (RFC 8176 `pwd`).
const PASSWORD: &[&str] = &["pwd"];

/// `acr` and `amr` of a connector (`default_amr` when `amr` is not set).
fn compile_assurance(
    acr: Option<String>,
    amr: Option<Vec<String>>,
    default_amr: &[&str],
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<Assurance> {
    let mut ok = true;
    if let Some(a) = acr.as_deref().filter(|a| !is_token(a)) {
        ctx.diags.error_hint(
            &p.key("acr"),
            if a.is_empty() {
                "`acr` must not be empty".to_string()
            } else {
                format!("`acr` `{a}` is not a valid value")
            },
            "use a name or URI without spaces, e.g. urn:example:mfa (acr_values is space-separated)",
        );
        ok = false;
    }
    let amr = match amr {
        None => default_amr.iter().map(|m| m.to_string()).collect(),
        Some(list) => {
            for (i, m) in list.iter().enumerate() {
                if !is_token(m) {
                    ctx.diags.error_hint(
                        &p.key("amr").index(i),
                        if m.is_empty() {
                            "`amr` values must not be empty".to_string()
                        } else {
                            format!("`amr` value `{m}` is not a valid value")
                        },
                        "use RFC 8176 names such as pwd, otp, mfa, hwk (no spaces)",
                    );
                    ok = false;
                } else if list[..i].contains(m) {
                    ctx.diags.error(
                        &p.key("amr").index(i),
                        format!("`amr` value `{m}` is repeated"),
                    );
                    ok = false;
                }
            }
            list
        }
    };
    ok.then_some(Assurance { acr, amr })
}

pub(super) fn compile_local(
    cfg: LocalConnectorConfig,
    p: &ConfigPath,
    ctx: &mut Ctx<'_>,
) -> Option<LocalConnector> {
    let mut users = HashMap::new();
    let mut ok = true;
    for (j, u) in cfg.users.iter().enumerate() {
        let up = p.key("users").index(j);
        if u.username.is_empty() {
            ctx.diags
                .error(&up.key("username"), "username must not be empty");
            ok = false;
        }
        if let Err(e) = check_hash(&u.passwordHash) {
            ctx.diags.error_hint(
                &up.key("passwordHash"),
                e,
                "generate one with `tessera hash-password`",
            );
            ok = false;
        }
        let mut attributes = Attributes::new();
        for (k, v) in &u.attributes {
            match yaml_to_attr(v) {
                Some(a) => {
                    attributes.insert(k.clone(), a);
                }
                None => {
                    ctx.diags.error(
                        &up.key("attributes").key(k),
                        "attributes must be strings, numbers, booleans or lists of those",
                    );
                    ok = false;
                }
            }
        }
        let user = LocalUser {
            password_hash: u.passwordHash.clone(),
            attributes,
        };
        if users.insert(u.username.clone(), user).is_some() {
            ctx.diags.error(
                &up.key("username"),
                format!("duplicate username `{}`", u.username),
            );
            ok = false;
        }
    }
    let errors_before = ctx.diags.items.len();
    let throttle = throttle(cfg.throttle.as_ref(), &p.key("throttle"), ctx);
    ok &= ctx.diags.items.len() == errors_before;
    ok.then(|| LocalConnector::new(cfg.name, users, throttle))
}
