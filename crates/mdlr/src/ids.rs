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

/// Whether `c` may be in the name of a file uploaded to the live response library.
fn is_upload_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Checks the name a file gets in the live response library when it is uploaded:
/// ASCII letters, digits, `-`, `_` and `.` only. Microsoft's live response page: "There
/// are restrictions on the characters that can be uploaded to the library. Use
/// alphanumeric characters and some symbols (specifically, `-`, `_`, or `.`)." The
/// message of a refusal suggests a name that would do ([`library_name_suggestion`]).
///
/// Names already in the library (which RunScript, PutFile and a delete refer to) are
/// not held to this: only what they must be to go into a URL or a request.
pub fn check_library_upload_name(name: &str) -> Result<()> {
    if !name.chars().all(is_upload_name_char) {
        return Err(invalid(format!(
            "{:?} cannot be a live response library file name: the library takes only \
             letters, digits, '-', '_' and '.'; {} would do",
            shown(name),
            library_name_suggestion(name)
        )));
    }
    check_library_name(name)
}

/// A name the live response library takes, made from `name`: each run of characters it
/// does not take (anything but ASCII letters, digits, `-`, `_` and `.`) becomes one `_`,
/// the extension is kept, and the `_` that would begin or end the part before it are
/// dropped (`collect data (v2).ps1` → `collect_data_v2.ps1`). A name with nothing
/// usable before its extension becomes `file` with that extension. A name the library
/// takes comes back as it is.
pub fn library_name_suggestion(name: &str) -> String {
    fn replace_runs(part: &str) -> String {
        let mut out = String::with_capacity(part.len());
        let mut in_run = false;
        for c in part.chars() {
            if is_upload_name_char(c) {
                out.push(c);
                in_run = false;
            } else if !in_run {
                out.push('_');
                in_run = true;
            }
        }
        out
    }
    if name.chars().all(is_upload_name_char) && check_library_name(name).is_ok() {
        return name.to_owned();
    }
    let (stem, extension) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], replace_runs(&name[dot + 1..])),
        _ => (name, String::new()),
    };
    let stem = replace_runs(stem);
    let stem = match stem.trim_matches('_') {
        "" | "." | ".." => "file",
        trimmed => trimmed,
    };
    let extension = extension.trim_matches('_');
    if extension.is_empty() {
        stem.to_owned()
    } else {
        format!("{stem}.{extension}")
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
    fn upload_names() {
        for good in [
            "collect.ps1",
            "Get-Thing_v2.sh",
            ".profile",
            "a.b.c",
            "README",
        ] {
            assert!(check_library_upload_name(good).is_ok(), "{good:?}");
        }
        for bad in [
            "collect data.ps1",
            "données.ps1",
            "a+b.ps1",
            "tool(1).exe",
            "a\tb",
        ] {
            let e = check_library_upload_name(bad).err().map(|e| e.to_string());
            let e = e.unwrap_or_default();
            assert!(e.contains("letters, digits, '-', '_' and '.'"), "{e}");
            assert!(e.contains(&library_name_suggestion(bad)), "{e}");
        }
        // What any library name must be still holds.
        for bad in ["", "..", "a/b"] {
            assert!(check_library_upload_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn upload_name_suggestions() {
        for (name, suggested) in [
            ("collect.ps1", "collect.ps1"),
            ("collect data.ps1", "collect_data.ps1"),
            ("collect  data .ps1", "collect_data.ps1"),
            ("collect data (v2).ps1", "collect_data_v2.ps1"),
            ("données.ps1", "donn_es.ps1"),
            ("a+b=c", "a_b_c"),
            ("tool.ps 1", "tool.ps_1"),
            ("東京.ps1", "file.ps1"),
            ("(1)", "1"),
            ("東京", "file"),
            ("", "file"),
            ("..", "file"),
            (r"C:\Tools\my tool.exe", "C_Tools_my_tool.exe"),
            ("dir/x y.sh", "dir_x_y.sh"),
            ("script.", "script."),
            ("script .", "script"),
            (".bash profile", ".bash_profile"),
        ] {
            let got = library_name_suggestion(name);
            assert_eq!(got, suggested, "{name:?}");
            assert!(
                check_library_upload_name(&got).is_ok(),
                "{name:?} -> {got:?}"
            );
        }
    }

    #[test]
    fn tenants() {
        assert!(check_tenant("contoso.onmicrosoft.com").is_ok());
        assert!(check_tenant("../x").is_err());
    }
}
