//! A local stand-in for Microsoft Entra ID's token endpoints and Azure's Instance
//! Metadata Service (IMDS), and a fake Azure CLI ([`FakeAz`]), for the sign-in tests.
//!
//! [`Idp`] runs on [`crate::server`] (plain `http` on loopback, which mdlr allows) and
//! **checks** what it is sent, the way the real services do, recording every request
//! ([`Idp::requests`]) and every mistake it found in one ([`Idp::errors`]), so a test
//! can assert that a sign-in both worked and was made by the book:
//!
//! - `POST {authority}/{tenant}/oauth2/v2.0/token`
//!   - `grant_type=client_credentials` with `client_secret`, or with a client assertion
//!     whose JWT is verified: `RS256` + `x5t` (or `PS256` + `x5t#S256`) naming the
//!     registered certificate, `typ` `JWT`, the signature checked with the certificate's
//!     public key, `aud` = the token URL requested, `iss` = `sub` = the client id, a
//!     `jti` never seen before, `nbf`/`iat` not in the future (30 s skew), `exp` in the
//!     future and at most 10 minutes after `iat`;
//!   - `grant_type=urn:ietf:params:oauth:grant-type:device_code`: `authorization_pending`
//!     so many times, maybe one `slow_down`, then the tokens (or a refusal), with the
//!     poll times kept ([`Idp::polls`]) and polling faster than the interval recorded as
//!     an error;
//!   - `grant_type=refresh_token`: only the latest refresh token issued is accepted, and
//!     each reply carries a new one (rotation).
//! - `POST {authority}/{tenant}/oauth2/v2.0/devicecode` (`scope` must hold
//!   `offline_access` for a refresh token to come back).
//! - `GET /metadata/identity/oauth2/token?api-version=..&resource=..` with
//!   `Metadata: true` (IMDS), answered with strings as IMDS does; a request that came
//!   through a proxy (`Via`, `X-Forwarded-For`) is refused, as IMDS refuses it.
//!
//! Errors are answered as Entra ID answers them: `{"error", "error_description":
//! "AADSTS...: ...\r\nTrace ID: ...\r\nCorrelation ID: ...\r\nTimestamp: ...",
//! "error_codes", "timestamp", "trace_id", "correlation_id", "error_uri"}`. Recorded
//! reasons never quote a secret.
//!
//! Access tokens are JWT-shaped (their signature is junk) with realistic claims; each is
//! unique, and [`Idp::issued`] / [`Idp::grant_of`] / [`Idp::check_bearer`] tell a test
//! whether the API was called with one of them and which grant produced it.
//!
//! ```no_run
//! use mdlr_tests::idp::{Idp, IdpConfig};
//! let idp = Idp::start(IdpConfig::default());
//! // AZURE_AUTHORITY_HOST=idp.authority(), AZURE_TENANT_ID=idp.config().tenant, ...
//! assert!(idp.errors().is_empty(), "{:#?}", idp.errors());
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::pki::{base64url, base64url_decode, rsa_public_key, sha1};
use crate::server::{Request, Response, Server, parse_query};
use crate::util::{guid, iso_short, mix, noise};

/// Microsoft Defender for Endpoint's API, as a resource (`aud` of its tokens).
pub const DEFAULT_RESOURCE: &str = "https://api.securitycenter.microsoft.com";

/// The scope mdlr asks for by default.
pub const DEFAULT_SCOPE: &str = "https://api.securitycenter.microsoft.com/.default";

/// `client_assertion_type` of a certificate sign-in.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `grant_type` of a device code poll.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The path of IMDS's token endpoint.
pub const IMDS_TOKEN_PATH: &str = "/metadata/identity/oauth2/token";

/// Where the device code flow sends people.
pub const VERIFICATION_URI: &str = "https://microsoft.com/devicelogin";

/// How far in the future `nbf`/`iat` of a client assertion may be.
const SKEW: u64 = 30;

/// The longest `exp - iat` of a client assertion.
const MAX_ASSERTION_LIFETIME: u64 = 600;

/// How early a device code poll may come without being called too fast (the client
/// measures from the reply, we from the request's arrival).
const POLL_TOLERANCE: Duration = Duration::from_millis(50);

/// The IMDS API versions that exist (any of them is fine).
const IMDS_API_VERSIONS: &[&str] = &[
    "2018-02-01",
    "2019-03-11",
    "2019-08-01",
    "2019-11-01",
    "2020-06-01",
    "2021-02-01",
    "2021-12-13",
];

/// How the stand-in behaves; [`IdpConfig::default`] is a complete app registration
/// with a client secret (and no certificate). Its `Debug` hides the secret.
#[derive(Clone)]
pub struct IdpConfig {
    /// The tenant (directory) id in the token URL.
    pub tenant: String,
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret; `None`: the app has none, every secret is wrong.
    pub client_secret: Option<String>,
    /// The app's registered certificate (DER), for client assertions; `None`: every
    /// assertion is refused.
    pub client_cert_der: Option<Vec<u8>>,
    /// The scope token requests must ask for (`{resource}/.default`).
    pub scope: String,
    /// The resource IMDS requests must name (`resource=`).
    pub imds_resource: String,
    /// User-assigned managed identities (client ids) IMDS knows, for `client_id=`.
    pub imds_identities: Vec<String>,
    /// The system-assigned identity's client id (`appid` of its tokens).
    pub imds_system_identity: String,
    /// `expires_in` of the access tokens, in seconds.
    pub expires_in: u64,
    /// Send `expires_in`, `interval` and the like as strings (`"3599"`), as the real
    /// services sometimes do.
    pub numbers_as_strings: bool,
    /// The app's display name (`app_displayname`).
    pub app_name: String,
    /// `roles` of app tokens.
    pub roles: Vec<String>,
    /// `scp` of delegated tokens (device code, refresh).
    pub delegated_scopes: Vec<String>,
    /// The signed-in user of the device code flow (`upn`).
    pub user: String,
    /// The user's display name (`name`).
    pub user_name: String,
    /// The device code flow.
    pub device: DeviceFlow,
}

