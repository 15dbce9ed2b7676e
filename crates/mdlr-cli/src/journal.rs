//! The batch journal in the output directory: what started, what downloaded, what
//! ended, so that `--resume` starts nothing twice and downloads nothing twice.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mdlr::{BatchWork, Error};
use serde_json::{Value, json};

use crate::output::Failure;

/// The journal's file name inside the output directory.
pub const FILE_NAME: &str = ".mdlr-journal.jsonl";

pub struct Journal {
    file: Mutex<File>,
    path: PathBuf,
    /// Machine id → (action id, final exit status when it ended).
    machines: HashMap<String, (String, Option<u8>)>,
    /// When an earlier run started actions.
    earlier_starts: Vec<SystemTime>,
    /// When the batch's first run opened the journal.
    opened: Option<SystemTime>,
    /// (action id, command index) → file written.
    downloads: Mutex<HashMap<(String, u32), PathBuf>>,
    warned: Mutex<bool>,
}

/// The journal's first line: what the batch starts (a rerun must start the same).
fn batch_header(work: &BatchWork) -> Value {
    match work {
        BatchWork::LiveResponse(request) => {
            json!({ "batch": { "commands": request.commands, "comment": request.comment } })
        }
        other => json!({ "batch": { "type": other.action_type(), "comment": other.comment() } }),
    }
}

impl Journal {
    /// Opens `dir`'s journal: a new one, or with `resume` the one an earlier run left.
    pub fn open(dir: &Path, work: &BatchWork, resume: bool) -> Result<Journal, Failure> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.to_owned(),
            op: "create directory",
            source: e,
        })?;
        let path = dir.join(FILE_NAME);
        let header = batch_header(work);
        let mut machines = HashMap::new();
        let mut downloads = HashMap::new();
        let mut earlier_starts = Vec::new();
        let mut opened = None;
        let exists = path.exists();
        if exists && !resume {
            return Err(Error::Exists { path }.into());
        }
        if exists {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
                path: path.clone(),
                op: "read",
                source: e,
            })?;
            let mut lines = text.lines();
            let first: Option<Value> = lines.next().and_then(|l| serde_json::from_str(l).ok());
            if first.as_ref() != Some(&header) {
                return Err(Error::InvalidArgument {
                    message: format!(
                        "the journal {} was written for another command; run that command \
                         with --resume, or use another -o directory",
                        path.display()
                    ),
                }
                .into());
            }
            // A line cut short by a kill is skipped: what it recorded happens again.
            for line in lines.filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
                let s = |k: &str| line[k].as_str().map(str::to_owned);
                match (line["event"].as_str(), s("machine_id"), s("action_id")) {
                    (Some("opened"), _, _) => {
                        if let Some(ms) = line["at"].as_u64() {
                            opened = opened.or(Some(UNIX_EPOCH + Duration::from_millis(ms)));
                        }
                    }
                    (Some("started"), Some(m), Some(a)) => {
                        if let Some(ms) = line["at"].as_u64() {
                            earlier_starts.push(UNIX_EPOCH + Duration::from_millis(ms));
                        }
                        machines.insert(m, (a, None));
                    }
                    (Some("finished"), Some(m), Some(a)) => {
                        let status = line["exit_status"].as_u64().map(|v| v.min(255) as u8);
                        machines.insert(m, (a, status));
                    }
                    (Some("downloaded"), _, Some(a)) => {
                        if let (Some(i), Some(p)) = (line["index"].as_u64(), s("path")) {
                            // Relative to the output directory, wherever mdlr runs from.
                            downloads.insert((a, i as u32), dir.join(p));
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::Io {
                path: path.clone(),
                op: "open",
                source: e,
            })?;
        if !exists {
            let now = SystemTime::now();
            opened = Some(now);
            let at = now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            writeln!(file, "{header}\n{}", json!({ "event": "opened", "at": at })).map_err(
                |e| Error::Io {
                    path: path.clone(),
                    op: "write",
                    source: e,
                },
            )?;
        }
        Ok(Journal {
            file: Mutex::new(file),
            path,
            machines,
            earlier_starts,
            opened,
            downloads: Mutex::new(downloads),
            warned: Mutex::new(false),
        })
    }

    /// What an earlier run recorded for a machine: its action, and its exit status if
    /// it was done.
    pub fn state_of(&self, machine_id: &str) -> Option<(String, Option<u8>)> {
        self.machines.get(machine_id).cloned()
    }

    /// How long ago an earlier run started each of its actions (they still count
    /// against the quotas).
    pub fn earlier_starts(&self) -> Vec<Duration> {
        let now = SystemTime::now();
        self.earlier_starts
            .iter()
            .map(|t| now.duration_since(*t).unwrap_or_default())
            .collect()
    }

    /// When the batch's first run opened the journal, if it says.
    pub fn opened(&self) -> Option<SystemTime> {
        self.opened
    }

    /// The file an earlier download of this result wrote, if it is still there.
    pub fn downloaded(&self, action_id: &str, index: u32) -> Option<PathBuf> {
        let downloads = self.downloads.lock().unwrap_or_else(|e| e.into_inner());
        downloads
            .get(&(action_id.to_owned(), index))
            .filter(|p| p.exists())
            .cloned()
    }

    pub fn started(&self, machine_id: &str, name: &str, action_id: &str) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.append(json!({
            "event": "started", "machine_id": machine_id, "machine": name, "action_id": action_id,
            "at": at,
        }));
    }

    pub fn record_download(&self, action_id: &str, index: u32, path: &Path) {
        self.downloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((action_id.to_owned(), index), path.to_owned());
        // Relative to the output directory, so a resume from elsewhere finds it.
        let dir = self.path.parent().unwrap_or(Path::new(""));
        let relative = path.strip_prefix(dir).unwrap_or(path);
        self.append(json!({
            "event": "downloaded", "action_id": action_id, "index": index, "path": relative,
        }));
    }

    pub fn finished(&self, machine_id: &str, action_id: &str, exit_status: u8) {
        self.append(json!({
            "event": "finished", "machine_id": machine_id, "action_id": action_id,
            "exit_status": exit_status,
        }));
    }

    /// Appends one line. The file is unbuffered, so a line is with the system as soon
    /// as this returns: a kill loses nothing recorded.
    fn append(&self, value: Value) {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = writeln!(file, "{value}") {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            if !*warned {
                eprintln!(
                    "mdlr: cannot write the journal {}: {e}",
                    self.path.display()
                );
                *warned = true;
            }
        }
    }
}
