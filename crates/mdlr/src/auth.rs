//! Credentials and the access-token cache.
//!
//! Every way of signing in ends in one bearer token for the API, kept in a
//! [`TokenCache`] shared by all clones of a client and renewed five minutes before it
//! expires, and once after a 401.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::cloud::Endpoints;
use crate::error::{Error, Result};
use crate::http::{Http, Request};
use crate::ids::check_tenant;
use crate::secret::{Redactor, Secret};

/// How the client gets its bearer token.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credential {
    /// A bearer token used as is. It cannot be refreshed.
    Token(Secret),
    /// An app registration's client id and secret (OAuth 2.0 client credentials).
    ClientSecret {
        /// The directory (tenant) id or domain.
        tenant: String,
        /// The application (client) id.
        client_id: String,
        /// The client secret.
        secret: Secret,
    },
    /// An app registration's certificate: each token request carries a short-lived
    /// assertion signed with its private key (RS256, with the certificate's `x5t`).
    ClientCertificate {
        /// The directory (tenant) id or domain.
        tenant: String,
        /// The application (client) id.
        client_id: String,
        /// The certificate and its private key.
        certificate: ClientCertificate,
    },
    /// The managed identity of the Azure VM mdlr runs on, from the instance metadata
    /// service (IMDS). Never through a proxy.
    ManagedIdentity {
        /// The client id of a user-assigned identity; `None` for the system-assigned one.
        client_id: Option<String>,
        /// The metadata service's base URL (default `http://169.254.169.254`).
        endpoint: Option<String>,
    },
    /// The signed-in Azure CLI: `az account get-access-token`.
    AzureCli {
        /// The `az` program (a name looked up in `PATH`, or a path).
        program: PathBuf,
        /// The tenant to ask for, if not the CLI's default.
        tenant: Option<String>,
    },
    /// A person's sign-in kept from an earlier device-code login
    /// ([`DeviceLogin`](crate::DeviceLogin)): the refresh token gets new access tokens,
    /// and each new refresh token is handed to `on_rotate` to be kept.
    Login {
        /// The tokens from the login (or from the last rotation).
        tokens: LoginTokens,
        /// Called with the new tokens whenever the service rotates them.
        on_rotate: Option<TokenSink>,
    },
}

/// Receives rotated login tokens, to keep them for the next run.
pub type TokenSink = Arc<dyn Fn(&LoginTokens) + Send + Sync>;

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token([redacted])"),
            Credential::ClientSecret {
                tenant, client_id, ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("secret", &"[redacted]")
                .finish(),
            Credential::ClientCertificate {
                tenant,
                client_id,
                certificate,
            } => f
                .debug_struct("ClientCertificate")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("certificate", certificate)
                .finish(),
            Credential::ManagedIdentity {
                client_id,
                endpoint,
            } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .field("endpoint", endpoint)
                .finish(),
            Credential::AzureCli { program, tenant } => f
                .debug_struct("AzureCli")
                .field("program", program)
                .field("tenant", tenant)
                .finish(),
            Credential::Login { tokens, .. } => {
                f.debug_struct("Login").field("tokens", tokens).finish()
            }
        }
    }
}

impl Credential {
    /// A bearer token used as is.
    pub fn token(token: impl Into<Secret>) -> Credential {
        Credential::Token(token.into())
    }

    /// Client credentials with a secret.
    pub fn client_secret(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        secret: impl Into<Secret>,
    ) -> Credential {
        Credential::ClientSecret {
            tenant: tenant.into(),
            client_id: client_id.into(),
            secret: secret.into(),
        }
    }

    /// Client credentials with a certificate.
    pub fn client_certificate(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        certificate: ClientCertificate,
    ) -> Credential {
        Credential::ClientCertificate {
            tenant: tenant.into(),
            client_id: client_id.into(),
            certificate,
        }
    }

    /// The VM's managed identity (system-assigned, or the user-assigned `client_id`).
    pub fn managed_identity(client_id: Option<String>) -> Credential {
        Credential::ManagedIdentity {
            client_id,
            endpoint: None,
        }
    }

    /// The Azure CLI found as `az` in `PATH`.
    pub fn azure_cli() -> Credential {
        Credential::AzureCli {
            program: PathBuf::from("az"),
            tenant: None,
        }
    }

