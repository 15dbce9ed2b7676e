//! A local simulator of the Defender for Endpoint live response service (SPEC part A),
//! with time scaled down so tests and benchmarks of hours of service time take seconds.
//!
//! [`Simulator::start`] serves on `127.0.0.1:0`, on one port:
//!
//! | path | what |
//! |---|---|
//! | `POST /{tenant}/oauth2/v2.0/token` | a token endpoint answering [`SimConfig::token`] |
//! | `/api/...` | the API of SPEC A2 (bearer token required) |
//! | `GET /blob/...` | the result host behind the SAS links (no `Authorization` allowed) |
//!
//! # Time
//!
//! Every duration in [`SimConfig`] and [`SimMachine`] is **service time**. One service
//! second lasts [`SimConfig::time_scale`] real seconds: with `time_scale = 0.01` the
//! 60 s quota window lasts 0.6 s, a 20 s command 0.2 s, a 30 min link 18 s.
//! Timestamps in replies (`creationDateTimeUtc`, `se=`, ...) are service time too: the
//! wall clock at start plus the elapsed service time. [`Simulator::real`] and
//! [`Simulator::service`] convert.
//!
//! A `429` carries `Retry-After` in whole **real** seconds, rounded up, and only when
//! that is at least one second (a scaled wait is often a few milliseconds, and `0` would
//! mean "now"); it always carries **`x-sim-retry-after-ms`**, the exact real wait in
//! milliseconds (rounded up), and `x-sim-quota` naming the [`QuotaKind`]. Tests and
//! clients that know they talk to the simulator can use them.
//!
//! # Quotas
//!
//! All over the simulator (one app in one tenant), sliding windows:
//! [`SimConfig::api_per_minute`] (100 / 60 s) and [`SimConfig::api_per_hour`]
//! (1500 / 3600 s) over every authenticated `/api/` request, and
//! [`SimConfig::starts_per_minute`] (10 / 60 s) over `runliveresponse` calls. A request
//! over a quota gets `429 TooManyRequests` and counts against nothing. Requests without
//! a valid token (`401`) count against nothing either. Every other `/api/` request
//! counts, whatever its status; a `runliveresponse` refused with a 4xx other than 429
//! counts against the start quota too unless [`SimConfig::count_rejected_starts`] is
//! off.
//!
//! # Live response actions
//!
//! One non-terminal action per machine (`400 ActiveRequestAlreadyExists`), and at most
//! [`SimConfig::max_concurrent`] non-terminal actions in all (`Pending` counts). Over
//! that limit the simulator answers **`429 TooManyRequests`** with the message "Maximum
//! number of concurrent live response sessions reached" (the real reply is not
//! documented), `Retry-After` set to when the next action ends, and the call counts
//! against nothing.
//!
//! An action is `Pending` for `pending_for`, then `InProgress` while its commands run
//! one after the other, **`run_for` each** (per command, not per action), then ends with
//! its machine's [`Outcome`]. Its `commands` list is empty while it is `Pending`, as the
//! real service's is for the first seconds. See [`Outcome`] for each ending.
//!
//! # Results
//!
//! `GetLiveResponseResultDownloadLink(index=N)` answers a link to `/blob/...` on this
//! server once command N is `Completed` (`400 BadRequest` before, or for a `PutFile`;
//! `404 ResourceNotFound` for an index the action does not have). Links last
//! [`SimConfig::link_ttl`]; an expired, unknown or altered one gets `403` with
//! `x-ms-error-code: AuthenticationFailed` and an XML body. The result host refuses any
//! `Authorization` header (`400 InvalidAuthenticationInfo`), serves `Range: bytes=`
//! (`206`, `416` past the end) and counts against no API quota.
//!
//! # Investigation packages
//!
//! `POST /api/machines/{id}/collectInvestigationPackage` (body `{"Comment": ...}`)
//! starts an action of type `CollectInvestigationPackage` with no commands: `Pending`
//! for `pending_for`, `InProgress` for [`SimConfig::package_for`], then its machine's
//! [`Outcome`] (a `Failed` one fails it). A collection already running on the machine
//! gets `400 ActiveRequestAlreadyExists`; live response sessions neither block it nor
//! count it toward their concurrency limit, nor does it count against the start quota.
//! `GET /api/machineactions/{id}/GetPackageUri` answers `{"value": link}` once the
//! action has `Succeeded` (`400 BadRequest` before, or for an action of another type);
//! besides the API quotas it has its own, [`SimConfig::package_links_per_minute`] (2 /
//! 60 s) and [`SimConfig::package_links_per_hour`] (120 / 3600 s), over every call. The
//! link serves [`SimMachine::package`], a zip, with no `Content-Disposition`.
//!
//! # What field reports show the real service doing (issue 13)
//!
//! Off by default, each turned on by a setting: a session opened in the portal that
//! makes a machine busy with no action to be seen ([`SimMachine::portal_session_for`]);
//! starts throttled past a client's retries ([`SimConfig::refuse_first_starts`]); new
//! actions not found for a moment ([`SimConfig::new_action_404_for`]); result links
//! refused just after their command completed ([`SimConfig::link_lag`]); GetFile
//! results that are not gzip ([`SimMachine::plain_getfile`]); machines long unseen
//! ([`SimMachine::last_seen_ago`], with `pending_for` as long as the service's queue
//! for offline machines).
//!
//! # Choices where the real service is undocumented
//!
//! - Over the concurrency limit: `429 TooManyRequests` (see above), not a `400`.
//! - Refused starts (`400`, `404`) count against the start quota; `401`s and `429`s
//!   count against nothing.
//! - Commands run one after the other, `run_for` each. `TimeOut` hangs the first
//!   `RunScript`; a command still running when an action ends stays `Created` (with its
//!   `startTime`), as do the ones that never started (without).
//! - Cancelling an ended action: `400 BadRequest`; without `Comment`:
//!   `400 MissingRequiredParameter`. The API cancel is immediate.
//! - Result link of a `Pending` action, an unfinished or failed command or a `PutFile`:
//!   `400 BadRequest`; an index past the commands: `404 ResourceNotFound`; a
//!   percent-encoded `(index=N)`: `404`. Every link call signs a fresh link; older ones
//!   work until they expire.
//! - Lists come oldest first. `$top` over 10 000 or not a number, a malformed `$filter`
//!   or one naming a property not filterable: `400 ODataError`. `eq`/`ne`/`in` compare
//!   text case-insensitively. Filterable: actions `id`, `status`, `machineId`, `type`,
//!   `requestor`, `creationDateTimeUtc`; machines `id`, `computerDnsName`,
//!   `healthStatus`, `osPlatform`, `lastSeen` and a few more.
//! - Stricter services, each off by default: [`SimConfig::refuse_or_filters`] answers a
//!   `$filter` with `or` `400 ODataError` with ASP.NET OData's message for a logical
//!   operator not allowed; [`SimConfig::empty_action_list_as_404`] answers an action
//!   list matching nothing (its first page) `404 ResourceNotFound`, as machines lists
//!   do by default; [`SimConfig::list_without_commands`] leaves `commands` out of action
//!   list items. [`SimConfig::odd_paging`] ([`OddPaging`]) pages as field reports have
//!   it: pages smaller than `$top`, an empty second page whose link goes on, a page
//!   that gives its own link as the next, links without the `$filter`, pages that
//!   repeat the last item of the page before. The real service's page size and link
//!   format are undocumented: here a link is `{path}?$filter=..&$top=..&$skip=..`.
//! - A machine id that is not 40 hex characters: `400 InvalidInput` (upper case is
//!   accepted); an unknown one: `404 ResourceNotFound`. Body keys are case-sensitive
//!   (`Commands`, `Comment`, `type`, `params`, `key`, `value`).
//! - Library: file names compare case-insensitively; `Description` is required
//!   (`400 MissingRequiredParameter`); an existing name without `OverrideIfExists=true`:
//!   `400 BadRequest`; `sha256` is lowercase hex. An upload named with characters other
//!   than ASCII letters, digits, `-`, `_` and `.` (the documented set), or of a file over
//!   [`LIBRARY_UPLOAD_LIMIT`] (the documented "20MB", read as MiB): `400 BadRequest`,
//!   with a message saying the rule (the real replies are not documented).
//! - The token endpoint accepts any tenant and checks the secret only when
//!   [`SimConfig::client_secret`] is set.

mod filter;
mod multipart;
pub mod util;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::server::{Request, Response, Server, ServerConfig, parse_query, percent_decode};

/// Longest page of a list (`$top` ≤ this); also the page size without `$top`.
pub const MAX_TOP: usize = 10_000;

/// Largest file a library upload takes: 20 MiB.
pub const LIBRARY_UPLOAD_LIMIT: usize = 20 << 20;

/// A quota: at most `limit` calls in any sliding window of `window` (service time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Calls allowed in the window (`usize::MAX`: no limit).
    pub limit: usize,
    /// The window, in service time.
    pub window: Duration,
}

impl Quota {
    /// `limit` calls per `window` (service time).
    pub fn new(limit: usize, window: Duration) -> Quota {
        Quota { limit, window }
    }

    /// No limit.
    pub fn unlimited() -> Quota {
        Quota {
            limit: usize::MAX,
            window: Duration::from_secs(60),
        }
    }
}

/// Which limit a `429` enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuotaKind {
    /// [`SimConfig::api_per_minute`].
    ApiPerMinute,
    /// [`SimConfig::api_per_hour`].
    ApiPerHour,
    /// [`SimConfig::starts_per_minute`].
    StartsPerMinute,
    /// [`SimConfig::max_concurrent`].
    Concurrency,
    /// [`SimConfig::package_links_per_minute`].
    PackageLinksPerMinute,
    /// [`SimConfig::package_links_per_hour`].
    PackageLinksPerHour,
    /// [`SimConfig::refuse_first_starts`]: refusals of the scenario, not of a quota.
    Scenario,
}

/// How a machine's live response actions end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every command `Completed`; the action `Succeeded` after the last one.
    Succeeded,
    /// Commands before `command` complete; `command` (clamped to the last one) ends
    /// `Failed` with `errors`; the later ones stay `Created` without a start time. The
    /// action is `Failed` when that command ends.
    Failed {
        /// The index of the failing command.
        command: usize,
        /// Its `errors`.
        errors: Vec<String>,
    },
    /// The first `RunScript` (or command 0 when there is none) never finishes: commands
    /// before it complete, it stays `Created` with a start time, and the action turns
    /// `TimeOut` [`SimConfig::timeout_after`] after that command started.
    TimeOut,
    /// Somebody else cancels the action [`SimConfig::cancel_after`] after it left
    /// `Pending` (but at the latest halfway through its commands): commands finished by
    /// then stay `Completed`, the rest `Created`; `cancellationRequestor` and
    /// `cancellationComment` are set.
    Cancelled,
}

impl Outcome {
    /// `Failed` at `command` with a generic error.
    pub fn failed(command: usize) -> Outcome {
        Outcome::Failed {
            command,
            errors: vec!["The command failed on the machine (simulated).".to_owned()],
        }
    }

    fn status(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "Succeeded",
            Outcome::Failed { .. } => "Failed",
            Outcome::TimeOut => "TimeOut",
            Outcome::Cancelled => "Cancelled",
        }
    }
}

