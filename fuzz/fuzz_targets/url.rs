//! `check_url` against the URI parser ureq sends requests with (a URL it lets through
//! over plain `http://` must go to a loopback host), and `redact_url` (no `sig` value
//! survives it).

#![no_main]

use libfuzzer_sys::fuzz_target;

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The values of the `sig` query parameters of `url` (the query ends at `#`).
fn sig_values(url: &str) -> Vec<&str> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| key.eq_ignore_ascii_case("sig"))
        .map(|(_, value)| value)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    if mdlr::cloud::check_url(url, "link").is_ok()
        && let Ok(uri) = url.parse::<http::Uri>()
    {
        match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => {}
            Some(s) if s.eq_ignore_ascii_case("http") => {
                let host = uri.host().unwrap_or("");
                assert!(is_loopback(host), "{url:?} passed, to plain http://{host}");
            }
            other => panic!("{url:?} passed with the scheme {other:?}"),
        }
    }
    let redacted = mdlr::secret::redact_url(url);
    let before = sig_values(url);
    let after = sig_values(&redacted);
    assert_eq!(before.len(), after.len(), "{url:?} became {redacted:?}");
    for value in after {
        assert_eq!(value, "REDACTED", "{url:?} became {redacted:?}");
    }
    let link = mdlr::ResultLink::new(url);
    assert_eq!(link.redacted(), redacted);
    assert_eq!(format!("{link:?}"), format!("ResultLink({redacted:?})"));
});
