//! Helpers for the end-to-end tests.
//!
//! - [`server`]: a minimal std-only HTTP/1.1 server on loopback (one thread per
//!   connection, `Connection: close`), shared by `cargo xtask demo` and the simulator.
//! - [`sim`]: a local simulator of the Defender for Endpoint live response service with
//!   its quotas, one session per machine, actions that move through `Pending` →
//!   `InProgress` → a terminal status over scaled time, result links and the result host.

pub mod server;
pub mod sim;
