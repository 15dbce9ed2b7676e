//! A private PKI for tests, made with the `openssl` command at test time: a CA
//! ([`TestCa`]), server certificates it signs ([`ServerCert`], for [`crate::tls`]), and
//! the self-signed RSA certificates an app registration signs its client assertions
//! with ([`ClientCert`]), with their `x5t` / `x5t#S256` thumbprints and a JWT signer.
//!
//! Every certificate lives in a temporary directory of its own, removed when it is
//! dropped. Without `openssl` every constructor fails with [`OPENSSL_MISSING`].
//!
//! Keys: the CA and the server certificates use ECDSA P-256 (quick to make; rustls and
//! webpki accept it); client certificates use RSA 2048, as Microsoft Entra ID requires.
//!
//! ```no_run
//! use mdlr_tests::pki::{KeyFormat, TestCa};
//! let ca = TestCa::new().expect("test CA");
//! let server = ca.localhost_cert().expect("server certificate");
//! let app = ca.client_cert("mdlr-app", KeyFormat::Pkcs8).expect("client certificate");
//! println!("{} {} {}", ca.ca_pem_path().display(), server.chain_pem_path().display(), app.x5t());
//! ```

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

/// What every constructor says when there is no `openssl` command.
pub const OPENSSL_MISSING: &str = "openssl is not installed: the test certificates are made \
     with the openssl command; run `cargo xtask test` (it installs it as root) or \
     `apt-get install openssl`";

/// The `openssl req` configuration: a subject from `-subj`, and the extension sections.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = replaced by -subj

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
";

/// A fresh directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// `$TMPDIR/mdlr-{what}-{pid}-{n}`, empty.
    pub(crate) fn new(what: &str) -> io::Result<Scratch> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("mdlr-{what}-{}-{n}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(Scratch(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `openssl` in `dir` with the whitespace-separated `words`, then `more` (values
/// that may hold spaces); its stderr becomes the error.
fn openssl(dir: &Path, words: &str, more: &[&str]) -> io::Result<()> {
    let args: Vec<&str> = words
        .split_whitespace()
        .chain(more.iter().copied())
        .collect();
    let output = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .env("OPENSSL_CONF", dir.join("openssl.cnf"))
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => io::Error::new(io::ErrorKind::NotFound, OPENSSL_MISSING),
            _ => io::Error::new(e.kind(), format!("cannot run openssl: {e}")),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "openssl {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// A scratch directory holding `openssl.cnf`.
fn workdir(what: &str) -> io::Result<Scratch> {
    let dir = Scratch::new(what)?;
    std::fs::write(dir.join("openssl.cnf"), OPENSSL_CNF)?;
    Ok(dir)
}

/// A random serial number, as `openssl -set_serial` takes it.
fn serial() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| io::Error::other("no random bytes for a serial number"))?;
    // Positive and without a leading zero byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    let mut hex = String::from("0x");
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

fn bad_pem(path: &Path, e: impl std::fmt::Debug) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("cannot read {}: {e:?}", path.display()),
    )
}

/// The first certificate in the PEM file at `path`, as DER.
fn cert_der_from(path: &Path) -> io::Result<Vec<u8>> {
    CertificateDer::from_pem_file(path)
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| bad_pem(path, e))
}

/// The PKCS#8 private key in the PEM file at `path`, as DER.
fn pkcs8_der_from(path: &Path) -> io::Result<Vec<u8>> {
    PrivatePkcs8KeyDer::from_pem_file(path)
        .map(|k| k.secret_pkcs8_der().to_vec())
        .map_err(|e| bad_pem(path, e))
}

/// A certificate authority of its own, for one test or a few.
#[derive(Debug)]
pub struct TestCa {
    dir: Scratch,
    cert_der: Vec<u8>,
}

impl TestCa {
    /// A new CA (ECDSA P-256, `CA:TRUE`, `keyCertSign`), valid for ten years from now.
    pub fn new() -> io::Result<TestCa> {
        TestCa::named("mdlr test CA")
    }

    /// As [`TestCa::new`], with `common_name` as its subject's CN.
    pub fn named(common_name: &str) -> io::Result<TestCa> {
        let dir = workdir("ca")?;
        let subject = format!("/O=mdlr tests/CN={common_name}");
        openssl(
            dir.path(),
            "req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
             -keyout ca.key -out ca.pem -days 3650 -sha256 -config openssl.cnf \
             -extensions ca_ext -set_serial",
            &[&serial()?, "-subj", &subject],
        )?;
        let cert_der = cert_der_from(&dir.join("ca.pem"))?;
        Ok(TestCa { dir, cert_der })
    }

