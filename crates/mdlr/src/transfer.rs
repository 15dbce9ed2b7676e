//! Result downloads that finish whatever happens on the way: a dropped or stalled
//! connection continues with `Range` from the byte it reached (with `If-Match`, so a
//! changed blob is never mixed in), an expired link is renewed and the download goes on
//! from the same byte, and a rerun after the process died continues from the partial
//! file it left.
//!
//! On disk, beside the final name `NAME`:
//! - `.NAME.mdlr-part` — the file being written (un-gzipped when asked);
//! - `.NAME.gz.mdlr-part` — when un-gzipping, the bytes as received, so that a rerun can
//!   rebuild the decoder's state locally and continue the transfer where it stopped;
//! - `.NAME.mdlr-part.json` — what the partial bytes are: the blob's path, ETag and
//!   length. A rerun continues only when all three still match.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

use crate::api::{Client, blob_error, resolve_location};
use crate::base64::decode as base64_decode;
use crate::cloud::check_url;
use crate::download::{self, Destination, DownloadRequest, Downloaded, ResultLink};
use crate::error::{Error, Result};
use crate::http::{Event, Request, Response};
use crate::md5::Md5;
use crate::secret::redact_url;

/// Size of the copy buffer.
const BUFFER: usize = 512 * 1024;
/// A link that expires sooner than this is renewed before it is used (clocks drift).
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);
/// How long a result link lives (SPEC A4).
const LINK_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// A link younger than this is never renewed ahead of time: a clock far off from the
/// host's must not turn every use into a renewal (a refused link is renewed anyway).
const MIN_AGE_TO_RENEW: Duration = Duration::from_secs(60);
/// Redirects followed from a result link.
const MAX_REDIRECTS: usize = 5;

/// Where the links come from: the one we have, and a way to get a fresh one.
pub(crate) struct Links<'a> {
    current: ResultLink,
    refresh: Option<&'a dyn Fn() -> Result<ResultLink>>,
    /// When to renew ahead of expiry, by our clock.
    renew_at: Instant,
    obtained: Instant,
}

/// When to renew `link` obtained now: `EXPIRY_MARGIN` before its `se`, measured on our
/// clock from now (so a constant offset between the clocks does not matter), and never
/// later than its documented lifetime allows.
fn renew_at(link: &ResultLink) -> Instant {
    let now = Instant::now();
    let left = link
        .expires_at()
        .and_then(|t| t.duration_since(SystemTime::now()).ok())
        .filter(|d| *d > MIN_AGE_TO_RENEW)
        .unwrap_or(LINK_LIFETIME)
        .min(LINK_LIFETIME);
    now + left.saturating_sub(EXPIRY_MARGIN)
}

