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
//! use mdlr::{Client, Credential, DownloadRequest};
//!
//! # fn main() -> mdlr::Result<()> {
//! # let client = Client::builder(Credential::token("t")).build()?;
//! let action_id = "988cc94e-7a8f-4b28-ab65-54970c5d5018";
//! // Un-gzipped because command 1 is a GetFile; saved under the file's own name.
//! let done = client.download_result(action_id, 1, &DownloadRequest::to_dir("."))?;
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
// Layer 4, results: the download engine and the client's result methods.
mod blob;
mod download;
mod results;
mod transfer;
// Layer 5, batch: written against the public API.
mod batch;

pub use actions::LiveResponse;
pub use api::{Client, ClientBuilder, PollPolicy};
pub use auth::{ClientCertificate, Credential, LoginTokens, TokenSink};
pub use batch::{Batch, BatchEvent, BatchOptions, BatchStats, Counts, OnBusy, Outcome, Report};
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
