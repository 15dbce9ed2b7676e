//! `cargo xtask bench-inflate`: is flate2's `zlib-rs` backend worth taking instead of
//! `miniz_oxide` (issue 11, part 3)? Adopt only if inflate gains 1.5× or more and the
//! static binary stays within 3.5 MiB. Nothing in the repository changes: the task
//! reports, a person decides.
//!
//! - **Speed.** A probe program under `target/bench-inflate/probe/` (made here, not
//!   committed) un-gzips a realistic GetFile payload in memory with `MultiGzDecoder`
//!   into a 512 KiB buffer, as mdlr's download does, CRC and length checks included;
//!   it is built twice with the workspace's flate2 version and lock file, once per
//!   backend, both at opt-level 3 (as the release profile builds `miniz_oxide`), the
//!   rest as the release profile. The two builds run in interleaved rounds, one
//!   process per round, on one thread; the speed is un-gzipped MiB per second of the
//!   decode's CPU time (the thread's time on a CPU, from `/proc/thread-self/schedstat`),
//!   so that other work on a busy machine does not decide; the wall is shown beside it.
//! - **Size.** The real `mdlr` dist binary, built again from a copy of the working tree
//!   under `target/bench-inflate/ws/` whose root `Cargo.toml` switches flate2's
//!   features to `zlib-rs` (and builds `zlib-rs` at opt-level 3), with the flags of
//!   `cargo xtask dist`, against `target/dist/mdlr` built from the tree itself.
//! - **Payload.** 256 MiB of mixed text and binary in 1 MiB blocks: log text (half),
//!   structured binary records (a quarter), code-like bytes of a skewed alphabet (an
//!   eighth) and incompressible noise (an eighth), `gzip -6`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::bench::stats::Spread;
use mdlr_tests::util::mix;

const USAGE: &str = "usage: cargo xtask bench-inflate [--rounds N] [--no-write]";
const START_MARK: &str = "<!-- bench-inflate:start -->";
const END_MARK: &str = "<!-- bench-inflate:end -->";
const MIB: u64 = 1024 * 1024;
const PAYLOAD: u64 = 256 * MIB;
/// The decision rule of issue 11.
const GAIN_NEEDED: f64 = 1.5;
const SIZE_ALLOWED: u64 = 3 * MIB + MIB / 2;
const STATIC_FLAGS: &str = "-C target-feature=+crt-static -C relocation-model=static";

