//! The release `cargo xtask dist` makes in `target/dist/`, for the tests of it
//! (`tests/dist.rs`: the binary at work; `tests/release.rs`: the man page, SBOM,
//! packages and checksums).
//!
//! The binary is `$MDLR_DIST_BINARY` (`cargo xtask test` builds the release first and
//! sets it), and the rest of the release lies beside it; without that variable the
//! first test to ask builds it with `cargo run -p xtask -- dist`, so no test passes
//! without having looked at a real release.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The release binary: `$MDLR_DIST_BINARY`, or `target/dist/mdlr` built now.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("MDLR_DIST_BINARY").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "MDLR_DIST_BINARY={} is not a file",
                path.display()
            );
            return path;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from(env!("CARGO")));
        let mut build = Command::new(cargo);
        build
            .args([
                "run",
                "--quiet",
                "--package",
                "xtask",
                "--",
                "dist",
                "--quiet",
            ])
            .current_dir(root())
            .stdout(Stdio::null());
        // The variables cargo sets for this test crate would make build scripts that
        // read them (ring's) rebuild: hand cargo a clean slate.
        crate::clean_cargo_env(&mut build);
        let status = build
            .status()
            .expect("run `cargo run -p xtask -- dist` to build the release");
        assert!(status.success(), "cargo xtask dist failed ({status})");
        root().join("target").join("dist").join("mdlr")
    })
}

/// The directory of the release: where the binary is.
pub fn dir() -> &'static Path {
    binary().parent().unwrap_or(Path::new("."))
}

/// A file of the release, which must be there.
pub fn file(name: &str) -> PathBuf {
    let path = dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo xtask dist` puts it beside the binary",
        path.display()
    );
    path
}

/// `[workspace.package] version` of the root `Cargo.toml`.
pub fn version() -> String {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).expect("read Cargo.toml");
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "version"
        {
            return value.trim().trim_matches('"').to_owned();
        }
    }
    panic!("no [workspace.package] version in Cargo.toml");
}
