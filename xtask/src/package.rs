//! The packages of `cargo xtask dist`: `mdlr_VERSION_amd64.deb` and
//! `mdlr-VERSION-x86_64-linux.tar.gz`, with one layout:
//!
//! ```text
//! usr/bin/mdlr                                      0755, the release binary
//! usr/share/man/man1/mdlr.1.gz                      `mdlr man`
//! usr/share/bash-completion/completions/mdlr        `mdlr completions bash`
//! usr/share/zsh/vendor-completions/_mdlr            `mdlr completions zsh`
//! usr/share/fish/vendor_completions.d/mdlr.fish     `mdlr completions fish`
//! usr/share/doc/mdlr/copyright                      licences, with every crate inside
//! usr/share/doc/mdlr/changelog.gz                   CHANGELOG.md
//! ```
//!
//! The .deb is built by `dpkg-deb --root-owner-group` from a staging tree (no
//! maintainer scripts, no `Depends`: the binary is static); the tarball holds the same
//! tree under `mdlr-VERSION/`. Both are deterministic: fixed modes, every mtime set to
//! `SOURCE_DATE_EPOCH`, entries sorted, owner root, gzip without a name or time.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::sbom::Crate;

const MAINTAINER: &str = "mdlr maintainers <mdlr@example.invalid>";

/// One file of the packages, relative to `/`.
pub struct File {
    pub path: &'static str,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// What goes into the packages, as the binary and the build made it.
pub struct Payload<'a> {
    pub binary: &'a [u8],
    pub man: &'a [u8],
    pub bash: &'a [u8],
    pub zsh: &'a [u8],
    pub fish: &'a [u8],
    pub changelog: &'a [u8],
    /// The crates linked into the binary (from the SBOM).
    pub crates: &'a [Crate],
}

/// The files, in the layout above.
pub fn files(version: &str, payload: &Payload<'_>) -> Result<Vec<File>, String> {
    let file = |path, bytes: &[u8], mode| File {
        path,
        bytes: bytes.to_vec(),
        mode,
    };
    Ok(vec![
        file("usr/bin/mdlr", payload.binary, 0o755),
        file("usr/share/man/man1/mdlr.1.gz", &gzip(payload.man)?, 0o644),
        file(
            "usr/share/bash-completion/completions/mdlr",
            payload.bash,
            0o644,
        ),
        file("usr/share/zsh/vendor-completions/_mdlr", payload.zsh, 0o644),
        file(
            "usr/share/fish/vendor_completions.d/mdlr.fish",
            payload.fish,
            0o644,
        ),
        file(
            "usr/share/doc/mdlr/copyright",
            copyright(version, payload.crates).as_bytes(),
            0o644,
        ),
        file(
            "usr/share/doc/mdlr/changelog.gz",
            &gzip(payload.changelog)?,
            0o644,
        ),
    ])
}

/// The Debian version of a Cargo version: a pre-release sorts before its release with
/// `~` (`0.2.0-rc.1` → `0.2.0~rc.1`); a `-` would start a Debian revision.
pub fn deb_version(version: &str) -> String {
    version.replacen('-', "~", 1)
}

/// `mdlr_VERSION_amd64.deb`.
pub fn deb_name(version: &str) -> String {
    format!("mdlr_{}_amd64.deb", deb_version(version))
}

/// `mdlr-VERSION-x86_64-linux.tar.gz`.
pub fn tarball_name(version: &str) -> String {
    format!("mdlr-{version}-x86_64-linux.tar.gz")
}

