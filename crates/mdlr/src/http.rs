//! The HTTP layer: the ureq agents, timeouts, retries, the client-side rate limiter and
//! the exchange log. No other module sends requests.
//!
//! Every error it hands up has been through the [`Redactor`]: transport failures here,
//! and errors built from replies in `reply`.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, TransportKind};
use crate::net::Proxies;
use crate::quota::{Permit, RateLimit, RateLimiter};
use crate::quota_file::{QuotaFile, Reporter, Section};
use crate::secret::{Redactor, Secret, redact_url};

/// Something the client did, for logs (`mdlr -v`). URLs in it are redacted.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// One HTTP exchange finished (or failed without a reply).
    Exchange {
        /// `GET`, `POST`, ...
        method: &'static str,
        /// The URL with secrets redacted.
        url: String,
        /// The reply's status, if a reply came.
        status: Option<u16>,
        /// Time from sending to the reply's headers.
        elapsed: Duration,
    },
    /// A request is about to be retried after `delay`.
    Retry {
        /// The URL with secrets redacted.
        url: String,
        /// Why (`429 Too Many Requests`, `503`, `connection failed`, ...).
        reason: String,
        /// How long it waits first.
        delay: Duration,
    },
    /// The client-side rate limiter holds a call back for `delay` to stay in quota.
    Throttled {
        /// How long it waits.
        delay: Duration,
    },
    /// The service refused a kind of request that the client can replace by several
    /// simpler ones, and the client makes the simpler ones from now on (for the rest of
    /// its life and its clones'). Said once per client.
    Fallback {
        /// What was refused and what is done instead, in a sentence.
        message: String,
    },
    /// The quota state shared with other processes
    /// ([`ClientBuilder::shared_quotas`](crate::ClientBuilder::shared_quotas)) could not
    /// be used, so calls keep to this client's own limiter until it can (said once until
    /// it works again); or it was damaged and has been started anew.
    SharedQuotas {
        /// What happened, naming the file.
        problem: String,
    },
}

/// A callback receiving [`Event`]s.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first try (0 turns retrying off).
    pub max_retries: u32,
    /// Delay before the first retry; it doubles each time, with jitter.
    pub base_delay: Duration,
    /// Longest delay between retries.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; a longer one ends the retries.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// The default policy with `max_retries` retries after the first try.
    pub fn with_retries(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            ..RetryPolicy::default()
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Timeouts for every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Connecting, including DNS, proxy and TLS set-up.
    pub connect: Duration,
    /// Longest wait for any single read: a stalled transfer fails after this.
    pub read: Duration,
}

impl Timeouts {
    /// `connect` to connect (DNS, proxy and TLS included), `read` for any single read.
    pub fn new(connect: Duration, read: Duration) -> Timeouts {
        Timeouts { connect, read }
    }
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(30),
            read: Duration::from_secs(60),
        }
    }
}

/// The request methods mdlr uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// A request to send.
pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: &'a str,
    pub bearer: Option<&'a Secret>,
    pub content_type: Option<&'a str>,
    /// Further headers (`Range`, `If-Match`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// A request to the instance metadata service (managed identity): always direct,
    /// never through a proxy, with a short connect timeout.
    pub local: bool,
    /// Whether sending it twice does no harm: then 5xx replies and connections that
    /// broke after sending are retried too. (A live response start is not: a retry
    /// could start a second session.)
    pub idempotent: bool,
}

