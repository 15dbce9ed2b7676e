//! The client: one method per API call, plus result retrieval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::auth::{Credential, TokenCache};
use crate::cloud::{Cloud, Endpoints, check_url};
use crate::download::{Destination, DownloadRequest, Downloaded, ResultLink};
use crate::error::{Error, Result};
use crate::http::{
    Event, Http, Method, RateLimit, RateLimiter, Request, Response, RetryPolicy, Timeouts,
};
use crate::model::MachineAction;
use crate::secret::redact_url;
use crate::transcript::Transcript;
use crate::transfer::Links;

/// Largest API JSON reply accepted (a list of 10 000 actions fits).
const DEFAULT_JSON_LIMIT: u64 = 64 << 20;
/// Largest RunScript transcript read into memory.
const DEFAULT_TRANSCRIPT_LIMIT: u64 = 256 << 20;

/// How often [`Client::wait_for`] looks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    /// The first interval.
    pub first: Duration,
    /// The interval grows by half each time up to this.
    pub max: Duration,
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
    timeouts: Timeouts,
    retry: RetryPolicy,
    rate_limits: Vec<RateLimit>,
    start_limits: Vec<RateLimit>,
    observer: Option<crate::http::Observer>,
    json_limit: u64,
    transcript_limit: u64,
    network: crate::http::Network,
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

    /// The credential the client will sign in with.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// Which proxy each request goes through (default: none, every connection
    /// direct). The library reads no proxy variable itself.
    pub fn proxies(mut self, proxies: crate::net::Proxies) -> Self {
        self.network.proxies = proxies;
        self
    }

    /// Trusts this CA certificate (DER) on top of the bundled Mozilla roots — the CA of
    /// a TLS-inspecting proxy, or a private one. See [`crate::net::certificates_from_pem`].
    pub fn add_root_certificate(mut self, der: Vec<u8>) -> Self {
        self.network.extra_roots.push(der);
        self
    }

    /// Connect and per-read timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// How failed requests are retried.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
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

    /// Calls `observer` for every HTTP exchange, retry and throttling pause. URLs in
    /// the events are redacted.
    pub fn on_event(mut self, observer: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
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

    /// Builds a [`DeviceLogin`](crate::DeviceLogin) for a person's sign-in with the
    /// builder's authority, scope, proxies, CAs and timeouts (its credential is not
    /// used). `tenant` may be `organizations` for any work account.
    pub fn device_login(
        self,
        tenant: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Result<crate::DeviceLogin> {
        self.endpoints.validate()?;
        let http = self.http()?;
        crate::DeviceLogin::new(http, self.endpoints, tenant.into(), client_id.into())
    }

    fn http(&self) -> Result<Http> {
        Http::new(
            self.timeouts,
            self.retry,
            self.rate_limits.clone(),
            self.observer.clone(),
            &self.network,
            concat!("mdlr/", env!("CARGO_PKG_VERSION")),
        )
    }

    /// Checks the settings and builds the client. No request is made yet.
    ///
    /// Fails with [`Error::Config`] for a plain `http://` URL to a host that is not
    /// loopback, or an unusable credential.
    pub fn build(self) -> Result<Client> {
        self.endpoints.validate()?;
        self.credential.validate()?;
        let http = self.http()?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints: self.endpoints,
                auth: TokenCache::new(self.credential),
                signatures: std::sync::Mutex::default(),
                start_limiter: RateLimiter::new(self.start_limits),
                http,
                json_limit: self.json_limit,
                transcript_limit: self.transcript_limit,
            }),
        })
    }
}

struct Inner {
    endpoints: Endpoints,
    auth: TokenCache,
    /// The signatures of the latest result links, to keep out of error messages.
    signatures: std::sync::Mutex<std::collections::VecDeque<String>>,
    start_limiter: RateLimiter,
    http: Http,
    json_limit: u64,
    transcript_limit: u64,
}

/// A blocking Defender for Endpoint live response client.
///
/// Cheap to clone; clones share the token cache and the rate limiter, so a client can be
/// handed to many threads and all of them together keep to the API's quotas.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
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
    /// Whether it starts a live response session (and so counts against that quota).
    pub starts: bool,
}

impl ApiCall {
    pub(crate) fn get(url: String) -> ApiCall {
        ApiCall {
            method: Method::Get,
            url,
            content_type: None,
            body: Vec::new(),
            idempotent: true,
            starts: false,
        }
    }

