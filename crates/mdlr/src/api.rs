//! The client: signing in, the authenticated call, paging, actions and result links,
//! and waiting. One method per API call; the other service modules (`actions`,
//! `machines`, `library`) add theirs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
use crate::quota_file::Section;
use crate::secret::{Redactor, redact_url};

/// Largest API JSON reply accepted (a list of 10 000 actions fits).
const DEFAULT_JSON_LIMIT: u64 = 64 << 20;
/// Largest RunScript transcript read into memory.
const DEFAULT_TRANSCRIPT_LIMIT: u64 = 256 << 20;

/// How often to look at an unfinished action: [`Client::wait_for`] and a batch
/// ([`BatchOptions::poll`](crate::BatchOptions::poll)).
///
/// Looks never come closer together than `first`, nor further apart than `max` unless
/// the quotas need the room for starts and result links. In between:
///
/// - [`Client::wait_for`] looks at once, then after `first`, then half as long again
///   each time up to `max`: it does not know what else the program will spend the
///   quotas on, so it takes little.
/// - A batch knows what it still has to spend: it looks at a fresh action `first` after
///   its start, and then as often as the API budget its starts and result links leave
///   allows ([`Client::poll_interval`]), and at least once a minute: every `first`
///   while few actions are left, every 15–20 s while a thousand machines wait to start.
///
/// The default is `first` 1 s, `max` 5 s. The service shows an action's commands a few
/// seconds after its start, and ends it within seconds of its last command's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollPolicy {
    /// The first look at a fresh action comes this long after its start (after the
    /// immediate one, for [`Client::wait_for`]); no two looks come closer together.
    pub first: Duration,
    /// The longest interval between two looks, unless the quotas need the room.
    pub max: Duration,
}

impl PollPolicy {
    /// Looks at an action `first` after its start, then at least every `max`.
    pub fn new(first: Duration, max: Duration) -> PollPolicy {
        PollPolicy { first, max }
    }
}

impl Default for PollPolicy {
    fn default() -> PollPolicy {
        PollPolicy {
            first: Duration::from_secs(1),
            max: Duration::from_secs(5),
        }
    }
}

/// What a poller still has to spend API calls on besides its looks, for
/// [`Client::poll_interval`]: the room its looks must leave in every quota.
///
/// ```
/// use std::time::Duration;
/// use mdlr::PollPlan;
///
/// // One list query a round, for at most 15 more minutes; 40 machines still to start,
/// // one result each; 12 results of started actions still to fetch.
/// let plan = PollPlan::new(1, Duration::from_secs(900)).starts(40, 1).links(12);
/// # let _ = plan;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollPlan {
    /// API calls one round of looks takes (a batch: one list query per 25 actions, or
    /// one per action once [`Client::lists_one_at_a_time`]).
    pub round_calls: usize,
    /// How much longer the looks may go on: until the last wait runs out.
    pub horizon: Duration,
    /// Live response sessions still to start.
    pub starts: usize,
    /// Result links each of those sessions will need.
    pub links_per_start: usize,
    /// Result links still to ask for, for actions already started.
    pub links: usize,
}

impl PollPlan {
    /// Rounds of `round_calls` calls for at most `horizon`, and nothing else to spend.
    pub fn new(round_calls: usize, horizon: Duration) -> PollPlan {
        PollPlan {
            round_calls,
            horizon,
            starts: 0,
            links_per_start: 0,
            links: 0,
        }
    }

    /// `n` sessions still to start, each needing `links_each` result links.
    pub fn starts(mut self, n: usize, links_each: usize) -> Self {
        self.starts = n;
        self.links_per_start = links_each;
        self
    }

    /// `n` result links still to ask for, for actions already started.
    pub fn links(mut self, n: usize) -> Self {
        self.links = n;
        self
    }
}

/// Points ahead, in eighths of each quota's window, at which [`budget_interval`] checks
/// that the calls fit.
const HORIZON_STEPS: u32 = 8;

