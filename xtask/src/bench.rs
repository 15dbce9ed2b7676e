//! `cargo xtask bench`: the dist binary (`cargo xtask dist`) against `curl` (and `jq`,
//! `gzip`) on loopback, each figure measured against its reference in the same run,
//! interleaved, as the median of several repetitions (issue 6).
//!
//! - A std-only HTTP server in this process stands in for the Defender API and the result
//!   host. Results are files under `target/bench-data/` (generated once); the blob being
//!   measured is held in memory and sent with one `write` per reply (std's `io::copy`
//!   does not `sendfile` to a socket), so the server carries more than either client
//!   takes, and every client gets the same bytes and the same headers.
//! - `mdlr result` runs the real flow: `GET /api/machineactions/{id}`, the result link,
//!   the blob. `curl` fetches the link only (as `curl -o "$(mdlr link ... --reveal)"`).
//! - Wall time is measured here; CPU time and peak resident memory come from the
//!   `wait4` rusage that GNU `time` reports (`/usr/bin/time -f '%U %S %M'`).
//! - Downloads are written to `/dev/shm` (memory), so that the figures are the clients'
//!   and not the disk's; mdlr's `fsync` of what it wrote is inside its time.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mdlr_tests::util::mix;

/// What profiling found and fixed, with the figures measured when each fix was made
/// (part of the section, unchanged by a rerun).
const FIXES: &str = "\
### What profiling fixed (figures from when each fix was made)

`perf record` of the release binary with symbols (`CARGO_PROFILE_RELEASE_STRIP=false`, \
`--mdlr` to run it here) showed where mdlr's CPU went; each fix was then measured with \
`--baseline` (the previous build, interleaved with the new one in the same run).

| fix | what the profile showed | figure | before | after |
|---|---|---|---:|---:|
| MD5 only when the host sends one to check (07bbc27) | `Md5::block` 42% of mdlr's CPU, for a digest then thrown away | raw 256 MiB, CPU | 1.40 s | 0.30 s |
| flate2 `runtime_detection` back on (254868e) | `default-features = false` had dropped it: table-driven CRC-32, 11% | GetFile 256 MiB, CPU | 1.17 s | 0.96 s |
| `miniz_oxide` at opt-level 3 (5dfb0e3) | at `z`, inflate's helpers out of line | GetFile 256 MiB, CPU | 1.01 s | 0.90 s |
| MD5 four steps per turn, constant shifts (6108c68) | one step per turn ran ~240 MB/s | raw 256 MiB with `Content-MD5`, CPU | 1.36 s | 0.91 s |
| all four, against the build before them (bbdd878), 5 rounds | | raw 1 GiB: wall, CPU | 6.31 s, 6.19 s | 1.34 s, 1.17 s |
| | | GetFile 1 GiB: wall, CPU | 4.89 s, 4.75 s | 3.23 s, 3.10 s |
| | | raw 1 GiB with `Content-MD5`: wall, CPU | 5.55 s, 5.39 s | 3.71 s, 3.56 s |
| reads of 512 KiB, ureq's input buffer and mdlr's (68724c8), 7 rounds | 128 KiB reads from the socket | raw 1 GiB: wall, CPU | 1.22 s, 1.17 s | 1.06 s, 0.97 s |
| | | raw 256 MiB: wall, CPU | 0.29 s, 0.26 s | 0.23 s, 0.20 s |

The binary stayed under 3 MiB throughout these (3 121 168 bytes before, 3 120 272 \
after). Issue 5's sign-in methods, proxies and completions then took it to 3 403 216 \
bytes; it came back to 3 088 048 with a TLS provider of AES-GCM and P-256/P-384 only \
(-134 KiB: no ChaCha20, X25519, Ed25519), the Mozilla roots kept as trust anchors \
(-57 KiB against whole certificates), and a non-PIE static link (-121 KiB of \
relocations). The 512 KiB reads cost 1 MiB of peak memory (3.4 -> 4.5 MiB) and about \
3 ms on the small RunScript result (page faults of the larger buffers). \
Tried and left out: `flate2` at opt-level 3 (no faster), `-C force-unwind-tables=no` \
(no smaller). The stand-in server's first version was a bottleneck of its own (std's \
`io::copy` does not `sendfile` to a socket: 8 KiB copies capped `curl -o /dev/null` at \
~430 MiB/s); it now sends the blob from memory in one `write`. What is left in the \
GetFile profile is `miniz_oxide`'s `decompress_fast` and the copy out of its 32 KiB \
window; a faster inflater (the `zlib-rs` backend of flate2) was not tried: it would \
bring unsafe code into the download path and the binary is 57 KiB under its limit.

";

const START_MARK: &str = "<!-- bench:start -->";
const END_MARK: &str = "<!-- bench:end -->";
const SECTION_TITLE: &str = "## Downloads and start-up: mdlr against curl";

const USAGE: &str = "usage: cargo xtask bench [--quick] [--reps N] [--no-write] [--mdlr PATH] \
                     [--baseline PATH] [--only gzip,raw,small,startup]";
/// The parts `--only` can pick.
const PARTS: [&str; 4] = ["gzip", "raw", "small", "startup"];

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// The sizes of the memory figure; the largest is the throughput case.
const SIZES: [u64; 3] = [64 * MIB, 256 * MIB, GIB];
const QUICK_SIZES: [u64; 2] = [64 * MIB, 256 * MIB];

/// The bearer token the stand-in API takes. Not a secret.
const TOKEN: &str = "bench-token-0d5c";
const CURL: &str = "/usr/bin/curl";
const JQ: &str = "/usr/bin/jq";
const TIME: &str = "/usr/bin/time";
/// Bumped when the generated data changes, so that stale caches are not used.
const DATA_VERSION: u32 = 1;
/// The longest any one client run may take.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Goals of issue 6.
const GOAL_SPEED: f64 = 1.0;
const GOAL_RSS_MIB: f64 = 8.0;
const GOAL_SMALL: f64 = 1.1;

struct Options {
    quick: bool,
    /// Repetitions of the largest downloads (the smaller ones get as many; the small
    /// RunScript result and the start-up ten and twenty times more).
    reps: usize,
    write: bool,
    /// Benchmark this binary instead of the dist one (never written to BENCHMARKS.md).
    mdlr: Option<PathBuf>,
    /// `--only`: the parts to run (never written to BENCHMARKS.md unless all of them).
    only: Vec<String>,
    /// `--baseline PATH`: another mdlr binary, run interleaved with the first on every
    /// download, for before/after figures of a change (never written).
    baseline: Option<PathBuf>,
}

impl Options {
    fn runs(&self, part: &str) -> bool {
        self.only.iter().any(|p| p == part)
    }
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        reps: 0,
        write: true,
        mdlr: None,
        only: PARTS.iter().map(|p| (*p).to_owned()).collect(),
        baseline: None,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k, Some((*v).to_owned())),
            None => (*arg, None),
        };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => rest
                    .next()
                    .map(|v| (*v).to_owned())
                    .ok_or_else(|| format!("{key} needs a value\n{USAGE}")),
            }
        };
        match key {
            "--quick" if inline.is_none() => options.quick = true,
            "--no-write" if inline.is_none() => options.write = false,
            "--write" if inline.is_none() => options.write = true,
            "--reps" => {
                let v = value()?;
                options.reps = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| format!("--reps: {v:?} is not a number in 1..=100\n{USAGE}"))?;
            }
            "--mdlr" => options.mdlr = Some(PathBuf::from(value()?)),
            "--baseline" => options.baseline = Some(PathBuf::from(value()?)),
            "--only" => {
                let v = value()?;
                options.only = v.split(',').map(|p| p.trim().to_owned()).collect();
                if let Some(bad) = options.only.iter().find(|p| !PARTS.contains(&p.as_str())) {
                    return Err(format!(
                        "--only: {bad:?} is not one of {}\n{USAGE}",
                        PARTS.join(", ")
                    ));
                }
            }
            _ => return Err(format!("unknown option {arg}\n{USAGE}")),
        }
    }
    if options.reps == 0 {
        options.reps = if options.quick { 3 } else { 7 };
    }
    Ok(options)
}

