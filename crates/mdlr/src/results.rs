//! Results: the client's methods that tie the service (an action, a fresh result link
//! whenever one is needed) to the download engine — transcripts read into memory, files
//! streamed to disk, and "the result of command N", whatever its kind — and the
//! [`Downloader`], the same engine for a bare link with no credential anywhere.

use std::sync::Arc;

use crate::api::Client;
use crate::blob::{Ask, BlobHost, RENEW_BEFORE};
use crate::download::{DownloadRequest, Downloaded, Gunzip};
use crate::error::{Error, Result};
use crate::http::{Http, TransportConfig};
use crate::link::ResultLink;
use crate::model::{CommandType, MachineAction};
use crate::secret::Redactor;
use crate::transcript::Transcript;
use crate::transfer::{Links, transfer};

/// What a command left behind, as [`Client::result`] delivers it.
#[derive(Debug)]
#[non_exhaustive]
pub enum CommandResult {
    /// A `RunScript`'s transcript, parsed, with its bytes as the result host held them.
    Transcript {
        /// The parsed transcript.
        transcript: Transcript,
        /// The transcript's bytes, unchanged.
        bytes: Vec<u8>,
    },
    /// A `GetFile`'s file (or a result of a kind the library does not know), saved as
    /// the download request said.
    File(Downloaded),
    /// A `PutFile`: it has no result.
    NoResult,
}

/// Times a result link refused although its command has ended is asked for again.
const LINK_SETTLE_RETRIES: u32 = 3;

/// Whether a refused result link may just be too early: the command says it has
/// completed (or the service says "not found") while the link endpoint refuses.
fn refused_though_done(e: &Error) -> bool {
    match e {
        Error::NotFinished { command_status, .. } => {
            *command_status == Some(crate::CommandStatus::Completed)
        }
        Error::Api { status: 404, .. } => true,
        _ => false,
    }
}

impl Client {
    /// The raw bytes behind a result link, read into memory (up to the transcript limit).
    pub fn result_bytes(&self, link: &ResultLink) -> Result<Vec<u8>> {
        BlobHost { http: self.http() }
            .get(link, Ask::From(0), None)?
            .read_limited(self.transcript_limit(), "transcript")
    }

    /// Gets the RunScript transcript of command `index`: a fresh link, the download and
    /// the tolerant parse. A link refused by the result host is renewed once; asked for
    /// too early, it is [`Error::NotFinished`].
    pub fn transcript(&self, action_id: &str, index: u32) -> Result<Transcript> {
        Transcript::parse(&self.transcript_bytes(action_id, index)?)
    }

    /// The raw transcript bytes of command `index`, as the result host holds them.
    pub fn transcript_bytes(&self, action_id: &str, index: u32) -> Result<Vec<u8>> {
        self.with_fresh_link(action_id, index, |link| self.result_bytes(link))
    }

    /// Downloads a result link into a file as `request` says. The link is not renewed
    /// when it expires (there is no action to ask for another); see
    /// [`Client::download_result`] for that, and [`Downloader`](crate::Downloader) to
    /// download a link without any credential.
    ///
    /// The bearer token is never sent to the link's host. Redirects are followed only
    /// to URLs that pass the same checks as the link.
    pub fn download(&self, link: &ResultLink, request: &DownloadRequest) -> Result<Downloaded> {
        transfer(self.http(), Links::fixed(link.clone()), request, None)
    }

    /// Gets a fresh link for command `index` and downloads it as `request` says: a
    /// dropped or stalled connection continues from the byte it reached, a link the
    /// result host refuses (expired) or that is about to expire is renewed, and a rerun
    /// continues from the partial file an interrupted run left.
    ///
    /// With [`Gunzip::Auto`] (the default) the action is read first, to un-gzip a
    /// `GetFile` result and nothing else; [`Gunzip::On`] or [`Gunzip::Off`] spare that
    /// call.
    pub fn download_result(
        &self,
        action_id: &str,
        index: u32,
        request: &DownloadRequest,
    ) -> Result<Downloaded> {
        // Spare the quota calls when the answer is known already.
        refuse_existing(request)?;
        let kind = match request.gunzip_setting() {
            Gunzip::Auto => Some(self.action(action_id)?.result_type(index)?),
            _ => None,
        };
        self.download_command(action_id, index, kind.as_ref(), request)
    }

