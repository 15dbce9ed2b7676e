//! Files the way downloads make them: plain, safe names from what the network says,
//! and writes that never leave a partial file under a final name.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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
                extended = Some(crate::encode::percent_decode(encoded.trim_matches('"')));
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
    fn written_whole_or_not_at_all() {
        let dir = std::env::temp_dir().join(format!("mdlr-files-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let path = dir.join("a.txt");
        let _ = fs::remove_file(&path);
        assert!(write_file(&path, b"one", false).is_ok());
        assert!(matches!(
            write_file(&path, b"two", false),
            Err(Error::Exists { .. })
        ));
        assert!(write_file(&path, b"three", true).is_ok());
        assert_eq!(fs::read(&path).ok().as_deref(), Some(&b"three"[..]));
        assert!(!temp_path(&path).exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
