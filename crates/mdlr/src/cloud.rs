//! Clouds (Defender API hosts), their token authorities and scopes, and URL checks.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{Error, Result};

/// A Microsoft cloud that hosts the Defender for Endpoint API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Cloud {
    /// `https://api.securitycenter.microsoft.com` (the default).
    #[default]
    Commercial,
    /// The United States geographic host.
    Us,
    /// The European Union geographic host.
    Eu,
    /// The United Kingdom geographic host.
    Uk,
    /// The Australian geographic host.
    Au,
    /// The Switzerland geographic host.
    Swa,
    /// The India geographic host.
    Ina,
    /// US Government Community Cloud.
    Gcc,
    /// US Government Community Cloud High.
    GccHigh,
    /// US Department of Defense.
    Dod,
}

impl Cloud {
    /// Every cloud, in the order the documentation lists them.
    pub const ALL: [Cloud; 10] = [
        Cloud::Commercial,
        Cloud::Us,
        Cloud::Eu,
        Cloud::Uk,
        Cloud::Au,
        Cloud::Swa,
        Cloud::Ina,
        Cloud::Gcc,
        Cloud::GccHigh,
        Cloud::Dod,
    ];

    /// The name used on the command line (`commercial`, `gcc-high`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Commercial => "commercial",
            Cloud::Us => "us",
            Cloud::Eu => "eu",
            Cloud::Uk => "uk",
            Cloud::Au => "au",
            Cloud::Swa => "swa",
            Cloud::Ina => "ina",
            Cloud::Gcc => "gcc",
            Cloud::GccHigh => "gcc-high",
            Cloud::Dod => "dod",
        }
    }

    /// The API base, token authority and scope of this cloud.
    pub fn endpoints(self) -> Endpoints {
        let api = match self {
            Cloud::Commercial => "https://api.securitycenter.microsoft.com".to_owned(),
            Cloud::Us | Cloud::Eu | Cloud::Uk | Cloud::Au | Cloud::Swa | Cloud::Ina => {
                format!("https://{}.api.security.microsoft.com", self.name())
            }
            Cloud::Gcc => "https://api-gcc.securitycenter.microsoft.us".to_owned(),
            Cloud::GccHigh | Cloud::Dod => "https://api-gov.securitycenter.microsoft.us".to_owned(),
        };
        let authority = match self {
            Cloud::GccHigh | Cloud::Dod => "https://login.microsoftonline.us",
            _ => "https://login.microsoftonline.com",
        };
        let scope = match self {
            Cloud::Gcc | Cloud::GccHigh | Cloud::Dod => format!("{api}/.default"),
            _ => "https://api.securitycenter.microsoft.com/.default".to_owned(),
        };
        Endpoints {
            api_base: api,
            authority: authority.to_owned(),
            scope,
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cloud {
    type Err = Error;

    fn from_str(s: &str) -> Result<Cloud> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Cloud::ALL
            .into_iter()
            .find(|c| c.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = Cloud::ALL.iter().map(|c| c.name()).collect();
                Error::config(format!(
                    "unknown cloud {s:?}; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// Where the API, the token authority and the token scope are.
///
/// Start from [`Cloud::endpoints`] and override any field: Microsoft renames hosts, and
/// tests point them at loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// API base without the `/api` suffix, e.g. `https://api.securitycenter.microsoft.com`.
    pub api_base: String,
    /// Token authority, e.g. `https://login.microsoftonline.com`.
    pub authority: String,
    /// Token scope, e.g. `https://api.securitycenter.microsoft.com/.default`.
    pub scope: String,
}

impl Endpoints {
    /// Replaces the API base. A trailing `/` or `/api` is accepted and dropped.
    pub fn with_api_base(mut self, url: &str) -> Endpoints {
        self.api_base = normalize_api_base(url);
        self
    }

    /// Checks every URL: it must be `https://`, or `http://` to a loopback host.
    pub fn validate(&self) -> Result<()> {
        check_url(&self.api_base, "API URL")?;
        check_url(&self.authority, "login URL")?;
        Ok(())
    }

    /// The full URL of an API path (`machineactions/...`).
    pub(crate) fn api_url(&self, path: &str) -> String {
        format!("{}/api/{path}", self.api_base)
    }
}

impl Default for Endpoints {
    fn default() -> Endpoints {
        Cloud::Commercial.endpoints()
    }
}

/// Drops trailing slashes and a trailing `/api` from an API base URL.
pub fn normalize_api_base(url: &str) -> String {
    let mut base = url.trim().trim_end_matches('/');
    if base.len() >= 4 && base[base.len() - 4..].eq_ignore_ascii_case("/api") {
        base = base[..base.len() - 4].trim_end_matches('/');
    }
    base.to_owned()
}

/// Checks that `url` is `https://`, or `http://` to a loopback host (`127.0.0.0/8`,
/// `::1`, `localhost`). `what` names the URL in the error message.
pub fn check_url(url: &str, what: &str) -> Result<()> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(Error::config(format!(
            "{what} {url:?} is not an absolute URL"
        )));
    };
    let host = host_of(rest);
    if host.is_empty() {
        return Err(Error::config(format!("{what} {url:?} has no host")));
    }
    if scheme.eq_ignore_ascii_case("https") {
        return Ok(());
    }
    if scheme.eq_ignore_ascii_case("http") {
        if is_loopback(host) {
            return Ok(());
        }
        return Err(Error::config(format!(
            "refusing plain http:// for {what} {}: only https:// is allowed, \
             except to a loopback address",
            crate::secret::redact_url(url)
        )));
    }
    Err(Error::config(format!(
        "{what} {}: unsupported scheme {scheme:?}",
        crate::secret::redact_url(url)
    )))
}

/// The host part of what follows `scheme://`, without brackets, port or user info.
fn host_of(rest: &str) -> &str {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(inner) = host_port.strip_prefix('[') {
        return inner.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_names_round_trip() {
        for c in Cloud::ALL {
            assert_eq!(c.name().parse::<Cloud>().ok(), Some(c));
        }
        assert!("mars".parse::<Cloud>().is_err());
        assert_eq!("GCC_HIGH".parse::<Cloud>().ok(), Some(Cloud::GccHigh));
    }

    #[test]
    fn endpoints_per_cloud() {
        let e = Cloud::Eu.endpoints();
        assert_eq!(e.api_base, "https://eu.api.security.microsoft.com");
        assert_eq!(e.scope, "https://api.securitycenter.microsoft.com/.default");
        let d = Cloud::Dod.endpoints();
        assert_eq!(d.authority, "https://login.microsoftonline.us");
        assert_eq!(
            d.scope,
            "https://api-gov.securitycenter.microsoft.us/.default"
        );
        assert_eq!(
            Cloud::Gcc.endpoints().scope,
            "https://api-gcc.securitycenter.microsoft.us/.default"
        );
    }

    #[test]
    fn api_base_normalized() {
        for input in [
            "https://h",
            "https://h/",
            "https://h/api",
            "https://h/api/",
            "https://h/API",
        ] {
            assert_eq!(normalize_api_base(input), "https://h");
        }
        assert_eq!(
            normalize_api_base("http://127.0.0.1:8080/x/api"),
            "http://127.0.0.1:8080/x"
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://example.com/x",
            "http://127.0.0.1:1/x",
            "http://127.9.9.9/",
            "http://localhost:80",
            "http://[::1]:8080/a",
            "HTTP://LOCALHOST/",
        ] {
            assert!(check_url(ok, "u").is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/",
            "http://128.0.0.1/",
            "http://localhost.evil.com/",
            "http://127.0.0.1.evil.com/",
            "http://127.0.0.1@evil.com/",
            "ftp://127.0.0.1/",
            "example.com",
            "http:///x",
        ] {
            assert!(check_url(bad, "u").is_err(), "{bad}");
        }
    }
}
