//! A policy's `authentication.bearer`: which issuers' access tokens it accepts, for which
//! audiences and scopes (see `proxy::bearer`).

use crate::config::model::BearerConfig;
use crate::config::source::ConfigPath;
use crate::connectors::{Connector, Connectors};
use crate::proxy::bearer::{BearerPolicy, Issuer};

use super::{unknown_ref, Ctx};

/// How `issuers` names the built-in provider.
pub(super) const PROVIDER: &str = "oidcProvider";

pub(super) fn compile_bearer(
    cfg: &BearerConfig,
    p: &ConfigPath,
    connectors: &Connectors,
    ctx: &mut Ctx<'_>,
) -> Option<BearerPolicy> {
    let mut ok = true;
    if cfg.issuers.is_empty() {
        ctx.diags.error_hint(
            &p.key("issuers"),
            "name at least one issuer whose tokens this location accepts",
            "`oidcProvider` (the built-in provider) or the name of a `type: oidc` connector",
        );
        ok = false;
    }
    let mut issuers = Vec::new();
    for (i, name) in cfg.issuers.iter().enumerate() {
        let ip = p.key("issuers").index(i);
        if issuers.iter().any(|known: &Issuer| match known {
            Issuer::Provider => name == PROVIDER,
            Issuer::Connector { name: n, .. } => n == name,
        }) {
            ctx.diags
                .error(&ip, format!("issuer `{name}` is listed twice"));
            ok = false;
            continue;
        }
        if name == PROVIDER {
            if !ctx.provider_configured {
                ctx.diags.error_hint(
                    &ip,
                    "`oidcProvider` is named as an issuer, but no `oidcProvider` is configured",
                    "configure the built-in provider, or name a `type: oidc` connector",
                );
                ok = false;
            }
            issuers.push(Issuer::Provider);
            continue;
        }
        match connectors.get(name).map(|c| c.as_ref()) {
            Some(Connector::Oidc(_)) => issuers.push(Issuer::Connector {
                name: name.clone(),
                untyped: cfg.untypedTokensFrom.contains(name),
            }),
            Some(_) => {
                ctx.diags.error_hint(
                    &ip,
                    format!("connector `{name}` is not an OpenID Connect IdP: it issues no access tokens"),
                    "name `oidcProvider` or a `type: oidc` connector",
                );
                ok = false;
            }
            // A connector that failed to compile has its name reserved: it was reported.
            None if ctx.connectors.contains(name) => ok = false,
            None => {
                let mut known: Vec<String> = connectors.oidc().map(|c| c.name.clone()).collect();
                if ctx.provider_configured {
                    known.push(PROVIDER.into());
                }
                known.sort();
                unknown_ref(ctx, &ip, "issuer", name, known);
                ok = false;
            }
        }
    }
    if cfg.audiences.is_empty() {
        ctx.diags.error_hint(
            &p.key("audiences"),
            "list the audiences a token must be issued for",
            "a token is accepted only when its `aud` names one of them, e.g. `[https://api.example.com]`",
        );
        ok = false;
    }
    for (i, a) in cfg.audiences.iter().enumerate() {
        if a.trim().is_empty() {
            ctx.diags
                .error(&p.key("audiences").index(i), "an audience cannot be empty");
            ok = false;
        }
    }
    for (i, s) in cfg.scopes.iter().enumerate() {
        // RFC 6749 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        let valid = !s.is_empty()
            && s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !valid {
            ctx.diags.error(
                &p.key("scopes").index(i),
                format!("`{s}` is not a scope: one word, without spaces, quotes or backslashes"),
            );
            ok = false;
        }
    }
    for (i, name) in cfg.untypedTokensFrom.iter().enumerate() {
        if name == PROVIDER || !cfg.issuers.contains(name) {
            ctx.diags.error_hint(
                &p.key("untypedTokensFrom").index(i),
                format!("`{name}` is not a connector listed in `issuers`"),
                "untyped tokens can be accepted only from an upstream connector this policy accepts (the built-in provider always types its tokens)",
            );
            ok = false;
        }
    }
    ok.then(|| BearerPolicy {
        issuers,
        audiences: cfg.audiences.clone(),
        scopes: cfg.scopes.clone(),
        forward_token: cfg.forwardToken,
    })
}
