//! The HTML the gateway itself shows: login form, IdP picker, error pages. Self-contained
//! (inline CSS, no scripts, no external assets), accessible (labels, landmarks, live error
//! region, visible focus) and responsive. Every dynamic value is HTML-escaped.

use std::fmt::Write;

pub mod consent;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root{color-scheme:light dark;--fg:#1d2330;--muted:#5b6475;--bg:#f3f5f9;--card:#fff;--accent:#2f5bd3;--err:#b3261e;--line:#d5dae3}
@media (prefers-color-scheme:dark){:root{--fg:#e8ebf2;--muted:#a6aec0;--bg:#12151c;--card:#1c212b;--accent:#8fb0ff;--err:#ffb4ab;--line:#343b4a}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;padding:1rem}
main{width:100%;max-width:24rem;background:var(--card);border:1px solid var(--line);border-radius:12px;padding:2rem;box-shadow:0 6px 24px rgba(0,0,0,.08)}
h1{font-size:1.4rem;margin:0 0 .25rem}
p{margin:.25rem 0 1rem;color:var(--muted)}
label{display:block;font-weight:600;margin:1rem 0 .35rem}
input{width:100%;padding:.65rem .75rem;font:inherit;color:inherit;background:transparent;border:1px solid var(--line);border-radius:8px}
button,.button{display:block;width:100%;margin-top:1.25rem;padding:.7rem;font:inherit;font-weight:600;text-align:center;text-decoration:none;color:#fff;background:var(--accent);border:0;border-radius:8px;cursor:pointer}
@media (prefers-color-scheme:dark){button,.button{color:#0b1020}}
:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.error{color:var(--err);font-weight:600}
.rid{font-size:.8rem;color:var(--muted);word-break:break-all;margin-top:1.5rem}
ul{list-style:none;padding:0;margin:0}
"#;

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"referrer\" content=\"no-referrer\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>\n",
        escape(title)
    )
}

/// An error page; `request_id` lets support find the matching log lines.
pub fn error_page(status: u16, title: &str, message: &str, request_id: &str) -> String {
    layout(
        &format!("{status} {title}"),
        &format!(
            "<h1>{}</h1><p>{}</p><p class=\"rid\">Error {status} · request id <code>{}</code></p>",
            escape(title),
            escape(message),
            escape(request_id)
        ),
    )
}

pub struct LoginForm<'a> {
    pub app: &'a str,
    pub flow: &'a str,
    pub csrf: &'a str,
    pub idp: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub action: &'a str,
}

pub fn login_page(f: &LoginForm<'_>) -> String {
    let mut body = format!(
        "<h1>Sign in</h1><p>to continue to <strong>{}</strong></p>",
        escape(f.app)
    );
    if let Some(e) = f.error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
            escape(e)
        );
    }
    let described = if f.error.is_some() {
        " aria-describedby=\"login-error\""
    } else {
        ""
    };
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{}\">\
<input type=\"hidden\" name=\"flow\" value=\"{}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<input type=\"hidden\" name=\"idp\" value=\"{}\">\
<label for=\"username\">Username</label>\
<input id=\"username\" name=\"username\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required autofocus value=\"{}\"{described}>\
<label for=\"password\">Password</label>\
<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required{described}>\
<button type=\"submit\">Sign in</button></form>",
        escape(f.action),
        escape(f.flow),
        escape(f.csrf),
        escape(f.idp),
        escape(f.username),
    );
    layout("Sign in", &body)
}

/// The IdP picker: one link per IdP (`href` already built by the caller).
pub fn picker_page(app: &str, choices: &[(String, String)]) -> String {
    let mut body = format!(
        "<h1>Choose how to sign in</h1><p>to continue to <strong>{}</strong></p><ul>",
        escape(app)
    );
    for (label, href) in choices {
        let _ = write!(
            body,
            "<li><a class=\"button\" href=\"{}\">{}</a></li>",
            escape(href),
            escape(label)
        );
    }
    body.push_str("</ul>");
    layout("Choose how to sign in", &body)
}

/// The sign-out confirmation: a form that POSTs `fields` (hidden) and the session's CSRF
/// token to `action`, so that a link or a cross-site GET cannot end a session.
pub struct LogoutForm<'a> {
    pub action: &'a str,
    pub csrf: &'a str,
    /// The application asking for the sign-out (RP-initiated logout), if known.
    pub app: Option<&'a str>,
    /// Extra hidden fields (`client_id`, `post_logout_redirect_uri`, `state`).
    pub fields: &'a [(&'a str, &'a str)],
}

pub fn logout_confirm_page(f: &LogoutForm<'_>) -> String {
    let mut body = String::from("<h1>Sign out?</h1>");
    match f.app {
        Some(app) => {
            let _ = write!(
                body,
                "<p><strong>{}</strong> asks to sign you out of every application that uses this sign-in.</p>",
                escape(app)
            );
        }
        None => body
            .push_str("<p>You will be signed out of every application that uses this sign-in.</p>"),
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(f.action),
        escape(f.csrf)
    );
    for (name, value) in f.fields {
        let _ = write!(
            body,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        );
    }
    body.push_str(
        "<button type=\"submit\">Sign out</button></form>\
<p class=\"rid\">If you did not ask to sign out, close this page: you stay signed in.</p>",
    );
    layout("Sign out?", &body)
}

pub fn logged_out_page() -> String {
    layout(
        "Signed out",
        "<h1>You are signed out</h1><p>Your session has ended.</p><a class=\"button\" href=\"/\">Sign in again</a>",
    )
}

/// The signed-out page that tells the apps of the ended session which can only be told in
/// the browser (Front-Channel Logout 1.0): each URL in a hidden iframe; then on to `next`
/// (the RP's `post_logout_redirect_uri`, the IdP's logout, an app's page), if any, after two
/// seconds or by the link.
pub fn signed_out_page(frames: &[String], next: Option<&str>) -> String {
    let mut body = String::from("<h1>You are signed out</h1><p>Your session has ended.</p>");
    for f in frames {
        let _ = write!(body, "<iframe hidden src=\"{}\"></iframe>", escape(f));
    }
    match next {
        Some(to) => {
            let _ = write!(
                body,
                "<meta http-equiv=\"refresh\" content=\"2;url={0}\"><a class=\"button\" href=\"{0}\">Continue</a>",
                escape(to)
            );
        }
        None => body.push_str("<a class=\"button\" href=\"/\">Sign in again</a>"),
    }
    layout("Signed out", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_dynamic() {
        let page = error_page(403, "Forbidden", "<script>x</script>", "id\"><b>");
        assert!(!page.contains("<script>x"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("id&quot;&gt;&lt;b&gt;"));
        let page = logout_confirm_page(&LogoutForm {
            action: "/out\"><x>",
            csrf: "t<",
            app: Some("<app>"),
            fields: &[("state", "\"><script>")],
        });
        assert!(!page.contains("<script>") && !page.contains("<x>") && !page.contains("<app>"));
        assert!(page.contains("name=\"csrf\" value=\"t&lt;\""));
        assert!(page.contains("name=\"state\" value=\"&quot;&gt;&lt;script&gt;\""));
    }
}
