//! The result host: GETs of a result link without credentials, from a byte on (or a
//! byte range), with `If-Match`, following only redirects that pass the same checks as
//! the link — and the link itself, renewed through a callback when the host refuses it
//! or it nears its expiry, once for all the connections that use it. Needs the
//! transport only: no client, no credential.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::cloud::check_url;
use crate::error::{Error, Result, TransportKind};
use crate::http::{Http, Request, Response};
use crate::link::ResultLink;
use crate::reply::resolve_location;
use crate::secret::redact_url;

/// How long before its `se` expiry a link is renewed by default (clocks drift).
pub(crate) const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// How long a result link lives (SPEC A4).
const LINK_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Redirects followed from a result link.
const MAX_REDIRECTS: usize = 5;

/// A way to get a fresh link for the same result (called by whichever connection finds
/// the link expired first).
pub(crate) type Refresh<'a> = &'a mut (dyn FnMut() -> Result<ResultLink> + Send);

/// Where the links come from: the one in use, a way to get a fresh one, and when to.
pub(crate) struct Links<'a> {
    current: ResultLink,
    refresh: Option<Refresh<'a>>,
    /// Renew this long before the link's `se` (and a link younger than a fifth of it is
    /// never renewed ahead of time: a clock far off from the host's must not turn every
    /// use into a renewal; a refused link is renewed anyway).
    before: Duration,
    /// When to renew ahead of expiry, by our clock.
    renew_at: Instant,
    obtained: Instant,
    /// Bumped by every renewal, so that connections that saw the same refusal renew
    /// once between them.
    generation: u64,
}

/// When to renew `link` obtained now: `before` its `se`, measured on our clock from
/// now (so a constant offset between the clocks does not matter), and never later than
/// its documented lifetime allows.
fn renew_at(link: &ResultLink, before: Duration) -> Instant {
    let now = Instant::now();
    let left = link
        .expires_at()
        .and_then(|t| t.duration_since(SystemTime::now()).ok())
        .filter(|d| *d > before / 5)
        .unwrap_or(LINK_LIFETIME)
        .min(LINK_LIFETIME);
    now + left.saturating_sub(before)
}

