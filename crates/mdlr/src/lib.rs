//! A blocking client for Microsoft Defender for Endpoint **live response**: start
//! commands on machines, wait for them, and get their results back — a script's
//! transcript, or a collected file streamed to disk whatever its size — within the
//! service's quotas, without ever losing a byte or showing a secret.
//!
//! No async runtime: every call blocks the calling thread, and concurrency is threads
//! sharing one [`Client`]. The library never reads environment variables or files it
//! was not handed: your program gathers its settings and passes them in.
//!
//! This page is the guide. It covers, in order: a [quick start](#quick-start), [the
//! result of a command](#the-result-of-a-command), [downloads](#downloads) (and links
//! from elsewhere), [running commands on machines](#running-commands-on-machines),
//! [signing in](#signing-in), [clouds](#clouds-and-hosts), [proxies and
//! TLS](#proxies-and-tls), [errors](#errors), [quotas and threads](#quotas-and-threads),
//! [what resume guarantees](#what-resume-guarantees), and [what the library never
//! does](#what-the-library-never-does). Three complete programs are in
//! `crates/mdlr/examples/`: `transcript`, `download` and `batch`.
//!
//! # Quick start
//!
//! A client needs a [`Credential`]; everything else has a default (the commercial
//! cloud, the documented quotas, retries with backoff).
//!
//! ```no_run
//! use mdlr::{Client, Cloud, Credential};
//!
//! # fn main() -> mdlr::Result<()> {
//! let credential = Credential::client_secret("contoso.onmicrosoft.com", "app-id", "app-secret");
//! let client = Client::builder(credential).cloud(Cloud::Eu).build()?;
//! let transcript = client.transcript("988cc94e-7a8f-4b28-ab65-54970c5d5018", 0)?;
//! print!("{}", transcript.script_output);
//! eprint!("{}", transcript.script_errors);
//! std::process::exit(transcript.exit_status().into());
//! # }
//! ```
//!
//! [`Client::transcript`] asks the API for a fresh result link
//! (`GetLiveResponseResultDownloadLink`), downloads it from Azure Blob Storage without
//! the bearer token, and parses the transcript tolerantly (Microsoft's own example is
//! not strict JSON). Asked for while the script still runs, it fails with
//! [`Error::NotFinished`] — not with the API's bare 400.
//!
//! # The result of a command
//!
//! What a command leaves depends on its type, and the action says which:
//! [`MachineAction::result_type`] answers "does command N have a result now, and of what
//! kind", or says why not ([`Error::NotFinished`] while it runs, [`Error::CommandFailed`]
//! when it failed, was cancelled or timed out, [`Error::NoSuchCommand`]).
//! [`Client::result`] does the whole job: it reads the action and returns a
//! [`CommandResult`] — a RunScript's transcript in memory, a GetFile's file on disk
//! (un-gzipped: the service stores it as a gzip stream), or nothing for a PutFile.
//!
//! ```no_run
//! use mdlr::{CommandResult, DownloadRequest};
//!
//! # fn main() -> mdlr::Result<()> {
//! # let client = mdlr::Client::builder(mdlr::Credential::token("t")).build()?;
//! let action_id = "988cc94e-7a8f-4b28-ab65-54970c5d5018";
//! match client.result(action_id, 1, &DownloadRequest::to_dir("evidence"))? {
//!     CommandResult::Transcript { transcript, .. } => print!("{}", transcript.script_output),
//!     CommandResult::File(done) => println!("saved {}", done.path.display()),
//!     CommandResult::NoResult => println!("a PutFile has no result"),
//!     _ => {}
//! }
//! # Ok(()) }
//! ```
//!
//! To wait for a command first, [`Client::wait_for_command`] polls the action until
//! the command has a result or can have none; [`Client::result_of`] then takes the
//! action it returned, saving a call. [`Client::wait_for`] waits for any condition.
//!
//! # Downloads
//!
//! A [`DownloadRequest`] says where a result goes and how:
//!
//! - [`DownloadRequest::to_dir`]: into a directory, under the name the result host
//!   gives (`Content-Disposition`), reduced to a plain file name that stays inside the
//!   directory (no separators, no `..`, nothing hidden); without a usable name,
//!   `ACTION_ID-INDEX` (or [`DownloadRequest::fallback_name`]);
//! - [`DownloadRequest::to_file`]: into exactly this file;
//! - [`DownloadRequest::gunzip`]: [`Gunzip::Auto`] (the default) un-gzips a GetFile
//!   result and nothing else; [`Gunzip::Off`] keeps the `.gz` as the host sent it;
//! - [`DownloadRequest::overwrite`]: an existing file is never replaced unless asked
//!   ([`Error::Exists`] instead — decided before any quota is spent on a link);
//! - [`DownloadRequest::on_progress`]: called as bytes arrive, with a [`Progress`].
//!
//! [`Client::download_result`] downloads command N's result as a request says, getting
//! fresh links whenever the old one expires. Memory stays constant at any size: the
//! body is streamed to a temporary file beside the target, checked, synced and renamed.
//!
//! ```no_run
//! use mdlr::{DownloadRequest, Gunzip};
//!
//! # fn main() -> mdlr::Result<()> {
//! # let client = mdlr::Client::builder(mdlr::Credential::token("t")).build()?;
//! let request = DownloadRequest::to_file("hosts.gz")
//!     .gunzip(Gunzip::Off)
//!     .overwrite(true)
//!     .on_progress(|p| eprint!("\r{} of {:?} bytes", p.received, p.total));
//! let done = client.download_result("988cc94e-7a8f-4b28-ab65-54970c5d5018", 1, &request)?;
//! eprintln!("\n{} bytes received, MD5 checked: {}", done.received, done.md5_checked);
//! # Ok(()) }
//! ```
//!
//! ## A link from elsewhere
//!
//! A result link from the portal, another tool or [`ResultLink::expose`] downloads with
//! the same engine and no credential at all: [`Downloader`] needs only a
//! [`TransportConfig`]. It resumes, verifies and names files exactly as above; what it
//! cannot do is renew an expired link (there is no API to ask), so that fails with
//! [`ErrorKind::PermissionDenied`] and leaves the bytes received for a rerun with a fresh
//! link. [`Gunzip::Auto`] un-gzips when the host's name (or the blob's) ends in `.gz`.
//!
//! ```no_run
//! use mdlr::{DownloadRequest, Downloader, ResultLink, TransportConfig};
//!
//! # fn main() -> mdlr::Result<()> {
//! let downloader = Downloader::new(TransportConfig::new())?;
//! let link = ResultLink::new("https://x.blob.core.windows.net/c/b?se=...&sig=...");
//! let done = downloader.download(&link, &DownloadRequest::to_dir("."))?;
//! println!("saved {}", done.path.display());
//! # Ok(()) }
//! ```
//!
//! # Running commands on machines
//!
//! A [`LiveResponse`] lists the commands of one action, in the order the service
//! requires (every PutFile, then the RunScript, then every GetFile).
//! [`Client::start_live_response`] starts it on one machine; [`Client::batch`] runs it
//! on many, within the quotas: at most 10 starts a minute, 100 API calls a minute and
//! 1500 an hour, and [`BatchOptions::max_in_flight`] unfinished actions at once (the
//! service limits concurrent sessions). A machine with a session already (see
//! [`Error::is_busy`]) is waited for, skipped or failed ([`OnBusy`]).
//!
//! Machines are named by id or by DNS name. [`Client::resolve_targets`] turns each into
//! exactly one machine, looking names up twenty to a call; a name that matches no
//! machine, or several (a reinstalled host keeps its old record for a while), fails the
//! whole call with [`Error::UnresolvedMachines`], listing the candidates — before
//! anything starts.
//!
//! ```no_run
//! use std::time::Duration;
//! use mdlr::{BatchOptions, CommandResult, DownloadRequest, LiveResponse, OnBusy, Outcome};
//!
//! # fn main() -> mdlr::Result<()> {
//! # let client = mdlr::Client::builder(mdlr::Credential::token("t")).build()?;
//! let targets = client.resolve_targets(&["host1.contoso.com", "host2.contoso.com"])?;
//! let request = LiveResponse::new("triage")
//!     .run_script("collect.ps1", "-Days 3")
//!     .get_file(r"C:\Temp\triage.zip");
//! let stats = client
//!     .batch(request)
//!     .targets(targets)
//!     .options(BatchOptions::default().on_busy(OnBusy::Skip).wait_timeout(Duration::from_secs(1800)))
//!     .for_each(|report| {
//!         // Called from a finisher thread as soon as this machine's action ends.
//!         let Some(action) = report.action.as_ref().filter(|_| matches!(report.outcome, Outcome::Ended)) else {
//!             println!("{}: {report}", report.target.name);
//!             return;
//!         };
//!         let dir = format!("evidence/{}", report.target.name);
//!         let _ = std::fs::create_dir_all(&dir);
//!         match client.result_of(action, 1, &DownloadRequest::to_dir(&dir)) {
//!             Ok(CommandResult::File(done)) => println!("{}: {}", report.target.name, done.path.display()),
//!             Ok(_) => {}
//!             Err(e) => println!("{}: {e}", report.target.name),
//!         }
//!     });
//! println!("{} started, {:.0?}", stats.started, stats.elapsed);
//! # Ok(()) }
//! ```
//!
//! [`Batch::collect`] returns every [`Report`] at the end instead; [`Batch::on_event`]
//! hears of starts, busy machines and progress as they happen, and [`Batch::resume`]
//! follows actions an earlier run started instead of starting them again. A start is
//! never retried once it may have reached the service: a retry could start a second
//! session.
//!
//! ## Investigation packages
//!
//! [`Client::collect_investigation_package`] starts a collection of a machine's
//! forensic state (a zip) as a machine action; [`Client::download_package`] (or
//! [`Client::package_of`] with an action already read) downloads it once the
//! collection has succeeded, with the same streaming, resume and link renewal as any
//! result. Its link has a quota of its own, 2 a minute and 120 an hour
//! ([`RateLimit::package_defaults`], [`ClientBuilder::package_limits`]), which the
//! client keeps across threads: a link is asked for only for a package that is there.
//! On many machines, [`BatchWork::investigation_package`] makes the batch start
//! collections instead of sessions (a collection already running makes a machine busy):
//!
//! ```no_run
//! # fn main() -> mdlr::Result<()> {
//! # let client = mdlr::Client::builder(mdlr::Credential::token("t")).build()?;
//! # let targets = Vec::new();
//! use mdlr::{BatchWork, DownloadRequest};
//! client
//!     .batch(BatchWork::investigation_package("case 4711"))
//!     .targets(targets)
//!     .for_each(|report| {
//!         if let Some(action) = &report.action {
//!             let saved = client.package_of(action, &DownloadRequest::to_dir("evidence"));
//!             println!("{}: {saved:?}", report.target.name);
//!         }
//!     });
//! # Ok(()) }
//! ```
//!
//! # Signing in
//!
//! Every [`Credential`] ends in one bearer token for the API, kept by the client,
//! renewed five minutes before it expires and once after a 401:
//!
//! | credential | how |
//! |---|---|
//! | [`Credential::token`] | a bearer token used as is (it cannot be renewed) |
//! | [`Credential::client_secret`] | an app registration's client id and secret |
//! | [`Credential::client_certificate`] | an app's certificate ([`ClientCertificate::from_pem`]): each token request carries a fresh RS256 assertion with the certificate's `x5t` |
//! | [`Credential::managed_identity`] | the Azure VM's identity, from the metadata service (never through a proxy) |
//! | [`Credential::azure_cli`] | `az account get-access-token` of the signed-in Azure CLI |
//! | [`Credential::login`] | a person's device-code sign-in ([`DeviceLogin`]), kept as [`LoginTokens`]; each rotated refresh token goes to your [`TokenSink`] to be kept |
//!
//! [`Client::token_info`] signs in and says what the token grants (tenant, app, roles,
//! expiry) — never the token itself. Application permissions: `Machine.LiveResponse` to
//! start sessions, `Machine.Read.All` to read actions, machines and result links,
//! `Library.Manage` for the library.
//!
//! ```no_run
//! use mdlr::{ClientCertificate, Credential};
//!
//! # fn main() -> mdlr::Result<()> {
//! let pem = std::fs::read("app.pem").map_err(|e| mdlr::Error::Io { path: "app.pem".into(), op: "read", source: e })?;
//! let credential = Credential::client_certificate("contoso.onmicrosoft.com", "app-id", ClientCertificate::from_pem(&pem)?);
//! let client = mdlr::Client::builder(credential).build()?;
//! let info = client.token_info()?;
//! println!("signed in to {:?} as app {:?} with {:?}", info.tenant, info.app_id, info.roles);
//! # Ok(()) }
//! ```
//!
//! # Clouds and hosts
//!
//! [`Cloud`] names the Microsoft clouds (commercial, the geographic hosts, GCC, GCC High,
//! DoD) and gives their [`Endpoints`]: API base, token authority and scope. Every one can
//! be overridden ([`ClientBuilder::endpoints`], [`Endpoints::with_api_base`]) — Microsoft
//! renames hosts, and tests point them at loopback. Plain `http://` is refused unless
//! the host is loopback, for the API, the authority and every download link.
//!
//! # Proxies and TLS
//!
//! [`TransportConfig`] says how requests leave the machine, for a client
//! ([`ClientBuilder::transport`]) and a [`Downloader`] alike: [`net::Proxies`] (per
//! scheme, with curl's `NO_PROXY` rules — build it from your own settings; the library
//! reads no proxy variable), extra CA certificates on top of the bundled Mozilla roots
//! ([`TransportConfig::add_root_certificate`], [`net::certificates_from_pem`]) for a
//! TLS-inspecting proxy or a private CA, [`Timeouts`] (connect, and per read: a stalled
//! transfer resumes after it), a [`RetryPolicy`], and an [`Event`] callback for logs.
//! The system's certificate store is never read.
//!
//! ```no_run
//! use std::time::Duration;
//! use mdlr::net::{Proxies, Proxy, certificates_from_pem};
//! use mdlr::{RetryPolicy, Timeouts, TransportConfig};
//!
//! # fn main() -> mdlr::Result<()> {
//! # let ca_pem = b"";
//! let proxies = Proxies::none()
//!     .https(Some(Proxy::new("http://proxy.corp:3128")?))
//!     .no_proxy("localhost,.corp");
//! let mut transport = TransportConfig::new()
//!     .proxies(proxies)
//!     .timeouts(Timeouts::new(Duration::from_secs(10), Duration::from_secs(120)))
//!     .retry_policy(RetryPolicy::with_retries(6))
//!     .on_event(|e| eprintln!("{e:?}"));
//! for der in certificates_from_pem(ca_pem)? {
//!     transport = transport.add_root_certificate(der);
//! }
//! # let _ = transport;
//! # Ok(()) }
//! ```
//!
//! # Errors
//!
//! One [`Error`] enum, `#[non_exhaustive]`. Each variant keeps what support and
//! scripts need: the HTTP status ([`Error::status`]), the API error code
//! ([`Error::code`]), the service's message, and the correlation id to quote to
//! Microsoft ([`Error::correlation_id`]). `Display` is one short sentence; causes come
//! through [`std::error::Error::source`]. What an error *means* is [`Error::kind`], an
//! [`ErrorKind`], decided by the library from the service's rules — so a program never
//! matches status codes or API codes itself. The `mdlr` command line maps each kind to
//! an exit status:
//!
//! | [`ErrorKind`] | when | `mdlr` exits |
//! |---|---|---|
//! | `Config` | insecure URL, unusable credential or settings | 78 |
//! | `InvalidInput` | a bad argument, or a request the API refused (400) | 64 |
//! | `Unauthenticated` | sign-in failed, or the API refused the token (401) | 77 |
//! | `PermissionDenied` | a missing permission (403), or the result host refused the link | 77 |
//! | `NotFound` | no such action, machine, command or result (404); a name that resolves to none or several machines | 66 |
//! | `Busy` | the machine has a live response session already ([`Error::is_busy`]) | 75 |
//! | `Throttled` | the quota is spent (429 after the retries) | 75 |
//! | `NotFinished` | the command has not finished ([`Error::is_not_finished`]) | 75 |
//! | `TimedOut` | the action timed out on the machine | 75 |
//! | `Failed` | the command failed or the action was cancelled | 69 |
//! | `Unavailable` | no answer: connection, DNS, TLS, 5xx after retries, a transfer cut short | 69 |
//! | `Malformed` | the service sent something its documentation does not promise (bad JSON, not a transcript, corrupt gzip, an MD5 mismatch) | 65 |
//! | `Exists` | the output file exists | 73 |
//! | `Io` | a local file could not be read or written | 74 |
//!
//! Transport failures also carry a [`TransportKind`] (DNS, proxy, untrusted
//! certificate, ...) for precise advice.
//!
//! # Quotas and threads
//!
//! The API allows 100 calls a minute and 1500 an hour per application and tenant, and
//! 10 session starts a minute. Every request waits for a client-side sliding-window
//! limiter ([`RateLimit::defaults`], [`RateLimit::start_defaults`]; change them with
//! [`ClientBuilder::rate_limits`] and [`ClientBuilder::start_limits`]). A call holds its
//! place in a window from the moment it is sent until its reply arrives, so latency
//! cannot make the service see more calls in a window than the limiter allowed. A 429
//! is waited out (`Retry-After`) and retried.
//!
//! [`Client`] is cheap to clone, and clones share the token cache and the limiters:
//! hand clones to as many threads as you like, and together they keep to the quotas.
//! The service counts calls per application and tenant, whichever process makes them;
//! separate clients (or processes) keep to the quotas together only when they share a
//! state file: [`ClientBuilder::shared_quotas`] names one, and
//! [`ClientBuilder::shared_quotas_in`] a directory where clients of one application on
//! one tenant meet in the same file. It is off by default (an embedder may coordinate
//! its workers already); `mdlr` turns it on. A program that resumes an earlier
//! process's work, that did not share a file, tells the limiter with
//! [`Client::record_earlier_starts`]. The quotas a client keeps to are
//! [`Client::api_quotas`], [`Client::start_quotas`] and [`Client::package_quotas`].
//!
//! ```no_run
//! # fn main() -> mdlr::Result<()> {
//! use mdlr::{Client, Credential, Secret};
//!
//! // Every process of this user running this with the same app on the same tenant
//! // keeps to one set of quotas.
//! let client = Client::builder(Credential::client_secret(
//!     "contoso.onmicrosoft.com",
//!     "00000000-0000-0000-0000-000000000000",
//!     Secret::new("..."),
//! ))
//! .shared_quotas_in("/run/user/1000/my-tool")
//! .build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! Looking at unfinished actions is where a program can spend the quotas best or
//! worst. A batch looks at a fresh action a second after its start and then as often
//! as the quotas allow once its own starts and result links are provided for:
//! [`Client::poll_interval`] turns what is left to do (a [`PollPlan`]) and the calls
//! made recently ([`Client::recent_api_calls`]) into that pace, and a poller of your
//! own can ask it the same. [`Client::wait_for`] looks at once, then after
//! [`PollPolicy::first`], then less often up to [`PollPolicy::max`], and never faster
//! than `poll_interval` allows for one action: when many threads wait at once, the
//! shared limiter holds all their calls together to the quotas, and each one's looks
//! slow down as the others spend.
//!
//! # What resume guarantees
//!
//! - **No partial file under a final name.** A download is written beside its target as
//!   `.NAME.mdlr-part` and moved into place only when complete and verified: its length
//!   against `Content-Length`, the blob's `Content-MD5` when the host gives one, and for
//!   a gzip stream its CRC-32 and length. Without [`DownloadRequest::overwrite`] the move
//!   never replaces a file, even one that appeared during the download.
//! - **No byte lost, none mixed.** A dropped, stalled or short connection continues with
//!   `Range` from the byte it reached, with `If-Match` on the blob's ETag: a blob that
//!   changed is never spliced onto the old bytes. A link the host refuses (expired) is
//!   renewed from the API and the download goes on from the same byte; links are also
//!   renewed five minutes before their `se` expiry, measured on our clock.
//! - **A rerun continues.** The bytes received stay beside the target
//!   (`.NAME.gz.mdlr-part` when un-gzipping, with `.NAME.mdlr-part.json` naming the
//!   blob, its ETag and length), so a process killed mid-download continues from them
//!   when the same download is asked for again — with a fresh link, too, when the blob is
//!   the same. Only bytes that can never become the file (corrupt gzip, an MD5 mismatch,
//!   a changed blob) are thrown away.
//!
//! # What the library never does
//!
//! - It never reads environment variables or files it was not handed.
//! - It never sends the bearer token anywhere but the API host: not to the result host,
//!   a redirect target, or a next page on another host.
//! - It never shows a token, a client secret, a refresh token, a client assertion or a
//!   SAS signature: types holding secrets print `[redacted]` in `Debug`, URLs in
//!   [`Event`]s and errors are redacted, and every error built from a reply has each
//!   secret the client knows taken out (a careless service may quote the request back).
//! - It never leaves a partial file under a final name, and never panics on anything the
//!   network sends.
//! - It never spawns an async runtime or a background thread that outlives a call.
//!
//! The crate is layered — values, transport, identity, service, results, batch, each
//! module importing only from below; `ARCHITECTURE.md` in the repository has the map.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

