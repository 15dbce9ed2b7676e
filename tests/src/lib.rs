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

pub mod azurite;
pub mod faults;
pub mod idp;
pub mod pki;
pub mod server;
pub mod sim;
pub mod tinyproxy;
pub mod tls;
pub use sim::util;

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
