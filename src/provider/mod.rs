//! The built-in OpenID Connect provider for downstream apps (`type: oidc`): discovery,
//! JWKS, authorize (code + PKCE), token (authorization_code, refresh_token with rotation,
//! client_credentials, password), userinfo, introspection, revocation, end session.
//!
//! Users authenticate through the gateway's own login flow and session, so a user signed in
//! for a proxy app is signed in for OIDC apps too (and the other way round).

pub mod acr;
pub mod app_hooks;
pub mod authorize;
pub mod backchannel;
pub mod client_auth;
pub mod consent;
pub mod discovery;
pub mod errors;
pub mod exchange;
pub mod grants;
pub mod introspect;
pub mod keys;
pub mod limits;
pub mod logout;
pub mod par;
pub mod params;
pub mod scopes;
pub mod session_end;
pub mod token;
pub mod userinfo;
pub mod verified;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};

use crate::claims::AttrRef;
use crate::runtime::Runtime;
use crate::secrets::SecretString;
use crate::store::Store;
use crate::web::body::{Body, RequestBody};
use crate::web::respond::RequestCtx;
use keys::SigningKey;

/// Endpoint paths (absolute paths on the gateway).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub discovery: String,
    pub oauth_metadata: String,
    pub authorization: String,
    /// Where the browser comes back to after signing in during an authorization request.
    pub authorization_resume: String,
    pub token: String,
    pub userinfo: String,
    pub jwks: String,
    pub introspection: String,
    pub revocation: String,
    pub end_session: String,
    /// Where the consent page's form is posted (`<authorization>/consent`).
    pub consent: String,
    /// The signed-in user's connected apps page (`connectedApps`).
    pub connected_apps: String,
    /// The pushed authorization request endpoint (RFC 9126).
    pub par: String,
}