/// A simulated machine and the scenario of its live response actions.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMachine {
    /// The machine id: 40 lowercase hex characters.
    pub id: String,
    /// `computerDnsName`.
    pub dns_name: String,
    /// `osPlatform` (default `Windows11`).
    pub os_platform: String,
    /// `healthStatus` (default `Active`).
    pub health_status: String,
    /// How its actions end.
    pub outcome: Outcome,
    /// `script_output` of its RunScript transcripts; `None`: `"{dns_name}: {ScriptName}
    /// {Args}\n"` (without the space and args when there are none).
    pub script_output: Option<String>,
    /// `script_errors` of its transcripts.
    pub script_errors: String,
    /// `exit_code` of its transcripts.
    pub script_exit_code: i64,
    /// File contents GetFile collects, by path (compared case-insensitively); any other
    /// path gives `"{path} on {dns_name}\n"`.
    pub files: Vec<(String, Vec<u8>)>,
    /// Overrides [`SimConfig::pending_for`] for this machine.
    pub pending_for: Option<Duration>,
    /// Overrides [`SimConfig::run_for`] for this machine.
    pub run_for: Option<Duration>,
    /// `Some(d)`: somebody else's live response action (`RunScript other.ps1` by
    /// `analyst@contoso.test`) is `InProgress` on it when the simulator starts and
    /// `Succeeded` after `d`; it counts toward the concurrency limit.
    pub busy_for: Option<Duration>,
    /// `Some(d)`: somebody else's investigation package collection is `InProgress` on
    /// it when the simulator starts and `Succeeded` after `d`.
    pub collecting_for: Option<Duration>,
    /// Its GetFile results are served as the file is, not gzip (field reports show the
    /// service doing so now and then).
    pub plain_getfile: bool,
    /// `Some(d)`: a session opened in the portal holds it for `d` from the start: a
    /// start is refused as busy (`ActiveRequestAlreadyExists`) with no action of the
    /// machine's to be seen in the API.
    pub portal_session_for: Option<Duration>,
    /// How long ago the machines API says it was last seen (default: 5 to 15 minutes,
    /// by its number).
    pub last_seen_ago: Option<Duration>,
}

impl SimMachine {
    /// Machine number `n` (1-based): a deterministic id and `host{n:04}.contoso.test`,
    /// a `Succeeded` scenario, exit code 0.
    pub fn new(n: usize) -> SimMachine {
        SimMachine {
            id: util::hex40(n as u64),
            dns_name: format!("host{n:04}.contoso.test"),
            os_platform: "Windows11".to_owned(),
            health_status: "Active".to_owned(),
            outcome: Outcome::Succeeded,
            script_output: None,
            script_errors: String::new(),
            script_exit_code: 0,
            files: Vec::new(),
            pending_for: None,
            run_for: None,
            busy_for: None,
            collecting_for: None,
            plain_getfile: false,
            portal_session_for: None,
            last_seen_ago: None,
        }
    }

    /// Machines 1 to `n` ([`SimMachine::new`]).
    pub fn many(n: usize) -> Vec<SimMachine> {
        (1..=n).map(SimMachine::new).collect()
    }

    /// This machine with `outcome`.
    pub fn with_outcome(mut self, outcome: Outcome) -> SimMachine {
        self.outcome = outcome;
        self
    }

    /// The `script_output` its transcript of `script` with `args` holds.
    pub fn output_for(&self, script: &str, args: Option<&str>) -> String {
        match &self.script_output {
            Some(out) => out.clone(),
            None => match args {
                Some(a) if !a.is_empty() => format!("{}: {script} {a}\n", self.dns_name),
                _ => format!("{}: {script}\n", self.dns_name),
            },
        }
    }

    /// Its investigation package: a zip of a few text files that name the machine, one
    /// of them large enough (about 1.2 MiB, little of it compressible) for a download
    /// that takes several reads.
    pub fn package(&self) -> Vec<u8> {
        let name = &self.dns_name;
        let processes: String = (0..300)
            .map(|i| format!("{i},svchost.exe,{name}\r\n"))
            .collect();
        let seed = self
            .id
            .bytes()
            .fold(0x504b, |h, b| util::mix(h ^ u64::from(b)));
        let noise = util::noise(seed, 1_200_000);
        util::zip(&[
            (
                "README.txt",
                format!("Investigation package of {name}\r\n").into_bytes(),
            ),
            ("Processes/processes.csv", processes.into_bytes()),
            ("Prefetch files/prefetch.bin", noise),
        ])
    }

    /// What its GetFile of `path` collects.
    pub fn file_content(&self, path: &str) -> Vec<u8> {
        self.files
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(path))
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| format!("{path} on {}\n", self.dns_name).into_bytes())
    }
}

/// A file in the live response library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryFile {
    /// `fileName`.
    pub name: String,
    /// The bytes.
    pub content: Vec<u8>,
    /// `description`.
    pub description: String,
    /// `hasParameters`.
    pub has_parameters: bool,
    /// `parametersDescription`.
    pub parameters_description: Option<String>,
}

impl LibraryFile {
    /// A file with `name` and `content`, described as such, taking parameters.
    pub fn new(name: &str, content: &[u8]) -> LibraryFile {
        LibraryFile {
            name: name.to_owned(),
            content: content.to_vec(),
            description: format!("{name} (simulated)"),
            has_parameters: true,
            parameters_description: None,
        }
    }
}

/// Ways lists (`GET /api/machineactions`, `GET /api/machines`) page oddly, as field
/// reports have it; each applies only where a list has more than one page. The default
/// is none of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OddPaging {
    /// Pages hold at most this many items, whatever `$top` asks; the `@odata.nextLink`
    /// goes on from the items shown.
    pub page_size: Option<usize>,
    /// The second page comes empty, with a `@odata.nextLink` to the rest.
    pub empty_page: bool,
    /// Every page after the first gives its own link as `@odata.nextLink`.
    pub repeat_link: bool,
    /// `@odata.nextLink` leaves out the `$filter`.
    pub drop_filter: bool,
    /// Every page after the first begins with the last item of the page before.
    pub overlap: bool,
}

/// How the simulator behaves. Durations are **service time** (see the module docs).
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Real seconds per service second (default 1.0; tests use 0.01 or less).
    pub time_scale: f64,
    /// The bearer token `/api/` requires, and the token endpoint hands out.
    pub token: String,
    /// The tenant of [`Simulator::token_url`].
    pub tenant: String,
    /// `Some`: the token endpoint wants this `client_secret` (else `401 invalid_client`).
    pub client_secret: Option<String>,
    /// `requestor` of the actions started through the API.
    pub requestor: String,
    /// The machines, in order.
    pub machines: Vec<SimMachine>,
    /// The live response library at start (default: `x.ps1`).
    pub library: Vec<LibraryFile>,
    /// API calls per minute (default 100 / 60 s).
    pub api_per_minute: Quota,
    /// API calls per hour (default 1500 / 3600 s).
    pub api_per_hour: Quota,
    /// `runliveresponse` calls per minute (default 10 / 60 s).
    pub starts_per_minute: Quota,
    /// `GetPackageUri` calls per minute (default 2 / 60 s).
    pub package_links_per_minute: Quota,
    /// `GetPackageUri` calls per hour (default 120 / 3600 s).
    pub package_links_per_hour: Quota,
    /// How long an investigation package collection runs after `Pending` (default 60 s).
    pub package_for: Duration,
    /// Whether a start refused with a 4xx other than 429 counts against
    /// `starts_per_minute` (default true: the gateway counts calls, not successes).
    pub count_rejected_starts: bool,
    /// Non-terminal live response actions allowed at once, `Pending` included
    /// (default 50, as documented today; older pages said 25).
    pub max_concurrent: usize,
    /// How long an action stays `Pending` (default 10 s).
    pub pending_for: Duration,
    /// How long each command runs (default 20 s).
    pub run_for: Duration,
    /// How long a hung command runs before the action turns `TimeOut` (default 10 min,
    /// the documented RunScript limit).
    pub timeout_after: Duration,
    /// When the [`Outcome::Cancelled`] scenario cancels, after `Pending` (default 10 s).
    pub cancel_after: Duration,
    /// How long a result link works (default 30 min).
    pub link_ttl: Duration,
    /// `GET /api/machines?$filter=...` matching nothing answers `404 ResourceNotFound`
    /// instead of an empty list (default true, as the real service may).
    pub machines_not_found_as_404: bool,
    /// A list whose `$filter` has an `or` anywhere answers `400 ODataError` ("The
    /// logical operator 'Or' is not allowed"), as a stricter service does (default
    /// false).
    pub refuse_or_filters: bool,
    /// Ways lists page oddly (default: none).
    pub odd_paging: OddPaging,
    /// Items of `GET /api/machineactions` lists leave out `commands` (`GET
    /// /api/machineactions/{id}` still has them; default false).
    pub list_without_commands: bool,
    /// `GET /api/machineactions` matching nothing answers `404 ResourceNotFound`
    /// instead of an empty list (default false).
    pub empty_action_list_as_404: bool,
    /// Largest request body (default 21 MiB: room for a library upload at
    /// [`LIBRARY_UPLOAD_LIMIT`] and its form; more gets `413`).
    pub max_body: usize,
    /// The first this many `runliveresponse` calls are answered `429` (a rate limit,
    /// with a `Retry-After` of a second of service time), as a service that throttles
    /// past a client's retries does; they count against nothing.
    pub refuse_first_starts: usize,
    /// A new action is not found (`404` by id, absent from lists) for this long after
    /// its creation, as the real service's actions are for a few seconds.
    pub new_action_404_for: Duration,
    /// A result link is refused (`400`) for this long after its command completed, as
    /// the real service's link endpoint does just after.
    pub link_lag: Duration,
    /// Seed of action ids, correlation ids and link signatures.
    pub seed: u64,
    /// Wall-clock time the service clock starts at (default: now).
    pub epoch: Option<SystemTime>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            time_scale: 1.0,
            token: "sim-token-7f3a9c".to_owned(),
            tenant: "contoso.onmicrosoft.com".to_owned(),
            client_secret: None,
            requestor: "mdlr-app@contoso.test".to_owned(),
            machines: SimMachine::many(10),
            library: vec![LibraryFile::new(
                "x.ps1",
                b"param([string]$a)\r\nWrite-Output \"x $a\"\r\n",
            )],
            api_per_minute: Quota::new(100, Duration::from_secs(60)),
            api_per_hour: Quota::new(1500, Duration::from_secs(3600)),
            starts_per_minute: Quota::new(10, Duration::from_secs(60)),
            package_links_per_minute: Quota::new(2, Duration::from_secs(60)),
            package_links_per_hour: Quota::new(120, Duration::from_secs(3600)),
            package_for: Duration::from_secs(60),
            count_rejected_starts: true,
            max_concurrent: 50,
            pending_for: Duration::from_secs(10),
            run_for: Duration::from_secs(20),
            timeout_after: Duration::from_secs(600),
            cancel_after: Duration::from_secs(10),
            link_ttl: Duration::from_secs(1800),
            machines_not_found_as_404: true,
            refuse_or_filters: false,
            odd_paging: OddPaging::default(),
            list_without_commands: false,
            empty_action_list_as_404: false,
            max_body: 21 << 20,
            refuse_first_starts: 0,
            new_action_404_for: Duration::ZERO,
            link_lag: Duration::ZERO,
            seed: 0,
            epoch: None,
        }
    }
}

