//! Types that hold secrets, and redaction of secrets inside URLs.

use std::fmt;

/// A secret string (token, client secret, SAS link) whose `Debug` is `[redacted]`.
///
/// It has no `Display`: printing one takes a deliberate call to [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Call it only where the secret must leave the process.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

/// Query parameters whose values are secrets: SAS signatures and OAuth material.
const SECRET_PARAMS: &[&str] = &[
    "sig",
    "client_secret",
    "client_assertion",
    "access_token",
    "refresh_token",
    "code",
    "password",
];

/// Returns `url` with the values of secret query parameters (`sig`, ...) replaced by
/// `REDACTED`, and any user information before the host removed.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = strip_userinfo(before_query);
    if let Some(query) = query {
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) if SECRET_PARAMS.iter().any(|s| key.eq_ignore_ascii_case(s)) => {
                    out.push_str(key);
                    out.push_str("=REDACTED");
                }
                _ => out.push_str(pair),
            }
        }
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
    }
    out
}

/// `text` with every one of `secrets` — as it is, percent-encoded, or form-encoded —
/// replaced by `[redacted]`. Strings shorter than 8 characters are left alone: they are
/// no secrets worth the name, and replacing them would garble the text.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.chars().count() >= 8) {
        for form in [
            (*secret).to_owned(),
            crate::http::form_encode(secret),
            crate::http::form_encode(secret).replace('+', "%20"),
        ] {
            if out.contains(&form) {
                out = out.replace(&form, "[redacted]");
            }
        }
    }
    out
}

/// The values of the `sig` query parameters of `url`, as sent and percent-decoded.
pub(crate) fn sig_values(url: &str) -> Vec<String> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or("");
    let mut out = Vec::new();
    for (key, value) in query.split('&').filter_map(|p| p.split_once('=')) {
        if key.eq_ignore_ascii_case("sig") && !value.is_empty() {
            out.push(value.to_owned());
            out.push(crate::download::percent_decode(value));
        }
    }
    out
}

fn strip_userinfo(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://{host}{path}");
        }
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(s)), "Some([redacted])");
    }

    #[test]
    fn scrubs_secrets_in_any_encoding() {
        let said = "you sent Bearer tok-SECRET-1 and client_secret=a%2Bb%2Fc%3D1234 and sig=x";
        assert_eq!(
            scrub(said, &["tok-SECRET-1", "a+b/c=1234", "x"]),
            "you sent Bearer [redacted] and client_secret=[redacted] and sig=x"
        );
        assert_eq!(
            sig_values("https://h/b?se=1&SIG=ab%3D&x=1#sig=no"),
            ["ab%3D", "ab="]
        );
    }

    #[test]
    fn redacts_sig_and_userinfo() {
        assert_eq!(
            redact_url("https://a.blob/c/b?se=2021&sp=r&SIG=abc%3D&sr=b"),
            "https://a.blob/c/b?se=2021&sp=r&SIG=REDACTED&sr=b"
        );
        assert_eq!(redact_url("http://u:p@h:1/x"), "http://h:1/x");
        assert_eq!(redact_url("https://h/x"), "https://h/x");
        assert_eq!(
            redact_url("https://h/x?sig=1#f"),
            "https://h/x?sig=REDACTED#f"
        );
    }
}
