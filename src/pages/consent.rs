//! The provider's consent page and the signed-in user's connected apps page. Scopes and
//! claims are said in words (OpenID Connect Core §5.4 names them; users do not read those).

use std::fmt::Write;

use super::{escape, layout};

/// What a scope lets an app do, in a user's words.
pub fn scope_words(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are (your account identifier)".into(),
        "profile" => "See your profile: name, username, picture, locale and similar details".into(),
        "email" => "See your email address".into(),
        "address" => "See your postal address".into(),
        "phone" => "See your phone number".into(),
        "offline_access" => {
            "Keep access while you are not using it, until you revoke it here".into()
        }
        other => format!("Access “{other}”"),
    }
}

/// A claim's name, in a user's words (its own name when it is not a standard one).
pub fn claim_words(claim: &str) -> String {
    let known = [
        ("name", "Full name"),
        ("given_name", "First name"),
        ("family_name", "Last name"),
        ("middle_name", "Middle name"),
        ("nickname", "Nickname"),
        ("preferred_username", "Username"),
        ("profile", "Profile page"),
        ("picture", "Picture"),
        ("website", "Website"),
        ("gender", "Gender"),
        ("birthdate", "Birthday"),
        ("zoneinfo", "Time zone"),
        ("locale", "Language"),
        ("updated_at", "When your profile changed"),
        ("email", "Email address"),
        ("email_verified", "Whether your email address is verified"),
        ("address", "Postal address"),
        ("phone_number", "Phone number"),
        (
            "phone_number_verified",
            "Whether your phone number is verified",
        ),
    ];
    known
        .iter()
        .find(|(k, _)| *k == claim)
        .map(|(_, w)| w.to_string())
        .unwrap_or_else(|| claim.to_string())
}

const SECONDARY: &str = "background:transparent;color:inherit;border:1px solid var(--line)";

pub struct ConsentForm<'a> {
    pub app: &'a str,
    pub action: &'a str,
    /// The pending request's id and the form token bound to it and the session.
    pub request: &'a str,
    pub csrf: &'a str,
    /// Scopes asked for now, and those of the request the user allowed before.
    pub new: &'a [String],
    pub allowed: &'a [String],
    /// Names of the claims the app will receive.
    pub claims: &'a [String],
}

fn scope_list(scopes: &[String], class: &str) -> String {
    let mut out = format!("<ul class=\"{class}\">");
    for s in scopes {
        let _ = write!(
            out,
            "<li data-scope=\"{}\">• {}</li>",
            escape(s),
            escape(&scope_words(s))
        );
    }
    out.push_str("</ul>");
    out
}

pub fn consent_page(f: &ConsentForm<'_>) -> String {
    let mut body = format!(
        "<h1>Allow access?</h1><p><strong id=\"consent-app\">{}</strong> asks to:</p>",
        escape(f.app)
    );
    body.push_str(&scope_list(f.new, "consent-new"));
    if !f.allowed.is_empty() {
        body.push_str("<p>You allowed it before to:</p>");
        body.push_str(&scope_list(f.allowed, "consent-allowed"));
    }
    if !f.claims.is_empty() {
        let words: Vec<String> = f.claims.iter().map(|c| escape(&claim_words(c))).collect();
        let _ = write!(
            body,
            "<p>It will receive: <span class=\"consent-claims\">{}</span>.</p>",
            words.join(", ")
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{}\">\
<input type=\"hidden\" name=\"request\" value=\"{}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\" style=\"{SECONDARY}\">Deny</button></form>\
<p class=\"rid\">You can revoke this at any time on your connected apps page.</p>",
        escape(f.action),
        escape(f.request),
        escape(f.csrf),
    );
    layout("Allow access?", &body)
}

/// One app on the connected apps page.
pub struct ConnectedApp<'a> {
    pub app: &'a str,
    pub client_id: &'a str,
    pub scopes: &'a [String],
    /// Unix seconds.
    pub granted_at: u64,
}

pub fn connected_apps_page(action: &str, csrf: &str, apps: &[ConnectedApp<'_>]) -> String {
    let mut body = String::from("<h1>Connected apps</h1>");
    if apps.is_empty() {
        body.push_str("<p id=\"no-apps\">You have not allowed any app to use your account.</p>");
    } else {
        body.push_str("<p>Apps you allowed to use your account.</p>");
    }
    for a in apps {
        let when = chrono::DateTime::from_timestamp(a.granted_at as i64, 0)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let _ = write!(
            body,
            "<section class=\"connected-app\" data-client=\"{}\"><h2>{}</h2><p>Allowed {}. It may:</p>{}\
<form method=\"post\" action=\"{}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<input type=\"hidden\" name=\"client_id\" value=\"{}\">\
<button type=\"submit\">Revoke access of {}</button></form></section>",
            escape(a.client_id),
            escape(a.app),
            escape(&when),
            scope_list(a.scopes, "connected-scopes"),
            escape(action),
            escape(csrf),
            escape(a.client_id),
            escape(a.app),
        );
    }
    layout("Connected apps", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dynamic_value_is_escaped() {
        let page = consent_page(&ConsentForm {
            app: "<app>",
            action: "/c\"><x>",
            request: "r<",
            csrf: "t\"",
            new: &["openid".into(), "<s>".into()],
            allowed: &["email".into()],
            claims: &["<c>".into(), "email".into()],
        });
        assert!(!page.contains("<app>") && !page.contains("<x>") && !page.contains("<s>"));
        assert!(!page.contains("<c>"));
        assert!(page.contains("name=\"csrf\" value=\"t&quot;\""));
        assert!(page.contains("Know who you are"));
        assert!(page.contains("Email address"));
        let page = connected_apps_page(
            "/apps",
            "k",
            &[ConnectedApp {
                app: "<b>",
                client_id: "c\"",
                scopes: &["offline_access".into()],
                granted_at: 0,
            }],
        );
        assert!(!page.contains("<b>"));
        assert!(page.contains("value=\"c&quot;\""));
        assert!(page.contains("1970-01-01"));
        assert!(page.contains("Keep access while you are not using it"));
    }
}
