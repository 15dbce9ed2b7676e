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
        let proxy = self.for_scheme(scheme)?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host_of_authority(authority.rsplit('@').next().unwrap_or_default());
        (!self.bypasses(&host)).then_some(proxy)
    }

    /// The proxy for URLs of `scheme`, before the no-proxy list is consulted.
    pub(crate) fn for_scheme(&self, scheme: &str) -> Option<&Proxy> {
        match scheme.to_ascii_lowercase().as_str() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }
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

/// The TLS algorithms mdlr offers: AES-GCM with ECDHE over P-256 or P-384 (TLS 1.3 and
/// 1.2), and RSA or ECDSA certificates. Every TLS 1.3 server must support P-256 and
/// AES-128-GCM (RFC 8446, 9.1), and Microsoft's endpoints and TLS-inspecting proxies
/// do; ChaCha20, X25519 and Ed25519 are left out to keep the static binary small.
pub(crate) fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    use rustls::SignatureScheme as S;
    use rustls::crypto::ring::{cipher_suite as cs, kx_group};
    use webpki::ring as alg;
    static ALGORITHMS: rustls::crypto::WebPkiSupportedAlgorithms =
        rustls::crypto::WebPkiSupportedAlgorithms {
            all: &[
                alg::ECDSA_P256_SHA256,
                alg::ECDSA_P256_SHA384,
                alg::ECDSA_P384_SHA256,
                alg::ECDSA_P384_SHA384,
                alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
                alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
                alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
                alg::RSA_PKCS1_2048_8192_SHA256,
                alg::RSA_PKCS1_2048_8192_SHA384,
                alg::RSA_PKCS1_2048_8192_SHA512,
                alg::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
                alg::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
                alg::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
            ],
            mapping: &[
                (
                    S::ECDSA_NISTP384_SHA384,
                    &[alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384],
                ),
                (
                    S::ECDSA_NISTP256_SHA256,
                    &[alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256],
                ),
                (
                    S::RSA_PSS_SHA512,
                    &[alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY],
                ),
                (
                    S::RSA_PSS_SHA384,
                    &[alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY],
                ),
                (
                    S::RSA_PSS_SHA256,
                    &[alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY],
                ),
                (S::RSA_PKCS1_SHA512, &[alg::RSA_PKCS1_2048_8192_SHA512]),
                (S::RSA_PKCS1_SHA384, &[alg::RSA_PKCS1_2048_8192_SHA384]),
                (S::RSA_PKCS1_SHA256, &[alg::RSA_PKCS1_2048_8192_SHA256]),
            ],
        };
    std::sync::Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![kx_group::SECP256R1, kx_group::SECP384R1],
        signature_verification_algorithms: ALGORITHMS,
        secure_random: &Ring,
        key_provider: &Ring,
    })
}

/// ring's random generator, and no TLS client keys (mdlr never presents a client
/// certificate in TLS: certificate sign-in signs a JWT instead).
#[derive(Debug)]
struct Ring;

impl rustls::crypto::SecureRandom for Ring {
    fn fill(&self, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        use ring::rand::SecureRandom;
        ring::rand::SystemRandom::new()
            .fill(buf)
            .map_err(|_| rustls::crypto::GetRandomFailed)
    }
}

impl rustls::crypto::KeyProvider for Ring {
    fn load_private_key(
        &self,
        _key: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<std::sync::Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        Err(rustls::Error::General(
            "mdlr does not use TLS client certificates".into(),
        ))
    }
}

/// The trust store: the bundled Mozilla roots plus `extra` (a private CA, such as the
/// one a TLS-inspecting proxy signs with).
///
/// ureq takes roots as certificates only, and the bundled roots are kept as trust
/// anchors (subject, key, name constraints: a third of the size). Each anchor is handed
/// over as a minimal certificate carrying exactly those three fields, from which
/// rustls takes them back (`anchor_certificate`; a test checks the round trip for
/// every bundled root).
pub(crate) fn root_certs(extra: &[Vec<u8>]) -> ureq::tls::RootCerts {
    let bundled = webpki_roots::TLS_SERVER_ROOTS
        .iter()
        .map(|a| ureq::tls::Certificate::from_der(&anchor_certificate(a)).to_owned());
    let added = extra
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der).to_owned());
    bundled.chain(added).collect::<Vec<_>>().into()
}

/// A certificate (DER) holding `anchor`'s subject, public key and name constraints,
/// which is all a trust anchor is. Its signature is empty: roots are trusted as given,
/// never verified.
fn anchor_certificate(anchor: &rustls::pki_types::TrustAnchor<'_>) -> Vec<u8> {
    // sha256WithRSAEncryption, NULL parameters: any algorithm will do, it is never used.
    let algorithm = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
            ),
            der(0x05, &[]),
        ]
        .concat(),
    );
    let subject = der(0x30, &anchor.subject);
    let validity = der(
        0x30,
        &[der(0x17, b"700101000000Z"), der(0x18, b"99991231235959Z")].concat(),
    );
    let mut tbs = [
        der(0xa0, &der(0x02, &[2])), // version 3
        der(0x02, &[1]),             // serial number
        algorithm.clone(),
        subject.clone(), // issuer: itself
        validity,
        subject,
        der(0x30, &anchor.subject_public_key_info),
    ]
    .concat();
    if let Some(constraints) = &anchor.name_constraints {
        // id-ce-nameConstraints (2.5.29.30), critical.
        let extension = der(
            0x30,
            &[
                der(0x06, &[0x55, 0x1d, 0x1e]),
                der(0x01, &[0xff]),
                der(0x04, &der(0x30, constraints)),
            ]
            .concat(),
        );
        tbs.extend(der(0xa3, &der(0x30, &extension)));
    }
    der(
        0x30,
        &[der(0x30, &tbs), algorithm, der(0x03, &[0])].concat(),
    )
}

/// One DER element: tag, definite length, contents.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
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
    fn every_bundled_root_survives_the_trip_through_a_certificate() {
        let mut constrained = 0;
        for anchor in webpki_roots::TLS_SERVER_ROOTS {
            let der = rustls::pki_types::CertificateDer::from(anchor_certificate(anchor));
            let back = webpki::anchor_from_trusted_cert(&der).expect("parses as an anchor");
            assert_eq!(back.subject, anchor.subject);
            assert_eq!(back.subject_public_key_info, anchor.subject_public_key_info);
            assert_eq!(back.name_constraints, anchor.name_constraints);
            constrained += usize::from(anchor.name_constraints.is_some());
        }
        assert!(constrained >= 1, "a constrained root checks the extension");
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
        // Long lengths are encoded in the long form.
        assert_eq!(&der(0x04, &[0; 200])[..3], &[0x04, 0x81, 200]);
        assert_eq!(&der(0x04, &[0; 300])[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn pem_certificates() {
        assert!(matches!(
            certificates_from_pem(b"not pem"),
            Err(Error::Config { .. })
        ));
        // A bundled root, written out as PEM, reads back to the same DER.
        let der = anchor_certificate(&webpki_roots::TLS_SERVER_ROOTS[0]);
        let pem = format!(
            "junk before\n-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            crate::encode::base64(&der)
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