/// The shortest interval between rounds of looks such that, at every point up to one
/// window ahead, each API quota's window holds the calls already in it that stay there
/// (`recent`), the plan's starts (as fast as the start quotas allow) and links, a
/// twentieth of the quota for lookups and retries, and the rounds of looks: that is,
/// the looks never make a start or a link wait. `None` when the quotas have no room
/// for looks at all.
fn budget_interval(
    api: &[RateLimit],
    starts: &[RateLimit],
    recent: &dyn Fn(Duration) -> usize,
    plan: &PollPlan,
) -> Option<Duration> {
    if plan.horizon.is_zero() {
        return Some(Duration::ZERO);
    }
    let round = plan.round_calls.max(1) as f64;
    let mut shortest = 0.0_f64;
    for limit in api.iter().filter(|l| l.calls > 0 && !l.per.is_zero()) {
        let calls = f64::from(limit.calls);
        let reserve = (calls / 20.0).ceil();
        for step in 1..=HORIZON_STEPS {
            let ahead = limit.per * step / HORIZON_STEPS;
            // Calls made already that the window ending `ahead` from now still holds.
            let held = recent(limit.per - ahead) as f64;
            let started = plan.starts.min(starts_within(starts, ahead)) as f64;
            let need =
                held + started * (1 + plan.links_per_start) as f64 + plan.links as f64 + reserve;
            // Room for the rounds after the one going out now.
            let room = calls - need - round;
            if room <= 0.0 {
                return None;
            }
            let looking = ahead.min(plan.horizon).as_secs_f64();
            shortest = shortest.max(round * looking / room);
        }
    }
    Some(Duration::from_secs_f64(shortest))
}

/// The most session starts the start quotas let through in a span of `span`.
fn starts_within(starts: &[RateLimit], span: Duration) -> usize {
    starts
        .iter()
        .filter(|l| l.calls > 0 && !l.per.is_zero())
        .map(|l| {
            let windows = (span.as_secs_f64() / l.per.as_secs_f64()).ceil().max(1.0);
            l.calls as usize * windows as usize
        })
        .min()
        .unwrap_or(usize::MAX)
}

/// Looks at an action that answers 404 before the 404 is believed ([`Client::wait_for`]):
/// a new action may not be found for its first seconds.
const NEW_ACTION_404_LOOKS: u32 = 3;

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
    shared_quotas: Option<SharedQuotas>,
}

/// Where the quota state shared with other processes is.
enum SharedQuotas {
    /// This file.
    File(PathBuf),
    /// A file in this directory named by the quota's owner.
    In(PathBuf),
}

