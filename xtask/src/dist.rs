//! `cargo xtask dist`: a release for jump hosts, in `target/dist/`, made afresh:
//!
//! | file | what |
//! |---|---|
//! | `mdlr-VERSION-x86_64-linux`, `mdlr` | one static x86_64 Linux executable (the same file twice) |
//! | `mdlr-VERSION-x86_64-linux.cdx.json` | its SBOM: CycloneDX 1.5, the crates compiled in (`sbom`) |
//! | `mdlr_VERSION_amd64.deb` | a Debian package: binary, man page, completions (`package`) |
//! | `mdlr-VERSION-x86_64-linux.tar.gz` | the same files under `mdlr-VERSION/usr/...` |
//! | `mdlr.1` | the manual page, as `mdlr man` prints it |
//! | `SHA256SUMS` | every file above, for `sha256sum -c` |
//!
//! - The binary is built with `cargo auditable build --release` (cargo-auditable, pinned
//!   and installed into `~/.cargo/mdlr-tools` when missing: see `tools` for why not
//!   under `target/`), which embeds the list
//!   of crates compiled in as a zlib-compressed JSON `.dep-v0` section that scanners
//!   (Trivy, Grype, Syft) read from the file alone. It targets
//!   `x86_64-unknown-linux-musl` when rustup has that target, else
//!   `x86_64-unknown-linux-gnu` with `-C target-feature=+crt-static`, and with
//!   `-C relocation-model=static`: a static executable at a fixed address rather than a
//!   static-pie. A static-pie carries a relocation table for every pointer in its data
//!   (about 120 KiB here); stack, heap and mappings are still randomised, only the
//!   program's own code is not (as with Go's static binaries).
//! - Checked from its ELF headers, read here: no `PT_INTERP` (no dynamic loader) and no
//!   `DT_NEEDED` (no shared library); at most [`SIZE_LIMIT`] bytes; `--version` runs in an
//!   empty directory with an empty environment and names the version and the commit.
//! - The man page and the completion scripts are what the built binary prints
//!   (`mdlr man`, `mdlr completions SHELL`), run the same way.
//! - Reproducible: everything derives from the commit. Times are `SOURCE_DATE_EPOCH`
//!   (else the commit's time), so two builds of one commit, from any path, give the same
//!   bytes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{package, sbom, tools};

/// The size goal of issue 14 (it was 3 MiB in issue 5, before the `.dep-v0` section).
pub const SIZE_LIMIT: u64 = 7 * 512 * 1024;

const GNU: &str = "x86_64-unknown-linux-gnu";
const MUSL: &str = "x86_64-unknown-linux-musl";
const STATIC_FLAG: &str = "-C target-feature=+crt-static -C relocation-model=static";

/// What `cargo xtask dist` made.
pub struct Dist {
    /// `target/dist/mdlr`.
    pub binary: PathBuf,
    /// `target/dist/mdlr-<version>-x86_64-linux`.
    pub versioned: PathBuf,
    /// The target it was built for.
    pub target: &'static str,
    /// Its size in bytes.
    pub size: u64,
    /// What the ELF headers say about linking.
    pub linking: Linking,
    /// `mdlr --version`, trimmed.
    pub version_line: String,
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// How many crates the SBOM lists (the root included).
    pub crates: usize,
    /// Every file of `target/dist/`: (name, size, SHA-256), sorted by name.
    pub files: Vec<(String, u64, String)>,
}

/// `cargo xtask dist [--quiet]`.
pub fn run(root: &Path, args: &[&str]) -> Result<(), String> {
    let quiet = match args {
        [] => false,
        ["--quiet" | "-q"] => true,
        _ => {
            return Err(format!(
                "unknown option {}\nusage: cargo xtask dist",
                args.join(" ")
            ));
        }
    };
    let dist = build(root, quiet)?;
    println!("{}", describe(root, &dist));
    Ok(())
}