// Layer 0, values: what the service sends and what the library decides about it.
pub mod cloud;
mod encode;
mod error;
pub mod files;
pub mod ids;
mod link;
mod md5;
mod model;
mod rules;
pub mod secret;
mod time;
mod transcript;
// Layer 1, transport: the only layer that sends requests.
mod http;
pub mod net;
mod quota;
mod quota_file;
mod reply;
// Layer 2, identity: signing in.
mod auth;
mod jwt;
mod login;
// Layer 3, service: one method per API call.
mod actions;
mod api;
mod library;
mod machines;
mod odata;
mod packages;
// Layer 4, results: the download engine and the client's result methods.
mod blob;
mod download;
mod results;
mod transfer;
// Layer 5, batch: written against the public API.
mod batch;

pub use actions::LiveResponse;
pub use api::{Client, ClientBuilder, PollPlan, PollPolicy};
pub use auth::{ClientCertificate, Credential, LoginTokens, TokenSink};
pub use batch::{
    Batch, BatchEvent, BatchOptions, BatchStats, BatchWork, Counts, Deferral, OnBusy, Outcome,
    Report,
};
pub use cloud::{Cloud, Endpoints};
pub use download::{Destination, DownloadRequest, Downloaded, Gunzip, Progress};
pub use error::{Error, ErrorKind, Result, TransportKind};
pub use http::{Event, Observer, RetryPolicy, Timeouts, TransportConfig};
pub use library::{LibraryFile, LibraryUpload};
pub use link::ResultLink;
pub use login::{DeviceCode, DeviceLogin, TokenInfo};
pub use machines::Target;
pub use model::{
    ActionStatus, Command, CommandEntry, CommandStatus, CommandType, Machine, MachineAction, Param,
};
pub use odata::ActionQuery;
pub use quota::RateLimit;
pub use results::{CommandResult, Downloader};
pub use secret::Secret;
pub use transcript::Transcript;
