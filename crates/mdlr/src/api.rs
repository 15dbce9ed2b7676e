//! The client: signing in, the authenticated call, paging, actions and result links,
//! and waiting. One method per API call; the other service modules (`actions`,
//! `machines`, `library`) add theirs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{Credential, TokenCache};
use crate::cloud::{Cloud, Endpoints, check_url};
use crate::error::{Error, Result};
use crate::http::{Event, Http, Method, Request, Response, RetryPolicy, Timeouts, TransportConfig};
use crate::ids::check_action_id;
use crate::link::ResultLink;
use crate::model::{ActionStatus, MachineAction};
use crate::quota::{RateLimit, RateLimiter};
use crate::secret::{Redactor, redact_url};

/// Largest API JSON reply accepted (a list of 10 000 actions fits).
const DEFAULT_JSON_LIMIT: u64 = 64 << 20;
/// Largest RunScript transcript read into memory.
const DEFAULT_TRANSCRIPT_LIMIT: u64 = 256 << 20;

/// How often [`Client::wait_for`] looks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollPolicy {
    /// The first interval.
    pub first: Duration,
    /// The interval grows by half each time up to this.
    pub max: Duration,
}

impl PollPolicy {
    /// Looks after `first`, then half as long again each time, up to `max`.
    pub fn new(first: Duration, max: Duration) -> PollPolicy {
        PollPolicy { first, max }
    }
}

impl Default for PollPolicy {
    fn default() -> PollPolicy {
        PollPolicy {
            first: Duration::from_secs(5),
            max: Duration::from_secs(30),
        }
    }
}

/// Builds a [`Client`]. Everything has a default except the credential.
#[must_use]
pub struct ClientBuilder {
    credential: Credential,
    endpoints: Endpoints,
    transport: TransportConfig,
    rate_limits: Vec<RateLimit>,
    start_limits: Vec<RateLimit>,
    package_limits: Vec<RateLimit>,
    json_limit: u64,
    transcript_limit: u64,
    renew_links_before: Option<Duration>,
}

impl ClientBuilder {
    /// Uses the hosts of `cloud` (default: commercial).
    pub fn cloud(mut self, cloud: Cloud) -> Self {
        self.endpoints = cloud.endpoints();
        self
    }

    /// Uses these hosts (overrides [`ClientBuilder::cloud`]).
    pub fn endpoints(mut self, endpoints: Endpoints) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// How requests are sent: proxies, CAs, timeouts, retries, the event callback.
    /// Replaces what [`proxies`](Self::proxies) and the like set before.
    pub fn transport(mut self, transport: TransportConfig) -> Self {
        self.transport = transport;
        self
    }

    /// Which proxy each request goes through (default: none, every connection
    /// direct). The library reads no proxy variable itself.
    pub fn proxies(mut self, proxies: crate::net::Proxies) -> Self {
        self.transport = self.transport.proxies(proxies);
        self
    }

    /// Trusts this CA certificate (DER) on top of the bundled Mozilla roots — the CA of
    /// a TLS-inspecting proxy, or a private one. See [`crate::net::certificates_from_pem`].
    pub fn add_root_certificate(mut self, der: Vec<u8>) -> Self {
        self.transport = self.transport.add_root_certificate(der);
        self
    }