/// Builds, checks and packages; `Err` when a check fails.
pub fn build(root: &Path, quiet: bool) -> Result<Dist, String> {
    let target = target();
    tools::ensure(root, &tools::CARGO_AUDITABLE)?;
    if !quiet {
        println!(
            "dist: cargo auditable build --release --target {target} -p mdlr-cli{}",
            if target == GNU {
                format!(" (RUSTFLAGS += \"{STATIC_FLAG}\")")
            } else {
                String::new()
            }
        );
    }
    let (built, version) = cargo_build(root, target)?;
    let bytes =
        std::fs::read(&built).map_err(|e| format!("cannot read {}: {e}", built.display()))?;
    let linking = elf_linking(&bytes).map_err(|e| format!("{}: {e}", built.display()))?;
    if let Some(problem) = linking.dynamic() {
        return Err(format!("{} is not static: {problem}", built.display()));
    }
    let size = bytes.len() as u64;
    if size > SIZE_LIMIT {
        return Err(format!(
            "{} is {size} bytes ({}), over the {} limit",
            built.display(),
            mib(size),
            mib(SIZE_LIMIT)
        ));
    }
    let epoch = source_date_epoch(root)?;

    let dir = root.join("target").join("dist");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let versioned_name = format!("mdlr-{version}-x86_64-linux");
    let versioned = dir.join(&versioned_name);
    let binary = dir.join("mdlr");
    for path in [&versioned, &binary] {
        std::fs::copy(&built, path)
            .map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), path.display()))?;
    }
    let version_line = String::from_utf8_lossy(&run_alone(&binary, &["--version"])?)
        .trim()
        .to_owned();
    let expected = format!("mdlr {version} (commit ");
    let commit = version_line
        .strip_prefix(&expected)
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| {
            format!("`mdlr --version` printed {version_line:?}, not \"{expected}...)\"")
        })?
        .to_owned();
    let sha256 = mdlr_tests::util::sha256_hex(&bytes);

    // What the binary says of itself: the man page and the completions.
    let man = run_alone(&binary, &["man"])?;
    write(&dir.join("mdlr.1"), &man)?;
    let [bash, zsh, fish] =
        ["bash", "zsh", "fish"].map(|shell| run_alone(&binary, &["completions", shell]));

    let (sbom, crates) = sbom::generate(
        root,
        &sbom::Input {
            target,
            version: &version,
            commit: &commit,
            binary_sha256: &sha256,
            epoch,
        },
    )?;
    write(
        &dir.join(format!("{versioned_name}.cdx.json")),
        sbom.as_bytes(),
    )?;

    let changelog = std::fs::read(root.join("CHANGELOG.md"))
        .map_err(|e| format!("cannot read CHANGELOG.md: {e}"))?;
    let files = package::files(
        &version,
        &package::Payload {
            binary: &bytes,
            man: &man,
            bash: &bash?,
            zsh: &zsh?,
            fish: &fish?,
            changelog: &changelog,
            crates: &crates,
        },
    )?;
    let stage = root.join("target").join("dist-stage");
    package::deb(
        &stage,
        &dir.join(package::deb_name(&version)),
        &version,
        epoch,
        &files,
    )?;
    package::tarball(
        &stage,
        &dir.join(package::tarball_name(&version)),
        &version,
        epoch,
        &files,
    )?;
    let _ = std::fs::remove_dir_all(&stage);

    let files = checksums(&dir)?;
    Ok(Dist {
        binary,
        versioned,
        target,
        size,
        linking,
        version_line,
        sha256,
        crates: crates.len(),
        files,
    })
}

/// Writes `SHA256SUMS` for every other file of `dir`; returns them all with their
/// sizes and hashes, `SHA256SUMS` last.
fn checksums(dir: &Path) -> Result<Vec<(String, u64, String)>, String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "SHA256SUMS")
        .collect();
    names.sort();
    let mut files = Vec::new();
    let mut sums = String::new();
    for name in names {
        let path = dir.join(&name);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let sha = mdlr_tests::util::sha256_hex(&bytes);
        sums.push_str(&format!("{sha}  {name}\n"));
        files.push((name, bytes.len() as u64, sha));
    }
    let path = dir.join("SHA256SUMS");
    write(&path, sums.as_bytes())?;
    files.push((
        "SHA256SUMS".to_owned(),
        sums.len() as u64,
        mdlr_tests::util::sha256_hex(sums.as_bytes()),
    ));
    Ok(files)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `SOURCE_DATE_EPOCH` when set, else the time of the commit checked out.
fn source_date_epoch(root: &Path) -> Result<u64, String> {
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") {
        return value
            .trim()
            .parse()
            .map_err(|_| format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds"));
    }
    crate::first_line(
        Command::new("git")
            .args(["log", "-1", "--format=%ct", "HEAD"])
            .current_dir(root),
    )
    .and_then(|t| t.parse().ok())
    .ok_or_else(|| {
        "cannot read the commit's time with git: set SOURCE_DATE_EPOCH (seconds since 1970) \
         to date the release's files"
            .to_owned()
    })
}

/// What `cargo xtask dist` prints.
pub fn describe(root: &Path, dist: &Dist) -> String {
    let rel = |p: &Path| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let mut out = format!(
        "{}\n  target   {}\n  linking  {}\n  size     {} bytes ({}; limit {})\n  \
         version  {}\n  sha256   {}\n  crates   {} compiled in, listed in its .dep-v0 \
         section and its SBOM\n\n{}:\n",
        rel(&dist.versioned),
        dist.target,
        dist.linking.describe(),
        dist.size,
        mib(dist.size),
        mib(SIZE_LIMIT),
        dist.version_line,
        dist.sha256,
        dist.crates,
        rel(dist.binary.parent().unwrap_or(root)),
    );
    let width = dist
        .files
        .iter()
        .map(|(n, _, _)| n.len())
        .max()
        .unwrap_or(0);
    for (name, size, _) in &dist.files {
        out.push_str(&format!("  {name:width$}  {size:>9} bytes\n"));
    }
    out.push_str("(check: cd target/dist && sha256sum -c SHA256SUMS)");
    out
}

