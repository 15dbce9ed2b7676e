//! The SBOM of `cargo xtask dist`: a CycloneDX 1.5 JSON document of what is compiled
//! into the release binary, for the change request that puts mdlr on a jump host.
//!
//! - The crates are exactly those linked into the binary: `cargo tree` of `mdlr-cli`'s
//!   normal dependencies for the dist target, with the features that build enables and
//!   without proc-macros (they run in the compiler, nothing of them is linked) or build
//!   and dev dependencies. `tests/tests/release.rs` holds this set to the one
//!   cargo-auditable embeds in the binary (`.dep-v0`).
//! - Versions and SHA-256 checksums come from `Cargo.lock` (the checksum is that of the
//!   `.crate` file crates.io serves); licences are the SPDX expressions of each crate's
//!   `Cargo.toml`, as `cargo tree` reports them.
//! - The C library, GCC's runtime library and the Rust standard library are linked in
//!   statically too: they are listed as well (with a CPE, so that scanners match them),
//!   though they are not crates.
//! - Deterministic: no path, no clock (the timestamp is `SOURCE_DATE_EPOCH`), keys and
//!   lists sorted, and the serial number a UUID derived from the content, so two builds
//!   of one commit give the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// crates.io's index, as `Cargo.lock` names it.
const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// What the SBOM describes besides its crates.
pub struct Input<'a> {
    /// The rust target the binary was built for.
    pub target: &'a str,
    /// mdlr's version.
    pub version: &'a str,
    /// The commit `mdlr --version` names.
    pub commit: &'a str,
    /// SHA-256 of the binary (hex).
    pub binary_sha256: &'a str,
    /// `SOURCE_DATE_EPOCH`: the commit's time.
    pub epoch: u64,
}

/// One crate compiled into the binary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Crate {
    pub name: String,
    pub version: String,
    /// The SPDX expression of its `license` field.
    pub license: String,
    /// `None` for a crate of this workspace (a path dependency).
    pub checksum: Option<String>,
}

impl Crate {
    /// `pkg:cargo/NAME@VERSION`, also its `bom-ref`.
    pub fn purl(&self) -> String {
        purl(&self.name, &self.version)
    }
}

fn purl(name: &str, version: &str) -> String {
    format!("pkg:cargo/{name}@{version}")
}

/// The SBOM as JSON text, and the crates it lists (the root, `mdlr-cli`, first).
pub fn generate(root: &Path, input: &Input<'_>) -> Result<(String, Vec<Crate>), String> {
    let (crates, edges) = linked_crates(root, input.target)?;
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let lock = lock_entries(&lock);
    let mut listed = Vec::new();
    for (name, version, license) in crates {
        let checksum = match lock.get(&(name.clone(), version.clone())) {
            Some(entry) => match (&entry.source, &entry.checksum) {
                (None, _) => None,
                (Some(source), Some(checksum)) if source == CRATES_IO => Some(checksum.clone()),
                (Some(source), _) => {
                    return Err(format!(
                        "{name} {version} comes from {source}, not crates.io (deny.toml \
                         allows crates.io only)"
                    ));
                }
            },
            None => return Err(format!("{name} {version} is not in Cargo.lock")),
        };
        if license.is_empty() {
            return Err(format!(
                "{name} {version} states no SPDX licence in its Cargo.toml; the SBOM needs \
                 one for every crate"
            ));
        }
        listed.push(Crate {
            name,
            version,
            license: spdx(&license),
            checksum,
        });
    }
    let Some(root_crate) = listed.first().cloned() else {
        return Err("cargo tree listed no crate".to_owned());
    };
    let mut components: Vec<&Crate> = listed.iter().skip(1).collect();
    components.sort();
    let system = system_components(input.target);

    let mut document = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": mdlr_tests::util::iso_short(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(input.epoch)
            ),
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "cargo xtask dist",
                    "version": input.version,
                    "description": "mdlr's release task: cargo tree, Cargo.lock and \
                                    Cargo.toml licences; cargo-auditable embeds the same \
                                    crates in the binary's .dep-v0 section",
                }],
            },
            "component": {
                "type": "application",
                "bom-ref": root_crate.purl(),
                "name": "mdlr",
                "version": input.version,
                "description": "Microsoft Defender for Endpoint live response from the \
                                command line: one static executable",
                "licenses": [{"expression": root_crate.license}],
                "purl": root_crate.purl(),
                "hashes": [{"alg": "SHA-256", "content": input.binary_sha256}],
                "properties": [
                    {"name": "mdlr:commit", "value": input.commit},
                    {"name": "mdlr:file", "value": format!("mdlr-{}-x86_64-linux", input.version)},
                    {"name": "mdlr:target", "value": input.target},
                ],
            },
        },
        "components": components
            .iter()
            .map(|c| component(c))
            .chain(system.iter().map(|s| s.json()))
            .collect::<Vec<Value>>(),
        "dependencies": dependencies(&listed, &edges, &system),
    });
    let serial = serial_number(&document)?;
    if let Some(map) = document.as_object_mut() {
        map.insert("serialNumber".to_owned(), Value::String(serial));
    }
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|e| format!("cannot write the SBOM: {e}"))?;
    text.push('\n');
    Ok((text, listed))
}