#[derive(Debug, Clone)]
pub enum ClientAuth {
    Secret(SecretString),
    Public,
    /// `private_key_jwt`: the client signs assertions with a key of its registered JWK Set.
    Keys(Arc<client_auth::ClientKeys>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessTokenFormat {
    Jwt,
    Opaque,
}

#[derive(Debug, Clone)]
pub struct AccessTokenSettings {
    pub format: AccessTokenFormat,
    pub length: usize,
    pub lifetime: Duration,
    pub allowed_audiences: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RefreshSettings {
    pub allow_offline_access: bool,
    pub length: usize,
    pub lifetime: Duration,
    pub reuse_grace: Duration,
    /// `survivesLogout`: refresh tokens outlive the session they were issued in.
    pub survives_logout: bool,
}

#[derive(Debug, Clone, Default)]
pub struct GrantTypes {
    pub authorization_code: bool,
    pub refresh_token: bool,
    pub client_credentials: bool,
    pub password: bool,
}

/// A downstream app (OAuth client), compiled from a `type: oidc` app.
#[derive(Debug, Clone)]
pub struct Client {
    pub app: String,
    pub id: String,
    pub auth: ClientAuth,
    /// `tokenEndpointAuthMethod`: the one method it may use; `None`: basic or post for a
    /// secret, none for a public client.
    pub auth_method: Option<client_auth::AuthMethod>,
    pub redirect_uris: Vec<String>,
    pub logout_redirect_uris: Vec<String>,
    pub grants: GrantTypes,
    /// Scopes beyond the standard ones this client may ask for.
    pub custom_scopes: Vec<String>,
    /// Connectors its users log in with.
    pub idps: Vec<String>,
    pub claims_mapping: Vec<(String, AttrRef)>,
    pub access_token: AccessTokenSettings,
    pub refresh: RefreshSettings,
    pub id_token_lifetime: Duration,
    /// Attribute `sub` comes from (default: `<idp>.sub`).
    pub subject_attribute: Option<AttrRef>,
    pub pairwise: bool,
    /// `attrProviders`: directories whose attributes are merged before claims are issued.
    pub attr_providers: Vec<crate::connectors::providers::AttrProvider>,
    pub hooks: ClientHooks,
    /// Whose tokens this client may introspect besides its own (`introspection.tokensOf`).
    pub introspects: Introspects,
    /// `rateLimit`: the token bucket of its `client_credentials` and `password` requests.
    pub rate_limit: Option<limits::RateLimit>,
    /// `backchannelLogoutURI`: told when a session it got a code in ends.
    pub backchannel_logout: Option<backchannel::Registration>,
    /// `frontchannelLogoutURI`: loaded in the signed-out page when such a session ends.
    pub frontchannel_logout: Option<backchannel::Registration>,
    /// `consent`: trusted (no page) or required (the user allows its scopes once).
    pub consent: consent::ConsentPolicy,
    /// `strictScopes`: a scope it may not have is `invalid_scope` rather than ignored.
    pub strict_scopes: bool,
    /// `tokenEndpoint.acceptQueryParameters`: its (Basic-authenticated) token requests may
    /// carry their parameters in the query string.
    pub token_query_parameters: bool,
    /// Index in `Provider::keys` of the key signing its ID tokens
    /// (`idTokenSignedResponseAlg`; 0: the first key).
    pub id_token_key: usize,
    /// Index of the key signing its JWT access tokens (`accessTokenSignedResponseAlg`).
    pub access_token_key: usize,
    /// `requirePKCE`: authorization requests need a code challenge (always for public ones).
    pub require_pkce: bool,
    /// `authorizationCodeLifetimeSeconds`.
    pub code_lifetime: Duration,
    /// `requirePushedAuthorizationRequests`: its authorization requests must come by
    /// `request_uri` from the pushed authorization request endpoint.
    pub require_par: bool,
    /// `tokenExchange.audiences`: it may exchange access tokens (RFC 8693) for tokens of
    /// these audiences; `None`: no token exchange.
    pub token_exchange: Option<Vec<String>>,
}

/// Whose tokens a client may introspect besides its own (RFC 7662 section 4: a resource
/// server sees only tokens meant for it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Introspects {
    /// Its own tokens only (the default).
    #[default]
    Own,
    /// Also the tokens of these client IDs.
    Clients(Vec<String>),
    /// Every client's tokens (`tokensOf: ["*"]`).
    All,
}

/// The extension hooks of an OIDC app.
#[derive(Debug, Clone, Default)]
pub struct ClientHooks {
    pub is_authenticated: Option<crate::extensions::Hook>,
    pub authenticate: Option<crate::extensions::Hook>,
    /// Checks password-grant credentials instead of the local connectors.
    pub backchannel: Option<crate::extensions::Hook>,
    pub id_token_claims: Option<crate::extensions::Hook>,
    pub access_token_claims: Option<crate::extensions::Hook>,
    /// `loadAttrsSE`: attributes loaded at the authorization endpoint (see `app_hooks`).
    pub load_attributes: Option<crate::extensions::Hook>,
    /// `authorization.isAuthorizedSE`: may this user get a code (see `app_hooks`).
    pub is_authorized: Option<crate::extensions::Hook>,
    /// Set when the provider has a BuildUserInfoClaims hook (it reads grants' attributes).
    pub keep_attributes: bool,
}

impl ClientHooks {
    /// Token and userinfo hooks read the user's attributes, so grants keep a copy of them.
    pub fn need_attributes(&self) -> bool {
        self.keep_attributes || self.id_token_claims.is_some() || self.access_token_claims.is_some()
    }
}

impl Client {
    pub fn is_public(&self) -> bool {
        matches!(self.auth, ClientAuth::Public)
    }

    /// May a user grant it scope `s`: a standard scope, or one of its custom scopes?
    pub fn may_have_user_scope(&self, s: &str) -> bool {
        let standard = s == "openid"
            || s == "offline_access"
            || crate::claims::oidc::SCOPE_CLAIMS
                .iter()
                .any(|(n, _)| *n == s);
        standard || self.may_have_client_scope(s)
    }

    /// May it have scope `s` for itself (client credentials): only its custom scopes.
    pub fn may_have_client_scope(&self, s: &str) -> bool {
        self.custom_scopes.iter().any(|c| c == s)
    }

    /// May this client learn about a token issued to `token_client`?
    pub fn may_introspect(&self, token_client: &str) -> bool {
        self.id == token_client
            || match &self.introspects {
                Introspects::Own => false,
                Introspects::Clients(ids) => ids.iter().any(|id| id == token_client),
                Introspects::All => true,
            }
    }
}

#[derive(Debug)]
pub struct Provider {
    /// The issuer URL, without a trailing slash.
    pub issuer: String,
    pub endpoints: Endpoints,
    /// The first key signs; all are published.
    pub keys: Arc<Vec<SigningKey>>,
    pub clients: HashMap<String, Client>,
    pub store: Arc<dyn Store>,
    /// The bytes of token state it may keep in the store (`tokenStateMiB`).
    state: limits::StateBudget,
    /// Access tokens whose signature verified (by text), for repeated introspection.
    verified: verified::VerifiedTokens,
    pub pairwise_salt: Option<SecretString>,
    /// `buildUserInfoClaimsSE`.
    pub userinfo_se: Option<crate::extensions::Hook>,
    /// `introspection.usernameAttribute`: the attribute (under the user's IdP) introspection
    /// answers as `username` (`None`: `username`, else `preferred_username`).
    pub username_attribute: Option<String>,
    /// Marks ended sessions, so that their grants end (the sessions' listener).
    pub session_ends: Arc<session_end::SessionEnds>,
    /// The sessions' store (set by the configuration once both are compiled): a grant's
    /// session that is no longer there expired (idle or lifetime) and its grants end with it.
    pub session_store: Option<Arc<dyn Store>>,
    /// `pushedAuthorizationRequests`: how long pushed requests live, how many per client.
    pub par: par::Settings,
    /// What discovery says of `acr` and `amr` (from the clients' connectors).
    pub acr_advertised: acr::Advertised,
    discovery_json: String,
    metadata_json: String,
    jwks_json: String,
}

/// The provider's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Discovery,
    Metadata,
    Jwks,
    Authorize,
    Resume,
    Token,
    UserInfo,
    Introspect,
    Revoke,
    EndSession,
    Consent,
    ConnectedApps,
    Par,
}

impl Provider {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        issuer: String,
        endpoints: Endpoints,
        keys: Vec<SigningKey>,
        clients: HashMap<String, Client>,
        store: Arc<dyn Store>,
        state_budget_bytes: usize,
        pairwise_salt: Option<SecretString>,
        metrics: Arc<crate::telemetry::metrics::Metrics>,
        acr_advertised: acr::Advertised,
    ) -> Self {
        let keys = Arc::new(keys);
        let notifier = backchannel::Notifier::new(issuer.clone(), keys.clone(), metrics);
        let session_ends = Arc::new(session_end::SessionEnds::new(
            store.clone(),
            clients.values(),
            notifier,
            issuer.clone(),
        ));
        let mut p = Self {
            issuer,
            endpoints,
            keys,
            clients,
            store,
            session_ends,
            session_store: None,
            par: Default::default(),
            acr_advertised,
            state: limits::StateBudget::new(state_budget_bytes),
            verified: Default::default(),
            pairwise_salt,
            userinfo_se: None,
            username_attribute: None,
            discovery_json: String::new(),
            metadata_json: String::new(),
            jwks_json: String::new(),
        };
        p.discovery_json = discovery::document(&p, true).to_string();
        p.metadata_json = discovery::document(&p, false).to_string();
        p.jwks_json = discovery::jwks(&p).to_string();
        p
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// The user's name as introspection answers it (RFC 7662 `username`): the configured
    /// attribute of the IdP they signed in with, else what local and LDAP connectors call
    /// `username`, else what OpenID Connect IdPs call `preferred_username`.
    pub fn username(&self, attrs: &crate::claims::Attributes, idp: &str) -> Option<String> {
        let names: &[&str] = match &self.username_attribute {
            Some(name) => &[name.as_str()],
            None => &["username", "preferred_username"],
        };
        names.iter().find_map(|n| {
            attrs
                .get(&format!("{idp}.{n}"))
                .and_then(crate::claims::render_value)
                .map(|v| v.into_owned())
        })
    }

    /// Absolute URL of an endpoint path.
    pub fn url(&self, path: &str) -> String {
        let origin = match url::Url::parse(&self.issuer) {
            Ok(u) => u.origin().ascii_serialization(),
            Err(_) => self.issuer.clone(),
        };
        format!("{origin}{path}")
    }

    fn endpoint(&self, path: &str) -> Option<Endpoint> {
        let e = &self.endpoints;
        [
            (&e.discovery, Endpoint::Discovery),
            (&e.oauth_metadata, Endpoint::Metadata),
            (&e.jwks, Endpoint::Jwks),
            (&e.authorization, Endpoint::Authorize),
            (&e.authorization_resume, Endpoint::Resume),
            (&e.token, Endpoint::Token),
            (&e.userinfo, Endpoint::UserInfo),
            (&e.introspection, Endpoint::Introspect),
            (&e.revocation, Endpoint::Revoke),
            (&e.end_session, Endpoint::EndSession),
            (&e.consent, Endpoint::Consent),
            (&e.connected_apps, Endpoint::ConnectedApps),
            (&e.par, Endpoint::Par),
        ]
        .into_iter()
        .find(|(p, _)| p.as_str() == path)
        .map(|(_, ep)| ep)
    }

    /// Is `path` one of the provider's endpoints?
    pub fn serves(&self, path: &str) -> bool {
        self.endpoint(path).is_some()
    }

    pub async fn handle(
        &self,
        rt: &Runtime,
        req: Request<RequestBody>,
        ctx: &RequestCtx,
        path: &str,
    ) -> Response<Body> {
        let Some(endpoint) = self.endpoint(path) else {
            return crate::web::rejection::Rejection::NoRoute.answer(ctx);
        };
        match endpoint {
            Endpoint::Discovery => discovery::serve(&self.discovery_json, "public, max-age=300"),
            Endpoint::Metadata => discovery::serve(&self.metadata_json, "public, max-age=300"),
            Endpoint::Jwks => discovery::serve(&self.jwks_json, "public, max-age=300"),
            Endpoint::Authorize => authorize::authorize(self, rt, req, ctx).await,
            Endpoint::Resume => authorize::resume(self, rt, req, ctx).await,
            Endpoint::Token => token::token(self, rt, req, ctx).await,
            Endpoint::UserInfo => userinfo::userinfo(self, rt, req, ctx).await,
            Endpoint::Introspect => introspect::introspect(self, req).await,
            Endpoint::Revoke => introspect::revoke(self, req).await,
            Endpoint::EndSession => logout::end_session(self, rt, req, ctx).await,
            Endpoint::Consent => consent::decide(self, rt, req, ctx).await,
            Endpoint::ConnectedApps => consent::connected_apps(self, rt, req, ctx).await,
            Endpoint::Par => par::push(self, req).await,
        }
    }
}