    /// A kept device-code login.
    pub fn login(tokens: LoginTokens, on_rotate: Option<TokenSink>) -> Credential {
        Credential::Login { tokens, on_rotate }
    }

    /// A short name of the method: `token`, `client-secret`, `client-certificate`,
    /// `managed-identity`, `azure-cli` or `device-code` (a kept login).
    pub fn method(&self) -> &'static str {
        match self {
            Credential::Token(_) => "token",
            Credential::ClientSecret { .. } => "client-secret",
            Credential::ClientCertificate { .. } => "client-certificate",
            Credential::ManagedIdentity { .. } => "managed-identity",
            Credential::AzureCli { .. } => "azure-cli",
            Credential::Login { .. } => "device-code",
        }
    }

    /// Whose quotas this credential's calls count against (the service counts per
    /// application and tenant), as far as can be told without signing in: the tenant
    /// and application named in the settings, or in a bearer token's claims (`tid`,
    /// `appid` or `azp`). Where one of them is unknown, a name for the method stands in
    /// for it: credentials that cannot be told apart share, which is safe.
    pub(crate) fn quota_identity(&self) -> String {
        let pair = |tenant: &str, app: &str| {
            format!(
                "{}\n{}",
                tenant.trim().to_ascii_lowercase(),
                app.trim().to_ascii_lowercase()
            )
        };
        match self {
            Credential::Token(token) => match crate::jwt::claims(token.expose().trim()) {
                Some(c) => match (c.tid, c.appid.or(c.azp)) {
                    (Some(tenant), Some(app)) => pair(&tenant, &app),
                    _ => "token".to_owned(),
                },
                None => "token".to_owned(),
            },
            Credential::ClientSecret {
                tenant, client_id, ..
            }
            | Credential::ClientCertificate {
                tenant, client_id, ..
            } => pair(tenant, client_id),
            Credential::Login { tokens, .. } => pair(&tokens.tenant, &tokens.client_id),
            Credential::ManagedIdentity { client_id, .. } => {
                pair("managed-identity", client_id.as_deref().unwrap_or("system"))
            }
            Credential::AzureCli { tenant, .. } => {
                pair(tenant.as_deref().unwrap_or("azure-cli"), "azure-cli")
            }
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            Credential::Token(t) if t.expose().trim().is_empty() => {
                Err(Error::config("the bearer token is empty"))
            }
            Credential::Token(t) if t.expose().chars().any(|c| c.is_control()) => Err(
                Error::config("the bearer token contains control characters or line breaks"),
            ),
            Credential::ClientSecret { tenant, .. }
            | Credential::ClientCertificate { tenant, .. } => check_tenant(tenant),
            Credential::Login { tokens, .. } => check_tenant(&tokens.tenant),
            Credential::AzureCli {
                tenant: Some(tenant),
                ..
            } => check_tenant(tenant),
            Credential::ManagedIdentity {
                endpoint: Some(url),
                ..
            } => check_imds_url(url),
            _ => Ok(()),
        }
    }
}

/// The metadata service is plain http by design, on a link-local address; anything
/// else must be https (or loopback, for tests).
fn check_imds_url(url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("HTTP://"));
    if let Some(rest) = rest {
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        if let Ok(std::net::IpAddr::V4(ip)) = host.parse::<std::net::IpAddr>()
            && ip.is_link_local()
        {
            return Ok(());
        }
    }
    crate::cloud::check_url(url, "the managed identity endpoint")
}