impl SimConfig {
    /// The service time from the first action start to the end of the last of `n`
    /// actions of `commands` commands each, on machines `0..n` of
    /// [`SimConfig::machines`] (cycling when `n` is larger), for a client that starts
    /// them in that order as early as the quotas allow. No client can finish sooner:
    /// it is a lower bound on the makespan.
    ///
    /// With `S`/`Ws` the start quota, `A`/`Wa` each API quota (minute and hour),
    /// `C` = [`SimConfig::max_concurrent`] and `D_k` action k's duration:
    ///
    /// ```text
    /// t_0 = 0
    /// t_k = max( t_{k-1},
    ///            t_{k-S} + Ws,                      start quota (sliding window)
    ///            t_{k-A} + Wa  for each API quota,  each start is one API call
    ///            the earliest time fewer than C earlier actions are still running )
    /// bound = max_k (t_k + D_k)
    /// D_k   = pending + commands·run                     Succeeded
    ///       = pending + (min(f, commands−1) + 1)·run      Failed at command f
    ///       = pending + timeout_after                     TimeOut (a RunScript-only chain)
    ///       = pending + min(cancel_after, commands·run/2) Cancelled
    /// ```
    ///
    /// Polls and result links are not counted (they only add calls), nor machines that
    /// are busy at start. With one duration `D` for all and the default quotas,
    /// `bound = ⌊(n−1)/10⌋·60 s + D` as long as `D ≤ 300 s` (concurrency never binds).
    pub fn quota_bound(&self, n: usize, commands: usize) -> Duration {
        let commands = commands.max(1);
        let default = SimMachine::new(1);
        let duration = |k: usize| -> Duration {
            let m = if self.machines.is_empty() {
                &default
            } else {
                &self.machines[k % self.machines.len()]
            };
            let pending = m.pending_for.unwrap_or(self.pending_for);
            let run = m.run_for.unwrap_or(self.run_for);
            pending
                + match &m.outcome {
                    Outcome::Succeeded => run * commands as u32,
                    Outcome::Failed { command, .. } => {
                        run * ((*command).min(commands - 1) + 1) as u32
                    }
                    Outcome::TimeOut => self.timeout_after,
                    Outcome::Cancelled => self.cancel_after.min(run * commands as u32 / 2),
                }
        };
        let quotas = [
            self.starts_per_minute,
            self.api_per_minute,
            self.api_per_hour,
        ];
        let mut starts: Vec<Duration> = Vec::with_capacity(n);
        let mut running: std::collections::BinaryHeap<std::cmp::Reverse<Duration>> =
            std::collections::BinaryHeap::new();
        let mut bound = Duration::ZERO;
        for k in 0..n {
            let mut t = starts.last().copied().unwrap_or(Duration::ZERO);
            for q in quotas {
                if q.limit > 0 && q.limit != usize::MAX && k >= q.limit {
                    t = t.max(starts[k - q.limit] + q.window);
                }
            }
            loop {
                while running.peek().is_some_and(|e| e.0 <= t) {
                    running.pop();
                }
                if running.len() < self.max_concurrent.max(1) {
                    break;
                }
                if let Some(std::cmp::Reverse(end)) = running.pop() {
                    t = t.max(end);
                }
            }
            let end = t + duration(k);
            running.push(std::cmp::Reverse(end));
            starts.push(t);
            bound = bound.max(end);
        }
        bound
    }
}

/// One request the simulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimRequest {
    /// The method.
    pub method: String,
    /// The target as sent, with any `sig=` value replaced by `REDACTED`.
    pub target: String,
    /// Which endpoint it was (`"runliveresponse"`, `"action"`, `"actions"`, `"link"`,
    /// `"cancel"`, `"machines"`, `"machine"`, `"library.list"`, `"library.upload"`,
    /// `"library.delete"`, `"blob"`, `"token"`, `"unknown"`).
    pub endpoint: &'static str,
    /// The status answered.
    pub status: u16,
    /// The `error.code` of an API error reply.
    pub error_code: Option<String>,
    /// When it was answered (real time).
    pub at: Instant,
    /// When it was answered, in service time since the simulator started.
    pub service_at: Duration,
}

/// Counters for assertions and benchmarks. Instants are real time.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    /// Every request received, by endpoint name (see [`SimRequest::endpoint`]),
    /// whatever its answer.
    pub requests: BTreeMap<&'static str, usize>,
    /// `/api/` requests counted against the API quotas.
    pub api_calls: usize,
    /// Actions started through the API (`201`).
    pub starts: usize,
    /// Actions started through the API, by machine id.
    pub starts_per_machine: BTreeMap<String, usize>,
    /// `429` answers.
    pub throttled: usize,
    /// `429` answers by the limit that caused them.
    pub throttled_by: BTreeMap<QuotaKind, usize>,
    /// The most calls one window of each quota ever held ([`QuotaKind::ApiPerMinute`],
    /// [`QuotaKind::ApiPerHour`], [`QuotaKind::StartsPerMinute`]): how close a client
    /// came to the limit, which a `429` count of zero does not say.
    pub busiest_window: BTreeMap<QuotaKind, usize>,
    /// `401` answers.
    pub unauthorized: usize,
    /// `400 ActiveRequestAlreadyExists` answers.
    pub active_request_already_exists: usize,
    /// Investigation package collections started through the API (`201`).
    pub package_starts: usize,
    /// Most non-terminal actions at once (machines busy at start included).
    pub peak_concurrent: usize,
    /// Non-terminal actions now.
    pub open_actions: usize,
    /// Actions started through the API that have ended by now.
    pub terminal_actions: usize,
    /// Requests to the result host.
    pub blob_requests: usize,
    /// Result host refusals (`400`/`403`).
    pub blob_refusals: usize,
    /// The first `/api/` request.
    pub first_request: Option<Instant>,
    /// The last request of any kind.
    pub last_request: Option<Instant>,
    /// When the last action started through the API that has ended by now ended.
    pub last_terminal: Option<Instant>,
    /// [`SimConfig::time_scale`].
    pub time_scale: f64,
}

impl SimStats {
    /// Real time from the first `/api/` request to the end of the last action.
    pub fn makespan(&self) -> Option<Duration> {
        Some(
            self.last_terminal?
                .saturating_duration_since(self.first_request?),
        )
    }

    /// [`SimStats::makespan`] in service time.
    pub fn makespan_service(&self) -> Option<Duration> {
        let real = self.makespan()?;
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return None;
        }
        Some(Duration::from_secs_f64(
            real.as_secs_f64() / self.time_scale,
        ))
    }

    /// The most actions any one machine got.
    pub fn max_starts_per_machine(&self) -> usize {
        self.starts_per_machine.values().copied().max().unwrap_or(0)
    }

    /// Requests received by `endpoint`.
    pub fn requests_to(&self, endpoint: &str) -> usize {
        self.requests.get(endpoint).copied().unwrap_or(0)
    }
}

/// A running simulator. Stops on [`Simulator::stop`] or drop.
pub struct Simulator {
    shared: Arc<Shared>,
    server: Option<Server>,
    base: String,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Starts serving `config` on `127.0.0.1` on a port the system picks.
    ///
    /// Fails on a `time_scale` that is not a positive finite number, a machine id that
    /// is not 40 hex characters, or two machines with one id.
    pub fn start(config: SimConfig) -> io::Result<Simulator> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            return Err(invalid(format!(
                "time_scale must be a positive number, not {}",
                config.time_scale
            )));
        }
        let mut machine_index = HashMap::new();
        for (i, m) in config.machines.iter().enumerate() {
            if !is_machine_id(&m.id) {
                return Err(invalid(format!(
                    "machine id {:?} is not 40 hex characters",
                    m.id
                )));
            }
            if machine_index.insert(m.id.to_ascii_lowercase(), i).is_some() {
                return Err(invalid(format!("machine id {} appears twice", m.id)));
            }
        }
        let epoch = Instant::now();
        let wall_epoch = config.epoch.unwrap_or_else(SystemTime::now);
        let shared = Arc::new(Shared {
            scale: config.time_scale,
            epoch,
            wall_epoch,
            base: OnceLock::new(),
            state: Mutex::new(State::new(config, machine_index, epoch, wall_epoch)),
        });
        let handler_shared = Arc::clone(&shared);
        let max_body = shared.lock().cfg.max_body;
        let server = Server::start_with(
            ServerConfig {
                max_body,
                ..ServerConfig::default()
            },
            Arc::new(move |req: &Request| handler_shared.handle(req)),
        )?;
        let base = server.url();
        let _ = shared.base.set(base.clone());
        Ok(Simulator {
            shared,
            server: Some(server),
            base,
        })
    }

    /// The API base, without `/api` (`http://127.0.0.1:PORT`).
    pub fn api_url(&self) -> String {
        self.base.clone()
    }

    /// The token authority (`http://127.0.0.1:PORT`): tokens are at
    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn authority_url(&self) -> String {
        self.base.clone()
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.base,
            self.shared.lock().cfg.tenant
        )
    }

    /// The bearer token the API wants.
    pub fn token(&self) -> String {
        self.shared.lock().cfg.token.clone()
    }

    /// The machines (as configured).
    pub fn machines(&self) -> Vec<SimMachine> {
        self.shared.lock().cfg.machines.clone()
    }

    /// A copy of the configuration.
    pub fn config(&self) -> SimConfig {
        self.shared.lock().cfg.clone()
    }

    /// The counters now.
    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats(Instant::now())
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<SimRequest> {
        self.shared.lock().log.clone()
    }

    /// Action `id` as `GET /api/machineactions/{id}` would show it now (without counting
    /// a call).
    pub fn action(&self, id: &str) -> Option<Value> {
        let now = Instant::now();
        let state = self.shared.lock();
        let i = *state.action_index.get(id)?;
        Some(self.shared.view(&state, i, now))
    }

    /// Every action as the list endpoint would show it now, oldest first.
    pub fn actions(&self) -> Vec<Value> {
        let now = Instant::now();
        let state = self.shared.lock();
        (0..state.actions.len())
            .map(|i| self.shared.view(&state, i, now))
            .collect()
    }

    /// Real time lasting `service` of service time.
    pub fn real(&self, service: Duration) -> Duration {
        self.shared.real(service)
    }

    /// Service time lasting `real` of real time.
    pub fn service(&self, real: Duration) -> Duration {
        Duration::from_secs_f64(real.as_secs_f64() / self.shared.scale)
    }

    /// [`SimConfig::quota_bound`] of this simulator's configuration (service time).
    pub fn quota_bound(&self, n: usize, commands: usize) -> Duration {
        self.shared.lock().cfg.quota_bound(n, commands)
    }

    /// Stops serving (waits for requests in flight).
    pub fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}

// ---------------------------------------------------------------------------------------
// State

/// A command of an action as requested.
#[derive(Debug, Clone)]
struct CommandSpec {
    kind: &'static str,
    params: Vec<(String, Option<String>)>,
}