/// `1.23 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// musl when rustup has it installed (static by default), else glibc with crt-static.
fn target() -> &'static str {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if installed.lines().any(|l| l.trim() == MUSL) {
        MUSL
    } else {
        GNU
    }
}

/// Runs the release build with cargo-auditable; returns the executable cargo names and
/// the package version.
fn cargo_build(root: &Path, target: &str) -> Result<(PathBuf, String), String> {
    let mut command = tools::cargo(root, &tools::CARGO_AUDITABLE);
    command.args([
        "auditable",
        "build",
        "--quiet",
        "--locked",
        "--release",
        "--target",
        target,
        "--package",
        "mdlr-cli",
        "--bin",
        "mdlr",
        "--message-format=json-render-diagnostics",
    ]);
    // Our flag goes after the user's own; cargo prefers the encoded form when set.
    if let Some(encoded) = std::env::var_os("CARGO_ENCODED_RUSTFLAGS") {
        let mut flags = encoded.to_string_lossy().into_owned();
        for flag in STATIC_FLAG.split(' ') {
            if !flags.is_empty() {
                flags.push('\x1f');
            }
            flags.push_str(flag);
        }
        command.env("CARGO_ENCODED_RUSTFLAGS", flags);
    } else {
        let user = std::env::var("RUSTFLAGS").unwrap_or_default();
        command.env("RUSTFLAGS", format!("{user} {STATIC_FLAG}").trim());
    }
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build for {target} failed ({})",
            output.status
        ));
    }
    let mut found = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "mdlr"
            && let Some(exe) = message["executable"].as_str()
        {
            let version = message["package_id"].as_str().and_then(package_version);
            found = Some((PathBuf::from(exe), version));
        }
    }
    match found {
        Some((exe, Some(version))) => Ok((exe, version)),
        Some((_, None)) => Err("cargo did not give mdlr-cli's version".to_owned()),
        None => Err("cargo build did not name the mdlr executable".to_owned()),
    }
}

/// The version in a cargo package id: `path+file:///...#mdlr-cli@0.1.0` (cargo ≥ 1.77)
/// or `mdlr-cli 0.1.0 (path+file:///...)`.
fn package_version(id: &str) -> Option<String> {
    let version = match id.rsplit_once('#') {
        Some((_, tail)) => tail.rsplit_once('@').map_or(tail, |(_, v)| v),
        None => id.split_whitespace().nth(1)?,
    };
    let ok = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    ok.then(|| version.to_owned())
}

/// What `binary ARGS` prints, run in an empty directory with an empty environment.
fn run_alone(binary: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let dir = crate::TempDir::new(&format!("mdlr-dist-{}", std::process::id()))?;
    let output = Command::new(binary)
        .args(args)
        .env_clear()
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`{} {}` failed ({}): {}",
            binary.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output.stdout)
}

// ---------------------------------------------------------------------------------------
// ELF

/// How an ELF executable is linked, from its program headers and dynamic section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linking {
    /// `ET_DYN`: position-independent (a static-pie when there is no interpreter).
    pub pie: bool,
    /// `PT_INTERP`: the dynamic loader it asks for.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`: the shared libraries it asks for.
    pub needed: Vec<String>,
}