impl<'a> Links<'a> {
    /// `current`, and `refresh` to get a fresh one, renewed `before` its expiry.
    pub(crate) fn renewable(
        current: ResultLink,
        refresh: Refresh<'a>,
        before: Duration,
    ) -> Links<'a> {
        Links::new(current, Some(refresh), before)
    }

    /// A link that cannot be renewed (a bare link: there is no API to ask).
    pub(crate) fn fixed(current: ResultLink) -> Links<'static> {
        Links::new(current, None, RENEW_BEFORE)
    }

    fn new(current: ResultLink, refresh: Option<Refresh<'a>>, before: Duration) -> Links<'a> {
        Links {
            renew_at: renew_at(&current, before),
            obtained: Instant::now(),
            before,
            current,
            refresh,
            generation: 0,
        }
    }

    /// Renews the link; `false` when there is no way to.
    fn renew(&mut self) -> Result<bool> {
        match &mut self.refresh {
            Some(f) => {
                self.current = f()?;
                self.renew_at = renew_at(&self.current, self.before);
                self.obtained = Instant::now();
                self.generation += 1;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Whether the link should be renewed before it is used again.
    fn expiring(&self) -> bool {
        self.refresh.is_some()
            && self.obtained.elapsed() >= self.before / 5
            && Instant::now() >= self.renew_at
    }
}

/// [`Links`] shared by every connection of a download: a link that expires is renewed
/// once, by whichever connection needs it first, and the others use the new one.
pub(crate) struct SharedLinks<'a>(Mutex<Links<'a>>);

impl<'a> SharedLinks<'a> {
    pub(crate) fn new(links: Links<'a>) -> SharedLinks<'a> {
        SharedLinks(Mutex::new(links))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Links<'a>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link to use now (renewed first when it nears its expiry), and its generation.
    pub(crate) fn current(&self) -> Result<(ResultLink, u64)> {
        let mut links = self.lock();
        if links.expiring() {
            links.renew()?;
        }
        Ok((links.current.clone(), links.generation))
    }

    /// A fresh link after the host refused generation `seen`: renewed unless another
    /// connection renewed it meanwhile; `None` when links cannot be renewed.
    fn after_refusal(&self, seen: u64) -> Result<Option<(ResultLink, u64)>> {
        let mut links = self.lock();
        if links.generation == seen && !links.renew()? {
            return Ok(None);
        }
        Ok(Some((links.current.clone(), links.generation)))
    }

    /// The link in use, for messages (callers redact it).
    pub(crate) fn shown(&self) -> ResultLink {
        self.lock().current.clone()
    }
}

/// What to ask the result host for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// The first byte only: the reply names the file and the blob, and says its length.
    Probe,
    /// The blob from this byte to the end (the whole blob from 0).
    From(u64),
    /// Bytes `start..end` (half-open).
    Range(u64, u64),
}

/// The result host, reached through the transport.
#[derive(Clone, Copy)]
pub(crate) struct BlobHost<'h> {
    pub(crate) http: &'h Http,
}

impl BlobHost<'_> {
    /// GETs what `ask` says (with `If-Match: etag` for a part), renewing the shared
    /// link once if the host refuses it, following checked redirects.
    pub(crate) fn open(
        &self,
        links: &SharedLinks<'_>,
        ask: Ask,
        etag: Option<&str>,
    ) -> Result<Response> {
        let (mut link, mut generation) = links.current()?;
        let mut renewed = false;
        loop {
            let got = match ask {
                Ask::Probe => self.probe(&link),
                ask => self.get(&link, ask, etag),
            };
            match got {
                Err(Error::Blob { status: 403, .. }) if !renewed => {
                    match links.after_refusal(generation)? {
                        Some((fresh, g)) => (link, generation) = (fresh, g),
                        None => return got,
                    }
                    renewed = true;
                }
                other => return other,
            }
        }
    }

    /// GETs the blob from a byte on or a range of it; a part is asked for with
    /// `If-Match`, so a changed blob is refused (412) instead of mixed in.
    pub(crate) fn get(&self, link: &ResultLink, ask: Ask, etag: Option<&str>) -> Result<Response> {
        let (start, range) = match ask {
            Ask::From(0) | Ask::Probe => (0, None),
            Ask::From(start) => (start, Some(format!("bytes={start}-"))),
            Ask::Range(start, end) => (start, Some(format!("bytes={start}-{}", end - 1))),
        };
        let mut headers = Vec::new();
        if let Some(range) = range {
            headers.push(("Range", range));
            if let Some(tag) = etag {
                headers.push(("If-Match", tag.to_owned()));
            }
        }
        let ranged = !headers.is_empty();
        let resp = self.request(link, headers)?;
        match resp.status() {
            200 if !ranged => Ok(resp),
            206 if ranged => {
                let got = resp
                    .header("content-range")
                    .and_then(|r| r.trim().strip_prefix("bytes "))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if got != Some(start) {
                    return Err(Error::malformed(
                        "download",
                        format!("asked for bytes from {start}, got a range from {got:?}"),
                    ));
                }
                Ok(resp)
            }
            200 => Err(Error::malformed(
                "download",
                format!(
                    "the result host ignored the request for bytes from {start}, so the \
                     download cannot go on"
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
    fn probe(&self, link: &ResultLink) -> Result<Response> {
        let resp = self.request(link, vec![("Range", "bytes=0-0".to_owned())])?;
        match resp.status() {
            200 | 206 => Ok(resp),
            // An empty blob has no first byte.
            416 => self.get(link, Ask::From(0), None),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_refused_the_same_link_share_one_fresh_link() {
        let mut asked = 0;
        let mut refresh = || {
            asked += 1;
            Ok(ResultLink::new(format!("https://h/c/b?sig=fresh{asked}")))
        };
        let links = SharedLinks::new(Links::renewable(
            ResultLink::new("https://h/c/b?sig=first"),
            &mut refresh,
            RENEW_BEFORE,
        ));
        let (_, seen) = links.current().expect("a link");
        // Two connections refused with the link of generation `seen`: one renewal.
        let a = links.after_refusal(seen).expect("renewed");
        let b = links.after_refusal(seen).expect("shared");
        assert_eq!(a, b);
        let (fresh, generation) = a.expect("renewable");
        assert!(fresh.expose().ends_with("fresh1"), "{fresh:?}");
        // Refused again, later: a second renewal.
        let c = links.after_refusal(generation).expect("renewed");
        assert!(c.is_some_and(|(l, _)| l.expose().ends_with("fresh2")));
        drop(links);
        assert_eq!(asked, 2);
        // A bare link cannot be renewed.
        let fixed = SharedLinks::new(Links::fixed(ResultLink::new("https://h/c/b?sig=x")));
        assert!(fixed.after_refusal(0).expect("no error").is_none());
    }

    #[test]
    fn links_are_renewed_ahead_of_their_expiry_not_when_young() {
        // A link whose `se` (as the service writes it, percent-encoded) is `secs` away.
        let soon = |secs: u64| {
            let at = SystemTime::now() + Duration::from_secs(secs);
            let secs = at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            format!("https://h/c/b?se={}&sig=s", iso(secs))
        };
        let before = Duration::from_secs(10);
        // Expires in 8 s, renewed 10 s before: at once — but not while younger than 2 s.
        let link = ResultLink::new(soon(8));
        assert!(renew_at(&link, before) <= Instant::now());
        let mut refresh = || Ok(ResultLink::new(soon(600)));
        let links = Links::renewable(link, &mut refresh, before);
        assert!(
            !links.expiring(),
            "renewed while younger than a fifth of the margin"
        );
    }

    /// `YYYY-MM-DDTHH%3AMM%3ASSZ` for `secs` since the epoch.
    fn iso(secs: u64) -> String {
        let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}%3A{:02}%3A{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}
