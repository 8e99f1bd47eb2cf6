//! Readiness: every store in use and every LDAP directory answers. The public answer (main
//! listener) says only up or down; the names and errors are for operators (admin listener,
//! and the log).

use http::StatusCode;

use crate::runtime::Runtime;
use crate::web::body::Body;
use crate::web::respond;

/// What readiness found.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Stores that did not answer, by cache name, with the error.
    stores_down: serde_json::Map<String, serde_json::Value>,
    /// LDAP directories that did not answer, by connector name, with the error.
    directories_down: serde_json::Map<String, serde_json::Value>,
    /// Upstream IdPs whose discovery failed (they do not make the gateway unready).
    idps_down: Vec<String>,
}

impl Readiness {
    /// Pings every store and directory in use (concurrently; each bounded by its timeout).
    pub async fn check(rt: &Runtime) -> Self {
        let pings = rt.stores.iter().map(|(name, store)| async move {
            store
                .ping()
                .await
                .err()
                .map(|e| (name.clone(), serde_json::Value::from(e.to_string())))
        });
        // LDAP directories: requests that need one fail closed while it is down, so it is
        // reported as down (each ping bounded by the connector's timeoutMillis).
        let directory_pings = rt.connectors.ldap().map(|c| async move {
            c.ping()
                .await
                .err()
                .map(|e| (c.name.clone(), serde_json::Value::from(e.to_string())))
        });
        let (stores, directories) = futures_util::future::join(
            futures_util::future::join_all(pings),
            futures_util::future::join_all(directory_pings),
        )
        .await;
        // An unavailable upstream IdP does not make the gateway unready (other apps and IdPs
        // keep working); it is reported so operators see it.
        let idps_down = rt
            .connectors
            .oidc()
            .filter(|c| !c.available())
            .map(|c| c.name.clone())
            .collect();
        Self {
            stores_down: stores.into_iter().flatten().collect(),
            directories_down: directories.into_iter().flatten().collect(),
            idps_down,
        }
    }

    pub fn ready(&self) -> bool {
        self.stores_down.is_empty() && self.directories_down.is_empty()
    }

    /// For anyone who can reach the gateway (probes, load balancers): `{"status":"up"}` 200
    /// or `{"status":"down"}` 503, nothing else; what is down is logged.
    pub fn public(&self) -> http::Response<Body> {
        if self.ready() {
            return respond::json(StatusCode::OK, r#"{"status":"up"}"#.to_string());
        }
        tracing::warn!(
            stores = ?self.stores_down.keys().collect::<Vec<_>>(),
            directories = ?self.directories_down.keys().collect::<Vec<_>>(),
            "readiness: down"
        );
        respond::json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"down"}"#.to_string(),
        )
    }

    /// For operators (admin listener): which stores, directories and IdPs are down, and why.
    pub fn detailed(&self) -> http::Response<Body> {
        if !self.ready() {
            return respond::json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({
                    "status": "down",
                    "stores": self.stores_down,
                    "directories": self.directories_down,
                    "unavailableIdps": self.idps_down,
                })
                .to_string(),
            );
        }
        if self.idps_down.is_empty() {
            return respond::json(StatusCode::OK, r#"{"status":"up"}"#.to_string());
        }
        respond::json(
            StatusCode::OK,
            serde_json::json!({"status": "up", "unavailableIdps": self.idps_down}).to_string(),
        )
    }
}

/// The health location on the main listener.
pub async fn public(rt: &Runtime) -> http::Response<Body> {
    Readiness::check(rt).await.public()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text(resp: http::Response<Body>) -> (u16, String) {
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn down() -> Readiness {
        let mut r = Readiness::default();
        r.stores_down
            .insert("shared".into(), "redis: connection refused".into());
        r.directories_down
            .insert("corp-ldap".into(), "ldap://10.0.0.5: timeout".into());
        r.idps_down.push("okta".into());
        r
    }

    #[tokio::test]
    async fn the_public_answer_names_nothing() {
        assert_eq!(
            text(Readiness::default().public()).await,
            (200, r#"{"status":"up"}"#.into())
        );
        assert_eq!(
            text(down().public()).await,
            (503, r#"{"status":"down"}"#.into())
        );
        // an IdP down does not make the gateway unready, and is not named
        let mut idp = Readiness::default();
        idp.idps_down.push("okta".into());
        assert_eq!(text(idp.public()).await, (200, r#"{"status":"up"}"#.into()));
    }

    #[tokio::test]
    async fn the_detailed_answer_names_what_is_down() {
        let (status, body) = text(down().detailed()).await;
        assert_eq!(status, 503);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "status": "down",
                "stores": {"shared": "redis: connection refused"},
                "directories": {"corp-ldap": "ldap://10.0.0.5: timeout"},
                "unavailableIdps": ["okta"],
            })
        );
        let mut idp = Readiness::default();
        idp.idps_down.push("okta".into());
        assert_eq!(
            text(idp.detailed()).await,
            (200, r#"{"status":"up","unavailableIdps":["okta"]}"#.into())
        );
    }
}
