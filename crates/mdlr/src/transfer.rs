//! Result downloads that finish whatever happens on the way, at the speed of the wire.
//!
//! A dropped or stalled connection continues with `Range` from the byte it reached (with
//! `If-Match`, so a changed blob is never mixed in), an expired link is renewed — once,
//! for every connection — and the download goes on from the same byte, and a rerun after
//! the process died continues from the partial file it left.
//!
//! The work is a pipeline: connections write what they receive at its offset in the
//! file of received bytes, and the file itself is the queue between the stages (the
//! page cache holds what was just written, so memory stays constant at any size). The
//! contiguous prefix of what is held grows as bytes arrive; the MD5 (when the host gave
//! one) and the gzip decoder (which writes the output file, checking CRC and length)
//! each follow it on a thread of their own, and another pushes what is written to disk
//! as the download goes on, so that the sync before the final rename has little left.
//! With several connections (large results, or when asked), each fetches pieces of the
//! blob and writes them at their offsets.
//!
//! On disk, beside the final name `NAME`:
//! - `.NAME.mdlr-part` — the file being written (un-gzipped when asked);
//! - `.NAME.gz.mdlr-part` — when un-gzipping, the bytes as received, so that a rerun can
//!   rebuild the decoder's state locally and continue the transfer where it stopped;
//! - `.NAME.mdlr-part.json` — what the partial bytes are: the blob's path, ETag and
//!   length, and, for a download over several connections, which byte ranges are held
//!   (otherwise the received file's length is the contiguous prefix held). A rerun
//!   continues only when blob, ETag and length still match.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flate2::bufread::MultiGzDecoder;
use serde::{Deserialize, Serialize};

pub(crate) use crate::blob::Links;
use crate::blob::{Ask, BlobHost, SharedLinks};
use crate::download::{Destination, DownloadRequest, Downloaded, Gunzip, OnProgress, Progress};
use crate::encode::base64_decode;
use crate::error::{Error, Result, TransportKind};
use crate::files::{disposition_file_name, publish, temp_path};
use crate::http::{Event, Http, Response};
use crate::md5::Md5;

/// Size of the first connection's copy buffer: as large as ureq's reads from the
/// socket ([`crate::http`]'s input buffer), so each read is one write.
const BUFFER: usize = 256 * 1024;
/// Size of the copy buffer of each further connection: memory grows with connections,
/// and several connections share the wire, each getting less of it at a time.
const EXTRA_BUFFER: usize = 128 * 1024;
/// Size of the buffers of the stages that read the files back (hashers, decoder): they
/// read from the page cache, where larger reads gain nothing, and each buffer is
/// resident memory for the whole download.
const READ_BACK: usize = 128 * 1024;
/// Results at least this large use [`DEFAULT_CONNECTIONS`] unless told otherwise.
const PARALLEL_FROM: u64 = 64 << 20;
/// Connections for a large result.
const DEFAULT_CONNECTIONS: usize = 4;
/// What is written is pushed to disk every this many bytes while the download goes on.
const SYNC_EVERY: u64 = 32 << 20;
/// How often the syncer looks whether that much was written.
const SYNC_LOOK: Duration = Duration::from_millis(100);

/// What the partial bytes on disk are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct PartMeta {
    /// The blob's URL without its query (no signature).
    blob: String,
    etag: Option<String>,
    length: Option<u64>,
    /// For a download over several connections, the byte ranges of the blob held
    /// (`[start, end)`, written at their offsets). Without it, the received file's
    /// length is what is held, from byte 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    held: Option<Vec<[u64; 2]>>,
}

impl PartMeta {
    /// Whether the bytes recorded by `self` are of the same blob as `other`'s.
    fn same_blob(&self, other: &PartMeta) -> bool {
        self.blob == other.blob && self.etag == other.etag && self.length == other.length
    }
}

/// Byte ranges held, sorted, merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Held(Vec<(u64, u64)>);

impl Held {
    fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut merged = (start, end);
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < merged.0 || a > merged.1 {
                kept.push((a, b));
            } else {
                merged = (merged.0.min(a), merged.1.max(b));
            }
        }
        kept.push(merged);
        kept.sort_unstable();
        self.0 = kept;
    }

    /// The end of the range held from byte 0.
    fn prefix(&self) -> u64 {
        match self.0.first() {
            Some(&(0, end)) => end,
            _ => 0,
        }
    }

    fn bytes(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a).sum()
    }

    /// The ranges of `0..total` not held.
    fn missing(&self, total: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = 0;
        for &(a, b) in &self.0 {
            if a > at {
                gaps.push((at, a.min(total)));
            }
            at = at.max(b);
        }
        if at < total {
            gaps.push((at, total));
        }
        gaps.retain(|(a, b)| a < b);
        gaps
    }

    fn to_meta(&self) -> Vec<[u64; 2]> {
        self.0.iter().map(|&(a, b)| [a, b]).collect()
    }
}