/// An app's certificate and private key, for certificate sign-in. `Debug` shows the
/// thumbprint only.
#[derive(Clone)]
pub struct ClientCertificate {
    der: Vec<u8>,
    key: Arc<ring::signature::RsaKeyPair>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("sha1", &self.thumbprint())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl ClientCertificate {
    /// Reads a PEM text holding the certificate and its unencrypted RSA private key
    /// (`BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE KEY`), in either order. With several
    /// certificates (a chain), the one matching the key is used.
    pub fn from_pem(pem: &[u8]) -> Result<ClientCertificate> {
        let text = String::from_utf8_lossy(pem);
        if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(Error::config(
                "the certificate's private key is encrypted; mdlr needs it unencrypted \
                 (openssl pkcs8 -topk8 -nocrypt)",
            ));
        }
        let mut certs = Vec::new();
        let mut key = None;
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c.der().to_vec()),
                Ok(ureq::tls::PemItem::PrivateKey(k)) if key.is_none() => {
                    key = Some(k.der().to_vec());
                }
                Ok(_) => {}
                Err(e) => return Err(Error::config(format!("cannot read the PEM text: {e}"))),
            }
        }
        let Some(key_der) = key else {
            return Err(Error::config(
                "no private key in the certificate file (BEGIN PRIVATE KEY or BEGIN RSA \
                 PRIVATE KEY)",
            ));
        };
        // PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&key_der)
            .or_else(|_| ring::signature::RsaKeyPair::from_der(&key_der))
            .map_err(|e| {
                Error::config(format!(
                    "the private key cannot be used ({e}); Entra ID certificate \
                     credentials need an RSA key"
                ))
            })?;
        if certs.is_empty() {
            return Err(Error::config(
                "no certificate in the certificate file (BEGIN CERTIFICATE)",
            ));
        }
        // The certificate's SubjectPublicKeyInfo holds the key's RSAPublicKey DER.
        use ring::signature::KeyPair;
        let public = pair.public_key().as_ref().to_vec();
        let der = certs
            .into_iter()
            .find(|c| contains(c, &public))
            .ok_or_else(|| Error::config("no certificate in the file matches its private key"))?;
        Ok(ClientCertificate {
            der,
            key: Arc::new(pair),
        })
    }

    /// The certificate in DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The SHA-1 thumbprint in hex, as the Azure portal shows it.
    pub fn thumbprint(&self) -> String {
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }

    /// The signed client assertion for `audience` (the token URL), valid 9 minutes.
    pub(crate) fn assertion(&self, client_id: &str, audience: &str) -> Result<String> {
        crate::jwt::client_assertion(&self.key, &self.der, client_id, audience)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The tokens of a person's device-code login, to keep between runs.
#[derive(Clone, Debug)]
pub struct LoginTokens {
    /// The tenant signed in to (`organizations` when none was named).
    pub tenant: String,
    /// The public client app used.
    pub client_id: String,
    /// The refresh token (it changes on every use).
    pub refresh_token: Secret,
    /// The last access token, if still worth keeping.
    pub access_token: Option<Secret>,
    /// When that access token expires.
    pub expires_at: Option<SystemTime>,
}

/// Refresh this long before the token says it expires (clocks drift).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Longest time `az` may take to print a token.
const AZ_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Cached {
    pub(crate) token: Secret,
    /// `None`: never expires as far as we know (a given token).
    refresh_at: Option<Instant>,
    /// When the token itself expires, for `mdlr auth`.
    pub(crate) expires_at: Option<SystemTime>,
}

impl Cached {
    fn new(token: Secret, lifetime: Duration, started: Instant) -> Cached {
        Cached {
            token,
            refresh_at: Some(started + lifetime.saturating_sub(REFRESH_MARGIN)),
            expires_at: SystemTime::now().checked_add(lifetime.saturating_sub(started.elapsed())),
        }
    }
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    /// The newest login tokens (rotated by each refresh).
    login: Option<LoginTokens>,
}

/// Holds the current token; shared by all clones of a client.
///
/// Every secret it holds or obtains — the credential's, each token, each refresh token,
/// each client assertion — goes to the redactor before it is sent anywhere, so that no
/// error message can carry it.
pub(crate) struct TokenCache {
    credential: Credential,
    state: Mutex<State>,
}

impl TokenCache {
    pub(crate) fn new(credential: Credential, redactor: &Redactor) -> TokenCache {
        match &credential {
            Credential::Token(t) => redactor.add(t),
            Credential::ClientSecret { secret, .. } => redactor.add(secret),
            Credential::Login { tokens, .. } => {
                redactor.add(&tokens.refresh_token);
                if let Some(t) = &tokens.access_token {
                    redactor.add(t);
                }
            }
            _ => {}
        }
        let mut state = State::default();
        if let Credential::Login { tokens, .. } = &credential {
            // A kept access token is used while it is good.
            if let (Some(token), Some(expires)) = (&tokens.access_token, tokens.expires_at)
                && let Ok(left) = expires.duration_since(SystemTime::now())
                && left > REFRESH_MARGIN
            {
                state.current = Some(Cached::new(token.clone(), left, Instant::now()));
            }
            state.login = Some(tokens.clone());
        }
        TokenCache {
            credential,
            state: Mutex::new(state),
        }
    }

    pub(crate) fn credential(&self) -> &Credential {
        &self.credential
    }

    /// Whether a rejected token can be replaced by asking again.
    pub(crate) fn can_refresh(&self) -> bool {
        !matches!(self.credential, Credential::Token(_))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current token, fetching a new one when there is none or it is about to expire.
    pub(crate) fn token(&self, http: &Http, endpoints: &Endpoints) -> Result<Secret> {
        self.with_current(http, endpoints, |c| c.token.clone())
    }

    /// Calls `f` with the current token (fetching one if needed).
    pub(crate) fn with_current<T>(
        &self,
        http: &Http,
        endpoints: &Endpoints,
        f: impl FnOnce(&Cached) -> T,
    ) -> Result<T> {
        let mut state = self.lock();
        if let Some(c) = state.current.as_ref()
            && c.refresh_at.is_none_or(|t| Instant::now() < t)
        {
            return Ok(f(c));
        }
        let fresh = self.fetch(&mut state, http, endpoints)?;
        http.redactor().add(&fresh.token);
        let out = f(&fresh);
        state.current = Some(fresh);
        Ok(out)
    }

    /// Forgets the current token (after the API rejected it with 401).
    pub(crate) fn invalidate(&self) {
        self.lock().current = None;
    }

    fn fetch(&self, state: &mut State, http: &Http, endpoints: &Endpoints) -> Result<Cached> {
        let token_url = |tenant: &str| {
            format!(
                "{}/{tenant}/oauth2/v2.0/token",
                endpoints.authority.trim_end_matches('/')
            )
        };
        match &self.credential {
            Credential::Token(t) => Ok(Cached {
                token: t.clone(),
                refresh_at: None,
                expires_at: None,
            }),
            Credential::ClientSecret {
                tenant,
                client_id,
                secret,
            } => {
                let fields = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", secret.expose()),
                    ("scope", endpoints.scope.as_str()),
                ];
                let (cached, _) = post_token(http, &token_url(tenant), &fields)?;
                Ok(cached)
            }
            Credential::ClientCertificate {
                tenant,
                client_id,
                certificate,
            } => {
                let url = token_url(tenant);
                let assertion = Secret::new(certificate.assertion(client_id, &url)?);
                http.redactor().add(&assertion);
                let fields = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.expose()),
                    ("scope", endpoints.scope.as_str()),
                ];
                let (cached, _) = post_token(http, &url, &fields)?;
                Ok(cached)
            }
            Credential::Login { on_rotate, .. } => {
                let Some(login) = state.login.clone() else {
                    return Err(Error::config("the login has no refresh token"));
                };
                let scope = format!("{} offline_access", endpoints.scope);
                let fields = [
                    ("grant_type", "refresh_token"),
                    ("client_id", login.client_id.as_str()),
                    ("refresh_token", login.refresh_token.expose()),
                    ("scope", scope.as_str()),
                ];
                let (cached, refresh) =
                    post_token(http, &token_url(&login.tenant), &fields).map_err(login_refused)?;
                if let Some(r) = &refresh {
                    http.redactor().add(r);
                }
                let rotated = LoginTokens {
                    refresh_token: refresh.unwrap_or(login.refresh_token.clone()),
                    access_token: Some(cached.token.clone()),
                    expires_at: cached.expires_at,
                    ..login
                };
                if let Some(sink) = on_rotate {
                    sink(&rotated);
                }
                state.login = Some(rotated);
                Ok(cached)
            }
            Credential::ManagedIdentity {
                client_id,
                endpoint,
            } => managed_identity(http, endpoints, client_id.as_deref(), endpoint.as_deref()),
            Credential::AzureCli { program, tenant } => {
                azure_cli(program, &resource_of(&endpoints.scope), tenant.as_deref())
            }
        }
    }
}

