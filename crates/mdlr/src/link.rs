//! A result link: the Azure Blob Storage SAS URL a command's result is read from.

use std::time::SystemTime;

use crate::secret::{Secret, redact_url};

/// A result download link (an Azure Blob SAS URL, valid 30 minutes): from
/// [`Client::result_link`](crate::Client::result_link), from the portal, or from
/// another tool.
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
    pub fn expires_at(&self) -> Option<SystemTime> {
        crate::time::parse_utc(&self.expires()?)
    }

    /// The link with its `sig` value replaced by `REDACTED`, for display.
    pub fn redacted(&self) -> String {
        redact_url(self.0.expose())
    }

    /// The expiry the link carries (its `se` parameter, decoded), if any.
    pub fn expires(&self) -> Option<String> {
        let query = self.0.expose().split_once('?')?.1;
        let query = query.split('#').next().unwrap_or(query);
        query
            .split('&')
            .find_map(|p| p.strip_prefix("se="))
            .map(crate::encode::percent_decode)
    }

    /// The blob's URL without its query (no signature): what identifies the result.
    pub(crate) fn blob(&self) -> &str {
        self.0.expose().split('?').next().unwrap_or_default()
    }
}

impl std::fmt::Debug for ResultLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ResultLink").field(&self.redacted()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_expiry_and_redaction() {
        let l = ResultLink::new("https://h/c/b?se=2021-02-04T16%3A13%3A50Z&sp=r&sig=abc%3D");
        assert_eq!(l.expires().as_deref(), Some("2021-02-04T16:13:50Z"));
        assert!(l.expires_at().is_some());
        assert!(!format!("{l:?}").contains("abc"));
        assert!(l.redacted().ends_with("sig=REDACTED"));
        assert_eq!(l.blob(), "https://h/c/b");
    }
}