impl<'a> Links<'a> {
    pub(crate) fn new(
        current: ResultLink,
        refresh: Option<&'a dyn Fn() -> Result<ResultLink>>,
    ) -> Links<'a> {
        Links {
            renew_at: renew_at(&current),
            obtained: Instant::now(),
            current,
            refresh,
        }
    }

    /// Renews the link; `false` when there is no way to.
    fn renew(&mut self) -> Result<bool> {
        match self.refresh {
            Some(f) => {
                self.current = f()?;
                self.renew_at = renew_at(&self.current);
                self.obtained = Instant::now();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn expiring(&self) -> bool {
        self.refresh.is_some()
            && self.obtained.elapsed() >= MIN_AGE_TO_RENEW
            && Instant::now() >= self.renew_at
    }
}

/// What the partial bytes on disk are.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct PartMeta {
    /// The blob's URL without its query (no signature).
    blob: String,
    etag: Option<String>,
    length: Option<u64>,
}

fn blob_path(link: &ResultLink) -> String {
    link.expose()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned()
}

impl Client {
    /// Downloads a result, resuming and renewing links as needed (see the module docs).
    pub(crate) fn transfer(
        &self,
        mut links: Links<'_>,
        request: &DownloadRequest,
    ) -> Result<Downloaded> {
        if let Destination::Dir(dir) = &request.destination
            && !dir.is_dir()
        {
            return Err(Error::io(
                dir,
                "write into",
                io::Error::new(io::ErrorKind::NotFound, "not a directory"),
            ));
        }
        if let Destination::File(path) = &request.destination
            && !request.overwrite
            && path.exists()
        {
            return Err(Error::Exists { path: path.clone() });
        }
        if links.expiring() {
            links.renew()?;
        }
        // When an earlier run may have left bytes, ask for the blob's first byte only:
        // the reply names the file and the blob, and the download then starts where
        // those bytes end instead of sending the whole blob from the start again.
        let probe = partial_may_exist(request);
        let first = self.open_blob(&mut links, 0, None, probe)?;
        let ranged = first.status() == 206;
        let disposition = first.header("content-disposition").map(str::to_owned);
        let path = download::final_path(request, disposition.as_deref());
        if !request.overwrite && path.exists() {
            return Err(Error::Exists { path });
        }
        let meta = PartMeta {
            blob: blob_path(&links.current),
            etag: first.header("etag").map(str::to_owned),
            length: if ranged {
                first
                    .header("content-range")
                    .and_then(|r| r.rsplit('/').next())
                    .and_then(|t| t.trim().parse().ok())
            } else {
                first.content_length()
            },
        };
        // A ranged reply's Content-MD5 is the range's; the blob's is in its own header.
        let md5 = (if ranged {
            None
        } else {
            first.header("content-md5")
        })
        .or(first.header("x-ms-blob-content-md5"))
        .and_then(base64_decode)
        .filter(|d| d.len() == 16);
        let parts = Parts::beside(&path, request.gunzip);
        let resume_from = parts.resumable(&meta);
        let mut source = Source {
            client: self,
            links,
            reader: None,
            offset: resume_from,
            total: meta.length,
            etag: meta.etag.clone(),
            tee: None,
            md5: md5.is_some().then(Md5::new),
            stalls: 0,
            on_progress: request.on_progress.clone(),
            resumed_from: resume_from,
        };
        source.report();
        if resume_from == 0 {
            parts.start(&meta)?;
            if !ranged {
                source.reader = Some(Box::new(first.into_reader()));
            }
        } else {
            // The partial bytes say where to go on from; this reply is not needed.
            drop(first);
            if md5.is_some() {
                source.md5 = Some(parts.hash_raw(resume_from)?);
            }
        }
        let outcome = self.write_parts(&parts, &mut source, request.gunzip, resume_from);
        match outcome {
            Ok(written) => {
                let received = source.offset;
                if let Some(expected) = meta.length
                    && received != expected
                {
                    return Err(Error::Incomplete { expected, received });
                }
                if let (Some(want), Some(got)) = (md5, &source.md5)
                    && got.clone().finish()[..] != want[..]
                {
                    parts.discard_all();
                    return Err(Error::malformed(
                        "download",
                        "its MD5 differs from the Content-MD5 the result host gave",
                    ));
                }
                download::publish(&parts.out, &path, request.overwrite)?;
                parts.finish();
                Ok(Downloaded {
                    path,
                    received,
                    written,
                    original_name: disposition
                        .as_deref()
                        .and_then(download::disposition_file_name),
                })
            }
            Err(e) => {
                match &e {
                    // Bytes that cannot become the file are no use to a rerun.
                    Error::Malformed { .. } => parts.discard_all(),
                    _ => parts.discard_output(),
                }
                Err(e)
            }
        }
    }

    /// Streams the source into the part files; returns the bytes written to the file.
    fn write_parts(
        &self,
        parts: &Parts,
        source: &mut Source<'_, '_>,
        gunzip: bool,
        resume_from: u64,
    ) -> Result<u64> {
        if !gunzip {
            let mut out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&parts.out)
                .map_err(|e| Error::io(&parts.out, "open", e))?;
            out.set_len(resume_from)
                .and_then(|()| out.seek(SeekFrom::End(0)).map(|_| ()))
                .map_err(|e| Error::io(&parts.out, "write", e))?;
            copy(source, &mut out, &parts.out, false)?;
            out.sync_all()
                .map_err(|e| Error::io(&parts.out, "write", e))?;
            return Ok(source.offset);
        }
        let raw = parts.raw.as_deref().unwrap_or(&parts.out);
        let mut tee = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(raw)
            .map_err(|e| Error::io(raw, "open", e))?;
        tee.set_len(resume_from)
            .and_then(|()| tee.seek(SeekFrom::End(0)).map(|_| ()))
            .map_err(|e| Error::io(raw, "write", e))?;
        source.tee = Some((tee, raw.to_owned()));
        let earlier = File::open(raw)
            .map_err(|e| Error::io(raw, "read", e))?
            .take(resume_from);
        let input = BufReader::with_capacity(BUFFER, earlier.chain(&mut *source));
        let mut decoder = MultiGzDecoder::new(input);
        let mut out = File::create(&parts.out).map_err(|e| Error::io(&parts.out, "create", e))?;
        let written = copy(&mut decoder, &mut out, &parts.out, true)?;
        drop(decoder);
        out.sync_all()
            .map_err(|e| Error::io(&parts.out, "write", e))?;
        if let Some((tee, raw)) = &source.tee {
            tee.sync_all().map_err(|e| Error::io(raw, "write", e))?;
        }
        Ok(written)
    }

    /// GETs the blob from `offset` (with `If-Match` when resuming), renewing the link
    /// once if the host refuses it, following checked redirects.
    fn open_blob(
        &self,
        links: &mut Links<'_>,
        offset: u64,
        etag: Option<&str>,
        first_byte: bool,
    ) -> Result<Response> {
        let mut renewed = false;
        loop {
            let got = if first_byte {
                self.probe_blob(&links.current)
            } else {
                self.get_blob(&links.current, offset, etag)
            };
            match got {
                Err(Error::Blob { status: 403, .. }) if !renewed && links.renew()? => {
                    renewed = true;
                }
                other => return other,
            }
        }
    }

    pub(crate) fn get_blob(
        &self,
        link: &ResultLink,
        offset: u64,
        etag: Option<&str>,
    ) -> Result<Response> {
        let mut headers = Vec::new();
        if offset > 0 {
            headers.push(("Range", format!("bytes={offset}-")));
            if let Some(tag) = etag {
                headers.push(("If-Match", tag.to_owned()));
            }
        }
        let resp = self.blob_request(link, headers)?;
        match resp.status() {
            200 if offset == 0 => Ok(resp),
            206 if offset > 0 => {
                let start = resp
                    .header("content-range")
                    .and_then(|r| r.trim().strip_prefix("bytes "))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if start != Some(offset) {
                    return Err(Error::malformed(
                        "download",
                        format!("asked for bytes from {offset}, got a range from {start:?}"),
                    ));
                }
                Ok(resp)
            }
            200 => Err(Error::malformed(
                "download",
                format!(
                    "the result host ignored the request to continue from byte {offset}, \
                     so the download cannot go on"
                ),
            )),
            412 => Err(Error::malformed(
                "download",
                "the result changed on the host while it was being downloaded; run again",
            )),
            _ => Err(self.scrub(blob_error(resp, &self.secrets()))),
        }
    }

    /// GETs the blob's first byte: its headers name the file, the blob and its length.
    /// A host that ignores the range sends the whole blob, which serves as well.
    fn probe_blob(&self, link: &ResultLink) -> Result<Response> {
        let resp = self.blob_request(link, vec![("Range", "bytes=0-0".to_owned())])?;
        match resp.status() {
            200 | 206 => Ok(resp),
            // An empty blob has no first byte.
            416 => self.get_blob(link, 0, None),
            _ => Err(self.scrub(blob_error(resp, &self.secrets()))),
        }
    }

    /// GETs a result link with `headers`, without credentials, following checked
    /// redirects; returns the first reply that is not a redirect.
    fn blob_request(
        &self,
        link: &ResultLink,
        headers: Vec<(&'static str, String)>,
    ) -> Result<Response> {
        self.remember_signatures(link.expose());
        let mut url = link.expose().to_owned();
        check_url(&url, "download link")?;
        for _ in 0..=MAX_REDIRECTS {
            let mut req = Request::get(&url);
            req.headers = headers.clone();
            let resp = self.http().plain(&req)?;
            match resp.status() {
                301 | 302 | 303 | 307 | 308 => {
                    let location = resp.header("location").unwrap_or_default();
                    url = resolve_location(&url, location);
                    check_url(&url, "redirect target")?;
                }
                _ => return Ok(resp),
            }
        }
        Err(Error::Transport {
            url: redact_url(&url),
            kind: crate::error::TransportKind::Other,
            message: format!("more than {MAX_REDIRECTS} redirects"),
            source: None,
        })
    }
}

/// Whether an earlier run may have left received bytes for this download.
fn partial_may_exist(request: &DownloadRequest) -> bool {
    match &request.destination {
        Destination::File(path) => Parts::beside(path, request.gunzip).meta.exists(),
        Destination::Dir(dir) => fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().ends_with(".mdlr-part.json"))
        }),
    }
}