/// A refused refresh token means the kept login is over: say so.
fn login_refused(e: Error) -> Error {
    match e {
        Error::Auth {
            status,
            code,
            message,
            correlation_id,
        } if code.as_deref() == Some("invalid_grant") => Error::Auth {
            status,
            code,
            message: format!("{message} (the kept login is no longer valid)"),
            correlation_id,
        },
        other => other,
    }
}

/// `https://api.securitycenter.microsoft.com/.default` → the resource itself.
pub(crate) fn resource_of(scope: &str) -> String {
    let first = scope.split_whitespace().next().unwrap_or(scope);
    first.strip_suffix("/.default").unwrap_or(first).to_owned()
}

/// Posts a token request; returns the token and any refresh token that came with it.
/// Every secret in `fields` must be known to the redactor already.
pub(crate) fn post_token(
    http: &Http,
    url: &str,
    fields: &[(&str, &str)],
) -> Result<(Cached, Option<Secret>)> {
    let started = Instant::now();
    let req = Request::form(url, fields);
    let resp = http.plain(&req)?;
    let status = resp.status();
    let body = resp.read_limited(1 << 20, "token reply")?;
    // An error reply's body comes scrubbed; a 200 without a token may still quote the
    // form back, so what the error says is scrubbed too.
    parse_token_reply(status, &body, started).map_err(|e| http.redactor().scrub_error(e))
}

