//! Downloading a result link to disk: streamed, optionally un-gzipped on the way,
//! written under a temporary name and renamed only when complete and verified.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::secret::{Secret, redact_url};

/// A result download link (an Azure Blob SAS URL, valid 30 minutes).
///
/// Its `Debug` shows the link with the signature redacted; [`ResultLink::expose`] gives
/// the usable link.
#[derive(Clone, PartialEq, Eq)]
pub struct ResultLink(Secret);

impl ResultLink {
    /// Wraps a link.
    pub fn new(url: impl Into<String>) -> ResultLink {
        ResultLink(Secret::new(url.into()))
    }

    /// The usable link, signature included. It grants read access to the result.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// When the link expires (its `se` parameter), if it says.
    pub fn expires_at(&self) -> Option<std::time::SystemTime> {
        parse_utc(&self.expires()?)
    }

    /// The link with its `sig` value replaced by `REDACTED`, for display.
    pub fn redacted(&self) -> String {
        redact_url(self.0.expose())
    }

    /// The expiry the link carries (its `se` parameter, decoded), if any.
    pub fn expires(&self) -> Option<String> {
        let query = self.0.expose().split_once('?')?.1;
        query
            .split('&')
            .find_map(|p| p.strip_prefix("se="))
            .map(percent_decode)
    }
}

impl std::fmt::Debug for ResultLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ResultLink").field(&self.redacted()).finish()
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC).
pub(crate) fn parse_utc(text: &str) -> Option<std::time::SystemTime> {
    let t = text.trim();
    let t = t.strip_suffix('Z').or_else(|| t.strip_suffix("+00:00"))?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut hms = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (hms.next()??, hms.next()??, hms.next()??);
    // Years past 9999 are no SAS expiry, and would overflow the sums below.
    if !(1..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&min)
        || !(0..=60).contains(&s)
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + h * 3600 + min * 60 + s).ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Where a download goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// This exact file.
    File(PathBuf),
    /// This directory, under the name the result host gives (`Content-Disposition`,
    /// made safe), or the fallback name of the [`DownloadRequest`].
    Dir(PathBuf),
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

/// A progress callback; its `Debug` says only that there is one.
#[derive(Clone)]
pub struct OnProgress(pub std::sync::Arc<dyn Fn(&Progress) + Send + Sync>);

impl std::fmt::Debug for OnProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnProgress")
    }
}

/// What to download where, and how.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    /// Where the file goes.
    pub destination: Destination,
    /// Un-gzip while streaming (GetFile results). Without it the bytes are kept as sent.
    pub gunzip: bool,
    /// Replace an existing file.
    pub overwrite: bool,
    /// The file name to use in a directory when the host gives no usable name.
    pub fallback_name: String,
    /// Called as bytes arrive (often: throttle any drawing).
    pub on_progress: Option<OnProgress>,
}

impl DownloadRequest {
    /// A request for `destination` with fallback name `fallback_name`, not un-gzipping
    /// and not overwriting.
    pub fn new(destination: Destination, fallback_name: impl Into<String>) -> DownloadRequest {
        DownloadRequest {
            destination,
            gunzip: false,
            overwrite: false,
            fallback_name: fallback_name.into(),
            on_progress: None,
        }
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
}

/// Picks the final path for a reply with `Content-Disposition` value `disposition`.
pub(crate) fn final_path(req: &DownloadRequest, disposition: Option<&str>) -> PathBuf {
    match &req.destination {
        Destination::File(p) => p.clone(),
        Destination::Dir(dir) => {
            let name = disposition
                .and_then(disposition_file_name)
                .and_then(|n| {
                    let n = if req.gunzip { strip_gz(&n) } else { &n };
                    safe_file_name(n)
                })
                .unwrap_or_else(|| req.fallback_name.clone());
            if dir == Path::new(".") {
                PathBuf::from(name)
            } else {
                dir.join(name)
            }
        }
    }
}

fn strip_gz(name: &str) -> &str {
    let n = name.len();
    if n >= 3 && name.is_char_boundary(n - 3) && name[n - 3..].eq_ignore_ascii_case(".gz") {
        &name[..n - 3]
    } else {
        name
    }
}

/// Writes `bytes` to `path` the way downloads are written: under a temporary name
/// beside it, synced, and moved into place only when complete. An existing file is
/// kept unless `overwrite`.
pub fn write_file(path: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    if !overwrite && path.exists() {
        return Err(Error::Exists {
            path: path.to_owned(),
        });
    }
    let temp = temp_path(path);
    let outcome = File::create(&temp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| Error::io(&temp, "write", e))
        .and_then(|()| publish(&temp, path, overwrite));
    if outcome.is_err() {
        let _ = fs::remove_file(&temp);
    }
    outcome
}

/// The temporary name beside `path`: `.NAME.mdlr-part`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    path.with_file_name(format!(".{name}.mdlr-part"))
}

/// Moves the finished temporary file to its final name. Without `overwrite` the move
/// never replaces a file that appeared meanwhile.
pub(crate) fn publish(temp: &Path, path: &Path, overwrite: bool) -> Result<()> {
    if overwrite {
        return fs::rename(temp, path).map_err(|e| Error::io(path, "rename into", e));
    }
    match fs::hard_link(temp, path) {
        Ok(()) => {
            let _ = fs::remove_file(temp);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::Exists {
            path: path.to_owned(),
        }),
        // Filesystems without hard links: check, then rename.
        Err(_) if !path.exists() => {
            fs::rename(temp, path).map_err(|e| Error::io(path, "rename into", e))
        }
        Err(_) => Err(Error::Exists {
            path: path.to_owned(),
        }),
    }
}

