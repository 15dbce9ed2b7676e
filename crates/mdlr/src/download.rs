//! What a download is asked to do ([`DownloadRequest`]) and what it did
//! ([`Downloaded`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::files::safe_file_name;

/// Where a download goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination {
    /// This exact file.
    File(PathBuf),
    /// This directory, under the name the result host gives (`Content-Disposition`,
    /// made safe), or the fallback name of the [`DownloadRequest`].
    Dir(PathBuf),
}

/// Whether to un-gzip while downloading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Gunzip {
    /// As the result's kind says: a `GetFile` result (a gzip stream of the collected
    /// file) is un-gzipped, anything else is kept as sent. For a bare link, whose
    /// command is not known, a name ending in `.gz` decides.
    #[default]
    Auto,
    /// Always: the result must be gzip.
    On,
    /// Never: the bytes are kept as the host sent them (the `.gz` of a `GetFile`).
    Off,
}

/// How far a download has come: called as bytes arrive (see
/// [`DownloadRequest::on_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Bytes of the blob held so far, including any kept from an earlier run.
    pub received: u64,
    /// The blob's size, when the host said.
    pub total: Option<u64>,
    /// Bytes that were already there when this transfer began (a resumed download).
    pub resumed_from: u64,
}

/// A progress callback.
pub(crate) type OnProgress = Arc<dyn Fn(&Progress) + Send + Sync>;

/// What to download where, and how. Built with [`to_dir`](DownloadRequest::to_dir) or
/// [`to_file`](DownloadRequest::to_file) and the setters:
///
/// ```
/// use mdlr::{DownloadRequest, Gunzip};
///
/// let request = DownloadRequest::to_dir("evidence")
///     .gunzip(Gunzip::Off) // keep the .gz as the host sent it
///     .overwrite(true)
///     .on_progress(|p| eprint!("\r{} bytes", p.received));
/// # let _ = request;
/// ```
#[derive(Clone)]
#[must_use]
pub struct DownloadRequest {
    destination: Destination,
    gunzip: Gunzip,
    overwrite: bool,
    fallback_name: Option<String>,
    on_progress: Option<OnProgress>,
    connections: Option<usize>,
    sha256: bool,
}

/// The most connections one download uses.
const MAX_CONNECTIONS: usize = 16;