/// The token from the Azure instance metadata service.
fn managed_identity(
    http: &Http,
    endpoints: &Endpoints,
    client_id: Option<&str>,
    endpoint: Option<&str>,
) -> Result<Cached> {
    use crate::encode::form as form_encode;
    let base = endpoint
        .unwrap_or("http://169.254.169.254")
        .trim_end_matches('/');
    let mut url = format!(
        "{base}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
        form_encode(&resource_of(&endpoints.scope))
    );
    if let Some(id) = client_id {
        url.push_str("&client_id=");
        url.push_str(&form_encode(id));
    }
    let started = Instant::now();
    let mut req = Request::get(&url);
    req.local = true;
    req.headers.push(("Metadata", "true".to_owned()));
    let resp = http.plain(&req).map_err(|e| match e {
        Error::Transport {
            kind: crate::TransportKind::Connect | crate::TransportKind::Timeout,
            message,
            ..
        } => Error::Auth {
            status: None,
            code: None,
            message: format!(
                "no managed identity endpoint answered at {base} ({message}); \
                     managed identity works only on an Azure VM with an identity assigned"
            ),
            correlation_id: None,
        },
        other => other,
    })?;
    let status = resp.status();
    let body = resp.read_limited(1 << 20, "managed identity reply")?;
    parse_token_reply(status, &body, started)
        .map(|(c, _)| c)
        .map_err(|e| match e {
            Error::Auth {
                status,
                code,
                message,
                correlation_id,
            } => Error::Auth {
                status,
                code,
                message: format!("managed identity: {message}"),
                correlation_id,
            },
            other => other,
        })
}

/// What `az account get-access-token --output json` prints.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AzToken {
    access_token: Option<String>,
    #[serde(default, rename = "expires_on")]
    expires_on: Option<serde_json::Value>,
}

/// The token from the signed-in Azure CLI.
fn azure_cli(program: &std::path::Path, resource: &str, tenant: Option<&str>) -> Result<Cached> {
    let started = Instant::now();
    let mut cmd = Command::new(program);
    cmd.args([
        "account",
        "get-access-token",
        "--resource",
        resource,
        "--output",
        "json",
    ]);
    if let Some(t) = tenant {
        cmd.args(["--tenant", t]);
    }
    let name = program.display().to_string();
    let auth = |message: String| Error::Auth {
        status: None,
        code: None,
        message,
        correlation_id: None,
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            auth(if e.kind() == std::io::ErrorKind::NotFound {
                format!("the Azure CLI ({name}) is not installed or not in PATH")
            } else {
                format!("cannot run the Azure CLI ({name}): {e}")
            })
        })?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(1 << 20).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > AZ_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(auth(format!(
                    "the Azure CLI gave no token within {} s",
                    AZ_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(auth(format!("waiting for the Azure CLI failed: {e}"))),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let text = String::from_utf8_lossy(&stderr);
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("WARNING"))
            .unwrap_or("no message");
        let line = line.strip_prefix("ERROR:").unwrap_or(line).trim();
        return Err(auth(format!("the Azure CLI failed: {line}")));
    }
    let reply: AzToken = serde_json::from_slice(&stdout)
        .map_err(|e| Error::malformed("Azure CLI output", e.to_string()))?;
    let token = reply
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::malformed("Azure CLI output", "no accessToken"))?;
    let expires_on = match reply.expires_on {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    // Older CLIs print only a local time without a zone: the token's own `exp` is
    // the reliable expiry then.
    .or_else(|| crate::jwt::claims(&token).and_then(|c| c.exp));
    let lifetime = expires_on.map_or(Duration::from_secs(300), |exp| {
        Duration::from_secs(exp.saturating_sub(crate::time::unix_now()))
    });
    Ok(Cached::new(Secret::new(token), lifetime, started))
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
}