impl std::fmt::Debug for IdpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpConfig")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "client_cert",
                &self.client_cert_der.as_ref().map(|c| base64url(&sha1(c))),
            )
            .field("scope", &self.scope)
            .field("imds_resource", &self.imds_resource)
            .field("imds_identities", &self.imds_identities)
            .field("expires_in", &self.expires_in)
            .field("numbers_as_strings", &self.numbers_as_strings)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Default for IdpConfig {
    fn default() -> IdpConfig {
        IdpConfig {
            tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47".to_owned(),
            client_id: "0c8f3a1e-5b2d-4c6e-9f70-1a2b3c4d5e6f".to_owned(),
            client_secret: Some("Qx8~test.Secret-value_0123456789abcdefXYZ".to_owned()),
            client_cert_der: None,
            scope: DEFAULT_SCOPE.to_owned(),
            imds_resource: DEFAULT_RESOURCE.to_owned(),
            imds_identities: Vec::new(),
            imds_system_identity: "6a1c1d4b-2e3f-4a5b-8c9d-0e1f2a3b4c5d".to_owned(),
            expires_in: 3599,
            numbers_as_strings: false,
            app_name: "mdlr-tests".to_owned(),
            roles: vec![
                "Machine.Read.All".to_owned(),
                "Machine.LiveResponse".to_owned(),
                "Library.Manage".to_owned(),
            ],
            delegated_scopes: vec![
                "Machine.Read".to_owned(),
                "Machine.LiveResponse".to_owned(),
                "Library.Manage".to_owned(),
            ],
            user: "analyst@contoso.example".to_owned(),
            user_name: "Ada Analyst".to_owned(),
            device: DeviceFlow::default(),
        }
    }
}

/// How the device code flow goes: `pending` answers `authorization_pending`, then one
/// `slow_down` if asked for, then `outcome`.
#[derive(Debug, Clone)]
pub struct DeviceFlow {
    /// `interval` (seconds) between polls: polling faster is recorded as an error.
    pub interval: u64,
    /// How many `authorization_pending` answers come first.
    pub pending: u32,
    /// Answer one `slow_down` after them; from then on the interval the client must
    /// keep is `interval + slow_down_adds` (RFC 8628: 5 more seconds).
    pub slow_down: bool,
    /// Seconds added to the interval by `slow_down`.
    pub slow_down_adds: u64,
    /// What the user does in the end.
    pub outcome: DeviceOutcome,
    /// `expires_in` of the device code: polling after that gets `expired_token`.
    pub expires_in: u64,
}

impl Default for DeviceFlow {
    fn default() -> DeviceFlow {
        DeviceFlow {
            interval: 1,
            pending: 2,
            slow_down: false,
            slow_down_adds: 5,
            outcome: DeviceOutcome::Approve,
            expires_in: 900,
        }
    }
}

/// The end of a device code flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceOutcome {
    /// The user signs in: tokens.
    Approve,
    /// The user declines: `authorization_declined`.
    Decline,
    /// The user never comes: `expired_token`.
    Expire,
}

/// How a token was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grant {
    /// `client_credentials` with a client secret.
    ClientSecret,
    /// `client_credentials` with a certificate's client assertion.
    ClientAssertion,
    /// The device code flow.
    DeviceCode,
    /// `refresh_token`.
    RefreshToken,
    /// IMDS (managed identity).
    ManagedIdentity,
    /// Minted for a [`FakeAz`] with [`Idp::mint`].
    AzureCli,
}

/// An endpoint of the stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/{tenant}/oauth2/v2.0/token`.
    Token,
    /// `/{tenant}/oauth2/v2.0/devicecode`.
    DeviceCode,
    /// IMDS's `/metadata/identity/oauth2/token`.
    Imds,
    /// Anything else (answered `404`).
    Other,
}

/// A reply forced on the next request to an endpoint ([`Idp::fail_next`]), whatever
/// the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `401 invalid_client`, AADSTS7000215 (wrong client secret).
    InvalidSecret,
    /// `401 invalid_client`, AADSTS700027 (client assertion refused).
    InvalidAssertion,
    /// `400 unauthorized_client`, AADSTS700016 (no such app in the tenant).
    UnknownApp,
    /// `400 invalid_request`, AADSTS90002 (no such tenant).
    TenantNotFound,
    /// `400 invalid_grant`, AADSTS700082 (the refresh token expired).
    RefreshTokenExpired,
    /// This status with an Entra-like `temporarily_unavailable` body (or an IMDS-like
    /// one), and `Retry-After` when given.
    Status {
        /// The status code (`429`, `500`, `503`, ...).
        status: u16,
        /// `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
}

/// A request the stand-in received.
#[derive(Clone)]
pub struct IdpRequest {
    /// When it arrived.
    pub at: Instant,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, as sent.
    pub path: String,
    /// The query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The form fields of a `x-www-form-urlencoded` body, decoded.
    pub form: Vec<(String, String)>,
    /// Which endpoint it was for.
    pub endpoint: Endpoint,
    /// The status answered.
    pub status: u16,
    /// The OAuth `error` answered (`invalid_client`, `authorization_pending`, ...).
    pub error: Option<String>,
}

impl IdpRequest {
    /// The first form field `name`.
    pub fn form(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `grant_type`.
    pub fn grant_type(&self) -> Option<&str> {
        self.form("grant_type")
    }
}

impl std::fmt::Debug for IdpRequest {
    /// Secrets (`client_secret`) are shown as `[redacted]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let form: Vec<(&str, &str)> = self
            .form
            .iter()
            .map(|(k, v)| match k.as_str() {
                "client_secret" => (k.as_str(), "[redacted]"),
                _ => (k.as_str(), v.as_str()),
            })
            .collect();
        f.debug_struct("IdpRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("form", &form)
            .field("endpoint", &self.endpoint)
            .field("status", &self.status)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// A token the stand-in issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The access token.
    pub access_token: String,
    /// How it was obtained.
    pub grant: Grant,
    /// The refresh token that came with it, if any.
    pub refresh_token: Option<String>,
    /// The access token's claims.
    pub claims: Value,
    /// When it expires (seconds since the epoch).
    pub expires_on: u64,
}

/// A device code handed out by `/devicecode`.
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    /// The device code the client polls with.
    pub device_code: String,
    /// The code the user types.
    pub user_code: String,
    /// The message to show the user.
    pub message: String,
}

/// A device code's progress.
#[derive(Debug)]
struct DeviceState {
    issued: Instant,
    polls: Vec<Instant>,
    pending_sent: u32,
    slowed_down: bool,
    offline_access: bool,
    redeemed: bool,
}

#[derive(Debug)]
struct State {
    config: IdpConfig,
    seed: u64,
    counter: u64,
    requests: Vec<IdpRequest>,
    errors: Vec<String>,
    issued: Vec<Issued>,
    faults: HashMap<Endpoint, VecDeque<Fault>>,
    jtis: HashSet<String>,
    devices: HashMap<String, DeviceState>,
    authorizations: Vec<DeviceAuthorization>,
    polls: Vec<Instant>,
    refresh_tokens: Vec<String>,
    refresh_revoked: bool,
}

/// The running stand-in; dropping it stops it.
pub struct Idp {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp")
            .field("authority", &self.authority())
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Idp {
    /// Starts the stand-in on a free loopback port.
    ///
    /// # Panics
    ///
    /// When it cannot listen on loopback.
    pub fn start(config: IdpConfig) -> Idp {
        // Tokens differ between runs, processes and stand-ins.
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let seed = mix(nanos ^ u64::from(std::process::id()).rotate_left(32))
            ^ mix(STARTED.fetch_add(1, Ordering::Relaxed));
        let state = Arc::new(Mutex::new(State {
            config,
            seed,
            counter: 0,
            requests: Vec::new(),
            errors: Vec::new(),
            issued: Vec::new(),
            faults: HashMap::new(),
            jtis: HashSet::new(),
            devices: HashMap::new(),
            authorizations: Vec::new(),
            polls: Vec::new(),
            refresh_tokens: Vec::new(),
            refresh_revoked: false,
        }));
        let handler_state = Arc::clone(&state);
        let server = Server::start(Arc::new(move |req: &Request| {
            let at = Instant::now();
            let mut state = handler_state.lock().unwrap_or_else(|e| e.into_inner());
            state.handle(req, at)
        }))
        .expect("the identity provider stand-in listens on loopback");
        Idp { server, state }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The authority host to hand mdlr: `http://127.0.0.1:PORT` (no trailing slash).
    pub fn authority(&self) -> String {
        self.server.url()
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority(),
            self.state().config.tenant
        )
    }

    /// `{authority}/{tenant}/oauth2/v2.0/devicecode`.
    pub fn device_code_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/devicecode",
            self.authority(),
            self.state().config.tenant
        )
    }