    /// The CA certificate (PEM): what a client is told to trust (`--ca-cert`).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA certificate, PEM text.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_pem_path()).unwrap_or_default()
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A server certificate signed by this CA for the names `dns` and the addresses
    /// `ips` (its subjectAltName; at least one is needed), ECDSA P-256, `CA:FALSE`,
    /// `digitalSignature`, `serverAuth`, valid for 825 days from now.
    pub fn server_cert(&self, dns: &[&str], ips: &[IpAddr]) -> io::Result<ServerCert> {
        let mut names: Vec<String> = dns.iter().map(|d| format!("DNS:{d}")).collect();
        names.extend(ips.iter().map(|ip| format!("IP:{ip}")));
        if names.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a server certificate needs at least one DNS name or IP address",
            ));
        }
        let bad = |s: &str| s.chars().any(|c| c.is_control() || matches!(c, ',' | '/'));
        if dns.iter().any(|d| d.is_empty() || bad(d)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a DNS name for a certificate: {dns:?}"),
            ));
        }
        let dir = workdir("server-cert")?;
        let ext = format!(
            "[server_ext]\n\
             basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\n\
             subjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid:always\n\
             subjectAltName = {}\n",
            names.join(", ")
        );
        std::fs::write(dir.join("server.cnf"), ext)?;
        let cn = dns
            .first()
            .map(|d| (*d).to_owned())
            .or_else(|| ips.first().map(IpAddr::to_string))
            .unwrap_or_default();
        openssl(
            dir.path(),
            "req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem \
             -out server.csr -config openssl.cnf -subj",
            &[&format!("/O=mdlr tests/CN={cn}")],
        )?;
        openssl(
            dir.path(),
            "x509 -req -in server.csr -days 825 -sha256 -extfile server.cnf \
             -extensions server_ext -out cert.pem -set_serial",
            &[
                &serial()?,
                "-CA",
                &self.ca_pem_path().to_string_lossy(),
                "-CAkey",
                &self.dir.join("ca.key").to_string_lossy(),
            ],
        )?;
        let cert_der = cert_der_from(&dir.join("cert.pem"))?;
        let key_der = pkcs8_der_from(&dir.join("key.pem"))?;
        let mut chain = std::fs::read_to_string(dir.join("cert.pem"))?;
        chain.push_str(&self.ca_pem());
        std::fs::write(dir.join("chain.pem"), chain)?;
        Ok(ServerCert {
            dir,
            cert_der,
            key_der,
            ca_der: self.cert_der.clone(),
        })
    }

    /// A server certificate for `localhost`, `127.0.0.1` and `::1`: what
    /// [`crate::tls::TlsServer`] needs.
    pub fn localhost_cert(&self) -> io::Result<ServerCert> {
        self.server_cert(
            &["localhost"],
            &[
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            ],
        )
    }

    /// An app's client certificate: self-signed RSA 2048 (Entra ID only needs the public
    /// certificate uploaded, not a chain), in one PEM file, certificate first. See
    /// [`ClientCert::new`].
    pub fn client_cert(&self, common_name: &str, key: KeyFormat) -> io::Result<ClientCert> {
        ClientCert::new(common_name, key, PemOrder::CertThenKey)
    }
}

/// A server certificate and its key, signed by a [`TestCa`].
#[derive(Debug)]
pub struct ServerCert {
    dir: Scratch,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
    ca_der: Vec<u8>,
}

impl ServerCert {
    /// The certificate then the CA certificate, PEM.
    pub fn chain_pem_path(&self) -> PathBuf {
        self.dir.join("chain.pem")
    }

    /// The certificate alone, PEM.
    pub fn cert_pem_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    pub fn key_pem_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate then the CA certificate, DER.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        vec![self.cert_der.clone(), self.ca_der.clone()]
    }

    /// The private key, PKCS#8 DER.
    pub fn key_der(&self) -> &[u8] {
        &self.key_der
    }
}

/// How a [`ClientCert`]'s private key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// PKCS#8: `-----BEGIN PRIVATE KEY-----`.
    Pkcs8,
    /// PKCS#1: `-----BEGIN RSA PRIVATE KEY-----`.
    Pkcs1,
}

