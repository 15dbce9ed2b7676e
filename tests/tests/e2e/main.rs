//! End-to-end tests: the `mdlr` library and the `mdlr` binary against local stand-ins for
//! the Defender API, its token endpoint and the result host (httpmock on loopback).
//!
//! One test binary, in the ripgrep style: helpers in `util`, one `check`-style helper per
//! feature, expected output written out as it appears.

mod cli;
mod completions;
mod defensive;
mod evidence;
mod hostile;
mod jumphost;
mod library;
mod limits;
mod lists;
mod live;
mod packages;
mod shared;
mod transfer;
mod util;