const PROBE_MAIN: &str = r#"//! Un-gzips a file in memory once and prints `CPU_SECONDS BYTES WALL_SECONDS`.
use std::io::Read;
/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`): the decode's
/// work, without the time spent waiting for a core on a busy machine.
fn on_cpu() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|n| n.parse().ok()))
        .expect("schedstat")
}
fn main() {
    let path = std::env::args().nth(1).expect("a .gz file");
    let gz = std::fs::read(&path).expect("readable");
    let mut buf = vec![0u8; 512 * 1024];
    let started = std::time::Instant::now();
    let cpu = on_cpu();
    let mut decoder = flate2::read::MultiGzDecoder::new(&gz[..]);
    let mut total = 0u64;
    let mut sum = 0u64;
    loop {
        let n = decoder.read(&mut buf).expect("a valid gzip stream");
        if n == 0 {
            break;
        }
        total += n as u64;
        sum = sum.wrapping_add(u64::from(buf[n - 1]));
    }
    let cpu = (on_cpu() - cpu) as f64 / 1e9;
    let secs = started.elapsed().as_secs_f64();
    println!("{cpu} {total} {secs} {sum}");
}
"#;

struct Options {
    rounds: usize,
    write: bool,
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut options = Options {
        rounds: 9,
        write: true,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--no-write" => options.write = false,
            "--rounds" => {
                let v = rest
                    .next()
                    .ok_or_else(|| format!("--rounds needs a value\n{USAGE}"))?;
                options.rounds = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| format!("--rounds: {v:?} is not a number in 1..=100"))?;
            }
            _ => return Err(format!("unknown option {arg}\n{USAGE}")),
        }
    }
    Ok(options)
}

pub fn run(root: &Path, args: &[&str]) -> Result<(), String> {
    let options = parse(args)?;
    let work = root.join("target").join("bench-inflate");
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let flate2 = locked_version(root, "flate2")?;

    let gz = payload(&root.join("target").join("bench-data"))?;
    let gz_len = std::fs::metadata(&gz)
        .map_err(|e| format!("{}: {e}", gz.display()))?
        .len();
    println!("bench-inflate: building the probe twice (flate2 {flate2}) ...");
    let miniz = build_probe(root, &work, &flate2, "miniz")?;
    let zlib_rs = build_probe(root, &work, &flate2, "zlib-rs")?;
    let zlib_rs_version = probe_dependency(&work, "zlib-rs");
    let miniz_version = probe_dependency(&work, "miniz_oxide");

    println!(
        "bench-inflate: {} rounds after 1 warm-up ...",
        options.rounds
    );
    let probes = [&miniz, &zlib_rs];
    let mut secs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut walls: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..options.rounds + 1 {
        for k in crate::bench::stats::round_order(2, round) {
            let (s, bytes, wall) = run_probe(probes[k], &gz)?;
            if bytes != PAYLOAD {
                return Err(format!("the probe un-gzipped {bytes} bytes, not {PAYLOAD}"));
            }
            if round > 0 {
                secs[k].push(s);
                walls[k].push(wall);
            }
        }
    }
    let [m, z, mw, zw] = [&secs[0], &secs[1], &walls[0], &walls[1]].map(|v| Spread::of(v));
    let (Some(m), Some(z), Some(mw), Some(zw)) = (m, z, mw, zw) else {
        return Err("no rounds".to_owned());
    };
    let speed = |s: f64| PAYLOAD as f64 / MIB as f64 / s;
    let gain_medians = m.median / z.median;
    // As the bench judges goals: the candidate's upper quartile against the median.
    let gain_judged = m.median / z.p75;
    let gain_wall = mw.median / zw.median;

    println!("bench-inflate: building mdlr with flate2's zlib-rs backend (a copy of the tree) ...");
    let dist = crate::dist::build(root, true)?;
    let zlib_bin = build_mdlr_with_zlib_rs(root, &work, dist.target)?;
    let in_mdlr = locked_version(&work.join("ws"), "zlib-rs").unwrap_or_else(|_| "?".to_owned());
    let zlib_rs_version = match in_mdlr == zlib_rs_version {
        true => zlib_rs_version,
        false => format!("{zlib_rs_version}; the mdlr build: {in_mdlr}"),
    };
    let zlib_size = std::fs::metadata(&zlib_bin)
        .map_err(|e| format!("{}: {e}", zlib_bin.display()))?
        .len();
    let version = Command::new(&zlib_bin)
        .arg("--version")
        .env_clear()
        .output()
        .map_err(|e| format!("cannot run {}: {e}", zlib_bin.display()))?;
    if !version.status.success() {
        return Err(format!("{} --version failed", zlib_bin.display()));
    }

    let adopt = gain_judged >= GAIN_NEEDED && zlib_size <= SIZE_ALLOWED;
    let rows = format!(
        "| backend | inflate MiB/s of CPU time (median) | at the upper-quartile time | CPU min–max (s) | MiB/s of wall (median) | static `mdlr` binary |\n\
         |---|---:|---:|---:|---:|---:|\n\
         | `rust_backend` (`miniz_oxide` {miniz_version}, opt-level 3): today | {:.0} | {:.0} | {:.3}–{:.3} | {:.0} | {} bytes ({}) |\n\
         | `zlib-rs` (`zlib-rs` {zlib_rs_version}, opt-level 3) | {:.0} | {:.0} | {:.3}–{:.3} | {:.0} | {} bytes ({}, {:+} bytes) |\n",
        speed(m.median),
        speed(m.p75),
        m.min,
        m.max,
        speed(mw.median),
        dist.size,
        crate::dist::mib(dist.size),
        speed(z.median),
        speed(z.p75),
        z.min,
        z.max,
        speed(zw.median),
        zlib_size,
        crate::dist::mib(zlib_size),
        zlib_size as i64 - dist.size as i64,
    );
    let verdict = format!(
        "Inflate gain: **{gain_judged:.2}×** (miniz_oxide's median CPU time ÷ zlib-rs's upper \
         quartile; {gain_medians:.2}× at the medians, {gain_wall:.2}× in wall time at the medians); \
         needed ≥ {GAIN_NEEDED}× and a binary \
         ≤ 3.5 MiB. Verdict: **{}**.",
        match (adopt, gain_judged >= GAIN_NEEDED, zlib_size <= SIZE_ALLOWED) {
            (true, _, _) => "adopt by the rule (a person decides: it brings unsafe code into \
                             the download path)"
                .to_owned(),
            (false, false, true) =>
                format!("do not adopt: the gain is under {GAIN_NEEDED}× (the binary would fit)"),
            (false, true, false) => "do not adopt: the binary would be over 3.5 MiB".to_owned(),
            _ => "do not adopt: neither the gain nor the size pass".to_owned(),
        },
    );
    println!();
    print!("{rows}");
    println!();
    println!("{verdict}");
    println!(
        "End to end, both binaries on the GetFile case: cargo xtask bench --mdlr {} \
         --baseline {} --only getfile --no-write",
        zlib_bin.display(),
        dist.binary.display()
    );
    let machine = format!(
        "Measured {} at {} on {} core(s) (load average {}), {}, rustc {}; payload {} MiB \
         un-gzipped, {:.1} MiB gzip -6; {} rounds after one warm-up, interleaved.",
        crate::utc_date(std::time::SystemTime::now()),
        crate::commit_description(root),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| t.split_whitespace().next().map(str::to_owned))
            .unwrap_or_default(),
        crate::cpu_model(),
        crate::first_line(Command::new("rustc").arg("-V"))
            .unwrap_or_default()
            .trim_start_matches("rustc "),
        PAYLOAD / MIB,
        gz_len as f64 / MIB as f64,
        options.rounds,
    );
    println!("{machine}");
    if options.write {
        let section = format!(
            "{START_MARK}\n## Inflate: flate2's `zlib-rs` backend against `miniz_oxide`\n\n\
             ```console\n$ cargo xtask bench-inflate\n```\n\n{rows}\n{verdict}\n\n{machine}\n\n\
             - **Speed**: a probe program un-gzips the payload in memory with flate2's \
             `MultiGzDecoder` into a 512 KiB buffer, as mdlr's download does (CRC and \
             length checked), one process per round, one thread, timed by the thread's \
             time on a CPU (`/proc/thread-self/schedstat`: a busy machine does not decide); \
             built twice with the \
             workspace's flate2 ({flate2}) and lock file, both backends at opt-level 3 \
             (as the release profile builds `miniz_oxide`), the rest as the release profile.\n\
             - **Size**: the dist binary built from a copy of the tree whose flate2 features \
             are `zlib-rs` + `runtime_detection` (and `zlib-rs` at opt-level 3), with \
             cargo-auditable and the flags of `cargo xtask dist`, against \
             `target/dist/mdlr`. The repository's \
             features are not changed by this task.\n\
             - **Payload**: {} MiB in 1 MiB blocks: log text (half), structured binary \
             records (a quarter), code-like bytes of a skewed alphabet (an eighth), noise \
             (an eighth); `gzip -6`.\n{END_MARK}\n",
            PAYLOAD / MIB
        );
        crate::write_section(&root.join("BENCHMARKS.md"), START_MARK, END_MARK, &section)?;
        println!("wrote   BENCHMARKS.md (section \"Inflate\")");
    }
    Ok(())
}

/// The version of `name` in the workspace's `Cargo.lock`.
fn locked_version(root: &Path, name: &str) -> Result<String, String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"") {
            return lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_owned)
                .ok_or_else(|| format!("Cargo.lock names {name} without a version"));
        }
    }
    Err(format!("Cargo.lock has no {name}"))
}

/// The version of `name` the probe was built with, from its lock file.
fn probe_dependency(work: &Path, name: &str) -> String {
    locked_version(&work.join("probe"), name).unwrap_or_else(|_| "?".to_owned())
}

/// `target/bench-data/mixed-v1-256M.bin.gz`, made once.
fn payload(dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let raw = dir.join(format!("mixed-v1-{}M.bin", PAYLOAD / MIB));
    let gz = dir.join(format!("mixed-v1-{}M.bin.gz", PAYLOAD / MIB));
    if gz.is_file() {
        return Ok(gz);
    }
    println!("bench-inflate: generating {} (once) ...", raw.display());
    let mut text = Vec::new();
    crate::bench::write_log(&mut text, PAYLOAD / 2)
        .map_err(|e| format!("cannot make the log text: {e}"))?;
    let mut out = Vec::with_capacity(PAYLOAD as usize);
    let mut text_at = 0usize;
    let mut x = 0x006d_6978_6564_u64;
    let mut record = 0u64;
    let block = MIB as usize;
    for i in 0..(PAYLOAD / MIB) as usize {
        match i % 8 {
            0..=3 => {
                out.extend_from_slice(&text[text_at..text_at + block]);
                text_at += block;
            }
            4 | 5 => {
                // Records of 32 bytes: a time, an id from a small set, a kind, a counter,
                // a flag word and padding — like an event log or a database page.
                for _ in 0..block / 32 {
                    x = mix(x);
                    record += 1;
                    out.extend_from_slice(
                        &(1_764_000_000_000 + record * 37 + x % 13).to_le_bytes(),
                    );
                    out.extend_from_slice(&(((x >> 8) % 200) as u32 + 4000).to_le_bytes());
                    out.extend_from_slice(&(((x >> 20) % 12) as u16).to_le_bytes());
                    out.extend_from_slice(&(record as u32).to_le_bytes());
                    out.extend_from_slice(&[0, 0, 1, 0, (x >> 40) as u8 & 3, 0]);
                    out.extend_from_slice(&[0u8; 8]);
                }
            }
            6 => {
                // Code-like: bytes from a skewed alphabet (0x00, 0xff, opcode bytes).
                const COMMON: [u8; 16] = [
                    0x00, 0x00, 0x00, 0xff, 0x48, 0x89, 0x8b, 0xe8, 0x0f, 0x85, 0x84, 0x24, 0x45,
                    0xc3, 0x41, 0x31,
                ];
                for _ in 0..block / 8 {
                    x = mix(x);
                    for b in x.to_le_bytes() {
                        out.push(match b & 3 {
                            3 => b,
                            _ => COMMON[(b >> 4) as usize],
                        });
                    }
                }
            }
            _ => {
                for _ in 0..block / 8 {
                    x = mix(x);
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }
    std::fs::write(&raw, &out).map_err(|e| format!("cannot write {}: {e}", raw.display()))?;
    drop(out);
    println!("bench-inflate: gzip -6 {} (once) ...", raw.display());
    crate::bench::gzip(&raw, &gz)?;
    let _ = std::fs::remove_file(&raw);
    Ok(gz)
}

/// Builds the probe with `backend` (`miniz` or `zlib-rs`) and returns a copy of it.
fn build_probe(root: &Path, work: &Path, flate2: &str, backend: &str) -> Result<PathBuf, String> {
    let dir = work.join("probe");
    std::fs::create_dir_all(dir.join("src"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let manifest = format!(
        "[package]\nname = \"inflate-probe\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\
         publish = false\n\n# Not part of mdlr's workspace.\n[workspace]\n\n[dependencies]\n\
         flate2 = {{ version = \"={flate2}\", default-features = false }}\n\n[features]\n\
         miniz = [\"flate2/rust_backend\", \"flate2/runtime_detection\"]\n\
         zlib-rs = [\"flate2/zlib-rs\", \"flate2/runtime_detection\"]\n\n\
         [profile.release]\nopt-level = \"z\"\nlto = true\ncodegen-units = 1\n\
         panic = \"abort\"\n\n[profile.release.package.miniz_oxide]\nopt-level = 3\n\n\
         [profile.release.package.zlib-rs]\nopt-level = 3\n"
    );
    write(&dir.join("Cargo.toml"), &manifest)?;
    write(&dir.join("src").join("main.rs"), PROBE_MAIN)?;
    // The workspace's lock file, afresh each run: the same flate2, miniz_oxide and
    // crc32fast as mdlr, and zlib-rs (which it does not list) resolved as the copy of
    // the tree resolves it for the mdlr built with it.
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    write(&dir.join("Cargo.lock"), &lock)?;
    let status = crate::cargo(&dir)
        .args(["build", "--quiet", "--release", "--features", backend])
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build of the {backend} probe failed ({status})"
        ));
    }
    let built = dir.join("target").join("release").join("inflate-probe");
    let copy = work.join(format!("probe-{backend}"));
    std::fs::copy(&built, &copy).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
    Ok(copy)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// One decode: `(CPU seconds, bytes, wall seconds)`.
fn run_probe(probe: &Path, gz: &Path) -> Result<(f64, u64, f64), String> {
    let output = Command::new(probe)
        .arg(gz)
        .env_clear()
        .output()
        .map_err(|e| format!("cannot run {}: {e}", probe.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace();
    let bad = || format!("the probe printed {text:?}");
    match (
        output.status.success(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) {
        (true, Some(s), Some(b), Some(w)) => Ok((
            s.parse().map_err(|_| bad())?,
            b.parse().map_err(|_| bad())?,
            w.parse().map_err(|_| bad())?,
        )),
        _ => Err(format!(
            "{} failed ({}): {}",
            probe.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// The dist binary built from a copy of the working tree with flate2's `zlib-rs`, for
/// the dist's `target`, with cargo-auditable as `cargo xtask dist` builds (so both
/// binaries carry the `.dep-v0` list of crates, and the sizes compare like with like).
fn build_mdlr_with_zlib_rs(root: &Path, work: &Path, target: &str) -> Result<PathBuf, String> {
    let ws = work.join("ws");
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run git ls-files: {e}"))?;
    if !listed.status.success() {
        return Err("git ls-files failed".to_owned());
    }
    for name in listed.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name);
        if name.starts_with("fuzz/") {
            continue;
        }
        let (from, to) = (root.join(&*name), ws.join(&*name));
        let Ok(bytes) = std::fs::read(&from) else {
            continue; // deleted in the working tree
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        if std::fs::read(&to).ok().as_deref() != Some(&bytes[..]) {
            std::fs::write(&to, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", to.display()))?;
        }
    }
    let manifest = std::fs::read_to_string(ws.join("Cargo.toml"))
        .map_err(|e| format!("cannot read the copied Cargo.toml: {e}"))?;
    let switched = switch_flate2(&manifest)?;
    write(&ws.join("Cargo.toml"), &switched)?;
    let user = std::env::var("RUSTFLAGS").unwrap_or_default();
    // cargo-auditable as `cargo xtask dist` installed it (crate::tools).
    let status = crate::tools::cargo(root, &crate::tools::CARGO_AUDITABLE)
        .current_dir(&ws)
        .args([
            "auditable",
            "build",
            "--quiet",
            "--release",
            "--target",
            target,
            "--package",
            "mdlr-cli",
            "--bin",
            "mdlr",
        ])
        .env("CARGO_TARGET_DIR", work.join("ws-target"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", format!("{user} {STATIC_FLAGS}").trim())
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build of mdlr with zlib-rs failed ({status})"
        ));
    }
    Ok(work
        .join("ws-target")
        .join(target)
        .join("release")
        .join("mdlr"))
}

/// The workspace manifest with flate2's backend switched to `zlib-rs` with
/// `runtime_detection` (zlib-rs's `std`: its SIMD chosen at run time, as the probe
/// builds it), built at opt-level 3 as `miniz_oxide` is. The workspace turned
/// `runtime_detection` off for the miniz backend (it asks crc32fast's `std` directly):
/// either form of the line is switched.
fn switch_flate2(manifest: &str) -> Result<String, String> {
    let line = manifest
        .lines()
        .find(|l| l.starts_with("flate2 = ") && l.contains("\"rust_backend\""))
        .ok_or("the root Cargo.toml's flate2 line is not the one expected")?;
    let features = line
        .find("features = [")
        .and_then(|at| Some(&line[at..at + line[at..].find(']')? + 1]))
        .ok_or("the root Cargo.toml's flate2 line has no features list")?;
    let new_line = line.replace(features, "features = [\"zlib-rs\", \"runtime_detection\"]");
    Ok(format!(
        "{}\n[profile.release.package.zlib-rs]\nopt-level = 3\n",
        manifest.replace(line, &new_line).trim_end()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_switch() {
        let manifest = "[workspace.dependencies]\nflate2 = { version = \"1.1.10\", \
                        default-features = false, features = [\"rust_backend\"] }\n";
        let out = switch_flate2(manifest);
        assert!(
            out.as_ref().is_ok_and(|m| m
                .contains("features = [\"zlib-rs\", \"runtime_detection\"]")
                && m.ends_with("[profile.release.package.zlib-rs]\nopt-level = 3\n")
                && !m.contains("rust_backend")),
            "{out:?}"
        );
        assert!(switch_flate2("flate2 = \"1\"\n").is_err());
        // The line as the workspace has it since runtime_detection was turned off.
        let manifest = "flate2 = { version = \"1.1.10\", default-features = false, features = \
                        [\"rust_backend\"] }\n";
        assert!(
            switch_flate2(manifest).is_ok_and(|m| m.starts_with(
                "flate2 = { version = \"1.1.10\", default-features = false, features = \
                 [\"zlib-rs\", \"runtime_detection\"] }\n"
            )),
            "{:?}",
            switch_flate2(manifest)
        );
        // The real one still has the line this task switches.
        let real = std::fs::read_to_string(crate::root().join("Cargo.toml"));
        assert!(real.is_ok_and(|m| switch_flate2(&m).is_ok()));
    }

    #[test]
    fn options() {
        assert!(parse(&[]).is_ok_and(|o| o.rounds == 9 && o.write));
        assert!(parse(&["--rounds", "3", "--no-write"]).is_ok_and(|o| o.rounds == 3 && !o.write));
        assert!(parse(&["--rounds"]).is_err());
        assert!(parse(&["--fast"]).is_err());
    }
}
