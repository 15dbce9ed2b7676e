//! Helpers for the end-to-end tests.
//!
//! - [`server`]: a minimal std-only HTTP/1.1 server on loopback (one thread per
//!   connection, `Connection: close`), shared by `cargo xtask demo` and the simulator.
//! - [`sim`]: a local simulator of the Defender for Endpoint live response service with
//!   its quotas, one session per machine, actions that move through `Pending` →
//!   `InProgress` → a terminal status over scaled time, result links and the result host.
//! - [`azurite`]: the Azure Storage emulator as a real result host, started once per
//!   test process, with blobs written and SAS links signed by the tests.
//! - [`faults`]: a loopback TCP proxy that cuts, stalls, resets, truncates and throttles
//!   connections, and counts and records what goes through.
//! - [`pki`]: a private CA, server certificates and an app's RSA client certificates
//!   made with the `openssl` command, with `x5t` thumbprints and a JWT signer.
//! - [`tls`]: [`server`]'s handlers over HTTPS (rustls), counting handshakes and
//!   recording the failed ones (did the client refuse our certificate?).
//! - [`tinyproxy`]: a real HTTP proxy per test, whose log shows each `CONNECT`.
//! - [`idp`]: stand-ins for Entra ID's token endpoints (client secret, certificate
//!   assertion, device code, refresh), Azure IMDS and the Azure CLI, which check and
//!   record what they are sent and know the tokens they issued.
//! - [`util`]: SHA-256, base64, gzip, timestamps and deterministic noise.
//! - [`dist`]: the release `cargo xtask dist` makes, found or built for the tests of it.

pub mod azurite;
pub mod dist;
pub mod faults;
pub mod idp;
pub mod pki;
pub mod server;
pub mod sim;
pub mod tinyproxy;
pub mod tls;
pub use sim::util;

/// Builds `targets` (`["--package", "mdlr-cli", "--bin", "mdlr"]`, say) with the cargo,
/// target directory and profile the running test executable was built with
/// (`target/<profile>/deps/NAME-HASH`), and returns that profile directory
/// (`target/<profile>`), where the build put them. A build of what is up to date does
/// nothing; one of what changed rebuilds it, so a test never runs a stale binary. Panics
/// (it is for tests) when the build fails.
pub fn build_beside_this_test(targets: &[&str]) -> std::path::PathBuf {
    use std::path::Path;
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in target/<profile>/deps");
    let profile = profile_dir
        .file_name()
        .expect("profile directory")
        .to_string_lossy()
        .into_owned();
    let above = profile_dir.parent().expect("target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut build = std::process::Command::new(cargo);
    build
        .args(["build", "--quiet"])
        .args(targets)
        .arg("--manifest-path")
        .arg(&manifest);
    clean_cargo_env(&mut build);
    // `target/<triple>/<profile>` when built with `--target`: cargo marks only the
    // target directory itself with CACHEDIR.TAG.
    match above.parent() {
        Some(root)
            if !above.join("CACHEDIR.TAG").exists() && root.join("CACHEDIR.TAG").exists() =>
        {
            build.arg("--target-dir").arg(root);
            build
                .arg("--target")
                .arg(above.file_name().expect("target triple"));
        }
        _ => {
            build.arg("--target-dir").arg(above);
        }
    }
    match profile.as_str() {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().expect("run cargo");
    assert!(status.success(), "the build failed: {build:?}");
    profile_dir.to_owned()
}

/// Removes from `command` the variables cargo sets for the test crate running it
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...), before it runs cargo again: build scripts
/// that read them (ring's) would see a change and rebuild half the dependency tree, and
/// again in the next plain `cargo build`.
pub fn clean_cargo_env(command: &mut std::process::Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&key.as_ref())
        {
            command.env_remove(key.as_ref());
        }
    }
}