/// The name of the shared quota file in a directory, for `api_base` and `credential`:
/// `quota-` and 16 hex digits of a SHA-256 of the API host and whose quotas the calls
/// count against ([`Credential::quota_identity`]).
fn shared_quota_name(api_base: &str, credential: &Credential) -> String {
    let base = api_base.trim().trim_end_matches('/').to_ascii_lowercase();
    let who = credential.quota_identity();
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{base}\n{who}").as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("quota-{hex}.json")
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

    /// Keeps the quotas together with every other client — in this process or another —
    /// given the same file: each call waits until it fits in every quota window with
    /// the calls of all of them, as clones of one client do with each other. Off by
    /// default: the service counts calls per application and tenant, whichever process
    /// makes them, but an embedder may coordinate its workers already.
    ///
    /// The file is small JSON: for each quota (API calls, session starts, package
    /// links), when recent calls' replies arrived and which calls are under way, in
    /// wall-clock milliseconds. It is rewritten whole (through `PATH.tmp` and a rename)
    /// under an advisory lock on `PATH.lock`, which the system drops when its holder
    /// dies; a state that does not parse is started anew, a call under way whose process
    /// died stops counting as under way after two minutes, and a file that cannot be
    /// used (or a lock not had within 10 s) lets calls go by this client's own limiter
    /// while [`Event::SharedQuotas`] says so. Files are created readable by the user
    /// only; the directory must exist.
    ///
    /// Each client keeps to its own quotas counting the calls of all: one given smaller
    /// quotas waits for the room the others leave it. A finished call stays in the file
    /// for the longest window of the clients that used it within that window. The calls
    /// of processes that do not share the file (on other hosts, of other users) are not
    /// counted.
    /// [`build`](Self::build) fails when the lock file cannot be created.
    pub fn shared_quotas(mut self, path: impl Into<PathBuf>) -> Self {
        self.shared_quotas = Some(SharedQuotas::File(path.into()));
        self
    }

    /// [`shared_quotas`](Self::shared_quotas) with a file in `dir` named for the API
    /// host and for the tenant and application the credential signs in as, so that
    /// clients whose calls count against the same quotas share one:
    /// `quota-HHHHHHHHHHHHHHHH.json`, the 16 hex digits from a SHA-256 of them.
    ///
    /// It is known without signing in: the tenant and client id of an app registration
    /// or a kept login; a bearer token's `tid` and `appid` (or `azp`) claims. Where they
    /// are not (managed identity: its client id or the system identity; the Azure CLI:
    /// the tenant asked for, if any; a token without those claims), credentials of that
    /// kind on that host share a file, which is safe, only slower if they in fact count
    /// against different quotas. A tenant written as a domain name and the same tenant
    /// written as its id do not meet.
    pub fn shared_quotas_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.shared_quotas = Some(SharedQuotas::In(dir.into()));
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
        let mut http = Http::new(&self.transport, self.rate_limits, redactor.clone())?;
        let mut start_limiter = RateLimiter::new(self.start_limits);
        let mut package_limiter = RateLimiter::new(self.package_limits);
        let shared_path = match self.shared_quotas {
            Some(SharedQuotas::File(path)) => Some(path),
            Some(SharedQuotas::In(dir)) => Some(dir.join(shared_quota_name(
                &self.endpoints.api_base,
                &self.credential,
            ))),
            None => None,
        };
        if let Some(path) = &shared_path {
            let file = http.share_quotas(path.clone())?;
            start_limiter.share(file.clone(), Section::Starts);
            package_limiter.share(file, Section::Packages);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints: self.endpoints,
                auth: TokenCache::new(self.credential, &redactor),
                start_limiter,
                package_limiter,
                shared_path,
                http,
                json_limit: self.json_limit,
                transcript_limit: self.transcript_limit,
                renew_links_before: self.renew_links_before,
                one_at_a_time: AtomicBool::new(false),
            }),
        })
    }
}

struct Inner {
    endpoints: Endpoints,
    auth: TokenCache,
    start_limiter: RateLimiter,
    package_limiter: RateLimiter,
    shared_path: Option<PathBuf>,
    http: Http,
    json_limit: u64,
    transcript_limit: u64,
    renew_links_before: Option<Duration>,
    /// The service refused a list query asking for several ids or names at once: lists
    /// ask for one at a time from then on.
    one_at_a_time: AtomicBool,
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

/// Most pages one list call follows: 100 pages hold 100 000 items at 1000 a page (a
/// million at the 10 000 the documentation allows), and a service handing out link
/// after link costs at most a minute's quota before the list is refused.
pub(crate) const MAX_PAGES: usize = 100;

/// What a 404 to a list query means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotFound {
    /// Nothing matched: an empty list (or, on a later page, the end of it).
    Empty,
    /// An error, as for any other call.
    Error,
}

/// A list item's id, by which [`Client::get_list`] drops an item a later page repeats.
pub(crate) trait Listed {
    /// The id, if the item has one.
    fn list_id(&self) -> Option<&str>;
}