fn component(c: &Crate) -> Value {
    let mut value = json!({
        "type": "library",
        "bom-ref": c.purl(),
        "name": c.name,
        "version": c.version,
        "scope": "required",
        "licenses": [{"expression": c.license}],
        "purl": c.purl(),
    });
    if let Some(map) = value.as_object_mut() {
        match &c.checksum {
            Some(checksum) => {
                map.insert(
                    "hashes".to_owned(),
                    json!([{"alg": "SHA-256", "content": checksum}]),
                );
                map.insert(
                    "externalReferences".to_owned(),
                    json!([{
                        "type": "distribution",
                        "url": format!(
                            "https://crates.io/api/v1/crates/{}/{}/download",
                            c.name, c.version
                        ),
                    }]),
                );
            }
            None => {
                map.insert(
                    "properties".to_owned(),
                    json!([{"name": "mdlr:source", "value": "this workspace (path dependency)"}]),
                );
            }
        }
    }
    value
}

/// Every component with what it depends on, sorted.
fn dependencies(
    crates: &[Crate],
    edges: &BTreeSet<(usize, usize)>,
    system: &[System],
) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, c) in crates.iter().enumerate() {
        let mut on: BTreeSet<String> = edges
            .iter()
            .filter(|(from, _)| *from == i)
            .filter_map(|(_, to)| crates.get(*to).map(Crate::purl))
            .collect();
        if i == 0 {
            on.extend(system.iter().map(|s| s.bom_ref()));
        }
        out.push((c.purl(), on));
    }
    out.extend(system.iter().map(|s| (s.bom_ref(), BTreeSet::new())));
    out.sort();
    out.into_iter()
        .map(|(r, on)| json!({"ref": r, "dependsOn": on.into_iter().collect::<Vec<_>>()}))
        .collect()
}