impl CommandSpec {
    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// When a command runs, if it ever does, and how it ends.
#[derive(Debug, Clone)]
struct CommandPlan {
    start: Option<Instant>,
    /// `None`: it never finishes by itself.
    end: Option<Instant>,
    final_status: &'static str,
    errors: Vec<String>,
}

#[derive(Debug, Clone)]
struct Action {
    id: String,
    /// `LiveResponse` or `CollectInvestigationPackage`.
    kind: &'static str,
    machine: usize,
    requestor: String,
    comment: Option<String>,
    external_id: Option<String>,
    commands: Vec<CommandSpec>,
    plan: Vec<CommandPlan>,
    created: Instant,
    pending_end: Instant,
    terminal_at: Instant,
    final_status: &'static str,
    cancellation: Option<(String, String)>,
    /// Started through the API (not a machine busy at start).
    api: bool,
}

/// A result link handed out.
#[derive(Debug, Clone)]
struct Link {
    action: usize,
    /// The command whose result it is (`None`: the action's investigation package).
    index: Option<usize>,
    path: String,
    expires: Instant,
}

#[derive(Debug, Clone)]
struct LibraryEntry {
    file: LibraryFile,
    sha256: String,
    created: SystemTime,
    updated: SystemTime,
    created_by: String,
}

struct State {
    cfg: SimConfig,
    machine_index: HashMap<String, usize>,
    actions: Vec<Action>,
    action_index: HashMap<String, usize>,
    /// Non-terminal actions as of the last look.
    open: Vec<usize>,
    /// The action each machine got last.
    last_action: HashMap<usize, usize>,
    /// The investigation package collection each machine got last.
    last_package: HashMap<usize, usize>,
    library: BTreeMap<String, LibraryEntry>,
    links: HashMap<String, Link>,
    api_calls: VecDeque<Instant>,
    start_calls: VecDeque<Instant>,
    package_link_calls: VecDeque<Instant>,
    /// Starts refused so far for [`SimConfig::refuse_first_starts`].
    refused_starts: usize,
    counter: u64,
    correlations: u64,
    log: Vec<SimRequest>,
    stats: SimStats,
}

impl State {
    fn new(
        cfg: SimConfig,
        machine_index: HashMap<String, usize>,
        epoch: Instant,
        wall_epoch: SystemTime,
    ) -> State {
        let library = cfg
            .library
            .iter()
            .map(|f| {
                (
                    f.name.to_ascii_lowercase(),
                    LibraryEntry {
                        file: f.clone(),
                        sha256: util::sha256_hex(&f.content),
                        created: wall_epoch,
                        updated: wall_epoch,
                        created_by: "analyst@contoso.test".to_owned(),
                    },
                )
            })
            .collect();
        let mut state = State {
            machine_index,
            actions: Vec::new(),
            action_index: HashMap::new(),
            open: Vec::new(),
            last_action: HashMap::new(),
            last_package: HashMap::new(),
            library,
            links: HashMap::new(),
            api_calls: VecDeque::new(),
            start_calls: VecDeque::new(),
            package_link_calls: VecDeque::new(),
            refused_starts: 0,
            counter: 0,
            correlations: 0,
            log: Vec::new(),
            stats: SimStats {
                time_scale: cfg.time_scale,
                ..SimStats::default()
            },
            cfg,
        };
        let scale = state.cfg.time_scale;
        for m in 0..state.cfg.machines.len() {
            let Some(busy) = state.cfg.machines[m].busy_for else {
                continue;
            };
            let id = state.next_guid();
            let end = epoch + busy.mul_f64(scale);
            let action = Action {
                id: id.clone(),
                kind: "LiveResponse",
                machine: m,
                requestor: "analyst@contoso.test".to_owned(),
                comment: Some("Somebody else's session".to_owned()),
                external_id: None,
                commands: vec![CommandSpec {
                    kind: "RunScript",
                    params: vec![("ScriptName".to_owned(), Some("other.ps1".to_owned()))],
                }],
                plan: vec![CommandPlan {
                    start: Some(epoch),
                    end: Some(end),
                    final_status: "Completed",
                    errors: Vec::new(),
                }],
                created: epoch,
                pending_end: epoch,
                terminal_at: end,
                final_status: "Succeeded",
                cancellation: None,
                api: false,
            };
            let i = state.actions.len();
            state.actions.push(action);
            state.action_index.insert(id, i);
            state.last_action.insert(m, i);
            state.open.push(i);
        }
        for m in 0..state.cfg.machines.len() {
            let Some(busy) = state.cfg.machines[m].collecting_for else {
                continue;
            };
            let id = state.next_guid();
            let end = epoch + busy.mul_f64(scale);
            let i = state.actions.len();
            state.actions.push(Action {
                id: id.clone(),
                kind: PACKAGE,
                machine: m,
                requestor: "analyst@contoso.test".to_owned(),
                comment: Some("Somebody else's collection".to_owned()),
                external_id: None,
                commands: Vec::new(),
                plan: Vec::new(),
                created: epoch,
                pending_end: epoch,
                terminal_at: end,
                final_status: "Succeeded",
                cancellation: None,
                api: false,
            });
            state.action_index.insert(id, i);
            state.last_package.insert(m, i);
        }
        state.stats.peak_concurrent = state.open.len();
        state
    }

    fn next_guid(&mut self) -> String {
        self.counter += 1;
        util::guid(self.cfg.seed, self.counter)
    }

    fn prune_open(&mut self, now: Instant) {
        let actions = &self.actions;
        self.open.retain(|&i| actions[i].terminal_at > now);
    }

    fn stats(&mut self, now: Instant) -> SimStats {
        self.prune_open(now);
        let mut stats = self.stats.clone();
        stats.open_actions = self.open.len();
        let ended = self
            .actions
            .iter()
            .filter(|a| a.api && a.terminal_at <= now);
        stats.terminal_actions = 0;
        stats.last_terminal = None;
        for a in ended {
            stats.terminal_actions += 1;
            stats.last_terminal = Some(match stats.last_terminal {
                Some(t) if t >= a.terminal_at => t,
                _ => a.terminal_at,
            });
        }
        stats
    }
}

/// The `type` of an investigation package collection.
const PACKAGE: &str = "CollectInvestigationPackage";

struct Shared {
    scale: f64,
    epoch: Instant,
    wall_epoch: SystemTime,
    base: OnceLock<String>,
    state: Mutex<State>,
}

/// The status of `a` at `now`.
fn status_at(a: &Action, now: Instant) -> &'static str {
    if now >= a.terminal_at {
        a.final_status
    } else if now < a.pending_end {
        "Pending"
    } else {
        "InProgress"
    }
}

/// How many of `calls` (oldest first) lie inside the window `(now - window, now]`.
fn in_window(calls: &VecDeque<Instant>, now: Instant, window: Duration) -> usize {
    calls.len() - calls.partition_point(|t| now.saturating_duration_since(*t) >= window)
}

/// Whether `id` is 40 hex characters.
/// Whether the request's query has `key`.
fn has_param(req: &Request, key: &str) -> bool {
    req.query_params().iter().any(|(k, _)| k == key)
}

fn is_machine_id(id: &str) -> bool {
    id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The index of the action `id` (as it came in the path) names, or `404`.
fn action_of(state: &State, id: &str, target: &str) -> Result<usize, Response> {
    state
        .action_index
        .get(&percent_decode(id))
        .copied()
        .ok_or_else(|| {
            api_error(
                404,
                "ResourceNotFound",
                &format!("Machine action {id} was not found"),
                target,
            )
        })
}

/// The `Comment` of a JSON body (cancel, collect), or the `400` that says what is wrong.
fn comment_of(req: &Request, target: &str) -> Result<String, Response> {
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|_| api_error(400, "InvalidRequestBody", "The body is not JSON", target))?;
    match body["Comment"].as_str() {
        Some(c) => Ok(c.to_owned()),
        None => Err(api_error(
            400,
            "MissingRequiredParameter",
            "Comment is required",
            target,
        )),
    }
}

/// An API error reply.
fn api_error(status: u16, code: &str, message: &str, target: &str) -> Response {
    Response::json(
        status,
        &json!({"error": {"code": code, "message": message, "target": target}}),
    )
}

/// A result host (Azure Blob Storage) error reply.
fn blob_error(status: u16, code: &str, message: &str) -> Response {
    let body = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{message}\nRequestId:00000000-0000-0000-0000-000000000000\nTime:2021-02-04T15:43:51.0000000Z</Message></Error>"
    );
    Response::new(status, "application/xml", body).header("x-ms-error-code", code)
}

/// The last segment of a Windows or POSIX path.
fn basename(path: &str) -> &str {
    path.rsplit(['\\', '/'])
        .find(|s| !s.is_empty())
        .unwrap_or("file")
}

/// Whether a multipart or query flag says yes.
fn flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" | "" => Some(false),
        _ => None,
    }
}

/// Paging parameters of a list request.
/// What a list holds, for `collection`: the entity type, the properties a filter may
/// name, and the configuration (how the service refuses and pages).
struct Listing<'a> {
    what: &'a str,
    allowed: &'a [&'a str],
    cfg: &'a SimConfig,
}

struct Page {
    filter: Option<String>,
    top: usize,
    skip: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn real(&self, service: Duration) -> Duration {
        service.mul_f64(self.scale)
    }

    /// The service-clock wall time of the real instant `t`.
    fn wall(&self, t: Instant) -> SystemTime {
        let real = t.saturating_duration_since(self.epoch);
        self.wall_epoch + Duration::from_secs_f64(real.as_secs_f64() / self.scale)
    }

    fn stamp(&self, t: Instant) -> String {
        util::iso(self.wall(t))
    }

    fn base_url(&self, req: &Request) -> String {
        match self.base.get() {
            Some(b) => b.clone(),
            None => format!("http://{}", req.header("host").unwrap_or("127.0.0.1")),
        }
    }