/// The files beside the target.
struct Parts {
    /// The file being written.
    out: PathBuf,
    /// When un-gzipping: the bytes as received.
    raw: Option<PathBuf>,
    meta: PathBuf,
}

impl Parts {
    fn beside(path: &Path, gunzip: bool) -> Parts {
        let out = download::temp_path(path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "download".into());
        Parts {
            raw: gunzip.then(|| path.with_file_name(format!(".{name}.gz.mdlr-part"))),
            meta: path.with_file_name(format!(".{name}.mdlr-part.json")),
            out,
        }
    }

    fn raw_path(&self) -> &Path {
        self.raw.as_deref().unwrap_or(&self.out)
    }

    /// How many received bytes an earlier run left that fit this blob (0: none).
    fn resumable(&self, meta: &PartMeta) -> u64 {
        let Ok(text) = fs::read(&self.meta) else {
            return 0;
        };
        let Ok(old) = serde_json::from_slice::<PartMeta>(&text) else {
            return 0;
        };
        // Without an ETag there is no way to know the bytes are of this blob.
        if old != *meta || meta.etag.is_none() {
            return 0;
        }
        let len = fs::metadata(self.raw_path()).map(|m| m.len()).unwrap_or(0);
        match meta.length {
            // All of it when a run stopped after the last byte (a file appeared under
            // the final name, the process was killed while syncing): the bytes are
            // checked and published without being fetched again.
            Some(total) if len <= total => len,
            _ => 0,
        }
    }