    /// IMDS's base URL (the same server): `http://127.0.0.1:PORT`, standing for
    /// `http://169.254.169.254`.
    pub fn imds_url(&self) -> String {
        self.server.url()
    }

    /// IMDS's token endpoint: `{imds_url}/metadata/identity/oauth2/token`.
    pub fn imds_token_url(&self) -> String {
        format!("{}{IMDS_TOKEN_PATH}", self.imds_url())
    }

    /// The configuration in force.
    pub fn config(&self) -> IdpConfig {
        self.state().config.clone()
    }

    /// Changes the configuration from now on (token lifetime, device flow, ...).
    pub fn update(&self, change: impl FnOnce(&mut IdpConfig)) {
        change(&mut self.state().config);
    }

    /// `expires_in` of the tokens issued from now on.
    pub fn set_expires_in(&self, seconds: u64) {
        self.update(|c| c.expires_in = seconds);
    }

    /// Answers the next request to `endpoint` with `fault`, whatever it is (faults
    /// queue up, one per request). Such a reply is not recorded as an error.
    pub fn fail_next(&self, endpoint: Endpoint, fault: Fault) {
        self.state()
            .faults
            .entry(endpoint)
            .or_default()
            .push_back(fault);
    }

    /// From now on every refresh token is refused with AADSTS700082 (expired).
    pub fn revoke_refresh_tokens(&self) {
        self.state().refresh_revoked = true;
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<IdpRequest> {
        self.state().requests.clone()
    }

    /// The requests to `endpoint`, in order.
    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<IdpRequest> {
        let state = self.state();
        state
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .cloned()
            .collect()
    }

    /// Every mistake found in a request so far, `METHOD PATH: what` (no secrets).
    pub fn errors(&self) -> Vec<String> {
        self.state().errors.clone()
    }

    /// Every token issued so far, in order.
    pub fn issued(&self) -> Vec<Issued> {
        self.state().issued.clone()
    }

    /// Whether `access_token` was issued here.
    pub fn is_issued(&self, access_token: &str) -> bool {
        self.grant_of(access_token).is_some()
    }

    /// How `access_token` was obtained, if it was issued here.
    pub fn grant_of(&self, access_token: &str) -> Option<Grant> {
        let state = self.state();
        state
            .issued
            .iter()
            .find(|i| i.access_token == access_token)
            .map(|i| i.grant)
    }

    /// Checks an `Authorization` header value the way an API would: `Bearer ` and a
    /// token issued here that has not expired; its grant, or why not.
    pub fn check_bearer(&self, authorization: Option<&str>) -> Result<Grant, String> {
        let header = authorization.ok_or("no Authorization header")?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or("the Authorization header is not `Bearer <token>`")?;
        let state = self.state();
        let issued = state
            .issued
            .iter()
            .find(|i| i.access_token == token)
            .ok_or("the bearer token was not issued by the identity provider")?;
        if issued.expires_on <= now_secs() {
            return Err(format!("the bearer token ({:?}) has expired", issued.grant));
        }
        Ok(issued.grant)
    }

    /// When each device code poll (a `device_code` token request) arrived.
    pub fn polls(&self) -> Vec<Instant> {
        self.state().polls.clone()
    }

    /// The device codes handed out, in order.
    pub fn device_authorizations(&self) -> Vec<DeviceAuthorization> {
        self.state().authorizations.clone()
    }

    /// The latest refresh token issued (the only one accepted).
    pub fn latest_refresh_token(&self) -> Option<String> {
        self.state().refresh_tokens.last().cloned()
    }

    /// Mints an app access token as if obtained by `grant` (for a [`FakeAz`]), and
    /// records it as issued.
    pub fn mint(&self, grant: Grant) -> String {
        let mut state = self.state();
        let resource = resource_of(&state.config.scope);
        let appid = state.config.client_id.clone();
        state.issue(grant, &resource, &appid, None).access_token
    }

    /// Stops the server.
    pub fn stop(self) {
        self.server.stop();
    }
}

/// `https://host/.default` → `https://host`.
fn resource_of(scope: &str) -> String {
    scope
        .split_whitespace()
        .find(|s| s.ends_with("/.default"))
        .unwrap_or(scope)
        .trim_end_matches("/.default")
        .to_owned()
}

/// A reply and the OAuth error it carries.
struct Reply {
    response: Response,
    error: Option<String>,
}

impl Reply {
    fn ok(value: &Value) -> Reply {
        Reply {
            response: Response::json(200, value)
                .header("Cache-Control", "no-store, no-cache")
                .header("Pragma", "no-cache"),
            error: None,
        }
    }
}

impl State {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn guid(&mut self) -> String {
        let n = self.next();
        guid(self.seed, n)
    }

    /// A number, or a string of it when so configured.
    fn number(&self, n: u64) -> Value {
        if self.config.numbers_as_strings {
            json!(n.to_string())
        } else {
            json!(n)
        }
    }

    /// An Entra ID error reply.
    fn aad_error(&mut self, status: u16, error: &str, code: u32, text: &str) -> Reply {
        let trace = self.guid();
        let correlation = self.guid();
        let timestamp = iso_short(SystemTime::now()).replace('T', " ");
        let description = format!(
            "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n\
             Timestamp: {timestamp}"
        );
        let body = json!({
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        });
        Reply {
            response: Response::json(status, &body)
                .header("Cache-Control", "no-store, no-cache")
                .header("x-ms-request-id", trace),
            error: Some(error.to_owned()),
        }
    }