/// Builds the .deb into `out` from a staging tree under `stage`.
pub fn deb(
    stage: &Path,
    out: &Path,
    version: &str,
    epoch: u64,
    files: &[File],
) -> Result<(), String> {
    let tree = stage.join("deb");
    fresh_dir(&tree)?;
    write_tree(&tree, files)?;
    let installed_kib: u64 = files
        .iter()
        .map(|f| (f.bytes.len() as u64).div_ceil(1024))
        .sum();
    let control = control(version, installed_kib);
    let debian = tree.join("DEBIAN");
    make_dir(&debian)?;
    write_file(&debian.join("control"), control.as_bytes(), 0o644)?;
    write_file(
        &debian.join("md5sums"),
        md5sums(&tree, files)?.as_bytes(),
        0o644,
    )?;
    set_mtimes(&tree, epoch)?;
    let output = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "-z9", "--build"])
        .arg(&tree)
        .arg(out)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!("cannot run dpkg-deb ({e}): building the .deb needs it (Debian's dpkg package)")
        })?;
    if !output.status.success() {
        return Err(format!(
            "dpkg-deb --build failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// Builds the tarball into `out`: the same files under `mdlr-VERSION/`.
pub fn tarball(
    stage: &Path,
    out: &Path,
    version: &str,
    epoch: u64,
    files: &[File],
) -> Result<(), String> {
    let top = format!("mdlr-{version}");
    let base = stage.join("tar");
    fresh_dir(&base)?;
    let tree = base.join(&top);
    make_dir(&tree)?;
    write_tree(&tree, files)?;
    set_mtimes(&tree, epoch)?;
    let output = Command::new("tar")
        .args([
            "--format=gnu",
            "--sort=name",
            &format!("--mtime=@{epoch}"),
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(&base)
        .args(["-cf", "-", &top])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "tar failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let gz = gzip(&output.stdout)?;
    std::fs::write(out, gz).map_err(|e| format!("cannot write {}: {e}", out.display()))
}

/// `DEBIAN/control`.
fn control(version: &str, installed_kib: u64) -> String {
    format!(
        "Package: mdlr\n\
         Version: {}\n\
         Architecture: amd64\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: Defender for Endpoint live response from the command line\n \
         mdlr gets live response results back from Microsoft Defender for Endpoint:\n \
         it asks the API for a command's result link, downloads it from Azure Blob\n \
         Storage whatever its size, and delivers it - a script's output with the\n \
         script's exit code, or a collected file on disk, un-gzipped, under its\n \
         original name. It starts live response commands on one machine or thousands\n \
         within the API's quotas.\n \
         .\n \
         One static executable: it needs no shared library, OpenSSL, CA bundle or\n \
         configuration file. The crates compiled into it are listed in its .dep-v0\n \
         section (cargo-auditable) and in the release's CycloneDX SBOM.\n",
        deb_version(version)
    )
}

/// `DEBIAN/md5sums`, as `dpkg --verify` reads it: `md5  path` per file.
fn md5sums(tree: &Path, files: &[File]) -> Result<String, String> {
    let output = Command::new("md5sum")
        .arg("--")
        .args(files.iter().map(|f| f.path))
        .current_dir(tree)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run md5sum: {e}"))?;
    if !output.status.success() {
        return Err(format!("md5sum failed ({})", output.status));
    }
    String::from_utf8(output.stdout).map_err(|_| "md5sum printed something not UTF-8".to_owned())
}

/// `usr/share/doc/mdlr/copyright`: mdlr's licence, then what else the static binary
/// holds, with the licences their authors state.
fn copyright(version: &str, crates: &[Crate]) -> String {
    let mut out = format!(
        "mdlr {version}\n\n\
         Copyright: the mdlr authors\n\
         License: MIT OR Apache-2.0\n\n\
         /usr/bin/mdlr is linked statically. Besides mdlr's own crates it holds these\n\
         Rust crates from crates.io, each under the licence its Cargo.toml states (the\n\
         release's SBOM, mdlr-{version}-x86_64-linux.cdx.json, lists them with their\n\
         checksums; `mdlr` itself carries the list in its .dep-v0 section):\n\n"
    );
    let width = crates
        .iter()
        .map(|c| c.name.len() + c.version.len() + 1)
        .max()
        .unwrap_or(0);
    let mut sorted: Vec<&Crate> = crates.iter().filter(|c| c.checksum.is_some()).collect();
    sorted.sort();
    for c in sorted {
        let id = format!("{} {}", c.name, c.version);
        out.push_str(&format!("  {id:width$}  {}\n", c.license));
    }
    out.push_str(
        "\nIt also holds, linked statically: the Rust standard library (MIT OR\n\
         Apache-2.0); the GNU C Library (LGPL-2.1-or-later; its startup files carry an\n\
         exception that permits static linking); and GCC's runtime support library,\n\
         libgcc (GPL-3.0-or-later WITH GCC-exception-3.1). The SBOM names their\n\
         versions. The licence texts: /usr/share/common-licenses on Debian, and each\n\
         crate's source on crates.io.\n",
    );
    out
}

/// Gzip at the best level, with no file name and no time in the header (`gzip -9n`).
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = flate2::GzBuilder::new()
        .operating_system(3)
        .write(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|e| format!("cannot gzip: {e}"))
}

fn fresh_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    make_dir(dir)
}

/// A directory (and its parents) with mode 0755, whatever the umask.
fn make_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot chmod {}: {e}", dir.display()))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
}

fn write_tree(tree: &Path, files: &[File]) -> Result<(), String> {
    for f in files {
        let path = tree.join(f.path);
        let mut dir = path.parent();
        // Every directory between the tree and the file gets 0755.
        let mut dirs = Vec::new();
        while let Some(d) = dir.filter(|d| *d != tree) {
            dirs.push(d.to_path_buf());
            dir = d.parent();
        }
        for d in dirs.iter().rev() {
            make_dir(d)?;
        }
        write_file(&path, &f.bytes, f.mode)?;
    }
    Ok(())
}

/// Sets the mtime of everything under `tree` (and of `tree`) to `epoch`: children before
/// their directory, since writing a child changes the directory's.
fn set_mtimes(tree: &Path, epoch: u64) -> Result<(), String> {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    let mut paths: Vec<PathBuf> = vec![tree.to_path_buf()];
    let mut i = 0;
    while i < paths.len() {
        if paths[i].is_dir() {
            let entries = std::fs::read_dir(&paths[i])
                .map_err(|e| format!("cannot list {}: {e}", paths[i].display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("cannot list: {e}"))?;
                paths.push(entry.path());
            }
        }
        i += 1;
    }
    for path in paths.iter().rev() {
        std::fs::File::open(path)
            .and_then(|f| f.set_modified(time))
            .map_err(|e| format!("cannot set the time of {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_versions_and_names() {
        assert_eq!(deb_version("0.1.0"), "0.1.0");
        assert_eq!(deb_version("0.2.0-rc.1"), "0.2.0~rc.1");
        assert_eq!(deb_name("0.1.0"), "mdlr_0.1.0_amd64.deb");
        assert_eq!(tarball_name("0.1.0"), "mdlr-0.1.0-x86_64-linux.tar.gz");
    }

    #[test]
    fn control_is_well_formed() {
        let control = control("0.2.0-rc.1", 2900);
        assert!(control.contains("\nVersion: 0.2.0~rc.1\n"));
        assert!(control.contains("\nInstalled-Size: 2900\n"));
        for line in control.lines().skip(1) {
            // A field, or a continuation line of the description.
            assert!(line.starts_with(' ') || line.contains(": "), "{line:?}");
            assert!(line.len() <= 80, "{line:?}");
        }
        assert!(!control.contains("Depends"), "the binary is static");
    }

    #[test]
    fn gzip_is_deterministic_and_round_trips() {
        let a = gzip(b"hello hello hello").expect("gzip");
        assert_eq!(a, gzip(b"hello hello hello").expect("gzip"));
        // No name (FLG 0) and no time (MTIME 0): as `gzip -n`.
        assert_eq!(&a[3..8], &[0, 0, 0, 0, 0]);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&a[..]), &mut out)
            .expect("gunzip");
        assert_eq!(out, "hello hello hello");
    }
}