    /// The result of command `index` of an action, whatever its kind: reads the action
    /// and hands it to [`Client::result_of`].
    pub fn result(
        &self,
        action_id: &str,
        index: u32,
        request: &DownloadRequest,
    ) -> Result<CommandResult> {
        self.result_of(&self.action(action_id)?, index, request)
    }

    /// The result of command `index` of `action` (as read just before): a `RunScript`'s
    /// transcript in memory, a `GetFile`'s file saved as `request` says (un-gzipped
    /// unless it says otherwise), [`CommandResult::NoResult`] for a `PutFile`.
    ///
    /// # Errors
    ///
    /// What [`MachineAction::result_type`] says when the command has no result now
    /// ([`Error::NotFinished`], [`Error::CommandFailed`], [`Error::NoSuchCommand`]), and
    /// those of the download.
    pub fn result_of(
        &self,
        action: &MachineAction,
        index: u32,
        request: &DownloadRequest,
    ) -> Result<CommandResult> {
        let kind = action.result_type(index)?;
        let action_id = action.id.as_deref().unwrap_or_default();
        match kind {
            CommandType::PutFile => Ok(CommandResult::NoResult),
            CommandType::RunScript => {
                let bytes = self.transcript_bytes(action_id, index)?;
                Ok(CommandResult::Transcript {
                    transcript: Transcript::parse(&bytes)?,
                    bytes,
                })
            }
            kind => self
                .download_command(action_id, index, Some(&kind), request)
                .map(CommandResult::File),
        }
    }

    /// Downloads command `index`'s result; `kind` (when known) settles
    /// [`Gunzip::Auto`] and the fallback name.
    fn download_command(
        &self,
        action_id: &str,
        index: u32,
        kind: Option<&CommandType>,
        request: &DownloadRequest,
    ) -> Result<Downloaded> {
        let gunzip = match request.gunzip_setting() {
            Gunzip::On => true,
            Gunzip::Off => false,
            _ => kind == Some(&CommandType::GetFile),
        };
        let extension = match kind {
            Some(CommandType::RunScript) => ".json",
            _ if gunzip => "",
            _ => ".gz",
        };
        let request = request.with_default_name(format!("{action_id}-{index}{extension}"));
        refuse_existing(&request)?;
        let link = self.settled_link(action_id, index)?;
        self.transfer_renewing(
            link,
            || self.result_link(action_id, index),
            &request,
            gunzip,
        )
    }

    /// Downloads `link` as `request` says, asking `refresh` for a new link when it
    /// expires (or is about to).
    fn transfer_renewing(
        &self,
        link: ResultLink,
        mut refresh: impl FnMut() -> Result<ResultLink> + Send,
        request: &DownloadRequest,
        gunzip: bool,
    ) -> Result<Downloaded> {
        let margin = self.renew_links_before().unwrap_or(RENEW_BEFORE);
        transfer(
            self.http(),
            Links::renewable(link, &mut refresh, margin),
            request,
            Some(gunzip),
        )
    }

    /// Downloads the investigation package a collection gathered (see
    /// [`Client::collect_investigation_package`]) as `request` says — a zip, kept as it
    /// is unless the request says otherwise — with the same streaming, resume and link
    /// renewal as any result. The action is read first: the link, whose quota is small
    /// (2 a minute, 120 an hour), is asked for only when the action has succeeded
    /// ([`Error::ActionNotSucceeded`] otherwise); a fresh one when it expires.
    pub fn download_package(
        &self,
        action_id: &str,
        request: &DownloadRequest,
    ) -> Result<Downloaded> {
        refuse_existing(request)?;
        let action = self.action(action_id)?;
        self.package_of(&action, request)
    }

    /// The investigation package of `action` (a collection, as read just before, for
    /// instance by a batch), downloaded as `request` says: like
    /// [`Client::download_package`] without reading the action again.
    ///
    /// # Errors
    ///
    /// [`Error::ActionNotSucceeded`] unless `action` has succeeded (no link is asked
    /// for then), and those of the download.
    pub fn package_of(
        &self,
        action: &MachineAction,
        request: &DownloadRequest,
    ) -> Result<Downloaded> {
        action.package_ready()?;
        let action_id = action.id.as_deref().unwrap_or_default();
        let gunzip = request.gunzip_setting() == Gunzip::On;
        let request = request.with_default_name(format!("{action_id}-package.zip"));
        refuse_existing(&request)?;
        let link = self.package_link(action_id)?;
        self.transfer_renewing(link, || self.package_link(action_id), &request, gunzip)
    }