    /// Connect and per-read timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.transport = self.transport.timeouts(timeouts);
        self
    }

    /// How failed requests are retried.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.transport = self.transport.retry_policy(retry);
        self
    }

    /// Calls `observer` for every HTTP exchange, retry and throttling pause. URLs in
    /// the events are redacted.
    pub fn on_event(mut self, observer: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.transport = self.transport.on_event(observer);
        self
    }

    /// The client-side API quotas (default: [`RateLimit::defaults`]). An empty list
    /// turns the limiter off.
    pub fn rate_limits(mut self, limits: Vec<RateLimit>) -> Self {
        self.rate_limits = limits;
        self
    }

    /// The client-side quota on live response starts (default:
    /// [`RateLimit::start_defaults`], 10 a minute), on top of the API quotas.
    pub fn start_limits(mut self, limits: Vec<RateLimit>) -> Self {
        self.start_limits = limits;
        self
    }

    /// The client-side quota on investigation package links (default:
    /// [`RateLimit::package_defaults`], 2 a minute and 120 an hour), on top of the API
    /// quotas.
    pub fn package_limits(mut self, limits: Vec<RateLimit>) -> Self {
        self.package_limits = limits;
        self
    }

    /// Largest API JSON reply accepted, in bytes (default 64 MiB).
    pub fn json_limit(mut self, bytes: u64) -> Self {
        self.json_limit = bytes;
        self
    }

    /// Largest transcript read into memory, in bytes (default 256 MiB).
    pub fn transcript_limit(mut self, bytes: u64) -> Self {
        self.transcript_limit = bytes;
        self
    }

    /// How long before its expiry (its `se`, measured on this machine's clock from when
    /// it came) a result link is renewed during a download (default 5 minutes; links
    /// live 30). A link younger than a fifth of this is never renewed ahead of time, so
    /// a clock far off from the host's cannot turn every use into a renewal; a link the
    /// host refuses is renewed anyway.
    pub fn renew_links_before(mut self, before: Duration) -> Self {
        self.renew_links_before = Some(before);
        self
    }

    /// A [`DeviceLogin`](crate::DeviceLogin) for a person's sign-in with this
    /// builder's authority, scope and transport (its credential is not used). `tenant`
    /// may be `organizations` for any work account.
    pub fn device_login(
        &self,
        tenant: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Result<crate::DeviceLogin> {
        crate::DeviceLogin::new(self.endpoints.clone(), &self.transport, tenant, client_id)
    }

    /// Checks the settings and builds the client. No request is made yet.
    ///
    /// Fails with [`Error::Config`] for a plain `http://` URL to a host that is not
    /// loopback, or an unusable credential.
    pub fn build(self) -> Result<Client> {
        self.endpoints.validate()?;
        self.credential.validate()?;
        let redactor = Redactor::default();
        let http = Http::new(&self.transport, self.rate_limits, redactor.clone())?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints: self.endpoints,
                auth: TokenCache::new(self.credential, &redactor),
                start_limiter: RateLimiter::new(self.start_limits),
                package_limiter: RateLimiter::new(self.package_limits),
                http,
                json_limit: self.json_limit,
                transcript_limit: self.transcript_limit,
                renew_links_before: self.renew_links_before,
            }),
        })
    }
}

struct Inner {
    endpoints: Endpoints,
    auth: TokenCache,
    start_limiter: RateLimiter,
    package_limiter: RateLimiter,
    http: Http,
    json_limit: u64,
    transcript_limit: u64,
    renew_links_before: Option<Duration>,
}

/// A blocking Defender for Endpoint live response client.
///
/// Cheap to clone; clones share the token cache and the rate limiters, so a client can
/// be handed to many threads and all of them together keep to the API's quotas.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .field("auth_method", &self.auth_method())
            .finish_non_exhaustive()
    }
}

/// One API request, before authentication.
pub(crate) struct ApiCall {
    pub method: Method,
    pub url: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub idempotent: bool,
    /// The quota it counts against on top of the API's, if any.
    pub quota: Option<Quota>,
}

/// The quotas some calls count against on top of the API's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quota {
    /// Live response starts (10 a minute).
    Starts,
    /// Investigation package links (2 a minute, 120 an hour).
    PackageLinks,
}

impl ApiCall {
    pub(crate) fn get(url: String) -> ApiCall {
        ApiCall {
            method: Method::Get,
            url,
            content_type: None,
            body: Vec::new(),
            idempotent: true,
            quota: None,
        }
    }

    pub(crate) fn json(method: Method, url: String, body: Vec<u8>) -> ApiCall {
        ApiCall {
            method,
            url,
            content_type: Some("application/json".to_owned()),
            body,
            idempotent: method != Method::Post,
            quota: None,
        }
    }
}

#[derive(Deserialize)]
struct Page<T> {
    value: Option<Vec<T>>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct LinkEnvelope {
    value: Option<serde_json::Value>,
}

impl Client {
    /// Starts building a client that signs in with `credential`.
    pub fn builder(credential: Credential) -> ClientBuilder {
        ClientBuilder {
            credential,
            endpoints: Endpoints::default(),
            transport: TransportConfig::default(),
            rate_limits: RateLimit::defaults(),
            start_limits: RateLimit::start_defaults(),
            package_limits: RateLimit::package_defaults(),
            json_limit: DEFAULT_JSON_LIMIT,
            transcript_limit: DEFAULT_TRANSCRIPT_LIMIT,
            renew_links_before: None,
        }
    }

