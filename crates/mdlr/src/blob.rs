//! The result host: GETs of a result link without credentials, from a byte on, with
//! `If-Match`, following only redirects that pass the same checks as the link — and the
//! link itself, renewed through a callback when the host refuses it or it nears its
//! expiry. Needs the transport only: no client, no credential.

use std::time::{Duration, Instant, SystemTime};

use crate::cloud::check_url;
use crate::error::{Error, Result, TransportKind};
use crate::http::{Http, Request, Response};
use crate::link::ResultLink;
use crate::reply::resolve_location;
use crate::secret::redact_url;

/// A link that expires sooner than this is renewed before it is used (clocks drift).
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);
/// How long a result link lives (SPEC A4).
const LINK_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// A link younger than this is never renewed ahead of time: a clock far off from the
/// host's must not turn every use into a renewal (a refused link is renewed anyway).
const MIN_AGE_TO_RENEW: Duration = Duration::from_secs(60);
/// Redirects followed from a result link.
const MAX_REDIRECTS: usize = 5;

/// A way to get a fresh link for the same result.
pub(crate) type Refresh<'a> = &'a mut dyn FnMut() -> Result<ResultLink>;

/// Where the links come from: the one we have, and a way to get a fresh one.
pub(crate) struct Links<'a> {
    pub(crate) current: ResultLink,
    refresh: Option<Refresh<'a>>,
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
    /// `current`, and `refresh` to get a fresh one when it expires.
    pub(crate) fn renewable(current: ResultLink, refresh: Refresh<'a>) -> Links<'a> {
        Links::new(current, Some(refresh))
    }

    /// A link that cannot be renewed (a bare link: there is no API to ask).
    pub(crate) fn fixed(current: ResultLink) -> Links<'static> {
        Links::new(current, None)
    }

    fn new(current: ResultLink, refresh: Option<Refresh<'a>>) -> Links<'a> {
        Links {
            renew_at: renew_at(&current),
            obtained: Instant::now(),
            current,
            refresh,
        }
    }

    /// Renews the link; `false` when there is no way to.
    pub(crate) fn renew(&mut self) -> Result<bool> {
        match &mut self.refresh {
            Some(f) => {
                self.current = f()?;
                self.renew_at = renew_at(&self.current);
                self.obtained = Instant::now();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Whether the link should be renewed before it is used again.
    pub(crate) fn expiring(&self) -> bool {
        self.refresh.is_some()
            && self.obtained.elapsed() >= MIN_AGE_TO_RENEW
            && Instant::now() >= self.renew_at
    }
}

/// The result host, reached through the transport.
pub(crate) struct BlobHost<'h> {
    pub(crate) http: &'h Http,
}

impl BlobHost<'_> {
    /// GETs the blob from `offset` (with `If-Match` when resuming), renewing the link
    /// once if the host refuses it, following checked redirects.
    pub(crate) fn open(
        &self,
        links: &mut Links<'_>,
        offset: u64,
        etag: Option<&str>,
        first_byte: bool,
    ) -> Result<Response> {
        let mut renewed = false;
        loop {
            let got = if first_byte {
                self.probe(&links.current)
            } else {
                self.get(&links.current, offset, etag)
            };
            match got {
                Err(Error::Blob { status: 403, .. }) if !renewed && links.renew()? => {
                    renewed = true;
                }
                other => return other,
            }
        }
    }

    pub(crate) fn get(
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
        let resp = self.request(link, headers)?;
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
            _ => Err(resp.blob_error()),
        }
    }

    /// GETs the blob's first byte: its headers name the file, the blob and its length.
    /// A host that ignores the range sends the whole blob, which serves as well.
    pub(crate) fn probe(&self, link: &ResultLink) -> Result<Response> {
        let resp = self.request(link, vec![("Range", "bytes=0-0".to_owned())])?;
        match resp.status() {
            200 | 206 => Ok(resp),
            // An empty blob has no first byte.
            416 => self.get(link, 0, None),
            _ => Err(resp.blob_error()),
        }
    }

    /// GETs a result link with `headers`, without credentials, following checked
    /// redirects; returns the first reply that is not a redirect.
    fn request(&self, link: &ResultLink, headers: Vec<(&'static str, String)>) -> Result<Response> {
        self.http.redactor().add_link(link.expose());
        let mut url = link.expose().to_owned();
        check_url(&url, "download link")?;
        for _ in 0..=MAX_REDIRECTS {
            let mut req = Request::get(&url);
            req.headers = headers.clone();
            let resp = self.http.plain(&req)?;
            match resp.status() {
                301 | 302 | 303 | 307 | 308 => {
                    let location = resp.header("location").unwrap_or_default();
                    url = resolve_location(&url, location);
                    check_url(&url, "redirect target")?;
                    self.http.redactor().add_link(&url);
                }
                _ => return Ok(resp),
            }
        }
        Err(Error::Transport {
            url: redact_url(&url),
            kind: TransportKind::Other,
            message: format!("more than {MAX_REDIRECTS} redirects"),
            source: None,
        })
    }
}