impl<'a> Request<'a> {
    pub(crate) fn get(url: &'a str) -> Request<'a> {
        Request {
            method: Method::Get,
            url,
            bearer: None,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
            local: false,
            idempotent: true,
        }
    }

    pub(crate) fn form(url: &'a str, fields: &[(&str, &str)]) -> Request<'a> {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", crate::encode::form(k), crate::encode::form(v)))
            .collect::<Vec<_>>()
            .join("&");
        Request {
            method: Method::Post,
            url,
            bearer: None,
            content_type: Some("application/x-www-form-urlencoded"),
            headers: Vec::new(),
            body: body.into_bytes(),
            local: false,
            idempotent: true,
        }
    }
}

/// A reply: status, headers and a body still to be read.
pub(crate) struct Response {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: ureq::Body,
    /// Takes secrets out of what an error reply says.
    pub(crate) redactor: Redactor,
}

impl Response {
    pub(crate) fn status(&self) -> u16 {
        self.status
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// Whether the status is 2xx.
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Reads the whole body, failing past `limit` bytes. The body of a reply that is not
    /// a success serves only to explain an error: it comes without the secrets the
    /// redactor knows (a service may quote the request back).
    pub(crate) fn read_limited(mut self, limit: u64, what: &str) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let mut reader = self.body.as_reader().take(limit + 1);
        reader.read_to_end(&mut buf).map_err(|e| Error::Transport {
            url: String::new(),
            kind: TransportKind::Broken,
            message: format!("reading the {what} failed: {e}"),
            source: Some(Box::new(e)),
        })?;
        if buf.len() as u64 > limit {
            return Err(Error::malformed(
                what,
                format!("larger than the {limit}-byte limit"),
            ));
        }
        if !self.is_success() {
            return Ok(self
                .redactor
                .scrub(&String::from_utf8_lossy(&buf))
                .into_bytes());
        }
        Ok(buf)
    }

    /// Reads and decodes a JSON body of at most `limit` bytes; a body that does not
    /// decode is [`Error::Malformed`], without any known secret in its message.
    pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
        self,
        limit: u64,
        what: &str,
    ) -> Result<T> {
        let redactor = self.redactor.clone();
        let body = self.read_limited(limit, what)?;
        serde_json::from_slice(&body)
            .map_err(|e| redactor.scrub_error(Error::malformed(what, e.to_string())))
    }

    /// The body as a reader without any size limit.
    pub(crate) fn into_reader(self) -> impl Read + Send + 'static {
        self.body.into_reader()
    }
}

/// How requests are sent: proxies, trusted CAs, timeouts, retries, and who hears of
/// each exchange. Shared by [`ClientBuilder`](crate::ClientBuilder) and
/// [`Downloader`](crate::Downloader); every setting has a default.
///
/// ```
/// use std::time::Duration;
/// use mdlr::{RetryPolicy, Timeouts, TransportConfig};
///
/// let transport = TransportConfig::new()
///     .timeouts(Timeouts::new(Duration::from_secs(10), Duration::from_secs(30)))
///     .retry_policy(RetryPolicy::with_retries(2));
/// # let _ = transport;
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct TransportConfig {
    proxies: Proxies,
    /// DER certificates trusted on top of the bundled roots.
    extra_roots: Vec<Vec<u8>>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    observer: Option<Observer>,
}

impl TransportConfig {
    /// Direct connections, the bundled roots, default timeouts and retries.
    pub fn new() -> TransportConfig {
        TransportConfig::default()
    }

