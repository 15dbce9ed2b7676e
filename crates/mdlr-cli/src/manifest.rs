//! The evidence manifest of an output directory: `DIR/manifest.jsonl`, one JSON line per
//! delivered file, appended and synced to disk before the file counts as delivered,
//! never rewritten; and `mdlr verify DIR`, which holds the directory to it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use mdlr::{Downloaded, Error, MachineAction};
use serde_json::{Value, json};

use crate::output::{self, Failure, Output};

/// The manifest's file name inside the output directory.
pub const FILE_NAME: &str = "manifest.jsonl";

/// Where a delivered file came from: the machine, the action and the command.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub machine_id: Option<String>,
    pub machine: Option<String>,
    pub action_id: Option<String>,
    pub index: Option<u32>,
    pub command: Option<Value>,
    pub requestor: Option<String>,
    pub comment: Option<String>,
    pub created: Option<String>,
    pub updated: Option<String>,
}

impl Origin {
    /// Command `index` of `action` (`None`: the action itself, an investigation
    /// package).
    pub fn of(action: &MachineAction, index: Option<u32>) -> Origin {
        let command = index
            .and_then(|i| action.command(i))
            .and_then(|c| c.command.as_ref())
            .map(|c| {
                let params: serde_json::Map<String, Value> = c
                    .params
                    .iter()
                    .map(|p| (p.key.clone(), json!(p.value)))
                    .collect();
                json!({ "type": c.command_type.as_str(), "params": params })
            })
            .or_else(|| {
                action
                    .action_type
                    .as_ref()
                    .map(|t| json!({ "type": t, "params": {} }))
            });
        Origin {
            machine_id: action.machine_id.clone(),
            machine: action.computer_dns_name.clone(),
            action_id: action.id.clone(),
            index,
            command,
            requestor: action.requestor.clone(),
            comment: action.requestor_comment.clone(),
            created: action.creation_date_time_utc.clone(),
            updated: action.last_update_date_time_utc.clone(),
        }
    }
}

/// What the manifest says of one delivered file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The file, relative to the output directory.
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub sha256_served: String,
    pub size_served: u64,
    pub md5_checked: bool,
    pub origin: Origin,
}

/// A result: its action's id, and the command's index (`None`: the action's own,
/// an investigation package).
type ResultKey = (String, Option<u32>);

/// The manifest of one output directory, open for appending (created with its first
/// line: a directory where nothing was delivered gets none).
pub struct Manifest {
    dir: PathBuf,
    file: Mutex<Option<File>>,
    /// (action id, index) → the files (path, SHA-256) earlier runs delivered for it.
    delivered: BTreeMap<ResultKey, Vec<(PathBuf, String)>>,
}

impl Manifest {
    /// `dir`'s manifest, with what it lists already.
    pub fn open(dir: &Path) -> Result<Manifest, Failure> {
        let path = dir.join(FILE_NAME);
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.to_owned(),
            op: "create directory",
            source: e,
        })?;
        let mut delivered = BTreeMap::new();
        for line in read_lines(&path)? {
            let (Some(action), Some(p), Some(sha)) = (
                line["action_id"].as_str(),
                line["path"].as_str(),
                line["sha256"].as_str(),
            ) else {
                continue;
            };
            let index = line["index"].as_u64().map(|i| i as u32);
            delivered
                .entry((action.to_owned(), index))
                .or_insert_with(Vec::new)
                .push((PathBuf::from(p), sha.to_owned()));
        }
        Ok(Manifest {
            dir: dir.to_owned(),
            file: Mutex::new(None),
            delivered,
        })
    }

    /// The file an earlier run delivered for this result, when it is still there with
    /// the bytes the manifest records (a run killed after the manifest line and before
    /// the journal's: the rerun delivers nothing twice).
    pub fn delivered(&self, action_id: &str, index: Option<u32>) -> Option<PathBuf> {
        let files = self.delivered.get(&(action_id.to_owned(), index))?;
        let intact = files
            .iter()
            .all(|(path, sha)| sha256_file(&self.dir.join(path)).is_ok_and(|got| got == *sha));
        let (first, _) = files.first()?;
        intact.then(|| self.dir.join(first))
    }

    /// The path of `file` relative to the directory (as the manifest writes it).
    pub fn relative(&self, file: &Path) -> PathBuf {
        file.strip_prefix(&self.dir).unwrap_or(file).to_owned()
    }

    /// Appends `entries` (the files of one result) in one write and syncs them to
    /// disk: only then do the files count as delivered. A kill cannot leave half of
    /// them listed.
    pub fn record_all(&self, entries: &[Entry]) -> Result<(), Error> {
        let text: String = entries.iter().map(|e| format!("{}\n", line(e))).collect();
        let path = self.dir.join(FILE_NAME);
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let written = match file.as_mut() {
            Some(f) => f.write_all(text.as_bytes()).and_then(|()| f.sync_data()),
            None => OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| {
                    f.write_all(text.as_bytes())?;
                    f.sync_data()?;
                    *file = Some(f);
                    Ok(())
                }),
        };
        written.map_err(|e| Error::Io {
            path,
            op: "write",
            source: e,
        })
    }
}

