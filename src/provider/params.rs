//! Request parameters of the provider's endpoints: query strings and form bodies with the
//! OAuth rules (no repeated parameter, bounded sizes, form content type), and client
//! authentication (`client_secret_basic`, `client_secret_post`, `none`).

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{self, HeaderMap};
use http::{Method, Request};
use subtle::ConstantTimeEq;

use super::errors::OAuthError;
use super::{Client, ClientAuth, Provider};
use crate::web::body::{read_limited, RequestBody};

const MAX_BODY: usize = 64 * 1024;
const MAX_PARAM: usize = 8 * 1024;

pub type Params = HashMap<String, String>;

/// Parses `application/x-www-form-urlencoded` text; repeated or oversized parameters are
/// `invalid_request` (RFC 6749 3.1: "parameters MUST NOT be included more than once").
pub fn parse(raw: &[u8]) -> Result<Params, OAuthError> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw) {
        if v.len() > MAX_PARAM || k.len() > 256 {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{k}` is too large"
            )));
        }
        if v.is_empty() {
            // Empty parameters are treated as omitted (RFC 6749 3.1).
            continue;
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{k}` is repeated"
            )));
        }
    }
    Ok(out)
}

/// The refusal of parameters in a token-type request's query string.
pub fn query_refused() -> OAuthError {
    OAuthError::invalid_request("parameters must be sent in the body, not the query")
}

/// The headers and form parameters of a POST with a form body.
pub async fn read_form(req: Request<RequestBody>) -> Result<(HeaderMap, Params), OAuthError> {
    let form = read_form_and_query(req).await?;
    // Credentials and grant parameters belong in the body, never in the URL.
    if !form.query.is_empty() {
        return Err(query_refused());
    }
    Ok((form.headers, form.body))
}

/// A POST with a form body, its query string's parameters kept apart (for the one case that
/// may accept them: `token_query::merge`).
pub struct Form {
    pub headers: HeaderMap,
    pub body: Params,
    pub query: Params,
}

/// The headers, form parameters and query parameters of a POST with a form body.
pub async fn read_form_and_query(req: Request<RequestBody>) -> Result<Form, OAuthError> {
    if req.method() != Method::POST {
        return Err(OAuthError::invalid_request("this endpoint takes POST"));
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let (parts, bytes) = read_limited(req, MAX_BODY).await.map_err(|e| OAuthError {
        // 408 for a body that did not arrive in time, 413 for one over the cap
        status: e.status(),
        ..OAuthError::invalid_request(e.message())
    })?;
    let query = match parts.uri.query() {
        Some(q) => parse(q.as_bytes())?,
        None => Params::new(),
    };
    Ok(Form {
        headers: parts.headers,
        body: parse(&bytes)?,
        query,
    })
}

/// The client ID of `Authorization: Basic` credentials, not verified (to pick the client's
/// settings before it is authenticated); `None` without such a header or when malformed.
pub fn basic_client_id(headers: &HeaderMap) -> Option<String> {
    let b = basic_credentials(headers)?;
    let decoded = String::from_utf8(STANDARD.decode(b.trim()).ok()?).ok()?;
    Some(form_decode(decoded.split_once(':')?.0))
}

/// The base64 part of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
}