    /// An IMDS error reply.
    fn imds_error(&mut self, status: u16, error: &str, description: &str) -> Reply {
        Reply {
            response: Response::json(
                status,
                &json!({"error": error, "error_description": description}),
            ),
            error: Some(error.to_owned()),
        }
    }

    fn fault_reply(&mut self, fault: &Fault, endpoint: Endpoint) -> Reply {
        let (tenant, client) = (self.config.tenant.clone(), self.config.client_id.clone());
        match fault {
            Fault::InvalidSecret => {
                self.aad_error(401, "invalid_client", 7000215, &secret_text(&client))
            }
            Fault::InvalidAssertion => self.aad_error(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation.",
            ),
            Fault::UnknownApp => self.aad_error(
                400,
                "unauthorized_client",
                700016,
                &unknown_app_text(&client, &tenant),
            ),
            Fault::TenantNotFound => {
                self.aad_error(400, "invalid_request", 90002, &tenant_text(&tenant))
            }
            Fault::RefreshTokenExpired => self.aad_error(
                400,
                "invalid_grant",
                700082,
                "The refresh token has expired due to inactivity. The token was issued on \
                 2024-01-01T00:00:00Z and was inactive for 90.00:00:00.",
            ),
            Fault::Status {
                status,
                retry_after,
            } => {
                let mut reply = if endpoint == Endpoint::Imds {
                    self.imds_error(*status, "temporarily_unavailable", "IMDS is busy")
                } else {
                    self.aad_error(
                        *status,
                        "temporarily_unavailable",
                        50196,
                        "The server is temporarily unavailable. Please try again later.",
                    )
                };
                if let Some(secs) = retry_after {
                    reply.response = reply.response.header("Retry-After", secs.to_string());
                }
                reply
            }
        }
    }

