//! Machines: looking them up by id or DNS name.

use serde::{Deserialize, Serialize};

use crate::actions::{query_encode, quote};
use crate::api::Client;
use crate::error::{Error, Result};

/// A machine (device) known to Defender for Endpoint. Every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Machine {
    /// The machine id (40 hex characters).
    #[serde(default)]
    pub id: Option<String>,
    /// Its fully qualified DNS name.
    #[serde(default)]
    pub computer_dns_name: Option<String>,
    /// `Windows10`, `WindowsServer2019`, `Linux`, ...
    #[serde(default)]
    pub os_platform: Option<String>,
    /// `Active`, `Inactive`, ...
    #[serde(default)]
    pub health_status: Option<String>,
    /// When it was last seen (UTC, ISO 8601).
    #[serde(default)]
    pub last_seen: Option<String>,
    /// Its last internal IP address.
    #[serde(default)]
    pub last_ip_address: Option<String>,
    /// `None`, `Informational`, `Low`, `Medium`, `High`.
    #[serde(default)]
    pub risk_score: Option<String>,
}

/// Checks that `id` is a machine id: 40 hexadecimal characters.
pub fn check_machine_id(id: &str) -> Result<()> {
    if is_machine_id(id) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            message: format!(
                "{:?} is not a machine id (40 hexadecimal characters)",
                id.chars().take(80).collect::<String>()
            ),
        })
    }
}

/// Whether `s` has the form of a machine id (40 hexadecimal characters).
pub fn is_machine_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_dns_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            message: format!(
                "{:?} is neither a machine id nor a DNS name",
                name.chars().take(80).collect::<String>()
            ),
        })
    }
}

/// How many names go into one lookup query.
const NAMES_PER_QUERY: usize = 20;

impl Client {
    /// `GET /api/machines/{id}`.
    pub fn machine(&self, machine_id: &str) -> Result<Machine> {
        check_machine_id(machine_id)?;
        self.get_json(&format!("machines/{machine_id}"), "machine")
    }

    /// `GET /api/machines?$top=N`: machines, up to `top`.
    pub fn list_machines(&self, top: u32) -> Result<Vec<Machine>> {
        let top = top.clamp(1, 10_000);
        self.get_list(
            &format!("machines?$top={top}"),
            "machine list",
            top as usize,
        )
    }

    /// Machines whose DNS name is one of `names` (case-insensitive as the service
    /// compares), looked up with as few calls as possible: names are OR-ed together
    /// twenty to a query. An empty result (which the service may send as 404) is an
    /// empty list.
    pub fn find_machines(&self, names: &[&str]) -> Result<Vec<Machine>> {
        for n in names {
            check_dns_name(n)?;
        }
        let mut found = Vec::new();
        for chunk in names.chunks(NAMES_PER_QUERY) {
            let filter = chunk
                .iter()
                .map(|n| format!("computerDnsName eq {}", quote(&n.to_ascii_lowercase())))
                .collect::<Vec<_>>()
                .join(" or ");
            let path = format!("machines?$filter={}", query_encode(&filter));
            match self.get_list::<Machine>(&path, "machine list", 10_000) {
                Ok(ms) => found.extend(ms),
                Err(Error::Api { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids() {
        assert!(is_machine_id("1e5bc9d7e413ddd7902c2932e418702b84d0cc07"));
        assert!(!is_machine_id("1e5bc9d7e413ddd7902c2932e418702b84d0cc0"));
        assert!(!is_machine_id("host1.contoso.com"));
        assert!(check_dns_name("host1.contoso.com").is_ok());
        assert!(check_dns_name("a' or 1 eq 1").is_err());
    }
}
