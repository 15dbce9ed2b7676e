//! CSV for the case file (RFC 4180): a header row, fields quoted when they hold a
//! comma, a quote or a line break, UTF-8 — and no cell a spreadsheet would run as a
//! formula: text from the service or a machine that starts with `=`, `+`, `-`, `@`, a
//! tab or a carriage return gets a leading `'`, as OWASP recommends against CSV
//! injection.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mdlr::Error;

/// One cell: text that came from outside (neutralised), or a value of ours.
pub enum Cell<'a> {
    /// Text from the service, a machine or a script: a formula is neutralised.
    Text(&'a str),
    /// A number or a word of ours, written as it is.
    Ours(String),
    Empty,
}

impl Cell<'_> {
    fn render(&self) -> String {
        let text = match self {
            Cell::Text(t) if t.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{t}"),
            Cell::Text(t) => (*t).to_owned(),
            Cell::Ours(t) => t.clone(),
            Cell::Empty => String::new(),
        };
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text
        }
    }
}

/// An optional text cell.
pub fn text(value: Option<&str>) -> Cell<'_> {
    value.map_or(Cell::Empty, Cell::Text)
}

/// A CSV row: fields joined by commas, ended by CRLF (RFC 4180).
pub fn row(cells: &[Cell<'_>]) -> String {
    let mut line = cells.iter().map(Cell::render).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// The header row of `names`.
pub fn header(names: &[&str]) -> String {
    row(&names
        .iter()
        .map(|n| Cell::Ours((*n).to_owned()))
        .collect::<Vec<_>>())
}

/// A report file written as rows come (from several threads), each row whole.
pub struct Report {
    file: Mutex<File>,
    path: PathBuf,
}

/// The columns of `--report`.
pub const REPORT_COLUMNS: [&str; 8] = [
    "machine",
    "machine_id",
    "action_id",
    "status",
    "exit_code",
    "file",
    "sha256",
    "error",
];

/// One row of `--report`: a machine and a command.
#[derive(Debug, Default, Clone)]
pub struct ReportRow {
    pub machine: String,
    pub machine_id: String,
    pub action_id: Option<String>,
    pub status: String,
    pub exit_code: Option<i64>,
    pub file: Option<String>,
    pub sha256: Option<String>,
    pub error: Option<String>,
}

impl Report {
    /// Creates `path` (replacing it) with the header row.
    pub fn create(path: &Path) -> Result<Report, Error> {
        let io = |e| Error::Io {
            path: path.to_owned(),
            op: "write",
            source: e,
        };
        let mut file = File::create(path).map_err(io)?;
        file.write_all(header(&REPORT_COLUMNS).as_bytes())
            .map_err(io)?;
        Ok(Report {
            file: Mutex::new(file),
            path: path.to_owned(),
        })
    }

    /// Appends one row.
    pub fn add(&self, r: &ReportRow) -> Result<(), Error> {
        let line = row(&[
            Cell::Text(&r.machine),
            Cell::Text(&r.machine_id),
            text(r.action_id.as_deref()),
            Cell::Text(&r.status),
            r.exit_code
                .map_or(Cell::Empty, |c| Cell::Ours(c.to_string())),
            text(r.file.as_deref()),
            r.sha256.clone().map_or(Cell::Empty, Cell::Ours),
            text(r.error.as_deref()),
        ]);
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| Error::Io {
                path: self.path.clone(),
                op: "write",
                source: e,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_formulas() {
        assert_eq!(
            row(&[
                Cell::Text("plain"),
                Cell::Text("a,b"),
                Cell::Text("say \"hi\"\nthere"),
                Cell::Text("=HYPERLINK(\"http://x\")"),
                Cell::Text("+1"),
                Cell::Text("-2+3"),
                Cell::Text("@SUM(A1)"),
                Cell::Text("\tTAB"),
                Cell::Ours("-1".into()),
                Cell::Empty,
                Cell::Text("日本"),
            ]),
            "plain,\"a,b\",\"say \"\"hi\"\"\nthere\",\"'=HYPERLINK(\"\"http://x\"\")\",'+1,'-2+3,\
             '@SUM(A1),'\tTAB,-1,,日本\r\n"
        );
        assert_eq!(header(&["a", "b"]), "a,b\r\n");
    }
}