/// The size of one piece of a download over `connections` connections: small enough
/// that the connections share the work to the end, and that a kill loses little.
fn piece_size(total: u64, connections: usize) -> u64 {
    (total / (connections as u64 * 4)).clamp(1 << 20, 16 << 20)
}

/// The connections to use for a blob of `total` bytes (`None`: not said).
fn connections_for(request: &DownloadRequest, total: Option<u64>) -> usize {
    match (request.connections_setting(), total) {
        (_, None) => 1,
        (Some(n), Some(_)) => n,
        (None, Some(t)) if t >= PARALLEL_FROM => DEFAULT_CONNECTIONS,
        (None, Some(_)) => 1,
    }
}

/// Downloads a result, resuming and renewing links as needed (see the module docs).
///
/// `gunzip_known` is what [`Gunzip::Auto`] means when the caller knows the command
/// (a `GetFile`: un-gzip); without it, a name ending in `.gz` decides (the host's, else
/// the request's fallback).
pub(crate) fn transfer(
    http: &Http,
    links: Links<'_>,
    request: &DownloadRequest,
    gunzip_known: Option<bool>,
) -> Result<Downloaded> {
    let host = BlobHost { http };
    if let Destination::Dir(dir) = request.destination()
        && !dir.is_dir()
    {
        let why = match dir.exists() {
            true => "not a directory",
            false => "no such directory",
        };
        return Err(Error::io(
            dir,
            "write into",
            io::Error::new(io::ErrorKind::NotFound, why),
        ));
    }
    if let Some(path) = request.existing_file() {
        return Err(Error::Exists {
            path: path.to_owned(),
        });
    }
    let links = SharedLinks::new(links);
    // When an earlier run may have left bytes, ask for the blob's first byte only:
    // the reply names the file and the blob, and the download then starts where
    // those bytes end instead of sending the whole blob from the start again.
    let ask = if partial_may_exist(request) {
        Ask::Probe
    } else {
        Ask::From(0)
    };
    let first = host.open(&links, ask, None)?;
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
    let total = if ranged {
        first
            .header("content-range")
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.trim().parse().ok())
    } else {
        first.content_length()
    };
    let connections = connections_for(request, total);
    let mut meta = PartMeta {
        blob: links.shown().blob().to_owned(),
        etag: first.header("etag").map(str::to_owned),
        length: total,
        held: (connections > 1).then(Vec::new),
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
    let held = parts.resumable(&meta, connections)?;
    if held.0.is_empty() {
        parts.start(&meta)?;
    } else if let Some(ranges) = &mut meta.held {
        *ranges = held.to_meta();
        parts.write_meta(&meta)?;
    }
    // A reply of the whole blob serves the first bytes when nothing is held yet;
    // otherwise what is held says where to go on from, and this reply is not needed.
    let first = (!ranged && held.0.is_empty()).then_some(first);
    let resumed_from = held.bytes();
    let pipeline = Pipeline {
        host,
        links: &links,
        parts: &parts,
        etag: meta.etag.clone(),
        meta: Mutex::new(meta),
        flow: Flow::new(held, total),
        received: AtomicU64::new(resumed_from),
        resumed_from,
        on_progress: request.progress().cloned(),
        plain: AtomicBool::new(false),
    };
    pipeline.report();
    let outcome = pipeline.run(
        first,
        connections,
        gunzip,
        md5.is_some(),
        request.sha256_wanted(),
    );
    match outcome {
        Ok(Ran {
            written,
            md5: got,
            sha256_served,
            sha256_written,
        }) => {
            let received = pipeline.flow.lock().held.prefix();
            if let Some(expected) = total
                && received != expected
            {
                return Err(Error::Incomplete { expected, received });
            }
            if let (Some(want), Some(got)) = (&md5, got)
                && got.finish()[..] != want[..]
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
                gunzipped: gunzip && !pipeline.plain.load(Ordering::Relaxed),
                not_gzip: gunzip && pipeline.plain.load(Ordering::Relaxed),
                md5_checked: md5.is_some(),
                sha256: if gunzip {
                    sha256_written
                } else {
                    sha256_served.clone()
                },
                sha256_served,
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

/// What the pipeline did: the bytes written to the file, the MD5 of the received bytes
/// when the host gave one to check, and the SHA-256 of the received and of the written
/// bytes when asked for.
struct Ran {
    written: u64,
    md5: Option<Md5>,
    sha256_served: Option<String>,
    sha256_written: Option<String>,
}

/// A digest a stage computes as the bytes go by.
enum Digest {
    Md5(Md5),
    Sha256(ring::digest::Context),
}

impl Digest {
    fn sha256() -> Digest {
        Digest::Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Digest::Md5(m) => m.update(bytes),
            Digest::Sha256(c) => c.update(bytes),
        }
    }
}

/// Lowercase hex of a SHA-256 context's digest.
fn sha256_hex(context: ring::digest::Context) -> String {
    context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What is held, shared by the stages: connections add to it, the others follow its
/// contiguous prefix.
struct Flow {
    state: Mutex<FlowState>,
    changed: Condvar,
}

struct FlowState {
    held: Held,
    /// The blob's length, when known (learned at the end otherwise).
    total: Option<u64>,
    /// Every connection finished its part.
    fetched: bool,
    /// A stage failed: the others stop.
    failed: bool,
    /// Fetching ended in failure: the readers take the bytes held, then stop. (So a
    /// decoder that fails on bytes already received is the error reported, the same
    /// whichever thread got there first.)
    cut: bool,
    /// The stage that failed first: its error is the one to report (the others only
    /// stopped because of it).
    first_failure: Option<Stage>,
}

/// The stages of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Decode,
    Hash,
}

impl Flow {
    fn new(held: Held, total: Option<u64>) -> Flow {
        Flow {
            state: Mutex::new(FlowState {
                held,
                total,
                fetched: false,
                failed: false,
                cut: false,
                first_failure: None,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FlowState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, start: u64, end: u64) {
        self.lock().held.insert(start, end);
        self.changed.notify_all();
    }

    fn end(&self, fetched: bool, total: Option<u64>) {
        let mut st = self.lock();
        st.fetched = fetched;
        st.cut = !fetched;
        if st.total.is_none() {
            st.total = total;
        }
        drop(st);
        self.changed.notify_all();
    }

    /// `stage` failed: the others stop.
    fn fail(&self, stage: Stage) {
        let mut st = self.lock();
        st.failed = true;
        st.first_failure.get_or_insert(stage);
        drop(st);
        self.changed.notify_all();
    }

    fn failed(&self) -> bool {
        self.lock().failed
    }

    /// A stage failed, or fetching ended in failure: nothing more will come.
    fn stopped(&self) -> bool {
        let st = self.lock();
        st.failed || st.cut
    }

    /// Waits until the prefix held goes past `at`; returns how far it goes, or `None`
    /// when the flow ended there (or failed).
    fn past(&self, at: u64) -> Option<u64> {
        let mut st = self.lock();
        loop {
            if st.failed {
                return None;
            }
            let prefix = st.held.prefix();
            if prefix > at {
                return Some(prefix);
            }
            if st.fetched || st.cut {
                return None;
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// One download at work.
struct Pipeline<'a, 'l> {
    host: BlobHost<'a>,
    links: &'a SharedLinks<'l>,
    parts: &'a Parts,
    etag: Option<String>,
    meta: Mutex<PartMeta>,
    flow: Flow,
    received: AtomicU64,
    resumed_from: u64,
    on_progress: Option<OnProgress>,
    /// Un-gzipping was asked for, and the bytes are not gzip: they were copied as they
    /// came.
    plain: AtomicBool,
}

impl Pipeline<'_, '_> {
    fn report(&self) {
        if let Some(f) = &self.on_progress {
            f(&Progress {
                received: self.received.load(Ordering::Relaxed),
                total: self.flow.lock().total,
                resumed_from: self.resumed_from,
            });
        }
    }

    /// Runs the stages until everything is received, hashed and written.
    fn run(
        &self,
        first: Option<Response>,
        connections: usize,
        gunzip: bool,
        md5: bool,
        sha256: bool,
    ) -> Result<Ran> {
        // Dropped when the download is over: the syncer stops at once.
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let large = self.flow.lock().total.is_none_or(|t| t >= SYNC_EVERY);
        let written = AtomicU64::new(0);
        std::thread::scope(|s| {
            let hasher = md5.then(|| s.spawn(|| self.digest(Digest::Md5(Md5::new()))));
            let digester = sha256.then(|| s.spawn(|| self.digest(Digest::sha256())));
            let decoder = gunzip.then(|| s.spawn(|| self.decode(&written, sha256)));
            let written = &written;
            let syncer =
                large.then(|| s.spawn(move || self.sync_as_it_goes(gunzip, written, &stopped)));
            let fetched = self.fetch(first, connections);
            self.flow
                .end(fetched.is_ok(), fetched.as_ref().ok().copied());
            let decoded = decoder.map(|d| d.join().unwrap_or(Err(panicked("decoder"))));
            let hashed = hasher.map(|h| h.join().unwrap_or(Err(panicked("MD5"))));
            let digested = digester.map(|h| h.join().unwrap_or(Err(panicked("SHA-256"))));
            drop(stop);
            if let Some(syncer) = syncer {
                let _ = syncer.join();
            }
            // The error of the stage that failed first: the others only stopped.
            let first = self.flow.lock().first_failure;
            let (decoded, hashed, digested) = match (first, decoded, hashed, digested) {
                (Some(Stage::Decode), Some(Err(e)), _, _)
                | (Some(Stage::Hash), _, Some(Err(e)), _)
                | (Some(Stage::Hash), _, _, Some(Err(e))) => return Err(e),
                (_, decoded, hashed, digested) => (decoded, hashed, digested),
            };
            let received = fetched?;
            let (written, sha256_written) = match decoded {
                Some(d) => d?.unwrap_or((0, None)),
                None => (received, None),
            };
            let md5 = match hashed.transpose()?.flatten() {
                Some(Digest::Md5(m)) => Some(m),
                _ => None,
            };
            let sha256_served = match digested.transpose()?.flatten() {
                Some(Digest::Sha256(c)) => Some(sha256_hex(c)),
                _ => None,
            };
            self.parts.sync_output()?;
            Ok(Ran {
                written,
                md5,
                sha256_served,
                sha256_written,
            })
        })
    }

    /// Fetches what is missing over `connections` connections; returns the blob's
    /// length as received.
    fn fetch(&self, first: Option<Response>, connections: usize) -> Result<u64> {
        let (held, total) = {
            let st = self.flow.lock();
            (st.held.clone(), st.total)
        };
        match total {
            Some(total) if connections > 1 => {
                let size = piece_size(total, connections);
                let mut pieces = VecDeque::new();
                for (a, b) in held.missing(total) {
                    // Pieces of one size in each gap: no crumb at its end.
                    let count = (b - a).div_ceil(size);
                    let piece = (b - a).div_ceil(count);
                    let mut at = a;
                    while at < b {
                        pieces.push_back((at, (at + piece).min(b)));
                        at += piece;
                    }
                }
                let queue = Mutex::new(pieces);
                let mut first = first;
                std::thread::scope(|s| {
                    let workers: Vec<_> = (0..connections)
                        .map(|i| {
                            let reply = first.take();
                            let queue = &queue;
                            let buffer = if i == 0 { BUFFER } else { EXTRA_BUFFER };
                            s.spawn(move || self.fetch_pieces(queue, reply, buffer))
                        })
                        .collect();
                    let mut outcome = Ok(());
                    for w in workers {
                        let done = w.join().unwrap_or(Err(panicked("connection")));
                        if outcome.is_ok() {
                            outcome = done;
                        }
                    }
                    outcome
                })
                .map(|()| total)
            }
            _ => self.fetch_in_order(first, held.prefix(), total),
        }
    }

    /// One connection at a time, from byte `from` to the end.
    fn fetch_in_order(
        &self,
        first: Option<Response>,
        from: u64,
        total: Option<u64>,
    ) -> Result<u64> {
        let raw = self.parts.raw_path();
        let mut file = self.parts.open_raw(from)?;
        let mut conn = Connection::new(self, first);
        let mut buf = vec![0u8; BUFFER];
        let mut at = from;
        loop {
            // Done, or another stage failed (its error is the one to report).
            if total.is_some_and(|t| at >= t) || self.flow.failed() {
                return Ok(at);
            }
            let n = match conn.read(Ask::From(at), total, at, &mut buf)? {
                0 => return Ok(at),
                n => n,
            };
            file.write_all(&buf[..n])
                .map_err(|e| Error::io(raw, "write", e))?;
            self.add(at, at + n as u64);
            at += n as u64;
        }
    }

    /// Takes pieces from `queue` until none is left. The connection that has the
    /// reply of the whole blob (`first`) takes them from the front and reads them on
    /// from that reply as long as it lasts; the others take them from the back, each
    /// piece over a request of its own; they meet in the middle. `buffer`: the size of
    /// its copy buffer.
    fn fetch_pieces(
        &self,
        queue: &Mutex<VecDeque<(u64, u64)>>,
        first: Option<Response>,
        buffer: usize,
    ) -> Result<()> {
        let raw = self.parts.raw_path();
        let mut file = self.parts.open_raw_at_offsets()?;
        let mut buf = vec![0u8; buffer];
        let front = first.is_some();
        let mut conn = Connection::new(self, first);
        // Where the reply of the whole blob is, while it is read.
        let mut streaming = front.then_some(0u64);
        loop {
            if self.flow.failed() {
                return Ok(());
            }
            let next = {
                let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                if front { q.pop_front() } else { q.pop_back() }
            };
            let Some((start, end)) = next else {
                return Ok(());
            };
            if streaming != Some(start) {
                streaming = None;
                conn.drop_reply();
            }
            let mut at = start;
            file.seek(SeekFrom::Start(start))
                .map_err(|e| Error::io(raw, "write", e))?;
            while at < end {
                if self.flow.failed() {
                    return Ok(());
                }
                let want = buf.len().min((end - at) as usize);
                let n = conn.read(Ask::Range(at, end), Some(end), at, &mut buf[..want])?;
                if n == 0 {
                    return Err(conn.gave_up(at, "the connection ended early"));
                }
                if !conn.reads_whole_blob() {
                    // The reply of the whole blob broke: the piece went on over a
                    // request of its own, which ends with it.
                    streaming = None;
                }
                file.write_all(&buf[..n])
                    .map_err(|e| Error::io(raw, "write", e))?;
                self.add(at, at + n as u64);
                at += n as u64;
            }
            streaming = streaming.map(|_| end);
            if streaming.is_none() {
                conn.end_reply();
            }
            self.record_held()?;
        }
    }

    /// Bytes `start..end` are in the file.
    fn add(&self, start: u64, end: u64) {
        self.flow.add(start, end);
        self.received.fetch_add(end - start, Ordering::Relaxed);
        self.report();
    }

    /// Writes what is held into the note (several connections): a kill keeps it.
    fn record_held(&self) -> Result<()> {
        let held = self.flow.lock().held.to_meta();
        let mut meta = self.meta.lock().unwrap_or_else(|e| e.into_inner());
        meta.held = Some(held);
        self.parts.write_meta(&meta)
    }

    /// `digest` of the received bytes, read back as their prefix grows (`None`: stopped
    /// by another stage's failure).
    fn digest(&self, digest: Digest) -> Result<Option<Digest>> {
        let hashed = self.digest_prefix(digest);
        if hashed.is_err() {
            self.flow.fail(Stage::Hash);
        }
        hashed
    }

    fn digest_prefix(&self, mut digest: Digest) -> Result<Option<Digest>> {
        let raw = self.parts.raw_path();
        let mut file = File::open(raw).map_err(|e| Error::io(raw, "read", e))?;
        let mut buf = vec![0u8; READ_BACK];
        let mut at = 0u64;
        while let Some(prefix) = self.flow.past(at) {
            while at < prefix {
                let want = buf.len().min((prefix - at) as usize);
                let n = match file.read(&mut buf[..want]) {
                    Ok(0) => {
                        return Err(Error::io(raw, "read", io::ErrorKind::UnexpectedEof.into()));
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io(raw, "read", e)),
                };
                digest.update(&buf[..n]);
                at += n as u64;
            }
        }
        Ok((!self.flow.stopped()).then_some(digest))
    }

    /// Un-gzips the received bytes into the output file as their prefix grows; returns
    /// the bytes written and, with `sha256`, their digest (`None`: stopped by another
    /// stage's failure).
    fn decode(&self, written: &AtomicU64, sha256: bool) -> Result<Option<(u64, Option<String>)>> {
        let decoded = self.decode_prefix(written, sha256);
        if decoded.is_err() {
            self.flow.fail(Stage::Decode);
        }
        decoded
    }

    fn decode_prefix(
        &self,
        written: &AtomicU64,
        sha256: bool,
    ) -> Result<Option<(u64, Option<String>)>> {
        let raw = self.parts.raw_path();
        let file = File::open(raw).map_err(|e| Error::io(raw, "read", e))?;
        let stopped = Cell::new(false);
        let mut input = BufReader::with_capacity(
            READ_BACK,
            Prefix {
                file,
                flow: &self.flow,
                at: 0,
                end: 0,
                stopped: &stopped,
            },
        );
        // A GetFile result is gzip; one that does not start as gzip does (1f 8b) is
        // saved as it came rather than thrown away.
        let mut head = Vec::with_capacity(2);
        if let Err(e) = (&mut input).take(2).read_to_end(&mut head) {
            if self.flow.failed() || stopped.get() {
                return Ok(None);
            }
            return Err(Error::io(raw, "read", e));
        }
        let gzip = head[..] == [0x1f, 0x8b];
        self.plain.store(!gzip, Ordering::Relaxed);
        let source = io::Cursor::new(head).chain(input);
        let mut decoder: Box<dyn Read> = match gzip {
            true => Box::new(MultiGzDecoder::new(source)),
            false => Box::new(source),
        };
        let out = &self.parts.out;
        let mut file = File::create(out).map_err(|e| Error::io(out, "create", e))?;
        // With `sha256`, the written bytes are hashed on a thread of their own, handed
        // over in a few recycled buffers: inflate and SHA-256 each take a core.
        std::thread::scope(|s| {
            let mut hand = sha256.then(|| Handoff::start(s));
            // The buffer when nothing is handed over.
            let mut spare = match hand {
                Some(_) => Vec::new(),
                None => vec![0u8; READ_BACK],
            };
            loop {
                let mut buf = match hand.as_mut() {
                    Some(h) => h.empty()?,
                    None => std::mem::take(&mut spare),
                };
                let n = match decoder.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // Stopped by another stage, or out of bytes because fetching failed
                    // (its error is the one to report); not on bytes received.
                    Err(_) if self.flow.failed() || stopped.get() => {
                        return Ok(None);
                    }
                    Err(e) if gzip => return Err(Error::malformed("gzip stream", e.to_string())),
                    Err(e) => return Err(Error::io(raw, "read", e)),
                };
                file.write_all(&buf[..n])
                    .map_err(|e| Error::io(out, "write", e))?;
                written.fetch_add(n as u64, Ordering::Relaxed);
                match hand.as_mut() {
                    Some(h) => h.full(buf, n)?,
                    None => spare = buf,
                }
            }
            let digest = hand.map(Handoff::finish).transpose()?;
            if self.flow.stopped() {
                return Ok(None);
            }
            Ok(Some((written.load(Ordering::Relaxed), digest)))
        })
    }

    /// Pushes what is written to the output file to disk every [`SYNC_EVERY`] bytes,
    /// until `stop` closes: the write-back overlaps the download instead of following
    /// it.
    fn sync_as_it_goes(
        &self,
        gunzip: bool,
        written: &AtomicU64,
        stop: &std::sync::mpsc::Receiver<()>,
    ) {
        let progress = || match gunzip {
            true => written.load(Ordering::Relaxed),
            false => self.received.load(Ordering::Relaxed),
        };
        let mut file = None;
        let mut synced = progress();
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(SYNC_LOOK) {
            let now = progress();
            if now < synced + SYNC_EVERY {
                continue;
            }
            // Opened once it exists (the decoder creates it); best effort: the sync
            // before the rename is the one that counts.
            if file.is_none() {
                file = OpenOptions::new().write(true).open(&self.parts.out).ok();
            }
            if let Some(f) = &file {
                let _ = f.sync_data();
                synced = now;
            }
        }
    }
}

/// Buffers of written bytes handed from the decoder to the thread that hashes them,
/// and handed back: at most [`HANDOFF_BUFFERS`] exist.
struct Handoff<'scope> {
    full: std::sync::mpsc::SyncSender<(Vec<u8>, usize)>,
    empty: std::sync::mpsc::Receiver<Vec<u8>>,
    made: usize,
    hasher: std::thread::ScopedJoinHandle<'scope, String>,
}

/// Buffers in flight between the decoder and the SHA-256 thread.
const HANDOFF_BUFFERS: usize = 4;

impl<'scope> Handoff<'scope> {
    fn start<'env>(s: &'scope std::thread::Scope<'scope, 'env>) -> Self {
        let (full, filled) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(HANDOFF_BUFFERS);
        let (back, empty) = std::sync::mpsc::channel();
        let hasher = s.spawn(move || {
            let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
            for (buf, n) in filled {
                digest.update(&buf[..n]);
                // The decoder may be gone (it failed): then the buffer goes too.
                let _ = back.send(buf);
            }
            sha256_hex(digest)
        });
        Handoff {
            full,
            empty,
            made: 0,
            hasher,
        }
    }

    /// A buffer to decode into: a new one while fewer than [`HANDOFF_BUFFERS`] exist,
    /// else the next the hasher is done with.
    fn empty(&mut self) -> Result<Vec<u8>> {
        if let Ok(buf) = self.empty.try_recv() {
            return Ok(buf);
        }
        if self.made < HANDOFF_BUFFERS {
            self.made += 1;
            return Ok(vec![0u8; READ_BACK]);
        }
        self.empty.recv().map_err(|_| panicked("SHA-256"))
    }

    /// Hands `buf[..n]` to the hasher.
    fn full(&mut self, buf: Vec<u8>, n: usize) -> Result<()> {
        self.full.send((buf, n)).map_err(|_| panicked("SHA-256"))
    }

    /// The digest of everything handed over.
    fn finish(self) -> Result<String> {
        drop(self.full);
        self.hasher.join().map_err(|_| panicked("SHA-256"))
    }
}

fn panicked(what: &str) -> Error {
    Error::Transport {
        url: String::new(),
        kind: TransportKind::Other,
        message: format!("the {what} thread stopped unexpectedly"),
        source: None,
    }
}

/// The received file read up to the prefix held, waiting for it to grow: what the
/// decoder reads.
struct Prefix<'f> {
    file: File,
    flow: &'f Flow,
    at: u64,
    /// How far the prefix went when last asked.
    end: u64,
    /// The flow stopped before the end: the reader said so with an error.
    stopped: &'f Cell<bool>,
}

impl Read for Prefix<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at >= self.end {
            match self.flow.past(self.at) {
                Some(end) => self.end = end,
                None if self.flow.stopped() => {
                    self.stopped.set(true);
                    return Err(io::Error::other("stopped"));
                }
                None => return Ok(0),
            }
        }
        let want = buf.len().min((self.end - self.at) as usize);
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// One connection's reply stream, reconnecting when it breaks or stalls.
struct Connection<'p, 'a, 'l> {
    pipeline: &'p Pipeline<'a, 'l>,
    reader: Option<Box<dyn Read + Send>>,
    /// Whether the reply being read is the one of the whole blob given at the start.
    whole: bool,
    /// Failures in a row, without progress in between.
    stalls: u32,
}

impl<'p, 'a, 'l> Connection<'p, 'a, 'l> {
    fn new(pipeline: &'p Pipeline<'a, 'l>, first: Option<Response>) -> Self {
        Connection {
            pipeline,
            whole: first.is_some(),
            reader: first.map(|r| Box::new(r.into_reader()) as Box<dyn Read + Send>),
            stalls: 0,
        }
    }

    /// Reads the reply of a piece to its end, so that its connection goes back to the
    /// pool for the next piece, and forgets it.
    fn end_reply(&mut self) {
        if let Some(reader) = self.reader.as_mut() {
            let _ = reader.read(&mut [0u8; 1]);
        }
        self.drop_reply();
    }

    /// Forgets the reply being read (the next read asks anew).
    fn drop_reply(&mut self) {
        self.reader = None;
        self.whole = false;
    }

    /// Whether the reply of the whole blob given at the start is still being read.
    fn reads_whole_blob(&self) -> bool {
        self.whole && self.reader.is_some()
    }

    /// Reads the bytes from `at` (asking for `ask` when a new connection is needed); 0
    /// only at the end of a blob of unknown length. `end` is where what is asked for
    /// ends, when known.
    fn read(&mut self, ask: Ask, end: Option<u64>, at: u64, buf: &mut [u8]) -> Result<usize> {
        let p = self.pipeline;
        loop {
            if self.reader.is_none() {
                // Another stage failed: its error is the one reported.
                if p.flow.failed() {
                    return Err(self.gave_up(at, "stopped"));
                }
                match p.host.open(p.links, ask, p.etag.as_deref()) {
                    Ok(resp) => self.reader = Some(Box::new(resp.into_reader())),
                    Err(e @ Error::Transport { .. }) => {
                        self.stalled(at, &e.to_string())?;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            match reader.read(buf) {
                Ok(0) if end.is_none() => return Ok(0),
                Ok(0) => self.stalled(at, "the connection ended early")?,
                Ok(n) => {
                    self.stalls = 0;
                    // Never take more than asked for.
                    return Ok(match end {
                        Some(e) => n.min((e - at) as usize),
                        None => n,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.stalled(at, &e.to_string())?,
            }
        }
    }

    /// A connection broke or ended early at byte `at`: wait a little and try again,
    /// unless it keeps happening.
    fn stalled(&mut self, at: u64, why: &str) -> Result<()> {
        let p = self.pipeline;
        self.drop_reply();
        self.stalls += 1;
        // Twice the request retries: a transfer is worth more patience than a call.
        if self.stalls > 2 * p.host.http.retry_policy().max_retries {
            return Err(self.gave_up(at, why));
        }
        // A connection that made progress before it broke is followed at once by a new
        // one: the host was answering. Only failures in a row back off.
        let delay = match self.stalls {
            1 => Duration::ZERO,
            n => p.host.http.backoff(n - 2),
        };
        p.host.http.emit(Event::Retry {
            url: p.links.shown().redacted(),
            reason: format!("{why} at byte {at}"),
            delay,
        });
        let until = Instant::now() + delay;
        while Instant::now() < until && !p.flow.failed() {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        Ok(())
    }

    /// The error of a transfer that cannot go on from byte `at`.
    fn gave_up(&self, at: u64, why: &str) -> Error {
        let p = self.pipeline;
        let st = p.flow.lock();
        match st.total {
            Some(expected) if st.held.bytes() < expected => Error::Incomplete {
                expected,
                received: st.held.bytes(),
            },
            _ => Error::Transport {
                url: p.links.shown().redacted(),
                kind: TransportKind::Broken,
                message: format!("the download failed after {at} bytes: {why}"),
                source: None,
            },
        }
    }
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

    /// What an earlier run left that fits this blob (nothing when it does not), as the
    /// download goes on over `connections` connections. Going on over one connection,
    /// the received file is cut to the prefix held, so that its length says it again.
    fn resumable(&self, meta: &PartMeta, connections: usize) -> Result<Held> {
        let mut held = Held::default();
        let Ok(text) = fs::read(&self.meta) else {
            return Ok(held);
        };
        let Ok(old) = serde_json::from_slice::<PartMeta>(&text) else {
            return Ok(held);
        };
        // Without an ETag there is no way to know the bytes are of this blob.
        let Some(total) = meta.length else {
            return Ok(held);
        };
        if !old.same_blob(meta) || meta.etag.is_none() {
            return Ok(held);
        }
        let len = fs::metadata(self.raw_path()).map(|m| m.len()).unwrap_or(0);
        match &old.held {
            None => held.insert(0, len.min(total)),
            Some(ranges) => {
                for [a, b] in ranges {
                    if a < b && *b <= total && *b <= len {
                        held.insert(*a, *b);
                    }
                }
            }
        }
        // All of it when a run stopped after the last byte (a file appeared under the
        // final name, the process was killed while syncing): the bytes are checked and
        // published without being fetched again.
        if len > total && old.held.is_none() {
            return Ok(Held::default());
        }
        if connections == 1 && old.held.is_some() {
            let prefix = held.prefix();
            held = Held::default();
            held.insert(0, prefix);
            let raw = self.raw_path();
            OpenOptions::new()
                .write(true)
                .open(raw)
                .and_then(|f| f.set_len(prefix))
                .map_err(|e| Error::io(raw, "write", e))?;
            let mut meta = meta.clone();
            meta.held = None;
            self.write_meta(&meta)?;
        }
        Ok(held)
    }

    /// Starts afresh: records what the bytes will be, and empties the files.
    fn start(&self, meta: &PartMeta) -> Result<()> {
        self.write_meta(meta)?;
        for path in [Some(&self.out), self.raw.as_ref()].into_iter().flatten() {
            File::create(path).map_err(|e| Error::io(path, "write", e))?;
        }
        Ok(())
    }

    /// Writes the note (through a temporary file: a kill never leaves half of one).
    fn write_meta(&self, meta: &PartMeta) -> Result<()> {
        let text = serde_json::to_vec(meta).unwrap_or_default();
        let temp = self.meta.with_extension("json.new");
        fs::write(&temp, text)
            .and_then(|()| fs::rename(&temp, &self.meta))
            .map_err(|e| Error::io(&self.meta, "write", e))
    }

    /// The received file, open to append from byte `from` (what is after it goes).
    fn open_raw(&self, from: u64) -> Result<File> {
        let raw = self.raw_path();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(raw)
            .map_err(|e| Error::io(raw, "open", e))?;
        file.set_len(from)
            .and_then(|()| file.seek(SeekFrom::End(0)).map(|_| ()))
            .map_err(|e| Error::io(raw, "write", e))?;
        Ok(file)
    }

    /// The received file, open to write pieces at their offsets.
    fn open_raw_at_offsets(&self) -> Result<File> {
        let raw = self.raw_path();
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(raw)
            .map_err(|e| Error::io(raw, "open", e))
    }

    /// Syncs the output file: it is on disk before it is renamed into place.
    fn sync_output(&self) -> Result<()> {
        File::open(&self.out)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&self.out, "write", e))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_ranges_merge_and_say_what_is_missing() {
        let mut h = Held::default();
        h.insert(10, 20);
        h.insert(30, 40);
        assert_eq!(h.prefix(), 0);
        assert_eq!(h.missing(50), [(0, 10), (20, 30), (40, 50)]);
        h.insert(0, 10);
        assert_eq!(h.prefix(), 20);
        h.insert(15, 35);
        assert_eq!(h.0, [(0, 40)]);
        assert_eq!((h.prefix(), h.bytes()), (40, 40));
        assert_eq!(h.missing(40), []);
        h.insert(5, 5);
        assert_eq!(h.0, [(0, 40)]);
    }

    #[test]
    fn pieces_and_connections() {
        assert_eq!(piece_size(64 << 20, 4), 4 << 20);
        assert_eq!(piece_size(1 << 20, 4), 1 << 20);
        assert_eq!(piece_size(4 << 30, 4), 16 << 20);
        let request = DownloadRequest::to_dir(".");
        assert_eq!(connections_for(&request, Some(64 << 20)), 4);
        assert_eq!(connections_for(&request, Some(63 << 20)), 1);
        assert_eq!(connections_for(&request, None), 1);
        let two = DownloadRequest::to_dir(".").connections(2);
        assert_eq!(connections_for(&two, Some(1 << 20)), 2);
        assert_eq!(connections_for(&two, None), 1);
    }
}
