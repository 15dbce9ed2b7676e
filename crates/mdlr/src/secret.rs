//! Types that hold secrets, and redaction of secrets inside URLs. (Inside the library, a
//! redactor that knows every secret a client holds takes them out of whatever a service
//! says back.)

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::Error;

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

/// Secrets shorter than this are left alone: they are no secrets worth the name, and
/// replacing them would garble the text.
const SHORTEST: usize = 8;
/// Secrets kept: credentials and tokens (a token a rotation replaced may still be quoted).
const KEPT_SECRETS: usize = 64;
/// Link signatures kept: enough for every link in use at once in a large batch.
const KEPT_SIGNATURES: usize = 256;

/// The secrets a client (or a downloader) knows — credentials, tokens, client
/// assertions, refresh tokens, and the signatures of recent result links — and the
/// one place that takes them out of text. Cheap to clone; clones share what they know.
///
/// The transport applies it to every error it builds from a reply, so no call site has
/// to remember to.
#[derive(Clone, Default)]
pub(crate) struct Redactor(Arc<Mutex<Known>>);

#[derive(Default)]
struct Known {
    secrets: VecDeque<String>,
    signatures: VecDeque<String>,
}

fn remember(list: &mut VecDeque<String>, value: &str, cap: usize) {
    if value.chars().count() < SHORTEST || list.iter().any(|v| v == value) {
        return;
    }
    if list.len() == cap {
        list.pop_front();
    }
    list.push_back(value.to_owned());
}

impl Redactor {
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Learns a secret, to take out of every text from now on.
    pub(crate) fn add(&self, secret: &Secret) {
        remember(&mut self.known().secrets, secret.expose(), KEPT_SECRETS);
    }

    /// Learns the signature of a link (`sig`, as sent and decoded).
    pub(crate) fn add_link(&self, url: &str) {
        let mut known = self.known();
        for sig in sig_values(url) {
            remember(&mut known.signatures, &sig, KEPT_SIGNATURES);
        }
    }

    /// `text` with every known secret — as it is, percent-encoded or form-encoded —
    /// replaced by `[redacted]`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let known = self.known();
        scrub(text, known.secrets.iter().chain(known.signatures.iter()))
    }

    /// `error` with every known secret taken out of what the service said in it.
    pub(crate) fn scrub_error(&self, error: Error) -> Error {
        error.map_text(&|text: &str| self.scrub(text))
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redactor([redacted])")
    }
}

fn scrub<'a>(text: &str, secrets: impl Iterator<Item = &'a String>) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        let form = crate::encode::form(secret);
        for variant in [secret.clone(), form.replace('+', "%20"), form] {
            if out.contains(&variant) {
                out = out.replace(&variant, "[redacted]");
            }
        }
    }
    out
}

/// The values of the `sig` query parameters of `url`, as sent and percent-decoded.
fn sig_values(url: &str) -> Vec<String> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or("");
    let mut out = Vec::new();
    for (key, value) in query.split('&').filter_map(|p| p.split_once('=')) {
        if key.eq_ignore_ascii_case("sig") && !value.is_empty() {
            out.push(value.to_owned());
            out.push(crate::encode::percent_decode(value));
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
        let said = "you sent Bearer tok-SECRET-1 and client_secret=a%2Bb%2Fc%3D1234 and \
                    sig=x and a b c d e in a form: a+b+c+d+e, a%20b%20c%20d%20e";
        let r = Redactor::default();
        for s in ["tok-SECRET-1", "a+b/c=1234", "x", "a b c d e"] {
            r.add(&Secret::new(s));
        }
        assert_eq!(
            r.scrub(said),
            "you sent Bearer [redacted] and client_secret=[redacted] and sig=x and \
             [redacted] in a form: [redacted], [redacted]"
        );
        r.add_link("https://h/b?se=1&sig=0123456789abc%3D");
        assert_eq!(r.scrub("q 0123456789abc= q"), "q [redacted] q");
        assert_eq!(format!("{r:?}"), "Redactor([redacted])");
        let e = r.scrub_error(Error::NotFound {
            message: "tok-SECRET-1".into(),
        });
        assert_eq!(e.to_string(), "[redacted]");
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
