//! Tessera: an identity orchestrator. See `README.md` for the tour and
//! `docs/architecture.md` for how it is built.

pub mod apis;
pub mod claims;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod demo;
pub mod edge;
pub mod extensions;
pub mod login;
pub mod pages;
pub mod provider;
pub mod proxy;
pub mod runtime;
pub mod secrets;
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod web;
