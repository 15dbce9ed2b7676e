//! The RunScript transcript: the JSON document a RunScript result link points to.
//!
//! Microsoft's own example is not strict JSON: it has a raw line break inside a string
//! and pads the output with `\u0000`. Real transcripts add a UTF-8 byte order mark, CRLF
//! line ends, non-ASCII text, and an `exit_code` that is a number or a string. All of
//! that is accepted; a document that is not a transcript at all is an error.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// What a RunScript command left behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Transcript {
    /// The script that ran.
    pub script_name: String,
    /// Its exit code.
    pub exit_code: i64,
    /// Its standard output, without the trailing NUL padding.
    pub script_output: String,
    /// Its standard error, without the trailing NUL padding.
    pub script_errors: String,
}

impl Transcript {
    /// Parses a transcript from the bytes of a RunScript result.
    pub fn parse(bytes: &[u8]) -> Result<Transcript> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Error::malformed("transcript", format!("not UTF-8 text: {e}")))?;
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(strict) => serde_json::from_str(&escape_raw_controls(text)).map_err(|_| {
                Error::malformed("transcript", format!("not a JSON document: {strict}"))
            })?,
        };
        let Value::Object(map) = value else {
            return Err(Error::malformed("transcript", "not a JSON object"));
        };
        if !map.contains_key("script_output") && !map.contains_key("exit_code") {
            return Err(Error::malformed(
                "transcript",
                "it has neither `script_output` nor `exit_code`",
            ));
        }
        Ok(Transcript {
            script_name: text_field(&map, "script_name")?,
            exit_code: exit_code(map.get("exit_code"))?,
            script_output: strip_padding(text_field(&map, "script_output")?),
            script_errors: strip_padding(text_field(&map, "script_errors")?),
        })
    }

    /// The exit status a process should end with to pass the script's code on, like
    /// `ssh` does: the code itself when it is 0–255, else 1.
    pub fn exit_status(&self) -> u8 {
        u8::try_from(self.exit_code).unwrap_or(1)
    }
}

fn text_field(map: &serde_json::Map<String, Value>, key: &str) -> Result<String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(Error::malformed(
            "transcript",
            format!("`{key}` should be text, found {}", kind(other)),
        )),
    }
}

fn exit_code(value: Option<&Value>) -> Result<i64> {
    let bad = |what: String| Error::malformed("transcript", format!("`exit_code` {what}"));
    match value {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| u as i64))
            .ok_or_else(|| bad(format!("is not a whole number: {n}"))),
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.is_empty() {
                return Ok(0);
            }
            t.parse::<i64>()
                .or_else(|_| t.parse::<u64>().map(|u| u as i64))
                .map_err(|_| bad(format!("is not a number: {s:?}")))
        }
        Some(other) => Err(bad(format!("should be a number, found {}", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Drops the NUL padding at the end (and any whitespace between it and the text).
fn strip_padding(mut s: String) -> String {
    if s.ends_with('\0') {
        let kept = s.trim_end_matches(['\0']).len();
        s.truncate(kept);
    }
    s
}

/// Escapes raw control characters inside JSON strings, which strict JSON forbids but
/// Microsoft's transcripts contain.
fn escape_raw_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            } else if (c as u32) < 0x20 {
                match c {
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    _ => out.push_str(&format!("\\u{:04x}", c as u32)),
                }
                continue;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from Microsoft's page, byte for byte (`seed/` in the shared folder).
    pub(crate) const SEED: &str = "{\n    \"script_name\": \"minidump.ps1\",\n    \"exit_code\": 0,\n    \"script_output\": \"Transcript started, output file is C:\\\\ProgramData\\\\Microsoft\\\\Windows Defender Advanced Threat Protection\\\\Temp\\\\PSScriptOutputs\\\\PSScript_Transcript_{TRANSCRIPT_ID}.txt\nC:\\\\windows\\\\TEMP\\\\OfficeClickToRun.dmp.zip\\n51 MB\\n\\u0000\\u0000\\u0000\",\n    \"script_errors\":\"\"\n}";

    #[test]
    fn seed_example() {
        let t = Transcript::parse(SEED.as_bytes()).expect("seed parses");
        assert_eq!(t.script_name, "minidump.ps1");
        assert_eq!(t.exit_code, 0);
        assert_eq!(
            t.script_output,
            "Transcript started, output file is C:\\ProgramData\\Microsoft\\Windows Defender \
             Advanced Threat Protection\\Temp\\PSScriptOutputs\\PSScript_Transcript_{TRANSCRIPT_ID}.txt\n\
             C:\\windows\\TEMP\\OfficeClickToRun.dmp.zip\n51 MB\n"
        );
        assert_eq!(t.script_errors, "");
    }

    #[test]
    fn bom_crlf_non_ascii_string_code() {
        let doc = "\u{feff}{\r\n\"script_name\":\"é.ps1\",\r\n\"exit_code\":\"3\",\r\n\
                   \"script_output\":\"zürich\r\n日本\r\n\",\"script_errors\":null}\r\n";
        let t = Transcript::parse(doc.as_bytes()).expect("parses");
        assert_eq!(t.exit_code, 3);
        assert_eq!(t.script_output, "zürich\r\n日本\r\n");
        assert_eq!(t.script_name, "é.ps1");
    }

    #[test]
    fn exit_status_like_ssh() {
        let mut t = Transcript::parse(br#"{"exit_code": 300}"#).expect("parses");
        assert_eq!(t.exit_status(), 1);
        t.exit_code = -1;
        assert_eq!(t.exit_status(), 1);
        t.exit_code = 42;
        assert_eq!(t.exit_status(), 42);
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"<html>nope</html>"[..],
            b"",
            b"[1,2]",
            b"{\"a\":1}",
            b"{\"exit_code\": [1]}",
            b"{\"exit_code\": 1, \"script_output\": 5}",
            b"{\"exit_code\": \"x\"}",
            b"{\"exit_code\": 1.5}",
            b"\xff\xfe{}",
            b"{\"script_output\": \"unterminated",
        ] {
            match Transcript::parse(bad) {
                Err(Error::Malformed { .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
