//! Running one client and what it cost; where its files go.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::stats::Sample;

/// The longest any one client run may take.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Runs `command` with stdout to `stdout` (or nowhere); under GNU `time` (`wait4`'s
/// rusage: user and system CPU of the process and every child it waited for, the peak
/// resident set of the largest) when `time` is given. The wall is measured here.
pub fn run(
    command: Command,
    time: Option<&Path>,
    report: &Path,
    stdout: Option<&Path>,
) -> Result<(Sample, ExitStatus, String), String> {
    let mut command = match time {
        Some(time) => {
            let mut t = Command::new(time);
            t.args(["-f", "%U %S %M", "-o"])
                .arg(report)
                .arg(command.get_program())
                .args(command.get_args())
                .env_clear();
            for (k, v) in command.get_envs() {
                if let Some(v) = v {
                    t.env(k, v);
                }
            }
            if let Some(dir) = command.get_current_dir() {
                t.current_dir(dir);
            }
            t
        }
        None => command,
    };
    let out = match stdout {
        Some(path) => Stdio::from(
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?,
        ),
        None => Stdio::null(),
    };
    let what = format!("{:?}", command.get_program());
    let begun = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let stderr = crate::read_in_background(child.stderr.take());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if begun.elapsed() < RUN_LIMIT => {
                std::thread::sleep(Duration::from_micros(100));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {RUN_LIMIT:?}"));
            }
            Err(e) => return Err(format!("cannot wait for {what}: {e}")),
        }
    };
    let wall = begun.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&crate::collect(stderr)?).into_owned();
    let mut sample = Sample {
        wall,
        ..Sample::default()
    };
    if time.is_some() {
        let text = std::fs::read_to_string(report)
            .map_err(|e| format!("cannot read GNU time's report: {e}"))?;
        let fields: Vec<&str> = text
            .lines()
            .last()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        match fields.as_slice() {
            [user, sys, rss] => {
                sample.user = user.parse().ok();
                sample.sys = sys.parse().ok();
                sample.max_rss_kib = rss.parse().ok();
            }
            _ => return Err(format!("GNU time reported {text:?} ({what}: {stderr})")),
        }
    }
    Ok((sample, status, stderr))
}

/// `sync`: whatever an earlier round left dirty is written before the next is timed.
pub fn sync() -> Result<(), String> {
    let status = Command::new("sync")
        .status()
        .map_err(|e| format!("cannot run sync: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!("sync failed ({status})")),
    }
}

/// Whether the page cache could be dropped here (`/proc/sys/vm/drop_caches` opens for
/// writing: root, and a `/proc/sys` not mounted read-only). Asked once, for the record,
/// without dropping anything: the bench does not rely on it.
pub fn can_drop_caches() -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .is_ok()
}

/// The lowercase hex SHA-256 of a file, from `sha256sum` (streamed, any size).
pub fn sha256_file(path: &Path) -> Result<String, String> {
    let output = Command::new("sha256sum")
        .arg(path)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run sha256sum (coreutils): {e}"))?;
    let hex: String = String::from_utf8_lossy(&output.stdout)
        .chars()
        .take(64)
        .collect();
    match output.status.success() && hex.len() == 64 {
        true => Ok(hex),
        false => Err(format!(
            "sha256sum {} failed ({})",
            path.display(),
            output.status
        )),
    }
}

/// A mounted filesystem, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub fstype: String,
    pub source: String,
    pub point: PathBuf,
}

impl Mount {
    /// The filesystem holding `path` (which must exist): the mount with the longest
    /// mount point that is a prefix of its canonical path.
    pub fn of(path: &Path) -> Option<Mount> {
        let path = path.canonicalize().ok()?;
        let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        parse_mountinfo(&table)
            .into_iter()
            .filter(|m| path.starts_with(&m.point))
            .max_by_key(|m| m.point.components().count())
    }

    /// `ext4 (/dev/vda, mounted at /)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, mounted at {})",
            self.fstype,
            self.source,
            self.point.display()
        )
    }
}

/// Every mount of a mountinfo table: `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] -
/// FSTYPE SOURCE SUPER`, the later of two at the same point winning (it hides the other).
fn parse_mountinfo(table: &str) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = Vec::new();
    for line in table.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(fstype), Some(source)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 2))
        else {
            continue;
        };
        // Spaces and the like are octal escapes (`\040`).
        let point = PathBuf::from(unescape(point));
        mounts.retain(|m| m.point != point);
        mounts.push(Mount {
            fstype: (*fstype).to_owned(),
            source: unescape(source),
            point,
        });
    }
    mounts
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The device a path is on (to check that two directories share a filesystem).
pub fn device(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.dev())
}

/// An executable on `PATH` (or at one of `fixed`).
pub fn find_tool(name: &str, fixed: &[&str]) -> Option<PathBuf> {
    fixed
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

/// `aria2c`, installed with apt-get (Debian package `aria2`) when it is missing and we
/// are root; `Err` says why there is none.
pub fn aria2c() -> Result<PathBuf, String> {
    if let Some(found) = find_tool("aria2c", &["/usr/bin/aria2c"]) {
        return Ok(found);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0");
    if !root {
        return Err(
            "aria2c is missing and this is not root: run `sudo apt-get install -y \
                    aria2` and bench again"
                .to_owned(),
        );
    }
    println!("bench: installing aria2c: apt-get install -y --no-install-recommends aria2");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "aria2"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        // Probably no package lists yet (a fresh container): fetch them once.
        println!("bench: apt-get update");
        let updated = Command::new("apt-get")
            .arg("update")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !updated || !install() {
            return Err("apt-get could not install aria2".to_owned());
        }
    }
    find_tool("aria2c", &["/usr/bin/aria2c"])
        .ok_or_else(|| "apt-get installed aria2, but there is no aria2c".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo() {
        let table = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /dev/shm rw,nosuid,nodev shared:2 - tmpfs tmpfs rw
24 22 0:22 / /mnt/a\\040b rw - xfs /dev/vdb rw
25 22 0:23 / /dev/shm rw - tmpfs shm2 rw
";
        let mounts = parse_mountinfo(table);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].fstype, "ext4");
        assert_eq!(mounts[1].point, PathBuf::from("/mnt/a b"));
        assert_eq!(mounts[2].source, "shm2");
        assert_eq!(unescape("a\\040b\\"), "a b\\");
        // This machine: the root filesystem is something.
        assert!(Mount::of(Path::new("/")).is_some_and(|m| m.point == Path::new("/")));
    }
}