/// The order of the certificate and the key in [`ClientCert::pem_path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemOrder {
    /// The certificate, then the key (what `az ad sp create-for-rbac --create-cert`
    /// writes is key first; both are common).
    CertThenKey,
    /// The key, then the certificate.
    KeyThenCert,
}

/// The signature algorithm of a JWT signed by [`ClientCert::sign_jwt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256.
    PS256,
}

/// An app registration's signing certificate: self-signed RSA 2048, `CA:FALSE`, with
/// its key.
#[derive(Debug)]
pub struct ClientCert {
    dir: Scratch,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl ClientCert {
    /// A new certificate with subject `CN=common_name`, valid for a year from now.
    /// [`ClientCert::pem_path`] holds the certificate and the key (in `key` format) in
    /// `order`; [`ClientCert::cert_pem_path`] and [`ClientCert::key_pem_path`] hold
    /// them apart.
    pub fn new(common_name: &str, key: KeyFormat, order: PemOrder) -> io::Result<ClientCert> {
        let dir = workdir("client-cert")?;
        openssl(
            dir.path(),
            "req -x509 -new -newkey rsa:2048 -nodes -keyout key8.pem -out cert.pem \
             -days 365 -sha256 -config openssl.cnf -extensions client_ext -set_serial",
            &[&serial()?, "-subj", &format!("/CN={common_name}")],
        )?;
        // ring signs with PKCS#8, whatever format the file is to have.
        let key_der = pkcs8_der_from(&dir.join("key8.pem"))?;
        if key == KeyFormat::Pkcs1 {
            openssl(
                dir.path(),
                "pkey -in key8.pem -traditional -out key.pem",
                &[],
            )?;
            std::fs::remove_file(dir.join("key8.pem"))?;
        } else {
            std::fs::rename(dir.join("key8.pem"), dir.join("key.pem"))?;
        }
        let cert_pem = std::fs::read_to_string(dir.join("cert.pem"))?;
        let key_pem = std::fs::read_to_string(dir.join("key.pem"))?;
        let label = match key {
            KeyFormat::Pkcs8 => "-----BEGIN PRIVATE KEY-----",
            KeyFormat::Pkcs1 => "-----BEGIN RSA PRIVATE KEY-----",
        };
        if !key_pem.starts_with(label) {
            return Err(io::Error::other(format!(
                "openssl wrote a key that does not start with {label}"
            )));
        }
        let both = match order {
            PemOrder::CertThenKey => format!("{cert_pem}{key_pem}"),
            PemOrder::KeyThenCert => format!("{key_pem}{cert_pem}"),
        };
        std::fs::write(dir.join("cert-and-key.pem"), both)?;
        let cert_der = cert_der_from(&dir.join("cert.pem"))?;
        Ok(ClientCert {
            dir,
            cert_der,
            key_der,
        })
    }

    /// The certificate and its private key in one PEM file.
    pub fn pem_path(&self) -> PathBuf {
        self.dir.join("cert-and-key.pem")
    }

    /// The certificate alone, PEM (what is uploaded to the app registration).
    pub fn cert_pem_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The private key alone, PEM, in the format asked for.
    pub fn key_pem_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The private key, PKCS#8 DER (whatever format the PEM file has).
    pub fn key_pkcs8_der(&self) -> &[u8] {
        &self.key_der
    }

    /// `x5t`: the base64url (unpadded) SHA-1 of the certificate's DER.
    pub fn x5t(&self) -> String {
        base64url(&sha1(&self.cert_der))
    }

    /// `x5t#S256`: the base64url (unpadded) SHA-256 of the certificate's DER.
    pub fn x5t_s256(&self) -> String {
        base64url(ring::digest::digest(&ring::digest::SHA256, &self.cert_der).as_ref())
    }

    /// The SHA-1 thumbprint as the Azure portal shows it: uppercase hex.
    pub fn thumbprint_hex(&self) -> String {
        sha1(&self.cert_der).iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02X}");
            s
        })
    }

    /// A compact JWS: `header` and `claims` as given (nothing is added or checked),
    /// signed with this certificate's key by `alg` (whatever `header` says).
    ///
    /// # Panics
    ///
    /// If ring refuses the key or cannot sign (it made no sense to go on testing).
    pub fn sign_jwt(&self, alg: JwtAlg, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let key = ring::signature::RsaKeyPair::from_pkcs8(&self.key_der)
            .expect("ring reads the client certificate's RSA key");
        let mut signature = vec![0u8; key.public().modulus_len()];
        let padding: &dyn ring::signature::RsaEncoding = match alg {
            JwtAlg::RS256 => &ring::signature::RSA_PKCS1_SHA256,
            JwtAlg::PS256 => &ring::signature::RSA_PSS_SHA256,
        };
        key.sign(
            padding,
            &ring::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .expect("ring signs with the client certificate's key");
        format!("{input}.{}", base64url(&signature))
    }

    /// The header of a client assertion signed with `alg`: `RS256` with `x5t`, or
    /// `PS256` with `x5t#S256`.
    pub fn assertion_header(&self, alg: JwtAlg) -> Value {
        match alg {
            JwtAlg::RS256 => json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t()}),
            JwtAlg::PS256 => json!({"alg": "PS256", "typ": "JWT", "x5t#S256": self.x5t_s256()}),
        }
    }

    /// The claims of a valid client assertion for `client_id` at the token URL `aud`:
    /// `iss` = `sub` = `client_id`, a fresh `jti`, `iat` = `nbf` = now, `exp` = now + 10
    /// minutes.
    pub fn assertion_claims(client_id: &str, aud: &str) -> Value {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let jti = format!(
            "jti-{}-{}-{now}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        json!({
            "aud": aud, "iss": client_id, "sub": client_id, "jti": jti,
            "iat": now, "nbf": now, "exp": now + 600,
        })
    }

    /// A valid client assertion (`RS256` with `x5t`), as a well-behaved client makes it.
    pub fn assertion(&self, client_id: &str, aud: &str) -> String {
        self.sign_jwt(
            JwtAlg::RS256,
            &self.assertion_header(JwtAlg::RS256),
            &ClientCert::assertion_claims(client_id, aud),
        )
    }
}