    /// The hosts this client talks to.
    pub fn endpoints(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    /// The sign-in method ([`Credential::method`]).
    pub fn auth_method(&self) -> &'static str {
        self.inner.auth.credential().method()
    }

    /// The client-side API quotas this client keeps to (shared by its clones).
    pub fn api_quotas(&self) -> &[RateLimit] {
        self.inner.http.api_limits()
    }

    /// The client-side quotas on live response starts, on top of the API quotas.
    pub fn start_quotas(&self) -> &[RateLimit] {
        self.inner.start_limiter.limits()
    }

    /// The client-side quotas on investigation package links, on top of the API quotas.
    pub fn package_quotas(&self) -> &[RateLimit] {
        self.inner.package_limiter.limits()
    }

    /// Signs in (if no token is held yet) and says what the token grants: tenant, app,
    /// roles or scopes, expiry. The token itself is never part of it.
    pub fn token_info(&self) -> Result<crate::TokenInfo> {
        let inner = &*self.inner;
        let method = self.auth_method();
        inner.auth.with_current(&inner.http, &inner.endpoints, |c| {
            crate::TokenInfo::from_token(method, c.token.expose(), c.expires_at)
        })
    }

    /// Counts live response starts made before this client existed (by an earlier
    /// process whose batch this one resumes, say), each `ago` before now, against the
    /// start and API quotas: the next starts then keep to the quotas with them.
    pub fn record_earlier_starts(&self, ago: &[Duration]) {
        let now = Instant::now();
        for at in ago.iter().filter_map(|a| now.checked_sub(*a)) {
            self.inner.start_limiter.record_past(at);
            self.inner.http.record_past_call(at);
        }
    }

    /// `GET /api/machineactions/{id}`: one machine action and its commands. An action
    /// the service sent without its `id` gets the one asked for.
    pub fn action(&self, action_id: &str) -> Result<MachineAction> {
        check_action_id(action_id)?;
        let mut action: MachineAction =
            self.get_json(&format!("machineactions/{action_id}"), "machine action")?;
        action.id.get_or_insert_with(|| action_id.to_owned());
        Ok(action)
    }

    /// `GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={n})`:
    /// a fresh download link for the result of command `index`. Nothing runs again.
    ///
    /// The service refuses a link with a bare 400 while the command runs; that comes
    /// back as [`Error::NotFinished`] with the action's and the command's status (or,
    /// when the action says otherwise, with the service's refusal inside), or as the
    /// [`Error::CommandFailed`] or [`Error::NoSuchCommand`] the action explains it by.
    pub fn result_link(&self, action_id: &str, index: u32) -> Result<ResultLink> {
        check_action_id(action_id)?;
        let envelope: LinkEnvelope = self
            .get_json(
                &format!(
                    "machineactions/{action_id}/GetLiveResponseResultDownloadLink(index={index})"
                ),
                "download link reply",
            )
            .map_err(|e| match e {
                Error::Api { status: 400, .. } if !e.is_busy() => {
                    self.explain_refused_link(action_id, index, e)
                }
                other => other,
            })?;
        let url = match envelope.value {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s,
            _ => {
                return Err(Error::malformed(
                    "download link reply",
                    "it has no `value` link",
                ));
            }
        };
        check_url(&url, "download link")?;
        self.inner.http.redactor().add_link(&url);
        Ok(ResultLink::new(url))
    }

    /// What a 400 on a result link means, from the action: it has not finished, it
    /// failed, or there is no such command. When the action cannot be read, or says
    /// the command is done, the refusal is kept inside a [`Error::NotFinished`]: the
    /// service answers 400 to a result asked for too early (SPEC A5).
    fn explain_refused_link(&self, action_id: &str, index: u32, refusal: Error) -> Error {
        let action = self.action(action_id).ok();
        if let Some(Err(why)) = action.as_ref().map(|a| a.result_type(index)) {
            return why;
        }
        let command_status = action
            .as_ref()
            .and_then(|a| a.command(index))
            .and_then(|c| c.command_status.clone());
        Error::NotFinished {
            action_id: action_id.to_owned(),
            index,
            action_status: action.map_or_else(
                || ActionStatus::Other("unknown".to_owned()),
                |a| a.status_or_unknown(),
            ),
            command_status,
            refusal: Some(Box::new(refusal)),
        }
    }