    /// Which proxy each request goes through (default: none, every connection direct).
    /// The library reads no proxy variable itself.
    pub fn proxies(mut self, proxies: Proxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Trusts this CA certificate (DER) on top of the bundled Mozilla roots — the CA of
    /// a TLS-inspecting proxy, or a private one. See
    /// [`certificates_from_pem`](crate::net::certificates_from_pem).
    pub fn add_root_certificate(mut self, der: Vec<u8>) -> Self {
        self.extra_roots.push(der);
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

    /// Calls `observer` for every HTTP exchange, retry and throttling pause. URLs in
    /// the events are redacted.
    pub fn on_event(mut self, observer: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The proxies requests go through.
    pub fn proxies_in_use(&self) -> &Proxies {
        &self.proxies
    }
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("proxies", &self.proxies)
            .field("extra_roots", &self.extra_roots.len())
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// How mdlr introduces itself.
const USER_AGENT: &str = concat!("mdlr/", env!("CARGO_PKG_VERSION"));

/// Connect timeout for the instance metadata service: it answers at once on Azure,
/// and off Azure nothing answers at all.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Bytes ureq reads from a connection at a time (its default is 128 KiB): resident
/// memory for each connection, and larger reads than this gain nothing measurable.
const INPUT_BUFFER: usize = 256 * 1024;
/// ureq's buffer for what is sent on a connection: a request's head must fit in it (a
/// body goes through it in parts). Its default, 128 KiB, is resident memory for each
/// connection; the longest head mdlr sends (a SAS link, or a bearer token) is a few
/// KiB, and hosts refuse heads of more than 16 KiB or so.
const OUTPUT_BUFFER: usize = 32 * 1024;

/// One agent per route: direct, through the https proxy, through the http proxy, and to
/// the metadata service. Each keeps its own connection pool.
struct Agents {
    direct: ureq::Agent,
    https_proxy: Option<ureq::Agent>,
    http_proxy: Option<ureq::Agent>,
    local: ureq::Agent,
    proxies: Proxies,
}

impl Agents {
    fn new(config: &TransportConfig, user_agent: &str) -> Result<Agents> {
        let timeouts = config.timeouts;
        let roots = crate::net::root_certs(&config.extra_roots);
        let provider = crate::net::crypto_provider();
        let agent = |proxy: Option<ureq::Proxy>, connect: Duration| {
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(roots.clone())
                .unversioned_rustls_crypto_provider(provider.clone())
                .build();
            ureq::Agent::config_builder()
                // Keep error bodies: Defender explains itself in JSON.
                .http_status_as_error(false)
                // Redirects are followed by the download code, which checks each target.
                .max_redirects(0)
                // The library never reads proxy variables from the environment: the
                // caller hands them over, and `Agents::for_request` picks the route.
                .proxy(proxy)
                .tls_config(tls)
                // Large reads for downloads: fewer system calls per GiB.
                .input_buffer_size(INPUT_BUFFER)
                .output_buffer_size(OUTPUT_BUFFER)
                .timeout_connect(Some(connect))
                .timeout_per_read(Some(timeouts.read))
                .timeout_per_write(Some(timeouts.read))
                .timeout_recv_response(Some(timeouts.read))
                .user_agent(user_agent)
                .build()
                .new_agent()
        };
        // Built whenever the scheme has a proxy; `for_request` applies the no-proxy list.
        let proxy_for = |scheme: &str| -> Result<Option<ureq::Agent>> {
            Ok(match config.proxies.for_scheme(scheme) {
                Some(p) => Some(agent(Some(p.to_ureq()?), timeouts.connect)),
                None => None,
            })
        };
        Ok(Agents {
            direct: agent(None, timeouts.connect),
            https_proxy: proxy_for("https")?,
            http_proxy: proxy_for("http")?,
            local: agent(None, LOCAL_CONNECT_TIMEOUT.min(timeouts.connect)),
            proxies: config.proxies.clone(),
        })
    }

    /// The agent for a request, and the proxy it goes through (for messages).
    fn for_request(&self, req: &Request<'_>) -> (&ureq::Agent, Option<String>) {
        if req.local {
            return (&self.local, None);
        }
        let proxied = match self.proxies.for_url(req.url) {
            Some(p) if req.url.starts_with("https:") => {
                self.https_proxy.as_ref().map(|a| (a, p.display()))
            }
            Some(p) => self.http_proxy.as_ref().map(|a| (a, p.display())),
            None => None,
        };
        match proxied {
            Some((agent, display)) => (agent, Some(display.to_owned())),
            None => (&self.direct, None),
        }
    }
}

/// Sends requests with timeouts, retries and (for the API) the rate limiter.
pub(crate) struct Http {
    agents: Agents,
    retry: RetryPolicy,
    limiter: RateLimiter,
    observer: Option<Observer>,
    redactor: Redactor,
}

impl Http {
    /// The client-side API quotas.
    pub(crate) fn api_limits(&self) -> &[RateLimit] {
        self.limiter.limits()
    }

    /// An HTTP layer keeping to the API quotas `limits` (for [`Http::api`]), whose
    /// errors go through `redactor`.
    pub(crate) fn new(
        config: &TransportConfig,
        limits: Vec<RateLimit>,
        redactor: Redactor,
    ) -> Result<Http> {
        Ok(Http {
            agents: Agents::new(config, USER_AGENT)?,
            retry: config.retry,
            limiter: RateLimiter::new(limits),
            observer: config.observer.clone(),
            redactor,
        })
    }

    /// What takes secrets out of error messages.
    pub(crate) fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    pub(crate) fn emit(&self, event: Event) {
        if let Some(o) = &self.observer {
            o(&event);
        }
    }

    /// One try, logged.
    fn send_once(&self, req: &Request<'_>) -> Result<Response> {
        let mut builder = ureq::http::Request::builder()
            .method(req.method.as_str())
            .uri(req.url);
        if let Some(token) = req.bearer {
            builder = builder.header("Authorization", format!("Bearer {}", token.expose()));
        }
        if let Some(ct) = req.content_type {
            builder = builder.header("Content-Type", ct);
        }
        for (name, value) in &req.headers {
            builder = builder.header(*name, value.as_str());
        }
        let redacted = redact_url(req.url);
        let invalid = |e: ureq::http::Error| Error::config(format!("invalid URL {redacted}: {e}"));
        let (agent, proxy) = self.agents.for_request(req);
        let started = Instant::now();
        // A GET carries no body, not even an empty one.
        let result = if req.body.is_empty() && req.method == Method::Get {
            agent.run(builder.body(()).map_err(invalid)?)
        } else {
            agent.run(builder.body(req.body.clone()).map_err(invalid)?)
        };
        let elapsed = started.elapsed();
        self.emit(Event::Exchange {
            method: req.method.as_str(),
            url: redacted.clone(),
            status: result.as_ref().ok().map(|r| r.status().as_u16()),
            elapsed,
        });
        match result {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                Ok(Response {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body,
                    redactor: self.redactor.clone(),
                })
            }
            Err(e) => {
                Err(self
                    .redactor
                    .scrub_error(transport_error(&redacted, proxy.as_deref(), e)))
            }
        }
    }

    /// Keeps the API quotas together with every process sharing the state file at
    /// `path` (opened, or created, here); problems with it become
    /// [`Event::SharedQuotas`]. The file, for the start and package limiters.
    pub(crate) fn share_quotas(&mut self, path: std::path::PathBuf) -> Result<Arc<QuotaFile>> {
        let report: Option<Reporter> = self.observer.clone().map(|o| {
            Arc::new(move |problem: &str| {
                o(&Event::SharedQuotas {
                    problem: problem.to_owned(),
                });
            }) as Reporter
        });
        let file = Arc::new(QuotaFile::open(path, report)?);
        self.limiter.share(file.clone(), Section::Api);
        Ok(file)
    }

    /// API calls within the last `within`, those under way included.
    pub(crate) fn recent_calls(&self, within: Duration) -> usize {
        self.limiter.calls_within(within)
    }

    /// Counts an API call made at `at` against the API quotas.
    pub(crate) fn record_past_call(&self, at: Instant) {
        self.limiter.record_past(at);
    }

    /// Sends an API request: waits for the rate limiter before each try, retries
    /// connection failures and 5xx with backoff, and 429 after `Retry-After`.
    pub(crate) fn api(&self, req: &Request<'_>, extra: Option<&RateLimiter>) -> Result<Response> {
        self.send(req, Some(&self.limiter), extra)
    }

    /// Sends a request outside the API quota (token endpoint, result host), with the
    /// same retries.
    pub(crate) fn plain(&self, req: &Request<'_>) -> Result<Response> {
        self.send(req, None, None)
    }

    fn send(
        &self,
        req: &Request<'_>,
        limiter: Option<&RateLimiter>,
        extra: Option<&RateLimiter>,
    ) -> Result<Response> {
        let retry_5xx = req.idempotent;
        let mut attempt = 0;
        loop {
            let on_wait = |delay| self.emit(Event::Throttled { delay });
            let permits: Vec<Permit<'_>> = [extra, limiter]
                .into_iter()
                .flatten()
                .map(|l| l.acquire(&on_wait))
                .collect();
            let last_try = attempt >= self.retry.max_retries;
            let sent = self.send_once(req);
            drop(permits);
            let (reason, delay) = match sent {
                Err(e) if !last_try && is_transient(&e, req.idempotent) => {
                    ("no answer".to_owned(), self.backoff(attempt))
                }
                Err(e) => return Err(not_http(e)),
                Ok(resp) if last_try => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp.header("retry-after").and_then(parse_retry_after);
                    let delay = match status {
                        429 => retry_after
                            .unwrap_or_else(|| self.backoff(attempt).max(Duration::from_secs(1))),
                        500 | 502 | 503 | 504 if retry_5xx => {
                            retry_after.unwrap_or_else(|| self.backoff(attempt))
                        }
                        _ => return Ok(resp),
                    };
                    if delay > self.retry.max_retry_after {
                        return Ok(resp);
                    }
                    // Drain a little so the connection can be reused.
                    let _ = resp.read_limited(64 * 1024, "reply");
                    (format!("status {status}"), delay)
                }
            };
            self.emit(Event::Retry {
                url: redact_url(req.url),
                reason,
                delay,
            });
            std::thread::sleep(delay);
            attempt += 1;
        }
    }

    /// Exponential backoff with jitter: a random delay in `[d/2, d]` where `d` doubles
    /// with each attempt up to the policy's maximum.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.retry.max_delay);
        let half = exp / 2;
        let jitter = crate::ids::random_u64() % (half.as_millis() as u64 + 1);
        half + Duration::from_millis(jitter)
    }
}

/// `Retry-After` in seconds (HTTP dates are rare here and treated as absent).
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Whether a transport error is worth another try: always when the request cannot have
/// reached the server, otherwise only for idempotent requests.
fn is_transient(e: &Error, idempotent: bool) -> bool {
    match e {
        Error::Transport {
            source: Some(s), ..
        } => s
            .downcast_ref::<Transient>()
            .is_some_and(|t| idempotent || !t.maybe_sent()),
        _ => false,
    }
}

/// A reply that is not HTTP at all (a NUL in a header, a garbled status line), still so
/// after the retries, is malformed data from the service (exit 65), not a network
/// failure.
fn not_http(e: Error) -> Error {
    match e {
        Error::Transport {
            source: Some(s), ..
        } if s
            .downcast_ref::<Transient>()
            .is_some_and(|t| matches!(t.0, ureq::Error::Protocol(_))) =>
        {
            Error::malformed("reply", format!("it is not valid HTTP ({s})"))
        }
        other => other,
    }
}

/// Marks a transport error worth retrying.
#[derive(Debug)]
struct Transient(ureq::Error);

impl Transient {
    /// Whether the server may have received the request before it failed.
    fn maybe_sent(&self) -> bool {
        use ureq::Error as U;
        use ureq::Timeout as T;
        !matches!(
            self.0,
            U::HostNotFound | U::ConnectionFailed | U::Timeout(T::Connect | T::Resolve)
        )
    }
}

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Transient {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

fn transport_error(url: &str, proxy: Option<&str>, e: ureq::Error) -> Error {
    use TransportKind as K;
    use ureq::Error as U;
    // Whatever the variant, the text of a TLS failure names its cause.
    let text = format!("{e}");
    let untrusted = text.contains("UnknownIssuer") || text.contains("unknown issuer");
    let (kind, message, transient) = match (&e, proxy) {
        _ if untrusted => (
            K::UntrustedCertificate,
            "TLS failed: the server's certificate is not signed by a trusted certificate \
             authority"
                .to_owned(),
            false,
        ),
        (U::ConnectProxyFailed(why), Some(p)) => (
            K::Proxy,
            format!("the proxy {p} did not open a tunnel: {}", why.trim()),
            false,
        ),
        (U::HostNotFound, Some(p)) => (K::Proxy, format!("proxy {p}: host not found"), true),
        (U::ConnectionFailed | U::Timeout(ureq::Timeout::Connect), Some(p)) => {
            (K::Proxy, format!("cannot connect to the proxy {p}"), true)
        }
        (U::Io(io), Some(p)) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            (K::Proxy, format!("cannot connect to the proxy {p}"), true)
        }
        (U::Io(io), None) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            (K::Connect, "cannot connect".to_owned(), true)
        }
        // std's resolver reports a name that does not resolve as an I/O error.
        (U::Io(_), None) if text.contains("failed to lookup address") => {
            (K::Dns, "host not found".to_owned(), true)
        }
        (U::Io(_), Some(p)) if text.contains("failed to lookup address") => {
            (K::Proxy, format!("proxy {p}: host not found"), true)
        }
        (U::Timeout(_), _) => (K::Timeout, "no answer in time".to_owned(), true),
        (U::HostNotFound, None) => (K::Dns, "host not found".to_owned(), true),
        (U::ConnectionFailed, None) => (K::Connect, "cannot connect".to_owned(), true),
        (U::Io(_), _) if text.contains("certificate") || text.contains("TLS") => {
            (K::Tls, format!("TLS failed: {text}"), false)
        }
        (U::Io(_), _) => (K::Broken, "connection failed".to_owned(), true),
        (U::Protocol(_), _) => (K::Broken, "HTTP protocol error".to_owned(), true),
        (U::BadUri(u), _) => (K::Other, format!("invalid URL: {}", redact_url(u)), false),
        (U::Tls(_) | U::Rustls(_) | U::Pem(_), _) => (K::Tls, format!("TLS failed: {text}"), false),
        (U::ConnectProxyFailed(why), None) => (K::Proxy, format!("proxy: {why}"), false),
        (U::InvalidProxyUrl, _) => (K::Proxy, "invalid proxy URL".to_owned(), false),
        _ => (K::Other, "request failed".to_owned(), false),
    };
    let source: Option<Box<dyn std::error::Error + Send + Sync>> = match e {
        // Its text would repeat the URL, signature included.
        U::BadUri(_) => None,
        e if transient => Some(Box::new(Transient(e))),
        e => Some(Box::new(e)),
    };
    Error::Transport {
        url: url.to_owned(),
        kind,
        message,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