    /// Answers one request and logs it.
    fn handle(&self, req: &Request) -> Response {
        let path = req.path().to_owned();
        let (endpoint, response) = if path.starts_with("/api/") || path == "/api" {
            self.api(req)
        } else if path.starts_with("/blob/") {
            ("blob", self.blob(req))
        } else if path.ends_with("/oauth2/v2.0/token") {
            ("token", self.token(req))
        } else {
            (
                "unknown",
                Response::text(404, "nothing here: the API is under /api/\n"),
            )
        };
        let now = Instant::now();
        let mut state = self.lock();
        let error_code = if response.status >= 400 && path.starts_with("/api") {
            serde_json::from_slice::<Value>(&response.body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        } else {
            None
        };
        let target = redact_sig(&req.target);
        let service_at = Duration::from_secs_f64(
            now.saturating_duration_since(self.epoch).as_secs_f64() / self.scale,
        );
        state.log.push(SimRequest {
            method: req.method.clone(),
            target,
            endpoint,
            status: response.status,
            error_code,
            at: now,
            service_at,
        });
        *state.stats.requests.entry(endpoint).or_insert(0) += 1;
        state.stats.last_request = Some(now);
        response
    }

    // -----------------------------------------------------------------------------------
    // Token endpoint

    fn token(&self, req: &Request) -> Response {
        let state = self.lock();
        let oauth_error = |status: u16, code: &str, description: &str| {
            Response::json(
                status,
                &json!({"error": code, "error_description": description, "error_codes": [], "timestamp": "", "trace_id": "", "correlation_id": ""}),
            )
        };
        if req.method != "POST" {
            return oauth_error(
                405,
                "invalid_request",
                "AADSTS900561: The endpoint only accepts POST requests.",
            );
        }
        let form = parse_query(&String::from_utf8_lossy(&req.body));
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        match get("grant_type") {
            Some("client_credentials") => {
                if get("client_id").is_none_or(str::is_empty) {
                    return oauth_error(
                        400,
                        "invalid_request",
                        "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
                    );
                }
                if let Some(secret) = &state.cfg.client_secret
                    && get("client_assertion").is_none()
                    && get("client_secret") != Some(secret.as_str())
                {
                    return oauth_error(
                        401,
                        "invalid_client",
                        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
                    );
                }
            }
            Some(_) => {
                return oauth_error(
                    400,
                    "unsupported_grant_type",
                    "AADSTS70003: The app requested an unsupported grant type.",
                );
            }
            None => {
                return oauth_error(
                    400,
                    "invalid_request",
                    "AADSTS900144: The request body must contain the following parameter: 'grant_type'.",
                );
            }
        }
        Response::json(
            200,
            &json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": state.cfg.token}),
        )
    }

    // -----------------------------------------------------------------------------------
    // API

    fn api(&self, req: &Request) -> (&'static str, Response) {
        let path = req.path();
        let rest = path.strip_prefix("/api/").unwrap_or_default();
        let segments: Vec<&str> = rest.split('/').collect();
        let endpoint: &'static str = match (req.method.as_str(), segments.as_slice()) {
            (_, ["machines", _, "runliveresponse"]) => "runliveresponse",
            (_, ["machines", _, "collectInvestigationPackage"]) => "package",
            (_, ["machineactions", _, "GetPackageUri"]) => "package.link",
            (_, ["machineactions"]) => "actions",
            (_, ["machineactions", _]) => "action",
            (_, ["machineactions", _, "cancel"]) => "cancel",
            (_, ["machineactions", _, l]) if l.starts_with("GetLiveResponseResultDownloadLink") => {
                "link"
            }
            (_, ["machines"]) => "machines",
            (_, ["machines", _]) => "machine",
            ("GET", ["libraryfiles"]) => "library.list",
            ("POST", ["libraryfiles"]) => "library.upload",
            (_, ["libraryfiles", _]) => "library.delete",
            _ => "unknown",
        };
        let now = Instant::now();
        let mut state = self.lock();
        // The clock read under the lock: answers are ordered as the windows see them.
        let now = now.max(Instant::now());
        if state.stats.first_request.is_none() {
            state.stats.first_request = Some(now);
        }
        let target = self.guid_for(&mut state);
        let bearer = format!("Bearer {}", state.cfg.token);
        if req.header("authorization") != Some(bearer.as_str()) {
            state.stats.unauthorized += 1;
            let message = if req.header("authorization").is_some() {
                "Invalid or expired access token."
            } else {
                "Authorization header is missing."
            };
            return (endpoint, api_error(401, "Unauthorized", message, &target));
        }
        let is_start = endpoint == "runliveresponse" && req.method == "POST";
        let is_package_link = endpoint == "package.link";
        if is_start && state.refused_starts < state.cfg.refuse_first_starts {
            state.refused_starts += 1;
            let wait = self.real(Duration::from_secs(1));
            return (
                endpoint,
                self.throttle(&mut state, QuotaKind::Scenario, wait, &target),
            );
        }
        if let Some((kind, wait)) = self.over_quota(&mut state, now, is_start, is_package_link) {
            return (endpoint, self.throttle(&mut state, kind, wait, &target));
        }
        let response = match endpoint {
            "runliveresponse" => self.start_action(&mut state, req, segments[1], now, &target),
            "package" => self.start_package(&mut state, req, segments[1], now, &target),
            "package.link" => self.package_link(&mut state, req, segments[1], now, &target),
            "actions" => self.list_actions(&state, req, now, &target),
            "action" => self.get_action(&state, req, segments[1], now, &target),
            "cancel" => self.cancel(&mut state, req, segments[1], now, &target),
            "link" => self.link(&mut state, req, segments[1], segments[2], now, &target),
            "machines" => self.list_machines(&state, req, &target),
            "machine" => self.get_machine(&state, req, segments[1], &target),
            "library.list" => self.library_list(&state, req),
            "library.upload" => self.library_upload(&mut state, req, now, &target),
            "library.delete" => self.library_delete(&mut state, req, segments[1], &target),
            _ => api_error(
                404,
                "ResourceNotFound",
                &format!("No API at {path}"),
                &target,
            ),
        };
        if response.status == 429 {
            return (endpoint, response);
        }
        state.api_calls.push_back(now);
        state.stats.api_calls += 1;
        let mut counted = vec![
            (QuotaKind::ApiPerMinute, state.cfg.api_per_minute.window),
            (QuotaKind::ApiPerHour, state.cfg.api_per_hour.window),
        ];
        if is_start && (state.cfg.count_rejected_starts || response.status < 300) {
            state.start_calls.push_back(now);
            counted.push((
                QuotaKind::StartsPerMinute,
                state.cfg.starts_per_minute.window,
            ));
        }
        if is_package_link {
            state.package_link_calls.push_back(now);
            counted.push((
                QuotaKind::PackageLinksPerMinute,
                state.cfg.package_links_per_minute.window,
            ));
            counted.push((
                QuotaKind::PackageLinksPerHour,
                state.cfg.package_links_per_hour.window,
            ));
        }
        for (kind, window) in counted {
            let calls = match kind {
                QuotaKind::StartsPerMinute => &state.start_calls,
                QuotaKind::PackageLinksPerMinute | QuotaKind::PackageLinksPerHour => {
                    &state.package_link_calls
                }
                _ => &state.api_calls,
            };
            let held = in_window(calls, now, self.real(window));
            let busiest = state.stats.busiest_window.entry(kind).or_insert(0);
            *busiest = (*busiest).max(held);
        }
        (endpoint, response)
    }

    /// A fresh correlation id (`error.target`), from its own sequence so action ids
    /// depend only on the order of starts.
    fn guid_for(&self, state: &mut State) -> String {
        state.correlations += 1;
        util::guid(state.cfg.seed ^ 0x636F_7272_656C_6174, state.correlations)
    }

