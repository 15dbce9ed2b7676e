//! Identifiers: what an action id, a machine id, a DNS name, a tenant and a library file
//! name may look like before they go into a URL — and random ones of our own.

use std::hash::{BuildHasher, Hasher};

use crate::error::{Error, Result};

fn invalid(message: String) -> Error {
    Error::InvalidArgument { message }
}

fn shown(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Checks that an action id can go into a URL path: letters, digits, `-` and `_`.
pub fn check_action_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{:?} is not a machine action id (a GUID such as 988cc94e-7a8f-4b28-ab65-54970c5d5018)",
            shown(id)
        )))
    }
}

/// Whether `s` has the form of a machine id: 40 hexadecimal characters.
pub fn is_machine_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks that `id` is a machine id: 40 hexadecimal characters.
pub fn check_machine_id(id: &str) -> Result<()> {
    if is_machine_id(id) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{:?} is not a machine id (40 hexadecimal characters)",
            shown(id)
        )))
    }
}

/// Checks that `name` can be a computer's DNS name (and so go into a filter safely).
pub(crate) fn check_dns_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{:?} is neither a machine id nor a DNS name",
            shown(name)
        )))
    }
}

/// Checks a tenant id or domain (it goes into the token URL's path).
pub(crate) fn check_tenant(tenant: &str) -> Result<()> {
    if tenant.is_empty()
        || !tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(Error::Config {
            message: format!("tenant {tenant:?} is not a tenant id or domain"),
        });
    }
    Ok(())
}

/// Checks a live response library file name.
pub(crate) fn check_library_name(name: &str) -> Result<()> {
    let ok = !name.trim().is_empty()
        && name.len() <= 255
        && !name.contains(['/', '\\'])
        && name != "."
        && name != ".."
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("{name:?} is not a library file name")))
    }
}

/// A random number for jitter and multipart boundaries (not for secrets).
pub(crate) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_ids() {
        assert!(check_action_id("988cc94e-7a8f-4b28-ab65-54970c5d5018").is_ok());
        for bad in ["", "../x", "a/b", "a?b", "a b", "a%2e", "a(index=0)"] {
            assert!(check_action_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn machine_ids_and_names() {
        assert!(is_machine_id("1e5bc9d7e413ddd7902c2932e418702b84d0cc07"));
        assert!(!is_machine_id("1e5bc9d7e413ddd7902c2932e418702b84d0cc0"));
        assert!(!is_machine_id("host1.contoso.com"));
        assert!(check_dns_name("host1.contoso.com").is_ok());
        assert!(check_dns_name("a' or 1 eq 1").is_err());
    }

    #[test]
    fn library_names() {
        assert!(check_library_name("collect.ps1").is_ok());
        for bad in ["", "..", "a/b", "a\\b", "a\nb"] {
            assert!(check_library_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tenants() {
        assert!(check_tenant("contoso.onmicrosoft.com").is_ok());
        assert!(check_tenant("../x").is_err());
    }
}