    /// Polls the action until `done` says so or `timeout` has passed, and returns the
    /// last state seen. The first look is immediate; intervals follow `poll`.
    pub fn wait_for(
        &self,
        action_id: &str,
        timeout: Duration,
        poll: PollPolicy,
        mut done: impl FnMut(&MachineAction) -> bool,
    ) -> Result<MachineAction> {
        let deadline = Instant::now() + timeout;
        let mut interval = poll.first;
        loop {
            let action = self.action(action_id)?;
            let now = Instant::now();
            if done(&action) || now >= deadline {
                return Ok(action);
            }
            std::thread::sleep(interval.min(deadline - now));
            interval = (interval + interval / 2).min(poll.max.max(poll.first));
        }
    }

    /// Waits until command `index` has a result or can have none, up to `timeout`, and
    /// returns the action as last seen.
    pub fn wait_for_command(
        &self,
        action_id: &str,
        index: u32,
        timeout: Duration,
        poll: PollPolicy,
    ) -> Result<MachineAction> {
        self.wait_for(action_id, timeout, poll, |a| {
            a.is_finished() || !matches!(a.result_type(index), Err(Error::NotFinished { .. }))
        })
    }

    /// The transport, for the results layer.
    pub(crate) fn http(&self) -> &Http {
        &self.inner.http
    }

    /// Largest transcript read into memory.
    pub(crate) fn transcript_limit(&self) -> u64 {
        self.inner.transcript_limit
    }

    /// How long before their expiry result links are renewed, when set.
    pub(crate) fn renew_links_before(&self) -> Option<Duration> {
        self.inner.renew_links_before
    }

    pub(crate) fn get_json<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let url = self.inner.endpoints.api_url(path);
        self.read_json(self.call(&ApiCall::get(url))?, what)
    }

    pub(crate) fn read_json<T: DeserializeOwned>(&self, resp: Response, what: &str) -> Result<T> {
        resp.read_json(self.inner.json_limit, what)
    }

    /// GETs a list and follows `@odata.nextLink` (only on the API host) up to `max` items.
    pub(crate) fn get_list<T: DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
        max: usize,
    ) -> Result<Vec<T>> {
        let prefix = self.inner.endpoints.api_url("");
        let mut url = self.inner.endpoints.api_url(path);
        let mut items = Vec::new();
        loop {
            let page: Page<T> = self.read_json(self.call(&ApiCall::get(url))?, what)?;
            items.extend(page.value.unwrap_or_default());
            match page.next_link {
                Some(next) if items.len() < max => {
                    // The bearer token goes to the API host only.
                    if !next.starts_with(&prefix) {
                        return Err(Error::malformed(
                            what,
                            format!(
                                "its next page is not on the API host: {}",
                                redact_url(&next)
                            ),
                        ));
                    }
                    url = next;
                }
                _ => break,
            }
        }
        items.truncate(max);
        Ok(items)
    }

    /// Sends an authenticated API request; a 401 refreshes the token once. Non-2xx
    /// replies become [`Error::Api`].
    pub(crate) fn call(&self, call: &ApiCall) -> Result<Response> {
        let inner = &*self.inner;
        let send = || -> Result<Response> {
            let token = inner.auth.token(&inner.http, &inner.endpoints)?;
            let req = Request {
                method: call.method,
                url: &call.url,
                bearer: Some(&token),
                content_type: call.content_type.as_deref(),
                headers: Vec::new(),
                body: call.body.clone(),
                local: false,
                idempotent: call.idempotent,
            };
            let extra = call.quota.map(|q| match q {
                Quota::Starts => &inner.start_limiter,
                Quota::PackageLinks => &inner.package_limiter,
            });
            inner.http.api(&req, extra)
        };
        let mut resp = send()?;
        if resp.status() == 401 && inner.auth.can_refresh() {
            let _ = resp.read_limited(64 * 1024, "reply");
            inner.auth.invalidate();
            resp = send()?;
        }
        if resp.is_success() {
            Ok(resp)
        } else {
            Err(resp.api_error())
        }
    }
}