    /// The quota a call at `now` would exceed, and how long until it would not.
    fn over_quota(
        &self,
        state: &mut State,
        now: Instant,
        is_start: bool,
        is_package_link: bool,
    ) -> Option<(QuotaKind, Duration)> {
        let longest = self
            .real(state.cfg.api_per_minute.window)
            .max(self.real(state.cfg.api_per_hour.window));
        while state
            .api_calls
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= longest)
        {
            state.api_calls.pop_front();
        }
        let start_window = self.real(state.cfg.starts_per_minute.window);
        while state
            .start_calls
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= start_window)
        {
            state.start_calls.pop_front();
        }
        let package_window = self
            .real(state.cfg.package_links_per_minute.window)
            .max(self.real(state.cfg.package_links_per_hour.window));
        while state
            .package_link_calls
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= package_window)
        {
            state.package_link_calls.pop_front();
        }
        let mut worst: Option<(QuotaKind, Duration)> = None;
        let mut check = |kind: QuotaKind, quota: Quota, calls: &VecDeque<Instant>| {
            if quota.limit == usize::MAX {
                return;
            }
            let window = self.real(quota.window);
            let count = in_window(calls, now, window);
            if count < quota.limit {
                return;
            }
            let first = calls.len() - count;
            // The call that must leave the window for one more to fit.
            let leaving = calls
                .get(first + count - quota.limit)
                .copied()
                .unwrap_or(now);
            let wait = (leaving + window).saturating_duration_since(now);
            if worst.is_none_or(|(_, w)| wait > w) {
                worst = Some((kind, wait));
            }
        };
        check(
            QuotaKind::ApiPerMinute,
            state.cfg.api_per_minute,
            &state.api_calls,
        );
        check(
            QuotaKind::ApiPerHour,
            state.cfg.api_per_hour,
            &state.api_calls,
        );
        if is_start {
            check(
                QuotaKind::StartsPerMinute,
                state.cfg.starts_per_minute,
                &state.start_calls,
            );
        }
        if is_package_link {
            check(
                QuotaKind::PackageLinksPerMinute,
                state.cfg.package_links_per_minute,
                &state.package_link_calls,
            );
            check(
                QuotaKind::PackageLinksPerHour,
                state.cfg.package_links_per_hour,
                &state.package_link_calls,
            );
        }
        worst
    }

    /// A `429` for `kind`, due to end in `wait` (real time).
    fn throttle(
        &self,
        state: &mut State,
        kind: QuotaKind,
        wait: Duration,
        target: &str,
    ) -> Response {
        state.stats.throttled += 1;
        *state.stats.throttled_by.entry(kind).or_insert(0) += 1;
        let wait_ms = wait.as_nanos().div_ceil(1_000_000).max(1);
        let wait_s = wait_ms.div_ceil(1000);
        let message = match kind {
            QuotaKind::Concurrency => {
                "Maximum number of concurrent live response sessions reached".to_owned()
            }
            _ => format!("Rate limit is exceeded. Try again in {wait_s} seconds."),
        };
        let mut response = api_error(429, "TooManyRequests", &message, target)
            .header("x-sim-retry-after-ms", wait_ms.to_string())
            .header("x-sim-quota", format!("{kind:?}"));
        if wait_ms >= 1000 {
            response = response.header("Retry-After", wait_s.to_string());
        }
        response
    }

    fn view(&self, state: &State, i: usize, now: Instant) -> Value {
        let a = &state.actions[i];
        let m = &state.cfg.machines[a.machine];
        let terminal = now >= a.terminal_at;
        let status = status_at(a, now);
        let cut = now.min(a.terminal_at);
        let mut last_update = a.created;
        if a.pending_end <= cut {
            last_update = last_update.max(a.pending_end);
        }
        if terminal {
            last_update = last_update.max(a.terminal_at);
        }
        let mut commands = Vec::new();
        if terminal || now >= a.pending_end {
            for (index, (spec, plan)) in a.commands.iter().zip(&a.plan).enumerate() {
                let started = plan.start.filter(|s| *s <= cut);
                let ended = plan.end.filter(|e| *e <= cut);
                let (command_status, errors) = match ended {
                    Some(_) => (plan.final_status, plan.errors.clone()),
                    None => ("Created", Vec::new()),
                };
                if let Some(s) = started {
                    last_update = last_update.max(s);
                }
                if let Some(e) = ended {
                    last_update = last_update.max(e);
                }
                commands.push(json!({
                    "index": index,
                    "startTime": started.map(|t| self.stamp(t)),
                    "endTime": ended.map(|t| self.stamp(t)),
                    "commandStatus": command_status,
                    "errors": errors,
                    "command": {
                        "type": spec.kind,
                        "params": spec.params.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                    },
                }));
            }
        }
        let (cancellation_requestor, cancellation_comment, cancellation_time) =
            match (&a.cancellation, terminal) {
                (Some((who, why)), true) => (
                    Some(who.clone()),
                    Some(why.clone()),
                    Some(self.stamp(a.terminal_at)),
                ),
                _ => (None, None, None),
            };
        json!({
            "id": a.id,
            "type": a.kind,
            "title": null,
            "requestor": a.requestor,
            "requestorComment": a.comment,
            "status": status,
            "machineId": m.id,
            "computerDnsName": m.dns_name,
            "creationDateTimeUtc": self.stamp(a.created),
            "lastUpdateDateTimeUtc": self.stamp(last_update),
            "cancellationRequestor": cancellation_requestor,
            "cancellationComment": cancellation_comment,
            "cancellationDateTimeUtc": cancellation_time,
            "errorHResult": 0,
            "scope": null,
            "externalID": a.external_id,
            "requestSource": "PublicApi",
            "relatedFileInfo": null,
            "commands": commands,
            "troubleshootInfo": null,
        })
    }

    fn start_action(
        &self,
        state: &mut State,
        req: &Request,
        machine_id: &str,
        now: Instant,
        target: &str,
    ) -> Response {
        if req.method != "POST" {
            return method_not_allowed(req, target);
        }
        let m = match self.machine_of(state, machine_id, target) {
            Ok(m) => m,
            Err(refusal) => return refusal,
        };
        let commands = match parse_commands(&req.body) {
            Ok(c) => c,
            Err(message) => return api_error(400, "InvalidRequestBody", &message, target),
        };
        for c in &commands {
            let library_name = match c.kind {
                "RunScript" => c.param("ScriptName"),
                "PutFile" => c.param("FileName"),
                _ => None,
            };
            if let Some(name) = library_name
                && !state.library.contains_key(&name.to_ascii_lowercase())
            {
                return api_error(
                    400,
                    "BadRequest",
                    &format!("File {name} was not found in the live response library"),
                    target,
                );
            }
        }
        state.prune_open(now);
        let portal = state.cfg.machines[m].portal_session_for;
        if portal.is_some_and(|d| now < self.epoch + self.real(d)) {
            state.stats.active_request_already_exists += 1;
            return api_error(
                400,
                "ActiveRequestAlreadyExists",
                "Action is already in progress: there is an active live response session on this machine",
                target,
            );
        }
        if let Some(&last) = state.last_action.get(&m)
            && state.actions[last].terminal_at > now
        {
            state.stats.active_request_already_exists += 1;
            return api_error(
                400,
                "ActiveRequestAlreadyExists",
                "Action is already in progress: there is an active live response session on this machine",
                target,
            );
        }
        if state.open.len() >= state.cfg.max_concurrent {
            let next_end = state
                .open
                .iter()
                .map(|&i| state.actions[i].terminal_at)
                .min()
                .unwrap_or(now);
            let wait = next_end.saturating_duration_since(now);
            return self.throttle(state, QuotaKind::Concurrency, wait, target);
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let comment = body["Comment"].as_str().map(str::to_owned);
        let external_id = body["ExternalId"]
            .as_str()
            .or(body["externalId"].as_str())
            .map(str::to_owned);
        let machine = state.cfg.machines[m].clone();
        let pending = self.real(machine.pending_for.unwrap_or(state.cfg.pending_for));
        let run = self.real(machine.run_for.unwrap_or(state.cfg.run_for));
        let pending_end = now + pending;
        let (plan, terminal_at, cancel) = plan(
            &commands,
            &machine.outcome,
            pending_end,
            run,
            self.real(state.cfg.timeout_after),
            self.real(state.cfg.cancel_after),
        );
        let id = state.next_guid();
        let action = Action {
            id: id.clone(),
            kind: "LiveResponse",
            machine: m,
            requestor: state.cfg.requestor.clone(),
            comment,
            external_id,
            commands,
            plan,
            created: now,
            pending_end,
            terminal_at,
            final_status: machine.outcome.status(),
            cancellation: cancel.then(|| {
                (
                    "analyst@contoso.test".to_owned(),
                    "Cancelled by an analyst (simulated scenario)".to_owned(),
                )
            }),
            api: true,
        };
        let machine_key = machine.id.clone();
        let i = state.actions.len();
        state.actions.push(action);
        state.action_index.insert(id, i);
        state.last_action.insert(m, i);
        state.open.push(i);
        state.stats.starts += 1;
        *state
            .stats
            .starts_per_machine
            .entry(machine_key)
            .or_insert(0) += 1;
        state.stats.peak_concurrent = state.stats.peak_concurrent.max(state.open.len());
        Response::json(201, &self.view(state, i, now))
    }

    fn page(&self, req: &Request, target: &str) -> Result<Page, Response> {
        let mut page = Page {
            filter: None,
            top: MAX_TOP,
            skip: 0,
        };
        for (k, v) in req.query_params() {
            match k.as_str() {
                "$filter" => page.filter = Some(v),
                "$top" => {
                    page.top = v.trim().parse().map_err(|_| {
                        api_error(
                            400,
                            "ODataError",
                            &format!("Invalid $top value {v:?}"),
                            target,
                        )
                    })?;
                    if page.top > MAX_TOP {
                        return Err(api_error(
                            400,
                            "ODataError",
                            &format!(
                                "The limit of '{MAX_TOP}' for Top query has been exceeded. The value from the incoming request is '{}'.",
                                page.top
                            ),
                            target,
                        ));
                    }
                }
                "$skip" => {
                    page.skip = v.trim().parse().map_err(|_| {
                        api_error(
                            400,
                            "ODataError",
                            &format!("Invalid $skip value {v:?}"),
                            target,
                        )
                    })?;
                }
                _ => {}
            }
        }
        Ok(page)
    }

    /// Filters `count` entities (on `field(i, name)`, the properties a filter names), pages them by
    /// `$top`/`$skip` (and the odd ways of [`SimConfig::odd_paging`]) and wraps `full(i)`
    /// of the page as an OData collection: the number shown and the reply body.
    fn collection(
        &self,
        req: &Request,
        count: usize,
        field: impl Fn(usize, &str) -> Value,
        full: impl Fn(usize) -> Value,
        Listing { what, allowed, cfg }: Listing<'_>,
        target: &str,
    ) -> Result<(usize, Value), Response> {
        let page = self.page(req, target)?;
        let expr = match &page.filter {
            None => None,
            Some(f) => {
                let expr = filter::parse(f).map_err(|e| {
                    api_error(
                        400,
                        "ODataError",
                        &format!("Invalid filter {f:?}: {e}"),
                        target,
                    )
                })?;
                if let Some(bad) = expr.fields().into_iter().find(|f| !allowed.contains(f)) {
                    return Err(api_error(
                        400,
                        "ODataError",
                        &format!(
                            "Could not find a property named '{bad}' on type '{what}', or it cannot be filtered on"
                        ),
                        target,
                    ));
                }
                if cfg.refuse_or_filters && expr.has_or() {
                    return Err(api_error(
                        400,
                        "ODataError",
                        "The query specified in the URI is not valid. The logical operator \
                         'Or' is not allowed. To allow it, set the 'AllowedLogicalOperators' \
                         property on EnableQueryAttribute or QueryValidationSettings.",
                        target,
                    ));
                }
                Some(expr)
            }
        };
        // Filter on light entities holding just the properties the filter names; build
        // the full entities for the page shown only.
        let mut names = expr.as_ref().map(filter::Expr::fields).unwrap_or_default();
        names.sort_unstable();
        names.dedup();
        let matching: Vec<usize> = (0..count)
            .filter(|&i| {
                expr.as_ref().is_none_or(|e| {
                    let light: serde_json::Map<String, Value> = names
                        .iter()
                        .map(|n| ((*n).to_owned(), field(i, n)))
                        .collect();
                    e.matches(&Value::Object(light))
                })
            })
            .collect();
        let total = matching.len();
        let odd = &cfg.odd_paging;
        let size = odd.page_size.map_or(page.top, |n| n.min(page.top));
        let empty = odd.empty_page && has_param(req, "sim-empty");
        // An overlapping page begins one item early.
        let from = page.skip - usize::from(odd.overlap && page.skip > 0);
        let shown: Vec<Value> = matching
            .into_iter()
            .skip(from)
            .take(if empty { 0 } else { size + page.skip - from })
            .map(full)
            .collect();
        let shown_count = shown.len();
        let base = self.base_url(req);
        let mut envelope = json!({
            "@odata.context": format!("{base}/api/$metadata#{what}s"),
            "value": shown,
        });
        let next = if empty { page.skip } else { page.skip + size };
        if next < total && size > 0 {
            let mut query = Vec::new();
            if let Some(f) = page.filter.as_ref().filter(|_| !odd.drop_filter) {
                query.push(format!("$filter={}", crate::server::percent_encode(f)));
            }
            query.push(format!("$top={}", page.top));
            query.push(format!("$skip={next}"));
            if odd.empty_page && page.skip == 0 {
                query.push("sim-empty=1".to_owned());
            }
            let link = if odd.repeat_link && page.skip > 0 {
                format!("{base}{}", req.target)
            } else {
                format!("{base}{}?{}", req.path(), query.join("&"))
            };
            envelope["@odata.nextLink"] = json!(link);
        }
        Ok((shown_count, envelope))
    }

    fn list_actions(&self, state: &State, req: &Request, now: Instant, target: &str) -> Response {
        if req.method != "GET" {
            return method_not_allowed(req, target);
        }
        // New actions are not listed for their first moments.
        let lag = self.real(state.cfg.new_action_404_for);
        let visible: Vec<usize> = (0..state.actions.len())
            .filter(|&i| now >= state.actions[i].created + lag)
            .collect();
        let field = |i: usize, name: &str| {
            let a = &state.actions[visible[i]];
            match name {
                "id" => json!(a.id),
                "status" => json!(status_at(a, now)),
                "machineId" => json!(state.cfg.machines[a.machine].id),
                "type" => json!(a.kind),
                "requestor" => json!(a.requestor),
                "creationDateTimeUtc" => json!(self.stamp(a.created)),
                _ => Value::Null,
            }
        };
        let full = |i: usize| {
            let mut v = self.view(state, visible[i], now);
            if state.cfg.list_without_commands
                && let Some(o) = v.as_object_mut()
            {
                o.remove("commands");
            }
            v
        };
        let allowed = [
            "id",
            "status",
            "machineId",
            "type",
            "requestor",
            "creationDateTimeUtc",
        ];
        let count = visible.len();
        let what = Listing {
            what: "MachineAction",
            allowed: &allowed,
            cfg: &state.cfg,
        };
        let first_page = !has_param(req, "$skip");
        match self.collection(req, count, field, full, what, target) {
            Ok((0, _)) if first_page && state.cfg.empty_action_list_as_404 => api_error(
                404,
                "ResourceNotFound",
                "No machine action matches the query",
                target,
            ),
            Ok((_, envelope)) => Response::json(200, &envelope),
            Err(r) => r,
        }
    }

    fn get_action(
        &self,
        state: &State,
        req: &Request,
        id: &str,
        now: Instant,
        target: &str,
    ) -> Response {
        if req.method != "GET" {
            return method_not_allowed(req, target);
        }
        let lag = self.real(state.cfg.new_action_404_for);
        match state.action_index.get(&percent_decode(id)) {
            Some(&i) if now >= state.actions[i].created + lag => {
                let mut v = self.view(state, i, now);
                v["@odata.context"] = json!(format!(
                    "{}/api/$metadata#MachineActions/$entity",
                    self.base_url(req)
                ));
                Response::json(200, &v)
            }
            _ => api_error(
                404,
                "ResourceNotFound",
                &format!("Machine action {id} was not found"),
                target,
            ),
        }
    }

    fn cancel(
        &self,
        state: &mut State,
        req: &Request,
        id: &str,
        now: Instant,
        target: &str,
    ) -> Response {
        if req.method != "POST" {
            return method_not_allowed(req, target);
        }
        let i = match action_of(state, id, target) {
            Ok(i) => i,
            Err(refusal) => return refusal,
        };
        let comment = match comment_of(req, target) {
            Ok(c) => c,
            Err(refusal) => return refusal,
        };
        if state.actions[i].terminal_at <= now {
            let status = state.actions[i].final_status;
            return api_error(
                400,
                "BadRequest",
                &format!("Cannot cancel the action: it has already ended ({status})"),
                target,
            );
        }
        let requestor = state.cfg.requestor.clone();
        let a = &mut state.actions[i];
        a.terminal_at = now;
        a.final_status = "Cancelled";
        a.cancellation = Some((requestor, comment.to_owned()));
        state.prune_open(now);
        Response::json(200, &self.view(state, i, now))
    }

    fn link(
        &self,
        state: &mut State,
        req: &Request,
        id: &str,
        call: &str,
        now: Instant,
        target: &str,
    ) -> Response {
        if req.method != "GET" {
            return method_not_allowed(req, target);
        }
        // The parentheses and `=` arrive literally from a good client; accept only that.
        let index = call
            .strip_prefix("GetLiveResponseResultDownloadLink(index=")
            .and_then(|t| t.strip_suffix(')'))
            .and_then(|n| n.parse::<usize>().ok());
        let Some(index) = index else {
            return api_error(
                404,
                "ResourceNotFound",
                &format!("No API at {}", req.path()),
                target,
            );
        };
        let i = match action_of(state, id, target) {
            Ok(i) => i,
            Err(refusal) => return refusal,
        };
        let view = self.view(state, i, now);
        let commands = view["commands"].as_array().cloned().unwrap_or_default();
        if commands.is_empty() {
            return api_error(
                400,
                "BadRequest",
                "The action has not started yet: no command has a result",
                target,
            );
        }
        let Some(command) = commands.get(index) else {
            return api_error(
                404,
                "ResourceNotFound",
                &format!("The action has no command {index}"),
                target,
            );
        };
        let kind = state.actions[i].commands[index].kind;
        if kind == "PutFile" {
            return api_error(400, "BadRequest", "A PutFile command has no result", target);
        }
        let ended = state.actions[i].plan[index].end;
        let lag = self.real(state.cfg.link_lag);
        if command["commandStatus"] == "Completed" && ended.is_some_and(|e| now < e + lag) {
            return api_error(
                400,
                "BadRequest",
                &format!("Command {index} has no result yet"),
                target,
            );
        }
        if command["commandStatus"] != "Completed" {
            return api_error(
                400,
                "BadRequest",
                &format!(
                    "Command {index} has no result: its status is {}",
                    command["commandStatus"].as_str().unwrap_or("unknown")
                ),
                target,
            );
        }
        let file = match kind {
            "GetFile" => format!(
                "{}.gz",
                basename(
                    state.actions[i].commands[index]
                        .param("Path")
                        .unwrap_or("file")
                )
            ),
            _ => "transcript.json".to_owned(),
        };
        let m = &state.cfg.machines[state.actions[i].machine];
        let path = format!(
            "/blob/{}/{}/{}/{}",
            m.id,
            state.actions[i].id,
            index,
            crate::server::percent_encode(&file)
        );
        let url = self.sign(state, req, i, Some(index), path, now);
        Response::json(
            200,
            &json!({"@odata.context": format!("{}/api/$metadata#Edm.String", self.base_url(req)), "value": url}),
        )
    }

    /// The index of the machine `machine_id` (as it came in the path) names, or the
    /// refusal: `400 InvalidInput` when it is not 40 hex characters, `404` when unknown.
    fn machine_of(&self, state: &State, machine_id: &str, target: &str) -> Result<usize, Response> {
        let machine_id = percent_decode(machine_id);
        if !is_machine_id(&machine_id) {
            return Err(api_error(
                400,
                "InvalidInput",
                &format!("Invalid machine id {machine_id:?}: expected 40 hexadecimal characters"),
                target,
            ));
        }
        match state.machine_index.get(&machine_id.to_ascii_lowercase()) {
            Some(&m) => Ok(m),
            None => Err(api_error(
                404,
                "ResourceNotFound",
                &format!("Machine {machine_id} was not found"),
                target,
            )),
        }
    }

    /// `POST machines/{id}/collectInvestigationPackage`.
    fn start_package(
        &self,
        state: &mut State,
        req: &Request,
        machine_id: &str,
        now: Instant,
        target: &str,
    ) -> Response {
        if req.method != "POST" {
            return method_not_allowed(req, target);
        }
        let m = match self.machine_of(state, machine_id, target) {
            Ok(m) => m,
            Err(refusal) => return refusal,
        };
        let comment = match comment_of(req, target) {
            Ok(c) => c,
            Err(refusal) => return refusal,
        };
        if let Some(&last) = state.last_package.get(&m)
            && state.actions[last].terminal_at > now
        {
            state.stats.active_request_already_exists += 1;
            return api_error(
                400,
                "ActiveRequestAlreadyExists",
                "Action is already in progress: an investigation package is being collected on this machine",
                target,
            );
        }
        let machine = state.cfg.machines[m].clone();
        let pending_end = now + self.real(machine.pending_for.unwrap_or(state.cfg.pending_for));
        let collect = self.real(state.cfg.package_for);
        let terminal_at = pending_end
            + match machine.outcome {
                Outcome::TimeOut => self.real(state.cfg.timeout_after),
                Outcome::Cancelled => self.real(state.cfg.cancel_after).min(collect / 2),
                _ => collect,
            };
        let id = state.next_guid();
        let i = state.actions.len();
        state.actions.push(Action {
            id: id.clone(),
            kind: PACKAGE,
            machine: m,
            requestor: state.cfg.requestor.clone(),
            comment: Some(comment.to_owned()),
            external_id: None,
            commands: Vec::new(),
            plan: Vec::new(),
            created: now,
            pending_end,
            terminal_at,
            final_status: machine.outcome.status(),
            cancellation: (machine.outcome == Outcome::Cancelled).then(|| {
                (
                    "analyst@contoso.test".to_owned(),
                    "Cancelled by an analyst (simulated scenario)".to_owned(),
                )
            }),
            api: true,
        });
        state.action_index.insert(id, i);
        state.last_package.insert(m, i);
        state.stats.package_starts += 1;
        Response::json(201, &self.view(state, i, now))
    }

    /// `GET machineactions/{id}/GetPackageUri`.
    fn package_link(
        &self,
        state: &mut State,
        req: &Request,
        id: &str,
        now: Instant,
        target: &str,
    ) -> Response {
        if req.method != "GET" {
            return method_not_allowed(req, target);
        }
        let i = match action_of(state, id, target) {
            Ok(i) => i,
            Err(refusal) => return refusal,
        };
        let a = &state.actions[i];
        if a.kind != PACKAGE {
            return api_error(
                400,
                "BadRequest",
                &format!("Machine action {id} is not an investigation package collection"),
                target,
            );
        }
        let status = status_at(a, now);
        if status != "Succeeded" {
            return api_error(
                400,
                "BadRequest",
                &format!("The investigation package is not available: the action is {status}"),
                target,
            );
        }
        let path = format!(
            "/blob/packages/{}/{}.zip",
            state.cfg.machines[a.machine].id, a.id
        );
        let url = self.sign(state, req, i, None, path, now);
        Response::json(
            200,
            &json!({"@odata.context": format!("{}/api/$metadata#Edm.String", self.base_url(req)), "value": url}),
        )
    }

    /// A fresh SAS link to `path` (the result of command `index` of action `action`, or
    /// its package), valid for [`SimConfig::link_ttl`] from `now`.
    fn sign(
        &self,
        state: &mut State,
        req: &Request,
        action: usize,
        index: Option<usize>,
        path: String,
        now: Instant,
    ) -> String {
        state.counter += 1;
        let sig = util::base64(&util::noise(
            util::mix(state.cfg.seed ^ 0x5349_4753 ^ state.counter),
            32,
        ));
        let expires = now + self.real(state.cfg.link_ttl);
        let se = util::iso_short(self.wall(expires));
        let url = format!(
            "{}{path}?se={}&sp=r&sv=2019-07-07&sr=b&sig={}",
            self.base_url(req),
            crate::server::percent_encode(&se),
            crate::server::percent_encode(&sig)
        );
        state.links.insert(
            sig,
            Link {
                action,
                index,
                path,
                expires,
            },
        );
        url
    }

    fn machine_json(&self, m: &SimMachine, n: usize) -> Value {
        let ago = m
            .last_seen_ago
            .unwrap_or(Duration::from_secs(300 + (n as u64 % 600)));
        let seen = util::iso(self.wall_epoch.checked_sub(ago).unwrap_or(self.wall_epoch));
        json!({
            "id": m.id,
            "computerDnsName": m.dns_name,
            "firstSeen": "2023-01-15T09:30:00.0000000Z",
            "lastSeen": seen,
            "osPlatform": m.os_platform,
            "osVersion": null,
            "osProcessor": "x64",
            "version": "22H2",
            "osBuild": 22621,
            "lastIpAddress": format!("10.0.{}.{}", (n / 250) % 250, n % 250 + 1),
            "lastExternalIpAddress": "203.0.113.7",
            "agentVersion": "10.8760.22621.1992",
            "healthStatus": m.health_status,
            "onboardingStatus": "Onboarded",
            "deviceValue": "Normal",
            "rbacGroupId": 0,
            "rbacGroupName": null,
            "riskScore": "None",
            "exposureLevel": "Low",
            "isAadJoined": true,
            "aadDeviceId": null,
            "machineTags": [],
        })
    }

    fn list_machines(&self, state: &State, req: &Request, target: &str) -> Response {
        if req.method != "GET" {
            return method_not_allowed(req, target);
        }
        let machine = |n: usize| self.machine_json(&state.cfg.machines[n], n);
        let field = |n: usize, name: &str| {
            let m = &state.cfg.machines[n];
            match name {
                "id" => json!(m.id),
                "computerDnsName" => json!(m.dns_name),
                "healthStatus" => json!(m.health_status),
                "osPlatform" => json!(m.os_platform),
                _ => machine(n)[name].clone(),
            }
        };
        let allowed = [
            "id",
            "computerDnsName",
            "lastSeen",
            "healthStatus",
            "osPlatform",
            "onboardingStatus",
            "lastIpAddress",
            "riskScore",
            "exposureLevel",
            "rbacGroupId",
            "machineTags",
            "deviceValue",
            "version",
            "aadDeviceId",
        ];
        let count = state.cfg.machines.len();
        // Nothing found is a 404 on the first page (a later one may be empty).
        let filtered = has_param(req, "$filter") && !has_param(req, "$skip");
        let what = Listing {
            what: "Machine",
            allowed: &allowed,
            cfg: &state.cfg,
        };
        match self.collection(req, count, field, machine, what, target) {
            Ok((shown, _)) if shown == 0 && filtered && state.cfg.machines_not_found_as_404 => {
                api_error(
                    404,
                    "ResourceNotFound",
                    "No machine matches the filter",
                    target,
                )
            }
            Ok((_, envelope)) => Response::json(200, &envelope),
            Err(r) => r,
        }
    }

    fn get_machine(&self, state: &State, req: &Request, id: &str, target: &str) -> Response {
        if req.method != "GET" {
            return method_not_allowed(req, target);
        }
        let id = percent_decode(id).to_ascii_lowercase();
        match state.machine_index.get(&id) {
            Some(&n) => Response::json(200, &self.machine_json(&state.cfg.machines[n], n)),
            None => api_error(
                404,
                "ResourceNotFound",
                &format!("Machine {id} was not found"),
                target,
            ),
        }
    }

    fn library_json(&self, e: &LibraryEntry) -> Value {
        json!({
            "fileName": e.file.name,
            "sha256": e.sha256,
            "description": e.file.description,
            "creationTime": util::iso(e.created),
            "lastUpdatedTime": util::iso(e.updated),
            "createdBy": e.created_by,
            "hasParameters": e.file.has_parameters,
            "parametersDescription": e.file.parameters_description,
        })
    }

    fn library_list(&self, state: &State, req: &Request) -> Response {
        let value: Vec<Value> = state
            .library
            .values()
            .map(|e| self.library_json(e))
            .collect();
        Response::json(
            200,
            &json!({"@odata.context": format!("{}/api/$metadata#LibraryFiles", self.base_url(req)), "value": value}),
        )
    }

    fn library_upload(
        &self,
        state: &mut State,
        req: &Request,
        now: Instant,
        target: &str,
    ) -> Response {
        let content_type = req.header("content-type").unwrap_or_default();
        let parts = match multipart::parse(content_type, &req.body) {
            Ok(p) => p,
            Err(e) => return api_error(400, "InvalidRequestBody", &e, target),
        };
        let field = |name: &str| {
            parts
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(name) && p.filename.is_none())
                .map(|p| String::from_utf8_lossy(&p.data).into_owned())
        };
        let Some(file) = parts.iter().find(|p| p.name == "file") else {
            return api_error(
                400,
                "MissingRequiredParameter",
                "The form has no 'file' part",
                target,
            );
        };
        let name = file.filename.clone().unwrap_or_default();
        let name = basename(&name).to_owned();
        if name.is_empty() || file.filename.as_deref().is_none_or(str::is_empty) {
            return api_error(
                400,
                "InvalidRequestBody",
                "The 'file' part has no file name",
                target,
            );
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return api_error(
                400,
                "BadRequest",
                &format!(
                    "File name {name:?} contains {bad:?}: library file names may contain \
                     only letters, digits, '-', '_' and '.'"
                ),
                target,
            );
        }
        if file.data.len() > LIBRARY_UPLOAD_LIMIT {
            return api_error(
                400,
                "BadRequest",
                &format!(
                    "File {name} is {} bytes: the maximum file size is 20MB ({LIBRARY_UPLOAD_LIMIT} bytes)",
                    file.data.len()
                ),
                target,
            );
        }
        let Some(description) = field("Description") else {
            return api_error(
                400,
                "MissingRequiredParameter",
                "Description is required",
                target,
            );
        };
        let mut flags = [false, false];
        for (slot, key) in flags.iter_mut().zip(["HasParameters", "OverrideIfExists"]) {
            if let Some(v) = field(key) {
                match flag(&v) {
                    Some(b) => *slot = b,
                    None => {
                        return api_error(
                            400,
                            "InvalidInput",
                            &format!("{key} must be true or false, not {v:?}"),
                            target,
                        );
                    }
                }
            }
        }
        let [has_parameters, override_if_exists] = flags;
        let key = name.to_ascii_lowercase();
        let wall = self.wall(now);
        let created = match state.library.get(&key) {
            Some(_) if !override_if_exists => {
                return api_error(
                    400,
                    "BadRequest",
                    &format!(
                        "File {name} already exists in the library; set OverrideIfExists to replace it"
                    ),
                    target,
                );
            }
            Some(existing) => existing.created,
            None => wall,
        };
        let entry = LibraryEntry {
            sha256: util::sha256_hex(&file.data),
            file: LibraryFile {
                name,
                content: file.data.clone(),
                description,
                has_parameters,
                parameters_description: field("ParametersDescription").filter(|s| !s.is_empty()),
            },
            created,
            updated: wall,
            created_by: state.cfg.requestor.clone(),
        };
        let reply = self.library_json(&entry);
        state.library.insert(key, entry);
        Response::json(200, &reply)
    }

    fn library_delete(
        &self,
        state: &mut State,
        req: &Request,
        name: &str,
        target: &str,
    ) -> Response {
        if req.method != "DELETE" {
            return method_not_allowed(req, target);
        }
        let name = percent_decode(name);
        match state.library.remove(&name.to_ascii_lowercase()) {
            Some(_) => Response::empty(204),
            None => api_error(
                404,
                "ResourceNotFound",
                &format!("File {name} was not found in the library"),
                target,
            ),
        }
    }

    // -----------------------------------------------------------------------------------
    // Result host

    fn blob(&self, req: &Request) -> Response {
        let now = Instant::now();
        let (content, disposition) = {
            let mut state = self.lock();
            state.stats.blob_requests += 1;
            let refusal = |state: &mut State, r: Response| {
                state.stats.blob_refusals += 1;
                r
            };
            if req.header("authorization").is_some() {
                return refusal(
                    &mut state,
                    blob_error(
                        400,
                        "InvalidAuthenticationInfo",
                        "Authentication information is not given in the correct format. A SAS link takes no Authorization header.",
                    ),
                );
            }
            if req.method != "GET" {
                return refusal(
                    &mut state,
                    blob_error(
                        405,
                        "UnsupportedHttpVerb",
                        "The resource doesn't support the specified HTTP verb.",
                    ),
                );
            }
            let sig = req.query_param("sig").unwrap_or_default();
            let link = state.links.get(&sig).cloned();
            let Some(link) = link.filter(|l| l.path == req.path()) else {
                return refusal(
                    &mut state,
                    blob_error(
                        403,
                        "AuthenticationFailed",
                        "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
                    ),
                );
            };
            if now >= link.expires {
                return refusal(
                    &mut state,
                    blob_error(
                        403,
                        "AuthenticationFailed",
                        "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.\nAuthenticationErrorDetail:Signed expiry time has passed",
                    ),
                );
            }
            let a = &state.actions[link.action];
            let m = state.cfg.machines[a.machine].clone();
            let Some(index) = link.index else {
                return self.ranged(req, m.package(), None);
            };
            let spec = a.commands[index].clone();
            match spec.kind {
                "GetFile" => {
                    let path = spec.param("Path").unwrap_or_default().to_owned();
                    let content = m.file_content(&path);
                    (
                        match m.plain_getfile {
                            true => Content::Plain(content),
                            false => Content::Gzip(content),
                        },
                        Some(format!("attachment; filename=\"{}.gz\"", basename(&path))),
                    )
                }
                _ => {
                    let script = spec.param("ScriptName").unwrap_or_default().to_owned();
                    let transcript = json!({
                        "script_name": script,
                        "exit_code": m.script_exit_code,
                        "script_output": m.output_for(&script, spec.param("Args")),
                        "script_errors": m.script_errors,
                    });
                    (Content::Plain(transcript.to_string().into_bytes()), None)
                }
            }
        };
        // Compress outside the lock.
        let bytes = match content {
            Content::Gzip(raw) => util::gzip(&raw),
            Content::Plain(b) => b,
        };
        self.ranged(req, bytes, disposition)
    }

    /// The result host's reply of `bytes`: all of them, or the range asked for.
    fn ranged(&self, req: &Request, bytes: Vec<u8>, disposition: Option<String>) -> Response {
        let total = bytes.len();
        let mut response = Response::new(200, "application/octet-stream", Vec::new())
            .header("Accept-Ranges", "bytes")
            .header("x-ms-blob-type", "BlockBlob")
            .header("x-ms-version", "2019-07-07");
        if let Some(d) = disposition {
            response = response.header("Content-Disposition", d);
        }
        match req.header("range").map(|r| parse_range(r, total)) {
            None | Some(RangeAsk::Ignore) => response.body = bytes,
            Some(RangeAsk::Unsatisfiable) => {
                return blob_error(
                    416,
                    "InvalidRange",
                    "The range specified is invalid for the current size of the resource.",
                )
                .header("Content-Range", format!("bytes */{total}"));
            }
            Some(RangeAsk::Bytes(start, end)) => {
                response.status = 206;
                response = response.header("Content-Range", format!("bytes {start}-{end}/{total}"));
                response.body = bytes[start..=end].to_vec();
            }
        }
        response
    }
}