/// SHA-1 (for `x5t` only).
pub fn sha1(bytes: &[u8]) -> [u8; 20] {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    let mut out = [0u8; 20];
    out.copy_from_slice(digest.as_ref());
    out
}

/// base64url without padding (RFC 7515's `BASE64URL`).
pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url; `None` on any other character, on padding, or on a
/// length or leftover bits no encoder makes.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// One DER element: (tag, contents, the rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The RSA public key (PKCS#1 `RSAPublicKey` DER, what ring's RSA verification takes) of
/// the X.509 certificate `cert_der`; `None` when it is not an RSA certificate or not DER.
pub fn rsa_public_key(cert_der: &[u8]) -> Option<Vec<u8>> {
    const RSA_ENCRYPTION: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let (0x30, certificate, _) = der(cert_der)? else {
        return None;
    };
    let (0x30, tbs, _) = der(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    if let (0xa0, _, after_version) = der(rest)? {
        rest = after_version;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        rest = der(rest)?.2;
    }
    let (0x30, spki, _) = der(rest)? else {
        return None;
    };
    let (0x30, algorithm, key) = der(spki)? else {
        return None;
    };
    let (0x06, oid, _) = der(algorithm)? else {
        return None;
    };
    if oid != RSA_ENCRYPTION {
        return None;
    }
    let (0x03, bits, _) = der(key)? else {
        return None;
    };
    match bits.split_first()? {
        (0, key) => Some(key.to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff, 0xfe]), "-__-");
        for n in 0..70u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37).wrapping_add(n)).collect();
            assert_eq!(base64url_decode(&base64url(&bytes)), Some(bytes));
        }
        assert_eq!(base64url_decode("Zg=="), None, "padding is refused");
        assert_eq!(
            base64url_decode("Zm9v+A"),
            None,
            "standard alphabet is refused"
        );
        assert_eq!(base64url_decode("Z"), None);
        assert_eq!(base64url_decode("Zh"), None, "non-zero leftover bits");
    }

    #[test]
    fn der_lengths() {
        assert_eq!(
            der(&[0x30, 0x01, 0xaa, 0xbb]),
            Some((0x30, &[0xaa][..], &[0xbb][..]))
        );
        let long = [&[0x04, 0x81, 0x80][..], &[7u8; 0x80]].concat();
        assert_eq!(
            der(&long).map(|(_, c, r)| (c.len(), r.len())),
            Some((0x80, 0))
        );
        assert_eq!(der(&[0x30, 0x02, 0xaa]), None, "cut short");
        assert_eq!(der(&[0x30, 0x80]), None, "indefinite length is not DER");
    }
}
