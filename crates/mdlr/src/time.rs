//! Time as the service writes it: ISO 8601 in UTC, and seconds since the epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or `+00:00`) as UTC.
pub(crate) fn parse_utc(text: &str) -> Option<SystemTime> {
    let t = text.trim();
    let t = t.strip_suffix('Z').or_else(|| t.strip_suffix("+00:00"))?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (time, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut hms = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (hms.next()??, hms.next()??, hms.next()??);
    // Years past 9999 are no dates of this service, and would overflow the sums below.
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
    // Fractions of a second, to the millisecond (the service writes up to seven digits).
    let millis = fraction
        .bytes()
        .take(3)
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .try_fold(0u64, |acc, b| {
            b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
        })
        .unwrap_or(0);
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).ok();
        assert_eq!(
            parse_utc("2021-02-04T16:13:50Z").and_then(secs),
            Some(1_612_455_230_000)
        );
        assert_eq!(
            parse_utc("2021-02-04T16:13:50.1234567Z").and_then(secs),
            Some(1_612_455_230_123)
        );
        assert!(parse_utc("2000-03-01T00:00:00.123Z").is_some());
        assert!(parse_utc("2021-13-04T16:13:50Z").is_none());
        assert!(parse_utc("yesterday").is_none());
        assert!(parse_utc("555555555555555-01-01T00:00:00Z").is_none());
        assert!(parse_utc("-5555-01-01T00:00:00Z").is_none());
    }
}