    fn handle(&mut self, req: &Request, at: Instant) -> Response {
        let path = req.path().to_owned();
        let form_body = req.header("content-type").is_some_and(|t| {
            t.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        let form = if form_body {
            parse_query(&String::from_utf8_lossy(&req.body))
        } else {
            Vec::new()
        };
        let mut errors = Vec::new();
        let (endpoint, tenant) = route(&path);
        let reply = match self.faults.get_mut(&endpoint).and_then(VecDeque::pop_front) {
            Some(fault) => self.fault_reply(&fault, endpoint),
            None => match endpoint {
                Endpoint::Imds => self.imds(req, &mut errors),
                Endpoint::Token | Endpoint::DeviceCode => {
                    let call = Call {
                        req,
                        at,
                        form: &form,
                        form_body,
                        tenant: tenant.unwrap_or_default(),
                        path: &path,
                    };
                    if endpoint == Endpoint::Token {
                        self.token(&call, &mut errors)
                    } else {
                        self.device_code(&call, &mut errors)
                    }
                }
                Endpoint::Other => {
                    errors.push(
                        match path.contains("//") {
                            true => "no such endpoint (a doubled slash: an authority ending in /?)",
                            false => "no such endpoint",
                        }
                        .to_owned(),
                    );
                    Reply {
                        response: Response::json(404, &json!({"error": "not_found"})),
                        error: Some("not_found".to_owned()),
                    }
                }
            },
        };
        let mut response = reply.response;
        if let Some(id) = req.header("client-request-id") {
            response = response.header("client-request-id", id);
        }
        for e in errors {
            self.errors.push(format!("{} {path}: {e}", req.method));
        }
        self.requests.push(IdpRequest {
            at,
            method: req.method.clone(),
            path,
            query: req.query_params(),
            headers: req.headers().to_vec(),
            form,
            endpoint,
            status: response.status,
            error: reply.error,
        });
        response
    }

    /// Issues an access token (and a refresh token for delegated grants with
    /// `offline_access`), records it and returns it.
    fn issue(
        &mut self,
        grant: Grant,
        resource: &str,
        appid: &str,
        refresh: Option<bool>,
    ) -> Issued {
        let now = now_secs();
        let expires_on = now + self.config.expires_in;
        let tenant = self.config.tenant.clone();
        let n = self.next();
        let uti = base64url(&noise(self.seed ^ n, 16));
        let delegated = matches!(grant, Grant::DeviceCode | Grant::RefreshToken);
        // The principal's object id: the same for every token of one user or app.
        let principal = if delegated {
            self.config.user.as_str()
        } else {
            appid
        };
        let oid = guid(
            self.seed,
            principal.bytes().fold(0, |h, b| mix(h ^ u64::from(b))),
        );
        let mut claims = json!({
            "aud": resource,
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": now, "nbf": now, "exp": expires_on,
            "aio": base64url(&noise(self.seed ^ n ^ 1, 24)),
            "app_displayname": self.config.app_name,
            "appid": appid, "azp": appid,
            "appidacr": match grant {
                Grant::ClientSecret => "1",
                Grant::ClientAssertion => "2",
                _ => "0",
            },
            "idp": format!("https://sts.windows.net/{tenant}/"),
            "oid": oid, "sub": oid, "tid": tenant, "uti": uti, "ver": "1.0",
        });
        if delegated {
            claims["scp"] = json!(self.config.delegated_scopes.join(" "));
            claims["upn"] = json!(self.config.user);
            claims["unique_name"] = json!(self.config.user);
            claims["name"] = json!(self.config.user_name);
            claims["amr"] = json!(["pwd", "mfa"]);
            claims["idtyp"] = json!("user");
        } else {
            claims["roles"] = json!(self.config.roles);
            claims["idtyp"] = json!("app");
        }
        let header = json!({
            "typ": "JWT", "alg": "RS256",
            "x5t": "nOo3ZDrODXEK1jKWhXslHR_KXEg", "kid": "nOo3ZDrODXEK1jKWhXslHR_KXEg",
        });
        let access_token = format!(
            "{}.{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes()),
            base64url(&noise(self.seed ^ n ^ 2, 256))
        );
        let refresh_token = (refresh == Some(true)).then(|| {
            let token = format!("1.AQ{}", base64url(&noise(self.seed ^ n ^ 3, 96)));
            self.refresh_tokens.push(token.clone());
            token
        });
        let issued = Issued {
            access_token,
            grant,
            refresh_token,
            claims,
            expires_on,
        };
        self.issued.push(issued.clone());
        issued
    }

    /// The token reply for `issued`.
    fn token_reply(&self, issued: &Issued, scope: Option<String>) -> Reply {
        let mut body = json!({
            "token_type": "Bearer",
            "expires_in": self.number(self.config.expires_in),
            "ext_expires_in": self.number(self.config.expires_in),
            "access_token": issued.access_token,
        });
        if let Some(scope) = scope {
            body["scope"] = json!(scope);
        }
        if let Some(refresh) = &issued.refresh_token {
            body["refresh_token"] = json!(refresh);
        }
        Reply::ok(&body)
    }

    /// Checks what every request to `/token` and `/devicecode` must have; `Err` is the
    /// reply.
    fn common(
        &mut self,
        call: &Call<'_>,
        errors: &mut Vec<String>,
        any_tenant: bool,
    ) -> Result<(), Reply> {
        if call.req.method != "POST" {
            errors.push(format!("{} instead of POST", call.req.method));
            let text = format!(
                "The endpoint only accepts POST requests. Received a {} request.",
                call.req.method
            );
            return Err(self.aad_error(400, "invalid_request", 900561, &text));
        }
        if !call.form_body {
            errors.push(format!(
                "Content-Type is {:?}, not application/x-www-form-urlencoded",
                call.req.header("content-type").unwrap_or("(none)")
            ));
            return Err(self.aad_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            ));
        }
        let mut seen = HashSet::new();
        for (name, _) in call.form {
            if !seen.insert(name) {
                errors.push(format!("form field {name} sent twice"));
            }
        }
        let tenant_ok = call.tenant.eq_ignore_ascii_case(&self.config.tenant)
            || (any_tenant && matches!(call.tenant, "organizations" | "common"));
        if !tenant_ok {
            errors.push(format!(
                "tenant {:?} is not {:?}",
                call.tenant, self.config.tenant
            ));
            return Err(self.aad_error(400, "invalid_request", 90002, &tenant_text(call.tenant)));
        }
        match call.field("client_id") {
            Some(id) if id == self.config.client_id => Ok(()),
            Some(id) => {
                errors.push(format!("client_id {id:?} is not the app's"));
                let text = unknown_app_text(id, &self.config.tenant);
                Err(self.aad_error(400, "unauthorized_client", 700016, &text))
            }
            None => {
                errors.push("no client_id".to_owned());
                Err(self.aad_error(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'client_id'.",
                ))
            }
        }
    }

    fn token(&mut self, call: &Call<'_>, errors: &mut Vec<String>) -> Reply {
        let public = matches!(
            call.field("grant_type"),
            Some(DEVICE_CODE_GRANT | "refresh_token")
        );
        if let Err(reply) = self.common(call, errors, public) {
            return reply;
        }
        match call.field("grant_type") {
            Some("client_credentials") => self.client_credentials(call, errors),
            Some(DEVICE_CODE_GRANT) => self.device_poll(call, errors),
            Some("refresh_token") => self.refresh(call, errors),
            Some(other) => {
                errors.push(format!("grant_type {other:?}"));
                let text = format!(
                    "The provided value for the input parameter 'grant_type' is not valid: {other}."
                );
                self.aad_error(400, "unsupported_grant_type", 70003, &text)
            }
            None => {
                errors.push("no grant_type".to_owned());
                self.aad_error(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'grant_type'.",
                )
            }
        }
    }

    fn client_credentials(&mut self, call: &Call<'_>, errors: &mut Vec<String>) -> Reply {
        let client = self.config.client_id.clone();
        let scope = call.field("scope").unwrap_or_default();
        if scope.trim() != self.config.scope {
            errors.push(format!("scope {scope:?} is not {:?}", self.config.scope));
            let (code, error) = if scope.trim().ends_with("/.default") {
                (500011, "invalid_resource")
            } else {
                (1002012, "invalid_scope")
            };
            let text = format!(
                "The provided value for scope {scope} is not valid. Client credential flows \
                 must have a scope value with /.default suffixed to the resource identifier \
                 (application ID URI)."
            );
            return self.aad_error(400, error, code, &text);
        }
        let secret = call.field("client_secret");
        let assertion = call.field("client_assertion");
        let grant = match (secret, assertion) {
            (Some(_), Some(_)) => {
                errors.push("both client_secret and client_assertion".to_owned());
                return self.aad_error(
                    401,
                    "invalid_client",
                    50012,
                    "Both a client secret and a client assertion were sent; send one.",
                );
            }
            (None, None) => {
                errors.push("neither client_secret nor client_assertion".to_owned());
                return self.aad_error(
                    401,
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' \
                     or 'client_secret'.",
                );
            }
            (Some(secret), None) => {
                if self.config.client_secret.as_deref() != Some(secret) {
                    errors.push("client_secret is not the app's secret".to_owned());
                    return self.aad_error(401, "invalid_client", 7000215, &secret_text(&client));
                }
                Grant::ClientSecret
            }
            (None, Some(_)) => {
                if let Err(why) = self.verify_assertion(call) {
                    errors.push(format!("client assertion: {why}"));
                    let text = format!("Client assertion failed validation: {why}.");
                    return self.aad_error(401, "invalid_client", 700027, &text);
                }
                Grant::ClientAssertion
            }
        };
        let resource = resource_of(&self.config.scope);
        let issued = self.issue(grant, &resource, &client, None);
        self.token_reply(&issued, None)
    }

    /// Checks a client assertion; `Err` says why it is refused.
    fn verify_assertion(&mut self, call: &Call<'_>) -> Result<(), String> {
        let kind = call.field("client_assertion_type").unwrap_or("(none)");
        if kind != JWT_BEARER {
            return Err(format!(
                "client_assertion_type is {kind:?}, not {JWT_BEARER:?}"
            ));
        }
        let cert = self
            .config
            .client_cert_der
            .clone()
            .ok_or("the app has no certificate registered")?;
        let jwt = call.field("client_assertion").unwrap_or_default();
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header_b64, claims_b64, sig_b64] = parts[..] else {
            return Err(format!("not a JWS of three parts ({} parts)", parts.len()));
        };
        let json_part = |part: &str, what: &str| -> Result<Value, String> {
            let bytes = base64url_decode(part).ok_or(format!("the {what} is not base64url"))?;
            let value: Value =
                serde_json::from_slice(&bytes).map_err(|_| format!("the {what} is not JSON"))?;
            value
                .is_object()
                .then_some(value)
                .ok_or(format!("the {what} is not a JSON object"))
        };
        let header = json_part(header_b64, "header")?;
        let claims = json_part(claims_b64, "claims part")?;
        let signature = base64url_decode(sig_b64).ok_or("the signature is not base64url")?;
        if header["typ"] != "JWT" {
            return Err(format!("typ is {}, not \"JWT\"", header["typ"]));
        }
        let sha256 = ring::digest::digest(&ring::digest::SHA256, &cert);
        let (algorithm, thumbprint_name, thumbprint): (
            &dyn ring::signature::VerificationAlgorithm,
            _,
            _,
        ) = match header["alg"].as_str() {
            Some("RS256") => (
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                "x5t",
                base64url(&sha1(&cert)),
            ),
            Some("PS256") => (
                &ring::signature::RSA_PSS_2048_8192_SHA256,
                "x5t#S256",
                base64url(sha256.as_ref()),
            ),
            _ => {
                return Err(format!(
                    "alg is {}, not \"RS256\" or \"PS256\"",
                    header["alg"]
                ));
            }
        };
        match header[thumbprint_name].as_str() {
            None => {
                return Err(format!(
                    "{} without {thumbprint_name} in the header",
                    header["alg"]
                ));
            }
            Some(t) if t != thumbprint => {
                return Err(format!(
                    "{thumbprint_name} {t:?} is not the registered certificate's {thumbprint:?}"
                ));
            }
            Some(_) => {}
        }
        // A second thumbprint, when sent, must name the same certificate.
        for (name, want) in [
            ("x5t", base64url(&sha1(&cert))),
            ("x5t#S256", base64url(sha256.as_ref())),
        ] {
            if let Some(t) = header[name].as_str()
                && t != want
            {
                return Err(format!(
                    "{name} {t:?} is not the registered certificate's {want:?}"
                ));
            }
        }
        let public = rsa_public_key(&cert).ok_or("the registered certificate has no RSA key")?;
        let signed = format!("{header_b64}.{claims_b64}");
        ring::signature::UnparsedPublicKey::new(algorithm, &public)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| "the signature does not verify with the registered certificate's key")?;
        if claims["aud"] != call.url() {
            return Err(format!(
                "aud is {}, not the token URL {:?}",
                claims["aud"],
                call.url()
            ));
        }
        for name in ["iss", "sub"] {
            if claims[name] != self.config.client_id.as_str() {
                return Err(format!("{name} is {}, not the client id", claims[name]));
            }
        }
        let now = now_secs();
        let time = |name: &str| -> Result<Option<u64>, String> {
            match &claims[name] {
                Value::Null => Ok(None),
                v => v
                    .as_f64()
                    .filter(|t| *t >= 0.0)
                    .map(|t| Some(t as u64))
                    .ok_or(format!("{name} is {v}, not a number of seconds")),
            }
        };
        let nbf = time("nbf")?.ok_or("no nbf")?;
        let iat = time("iat")?;
        let exp = time("exp")?.ok_or("no exp")?;
        for (name, t) in [("nbf", Some(nbf)), ("iat", iat)] {
            if let Some(t) = t
                && t > now + SKEW
            {
                return Err(format!("{name} is {} s in the future", t - now));
            }
        }
        if exp <= now {
            return Err(format!("exp is {} s in the past", now - exp));
        }
        let start = iat.unwrap_or(nbf);
        if exp.saturating_sub(start) > MAX_ASSERTION_LIFETIME {
            return Err(format!(
                "exp is {} s after {}, more than 10 minutes",
                exp - start,
                if iat.is_some() { "iat" } else { "nbf" }
            ));
        }
        let jti = claims["jti"]
            .as_str()
            .filter(|j| !j.is_empty())
            .ok_or("no jti")?;
        if !self.jtis.insert(jti.to_owned()) {
            return Err(format!("jti {jti:?} was used before (a replay)"));
        }
        Ok(())
    }

