//! What every handler shares, below all of them in the dependency order: the one body type, the
//! per-request context, and the builders of the gateway's own responses.
//!
//! `server` → {`proxy`, `provider`} → `login` → {`session`, `connectors`} → `store`; every one of
//! them may use `web`, and `web` uses none of them.

pub mod body;
pub mod rejection;
pub mod respond;
