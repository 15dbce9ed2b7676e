//! How connections leave the machine: proxies (chosen per URL, curl's way) and the
//! trusted certificate authorities (the bundled Mozilla roots plus any private CA).
//!
//! The library reads no proxy variable itself: the caller builds [`Proxies`] from its own
//! settings and hands them to [`ClientBuilder::proxies`](crate::ClientBuilder::proxies).

use std::fmt;
use std::net::IpAddr;

use crate::error::{Error, Result};

/// One forward proxy (`http://host:port`, optionally with `user:password@`).
///
/// Requests to `https://` hosts go through it with `CONNECT`. Its `Debug` and
/// [`display`](Proxy::display) hide any password.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    url: String,
    display: String,
}

impl Proxy {
    /// Parses a proxy URL as curl does: `host:port` means `http://host:port`; `http://`
    /// and `https://` proxies are supported, SOCKS proxies are not.
    pub fn new(url: &str) -> Result<Proxy> {
        let trimmed = url.trim();
        if trimmed.is_empty() {
            return Err(Error::config("the proxy URL is empty"));
        }
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("http://{trimmed}")
        };
        let (scheme, rest) = with_scheme
            .split_once("://")
            .ok_or_else(|| Error::config("the proxy URL has no scheme"))?;
        let display = redact_userinfo(&with_scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => {}
            s if s.starts_with("socks") => {
                return Err(Error::config(format!(
                    "proxy {display}: SOCKS proxies are not supported; use an HTTP proxy"
                )));
            }
            _ => {
                return Err(Error::config(format!(
                    "proxy {display}: the scheme must be http:// or https://"
                )));
            }
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit('@').next().unwrap_or_default();
        let host = host_of_authority(host_port);
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::config(format!("proxy {display}: no usable host")));
        }
        if ureq::Proxy::new(&with_scheme).is_err() {
            return Err(Error::config(format!("proxy {display} is not a valid URL")));
        }
        Ok(Proxy {
            url: with_scheme,
            display,
        })
    }

    /// The URL with any password replaced by `[redacted]`.
    pub fn display(&self) -> &str {
        &self.display
    }

    pub(crate) fn to_ureq(&self) -> Result<ureq::Proxy> {
        ureq::Proxy::new(&self.url)
            .map_err(|_| Error::config(format!("proxy {} is not a valid URL", self.display)))
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({})", self.display)
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// Which proxy each request uses, as curl decides it: one proxy for `https://` URLs, one
/// for `http://` URLs, and a `NO_PROXY`-style list of hosts reached directly.
///
/// The list is comma-separated; `*` matches every host; a domain matches itself and its
/// subdomains (`example.com` and `.example.com` both match `api.example.com`); an IP
/// address matches itself and `10.0.0.0/8`-style entries match their range. The Azure
/// instance metadata service (managed identity) is never reached through a proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    https: Option<Proxy>,
    http: Option<Proxy>,
    no_proxy: Vec<NoProxyEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NoProxyEntry {
    All,
    Domain(String),
    Net(IpAddr, u8),
}

impl Proxies {
    /// No proxy at all: every connection is direct.
    pub fn none() -> Proxies {
        Proxies::default()
    }

    /// The same proxy for every URL.
    pub fn all(proxy: Proxy) -> Proxies {
        Proxies {
            https: Some(proxy.clone()),
            http: Some(proxy),
            no_proxy: Vec::new(),
        }
    }

    /// The proxy for `https://` URLs.
    pub fn https(mut self, proxy: Option<Proxy>) -> Proxies {
        self.https = proxy;
        self
    }

    /// The proxy for `http://` URLs.
    pub fn http(mut self, proxy: Option<Proxy>) -> Proxies {
        self.http = proxy;
        self
    }

    /// Hosts reached directly, in `NO_PROXY` syntax (see the type's documentation).
    pub fn no_proxy(mut self, list: &str) -> Proxies {
        self.no_proxy = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter_map(parse_no_proxy_entry)
            .collect();
        self
    }

    /// Whether any proxy is set.
    pub fn is_empty(&self) -> bool {
        self.https.is_none() && self.http.is_none()
    }

    /// The proxy a request to `url` goes through, if any.
    pub fn for_url(&self, url: &str) -> Option<&Proxy> {
        let (scheme, rest) = url.split_once("://")?;
        let proxy = match scheme.to_ascii_lowercase().as_str() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host_of_authority(authority.rsplit('@').next().unwrap_or_default());
        (!self.bypasses(&host)).then_some(proxy)
    }

    /// Whether `host` is reached directly because of the no-proxy list.
    pub fn bypasses(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: Option<IpAddr> = host.parse().ok();
        self.no_proxy.iter().any(|entry| match entry {
            NoProxyEntry::All => true,
            NoProxyEntry::Domain(d) => {
                host == d
                    || (host.len() > d.len()
                        && host.ends_with(d.as_str())
                        && host.as_bytes()[host.len() - d.len() - 1] == b'.')
            }
            NoProxyEntry::Net(net, bits) => ip.is_some_and(|ip| in_net(ip, *net, *bits)),
        })
    }
}

fn parse_no_proxy_entry(raw: &str) -> Option<NoProxyEntry> {
    let entry = raw.trim().to_ascii_lowercase();
    if entry.is_empty() {
        return None;
    }
    if entry == "*" {
        return Some(NoProxyEntry::All);
    }
    if let Some((addr, bits)) = entry.split_once('/')
        && let (Ok(ip), Ok(bits)) = (
            addr.trim_matches(['[', ']']).parse::<IpAddr>(),
            bits.parse::<u8>(),
        )
    {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        return Some(NoProxyEntry::Net(ip, bits.min(max)));
    }
    let bare = entry.trim_matches(['[', ']']);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        return Some(NoProxyEntry::Net(ip, bits));
    }
    // `host:port`: the port is ignored, as curl ignores it.
    let host = match entry.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => entry.as_str(),
    };
    let domain = host
        .trim_start_matches('*')
        .trim_start_matches('.')
        .trim_end_matches('.');
    (!domain.is_empty()).then(|| NoProxyEntry::Domain(domain.to_owned()))
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// `host`, `host:port`, `[v6]:port` → the host, lowercase, without brackets.
fn host_of_authority(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.to_ascii_lowercase()
}