    /// `/devicecode`.
    fn device_code(&mut self, call: &Call<'_>, errors: &mut Vec<String>) -> Reply {
        if let Err(reply) = self.common(call, errors, true) {
            return reply;
        }
        if call.field("client_secret").is_some() {
            errors.push("a client secret sent with the device code flow".to_owned());
        }
        let scopes: Vec<&str> = call
            .field("scope")
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if !scopes.contains(&self.config.scope.as_str()) {
            errors.push(format!("scope {scopes:?} lacks {:?}", self.config.scope));
            let text = "The provided value for the input parameter 'scope' is not valid.";
            return self.aad_error(400, "invalid_scope", 70011, text);
        }
        let offline_access = scopes.contains(&"offline_access");
        if !offline_access {
            errors.push(format!(
                "scope {scopes:?} lacks offline_access: no refresh token"
            ));
        }
        let n = self.next();
        let device_code = format!("DAQABIQEAAAB{}", base64url(&noise(self.seed ^ n ^ 4, 90)));
        let user_code: String = noise(self.seed ^ n ^ 5, 9)
            .iter()
            .map(|b| b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789"[usize::from(b % 32)] as char)
            .collect();
        let message = format!(
            "To sign in, use a web browser to open the page {VERIFICATION_URI} and enter the \
             code {user_code} to authenticate."
        );
        self.devices.insert(
            device_code.clone(),
            DeviceState {
                issued: call.at,
                polls: Vec::new(),
                pending_sent: 0,
                slowed_down: false,
                offline_access,
                redeemed: false,
            },
        );
        self.authorizations.push(DeviceAuthorization {
            device_code: device_code.clone(),
            user_code: user_code.clone(),
            message: message.clone(),
        });
        let body = json!({
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": VERIFICATION_URI,
            "expires_in": self.number(self.config.device.expires_in),
            "interval": self.number(self.config.device.interval),
            "message": message,
        });
        Reply::ok(&body)
    }

    /// A `device_code` token request.
    fn device_poll(&mut self, call: &Call<'_>, errors: &mut Vec<String>) -> Reply {
        self.polls.push(call.at);
        if call.field("client_secret").is_some() {
            errors.push("a client secret sent with the device code flow".to_owned());
        }
        let flow = self.config.device.clone();
        let code = call.field("device_code").unwrap_or_default();
        let Some(device) = self.devices.get_mut(code) else {
            errors.push("unknown device_code".to_owned());
            return self.aad_error(
                400,
                "bad_verification_code",
                70000,
                "The provided value for the input parameter 'device_code' is not valid.",
            );
        };
        let required = Duration::from_secs(match device.slowed_down {
            true => flow.interval + flow.slow_down_adds,
            false => flow.interval,
        });
        if let Some(last) = device.polls.last() {
            let gap = call.at.duration_since(*last);
            if gap + POLL_TOLERANCE < required {
                errors.push(format!(
                    "polled {} ms after the previous poll; the interval is {} s",
                    gap.as_millis(),
                    required.as_secs()
                ));
            }
        }
        device.polls.push(call.at);
        if device.redeemed {
            errors.push("device_code polled again after it was redeemed".to_owned());
            return self.aad_error(
                400,
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed.",
            );
        }
        if call.at.duration_since(device.issued) > Duration::from_secs(flow.expires_in) {
            errors.push("polled after the device code expired".to_owned());
            return self.aad_error(400, "expired_token", 70019, "Verification code expired.");
        }
        if device.pending_sent < flow.pending {
            device.pending_sent += 1;
            return self.aad_error(
                400,
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            );
        }
        if flow.slow_down && !device.slowed_down {
            device.slowed_down = true;
            return self.aad_error(
                400,
                "slow_down",
                70016,
                "OAuth 2.0 device flow error. Slow down polling.",
            );
        }
        match flow.outcome {
            DeviceOutcome::Decline => self.aad_error(
                400,
                "authorization_declined",
                70000,
                "The user declined the sign-in.",
            ),
            DeviceOutcome::Expire => {
                self.aad_error(400, "expired_token", 70019, "Verification code expired.")
            }
            DeviceOutcome::Approve => {
                device.redeemed = true;
                let offline = device.offline_access;
                let resource = resource_of(&self.config.scope);
                let client = self.config.client_id.clone();
                let issued = self.issue(Grant::DeviceCode, &resource, &client, Some(offline));
                let scope = self.delegated_scope(offline);
                self.token_reply(&issued, Some(scope))
            }
        }
    }

    /// `scope` of a delegated token reply.
    fn delegated_scope(&self, offline: bool) -> String {
        let resource = resource_of(&self.config.scope);
        let mut scope: Vec<String> = self
            .config
            .delegated_scopes
            .iter()
            .map(|s| format!("{resource}/{s}"))
            .collect();
        if offline {
            scope.push("offline_access".to_owned());
        }
        scope.join(" ")
    }

    /// A `refresh_token` token request.
    fn refresh(&mut self, call: &Call<'_>, errors: &mut Vec<String>) -> Reply {
        if call.field("client_secret").is_some() {
            errors.push("a client secret sent with a public client's refresh".to_owned());
        }
        let scopes: Vec<&str> = call
            .field("scope")
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if !scopes.contains(&self.config.scope.as_str()) {
            errors.push(format!("scope {scopes:?} lacks {:?}", self.config.scope));
        }
        let token = call.field("refresh_token").unwrap_or_default();
        if self.refresh_revoked {
            return self.aad_error(
                400,
                "invalid_grant",
                700082,
                "The refresh token has expired due to inactivity.",
            );
        }
        let latest = self.refresh_tokens.last().is_some_and(|t| t == token);
        if !latest {
            let old = self.refresh_tokens.iter().any(|t| t == token);
            return if old {
                errors.push("an old refresh token (one replaced since) was used".to_owned());
                self.aad_error(
                    400,
                    "invalid_grant",
                    70043,
                    "The refresh token has expired or is invalid due to sign-in frequency \
                     checks by conditional access.",
                )
            } else {
                errors.push("a refresh token that was never issued".to_owned());
                self.aad_error(
                    400,
                    "invalid_grant",
                    9002313,
                    "Invalid request. Request is malformed or invalid.",
                )
            };
        }
        let resource = resource_of(&self.config.scope);
        let client = self.config.client_id.clone();
        let issued = self.issue(Grant::RefreshToken, &resource, &client, Some(true));
        let scope = self.delegated_scope(true);
        self.token_reply(&issued, Some(scope))
    }

    /// IMDS's token endpoint.
    fn imds(&mut self, req: &Request, errors: &mut Vec<String>) -> Reply {
        if req.method != "GET" {
            errors.push(format!("{} instead of GET", req.method));
            return self.imds_error(405, "invalid_request", "Method not allowed");
        }
        if req.header("metadata") != Some("true") {
            errors.push(format!(
                "Metadata header is {:?}, not \"true\"",
                req.header("metadata")
            ));
            return self.imds_error(
                400,
                "invalid_request",
                "Required metadata header not specified",
            );
        }
        if req.header("x-forwarded-for").is_some() || req.header("via").is_some() {
            errors.push("came through a proxy (Via / X-Forwarded-For)".to_owned());
            return self.imds_error(
                400,
                "invalid_request",
                "Requests with X-Forwarded-For or Via headers are not allowed",
            );
        }
        let version = req.query_param("api-version").unwrap_or_default();
        if version.is_empty() {
            errors.push("no api-version".to_owned());
            return self.imds_error(
                400,
                "invalid_request",
                "Required query variable 'api-version' is missing",
            );
        }
        if !IMDS_API_VERSIONS.contains(&version.as_str()) {
            errors.push(format!("api-version {version:?} does not exist"));
            return self.imds_error(400, "invalid_request", "Invalid version");
        }
        let resource = req.query_param("resource").unwrap_or_default();
        if resource.is_empty() {
            errors.push("no resource".to_owned());
            return self.imds_error(
                400,
                "invalid_request",
                "Required query variable 'resource' is missing",
            );
        }
        if resource.trim_end_matches('/') != self.config.imds_resource.trim_end_matches('/') {
            errors.push(format!(
                "resource {resource:?} is not {:?}",
                self.config.imds_resource
            ));
            let text = format!(
                "AADSTS500011: The resource principal named {resource} was not found in the \
                 tenant named {}.",
                self.config.tenant
            );
            return self.imds_error(400, "invalid_resource", &text);
        }
        let client_id = match req.query_param("client_id") {
            Some(id) if self.config.imds_identities.contains(&id) => id,
            Some(id) => {
                errors.push(format!("client_id {id:?} is not an identity of this VM"));
                return self.imds_error(400, "invalid_request", "Identity not found");
            }
            None => self.config.imds_system_identity.clone(),
        };
        let issued = self.issue(Grant::ManagedIdentity, &resource, &client_id, None);
        let expires_in = self.config.expires_in.to_string();
        let body = json!({
            "access_token": issued.access_token,
            "client_id": client_id,
            "expires_in": expires_in,
            "expires_on": issued.expires_on.to_string(),
            "ext_expires_in": expires_in,
            "not_before": (issued.expires_on - self.config.expires_in).to_string(),
            "resource": resource,
            "token_type": "Bearer",
        });
        Reply {
            response: Response::json(200, &body),
            error: None,
        }
    }
}

/// A request to `/token` or `/devicecode`, parsed.
struct Call<'a> {
    req: &'a Request,
    at: Instant,
    form: &'a [(String, String)],
    form_body: bool,
    tenant: &'a str,
    path: &'a str,
}

