//! A blocking client for Microsoft Defender for Endpoint **live response**: read machine
//! actions, get the download link of a command's result
//! (`GetLiveResponseResultDownloadLink`) and download it safely, whatever its size.
//!
//! No async runtime: every call blocks the calling thread. A [`Client`] is cheap to
//! clone and can be shared between threads; clones share the token cache and the
//! client-side rate limiter, so together they keep to the API's quotas.
//!
//! # Get a RunScript transcript
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
//! # Download a GetFile result
//!
//! ```no_run
//! use mdlr::{Client, Credential, Destination, DownloadRequest};
//!
//! # fn main() -> mdlr::Result<()> {
//! # let client = Client::builder(Credential::token("t")).build()?;
//! let action_id = "988cc94e-7a8f-4b28-ab65-54970c5d5018";
//! let action = client.action(action_id)?;
//! action.result_type(action_id, 1)?; // fails unless command 1 has a result now
//! let mut request = DownloadRequest::new(Destination::Dir(".".into()), format!("{action_id}-1"));
//! request.gunzip = true; // GetFile results are gzip streams
//! let done = client.download_result(action_id, 1, &request)?;
//! println!("saved {}", done.path.display());
//! # Ok(()) }
//! ```
//!
//! # What the library never does
//!
//! It never reads environment variables or files it was not handed (the caller gathers
//! settings), never sends the bearer token anywhere but the API host, never prints or
//! logs a token, secret or SAS signature, and never leaves a partial file under a final
//! name.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod actions;
mod api;
mod auth;
mod base64;
mod batch;
mod cloud;
mod download;
mod error;
mod http;
mod library;
mod login;
mod machines;
mod md5;
mod model;
pub mod net;
mod secret;
mod transcript;
mod transfer;

pub use actions::{ActionQuery, LiveResponse};
pub use api::{Client, ClientBuilder, PollPolicy, check_action_id};
pub use auth::{ClientCertificate, Credential, LoginTokens, TokenSink};
pub use batch::{BatchEvent, BatchOptions, BatchStats, Counts, OnBusy, Outcome, Report, Target};
pub use cloud::{Cloud, Endpoints, check_url, normalize_api_base};
pub use download::{
    Destination, DownloadRequest, Downloaded, OnProgress, Progress, ResultLink,
    disposition_file_name, safe_file_name, write_file,
};
pub use error::{Error, Result, TransportKind};
pub use http::{Event, Observer, RateLimit, RetryPolicy, Timeouts};
pub use library::{LibraryFile, LibraryUpload};
pub use login::{DeviceCode, DeviceLogin, TokenInfo};
pub use machines::{Machine, check_machine_id, is_machine_id};
pub use model::{
    ActionStatus, Command, CommandEntry, CommandStatus, CommandType, MachineAction, Param,
};
pub use secret::{Secret, redact_url};
pub use transcript::Transcript;
