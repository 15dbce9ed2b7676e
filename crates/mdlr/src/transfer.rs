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
use std::time::Duration;

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};

use crate::blob::BlobHost;
pub(crate) use crate::blob::Links;
use crate::download::{Destination, DownloadRequest, Downloaded, Gunzip, OnProgress, Progress};
use crate::encode::base64_decode;
use crate::error::{Error, Result, TransportKind};
use crate::files::{disposition_file_name, publish, temp_path};
use crate::http::{Event, Http};
use crate::md5::Md5;

/// Size of the copy buffer.
const BUFFER: usize = 512 * 1024;

/// What the partial bytes on disk are.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct PartMeta {
    /// The blob's URL without its query (no signature).
    blob: String,
    etag: Option<String>,
    length: Option<u64>,
}

/// Downloads a result, resuming and renewing links as needed (see the module docs).
///
/// `gunzip_known` is what [`Gunzip::Auto`] means when the caller knows the command
/// (a `GetFile`: un-gzip); without it, a name ending in `.gz` decides (the host's, else
/// the request's fallback).
pub(crate) fn transfer(
    http: &Http,
    mut links: Links<'_>,
    request: &DownloadRequest,
    gunzip_known: Option<bool>,
) -> Result<Downloaded> {
    let host = BlobHost { http };
    if let Destination::Dir(dir) = request.destination()
        && !dir.is_dir()
    {
        return Err(Error::io(
            dir,
            "write into",
            io::Error::new(io::ErrorKind::NotFound, "not a directory"),
        ));
    }
    if let Some(path) = request.existing_file() {
        return Err(Error::Exists {
            path: path.to_owned(),
        });
    }
    if links.expiring() {
        links.renew()?;
    }
    // When an earlier run may have left bytes, ask for the blob's first byte only:
    // the reply names the file and the blob, and the download then starts where
    // those bytes end instead of sending the whole blob from the start again.
    let probe = partial_may_exist(request);
    let first = host.open(&mut links, 0, None, probe)?;
    let ranged = first.status() == 206;
    let original_name = first
        .header("content-disposition")
        .and_then(disposition_file_name);
    let gunzip = match request.gunzip_setting() {
        Gunzip::On => true,
        Gunzip::Off => false,
        _ => gunzip_known.unwrap_or_else(|| {
            original_name
                .as_deref()
                .or(request.fallback())
                .is_some_and(|n| n.to_ascii_lowercase().ends_with(".gz"))
        }),
    };
    let path = request.final_path(original_name.as_deref(), gunzip);
    if !request.overwrites() && path.exists() {
        return Err(Error::Exists { path });
    }
    {
        let meta = PartMeta {
            blob: links.current.blob().to_owned(),
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
        let parts = Parts::beside(&path, gunzip);
        let resume_from = parts.resumable(&meta);
        let mut source = Source {
            host,
            links,
            reader: None,
            offset: resume_from,
            total: meta.length,
            etag: meta.etag.clone(),
            tee: None,
            md5: md5.is_some().then(Md5::new),
            stalls: 0,
            on_progress: request.progress().cloned(),
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
        let outcome = write_parts(&parts, &mut source, gunzip, resume_from);
        match outcome {
            Ok(written) => {
                let received = source.offset;
                if let Some(expected) = meta.length
                    && received != expected
                {
                    return Err(Error::Incomplete { expected, received });
                }
                if let (Some(want), Some(got)) = (&md5, &source.md5)
                    && got.clone().finish()[..] != want[..]
                {
                    parts.discard_all();
                    return Err(Error::malformed(
                        "download",
                        "its MD5 differs from the Content-MD5 the result host gave",
                    ));
                }
                publish(&parts.out, &path, request.overwrites())?;
                parts.finish();
                Ok(Downloaded {
                    path,
                    received,
                    written,
                    original_name,
                    gunzipped: gunzip,
                    md5_checked: md5.is_some(),
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
}

/// Streams the source into the part files; returns the bytes written to the file.
fn write_parts(
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

/// Whether an earlier run may have left received bytes for this download.
fn partial_may_exist(request: &DownloadRequest) -> bool {
    match request.destination() {
        Destination::File(path) => Parts::beside(path, false).meta.exists(),
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
        let out = temp_path(path);
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
struct Source<'h, 'l> {
    host: BlobHost<'h>,
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
    on_progress: Option<OnProgress>,
    resumed_from: u64,
}

impl Source<'_, '_> {
    fn report(&self) {
        if let Some(f) = &self.on_progress {
            f(&Progress {
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
        let resp = self
            .host
            .open(&mut self.links, self.offset, self.etag.as_deref(), false)?;
        self.reader = Some(Box::new(resp.into_reader()));
        Ok(())
    }

    /// A connection broke or ended early: wait a little, unless it keeps happening.
    fn stalled(&mut self, why: String) -> Result<()> {
        self.reader = None;
        self.stalls += 1;
        // Twice the request retries: a transfer is worth more patience than a call.
        if self.stalls > 2 * self.host.http.retry_policy().max_retries {
            return Err(match self.total {
                Some(expected) if self.offset < expected => Error::Incomplete {
                    expected,
                    received: self.offset,
                },
                _ => Error::Transport {
                    url: self.links.current.redacted(),
                    kind: TransportKind::Broken,
                    message: format!("the download failed after {} bytes: {why}", self.offset),
                    source: None,
                },
            });
        }
        // A connection that made progress before it broke is followed at once by a new
        // one: the host was answering. Only failures in a row back off.
        let delay = match self.stalls {
            1 => Duration::ZERO,
            n => self.host.http.backoff(n - 2),
        };
        self.host.http.emit(Event::Retry {
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