    pub(crate) fn json(method: Method, url: String, body: Vec<u8>) -> ApiCall {
        ApiCall {
            method,
            url,
            content_type: Some("application/json".to_owned()),
            body,
            idempotent: method != Method::Post,
            starts: false,
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

impl Client {
    /// The client-side quotas: API calls, and live response starts.
    pub(crate) fn quota_limits(&self) -> (&[RateLimit], &[RateLimit]) {
        (
            self.inner.http.api_limits(),
            self.inner.start_limiter.limits(),
        )
    }

    /// Starts building a client that signs in with `credential`.
    pub fn builder(credential: Credential) -> ClientBuilder {
        ClientBuilder {
            credential,
            endpoints: Endpoints::default(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            rate_limits: RateLimit::defaults(),
            start_limits: RateLimit::start_defaults(),
            observer: None,
            json_limit: DEFAULT_JSON_LIMIT,
            transcript_limit: DEFAULT_TRANSCRIPT_LIMIT,
            network: crate::http::Network::default(),
        }
    }

    /// The hosts this client talks to.
    pub fn endpoints(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    /// The sign-in method, as `--auth` spells it.
    pub fn auth_method(&self) -> &'static str {
        self.inner.auth.credential().method()
    }

    /// Signs in (if no token is held yet) and says what the token grants: tenant, app,
    /// roles or scopes, expiry. The token itself is never part of it.
    pub fn token_info(&self) -> Result<crate::TokenInfo> {
        let inner = &*self.inner;
        let method = self.auth_method();
        inner
            .auth
            .with_current(&inner.http, &inner.endpoints, |c| {
                crate::TokenInfo::from_token(method, c.token.expose(), c.expires_at)
            })
            .map_err(|e| self.scrub(e))
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

    /// `GET /api/machineactions/{id}`: one machine action and its commands.
    pub fn action(&self, action_id: &str) -> Result<MachineAction> {
        check_action_id(action_id)?;
        self.get_json(&format!("machineactions/{action_id}"), "machine action")
    }

    /// `GET /api/machineactions/{id}/GetLiveResponseResultDownloadLink(index={n})`:
    /// a fresh download link for the result of command `index`. Nothing runs again.
    pub fn result_link(&self, action_id: &str, index: u32) -> Result<ResultLink> {
        check_action_id(action_id)?;
        let envelope: LinkEnvelope = self.get_json(
            &format!("machineactions/{action_id}/GetLiveResponseResultDownloadLink(index={index})"),
            "download link reply",
        )?;
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
        self.remember_signatures(&url);
        Ok(ResultLink::new(url))
    }

    /// Keeps the signature of a link in mind, to keep it out of error messages.
    pub(crate) fn remember_signatures(&self, url: &str) {
        /// Enough for every link in use at once in a large batch.
        const KEPT: usize = 256;
        let mut kept = self
            .inner
            .signatures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for sig in crate::secret::sig_values(url) {
            if !kept.contains(&sig) {
                if kept.len() == KEPT {
                    kept.pop_front();
                }
                kept.push_back(sig);
            }
        }
    }

    /// `e` without any secret this client knows in what the service said in it: the
    /// credential's, the current token, and the signatures of recent links.
    pub(crate) fn scrub(&self, e: Error) -> Error {
        let secrets = self.secrets();
        e.redact(&secrets.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The secrets this client knows: the credential's, the current token, and the
    /// signatures of recent links.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .inner
            .auth
            .secrets()
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        let signatures = self
            .inner
            .signatures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        all.extend(signatures.iter().cloned());
        all
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

    /// Waits until command `index` has a result or can have none, up to `timeout`.
    pub fn wait_for_command(
        &self,
        action_id: &str,
        index: u32,
        timeout: Duration,
        poll: PollPolicy,
    ) -> Result<MachineAction> {
        self.wait_for(action_id, timeout, poll, |a| {
            a.status_or_unknown().is_terminal()
                || !matches!(
                    a.result_type(action_id, index),
                    Err(Error::NotFinished { .. })
                )
        })
    }

    /// The raw bytes behind a result link, read into memory (up to the transcript limit).
    pub fn result_bytes(&self, link: &ResultLink) -> Result<Vec<u8>> {
        self.fetch_blob(link)?
            .read_limited(self.inner.transcript_limit, "transcript")
    }

    /// Gets the RunScript transcript of command `index`: a fresh link, the download and
    /// the tolerant parse. A link refused by the result host is renewed once.
    pub fn transcript(&self, action_id: &str, index: u32) -> Result<Transcript> {
        Transcript::parse(&self.transcript_bytes(action_id, index)?).map_err(|e| self.scrub(e))
    }

    /// The raw transcript bytes of command `index`, as the result host holds them.
    pub fn transcript_bytes(&self, action_id: &str, index: u32) -> Result<Vec<u8>> {
        self.with_fresh_link(action_id, index, |link| self.result_bytes(link))
    }

    /// Downloads a result link into a file as `request` says.
    ///
    /// The bearer token is never sent to the link's host. Redirects are followed only
    /// to URLs that pass the same checks as the link.
    pub fn download(&self, link: &ResultLink, request: &DownloadRequest) -> Result<Downloaded> {
        self.transfer(Links::new(link.clone(), None), request)
    }

    /// Gets a fresh link for command `index` and downloads it as `request` says: a
    /// dropped or stalled connection continues from the byte it reached, a link the
    /// result host refuses (expired) or that is about to expire is renewed, and a rerun
    /// continues from the partial file an interrupted run left.
    pub fn download_result(
        &self,
        action_id: &str,
        index: u32,
        request: &DownloadRequest,
    ) -> Result<Downloaded> {
        // Spare a quota call when the answer is known already.
        if let Destination::File(path) = &request.destination
            && !request.overwrite
            && path.exists()
        {
            return Err(Error::Exists { path: path.clone() });
        }
        let link = self.result_link(action_id, index)?;
        let refresh = || self.result_link(action_id, index);
        self.transfer(Links::new(link, Some(&refresh)), request)
    }

    pub(crate) fn http(&self) -> &Http {
        &self.inner.http
    }

    /// Runs `f` with a fresh link; when the result host answers 403 (an expired or
    /// refused link), asks for a new link and runs `f` once more.
    fn with_fresh_link<T>(
        &self,
        action_id: &str,
        index: u32,
        f: impl Fn(&ResultLink) -> Result<T>,
    ) -> Result<T> {
        let link = self.result_link(action_id, index)?;
        match f(&link) {
            Err(Error::Blob { status: 403, .. }) => f(&self.result_link(action_id, index)?),
            other => other,
        }
    }

    /// GETs a result link without credentials, following checked redirects.
    fn fetch_blob(&self, link: &ResultLink) -> Result<Response> {
        self.get_blob(link, 0, None)
    }

    pub(crate) fn get_json<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let url = self.inner.endpoints.api_url(path);
        self.read_json(self.call(&ApiCall::get(url))?, what)
    }

    pub(crate) fn read_json<T: DeserializeOwned>(&self, resp: Response, what: &str) -> Result<T> {
        let body = resp.read_limited(self.inner.json_limit, what)?;
        serde_json::from_slice(&body).map_err(|e| self.scrub(Error::malformed(what, e.to_string())))
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
            let extra = call.starts.then_some(&inner.start_limiter);
            inner.http.api(&req, extra)
        };
        let mut resp = send().map_err(|e| self.scrub(e))?;
        if resp.status() == 401 && inner.auth.can_refresh() {
            let _ = resp.read_limited(64 * 1024, "reply");
            inner.auth.invalidate();
            resp = send().map_err(|e| self.scrub(e))?;
        }
        if (200..300).contains(&resp.status()) {
            Ok(resp)
        } else {
            // A careless service or proxy may quote the request, token included.
            Err(self.scrub(api_error(resp, &self.secrets())))
        }
    }
}

/// Checks that an action id can go into a URL path: letters, digits, `-` and `_`.
pub fn check_action_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            message: format!(
                "{:?} is not a machine action id (a GUID such as 988cc94e-7a8f-4b28-ab65-54970c5d5018)",
                id.chars().take(80).collect::<String>()
            ),
        })
    }
}

fn api_error(resp: Response, secrets: &[String]) -> Error {
    let status = resp.status();
    let retry_after = resp.header("retry-after").map(str::to_owned);
    let body = resp
        .read_limited(64 * 1024, "error reply")
        .unwrap_or_default();
    let body = scrub_body(&body, secrets);
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
    Error::Api {
        status,
        code,
        message,
        correlation_id,
    }
}

pub(crate) fn blob_error(resp: Response, secrets: &[String]) -> Error {
    let status = resp.status();
    let code = resp.header("x-ms-error-code").map(str::to_owned);
    let request_id = resp.header("x-ms-request-id").map(str::to_owned);
    let body = resp
        .read_limited(64 * 1024, "error reply")
        .unwrap_or_default();
    let body = scrub_body(&body, secrets);
    let text = String::from_utf8_lossy(&body);
    let message = xml_element(&text, "Message")
        .map(|m| m.lines().next().unwrap_or_default().to_owned())
        .unwrap_or_else(|| match status {
            403 => "access refused (the link may have expired)".to_owned(),
            404 => "no such result".to_owned(),
            _ => describe_body(&body),
        });
    Error::Blob {
        status,
        code,
        message,
        request_id,
    }
}

fn xml_element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].trim())
}

/// `body` without `secrets`, before any of it is kept: an excerpt cut in the middle of
/// a secret would not be recognised any more.
pub(crate) fn scrub_body(body: &[u8], secrets: &[String]) -> Vec<u8> {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    match std::str::from_utf8(body) {
        Ok(text) => crate::secret::scrub(text, &secrets).into_bytes(),
        Err(_) => crate::secret::scrub(&String::from_utf8_lossy(body), &secrets).into_bytes(),
    }
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
    fn action_ids() {
        assert!(check_action_id("988cc94e-7a8f-4b28-ab65-54970c5d5018").is_ok());
        for bad in ["", "../x", "a/b", "a?b", "a b", "a%2e", "a(index=0)"] {
            assert!(check_action_id(bad).is_err(), "{bad}");
        }
    }

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
    }
}
