//! Errors built from replies — the API's JSON envelope, the result host's XML and
//! headers, a gateway's HTML — and the reading of `Location` headers. Each error is
//! built from a body that has been through the redactor already (see
//! `Response::read_limited`), and goes through it once more with the headers it quotes,
//! so nothing the client knows as secret comes back in it.

use serde::Deserialize;

use crate::error::Error;
use crate::http::Response;

/// The most of an error reply that is read.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: Option<ApiErrorBody>,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    code: Option<String>,
    message: Option<String>,
    target: Option<String>,
}

impl Response {
    /// The [`Error::Api`] an error reply of the Defender API stands for: code, message
    /// and correlation id from its JSON envelope, or a summary of another body.
    pub(crate) fn api_error(self) -> Error {
        let redactor = self.redactor.clone();
        let status = self.status();
        let retry_after = self.header("retry-after").map(str::to_owned);
        let body = self
            .read_limited(ERROR_BODY_LIMIT, "error reply")
            .unwrap_or_default();
        let parsed = serde_json::from_slice::<ErrorEnvelope>(&body)
            .ok()
            .and_then(|e| e.error);
        let (code, mut message, correlation_id) = match parsed {
            Some(e) => (
                e.code,
                e.message.unwrap_or_else(|| "no message".to_owned()),
                e.target,
            ),
            None => (None, describe_body(&body), None),
        };
        if status == 429
            && let Some(s) = retry_after
        {
            message.push_str(&format!(" (retry after {s} s)"));
        }
        // Headers too may quote the request (a signature, a token).
        redactor.scrub_error(Error::Api {
            status,
            code,
            message,
            correlation_id,
        })
    }

    /// The [`Error::Blob`] an error reply of the result host stands for.
    pub(crate) fn blob_error(self) -> Error {
        let redactor = self.redactor.clone();
        let status = self.status();
        let code = self.header("x-ms-error-code").map(str::to_owned);
        let request_id = self.header("x-ms-request-id").map(str::to_owned);
        let body = self
            .read_limited(ERROR_BODY_LIMIT, "error reply")
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let message = xml_element(&text, "Message")
            .map(|m| m.lines().next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| match status {
                403 => "access refused (the link may have expired)".to_owned(),
                404 => "no such result".to_owned(),
                _ => describe_body(&body),
            });
        redactor.scrub_error(Error::Blob {
            status,
            code,
            message,
            request_id,
        })
    }
}

fn xml_element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].trim())
}

/// A short description of a reply body that is not the JSON we expected.
pub(crate) fn describe_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return "an empty reply".to_owned();
    }
    if trimmed.starts_with('<') {
        return "an HTML or XML page instead of JSON (a proxy or gateway may have answered)"
            .to_owned();
    }
    let excerpt: String = trimmed
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("an unexpected reply: {excerpt}")
}

/// Resolves a `Location` header against the URL it came from.
pub(crate) fn resolve_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    let host_end = rest.find('/').unwrap_or(rest.len());
    let origin = format!("{scheme}://{}", &rest[..host_end]);
    if let Some(path) = location.strip_prefix("//") {
        return format!("{scheme}://{path}");
    }
    if location.starts_with('/') {
        return format!("{origin}{location}");
    }
    let path = &rest[host_end..];
    let path = path.split('?').next().unwrap_or("");
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{origin}{dir}/{location}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(resolve_location("https://a/b/c?x", "/d"), "https://a/d");
        assert_eq!(resolve_location("https://a/b/c?x", "d"), "https://a/b/d");
        assert_eq!(resolve_location("https://a/b", "http://e/f"), "http://e/f");
        assert_eq!(resolve_location("https://a/b", "//e/f"), "https://e/f");
    }

    #[test]
    fn bodies_described() {
        assert_eq!(describe_body(b"  "), "an empty reply");
        assert!(describe_body(b"<html><body>502</body></html>").contains("HTML"));
        assert!(describe_body(b"oops\nthere").ends_with("oops there"));
        assert_eq!(
            xml_element("<Error><Message> gone\nx</Message></Error>", "Message"),
            Some("gone\nx")
        );
    }
}