/// Percent-decoding of the Basic credentials' parts (RFC 6749 2.3.1).
fn form_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Authenticates the calling client; `required` = public clients are refused (introspection,
/// revocation, client credentials).
pub fn authenticate<'p>(
    provider: &'p Provider,
    headers: &HeaderMap,
    params: &Params,
    allow_public: bool,
) -> Result<&'p Client, OAuthError> {
    let basic = basic_credentials(headers);
    let (id, secret, used_basic) = match basic {
        Some(b) => {
            if params.contains_key("client_secret") {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not two",
                ));
            }
            let decoded = STANDARD
                .decode(b.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials", true))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials", true))?;
            let id = form_decode(id);
            if params.get("client_id").is_some_and(|p| *p != id) {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the credentials",
                ));
            }
            (id, Some(form_decode(secret)), true)
        }
        None => {
            let id = params.get("client_id").cloned().ok_or_else(|| {
                OAuthError::invalid_client("client authentication is required", false)
            })?;
            (id, params.get("client_secret").cloned(), false)
        }
    };
    let client = provider.clients.get(&id).ok_or_else(|| {
        OAuthError::invalid_client("unknown client or wrong credentials", used_basic)
    })?;
    match (&client.auth, secret) {
        (ClientAuth::Secret(expected), Some(given)) => {
            if bool::from(expected.expose().as_bytes().ct_eq(given.as_bytes())) {
                Ok(client)
            } else {
                Err(OAuthError::invalid_client(
                    "unknown client or wrong credentials",
                    used_basic,
                ))
            }
        }
        (ClientAuth::Secret(_), None) => Err(OAuthError::invalid_client(
            "this client must authenticate with its secret",
            used_basic,
        )),
        (ClientAuth::Public, None) if allow_public => Ok(client),
        (ClientAuth::Public, None) => Err(OAuthError::invalid_client(
            "public clients cannot use this endpoint",
            used_basic,
        )),
        (ClientAuth::Public, Some(_)) => Err(OAuthError::invalid_client(
            "this client is public: it has no secret",
            used_basic,
        )),
        // Its assertions are verified by `client_auth`; it has no secret to send.
        (ClientAuth::Keys(_), given) => Err(OAuthError::invalid_client(
            format!(
                "this client authenticates with private_key_jwt, not {}",
                match (used_basic, given.is_some()) {
                    (true, _) => "client_secret_basic",
                    (false, true) => "client_secret_post",
                    (false, false) => "none",
                }
            ),
            used_basic,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_oversized_parameters() {
        assert!(parse(b"a=1&b=2").is_ok());
        assert_eq!(parse(b"a=1&a=2").unwrap_err().code, "invalid_request");
        let big = format!("a={}", "x".repeat(MAX_PARAM + 1));
        assert_eq!(parse(big.as_bytes()).unwrap_err().code, "invalid_request");
        assert!(!parse(b"a=").unwrap().contains_key("a"), "empty = omitted");
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(form_decode("a%3Ab+c"), "a:b c");
    }

    mod properties {
        use super::super::*;
        use proptest::collection::{btree_map, vec};
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 512,
                ..ProptestConfig::default()
            }
        }

        fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        }

        /// Keys and values with every kind of character the encoding must carry: `&`, `=`,
        /// `+`, `%`, spaces, control characters, non-ASCII.
        fn text(max: usize) -> impl Strategy<Value = String> {
            proptest::string::string_regex(&format!(r"(.|[&=+% \n\r\x00]){{1,{max}}}")).unwrap()
        }

        proptest! {
            #![proptest_config(config())]

            /// Parsing never panics, whatever the bytes; every accepted parameter has a
            /// non-empty value within the size bounds.
            #[test]
            fn never_panics_and_respects_bounds(raw in vec(any::<u8>(), 0..512)) {
                if let Ok(p) = parse(&raw) {
                    for (k, v) in &p {
                        prop_assert!(!v.is_empty());
                        prop_assert!(k.len() <= 256 && v.len() <= MAX_PARAM);
                    }
                }
            }

            /// Serialising a map (distinct keys, non-empty values) and parsing it yields
            /// the same map.
            #[test]
            fn form_round_trip(map in btree_map(text(24), text(48), 0..8)) {
                let raw = encode(map.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let parsed: BTreeMap<String, String> = parse(raw.as_bytes())
                    .map_err(|e| TestCaseError::fail(e.description))?
                    .into_iter()
                    .collect();
                prop_assert_eq!(parsed, map);
            }

            /// A parameter given twice with values is refused (`invalid_request`) wherever
            /// the copies are, whatever the values (even identical ones); an empty copy
            /// counts as omitted (RFC 6749 3.1).
            #[test]
            fn repeated_parameter_is_refused(
                map in btree_map(text(24), text(48), 1..6),
                pick in any::<prop::sample::Index>(),
                other in text(48),
                at in any::<prop::sample::Index>(),
            ) {
                let keys: Vec<&String> = map.keys().collect();
                let key = keys[pick.index(keys.len())].as_str();
                let mut pairs: Vec<(&str, &str)> =
                    map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let pos = at.index(pairs.len() + 1);
                pairs.insert(pos, (key, other.as_str()));
                let err = parse(encode(pairs.iter().copied()).as_bytes()).unwrap_err();
                prop_assert_eq!(err.code, "invalid_request");
                prop_assert!(err.description.contains("repeated"));
                // the same repetition with an empty value is no repetition
                pairs[pos] = (key, "");
                prop_assert!(parse(encode(pairs.iter().copied()).as_bytes()).is_ok());
            }
        }
    }
}
