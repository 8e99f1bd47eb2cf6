//! The integration tests: one crate, so the library and the test support link once.
//!
//! Each module drives the real `tessera` binary (or the library) the way a user would; `support`
//! starts the binary, a reporting upstream, Redis and slapd.

mod support;

mod anonymous_state;
mod attributes;
mod bearer;
mod cli;
mod client_auth;
mod consent;
mod deploy;
mod edge;
mod extension_apis;
mod extension_app_hooks;
mod extension_hooks;
mod extension_upstream_login;
mod extensions;
mod forward_auth;
mod ldap;
mod login;
mod logout;
mod observability;
mod par;
mod pipeline;
mod provider;
mod provider_acr;
mod provider_compat;
mod proxy;
mod redis;
mod redis_provider;
mod reload;
mod server;
mod throttle;
mod token_exchange;
mod upstream_oidc;