pub(crate) fn parse_token_reply(
    status: u16,
    body: &[u8],
    started: Instant,
) -> Result<(Cached, Option<Secret>)> {
    let reply: Option<TokenReply> = serde_json::from_slice(body).ok();
    match reply {
        Some(TokenReply {
            access_token: Some(token),
            expires_in,
            refresh_token,
            ..
        }) if status == 200 && !token.is_empty() => {
            let seconds = match expires_in {
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
                _ => None,
            }
            .unwrap_or(3599);
            Ok((
                Cached::new(Secret::new(token), Duration::from_secs(seconds), started),
                refresh_token.filter(|r| !r.is_empty()).map(Secret::new),
            ))
        }
        Some(r) if r.error.is_some() => Err(Error::Auth {
            status: Some(status),
            code: r.error,
            message: r
                .error_description
                .as_deref()
                .and_then(|d| d.lines().next())
                .unwrap_or("the token endpoint refused")
                .to_owned(),
            correlation_id: r.correlation_id.or(r.trace_id),
        }),
        _ => Err(Error::Auth {
            status: Some(status),
            code: None,
            message: format!(
                "the token endpoint sent no token ({})",
                crate::reply::describe_body(body)
            ),
            correlation_id: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_reply_numbers_may_be_strings() {
        let (c, refresh) = parse_token_reply(
            200,
            br#"{"token_type":"Bearer","expires_in":"3599","access_token":"abc","refresh_token":"r1"}"#,
            Instant::now(),
        )
        .expect("parses");
        assert_eq!(c.token.expose(), "abc");
        assert!(c.refresh_at.is_some());
        assert_eq!(
            refresh.map(|r| r.expose().to_owned()).as_deref(),
            Some("r1")
        );
    }

    #[test]
    fn token_errors_keep_code_and_first_line() {
        let e = parse_token_reply(
            401,
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret.\r\nTrace ID: 1","correlation_id":"c-1"}"#,
            Instant::now(),
        );
        match e {
            Err(Error::Auth {
                code,
                message,
                correlation_id,
                ..
            }) => {
                assert_eq!(code.as_deref(), Some("invalid_client"));
                assert_eq!(message, "AADSTS7000215: Invalid client secret.");
                assert_eq!(correlation_id.as_deref(), Some("c-1"));
            }
            other => panic!("{:?}", other.err()),
        }
        assert!(parse_token_reply(502, b"<html>", Instant::now()).is_err());
    }

    #[test]
    fn credential_debug_is_redacted() {
        let c = Credential::client_secret("t", "c", "s3cr3t-value");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(!format!("{:?}", Credential::token("tok-123")).contains("tok-123"));
        let login = Credential::login(
            LoginTokens {
                tenant: "t".into(),
                client_id: "c".into(),
                refresh_token: Secret::new("refresh-xyz"),
                access_token: Some(Secret::new("access-xyz")),
                expires_at: None,
            },
            None,
        );
        let shown = format!("{login:?}");
        assert!(!shown.contains("refresh-xyz") && !shown.contains("access-xyz"));
    }

    #[test]
    fn resources_and_imds_urls() {
        assert_eq!(
            resource_of("https://api.securitycenter.microsoft.com/.default"),
            "https://api.securitycenter.microsoft.com"
        );
        assert_eq!(
            resource_of("https://x.example/.default offline_access"),
            "https://x.example"
        );
        assert!(check_imds_url("http://169.254.169.254").is_ok());
        assert!(check_imds_url("http://127.0.0.1:8080").is_ok());
        assert!(check_imds_url("https://imds.example").is_ok());
        assert!(check_imds_url("http://10.0.0.4").is_err());
    }

    #[test]
    fn certificate_files_are_checked() {
        assert!(matches!(
            ClientCertificate::from_pem(b"nothing here"),
            Err(Error::Config { .. })
        ));
        let encrypted =
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        match ClientCertificate::from_pem(encrypted) {
            Err(Error::Config { message }) => assert!(message.contains("encrypted"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}