/// The file name a `Content-Disposition` value carries: `filename*` (RFC 5987,
/// percent-encoded UTF-8) wins over `filename`. Unsanitised.
pub fn disposition_file_name(value: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    for part in split_params(value) {
        let Some((key, val)) = part.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let val = val.trim();
        if key == "filename*" {
            // charset'language'percent-encoded
            let mut pieces = val.splitn(3, '\'');
            let charset = pieces.next().unwrap_or("");
            let _language = pieces.next();
            if let Some(encoded) = pieces.next()
                && (charset.eq_ignore_ascii_case("utf-8") || charset.is_empty())
            {
                extended = Some(percent_decode(encoded.trim_matches('"')));
            }
        } else if key == "filename" {
            plain = Some(unquote(val));
        }
    }
    extended.or(plain).filter(|n| !n.is_empty())
}

/// Splits on `;` outside quoted strings.
fn split_params(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                current.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
}

fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"') else {
        return v.to_owned();
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Reduces a name from the network to a plain file name that stays inside the target
/// directory: the last component after `/` or `\`, without a drive letter, control
/// characters, or leading dots (so no `..` and nothing hidden), at most 200 bytes.
/// `None` when nothing usable is left.
pub fn safe_file_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let last = match last.as_bytes() {
        [d, b':', ..] if d.is_ascii_alphabetic() => &last[2..],
        _ => last,
    };
    let cleaned: String = last
        .chars()
        .map(|c| if c == ':' { '_' } else { c })
        .filter(|c| !c.is_control())
        .collect();
    // Dots and blanks in any order: `. .bashrc` must not become `.bashrc`.
    let dot_or_blank = |c: char| c == '.' || c.is_whitespace();
    let trimmed = cleaned
        .trim_start_matches(dot_or_blank)
        .trim_end_matches(dot_or_blank);
    let mut end = trimmed.len().min(200);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    let cut = trimmed[..end].trim_end_matches(dot_or_blank);
    (!cut.is_empty()).then(|| cut.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_forms() {
        assert_eq!(
            disposition_file_name("attachment; filename=\"a b.txt.gz\"").as_deref(),
            Some("a b.txt.gz")
        );
        assert_eq!(
            disposition_file_name("attachment; filename=plain.gz").as_deref(),
            Some("plain.gz")
        );
        assert_eq!(
            disposition_file_name(
                "attachment; filename=\"fallback.gz\"; filename*=UTF-8''%E6%97%A5%20x.gz"
            )
            .as_deref(),
            Some("日 x.gz")
        );
        assert_eq!(
            disposition_file_name("attachment; filename=\"q\\\"x;y.gz\"").as_deref(),
            Some("q\"x;y.gz")
        );
        assert_eq!(disposition_file_name("attachment"), None);
        assert_eq!(disposition_file_name("attachment; filename=\"\""), None);
    }

    #[test]
    fn hostile_names_become_plain() {
        for (raw, want) in [
            ("../x", Some("x")),
            ("..\\..\\x", Some("x")),
            ("/etc/x", Some("x")),
            ("C:\\x", Some("x")),
            ("C:x", Some("x")),
            ("..", None),
            ("...", None),
            (".bashrc", Some("bashrc")),
            ("a/", None),
            ("nul\0byte\n.txt", Some("nulbyte.txt")),
            ("ok.txt", Some("ok.txt")),
            ("trailing. . ", Some("trailing")),
            ("ads:stream", Some("ads_stream")),
            (". .bashrc", Some("bashrc")),
            (". .;", Some(";")),
            (".\u{2003}.profile", Some("profile")),
        ] {
            assert_eq!(safe_file_name(raw).as_deref(), want, "{raw:?}");
        }
        let long = "é".repeat(300);
        let cut = safe_file_name(&long).expect("kept");
        assert!(cut.len() <= 200);
    }

    #[test]
    fn final_names() {
        let mut req = DownloadRequest::new(Destination::Dir(PathBuf::from("/o")), "id-0");
        req.gunzip = true;
        assert_eq!(
            final_path(&req, Some("attachment; filename=\"..\\..\\evil.txt.gz\"")),
            PathBuf::from("/o/evil.txt")
        );
        assert_eq!(
            final_path(&req, Some("attachment; filename=\".gz\"")),
            PathBuf::from("/o/id-0")
        );
        assert_eq!(final_path(&req, None), PathBuf::from("/o/id-0"));
        req.gunzip = false;
        assert_eq!(
            final_path(&req, Some("attachment; filename=\"x.gz\"")),
            PathBuf::from("/o/x.gz")
        );
    }

    #[test]
    fn utc_times() {
        let t = parse_utc("2021-02-04T16:13:50Z").expect("parses");
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        assert_eq!(secs, 1_612_455_230);
        assert!(parse_utc("2000-03-01T00:00:00.123Z").is_some());
        assert!(parse_utc("2021-13-04T16:13:50Z").is_none());
        assert!(parse_utc("yesterday").is_none());
        assert!(parse_utc("555555555555555-01-01T00:00:00Z").is_none());
        assert!(parse_utc("-5555-01-01T00:00:00Z").is_none());
    }

    #[test]
    fn link_expiry_and_redaction() {
        let l = ResultLink::new("https://h/c/b?se=2021-02-04T16%3A13%3A50Z&sp=r&sig=abc%3D");
        assert_eq!(l.expires().as_deref(), Some("2021-02-04T16:13:50Z"));
        assert!(!format!("{l:?}").contains("abc"));
        assert!(l.redacted().ends_with("sig=REDACTED"));
    }
}