impl std::fmt::Debug for DownloadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadRequest")
            .field("destination", &self.destination)
            .field("gunzip", &self.gunzip)
            .field("overwrite", &self.overwrite)
            .field("fallback_name", &self.fallback_name)
            .field("on_progress", &self.on_progress.is_some())
            .field("connections", &self.connections)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl DownloadRequest {
    /// Into `dir`, under the name the result host gives (made safe: a plain name that
    /// stays inside `dir`), without `.gz` when un-gzipped.
    pub fn to_dir(dir: impl Into<PathBuf>) -> DownloadRequest {
        DownloadRequest::new(Destination::Dir(dir.into()))
    }

    /// Into exactly this file.
    pub fn to_file(path: impl Into<PathBuf>) -> DownloadRequest {
        DownloadRequest::new(Destination::File(path.into()))
    }

    fn new(destination: Destination) -> DownloadRequest {
        DownloadRequest {
            destination,
            gunzip: Gunzip::Auto,
            overwrite: false,
            fallback_name: None,
            on_progress: None,
            connections: None,
            sha256: false,
        }
    }

    /// Whether to un-gzip (default [`Gunzip::Auto`]).
    pub fn gunzip(mut self, gunzip: Gunzip) -> Self {
        self.gunzip = gunzip;
        self
    }

    /// Whether an existing file may be replaced (default: no, [`Error::Exists`]
    /// instead).
    ///
    /// [`Error::Exists`]: crate::Error::Exists
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// The file name to use in a directory when the host gives no usable one (default:
    /// `ACTION_ID-INDEX` for a command's result, `download` for a bare link). Reduced to
    /// a plain name like any other.
    pub fn fallback_name(mut self, name: impl Into<String>) -> Self {
        self.fallback_name = Some(name.into());
        self
    }

    /// How many connections fetch the result at once, each a piece of it (1 to 16).
    /// By default, 4 for results of 64 MiB and more and 1 below: on a link whose every
    /// connection is capped (a distant jump host, a throttling proxy), several are
    /// faster; on a fast link one is enough. Every connection asks for its piece with
    /// `If-Match`, so a blob that changes is never mixed, and a kill keeps the pieces
    /// received for a rerun.
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = Some(connections.clamp(1, MAX_CONNECTIONS));
        self
    }

    /// Whether to compute the SHA-256 of the bytes as they are received and written
    /// (default: no), for [`Downloaded::sha256`] and [`Downloaded::sha256_served`]:
    /// while streaming, never in a second pass over the file.
    pub fn sha256(mut self, sha256: bool) -> Self {
        self.sha256 = sha256;
        self
    }

    /// Whether SHA-256 digests are asked for.
    pub fn sha256_wanted(&self) -> bool {
        self.sha256
    }

    /// The connections asked for (`None`: chosen by size).
    pub fn connections_setting(&self) -> Option<usize> {
        self.connections
    }

    /// Calls `f` as bytes arrive (often: throttle any drawing).
    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.on_progress = Some(Arc::new(f));
        self
    }

    /// Where the file goes.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// The un-gzip setting.
    pub fn gunzip_setting(&self) -> Gunzip {
        self.gunzip
    }

    /// Whether an existing file may be replaced.
    pub fn overwrites(&self) -> bool {
        self.overwrite
    }

    /// The name for a directory destination when the host gives none.
    pub(crate) fn fallback(&self) -> Option<&str> {
        self.fallback_name.as_deref()
    }

    pub(crate) fn progress(&self) -> Option<&OnProgress> {
        self.on_progress.as_ref()
    }

    /// This request with `name` as its fallback name unless it has one.
    pub(crate) fn with_default_name(&self, name: String) -> DownloadRequest {
        let mut r = self.clone();
        r.fallback_name.get_or_insert(name);
        r
    }

    /// The file that exists already and may not be replaced, for a file destination.
    pub(crate) fn existing_file(&self) -> Option<&Path> {
        match &self.destination {
            Destination::File(path) if !self.overwrite && path.exists() => Some(path),
            _ => None,
        }
    }

    /// The final path for a reply with `Content-Disposition` name `name` (unsanitised).
    pub(crate) fn final_path(&self, name: Option<&str>, gunzip: bool) -> PathBuf {
        match &self.destination {
            Destination::File(p) => p.clone(),
            Destination::Dir(dir) => {
                let name = name
                    .and_then(|n| safe_file_name(if gunzip { strip_gz(n) } else { n }))
                    .or_else(|| {
                        let fallback = self.fallback_name.as_deref()?;
                        safe_file_name(if gunzip { strip_gz(fallback) } else { fallback })
                    })
                    .unwrap_or_else(|| "download".to_owned());
                if dir == Path::new(".") {
                    PathBuf::from(name)
                } else {
                    dir.join(name)
                }
            }
        }
    }
}

/// `name` without a final `.gz` (any case).
pub(crate) fn strip_gz(name: &str) -> &str {
    let n = name.len();
    if n >= 3 && name.is_char_boundary(n - 3) && name[n - 3..].eq_ignore_ascii_case(".gz") {
        &name[..n - 3]
    } else {
        name
    }
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Downloaded {
    /// Where the file is.
    pub path: PathBuf,
    /// Bytes received from the host.
    pub received: u64,
    /// Bytes written to the file (differs from `received` when un-gzipped).
    pub written: u64,
    /// The name the host gave in `Content-Disposition`, unsanitised, if any.
    pub original_name: Option<String>,
    /// Whether it was un-gzipped on the way.
    pub gunzipped: bool,
    /// Un-gzipping was asked for (or implied by a `GetFile`), but the bytes did not
    /// start as gzip does (`1f 8b`): they were saved as they came, not thrown away.
    /// Worth a warning: the service's GetFile results are gzip.
    pub not_gzip: bool,
    /// Whether the host's `Content-MD5` was checked (it matched, or this is an error).
    pub md5_checked: bool,
    /// The SHA-256 (lowercase hex) of the file as delivered, when asked for
    /// ([`DownloadRequest::sha256`]).
    pub sha256: Option<String>,
    /// The SHA-256 of the bytes as the host served them (the `.gz` of a `GetFile`; the
    /// same as [`sha256`](Self::sha256) when nothing was un-gzipped), when asked for.
    pub sha256_served: Option<String>,
}