impl Call<'_> {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The URL requested: `http://{Host}{path}`.
    fn url(&self) -> String {
        format!(
            "http://{}{}",
            self.req.header("host").unwrap_or_default(),
            self.path
        )
    }
}

/// The endpoint of `path`, and the tenant in it.
fn route(path: &str) -> (Endpoint, Option<&str>) {
    if path == IMDS_TOKEN_PATH {
        return (Endpoint::Imds, None);
    }
    let Some((tenant, rest)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return (Endpoint::Other, None);
    };
    match rest {
        "oauth2/v2.0/token" => (Endpoint::Token, Some(tenant)),
        "oauth2/v2.0/devicecode" => (Endpoint::DeviceCode, Some(tenant)),
        _ => (Endpoint::Other, None),
    }
}

fn secret_text(client: &str) -> String {
    format!(
        "Invalid client secret provided. Ensure the secret being sent in the request is the \
         client secret value, not the client secret ID, for a secret added to app '{client}'."
    )
}

fn unknown_app_text(client: &str, tenant: &str) -> String {
    format!(
        "Application with identifier '{client}' was not found in the directory '{tenant}'. \
         This can happen if the application has not been installed by the administrator of \
         the tenant or consented to by any user in the tenant. You may have sent your \
         authentication request to the wrong tenant."
    )
}