enum Content {
    Gzip(Vec<u8>),
    Plain(Vec<u8>),
}

enum RangeAsk {
    Ignore,
    Unsatisfiable,
    Bytes(usize, usize),
}

/// A single `bytes=` range against a body of `total` bytes.
fn parse_range(value: &str, total: usize) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore; // several ranges: serve the whole body
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAsk::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // A suffix: the last b bytes.
        return match b.parse::<usize>() {
            Ok(0) => RangeAsk::Unsatisfiable,
            Ok(n) if total > 0 => RangeAsk::Bytes(total.saturating_sub(n), total - 1),
            Ok(_) => RangeAsk::Unsatisfiable,
            Err(_) => RangeAsk::Ignore,
        };
    }
    let Ok(start) = a.parse::<usize>() else {
        return RangeAsk::Ignore;
    };
    if start >= total {
        return RangeAsk::Unsatisfiable;
    }
    let end = if b.is_empty() {
        total - 1
    } else {
        match b.parse::<usize>() {
            Ok(e) if e >= start => e.min(total - 1),
            _ => return RangeAsk::Ignore,
        }
    };
    RangeAsk::Bytes(start, end)
}

fn method_not_allowed(req: &Request, target: &str) -> Response {
    api_error(
        405,
        "MethodNotAllowed",
        &format!("{} is not allowed on {}", req.method, req.path()),
        target,
    )
}