/// `urn:uuid:...`: a UUID (version 8, RFC 9562: its bits are ours to choose) from the
/// SHA-256 of the document without it, so the same content always gets the same one.
fn serial_number(document: &Value) -> Result<String, String> {
    let bytes =
        serde_json::to_vec(document).map_err(|e| format!("cannot serialise the SBOM: {e}"))?;
    let mut id = mdlr_tests::util::sha256(&bytes);
    id[6] = (id[6] & 0x0f) | 0x80;
    id[8] = (id[8] & 0x3f) | 0x80;
    let hex: String = id[..16].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// `MIT/Apache-2.0` (the old form some crates still use) as `MIT OR Apache-2.0`.
fn spdx(license: &str) -> String {
    license
        .split('/')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Crates linked into `mdlr` for `target`: (name, version, licence) with the root
/// (`mdlr-cli`) first, and the edges between them as indexes into that list.
type Linked = (Vec<(String, String, String)>, BTreeSet<(usize, usize)>);

fn linked_crates(root: &Path, target: &str) -> Result<Linked, String> {
    let output = crate::cargo(root)
        .args([
            "tree",
            "--locked",
            "--package",
            "mdlr-cli",
            "--target",
            target,
            "--edges",
            "normal,no-proc-macro",
            "--prefix",
            "depth",
            "--format",
            "{p}\t{l}",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo tree failed ({})", output.status));
    }
    parse_tree(&String::from_utf8_lossy(&output.stdout))
}

/// Reads `cargo tree --prefix depth --format "{p}\t{l}"`: `2serde v1.0.0\tMIT OR Apache-2.0`,
/// with ` (*)` after a crate shown before, and `(/path)` after a path dependency.
fn parse_tree(text: &str) -> Result<Linked, String> {
    let mut crates: Vec<(String, String, String)> = Vec::new();
    let mut edges = BTreeSet::new();
    // The crate at each depth on the way down to the current line.
    let mut stack: Vec<usize> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        let depth: usize = line[..digits]
            .parse()
            .map_err(|_| format!("cargo tree: no depth in {line:?}"))?;
        let rest = line[digits..].trim_end();
        let rest = rest.strip_suffix(" (*)").unwrap_or(rest);
        let (package, license) = rest.split_once('\t').unwrap_or((rest, ""));
        let mut words = package.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            return Err(format!("cargo tree: cannot read {line:?}"));
        };
        let Some(version) = version.strip_prefix('v') else {
            return Err(format!("cargo tree: no version in {line:?}"));
        };
        let index = match crates
            .iter()
            .position(|(n, v, _)| n == name && v == version)
        {
            Some(i) => i,
            None => {
                crates.push((
                    name.to_owned(),
                    version.to_owned(),
                    license.trim().to_owned(),
                ));
                crates.len() - 1
            }
        };
        if depth > stack.len() || (depth == 0 && !stack.is_empty()) {
            return Err(format!("cargo tree: unexpected depth in {line:?}"));
        }
        stack.truncate(depth);
        if let Some(&parent) = stack.last() {
            edges.insert((parent, index));
        }
        stack.push(index);
    }
    Ok((crates, edges))
}

/// One `[[package]]` of `Cargo.lock`.
#[derive(Debug, Default)]
struct LockEntry {
    source: Option<String>,
    checksum: Option<String>,
}

/// `Cargo.lock`'s packages by (name, version).
fn lock_entries(text: &str) -> BTreeMap<(String, String), LockEntry> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String, LockEntry)> = None;
    let mut flush = |current: &mut Option<(String, String, LockEntry)>| {
        if let Some((name, version, entry)) = current.take()
            && !name.is_empty()
        {
            out.insert((name, version), entry);
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            flush(&mut current);
            if line == "[[package]]" {
                current = Some((String::new(), String::new(), LockEntry::default()));
            }
            continue;
        }
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        let Some(value) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
            continue;
        };
        if let Some((name, version, entry)) = current.as_mut() {
            match key {
                "name" => *name = value.to_owned(),
                "version" => *version = value.to_owned(),
                "source" => entry.source = Some(value.to_owned()),
                "checksum" => entry.checksum = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    flush(&mut current);
    out
}

/// A library linked in statically that is not a crate: the C library, Rust's own.
struct System {
    name: &'static str,
    version: String,
    license: &'static str,
    cpe: String,
    description: String,
}

impl System {
    fn bom_ref(&self) -> String {
        format!("pkg:generic/{}@{}", self.name, self.version)
    }

    fn json(&self) -> Value {
        json!({
            "type": "library",
            "bom-ref": self.bom_ref(),
            "name": self.name,
            "version": self.version,
            "scope": "required",
            "description": self.description,
            "licenses": [{"expression": self.license}],
            "purl": self.bom_ref(),
            "cpe": self.cpe,
        })
    }
}

/// The C library and GCC's runtime (for a glibc target) and the Rust standard library,
/// at the versions on this machine; left out when their version cannot be read.
fn system_components(target: &str) -> Vec<System> {
    let mut out = Vec::new();
    let first = |program: &str, args: &[&str]| {
        crate::first_line(Command::new(program).args(args)).filter(|l| !l.is_empty())
    };
    if target.ends_with("-gnu") {
        // `glibc 2.36`; on Debian, the package that holds libc.a says which build.
        if let Some(version) = first("getconf", &["GNU_LIBC_VERSION"])
            .and_then(|l| l.strip_prefix("glibc ").map(str::to_owned))
        {
            let package = first("dpkg-query", &["-W", "-f=${Version}", "libc6-dev"])
                .map(|v| format!(" (Debian's libc6-dev {v})"))
                .unwrap_or_default();
            out.push(System {
                name: "glibc",
                cpe: format!("cpe:2.3:a:gnu:glibc:{version}:*:*:*:*:*:*:*"),
                version,
                license: "LGPL-2.1-or-later",
                description: format!("The GNU C Library, linked in statically{package}"),
            });
        }
        // The linker (cc, GCC) adds libgcc and libgcc_eh to a static link.
        if let Some(version) = first("cc", &["-dumpfullversion"]) {
            out.push(System {
                name: "libgcc",
                cpe: format!("cpe:2.3:a:gnu:gcc:{version}:*:*:*:*:*:*:*"),
                version,
                license: "GPL-3.0-or-later WITH GCC-exception-3.1",
                description: "GCC's runtime support library (libgcc, libgcc_eh), linked in \
                              statically by the C compiler that links the binary"
                    .to_owned(),
            });
        }
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    // `rustc 1.95.0 (59807616e 2026-04-14)`
    if let Some(version) =
        first(&rustc, &["--version"]).and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    {
        out.push(System {
            name: "rust-std",
            cpe: format!("cpe:2.3:a:rust-lang:rust:{version}:*:*:*:*:*:*:*"),
            version,
            license: "MIT OR Apache-2.0",
            description: "The Rust standard library (std, core, alloc), compiled in by \
                          rustc"
                .to_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_tree() {
        let text = "0mdlr-cli v0.1.0 (/w/crates/mdlr-cli)\tMIT OR Apache-2.0\n\
                    1ctrlc v3.5.3\tMIT/Apache-2.0\n\
                    2libc v0.2.1\tMIT OR Apache-2.0\n\
                    1mdlr v0.1.0 (/w/crates/mdlr)\tMIT OR Apache-2.0\n\
                    2libc v0.2.1\tMIT OR Apache-2.0 (*)\n\
                    2ring v0.17.14\tApache-2.0 AND ISC\n";
        let (crates, edges) = parse_tree(text).expect("parses");
        let names: Vec<&str> = crates.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["mdlr-cli", "ctrlc", "libc", "mdlr", "ring"]);
        assert_eq!(crates[4].2, "Apache-2.0 AND ISC");
        let edges: Vec<(usize, usize)> = edges.into_iter().collect();
        assert_eq!(edges, [(0, 1), (0, 3), (1, 2), (3, 2), (3, 4)]);
        assert!(parse_tree("x\n").is_err());
        assert!(parse_tree("0a v1\n2b v1\n").is_err());
    }

    #[test]
    fn reads_cargo_lock() {
        let lock = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n\
                    source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
                    checksum = \"abc\"\ndependencies = [\n \"b\",\n]\n\n\
                    [[package]]\nname = \"b\"\nversion = \"0.1.0\"\n";
        let entries = lock_entries(lock);
        assert_eq!(entries.len(), 2);
        let a = &entries[&("a".to_owned(), "1.0.0".to_owned())];
        assert_eq!(a.source.as_deref(), Some(CRATES_IO));
        assert_eq!(a.checksum.as_deref(), Some("abc"));
        let b = &entries[&("b".to_owned(), "0.1.0".to_owned())];
        assert!(b.source.is_none() && b.checksum.is_none());
    }

    #[test]
    fn licences_and_serial_numbers() {
        assert_eq!(spdx("MIT/Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(spdx("Apache-2.0 AND ISC"), "Apache-2.0 AND ISC");
        let a = serial_number(&json!({"a": 1})).expect("serial");
        assert_eq!(a, serial_number(&json!({"a": 1})).expect("serial"));
        assert_ne!(a, serial_number(&json!({"a": 2})).expect("serial"));
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
        assert_eq!(&a["urn:uuid:".len() + 14..][..1], "8", "{a}");
    }
}