    /// [`Client::result_link`] for a command that has finished, asked again a few times
    /// with backoff when the service refuses it all the same (a 400 though the command
    /// says `Completed`, or a 404): just after a command ends, the service's link
    /// endpoint may not know it yet. Only then is the refusal believed.
    fn settled_link(&self, action_id: &str, index: u32) -> Result<ResultLink> {
        let mut attempt = 0;
        loop {
            match self.result_link(action_id, index) {
                Err(e) if attempt < LINK_SETTLE_RETRIES && refused_though_done(&e) => {
                    let delay = self.http().backoff(attempt);
                    let path = format!(
                        "machineactions/{action_id}/GetLiveResponseResultDownloadLink(index={index})"
                    );
                    self.http().emit(crate::Event::Retry {
                        url: self.endpoints().api_url(&path),
                        reason: format!("no result yet though command {index} has ended"),
                        delay,
                    });
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Runs `f` with a fresh link; when the result host answers 403 (an expired or
    /// refused link), asks for a new link and runs `f` once more.
    fn with_fresh_link<T>(
        &self,
        action_id: &str,
        index: u32,
        f: impl Fn(&ResultLink) -> Result<T>,
    ) -> Result<T> {
        let link = self.settled_link(action_id, index)?;
        match f(&link) {
            Err(Error::Blob { status: 403, .. }) => f(&self.result_link(action_id, index)?),
            other => other,
        }
    }
}

/// Downloads bare result links — from the portal, from another tool, from
/// [`ResultLink::expose`] — with the same streaming, resume, verification and safe
/// naming as [`Client::download_result`](crate::Client::download_result), and no
/// credential at all: nothing but the link's host is ever contacted.
///
/// A dropped or stalled connection continues from the byte it reached, and a rerun
/// continues from the partial file an earlier run left; an expired link cannot be
/// renewed without the API, so it fails ([`ErrorKind::PermissionDenied`]) and leaves
/// what was received for a rerun with a fresh link.
///
/// ```no_run
/// use mdlr::{DownloadRequest, Downloader, ResultLink, TransportConfig};
///
/// # fn main() -> mdlr::Result<()> {
/// let downloader = Downloader::new(TransportConfig::new())?;
/// let link = ResultLink::new("https://x.blob.core.windows.net/c/b?se=...&sig=...");
/// let done = downloader.download(&link, &DownloadRequest::to_dir("."))?;
/// println!("saved {}", done.path.display());
/// # Ok(()) }
/// ```
///
/// [`ErrorKind::PermissionDenied`]: crate::ErrorKind::PermissionDenied
#[derive(Clone)]
pub struct Downloader {
    http: Arc<Http>,
}

impl std::fmt::Debug for Downloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader").finish_non_exhaustive()
    }
}

impl Downloader {
    /// A downloader that connects as `transport` says.
    pub fn new(transport: TransportConfig) -> Result<Downloader> {
        Ok(Downloader {
            http: Arc::new(Http::new(&transport, Vec::new(), Redactor::default())?),
        })
    }

    /// Downloads `link` as `request` says (see [`Downloader`]). Without a name from
    /// the host or the request, the file is named after the blob. With
    /// [`Gunzip::Auto`], a name ending in `.gz` means a gzip stream to un-gzip.
    pub fn download(&self, link: &ResultLink, request: &DownloadRequest) -> Result<Downloaded> {
        let blob_name = link.blob().rsplit('/').next().unwrap_or_default();
        let request = request.with_default_name(crate::encode::percent_decode(blob_name));
        transfer(&self.http, Links::fixed(link.clone()), &request, None)
    }
}

/// [`Error::Exists`] for a file destination that exists and may not be replaced: known
/// before any quota is spent on a link.
fn refuse_existing(request: &DownloadRequest) -> Result<()> {
    match request.existing_file() {
        Some(path) => Err(Error::Exists {
            path: path.to_owned(),
        }),
        None => Ok(()),
    }
}