/// The target with any `sig=` value replaced.
fn redact_sig(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|p| {
            if p.starts_with("sig=") {
                "sig=REDACTED".to_owned()
            } else {
                p.to_owned()
            }
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// The commands of a `runliveresponse` body, checked (SPEC A2/A3).
fn parse_commands(body: &[u8]) -> Result<Vec<CommandSpec>, String> {
    let body: Value =
        serde_json::from_slice(body).map_err(|e| format!("The body is not JSON: {e}"))?;
    if !body.is_object() {
        return Err("The body must be a JSON object".into());
    }
    let Some(list) = body.get("Commands") else {
        return Err("Commands is required".into());
    };
    let Some(list) = list.as_array() else {
        return Err("Commands must be a list".into());
    };
    if list.is_empty() {
        return Err("Commands must not be empty".into());
    }
    if let Some(comment) = body.get("Comment")
        && !comment.is_string()
        && !comment.is_null()
    {
        return Err("Comment must be a string".into());
    }
    let mut out = Vec::new();
    let mut last_rank = 0;
    for (i, c) in list.iter().enumerate() {
        let kind = match c.get("type").and_then(Value::as_str) {
            Some("PutFile") => "PutFile",
            Some("RunScript") => "RunScript",
            Some("GetFile") => "GetFile",
            Some(other) => return Err(format!("Command {i} has an unknown type {other:?}")),
            None => return Err(format!("Command {i} has no type")),
        };
        let rank = match kind {
            "PutFile" => 0,
            "RunScript" => 1,
            _ => 2,
        };
        if rank < last_rank {
            return Err("Commands must come in the order PutFile, RunScript, GetFile".to_owned());
        }
        last_rank = rank;
        let mut params = Vec::new();
        match c.get("params") {
            None | Some(Value::Null) => {}
            Some(Value::Array(ps)) => {
                for p in ps {
                    let Some(key) = p.get("key").and_then(Value::as_str) else {
                        return Err(format!("A parameter of command {i} has no key"));
                    };
                    let value = match p.get("value") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(_) => {
                            return Err(format!("Parameter {key} of command {i} must be a string"));
                        }
                    };
                    params.push((key.to_owned(), value));
                }
            }
            Some(_) => return Err(format!("The params of command {i} must be a list")),
        }
        let spec = CommandSpec { kind, params };
        let required = match kind {
            "PutFile" => "FileName",
            "RunScript" => "ScriptName",
            _ => "Path",
        };
        if spec.param(required).is_none_or(|v| v.trim().is_empty()) {
            return Err(format!(
                "Command {i} ({kind}) needs the parameter {required}"
            ));
        }
        out.push(spec);
    }
    Ok(out)
}

/// The schedule of `commands` ending with `outcome`: each command's plan, when the
/// action ends, and whether the scenario cancels it.
fn plan(
    commands: &[CommandSpec],
    outcome: &Outcome,
    pending_end: Instant,
    run: Duration,
    timeout: Duration,
    cancel_after: Duration,
) -> (Vec<CommandPlan>, Instant, bool) {
    let n = commands.len().max(1);
    let natural = |i: usize| -> CommandPlan {
        let start = pending_end + run * i as u32;
        CommandPlan {
            start: Some(start),
            end: Some(start + run),
            final_status: "Completed",
            errors: Vec::new(),
        }
    };
    let never = || CommandPlan {
        start: None,
        end: None,
        final_status: "Created",
        errors: Vec::new(),
    };
    match outcome {
        Outcome::Succeeded => (
            (0..commands.len()).map(natural).collect(),
            pending_end + run * n as u32,
            false,
        ),
        Outcome::Failed { command, errors } => {
            let f = (*command).min(n - 1);
            let plans = (0..commands.len())
                .map(|i| match i.cmp(&f) {
                    std::cmp::Ordering::Less => natural(i),
                    std::cmp::Ordering::Equal => CommandPlan {
                        final_status: "Failed",
                        errors: errors.clone(),
                        ..natural(i)
                    },
                    std::cmp::Ordering::Greater => never(),
                })
                .collect();
            (plans, pending_end + run * (f as u32 + 1), false)
        }
        Outcome::TimeOut => {
            let h = commands
                .iter()
                .position(|c| c.kind == "RunScript")
                .unwrap_or(0);
            let plans = (0..commands.len())
                .map(|i| match i.cmp(&h) {
                    std::cmp::Ordering::Less => natural(i),
                    std::cmp::Ordering::Equal => CommandPlan {
                        end: None,
                        ..natural(i)
                    },
                    std::cmp::Ordering::Greater => never(),
                })
                .collect();
            (plans, pending_end + run * h as u32 + timeout, false)
        }
        Outcome::Cancelled => {
            let at = pending_end + cancel_after.min(run * n as u32 / 2);
            ((0..commands.len()).map(natural).collect(), at, true)
        }
    }
}