fn tenant_text(tenant: &str) -> String {
    format!(
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and \
         are signing into the correct cloud. Check with your subscription administrator, this \
         may happen if there are no active subscriptions for the tenant."
    )
}

// ---------------------------------------------------------------------------------------
// The Azure CLI

/// What a [`FakeAz`] does.
#[derive(Debug, Clone)]
pub struct FakeAzConfig {
    /// The `accessToken` it prints (e.g. from [`Idp::mint`]; by default a JWT-shaped
    /// token of its own).
    pub access_token: String,
    /// Seconds from the call to `expiresOn` / `expires_on`.
    pub expires_in: u64,
    /// `tenant`.
    pub tenant: String,
    /// `subscription`.
    pub subscription: String,
    /// Print `expires_on` (az 2.54 and later); `false` acts like an older az.
    pub with_expires_on: bool,
    /// Fail as a logged-out CLI does: exit 1, `ERROR: Please run 'az login' to setup
    /// account.`
    pub logged_out: bool,
    /// When set, any other `--resource` fails (exit 1, AADSTS500011).
    pub resource: Option<String>,
}

impl Default for FakeAzConfig {
    fn default() -> FakeAzConfig {
        let header = json!({"typ": "JWT", "alg": "RS256", "x5t": "fake-az"});
        let now = now_secs();
        let claims = json!({
            "aud": DEFAULT_RESOURCE, "iss": "https://sts.windows.net/fake-az/",
            "iat": now, "nbf": now, "exp": now + 3599, "upn": "analyst@contoso.example",
            "appid": "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "app_displayname": "Microsoft Azure CLI",
        });
        FakeAzConfig {
            access_token: format!(
                "{}.{}.{}",
                base64url(header.to_string().as_bytes()),
                base64url(claims.to_string().as_bytes()),
                base64url(&noise(now, 64))
            ),
            expires_in: 3599,
            tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47".to_owned(),
            subscription: "a1b2c3d4-0000-4000-8000-00000000abcd".to_owned(),
            with_expires_on: true,
            logged_out: false,
            resource: Some(DEFAULT_RESOURCE.to_owned()),
        }
    }
}

/// A fake `az` executable (a `#!/bin/sh` script) that logs its arguments and answers
/// `az account get-access-token --resource R --output json` as the Azure CLI does:
///
/// ```json
/// {
///   "accessToken": "eyJ0...",
///   "expiresOn": "2024-05-01 13:00:00.000000",
///   "expires_on": 1714568400,
///   "subscription": "...",
///   "tenant": "...",
///   "tokenType": "Bearer"
/// }
/// ```
///
/// (`expiresOn` in local time, as az prints it.) Other commands fail with exit status 2.
pub struct FakeAz;

/// The log of a [`FakeAz`] in `dir`.
const AZ_LOG: &str = "az-calls.log";

/// `s` in single quotes for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl FakeAz {
    /// Writes the executable `dir/az` (its calls go to `dir/az-calls.log`) and returns
    /// its path; put `dir` first on `PATH`.
    ///
    /// # Panics
    ///
    /// When it cannot write the script.
    pub fn write(dir: &Path, config: &FakeAzConfig) -> PathBuf {
        let log = dir.join(AZ_LOG);
        let expires_on = match config.with_expires_on {
            true => r#"  "expires_on": %s,\n"#,
            false => "",
        };
        let script = format!(
            r#"#!/bin/sh
# A stand-in for the Azure CLI, written by mdlr's tests.
for arg in "$@"; do printf '%s\t' "$arg"; done >>{log}
printf '\n' >>{log}
if [ {logged_out} = 1 ]; then
  echo "ERROR: Please run 'az login' to setup account." >&2
  exit 1
fi
if [ "$1" != account ] || [ "$2" != get-access-token ]; then
  echo "ERROR: '$*' is misspelled or not recognized by the system." >&2
  exit 2
fi
shift 2
resource=
while [ $# -gt 0 ]; do
  case $1 in
    --resource) resource=$2; shift 2 ;;
    --resource=*) resource=${{1#--resource=}}; shift ;;
    --output|-o|--tenant|-t|--subscription|--scope) shift 2 ;;
    --output=*|-ojson|--tenant=*|--subscription=*|--scope=*) shift ;;
    *) echo "ERROR: unrecognized arguments: $1" >&2; exit 2 ;;
  esac
done
want={want}
if [ -n "$want" ] && [ "$resource" != "$want" ]; then
  echo "ERROR: AADSTS500011: The resource principal named $resource was not found in the tenant named {tenant_plain}." >&2
  exit 1
fi
exp=$(( $(date +%s) + {expires_in} ))
on=$(date -d "@$exp" '+%Y-%m-%d %H:%M:%S.000000' 2>/dev/null || date -r "$exp" '+%Y-%m-%d %H:%M:%S.000000')
printf '{{\n  "accessToken": "%s",\n  "expiresOn": "%s",\n{expires_on}  "subscription": "%s",\n  "tenant": "%s",\n  "tokenType": "Bearer"\n}}\n' \
  {token} "$on" {exp_arg}{subscription} {tenant}
"#,
            log = sh_quote(&log.to_string_lossy()),
            logged_out = u8::from(config.logged_out),
            want = sh_quote(config.resource.as_deref().unwrap_or_default()),
            tenant_plain = config.tenant.replace(['\'', '"', '$', '`', '\\'], ""),
            expires_in = config.expires_in,
            token = sh_quote(&config.access_token),
            exp_arg = if config.with_expires_on {
                "\"$exp\" "
            } else {
                ""
            },
            subscription = sh_quote(&config.subscription),
            tenant = sh_quote(&config.tenant),
        );
        let path = dir.join("az");
        std::fs::write(&path, script)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("cannot make {} executable: {e}", path.display()));
        }
        path
    }

    /// The arguments of every call of the fake `az` in `dir`, in order.
    pub fn calls(dir: &Path) -> Vec<Vec<String>> {
        std::fs::read_to_string(dir.join(AZ_LOG))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                line.strip_suffix('\t')
                    .unwrap_or(line)
                    .split('\t')
                    .filter(|_| !line.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/t/oauth2/v2.0/token"), (Endpoint::Token, Some("t")));
        assert_eq!(
            route("/t/oauth2/v2.0/devicecode"),
            (Endpoint::DeviceCode, Some("t"))
        );
        assert_eq!(route("//t/oauth2/v2.0/token"), (Endpoint::Other, None));
        assert_eq!(route("/t/oauth2/token"), (Endpoint::Other, None));
        assert_eq!(route(IMDS_TOKEN_PATH), (Endpoint::Imds, None));
        assert_eq!(resource_of(DEFAULT_SCOPE), DEFAULT_RESOURCE);
        assert_eq!(
            resource_of("offline_access https://x/.default"),
            "https://x"
        );
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }
}