impl Entry {
    /// The entry of a download into `manifest`'s directory (asked with SHA-256).
    pub fn of_download(manifest: &Manifest, done: &Downloaded, origin: Origin) -> Entry {
        Entry {
            path: manifest.relative(&done.path),
            size: done.written,
            sha256: done.sha256.clone().unwrap_or_default(),
            sha256_served: done.sha256_served.clone().unwrap_or_default(),
            size_served: done.received,
            md5_checked: done.md5_checked,
            origin,
        }
    }
}

/// The manifest line of `entry`.
fn line(entry: &Entry) -> Value {
    {
        let o = &entry.origin;
        json!({
            "path": entry.path,
            "size": entry.size,
            "sha256": entry.sha256,
            "sha256_served": entry.sha256_served,
            "size_served": entry.size_served,
            "md5_checked": entry.md5_checked,
            "machine_id": o.machine_id,
            "machine": o.machine,
            "action_id": o.action_id,
            "index": o.index,
            "command": o.command,
            "requestor": o.requestor,
            "comment": o.comment,
            "created": o.created,
            "updated": o.updated,
            "downloaded_at": now_utc(),
            "mdlr_version": env!("CARGO_PKG_VERSION"),
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, now.
fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{}Z", output::utc(secs, 'T'))
}

/// The lines of a manifest (none when there is no file yet); a line cut short by a
/// kill is skipped.
fn read_lines(path: &Path) -> Result<Vec<Value>, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                path: path.to_owned(),
                op: "read",
                source: e,
            }
            .into());
        }
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect())
}

/// The SHA-256 of a file, lowercase hex, read in one pass.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 512 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => context.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hex(context.finish().as_ref()))
}

/// The SHA-256 of bytes in memory, lowercase hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `mdlr verify` found for one file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Finding {
    Ok,
    Missing,
    Changed { sha256: String },
    Unlisted,
}

/// Files of mdlr's own bookkeeping, never listed.
fn bookkeeping(name: &str) -> bool {
    name == FILE_NAME
        || name == crate::journal::FILE_NAME
        || name.ends_with(".mdlr-part")
        || name.ends_with(".mdlr-part.json")
}

/// Every regular file under `dir`, relative to it.
fn files_under(dir: &Path, base: &Path, out: &mut BTreeSet<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files_under(&path, base, out)?;
        } else if kind.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !bookkeeping(&name) {
                out.insert(path.strip_prefix(base).unwrap_or(&path).to_owned());
            }
        }
    }
    Ok(())
}

/// `mdlr verify DIR`: re-hashes every file the manifest lists and names each missing,
/// changed or unlisted one; exit 0 only when all match, 65 otherwise.
pub fn verify(out: &Output, dir: &Path) -> Result<u8, Failure> {
    let path = dir.join(FILE_NAME);
    if !path.is_file() {
        return Err(Error::NotFound {
            message: format!("{} has no manifest ({FILE_NAME})", dir.display()),
        }
        .into());
    }
    // The last line for a path is what was delivered last.
    let mut listed: BTreeMap<PathBuf, String> = BTreeMap::new();
    for line in read_lines(&path)? {
        if let (Some(p), Some(sha)) = (line["path"].as_str(), line["sha256"].as_str()) {
            listed.insert(PathBuf::from(p), sha.to_owned());
        }
    }
    let mut present = BTreeSet::new();
    files_under(dir, dir, &mut present).map_err(|e| Error::Io {
        path: dir.to_owned(),
        op: "list",
        source: e,
    })?;
    let mut findings: Vec<(PathBuf, Finding)> = Vec::new();
    for (p, want) in &listed {
        let full = dir.join(p);
        let finding = match sha256_file(&full) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Finding::Missing,
            Err(e) => {
                return Err(Error::Io {
                    path: full,
                    op: "read",
                    source: e,
                }
                .into());
            }
            Ok(got) if got == *want => Finding::Ok,
            Ok(got) => Finding::Changed { sha256: got },
        };
        findings.push((p.clone(), finding));
    }
    for p in present.difference(&listed.keys().cloned().collect()) {
        findings.push((p.clone(), Finding::Unlisted));
    }
    findings.sort();
    let bad = findings.iter().filter(|(_, f)| *f != Finding::Ok).count();
    for (p, finding) in &findings {
        let want = listed.get(p);
        if out.json {
            let (status, got) = match finding {
                Finding::Ok => ("ok", want.cloned()),
                Finding::Missing => ("missing", None),
                Finding::Changed { sha256 } => ("changed", Some(sha256.clone())),
                Finding::Unlisted => ("unlisted", None),
            };
            out.json_line(&json!({
                "path": p, "status": status, "sha256_listed": want, "sha256": got,
            }))?;
        } else if *finding != Finding::Ok {
            let what = match finding {
                Finding::Missing => "missing".to_owned(),
                Finding::Changed { sha256 } => format!(
                    "changed: SHA-256 {sha256}, the manifest says {}",
                    want.map_or("", String::as_str)
                ),
                Finding::Unlisted => "not in the manifest".to_owned(),
                Finding::Ok => String::new(),
            };
            out.print(&format!(
                "{}: {what}\n",
                output::clean(&p.display().to_string())
            ))?;
        }
    }
    if !out.json {
        out.note(&format!(
            "{} file(s) listed, {} match, {bad} do not",
            listed.len(),
            findings.iter().filter(|(_, f)| *f == Finding::Ok).count()
        ));
    }
    Ok(if bad == 0 { 0 } else { output::EX_DATAERR })
}