/// `scheme://user:password@host` → `scheme://user:[redacted]@host`.
fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:[redacted]@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// The certificates (DER) in a PEM file's text, in order. Other PEM sections (keys)
/// are skipped; a file without any certificate is an error.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c.der().to_vec()),
            Ok(_) => {}
            Err(e) => return Err(Error::config(format!("cannot read the PEM text: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(Error::config(
            "no PEM certificate (BEGIN CERTIFICATE) found",
        ));
    }
    Ok(certs)
}

/// The trust store: the bundled Mozilla roots plus `extra` (a private CA, such as the
/// one a TLS-inspecting proxy signs with).
pub(crate) fn root_certs(extra: &[Vec<u8>]) -> ureq::tls::RootCerts {
    let bundled = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()));
    let added = extra
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der).to_owned());
    bundled.chain(added).collect::<Vec<_>>().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(no_proxy: &str) -> Proxies {
        Proxies::all(Proxy::new("proxy.corp:3128").expect("valid")).no_proxy(no_proxy)
    }

    #[test]
    fn no_proxy_domains_match_subdomains_like_curl() {
        let p = proxies("example.com, .corp.local,10.0.0.0/8,::1,192.168.1.5,host.test:8080");
        assert!(p.bypasses("example.com"));
        assert!(p.bypasses("api.example.com"));
        assert!(p.bypasses("API.Example.COM."));
        assert!(!p.bypasses("badexample.com"));
        assert!(!p.bypasses("example.com.evil"));
        assert!(p.bypasses("corp.local"));
        assert!(p.bypasses("x.y.corp.local"));
        assert!(p.bypasses("10.1.2.3"));
        assert!(!p.bypasses("11.1.2.3"));
        assert!(p.bypasses("::1"));
        assert!(p.bypasses("[::1]"));
        assert!(p.bypasses("192.168.1.5"));
        assert!(!p.bypasses("192.168.1.6"));
        assert!(p.bypasses("host.test"));
        assert!(!proxies("").bypasses("example.com"));
        assert!(proxies("*").bypasses("anything.example"));
        assert!(proxies("*.example.com").bypasses("a.example.com"));
    }

    #[test]
    fn proxy_per_scheme_and_host() {
        let https = Proxy::new("http://secure-proxy:8443").expect("valid");
        let http = Proxy::new("http://plain-proxy:8080").expect("valid");
        let p = Proxies::none()
            .https(Some(https.clone()))
            .http(Some(http.clone()))
            .no_proxy("internal.example");
        assert_eq!(
            p.for_url("https://api.security.microsoft.com/api"),
            Some(&https)
        );
        assert_eq!(p.for_url("http://127.0.0.1:8080/x"), Some(&http));
        assert_eq!(p.for_url("https://svc.internal.example:443/x"), None);
        assert_eq!(p.for_url("https://user@svc.internal.example/x"), None);
        assert_eq!(Proxies::none().for_url("https://a.example/"), None);
        assert!(Proxies::none().is_empty());
    }

    #[test]
    fn proxy_urls_are_checked_and_passwords_hidden() {
        let p = Proxy::new("http://alice:s3cret@proxy.corp:3128").expect("valid");
        assert_eq!(p.display(), "http://alice:[redacted]@proxy.corp:3128");
        assert!(!format!("{p:?}").contains("s3cret"));
        assert!(!p.to_string().contains("s3cret"));
        assert_eq!(
            Proxy::new("proxy.corp:3128").expect("valid").display(),
            "http://proxy.corp:3128"
        );
        for bad in [
            "",
            "socks5://p:1080",
            "ftp://p:21",
            "http://",
            "http://a b:1",
        ] {
            assert!(
                matches!(Proxy::new(bad), Err(Error::Config { .. })),
                "{bad:?} accepted"
            );
        }
        match Proxy::new("socks5h://u:pw@p:1080") {
            Err(Error::Config { message }) => {
                assert!(message.contains("SOCKS"), "{message}");
                assert!(!message.contains("pw"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pem_certificates() {
        assert!(matches!(
            certificates_from_pem(b"not pem"),
            Err(Error::Config { .. })
        ));
        // A bundled root, written out as PEM, reads back to the same DER.
        let der = webpki_root_certs::TLS_SERVER_ROOT_CERTS[0]
            .as_ref()
            .to_vec();
        let pem = format!(
            "junk before\n-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            crate::base64::encode(&der)
                .as_bytes()
                .chunks(64)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(
            certificates_from_pem(pem.as_bytes()).expect("reads"),
            vec![der]
        );
    }
}