/// Runs the benchmark; `args` are what follows `bench` on the command line.
pub fn run(root: &Path, args: &[&str]) -> Result<(), String> {
    let options = parse(args)?;
    let command = std::iter::once("cargo xtask bench")
        .chain(args.iter().copied().filter(|a| *a != "--write"))
        .collect::<Vec<_>>()
        .join(" ");
    let tools = Tools::find()?;
    let (bin, size) = match &options.mdlr {
        Some(path) => {
            let size = std::fs::metadata(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .len();
            (path.clone(), size)
        }
        None => {
            println!("bench: building the dist binary (cargo xtask dist) ...");
            let dist = crate::dist::build(root, true)?;
            println!("{}", crate::dist::describe(root, &dist));
            (dist.binary, dist.size)
        }
    };
    let sizes: &[u64] = if options.quick { &QUICK_SIZES } else { &SIZES };
    let data = Data::prepare(&root.join("target").join("bench-data"), sizes)?;
    let scratch = Scratch::new()?;
    let world = Arc::new(World::new(&data));
    let server = BenchServer::start(Arc::clone(&world))?;
    let env = ClientEnv {
        mdlr: bin.clone(),
        baseline: options.baseline.clone(),
        api: server.url(),
        out: scratch.path().join("out"),
        tools,
    };
    std::fs::create_dir_all(&env.out)
        .map_err(|e| format!("cannot create {}: {e}", env.out.display()))?;
    env.sanity(&world)?;

    let mut figures = Figures {
        size,
        ..Figures::default()
    };
    let largest = *sizes.last().unwrap_or(&GIB);
    for &s in sizes {
        let reps = options.reps;
        for (part, gzip) in [("gzip", true), ("raw", false)] {
            if options.runs(part) {
                println!("{part} {}: {reps} rounds ...", human(s));
                figures
                    .downloads
                    .push(env.bench_download(&world, s, gzip, reps, s == largest)?);
            }
        }
    }
    if options.runs("small") {
        let small_reps = options.reps * 10;
        println!("small RunScript result: {small_reps} rounds ...");
        figures.small = Some(env.bench_small(&world, small_reps)?);
    }
    if options.runs("startup") {
        let start_reps = options.reps * 20;
        println!("start-up: {start_reps} rounds ...");
        figures.startup = Some(env.bench_startup(start_reps)?);
    }
    drop(server);

    let machine = Machine::detect(root, scratch.path());
    let tables = figures.tables();
    let goals = figures.goals();
    println!();
    print!("{tables}");
    println!();
    print!("{goals}");
    println!();
    println!("{}", machine.line());
    if options.mdlr.is_some() {
        println!("BENCHMARKS.md not written: --mdlr names a binary not built from this tree");
    } else if options.baseline.is_some() {
        println!("BENCHMARKS.md not written: --baseline adds rows of another binary");
    } else if options.only.len() < PARTS.len() {
        println!("BENCHMARKS.md not written: --only leaves figures out");
    } else if options.write {
        let section = section(&command, &tables, &goals, &machine, &figures);
        crate::write_section(&root.join("BENCHMARKS.md"), START_MARK, END_MARK, &section)?;
        println!(
            "wrote   BENCHMARKS.md (section \"{}\")",
            &SECTION_TITLE[3..]
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tools

struct Tools {
    curl: PathBuf,
    jq: PathBuf,
    time: PathBuf,
    sh: PathBuf,
    gzip: PathBuf,
}

impl Tools {
    fn find() -> Result<Tools, String> {
        let find = |fixed: &str, name: &str, why: &str| -> Result<PathBuf, String> {
            let fixed = PathBuf::from(fixed);
            if fixed.is_file() {
                return Ok(fixed);
            }
            std::env::var_os("PATH")
                .and_then(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join(name))
                        .find(|p| p.is_file())
                })
                .ok_or_else(|| {
                    let package = if name == "sh" { "dash" } else { name };
                    format!(
                        "{name} is missing: {why}; install it (Debian: apt-get install {package})"
                    )
                })
        };
        Ok(Tools {
            curl: find(
                CURL,
                "curl",
                "it is the reference the downloads are measured against",
            )?,
            jq: find(JQ, "jq", "the small RunScript reference extracts with it")?,
            time: find(
                TIME,
                "time",
                "GNU time reports the CPU time and peak memory of each run",
            )?,
            sh: find("/bin/sh", "sh", "the references with pipes run under it")?,
            gzip: find(
                "/usr/bin/gzip",
                "gzip",
                "it makes the GetFile results and un-gzips for a reference",
            )?,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Data

/// The result files, generated once under `target/bench-data/`.
struct Data {
    /// `(size, log text, its gzip, noise)` per size.
    sets: Vec<DataSet>,
}

struct DataSet {
    size: u64,
    text: PathBuf,
    gz: PathBuf,
    noise: PathBuf,
    /// Base64 MD5 of `noise`, for the largest size only.
    noise_md5: Option<String>,
}

impl Data {
    fn prepare(dir: &Path, sizes: &[u64]) -> Result<Data, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut sets = Vec::new();
        for &size in sizes {
            let tag = format!("v{DATA_VERSION}-{}", size / MIB);
            let text = dir.join(format!("log-{tag}M.txt"));
            let gz = dir.join(format!("log-{tag}M.txt.gz"));
            let noise = dir.join(format!("noise-{tag}M.bin"));
            if !text.is_file() {
                println!(
                    "bench: generating {} ({}, once) ...",
                    text.display(),
                    human(size)
                );
                generate(&text, size, write_log)?;
            }
            if !gz.is_file() {
                println!("bench: gzip -6 {} (once) ...", text.display());
                gzip(&text, &gz)?;
            }
            if !noise.is_file() {
                println!(
                    "bench: generating {} ({}, once) ...",
                    noise.display(),
                    human(size)
                );
                generate(&noise, size, write_noise)?;
            }
            let noise_md5 = match Some(&size) == sizes.last() {
                true => Some(md5_of(&noise)?),
                false => None,
            };
            sets.push(DataSet {
                size,
                text,
                gz,
                noise,
                noise_md5,
            });
        }
        Ok(Data { sets })
    }
}

/// Writes `size` bytes with `fill` to a temporary name, then renames: a file under the
/// final name is always complete.
fn generate(
    path: &Path,
    size: u64,
    fill: fn(&mut dyn Write, u64) -> std::io::Result<()>,
) -> Result<(), String> {
    let part = path.with_extension("part");
    let file = File::create(&part).map_err(|e| format!("cannot create {}: {e}", part.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    fill(&mut out, size)
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
    std::fs::rename(&part, path).map_err(|e| format!("cannot rename {}: {e}", part.display()))
}

/// Log lines with noise: timestamps, hosts, processes, a message from a small set and a
/// random id — compressible like real logs (gzip -6 keeps about a tenth), not trivially.
fn write_log(out: &mut dyn Write, size: u64) -> std::io::Result<()> {
    const MESSAGES: [&str; 16] = [
        "Accepted publickey for svc-backup from 10.20.4.17 port 51522 ssh2",
        "session opened for user root by (uid=0)",
        "Started Daily apt download activities.",
        "pam_unix(cron:session): session closed for user root",
        "Connection closed by authenticating user admin 203.0.113.9 port 40022 [preauth]",
        "GET /api/v2/health HTTP/1.1 200 512 \"-\" \"kube-probe/1.27\"",
        "audit: type=1400 apparmor=\"DENIED\" operation=\"open\" profile=\"snap.lxd\"",
        "Windows Defender Antivirus scan started. Scan type: Quick",
        "Process C:\\Windows\\System32\\svchost.exe -k netsvcs -p created",
        "New process has been created. Token Elevation Type: %%1936",
        "An account was successfully logged on. Logon Type: 3",
        "DNS query for login.microsoftonline.com returned 4 records",
        "TLS handshake completed, cipher TLS_AES_256_GCM_SHA384",
        "Scheduled task \\Microsoft\\Windows\\UpdateOrchestrator\\Schedule Scan ran",
        "kernel: [UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.23 DST=10.0.0.5 PROTO=TCP",
        "Registry value set: HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
    ];
    const HOSTS: [&str; 8] = [
        "web-01", "web-02", "db-01", "dc-01", "jump-01", "ws-0417", "ws-0932", "build-07",
    ];
    const PROCS: [&str; 8] = [
        "sshd", "CRON", "systemd", "kernel", "nginx", "MsMpEng", "lsass", "sysmon",
    ];
    let hex = b"0123456789abcdef";
    let mut written = 0u64;
    let mut x = 0x6c6f_6773u64;
    let mut ms = 0u64;
    let mut line = Vec::with_capacity(256);
    while written < size {
        x = mix(x);
        ms += x % 997;
        line.clear();
        let secs = ms / 1000;
        let _ = write!(
            line,
            "2026-11-27T{:02}:{:02}:{:02}.{:03}Z {} {}[{}]: {} id=",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            ms % 1000,
            HOSTS[(x >> 8) as usize % HOSTS.len()],
            PROCS[(x >> 12) as usize % PROCS.len()],
            (x >> 16) % 4096 + 100,
            MESSAGES[(x >> 28) as usize % MESSAGES.len()],
        );
        let id = mix(x);
        for k in 0..10 {
            line.push(hex[((id >> (4 * k)) & 15) as usize]);
        }
        line.push(b'\n');
        let take = (size - written).min(line.len() as u64) as usize;
        out.write_all(&line[..take])?;
        written += take as u64;
    }
    Ok(())
}

/// Incompressible bytes, as a raw transfer of a zip or an already compressed blob.
fn write_noise(out: &mut dyn Write, size: u64) -> std::io::Result<()> {
    let mut block = vec![0u8; 1 << 20];
    let mut x = 0x006e_6f69_7365_u64;
    let mut written = 0u64;
    while written < size {
        for chunk in block.chunks_exact_mut(8) {
            x = mix(x);
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let take = (size - written).min(block.len() as u64) as usize;
        out.write_all(&block[..take])?;
        written += take as u64;
    }
    Ok(())
}

/// The base64 MD5 of `path`, from `md5sum` once, then from `PATH.md5`.
fn md5_of(path: &Path) -> Result<String, String> {
    let cache = path.with_extension("md5");
    let hex = match std::fs::read_to_string(&cache) {
        Ok(hex) => hex,
        Err(_) => {
            println!("bench: md5sum {} (once) ...", path.display());
            let output = Command::new("md5sum")
                .arg(path)
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run md5sum (coreutils): {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "md5sum {} failed ({})",
                    path.display(),
                    output.status
                ));
            }
            let hex: String = String::from_utf8_lossy(&output.stdout)
                .chars()
                .take(32)
                .collect();
            std::fs::write(&cache, &hex)
                .map_err(|e| format!("cannot write {}: {e}", cache.display()))?;
            hex
        }
    };
    let bytes: Option<Vec<u8>> = (0..16)
        .map(|i| {
            hex.get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    match bytes {
        Some(b) => Ok(mdlr_tests::util::base64(&b)),
        None => Err(format!("{} does not hold an MD5", cache.display())),
    }
}

/// `gzip -6 -n -c TEXT > GZ` (through a temporary name).
fn gzip(text: &Path, gz: &Path) -> Result<(), String> {
    let part = gz.with_extension("part");
    let file = File::create(&part).map_err(|e| format!("cannot create {}: {e}", part.display()))?;
    let status = Command::new("gzip")
        .args(["-6", "-n", "-c"])
        .arg(text)
        .stdout(file)
        .status()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    if !status.success() {
        return Err(format!("gzip {} failed ({status})", text.display()));
    }
    std::fs::rename(&part, gz).map_err(|e| format!("cannot rename {}: {e}", part.display()))
}

/// Where the clients write: `/dev/shm` when there is one, else the system's temporary
/// directory. Removed on drop.
struct Scratch(crate::TempDir);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let name = format!("mdlr-bench-{}", std::process::id());
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            let path = shm.join(&name);
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            crate::TempDir(path)
        } else {
            crate::TempDir::new(&name)?
        };
        Ok(Scratch(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

// ---------------------------------------------------------------------------------------
// The stand-in service

/// One result the stand-in serves.
struct Blob {
    action_id: String,
    kind: &'static str,
    /// The blob's name in its URL.
    name: String,
    path: PathBuf,
    /// What a client that un-gzips must write (`path` itself for raw bytes).
    original: PathBuf,
    disposition: Option<String>,
    /// `Content-MD5` (base64), for the variant of the largest raw blob that has one.
    content_md5: Option<String>,
}

struct World {
    blobs: Vec<Blob>,
    /// The small RunScript transcript, and its `script_output`.
    transcript: Vec<u8>,
    script_output: String,
    /// What every result name means: `(size, gzip?)` → index in `blobs`.
    index: Vec<(u64, bool, usize)>,
    /// The largest raw blob with a `Content-MD5`, index in `blobs`.
    md5_blob: Option<usize>,
    /// Set once the server knows its address.
    base: std::sync::OnceLock<String>,
    /// The blob being benchmarked, in memory: `(name, bytes)`.
    loaded: Mutex<Option<(PathBuf, Arc<Vec<u8>>)>>,
}

const SMALL_ID: &str = "988cc94e-7a8f-4b28-ab65-54970c5d5018";

impl World {
    fn new(data: &Data) -> World {
        let mut blobs = Vec::new();
        let mut index = Vec::new();
        for (n, set) in data.sets.iter().enumerate() {
            for (gzip, path, original, name) in [
                (
                    true,
                    &set.gz,
                    &set.text,
                    format!("evidence-{}M.log.gz", set.size / MIB),
                ),
                (
                    false,
                    &set.noise,
                    &set.noise,
                    format!("evidence-{}M.bin.gz", set.size / MIB),
                ),
            ] {
                let id = mdlr_tests::util::guid(0xbe_4c, (2 * n + usize::from(gzip)) as u64);
                index.push((set.size, gzip, blobs.len()));
                blobs.push(Blob {
                    action_id: id,
                    kind: "GetFile",
                    name: format!("{:032x}", mix(blobs.len() as u64 + 1) as u128),
                    path: path.clone(),
                    original: original.clone(),
                    disposition: Some(format!("attachment; filename=\"{name}\"")),
                    content_md5: None,
                });
            }
        }
        // The largest raw blob again, this time with the MD5 that mdlr then verifies.
        let md5_blob = data.sets.last().and_then(|set| {
            let md5 = set.noise_md5.clone()?;
            let n = blobs.len();
            blobs.push(Blob {
                action_id: mdlr_tests::util::guid(0xbe_4d, n as u64),
                kind: "GetFile",
                name: format!("{:032x}", mix(n as u64 + 1) as u128),
                path: set.noise.clone(),
                original: set.noise.clone(),
                disposition: Some(format!(
                    "attachment; filename=\"evidence-{}M.bin.gz\"",
                    set.size / MIB
                )),
                content_md5: Some(md5),
            });
            Some(n)
        });
        let mut output = String::from(
            "Transcript started, output file is C:\\ProgramData\\Microsoft\\Windows Defender \
             Advanced Threat Protection\\Temp\\PSScriptOutputs\\PSScript_Transcript_{5E8D}.txt\n",
        );
        for i in 0..40 {
            output.push_str(&format!(
                "C:\\Users\\user{i:02}\\AppData\\Local\\Temp\\tmp{:08x}.dmp  {} KB\n",
                mix(i) as u32,
                mix(i + 99) % 90_000
            ));
        }
        let transcript = serde_json::json!({
            "script_name": "triage.ps1",
            "exit_code": 0,
            "script_output": output,
            "script_errors": "",
        })
        .to_string()
        .into_bytes();
        World {
            blobs,
            transcript,
            script_output: output,
            index,
            md5_blob,
            base: std::sync::OnceLock::new(),
            loaded: Mutex::new(None),
        }
    }

    /// Holds `blob` in memory (and no other), so that serving it costs one `write` of
    /// the whole body: std's `io::copy` does not `sendfile` to a socket, and copying
    /// through a small buffer would make the server the bottleneck.
    fn load(&self, blob: &Blob) -> Result<(), String> {
        let mut loaded = self.loaded.lock().map_err(|_| "a server thread panicked")?;
        if loaded.as_ref().is_some_and(|(path, _)| *path == blob.path) {
            return Ok(());
        }
        *loaded = None;
        let bytes = std::fs::read(&blob.path)
            .map_err(|e| format!("cannot read {}: {e}", blob.path.display()))?;
        *loaded = Some((blob.path.clone(), Arc::new(bytes)));
        Ok(())
    }

    fn loaded(&self, path: &Path) -> Option<Arc<Vec<u8>>> {
        let loaded = self.loaded.lock().ok()?;
        loaded
            .as_ref()
            .filter(|(p, _)| p == path)
            .map(|(_, bytes)| Arc::clone(bytes))
    }

    fn blob(&self, size: u64, gzip: bool) -> Option<&Blob> {
        self.index
            .iter()
            .find(|(s, g, _)| *s == size && *g == gzip)
            .and_then(|(_, _, i)| self.blobs.get(*i))
    }

    /// The result link of `blob` (signature and expiry as a real one has them).
    fn link(&self, name: &str) -> String {
        let base = self.base.get().map(String::as_str).unwrap_or_default();
        format!("{base}/blob/{name}?se=2099-01-01T00%3A00%3A00Z&sp=r&sv=2019-07-07&sr=b&sig=bench")
    }

    fn action_json(id: &str, kind: &str) -> Vec<u8> {
        let params = match kind {
            "RunScript" => serde_json::json!([{"key": "ScriptName", "value": "triage.ps1"}]),
            _ => serde_json::json!([{"key": "Path", "value": "C:\\evidence.log"}]),
        };
        serde_json::json!({
            "id": id,
            "type": "LiveResponse",
            "requestor": "analyst@contoso.com",
            "status": "Succeeded",
            "machineId": "1e5bc9d7e413ddd7902c2932e418702b84d0cc07",
            "computerDnsName": "desktop-4f2k7.contoso.com",
            "creationDateTimeUtc": "2026-11-27T10:00:05.7100000Z",
            "lastUpdateDateTimeUtc": "2026-11-27T10:01:02.3366667Z",
            "commands": [{
                "index": 0,
                "startTime": "2026-11-27T10:00:19.8400000Z",
                "endTime": "2026-11-27T10:01:02.3366667Z",
                "commandStatus": "Completed",
                "errors": [],
                "command": {"type": kind, "params": params},
            }],
        })
        .to_string()
        .into_bytes()
    }

    /// Answers one request on `stream`.
    fn serve(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let mut authorization = None;
        let mut range = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim().to_owned();
                if name.eq_ignore_ascii_case("authorization") {
                    authorization = Some(value);
                } else if name.eq_ignore_ascii_case("range") {
                    range = Some(value);
                }
            }
        }
        let path = target.split('?').next().unwrap_or_default();
        if method != "GET" {
            return reply(&mut stream, 405, "text/plain", b"GET only\n", &[]);
        }
        if let Some(name) = path.strip_prefix("/blob/") {
            if authorization.is_some() {
                return reply(
                    &mut stream,
                    400,
                    "text/plain",
                    b"no bearer token here\n",
                    &[],
                );
            }
            return match self.blobs.iter().find(|b| b.name == name) {
                Some(blob) => {
                    send_blob(&mut stream, blob, self.loaded(&blob.path), range.as_deref())
                }
                None if name == "small" => reply(
                    &mut stream,
                    200,
                    "application/octet-stream",
                    &self.transcript,
                    &[("ETag", "\"0x8DEADBEEF\"")],
                ),
                None => reply(&mut stream, 404, "text/plain", b"BlobNotFound\n", &[]),
            };
        }
        if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
            return reply(
                &mut stream,
                401,
                "application/json",
                b"{\"error\":{\"code\":\"Unauthorized\",\"message\":\"no token\"}}",
                &[],
            );
        }
        let Some(rest) = path.strip_prefix("/api/machineactions/") else {
            return reply(&mut stream, 404, "text/plain", b"not found\n", &[]);
        };
        let (id, link) = match rest.split_once('/') {
            Some((id, "GetLiveResponseResultDownloadLink(index=0)")) => (id, true),
            Some(_) => return reply(&mut stream, 404, "text/plain", b"not found\n", &[]),
            None => (rest, false),
        };
        let found = if id == SMALL_ID {
            Some(("RunScript", "small".to_owned()))
        } else {
            self.blobs
                .iter()
                .find(|b| b.action_id == id)
                .map(|b| (b.kind, b.name.clone()))
        };
        let Some((kind, name)) = found else {
            return reply(
                &mut stream,
                404,
                "application/json",
                b"{\"error\":{\"code\":\"ResourceNotFound\",\"message\":\"no such action\"}}",
                &[],
            );
        };
        let body = if link {
            serde_json::json!({
                "@odata.context": "https://api.securitycenter.microsoft.com/api/$metadata#Edm.String",
                "value": self.link(&name),
            })
            .to_string()
            .into_bytes()
        } else {
            World::action_json(id, kind)
        };
        reply(
            &mut stream,
            200,
            "application/json; charset=utf-8",
            &body,
            &[],
        )
    }
}

fn reply(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        mdlr_tests::server::reason(status),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// The blob as Azure sends one (whole, or a `Range`), from memory when it is loaded.
fn send_blob(
    stream: &mut TcpStream,
    blob: &Blob,
    loaded: Option<Arc<Vec<u8>>>,
    range: Option<&str>,
) -> std::io::Result<()> {
    let mut file = File::open(&blob.path)?;
    let len = file.metadata()?.len();
    // `bytes=N-` or `bytes=N-M`; anything else is ignored, as Azure does.
    let range = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            let from = a.trim().parse::<u64>().ok()?;
            let to = match b.trim() {
                "" => u64::MAX,
                b => b.parse::<u64>().ok()?,
            };
            (from <= to).then_some((from, to.min(len.saturating_sub(1))))
        });
    let etag = format!("\"0x8DC{len:X}\"");
    let mut head = String::new();
    let status = match range {
        Some((from, _)) if from >= len => {
            return reply(
                stream,
                416,
                "application/xml",
                b"<Error><Code>InvalidRange</Code></Error>",
                &[],
            );
        }
        Some((from, to)) => {
            head.push_str(&format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{to}/{len}\r\n"
            ));
            to - from + 1
        }
        None => {
            head.push_str("HTTP/1.1 200 OK\r\n");
            len
        }
    };
    head.push_str(&format!(
        "Content-Length: {status}\r\nContent-Type: application/octet-stream\r\n\
         Last-Modified: Fri, 27 Nov 2026 10:01:02 GMT\r\nAccept-Ranges: bytes\r\n\
         ETag: {etag}\r\nx-ms-blob-type: BlockBlob\r\nx-ms-version: 2019-07-07\r\n"
    ));
    if let Some(d) = &blob.disposition {
        head.push_str(&format!("Content-Disposition: {d}\r\n"));
    }
    // As Azure: the whole blob's MD5, on whole replies only.
    if let (Some(md5), None) = (&blob.content_md5, range) {
        head.push_str(&format!("Content-MD5: {md5}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    let from = range.map_or(0, |(from, _)| from);
    match loaded {
        Some(bytes) => {
            let from = usize::try_from(from).unwrap_or(usize::MAX);
            let to = usize::try_from(from as u64 + status).unwrap_or(usize::MAX);
            match bytes.get(from..to) {
                // One write: the kernel copies it into the socket as the client reads.
                Some(body) => stream.write_all(body)?,
                None => return Err(std::io::Error::other("the loaded blob changed")),
            }
        }
        None => {
            file.seek(SeekFrom::Start(from))?;
            std::io::copy(&mut file.take(status), stream)?;
        }
    }
    stream.flush()
}

/// The stand-in's listener; stops on drop.
struct BenchServer {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl BenchServer {
    fn start(world: Arc<World>) -> Result<BenchServer, String> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        let _ = world.base.set(format!("http://{addr}"));
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let accept = std::thread::Builder::new()
            .name("bench-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let world = Arc::clone(&world);
                    let _ =
                        std::thread::Builder::new()
                            .name("bench-conn".into())
                            .spawn(move || {
                                // A client that goes away mid-reply is not our problem.
                                let _ = world.serve(stream);
                            });
                }
            })
            .map_err(|e| format!("cannot start the server thread: {e}"))?;
        Ok(BenchServer {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running the clients

/// What one run cost.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    wall: f64,
    /// User + system CPU seconds (`None` when not measured).
    cpu: Option<f64>,
    /// Peak resident set, KiB.
    max_rss_kib: Option<u64>,
}

struct ClientEnv {
    mdlr: PathBuf,
    baseline: Option<PathBuf>,
    api: String,
    out: PathBuf,
    tools: Tools,
}

/// One client of a case.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    /// `mdlr result ID -o OUT/` (un-gzips a GetFile result).
    Mdlr,
    /// `mdlr result ID --raw -o OUT/`.
    MdlrRaw,
    /// `mdlr result ID --raw -o DIR/` of the same blob when the host sends its MD5.
    MdlrRawMd5,
    /// The same three with the `--baseline` binary.
    BaselineMdlr,
    BaselineMdlrRaw,
    BaselineMdlrRawMd5,
    /// `curl -o FILE LINK`.
    CurlO,
    /// `curl LINK | gzip -dc > FILE`.
    CurlGunzip,
    /// `curl -o /dev/null LINK`: what the server and loopback can carry.
    CurlNull,
}

impl Client {
    fn label(self) -> &'static str {
        match self {
            Client::Mdlr => "`mdlr result ID -o DIR/` (un-gzips)",
            Client::MdlrRaw => "`mdlr result ID --raw -o DIR/`",
            Client::MdlrRawMd5 => "`mdlr result ID --raw -o DIR/`, with `Content-MD5`",
            Client::BaselineMdlr => "baseline: `mdlr result ID -o DIR/`",
            Client::BaselineMdlrRaw => "baseline: `mdlr result ID --raw -o DIR/`",
            Client::BaselineMdlrRawMd5 => {
                "baseline: `mdlr result ID --raw -o DIR/`, with `Content-MD5`"
            }
            Client::CurlO => "`curl -o FILE LINK`",
            Client::CurlGunzip => "`curl LINK | gzip -dc > FILE`",
            Client::CurlNull => "`curl -o /dev/null LINK` (server ceiling)",
        }
    }

    fn is_mdlr(self) -> bool {
        matches!(self, Client::Mdlr | Client::MdlrRaw)
    }
}

/// The figures of one download case: every client's samples.
struct Download {
    size: u64,
    gzip: bool,
    /// Bytes on the wire.
    blob_bytes: u64,
    /// Bytes of the file delivered (un-gzipped for the gzip case).
    file_bytes: u64,
    largest: bool,
    runs: Vec<(Client, Vec<Sample>)>,
}

impl ClientEnv {
    fn mdlr_command(&self, args: &[&str]) -> Command {
        self.mdlr_command_of(&self.mdlr, args)
    }

    fn mdlr_command_of(&self, bin: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .env_clear()
            .env("MDLR_TOKEN", TOKEN)
            .env("MDLR_API_URL", &self.api)
            .current_dir(&self.out);
        c
    }

    fn curl_command(&self) -> Command {
        let mut c = Command::new(&self.tools.curl);
        // -q: no ~/.curlrc; an empty environment: no proxy.
        c.args(["-q", "-sS", "--fail"])
            .env_clear()
            .current_dir(&self.out);
        c
    }

    fn sh_command(&self, script: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.tools.sh);
        c.arg("-c")
            .arg(script)
            .arg("sh")
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir(&self.out);
        c
    }

    /// Runs `command` with stdout to `stdout` (or nowhere), under GNU time when `timed`.
    fn measure(
        &self,
        command: Command,
        timed: bool,
        stdout: Option<&Path>,
    ) -> Result<(Sample, ExitStatus, String), String> {
        let report = self.out.join(".time");
        let mut command = if timed {
            let mut t = Command::new(&self.tools.time);
            t.args(["-f", "%U %S %M", "-o"])
                .arg(&report)
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
        } else {
            command
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
                    std::thread::sleep(Duration::from_micros(200));
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
        if timed {
            let text = std::fs::read_to_string(&report)
                .map_err(|e| format!("cannot read GNU time's report: {e}"))?;
            let fields: Vec<&str> = text
                .lines()
                .last()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            match fields.as_slice() {
                [user, system, rss] => {
                    let user: f64 = user.parse().unwrap_or(f64::NAN);
                    let system: f64 = system.parse().unwrap_or(f64::NAN);
                    sample.cpu = Some(user + system);
                    sample.max_rss_kib = rss.parse().ok();
                }
                _ => return Err(format!("GNU time reported {text:?}")),
            }
        }
        Ok((sample, status, stderr))
    }

    /// Checks once that every client gets what it should before anything is timed.
    fn sanity(&self, world: &World) -> Result<(), String> {
        let Some(blob) = world.blobs.first() else {
            return Err("no results to serve".to_owned());
        };
        let link = world.link(&blob.name);
        let mut curl = self.curl_command();
        curl.args(["-r", "0-0", "-o", "/dev/null"]).arg(&link);
        let (_, status, stderr) = self.measure(curl, false, None)?;
        if !status.success() {
            return Err(format!(
                "curl cannot reach the stand-in ({status}): {stderr}"
            ));
        }
        Ok(())
    }

    fn run_download(
        &self,
        world: &World,
        client: Client,
        blob: &Blob,
    ) -> Result<(Sample, PathBuf), String> {
        let link = world.link(&blob.name);
        let file = self.out.join("download");
        let (command, produced) = match client {
            Client::Mdlr => (
                self.mdlr_command(&["result", &blob.action_id, "-o", "./"]),
                None,
            ),
            Client::MdlrRaw => (
                self.mdlr_command(&["result", &blob.action_id, "--raw", "-o", "./"]),
                None,
            ),
            Client::MdlrRawMd5 | Client::BaselineMdlrRawMd5 => {
                let id = world
                    .md5_blob
                    .and_then(|i| world.blobs.get(i))
                    .map_or(blob.action_id.as_str(), |b| b.action_id.as_str());
                let bin = match client {
                    Client::BaselineMdlrRawMd5 => self.baseline.as_deref().unwrap_or(&self.mdlr),
                    _ => &self.mdlr,
                };
                (
                    self.mdlr_command_of(bin, &["result", id, "--raw", "-o", "./"]),
                    None,
                )
            }
            Client::BaselineMdlr | Client::BaselineMdlrRaw => {
                let bin = self.baseline.as_deref().unwrap_or(&self.mdlr);
                let mut args = vec!["result", blob.action_id.as_str(), "-o", "./"];
                if client == Client::BaselineMdlrRaw {
                    args.push("--raw");
                }
                (self.mdlr_command_of(bin, &args), None)
            }
            Client::CurlO => {
                let mut c = self.curl_command();
                c.arg("-o").arg(&file).arg(&link);
                (c, Some(file.clone()))
            }
            Client::CurlNull => {
                let mut c = self.curl_command();
                c.args(["-o", "/dev/null"]).arg(&link);
                (c, None)
            }
            Client::CurlGunzip => {
                let gz = self.tools.gzip.display().to_string();
                let curl = self.tools.curl.display().to_string();
                let script = "\"$1\" -q -sS --fail \"$2\" | \"$3\" -dc > \"$4\"";
                let c = self.sh_command(script, &[&curl, &link, &gz, &file.display().to_string()]);
                (c, Some(file.clone()))
            }
        };
        let (sample, status, stderr) = self.measure(command, true, None)?;
        if !status.success() {
            return Err(format!(
                "{} failed ({status}): {}",
                client.label(),
                stderr.trim()
            ));
        }
        let path = match produced {
            Some(p) => p,
            None if client == Client::CurlNull => PathBuf::new(),
            None => self.only_file()?,
        };
        Ok((sample, path))
    }

    /// The one visible file mdlr left in the output directory.
    fn only_file(&self) -> Result<PathBuf, String> {
        let mut files = Vec::new();
        let entries = std::fs::read_dir(&self.out)
            .map_err(|e| format!("cannot list {}: {e}", self.out.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                files.push(entry.path());
            } else if name.contains("mdlr-part") {
                return Err(format!("mdlr left {name} behind"));
            }
        }
        match files.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(format!("mdlr left {} files, not one", files.len())),
        }
    }

    fn clear_out(&self) -> Result<(), String> {
        let entries = std::fs::read_dir(&self.out)
            .map_err(|e| format!("cannot list {}: {e}", self.out.display()))?;
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(())
    }

    fn bench_download(
        &self,
        world: &World,
        size: u64,
        gzip: bool,
        reps: usize,
        largest: bool,
    ) -> Result<Download, String> {
        let blob = world
            .blob(size, gzip)
            .ok_or_else(|| format!("no blob of {}", human(size)))?;
        world.load(blob)?;
        let blob_bytes = std::fs::metadata(&blob.path)
            .map_err(|e| format!("cannot read {}: {e}", blob.path.display()))?
            .len();
        let mut clients: Vec<Client> = match (gzip, largest) {
            (true, true) => vec![Client::Mdlr, Client::CurlO, Client::CurlGunzip],
            (true, false) => vec![Client::Mdlr, Client::CurlO],
            (false, true) if world.md5_blob.is_some() => vec![
                Client::MdlrRaw,
                Client::CurlO,
                Client::MdlrRawMd5,
                Client::CurlNull,
            ],
            (false, true) => vec![Client::MdlrRaw, Client::CurlO, Client::CurlNull],
            (false, false) => vec![Client::MdlrRaw, Client::CurlO],
        };
        if self.baseline.is_some() && clients.contains(&Client::MdlrRawMd5) {
            clients.push(Client::BaselineMdlrRawMd5);
        }
        if self.baseline.is_some() {
            clients.insert(
                1,
                match gzip {
                    true => Client::BaselineMdlr,
                    false => Client::BaselineMdlrRaw,
                },
            );
        }
        let expected_file = &blob.original;
        let file_bytes = std::fs::metadata(expected_file)
            .map_err(|e| format!("cannot read {}: {e}", expected_file.display()))?
            .len();
        let mut runs: Vec<(Client, Vec<Sample>)> =
            clients.iter().map(|c| (*c, Vec::new())).collect();
        for rep in 0..reps {
            // Interleaved, and in a rotating order, so that drift hits every client.
            for k in 0..clients.len() {
                let client = clients[(rep + k) % clients.len()];
                self.clear_out()?;
                let (sample, path) = self.run_download(world, client, blob)?;
                if client != Client::CurlNull {
                    let want = match client {
                        Client::Mdlr | Client::BaselineMdlr | Client::CurlGunzip => expected_file,
                        _ => &blob.path,
                    };
                    // Every byte on the first round, the length on the others.
                    check_file(&path, want, rep == 0)
                        .map_err(|e| format!("{}: {e}", client.label()))?;
                }
                if let Some((_, samples)) = runs.iter_mut().find(|(c, _)| *c == client) {
                    samples.push(sample);
                }
            }
        }
        self.clear_out()?;
        let download = Download {
            size,
            gzip,
            blob_bytes,
            file_bytes,
            largest,
            runs,
        };
        for (client, samples) in &download.runs {
            let s = median_sample(samples);
            println!(
                "  {:<48} {:>7.3} s  {:>8.1} MiB/s  cpu {:>6.2} s  rss {:>7.1} MiB",
                client.label(),
                s.wall,
                download.file_bytes_for(*client) as f64 / MIB as f64 / s.wall,
                s.cpu.unwrap_or(f64::NAN),
                s.max_rss_kib.map_or(f64::NAN, |k| k as f64 / 1024.0),
            );
        }
        Ok(download)
    }

    /// The small RunScript result: `mdlr result ID` against two curls and jq.
    fn bench_small(&self, world: &World, reps: usize) -> Result<Small, String> {
        let stdout = self.out.join("stdout");
        let link_url = format!(
            "{}/api/machineactions/{SMALL_ID}/GetLiveResponseResultDownloadLink(index=0)",
            self.api
        );
        let script = "link=$(\"$1\" -q -sS --fail -H \"Authorization: Bearer $3\" \"$4\" | \
                      \"$2\" -r .value) && \"$1\" -q -sS --fail \"$link\" | \"$2\" -j .script_output";
        let curl = self.tools.curl.display().to_string();
        let jq = self.tools.jq.display().to_string();
        let mut mdlr = Vec::new();
        let mut reference = Vec::new();
        for rep in 0..reps {
            for k in 0..2 {
                let is_mdlr = (rep + k) % 2 == 0;
                let command = if is_mdlr {
                    self.mdlr_command(&["result", SMALL_ID])
                } else {
                    self.sh_command(script, &[&curl, &jq, TOKEN, &link_url])
                };
                let (sample, status, stderr) = self.measure(command, false, Some(&stdout))?;
                let printed = std::fs::read_to_string(&stdout).unwrap_or_default();
                let who = if is_mdlr { "mdlr result" } else { "curl + jq" };
                if !status.success() {
                    return Err(format!("{who} failed ({status}): {}", stderr.trim()));
                }
                if printed != world.script_output {
                    return Err(format!(
                        "{who} printed {} bytes, not the script's output",
                        printed.len()
                    ));
                }
                if is_mdlr {
                    mdlr.push(sample.wall);
                } else {
                    reference.push(sample.wall);
                }
            }
        }
        let small = Small {
            mdlr: median(&mdlr),
            reference: median(&reference),
            reps,
            bytes: world.transcript.len(),
        };
        println!(
            "  mdlr result {:.2} ms, curl + jq {:.2} ms",
            small.mdlr * 1e3,
            small.reference * 1e3
        );
        Ok(small)
    }

    /// `mdlr --version` against `curl --version`.
    fn bench_startup(&self, reps: usize) -> Result<Startup, String> {
        let mut mdlr = Vec::new();
        let mut curl = Vec::new();
        let mut rss = Vec::new();
        for rep in 0..reps {
            for k in 0..2 {
                let is_mdlr = (rep + k) % 2 == 0;
                let mut command = if is_mdlr {
                    self.mdlr_command(&[])
                } else {
                    self.curl_command()
                };
                command.arg("--version");
                let (sample, status, _) = self.measure(command, false, None)?;
                if !status.success() {
                    return Err(format!("--version failed ({status})"));
                }
                if is_mdlr {
                    mdlr.push(sample.wall);
                } else {
                    curl.push(sample.wall);
                }
            }
        }
        // The memory of a start, once, under GNU time.
        for _ in 0..3 {
            let mut command = self.mdlr_command(&[]);
            command.arg("--version");
            let (sample, _, _) = self.measure(command, true, None)?;
            rss.extend(sample.max_rss_kib);
        }
        let startup = Startup {
            mdlr: median(&mdlr),
            curl: median(&curl),
            reps,
            rss_kib: rss.iter().copied().min().unwrap_or(0),
        };
        println!(
            "  mdlr --version {:.2} ms, curl --version {:.2} ms",
            startup.mdlr * 1e3,
            startup.curl * 1e3
        );
        Ok(startup)
    }
}

/// Compares `got` with `want`: every byte, or only the length.
fn check_file(got: &Path, want: &Path, every_byte: bool) -> Result<(), String> {
    let len = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let (a, b) = (len(got)?, len(want)?);
    if a != b {
        return Err(format!("wrote {a} bytes, expected {b}"));
    }
    if !every_byte {
        return Ok(());
    }
    let open = |p: &Path| File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let (mut x, mut y) = (open(got)?, open(want)?);
    let (mut bx, mut by) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut at = 0u64;
    loop {
        let n = read_full(&mut x, &mut bx).map_err(|e| format!("cannot read: {e}"))?;
        let m = read_full(&mut y, &mut by).map_err(|e| format!("cannot read: {e}"))?;
        if n != m || bx[..n] != by[..m] {
            return Err(format!(
                "the bytes differ from the expected ones after byte {at}"
            ));
        }
        if n == 0 {
            return Ok(());
        }
        at += n as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

// ---------------------------------------------------------------------------------------
// Figures

struct Small {
    mdlr: f64,
    reference: f64,
    reps: usize,
    bytes: usize,
}

struct Startup {
    mdlr: f64,
    curl: f64,
    reps: usize,
    rss_kib: u64,
}

#[derive(Default)]
struct Figures {
    size: u64,
    downloads: Vec<Download>,
    small: Option<Small>,
    startup: Option<Startup>,
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median of each figure on its own.
fn median_sample(samples: &[Sample]) -> Sample {
    let walls: Vec<f64> = samples.iter().map(|s| s.wall).collect();
    let cpus: Vec<f64> = samples.iter().filter_map(|s| s.cpu).collect();
    let rss: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.max_rss_kib)
        .map(|k| k as f64)
        .collect();
    Sample {
        wall: median(&walls),
        cpu: (!cpus.is_empty()).then(|| median(&cpus)),
        // The largest: a peak is a peak.
        max_rss_kib: rss.iter().copied().reduce(f64::max).map(|k| k as u64),
    }
}

impl Download {
    /// The bytes `client` delivers: the file for those that un-gzip, else the blob.
    fn file_bytes_for(&self, client: Client) -> u64 {
        match client {
            Client::Mdlr | Client::BaselineMdlr | Client::CurlGunzip => self.file_bytes,
            _ => self.blob_bytes,
        }
    }

    fn median(&self, client: Client) -> Option<Sample> {
        self.runs
            .iter()
            .find(|(c, _)| *c == client)
            .map(|(_, s)| median_sample(s))
    }

    /// The ratios of the median walls, per repetition-paired medians: `reference ÷ mdlr`
    /// (above 1: mdlr is faster).
    fn speed_ratio(&self, reference: Client) -> Option<f64> {
        Some(median(&self.round_ratios(reference)?))
    }

    /// `reference`'s wall ÷ mdlr's, round by round.
    fn round_ratios(&self, reference: Client) -> Option<Vec<f64>> {
        let mdlr = if self.gzip {
            Client::Mdlr
        } else {
            Client::MdlrRaw
        };
        let (_, m) = self.runs.iter().find(|(c, _)| *c == mdlr)?;
        let (_, r) = self.runs.iter().find(|(c, _)| *c == reference)?;
        Some(m.iter().zip(r).map(|(m, r)| r.wall / m.wall).collect())
    }

    /// `1.19× (rounds 1.05–1.31×)`.
    fn ratio_with_spread(&self, reference: Client) -> String {
        let Some(ratios) = self.round_ratios(reference).filter(|r| !r.is_empty()) else {
            return "?".to_owned();
        };
        let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let high = ratios.iter().copied().fold(0.0, f64::max);
        format!("{:.2}× (rounds {low:.2}–{high:.2}×)", median(&ratios))
    }

    fn title(&self) -> String {
        if self.gzip {
            format!(
                "GetFile {} (gzip blob {})",
                human(self.size),
                human_exact(self.blob_bytes)
            )
        } else {
            format!("raw {}", human(self.size))
        }
    }
}

impl Figures {
    fn tables(&self) -> String {
        let mut out = String::from(
            "| download | client | wall (s) | MiB/s delivered | MiB/s on the wire | CPU (s) | \
             CPU s / GiB delivered | peak RSS (MiB) | speed vs mdlr |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for d in &self.downloads {
            for (client, _) in &d.runs {
                let Some(s) = d.median(*client) else { continue };
                let delivered = d.file_bytes_for(*client) as f64;
                let ratio = match client.is_mdlr() {
                    true => "1".to_owned(),
                    false => d
                        .speed_ratio(*client)
                        .map_or("?".to_owned(), |r| format!("{:.2}×", 1.0 / r)),
                };
                out.push_str(&format!(
                    "| {} | {} | {:.3} | {:.0} | {:.0} | {} | {} | {} | {} |\n",
                    d.title(),
                    cell(client.label()),
                    s.wall,
                    delivered / MIB as f64 / s.wall,
                    d.blob_bytes as f64 / MIB as f64 / s.wall,
                    s.cpu.map_or("–".to_owned(), |c| format!("{c:.2}")),
                    s.cpu.map_or("–".to_owned(), |c| format!(
                        "{:.2}",
                        c / (delivered / GIB as f64)
                    )),
                    s.max_rss_kib
                        .map_or("–".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
                    ratio,
                ));
            }
        }
        out
    }

    /// One line per goal missed: what stands in the way, from this run's figures.
    fn missed(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(d) = self.largest(true)
            && d.speed_ratio(Client::CurlO).is_some_and(|r| r < GOAL_SPEED)
            && let (Some(m), Some(c)) = (d.median(Client::Mdlr), d.median(Client::CurlO))
        {
            let file_gib = d.file_bytes as f64 / GIB as f64;
            let cpu = m.cpu.unwrap_or(f64::NAN);
            out.push(format!(
                "**{} against `curl -o`: missed**, {}. `curl -o` writes the {} `.gz` and \
                 stops ({:.2} s); `mdlr result` also un-gzips it into the {} file ({:.1}× the \
                 bytes), checks its CRC and length and writes both files, which takes {:.2} s \
                 of CPU per GiB of output ({:.0} MiB/s on one core; the profile is \
                 `miniz_oxide`'s inflate and the copy out of its window). No client that \
                 un-gzips this text finishes at `curl -o`'s speed: against `curl | gzip -dc`, \
                 which does the same work in two processes, mdlr is {} as fast, and \
                 `mdlr result --raw` (keep the `.gz`) is the like-for-like download.",
                d.title(),
                d.ratio_with_spread(Client::CurlO),
                human_exact(d.blob_bytes),
                c.wall,
                human(d.size),
                d.file_bytes as f64 / d.blob_bytes as f64,
                cpu / file_gib,
                file_gib * 1024.0 / cpu,
                d.ratio_with_spread(Client::CurlGunzip),
            ));
        }
        if let Some(d) = self.largest(false)
            && d.speed_ratio(Client::CurlO).is_some_and(|r| r < GOAL_SPEED)
            && let (Some(m), Some(c)) = (d.median(Client::MdlrRaw), d.median(Client::CurlO))
        {
            out.push(format!(
                "**{} against `curl -o`: missed**, {}: mdlr used {:.2} s of CPU and \
                 `curl -o` {:.2} s, with {:.3} s and {:.3} s of wall time; where the rounds \
                 spread across 1.0 the machine's load, not the client, decided.",
                d.title(),
                d.ratio_with_spread(Client::CurlO),
                m.cpu.unwrap_or(f64::NAN),
                c.cpu.unwrap_or(f64::NAN),
                m.wall,
                c.wall,
            ));
        }
        for d in &self.downloads {
            let client = if d.gzip {
                Client::Mdlr
            } else {
                Client::MdlrRaw
            };
            if let Some(kib) = d.median(client).and_then(|s| s.max_rss_kib)
                && kib as f64 / 1024.0 > GOAL_RSS_MIB
            {
                out.push(format!(
                    "**Peak RSS of {}: missed**: {:.1} MiB.",
                    d.title(),
                    kib as f64 / 1024.0
                ));
            }
        }
        if let Some(s) = &self.small
            && s.mdlr / s.reference > GOAL_SMALL
        {
            out.push(format!(
                "**Small RunScript result: missed**: {:.1} ms against {:.1} ms.",
                s.mdlr * 1e3,
                s.reference * 1e3
            ));
        }
        if self.size > crate::dist::SIZE_LIMIT {
            out.push(format!("**Binary size: missed**: {} bytes.", self.size));
        }
        out
    }

    fn largest(&self, gzip: bool) -> Option<&Download> {
        self.downloads.iter().find(|d| d.largest && d.gzip == gzip)
    }

    fn goals(&self) -> String {
        let mut out = String::from("| figure | goal | measured | met |\n|---|---|---|---|\n");
        let mut row = |figure: String, goal: &str, measured: String, met: Option<bool>| {
            out.push_str(&format!(
                "| {} | {goal} | {} | {} |\n",
                cell(&figure),
                cell(&measured),
                match met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "–",
                }
            ));
        };
        if let Some(d) = self.largest(true) {
            let vs_curl = d.speed_ratio(Client::CurlO);
            row(
                format!(
                    "{}: `mdlr result` (un-gzips) speed ÷ `curl -o` (writes the .gz)",
                    d.title()
                ),
                "≥ 1.0×",
                d.ratio_with_spread(Client::CurlO),
                vs_curl.map(|r| r >= GOAL_SPEED),
            );
            row(
                format!(
                    "{}: `mdlr result` speed ÷ `curl | gzip -dc` (the same work)",
                    d.title()
                ),
                "–",
                d.ratio_with_spread(Client::CurlGunzip),
                None,
            );
        }
        if let Some(d) = self.largest(false) {
            let vs_curl = d.speed_ratio(Client::CurlO);
            row(
                format!("{}: `mdlr result --raw` speed ÷ `curl -o`", d.title()),
                "≥ 1.0×",
                d.ratio_with_spread(Client::CurlO),
                vs_curl.map(|r| r >= GOAL_SPEED),
            );
            if let (Some(md5), Some(curl)) = (d.median(Client::MdlrRawMd5), d.median(Client::CurlO))
            {
                row(
                    format!(
                        "{}, the host sending `Content-MD5` (mdlr verifies it, curl does not): \
                         speed ÷ `curl -o`",
                        d.title()
                    ),
                    "–",
                    format!("{:.2}×", curl.wall / md5.wall),
                    None,
                );
            }
        }
        for gzip in [true, false] {
            let client = if gzip { Client::Mdlr } else { Client::MdlrRaw };
            let peaks: Vec<(u64, f64)> = self
                .downloads
                .iter()
                .filter(|d| d.gzip == gzip)
                .filter_map(|d| {
                    d.median(client)
                        .and_then(|s| s.max_rss_kib)
                        .map(|k| (d.size, k as f64 / 1024.0))
                })
                .collect();
            if peaks.is_empty() {
                continue;
            }
            let worst = peaks.iter().map(|(_, m)| *m).fold(0.0, f64::max);
            let least = peaks.iter().map(|(_, m)| *m).fold(f64::INFINITY, f64::min);
            let flat = worst - least <= 1.0;
            row(
                format!(
                    "peak RSS of `mdlr result{}`, by size",
                    if gzip { "" } else { " --raw" }
                ),
                "≤ 8 MiB, flat",
                peaks
                    .iter()
                    .map(|(s, m)| format!("{}: {m:.1} MiB", human(*s)))
                    .collect::<Vec<_>>()
                    .join(", "),
                Some(worst <= GOAL_RSS_MIB && flat),
            );
        }
        if let Some(s) = &self.small {
            let ratio = s.mdlr / s.reference;
            row(
                format!(
                    "small RunScript result ({} bytes) end to end: `mdlr result` ÷ two `curl` + `jq`, wall time",
                    s.bytes
                ),
                "≤ 1.1×",
                format!(
                    "{ratio:.2}× ({:.1} ms ÷ {:.1} ms, medians of {})",
                    s.mdlr * 1e3,
                    s.reference * 1e3,
                    s.reps
                ),
                Some(ratio <= GOAL_SMALL),
            );
        }
        if let Some(s) = &self.startup {
            row(
                "start-up: `mdlr --version`".to_owned(),
                "–",
                format!(
                    "{:.2} ms (`curl --version`: {:.2} ms; medians of {}), peak RSS {:.1} MiB",
                    s.mdlr * 1e3,
                    s.curl * 1e3,
                    s.reps,
                    s.rss_kib as f64 / 1024.0
                ),
                None,
            );
        }
        row(
            "static binary size".to_owned(),
            "≤ 3.5 MiB",
            format!("{} bytes ({})", self.size, crate::dist::mib(self.size)),
            Some(self.size <= crate::dist::SIZE_LIMIT),
        );
        if let Some(d) = self.largest(true) {
            let per = |c: Client| {
                d.median(c)
                    .and_then(|s| s.cpu)
                    .map(|cpu| cpu / (d.file_bytes as f64 / GIB as f64))
            };
            row(
                format!("CPU per GiB downloaded and un-gzipped ({})", d.title()),
                "–",
                format!(
                    "mdlr {} s (`curl | gzip -dc`: {} s)",
                    per(Client::Mdlr).map_or("?".to_owned(), |c| format!("{c:.2}")),
                    per(Client::CurlGunzip).map_or("?".to_owned(), |c| format!("{c:.2}")),
                ),
                None,
            );
        }
        if let Some(d) = self.largest(false) {
            let per = |c: Client| {
                d.median(c)
                    .and_then(|s| s.cpu)
                    .map(|cpu| cpu / (d.blob_bytes as f64 / GIB as f64))
            };
            row(
                format!("CPU per GiB downloaded ({})", d.title()),
                "–",
                format!(
                    "mdlr --raw {} s (`curl -o`: {} s)",
                    per(Client::MdlrRaw).map_or("?".to_owned(), |c| format!("{c:.2}")),
                    per(Client::CurlO).map_or("?".to_owned(), |c| format!("{c:.2}")),
                ),
                None,
            );
        }
        out
    }
}

/// `text` for a Markdown table cell: a `|`, even in a code span, would end the cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// `64 MiB`, `1 GiB`.
fn human(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

/// `137.2 MiB`.
fn human_exact(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

// ---------------------------------------------------------------------------------------
// The machine and the section

struct Machine {
    cores: String,
    cpu: String,
    rustc: String,
    curl: String,
    date: String,
    commit: String,
    /// Where the downloads went.
    scratch: String,
}

impl Machine {
    fn detect(root: &Path, scratch: &Path) -> Machine {
        let cores = std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".to_owned());
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let rustc =
            crate::first_line(Command::new(rustc).arg("-V")).unwrap_or_else(|| "rustc ?".into());
        let curl = crate::first_line(Command::new(CURL).arg("--version"))
            .and_then(|l| l.split_whitespace().nth(1).map(|v| format!("curl {v}")))
            .unwrap_or_else(|| "curl ?".into());
        let commit = crate::commit_description(root);
        Machine {
            cores,
            cpu: crate::cpu_model(),
            rustc,
            curl,
            date: crate::utc_date(SystemTime::now()),
            commit,
            scratch: match scratch.starts_with("/dev/shm") {
                true => "tmpfs (/dev/shm)".to_owned(),
                false => scratch.display().to_string(),
            },
        }
    }

    fn line(&self) -> String {
        format!(
            "Measured {} at {} on {} core(s) (nproc), {}, {}, {}, downloads written to {}.",
            self.date, self.commit, self.cores, self.cpu, self.rustc, self.curl, self.scratch
        )
    }
}

fn section(
    command: &str,
    tables: &str,
    goals: &str,
    machine: &Machine,
    figures: &Figures,
) -> String {
    let reps = figures
        .downloads
        .first()
        .and_then(|d| d.runs.first())
        .map_or(0, |(_, s)| s.len());
    let missed = figures.missed();
    let missed = match missed.is_empty() {
        true => "Every goal is met in this run.\n".to_owned(),
        false => format!(
            "Where a goal is missed, what stands in the way:\n\n{}",
            missed
                .iter()
                .map(|m| format!("- {m}\n"))
                .collect::<String>()
        ),
    };
    format!(
        "{START_MARK}\n{SECTION_TITLE}\n\n\
         ```console\n$ {command}\n```\n\n\
         {goals}\n\
         {missed}\n\
         {tables}\n\
         {}\n\n\
         - **What runs.** The dist binary (`cargo xtask dist`: static, release profile) \
         against a std-only stand-in for the API and the result host on 127.0.0.1 in the \
         xtask process, which holds the blob being measured in memory and sends it with \
         one `write` (`curl -o /dev/null` shows it carries more than either client takes). \
         `mdlr result` \
         makes the real three requests (the action, the result link, the blob) with \
         `MDLR_TOKEN` and `MDLR_API_URL` in an otherwise empty environment; `curl` (and \
         `gzip`, `jq`) fetch the same link from the same server and get the same bytes and \
         headers. Every figure is the median of {reps} runs per client for the downloads, \
         interleaved in rotating order; ratios are medians of the per-round ratios.\n\
         - **GetFile (gzip)**: a log-like text file of the given size (timestamps, hosts, a \
         message from a set, a random id per line), `gzip -6`; `mdlr result` un-gzips to \
         disk while streaming and also keeps the received `.gz` beside it until the end (it \
         is what a rerun resumes from), checks the gzip CRC and length, and `fsync`s both. \
         `curl -o` only writes the `.gz`: the `curl | gzip -dc` row is the comparison that \
         does the same work. **Raw**: incompressible bytes, `mdlr result --raw` against \
         `curl -o`; `curl -o /dev/null` shows what the server and loopback carry.\n\
         - **Delivered** is the file written: un-gzipped bytes for `mdlr result` and `curl | \
         gzip -dc`, the blob for the others. **CPU** is user + system time and **peak RSS** \
         the largest resident set, both from `wait4` (GNU `time -f '%U %S %M'`; for a pipe, \
         the CPU of every process and the RSS of the largest). **Speed vs mdlr** is the \
         client's speed relative to mdlr's (below 1: slower than mdlr).\n\
         - **Small RunScript result**: a {}-byte transcript; `mdlr result ID` (action, link, \
         blob; prints `script_output`) against `sh -c 'link=$(curl -H \"Authorization: \
         Bearer $T\" .../GetLiveResponseResultDownloadLink(index=0) | jq -r .value) && curl \
         \"$link\" | jq -j .script_output'`, medians of {} runs each, interleaved.\n\
         - **Start-up**: `mdlr --version` against `curl --version`, medians of {} runs each.\n\n\
         {FIXES}\
         {END_MARK}\n",
        machine.line(),
        figures.small.as_ref().map_or(0, |s| s.bytes),
        figures.small.as_ref().map_or(0, |s| s.reps),
        figures.startup.as_ref().map_or(0, |s| s.reps),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse(&[]);
        assert!(o.as_ref().is_ok_and(|o| !o.quick && o.reps == 7 && o.write));
        let o = parse(&["--quick", "--no-write", "--reps=2"]);
        assert!(o.as_ref().is_ok_and(|o| o.quick && o.reps == 2 && !o.write));
        assert!(parse(&["--quick"]).is_ok_and(|o| o.reps == 3));
        assert!(parse(&["--reps", "0"]).is_err());
        assert!(parse(&["--reps"]).is_err());
        assert!(parse(&["--fast"]).is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(human(64 * MIB), "64 MiB");
        assert_eq!(human(GIB), "1 GiB");
        assert_eq!(cell("`curl | gzip -dc`"), "`curl \\| gzip -dc`");
    }

    #[test]
    fn log_lines_look_like_logs() {
        let mut out = Vec::new();
        assert!(write_log(&mut out, 10_000).is_ok());
        assert_eq!(out.len(), 10_000);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("2026-11-27T00:00:00."));
        assert!(text.lines().count() > 50);
        let mut noise = Vec::new();
        assert!(write_noise(&mut noise, 3 * 1024 * 1024 + 5).is_ok());
        assert_eq!(noise.len(), 3 * 1024 * 1024 + 5);
    }
}