impl Listed for MachineAction {
    fn list_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

impl Listed for crate::model::Machine {
    fn list_id(&self) -> Option<&str> {
        self.id.as_deref()
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
            shared_quotas: None,
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

    /// The file through which this client shares its quotas with other processes
    /// ([`ClientBuilder::shared_quotas`]), if it does.
    pub fn shared_quotas_path(&self) -> Option<&Path> {
        self.inner.shared_path.as_deref()
    }

    /// API calls this client and its clones made within the last `within`, calls under
    /// way included, as its limiter counts them: with [`Client::api_quotas`], how much
    /// room a quota's window has left. With [`ClientBuilder::shared_quotas`], the calls
    /// of every process sharing the file.
    pub fn recent_api_calls(&self, within: Duration) -> usize {
        self.inner.http.recent_calls(within)
    }

    /// Whether the service refused, during this client's life (or a clone's), a list
    /// query asking for several ids or names at once (an `or` in its `$filter`): lists
    /// then ask for one at a time, within the same quotas, so a round of looks at `n`
    /// actions takes `n` calls instead of one per 25 ([`PollPlan::round_calls`]).
    pub fn lists_one_at_a_time(&self) -> bool {
        self.inner.one_at_a_time.load(Ordering::Relaxed)
    }

    /// Notes that the service refused a list query with several alternatives: from now
    /// on lists ask for one item at a time, and the observer hears it once.
    pub(crate) fn go_one_at_a_time(&self) {
        if !self.inner.one_at_a_time.swap(true, Ordering::Relaxed) {
            self.inner.http.emit(Event::Fallback {
                message: "the service refuses list queries asking for several items at \
                          once (400 to an `or` filter); asking for one at a time from now on"
                    .to_owned(),
            });
        }
    }

    /// The shortest interval between rounds of looks at unfinished actions that leaves
    /// every API quota room for what `plan` still has to spend: its starts (as fast as
    /// the start quotas allow) and result links, and a twentieth of each quota for name
    /// lookups and retries, counting the calls made recently ([`recent_api_calls`]).
    /// Looks at that pace never make a start or a link wait at the limiter.
    ///
    /// Never longer than the shortest quota window (a minute): one round a minute comes
    /// out of the twentieth kept back, and no result waits longer to be seen. Zero
    /// without API quotas. With the default quotas, one query a round and nothing else
    /// to spend, it is about 0.65 s; with 1000 machines still to start, about 17 s
    /// (their starts and links take 1200 of the 1500 calls an hour).
    ///
    /// [`recent_api_calls`]: Client::recent_api_calls
    pub fn poll_interval(&self, plan: &PollPlan) -> Duration {
        let longest = self.api_quotas().iter().map(|l| l.per).min();
        let budget = budget_interval(
            self.api_quotas(),
            self.start_quotas(),
            &|within| self.recent_api_calls(within),
            plan,
        );
        match (budget, longest) {
            (Some(b), Some(cap)) => b.min(cap),
            (None, Some(cap)) => cap,
            (budget, None) => budget.unwrap_or_default(),
        }
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
    /// start and API quotas: the next starts then keep to the quotas with them. They
    /// count in this client's own limiter only: a process that shared a quota file
    /// ([`ClientBuilder::shared_quotas`]) recorded its calls there already.
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
    /// last state seen.
    ///
    /// The first look is immediate, the second `poll.first` later, and each interval
    /// after that half as long again, up to `poll.max`. No interval is shorter than
    /// [`Client::poll_interval`] allows for one action whose result is still to fetch:
    /// when other threads spend the quotas, the looks slow down. Several threads may
    /// wait at once: the limiter, shared by every clone of the client, holds all their
    /// calls together to the quotas.
    pub fn wait_for(
        &self,
        action_id: &str,
        timeout: Duration,
        poll: PollPolicy,
        mut done: impl FnMut(&MachineAction) -> bool,
    ) -> Result<MachineAction> {
        let deadline = Instant::now() + timeout;
        let mut interval = poll.first;
        // An action just created may answer 404 for a few seconds: believe it only
        // after a few looks, and only before it was ever seen.
        let mut unseen = 0;
        let mut seen = false;
        loop {
            let action = match self.action(action_id) {
                Ok(a) => a,
                Err(e @ Error::Api { status: 404, .. }) if !seen => {
                    unseen += 1;
                    if unseen > NEW_ACTION_404_LOOKS || Instant::now() >= deadline {
                        return Err(e);
                    }
                    std::thread::sleep(
                        interval.min(deadline.saturating_duration_since(Instant::now())),
                    );
                    interval = (interval + interval / 2).min(poll.max.max(poll.first));
                    continue;
                }
                Err(e) => return Err(e),
            };
            seen = true;
            let now = Instant::now();
            if done(&action) || now >= deadline {
                return Ok(action);
            }
            let left = deadline - now;
            let budget = self.poll_interval(&PollPlan::new(1, left).links(1));
            let wait = budget.max(interval);
            std::thread::sleep(wait.min(left));
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

    /// GETs a list and follows `@odata.nextLink` up to `max` items, de-duplicated by id
    /// (the first of each is kept).
    ///
    /// A list can end oddly; each way is taken as the end of the list, or refused:
    ///
    /// - an empty page ends it, whatever link it carries;
    /// - a link seen before ends it (no loop);
    /// - a link to another host is refused: the bearer token goes to the API host only;
    /// - a link that drops or changes the query's `$filter` is refused: it would list
    ///   what was not asked for;
    /// - past [`MAX_PAGES`] pages the list is refused rather than followed on;
    /// - a 404 ends it when `not_found` says an empty list may come as one (a first
    ///   page's 404 is an empty list).
    pub(crate) fn get_list<T: DeserializeOwned + Listed>(
        &self,
        path: &str,
        what: &str,
        max: usize,
        not_found: NotFound,
    ) -> Result<Vec<T>> {
        let prefix = self.inner.endpoints.api_url("");
        let mut url = self.inner.endpoints.api_url(path);
        let filter = crate::odata::filter_of(&url);
        let mut visited = HashSet::from([url.clone()]);
        let mut ids = HashSet::new();
        let mut items = Vec::new();
        for pages in 1.. {
            let page: Page<T> = match self.call(&ApiCall::get(url)) {
                Ok(resp) => self.read_json(resp, what)?,
                Err(Error::Api { status: 404, .. }) if not_found == NotFound::Empty => break,
                Err(e) => return Err(e),
            };
            let values = page.value.unwrap_or_default();
            if values.is_empty() {
                break;
            }
            for item in values {
                let fresh = item
                    .list_id()
                    .is_none_or(|id| ids.insert(id.to_ascii_lowercase()));
                if fresh {
                    items.push(item);
                }
            }
            let Some(next) = page.next_link else {
                break;
            };
            if items.len() >= max {
                break;
            }
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
            if filter.is_some() && crate::odata::filter_of(&next) != filter {
                return Err(Error::malformed(
                    what,
                    format!(
                        "its next page drops the query's $filter: {}",
                        redact_url(&next)
                    ),
                ));
            }
            if !visited.insert(next.clone()) {
                break;
            }
            if pages >= MAX_PAGES {
                return Err(Error::malformed(
                    what,
                    format!("it goes on for more than {MAX_PAGES} pages"),
                ));
            }
            url = next;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// `budget_interval` with the default quotas and `calls` made at these many
    /// seconds ago.
    fn interval(calls_ago: &[f64], plan: &PollPlan) -> Option<f64> {
        let recent = |within: Duration| {
            calls_ago
                .iter()
                .filter(|a| **a < within.as_secs_f64())
                .count()
        };
        budget_interval(
            &RateLimit::defaults(),
            &RateLimit::start_defaults(),
            &recent,
            plan,
        )
        .map(|d| d.as_secs_f64())
    }

    /// Clients whose calls count against one application on one tenant, on one API
    /// host, meet in one file, whatever their credential; others do not.
    #[test]
    fn shared_quota_files_are_named_by_host_tenant_and_app() {
        use crate::encode::base64url;
        use crate::secret::Secret;
        let api = "https://api.security.microsoft.com";
        let jwt = |claims: &str| {
            Credential::token(Secret::new(format!(
                "{}.{}.sig",
                base64url(br#"{"alg":"RS256"}"#),
                base64url(claims.as_bytes())
            )))
        };
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let secret = Credential::client_secret(tenant, "app-1", Secret::new("s"));
        let name = shared_quota_name(api, &secret);
        assert!(
            name.starts_with("quota-") && name.ends_with(".json"),
            "{name}"
        );
        assert_eq!(name.len(), "quota-.json".len() + 16);
        let same = [
            shared_quota_name(&format!("{api}/"), &secret),
            shared_quota_name(
                api,
                &jwt(&format!(r#"{{"tid":"{tenant}","appid":"APP-1"}}"#)),
            ),
            shared_quota_name(api, &jwt(&format!(r#"{{"tid":"{tenant}","azp":"app-1"}}"#))),
        ];
        assert!(same.iter().all(|n| *n == name), "{same:?}");
        let other = [
            shared_quota_name("https://eu.api.security.microsoft.com", &secret),
            shared_quota_name(
                api,
                &Credential::client_secret(tenant, "app-2", Secret::new("s")),
            ),
            shared_quota_name(api, &jwt(r#"{"tid":"other","appid":"app-1"}"#)),
            shared_quota_name(api, &jwt(r#"{"appid":"app-1"}"#)),
        ];
        assert!(other.iter().all(|n| *n != name), "{other:?}");
        // Tokens that say nothing of their app share with one another.
        assert_eq!(
            shared_quota_name(api, &Credential::token(Secret::new("opaque-1"))),
            shared_quota_name(api, &Credential::token(Secret::new("opaque-2")))
        );
    }

    #[test]
    fn few_actions_left_may_be_looked_at_every_second() {
        // One action, nothing else to spend, 15 minutes to wait: the minute's 100
        // calls bind (less 5 kept back and the link), about one round every 0.65 s.
        let one = PollPlan::new(1, secs(900.0)).links(1);
        let i = interval(&[], &one).unwrap_or(f64::NAN);
        assert!((0.6..0.7).contains(&i), "{i}");
        // 80 calls in the last 40 s leave about 15 places in the next 20 s.
        let busy: Vec<f64> = (0..80).map(|k| f64::from(k) * 0.5).collect();
        let i = interval(&busy, &one).unwrap_or(f64::NAN);
        assert!((1.0..1.5).contains(&i), "{i}");
        // No quotas: no limit.
        let none = budget_interval(&[], &[], &|_| 0, &one);
        assert_eq!(none, Some(Duration::ZERO));
        // Nothing left to wait for.
        assert_eq!(
            interval(&busy, &PollPlan::new(1, Duration::ZERO)),
            Some(0.0)
        );
    }

    #[test]
    fn many_machines_to_start_leave_polls_what_the_hour_spares() {
        // 1000 machines to start, one link each: 600 starts and 600 links an hour, 75
        // calls kept back; 225 left for rounds, one every 16 s or so.
        let plan = PollPlan::new(1, secs(7000.0)).starts(1000, 1);
        let i = interval(&[], &plan).unwrap_or(f64::NAN);
        assert!((15.0..19.0).contains(&i), "{i}");
        // 200 machines (20 minutes of starts, 15 of waiting): about 2 s.
        let plan = PollPlan::new(1, secs(1200.0 + 900.0)).starts(200, 1);
        let i = interval(&[], &plan).unwrap_or(f64::NAN);
        assert!((1.5..2.5).contains(&i), "{i}");
        // An hour's window full of calls: no room for looks just now.
        let full: Vec<f64> = (0..1450).map(|k| f64::from(k) * 2.0).collect();
        assert_eq!(interval(&full, &plan), None);
    }

    /// A batch of 1000 machines on the default quotas, played on a clock of its own:
    /// starts as the start quota and 25 at once allow, 30 s actions, one link each when
    /// a round sees an action ended, rounds as [`Client::poll_interval`] paces them (at
    /// least 1 s, at most 60 s apart). No call
    /// waits for the limiter: every window of every quota holds no more than it allows,
    /// so the looks never hold up a start or a link, and the starts keep to the start
    /// quota's schedule.
    #[test]
    fn a_thousand_machines_keep_inside_the_quotas_without_the_limiter() {
        let (n, run, wait, first) = (1000_usize, 30.0, 900.0, 1.0);
        let quotas = RateLimit::defaults();
        let start_quota = RateLimit::start_defaults();
        // 50 name lookups just before the batch.
        let mut calls: Vec<f64> = vec![0.0; 50];
        let mut starts: Vec<f64> = Vec::new();
        let mut running: Vec<(f64, f64)> = Vec::new(); // (start, end)
        let mut last_round = 0.0_f64;
        let mut next_round = first;
        let mut gaps: Vec<(usize, f64)> = Vec::new(); // (machines left, gap)
        let mut reported = 0;
        let mut t = 0.0_f64;
        while reported < n {
            // The next start the start quota and the 25 at once allow.
            let next_start = (starts.len() < n && running.len() < 25).then(|| {
                let k = starts.len();
                let mut at = t;
                if k >= 10 {
                    at = at.max(starts[k - 10] + 60.0);
                }
                at
            });
            match next_start {
                Some(at) if at <= next_round => {
                    t = at;
                    starts.push(t);
                    calls.push(t);
                    running.push((t, t + run));
                }
                _ => {
                    t = next_round;
                    calls.push(t);
                    let (ended, still): (Vec<_>, Vec<_>) =
                        running.iter().partition(|(_, end)| *end <= t);
                    running = still;
                    for _ in &ended {
                        calls.push(t);
                    }
                    reported += ended.len();
                    let to_start = n - starts.len();
                    let horizon = if to_start > 0 {
                        (to_start as f64 / 10.0).ceil() * 60.0 + wait
                    } else {
                        running
                            .iter()
                            .map(|(s, _)| s + wait - t)
                            .fold(0.0, f64::max)
                    };
                    let plan = PollPlan::new(1, secs(horizon))
                        .starts(to_start, 1)
                        .links(running.len());
                    let recent = |within: Duration| {
                        calls
                            .iter()
                            .filter(|c| t - **c < within.as_secs_f64())
                            .count()
                    };
                    let budget = budget_interval(&quotas, &start_quota, &recent, &plan)
                        .map_or(60.0, |d| d.as_secs_f64().min(60.0));
                    if t > first {
                        gaps.push((n - reported, t - last_round));
                    }
                    last_round = t;
                    next_round = t + budget.max(first);
                }
            }
        }
        calls.sort_by(f64::total_cmp);
        eprintln!(
            "{} calls, {} rounds over {t:.0} s",
            calls.len(),
            gaps.len() + 1
        );
        for limit in &quotas {
            let w = limit.per.as_secs_f64();
            let (mut lo, mut busiest) = (0, 0);
            for hi in 0..calls.len() {
                while calls[hi] - calls[lo] >= w {
                    lo += 1;
                }
                busiest = busiest.max(hi + 1 - lo);
                assert!(
                    hi + 1 - lo <= limit.calls as usize,
                    "{} calls in the {w} s before {:.0} s",
                    hi + 1 - lo,
                    calls[hi]
                );
            }
            eprintln!("busiest {w} s: {busiest} calls");
        }
        // The starts went out as the start quota allowed: the 1000th after 99 minutes.
        let last = starts.last().copied().unwrap_or(f64::NAN);
        assert!((5940.0..5941.0).contains(&last), "last start at {last}");
        // Rounds while hundreds wait to start: every 15 s or so. Among the last few
        // actions, far more often, though not every second: the hour's window still
        // holds most of the batch's calls.
        let median = |gaps: Vec<f64>| gaps.get(gaps.len() / 2).copied().unwrap_or(f64::NAN);
        let steady = median(gaps.iter().filter(|g| g.0 > 500).map(|g| g.1).collect());
        assert!((12.0..25.0).contains(&steady), "median gap {steady} s");
        eprintln!("median gap with over 500 machines left: {steady:.1} s");
        let tail: Vec<f64> = gaps.iter().filter(|g| g.0 <= 3).map(|g| g.1).collect();
        assert!(
            tail.iter().all(|g| *g <= 5.0),
            "gaps among the last actions: {tail:?}"
        );
    }
}