    /// Starts afresh: records what the bytes will be.
    fn start(&self, meta: &PartMeta) -> Result<()> {
        let text = serde_json::to_vec(meta).unwrap_or_default();
        fs::write(&self.meta, text).map_err(|e| Error::io(&self.meta, "write", e))
    }

    /// The MD5 state after the first `len` received bytes.
    fn hash_raw(&self, len: u64) -> Result<Md5> {
        let raw = self.raw_path();
        let mut file = File::open(raw)
            .map_err(|e| Error::io(raw, "read", e))?
            .take(len);
        let mut md5 = Md5::new();
        let mut buf = vec![0u8; BUFFER];
        loop {
            match file.read(&mut buf) {
                Ok(0) => return Ok(md5),
                Ok(n) => md5.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(raw, "read", e)),
            }
        }
    }

    /// The un-gzipped output can be rebuilt from the received bytes: drop it.
    fn discard_output(&self) {
        if self.raw.is_some() {
            let _ = fs::remove_file(&self.out);
        }
    }

    fn discard_all(&self) {
        let _ = fs::remove_file(&self.out);
        if let Some(raw) = &self.raw {
            let _ = fs::remove_file(raw);
        }
        let _ = fs::remove_file(&self.meta);
    }

    /// After the file went to its final name.
    fn finish(&self) {
        if let Some(raw) = &self.raw {
            let _ = fs::remove_file(raw);
        }
        let _ = fs::remove_file(&self.meta);
    }
}