impl Linking {
    /// Why it is not static, if it is not.
    pub fn dynamic(&self) -> Option<String> {
        let mut why = Vec::new();
        if let Some(i) = &self.interpreter {
            why.push(format!("it asks for the dynamic loader {i} (PT_INTERP)"));
        }
        if !self.needed.is_empty() {
            why.push(format!("it needs {} (DT_NEEDED)", self.needed.join(", ")));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    pub fn describe(&self) -> String {
        match self.dynamic() {
            Some(why) => format!("dynamic: {why}"),
            None if self.pie => "static-pie (no PT_INTERP, no DT_NEEDED)".to_owned(),
            None => "static (no PT_INTERP, no DT_NEEDED)".to_owned(),
        }
    }
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;

/// Reads the linking facts of a 64-bit little-endian x86_64 ELF file.
pub fn elf_linking(bytes: &[u8]) -> Result<Linking, String> {
    let u16_at = |at: usize| -> Result<u16, String> {
        bytes
            .get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
            .ok_or_else(|| format!("ELF file cut short at byte {at}"))
    };
    let u32_at = |at: usize| -> Result<u32, String> {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| format!("ELF file cut short at byte {at}"))
    };
    let u64_at = |at: usize| -> Result<u64, String> {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| format!("ELF file cut short at byte {at}"))
    };
    let usize_at = |at: usize| -> Result<usize, String> {
        usize::try_from(u64_at(at)?).map_err(|_| "ELF offset out of range".to_owned())
    };
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file".to_owned());
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".to_owned());
    }
    let machine = u16_at(18)?;
    if machine != EM_X86_64 {
        return Err(format!("not an x86_64 executable (e_machine {machine})"));
    }
    let pie = u16_at(16)? == ET_DYN;
    let phoff = usize_at(32)?;
    let phentsize = usize::from(u16_at(54)?);
    let phnum = usize::from(u16_at(56)?);
    if phentsize < 56 {
        return Err(format!("program header entries of {phentsize} bytes"));
    }
    // (type, offset, vaddr, filesz) of each program header.
    let mut headers = Vec::with_capacity(phnum);
    for i in 0..phnum {
        let at = phoff
            .checked_add(i.checked_mul(phentsize).ok_or("too many program headers")?)
            .ok_or("program headers out of range")?;
        headers.push((
            u32_at(at)?,
            usize_at(at + 8)?,
            u64_at(at + 16)?,
            usize_at(at + 32)?,
        ));
    }
    let slice = |offset: usize, size: usize| -> Result<&[u8], String> {
        offset
            .checked_add(size)
            .and_then(|end| bytes.get(offset..end))
            .ok_or_else(|| "segment out of the file".to_owned())
    };
    let mut interpreter = None;
    let mut needed_offsets = Vec::new();
    let mut strtab = None;
    for &(kind, offset, _, size) in &headers {
        match kind {
            PT_INTERP => {
                let text = slice(offset, size)?;
                let text = text.split(|b| *b == 0).next().unwrap_or_default();
                interpreter = Some(String::from_utf8_lossy(text).into_owned());
            }
            PT_DYNAMIC => {
                for entry in slice(offset, size)?.chunks_exact(16) {
                    let tag = u64::from_le_bytes(entry[..8].try_into().unwrap_or_default());
                    let val = u64::from_le_bytes(entry[8..].try_into().unwrap_or_default());
                    match tag {
                        DT_NULL => break,
                        DT_NEEDED => needed_offsets.push(val),
                        DT_STRTAB => strtab = Some(val),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // DT_STRTAB is an address: find the loaded segment holding it.
    let strtab_offset = strtab.and_then(|addr| {
        headers
            .iter()
            .find(|&&(kind, _, vaddr, size)| {
                kind == PT_LOAD && addr >= vaddr && addr - vaddr < size as u64
            })
            .and_then(|&(_, offset, vaddr, _)| {
                usize::try_from(addr - vaddr).ok()?.checked_add(offset)
            })
    });
    let needed = needed_offsets
        .iter()
        .map(|&name| {
            strtab_offset
                .and_then(|base| base.checked_add(usize::try_from(name).ok()?))
                .and_then(|at| bytes.get(at..))
                .and_then(|tail| tail.split(|b| *b == 0).next())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_else(|| format!("<string {name}>"))
        })
        .collect();
    Ok(Linking {
        pie,
        interpreter,
        needed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_versions() {
        assert_eq!(
            package_version("path+file:///w/crates/mdlr-cli#mdlr-cli@0.1.0").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(
            package_version("path+file:///w/crates/mdlr-cli#0.2.0-rc.1").as_deref(),
            Some("0.2.0-rc.1")
        );
        assert_eq!(
            package_version("mdlr-cli 0.1.0 (path+file:///w/crates/mdlr-cli)").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(package_version("garbage"), None);
    }

    #[test]
    fn elf_of_a_dynamic_executable() {
        // Whatever runs this test is an x86_64 Linux executable; cargo's test binaries
        // are dynamically linked against libc unless built with crt-static.
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let Ok(bytes) = std::fs::read(exe) else {
            return;
        };
        let linking = elf_linking(&bytes);
        assert!(linking.is_ok(), "{linking:?}");
        if let Ok(l) = linking
            && l.interpreter.is_some()
        {
            assert!(l.needed.iter().any(|n| n.starts_with("libc.so")), "{l:?}");
            assert!(l.dynamic().is_some());
        }
    }

    #[test]
    fn elf_refuses_junk() {
        assert!(elf_linking(b"").is_err());
        assert!(elf_linking(b"\x7fELF\x01\x01").is_err());
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 2;
        header[5] = 1;
        header[18] = 62;
        header[32] = 200; // program headers beyond the end
        header[54] = 56;
        header[56] = 1;
        assert!(elf_linking(&header).is_err());
    }
}
