//! `multipart/form-data` (RFC 7578) request bodies.

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// The form field name (`name=` of `Content-Disposition`).
    pub name: String,
    /// The file name, for file fields.
    pub filename: Option<String>,
    /// The part's bytes.
    pub data: Vec<u8>,
}

/// The boundary named by a `Content-Type: multipart/form-data; boundary=...` value.
pub(crate) fn boundary(content_type: &str) -> Result<String, String> {
    let mut pieces = content_type.split(';');
    let mime = pieces.next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return Err(format!(
            "expected Content-Type multipart/form-data, got {mime:?}"
        ));
    }
    for (name, value) in params(pieces) {
        if name.eq_ignore_ascii_case("boundary") {
            if value.is_empty() || value.len() > 200 {
                return Err("the multipart boundary is empty or too long".into());
            }
            return Ok(value);
        }
    }
    Err("the multipart Content-Type has no boundary".into())
}

/// `name=value` / `name="value"` parameters of a header value, in order.
fn params<'a>(pieces: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    // Split again respecting quotes: a quoted value may hold ';'.
    let rest: Vec<&str> = pieces.collect();
    let rest = rest.join(";");
    let mut out = Vec::new();
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i] == ';' || chars[i].is_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && chars[i] != ';' {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect::<String>().trim().to_owned();
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && chars[i] == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                i += 1; // closing quote
                while i < chars.len() && chars[i] != ';' {
                    i += 1;
                }
            } else {
                let start = i;
                while i < chars.len() && chars[i] != ';' {
                    i += 1;
                }
                value = chars[start..i].iter().collect::<String>().trim().to_owned();
            }
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Splits `body` into its parts.
pub(crate) fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let boundary = boundary(content_type)?;
    let dash = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    // The first boundary: at the very start or after a preamble line.
    let mut at = if body.starts_with(dash.as_bytes()) {
        dash.len()
    } else {
        find(body, delimiter.as_bytes(), 0)
            .map(|p| p + delimiter.len())
            .ok_or("the multipart body has no boundary line")?
    };
    let mut parts = Vec::new();
    loop {
        if body[at..].starts_with(b"--") {
            return Ok(parts); // the closing delimiter
        }
        // Transport padding, then CRLF.
        while at < body.len() && (body[at] == b' ' || body[at] == b'\t') {
            at += 1;
        }
        if !body[at..].starts_with(b"\r\n") {
            return Err("a multipart boundary line does not end with CRLF".into());
        }
        at += 2;
        let end = find(body, delimiter.as_bytes(), at)
            .ok_or("the multipart body ends without its closing boundary")?;
        parts.push(part(&body[at..end])?);
        at = end + delimiter.len();
        if parts.len() > 1000 {
            return Err("too many multipart parts".into());
        }
    }
}

fn part(bytes: &[u8]) -> Result<Part, String> {
    let (head, data) = if bytes.starts_with(b"\r\n") {
        (&bytes[..0], &bytes[2..])
    } else {
        let split = find(bytes, b"\r\n\r\n", 0).ok_or("a multipart part has no header end")?;
        (&bytes[..split], &bytes[split + 4..])
    };
    let head = String::from_utf8_lossy(head);
    let mut name = None;
    let mut filename = None;
    let mut filename_star = None;
    for line in head.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        let mut pieces = value.split(';');
        let kind = pieces.next().unwrap_or_default().trim();
        if !kind.eq_ignore_ascii_case("form-data") {
            return Err(format!("a multipart part is {kind:?}, not form-data"));
        }
        for (k, v) in params(pieces) {
            match k.to_ascii_lowercase().as_str() {
                "name" => name = Some(v),
                "filename" => filename = Some(v),
                "filename*" => {
                    // RFC 5987: charset'language'percent-encoded
                    let encoded = v.splitn(3, '\'').nth(2).unwrap_or_default().to_owned();
                    filename_star = Some(crate::server::percent_decode(&encoded));
                }
                _ => {}
            }
        }
    }
    let name = name.ok_or("a multipart part has no Content-Disposition name")?;
    Ok(Part {
        name,
        filename: filename_star.or(filename),
        data: data.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_form() {
        let ct = "multipart/form-data; boundary=\"XyZ\"";
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a;b.ps1\"\r\nContent-Type: application/octet-stream\r\n\r\nline1\r\n-XyZ line2\r\n--XyZ  \r\nContent-Disposition: form-data; name=Description\r\n\r\nhello\r\n--XyZ--\r\nepilogue";
        let parts = parse(ct, body).expect("parses");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "file");
        assert_eq!(parts[0].filename.as_deref(), Some("a;b.ps1"));
        assert_eq!(parts[0].data, b"line1\r\n-XyZ line2");
        assert_eq!(parts[1].name, "Description");
        assert_eq!(parts[1].data, b"hello");
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(boundary("application/json").is_err());
        assert!(boundary("multipart/form-data").is_err());
        let ct = "multipart/form-data; boundary=b";
        assert!(
            parse(
                ct,
                b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\nno end"
            )
            .is_err()
        );
        assert!(parse(ct, b"nothing").is_err());
        assert!(parse(ct, b"--b\r\nX: y\r\n\r\nv\r\n--b--").is_err());
        assert_eq!(parse(ct, b"--b--").map(|p| p.len()), Ok(0));
    }
}