/// The blob's bytes from `offset` on, reconnecting as needed.
struct Source<'c, 'l> {
    client: &'c Client,
    links: Links<'l>,
    reader: Option<Box<dyn Read + Send>>,
    offset: u64,
    total: Option<u64>,
    etag: Option<String>,
    /// Where received bytes are also written, when un-gzipping.
    tee: Option<(File, PathBuf)>,
    /// Only when the host gave an MD5 to check: hashing costs more CPU than the rest.
    md5: Option<Md5>,
    stalls: u32,
    on_progress: Option<download::OnProgress>,
    resumed_from: u64,
}

impl Source<'_, '_> {
    fn report(&self) {
        if let Some(f) = &self.on_progress {
            (f.0)(&download::Progress {
                received: self.offset,
                total: self.total,
                resumed_from: self.resumed_from,
            });
        }
    }

    fn connect(&mut self) -> Result<()> {
        if self.links.expiring() {
            self.links.renew()?;
        }
        let resp =
            self.client
                .open_blob(&mut self.links, self.offset, self.etag.as_deref(), false)?;
        self.reader = Some(Box::new(resp.into_reader()));
        Ok(())
    }

    /// A connection broke or ended early: wait a little, unless it keeps happening.
    fn stalled(&mut self, why: String) -> Result<()> {
        self.reader = None;
        self.stalls += 1;
        // Twice the request retries: a transfer is worth more patience than a call.
        if self.stalls > 2 * self.client.http().retry_policy().max_retries {
            return Err(match self.total {
                Some(expected) if self.offset < expected => Error::Incomplete {
                    expected,
                    received: self.offset,
                },
                _ => Error::Transport {
                    url: self.links.current.redacted(),
                    kind: crate::error::TransportKind::Broken,
                    message: format!("the download failed after {} bytes: {why}", self.offset),
                    source: None,
                },
            });
        }
        // A connection that made progress before it broke is followed at once by a new
        // one: the host was answering. Only failures in a row back off.
        let delay = match self.stalls {
            1 => Duration::ZERO,
            n => self.client.http().backoff(n - 2),
        };
        self.client.http().emit(Event::Retry {
            url: self.links.current.redacted(),
            reason: format!("{why} at byte {}", self.offset),
            delay,
        });
        std::thread::sleep(delay);
        Ok(())
    }

    fn next(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            if self.total.is_some_and(|t| self.offset >= t) {
                return Ok(0);
            }
            if self.reader.is_none() {
                match self.connect() {
                    Ok(()) => {}
                    Err(e @ Error::Transport { .. }) => {
                        self.stalled(e.to_string())?;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            match reader.read(buf) {
                Ok(0) if self.total.is_none() => return Ok(0),
                Ok(0) => self.stalled("the connection ended early".to_owned())?,
                Ok(n) => {
                    let n = match self.total {
                        // Never take more than the blob holds.
                        Some(t) => n.min((t - self.offset) as usize),
                        None => n,
                    };
                    if let Some((tee, path)) = &mut self.tee {
                        tee.write_all(&buf[..n])
                            .map_err(|e| Error::io(path.as_path(), "write", e))?;
                    }
                    if let Some(md5) = &mut self.md5 {
                        md5.update(&buf[..n]);
                    }
                    self.offset += n as u64;
                    self.stalls = 0;
                    self.report();
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.stalled(e.to_string())?,
            }
        }
    }
}

impl Read for Source<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.next(buf).map_err(io::Error::other)
    }
}

/// Copies until the end; errors of the source come back as they were.
fn copy(reader: &mut impl Read, writer: &mut File, path: &Path, gzip: bool) -> Result<u64> {
    let mut buf = vec![0u8; BUFFER];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let e = match e.into_inner().map(|inner| inner.downcast::<Error>()) {
                    Some(Ok(ours)) => *ours,
                    Some(Err(other)) if gzip => Error::malformed("gzip stream", other.to_string()),
                    Some(Err(other)) => Error::io(path, "read", io::Error::other(other)),
                    None if gzip => Error::malformed("gzip stream", "it is not valid gzip"),
                    None => Error::io(path, "read", io::Error::other("read failed")),
                };
                return Err(e);
            }
        };
        writer
            .write_all(&buf[..n])
            .map_err(|e| Error::io(path, "write", e))?;
        total += n as u64;
    }
}
