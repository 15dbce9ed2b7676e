//! Text in URLs, forms and OData filters, and base64 — on the `percent-encoding` and
//! `base64` crates, which ureq already brings into the build.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD_INDIFFERENT};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters is encoded in a query value.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `application/x-www-form-urlencoded` as browsers write it: `*` stays, space is `+`.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'*');

/// Percent-encodes a query value or a path segment (space as `%20`).
pub(crate) fn query(s: &str) -> String {
    utf8_percent_encode(s, QUERY).to_string()
}

/// Percent-encodes for `application/x-www-form-urlencoded` (space as `+`).
pub(crate) fn form(s: &str) -> String {
    utf8_percent_encode(s, FORM).to_string().replace("%20", "+")
}

/// Decodes `%XX` sequences; bytes that are not UTF-8 become U+FFFD.
pub(crate) fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// An OData string literal: in single quotes, single quotes doubled.
pub(crate) fn odata_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// URL-safe base64 without padding (RFC 7515 `base64url`: JWT parts, thumbprints).
pub(crate) fn base64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD_INDIFFERENT.encode(data)
}

/// Decodes standard base64 (`Content-MD5`), padded or not.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD_PAD_INDIFFERENT.decode(text.trim()).ok()
}

/// Decodes URL-safe base64 (JWT parts), padded or not.
pub(crate) fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD_INDIFFERENT.decode(text.trim()).ok()
}

/// Standard base64 with padding (PEM bodies).
#[cfg(test)]
pub(crate) fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(form("a b&c=d/é*~"), "a+b%26c%3Dd%2F%C3%A9*%7E");
        assert_eq!(query("(id eq 'a')~"), "%28id%20eq%20%27a%27%29~");
        assert_eq!(percent_decode("%E6%97%A5%20x%2"), "日 x%2");
        assert_eq!(percent_decode("%FF"), "\u{fffd}");
        assert_eq!(odata_quote("o'brien"), "'o''brien'");
    }

    #[test]
    fn rfc_4648_vectors() {
        for (plain, b64) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), b64);
            assert_eq!(base64url(plain.as_bytes()), b64.trim_end_matches('='));
            assert_eq!(base64_decode(b64).as_deref(), Some(plain.as_bytes()));
            assert_eq!(
                base64_decode(b64.trim_end_matches('=')).as_deref(),
                Some(plain.as_bytes())
            );
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url_decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(
            base64_decode("kAFQmDzST7DWlj99KOF/cg==").map(|v| v.len()),
            Some(16)
        );
        assert_eq!(base64_decode("!!"), None);
    }
}
