//! `cargo xtask bench`: the dist binary (`cargo xtask dist`) against `curl`, `gzip` and
//! `aria2c` on loopback (issue 11), with figures that cannot flatter it:
//!
//! - Every comparison runs its clients in interleaved rounds (mdlr, curl, [aria2c],
//!   then the next round starting one further on), after a warm-up round that is not
//!   counted. Each client's walls are summarised by median, upper quartile and range.
//! - A goal is judged on mdlr's upper quartile against the other client's median (see
//!   `stats`): it is not won by mdlr's best round. Verdicts are kept in
//!   `target/bench-verdicts.txt`, and a rerun of the same binary says whether every
//!   verdict came out the same.
//! - Downloads are written to the disk `-o` would write to (a directory under
//!   `target/`, on the working tree's filesystem), and again to tmpfs as a second row.
//!   Each round's file is fresh: the output directory is emptied and `sync` run before
//!   the clock starts, so what one client left dirty is not written back in another's
//!   time. mdlr's `fsync` is inside its time; curl and aria2c never sync.
//! - The result host is the std-only stand-in of `bench::host`, in this process, with
//!   the blobs in memory; the capped link is the same host pausing on every connection.

mod host;
mod measure;
pub(crate) mod stats;

use crate::flags::{Flags, command_line};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use host::{Blob, Host, Shape};
use mdlr_tests::util::mix;
use measure::Mount;
use stats::{Goal, Sample, Spread, Summary};

/// Figures of earlier runs, dated, kept in the section below this run's.
const HISTORY: &str = include_str!("bench/history.md");

const START_MARK: &str = "<!-- bench:start -->";
const END_MARK: &str = "<!-- bench:end -->";
const SECTION_TITLE: &str = "## Downloads and start-up: mdlr against curl and aria2c";

const USAGE: &str = "usage: cargo xtask bench [--quick] [--rounds N] [--no-write] [--mdlr PATH] \
                     [--baseline PATH] [--connections N] \
                     [--only md5,getfile,capped,sizes,small,startup]";
/// The parts `--only` can pick.
const PARTS: [&str; 6] = ["md5", "getfile", "capped", "sizes", "small", "startup"];

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// Bumped when the generated data changes, so that stale caches are not used.
const DATA_VERSION: u32 = 1;

/// Goals of issue 11.
const GOAL_MD5: Goal = Goal::AtMost(1.0);
const GOAL_GETFILE: Goal = Goal::AtMost(0.6);
const GOAL_CAPPED_CURL: Goal = Goal::FasterBy(3.0);
const GOAL_CAPPED_ARIA2: Goal = Goal::AtMost(1.1);
const GOAL_RSS_MIB: f64 = 8.0;
/// "Flat": the peaks over sizes differ by at most this much.
const FLAT_MIB: f64 = 1.0;
/// Connections `mdlr fetch --connections` and `aria2c -x -s` use on the capped link.
const CONNECTIONS: u32 = 4;

/// The capped link: ~8 MiB/s on each connection, 20 ms before each reply's head.
const CAPPED: Shape = Shape {
    chunk: 64 * 1024,
    pause: Duration::from_millis(8),
    latency: Duration::from_millis(20),
};

/// Sizes and round counts of a run.
struct Plan {
    /// Raw with `Content-MD5` (a) and un-gzipped GetFile (b).
    big: u64,
    big_rounds: usize,
    capped: u64,
    capped_rounds: usize,
    sizes: Vec<u64>,
    sizes_rounds: usize,
    small_rounds: usize,
    startup_rounds: usize,
    /// Rounds run first and not counted: caches, the host's first connections.
    warmup: usize,
}

impl Plan {
    fn new(quick: bool, rounds: Option<usize>) -> Plan {
        let mut plan = match quick {
            false => Plan {
                big: 512 * MIB,
                // 9 rounds: the median is the 5th round and the upper quartile the 7th,
                // exactly; two runs agreed on every verdict with it (BENCHMARKS.md).
                big_rounds: 9,
                capped: 64 * MIB,
                // The capped link is paced by the host's sleeps: its rounds vary little.
                capped_rounds: 5,
                sizes: vec![64 * MIB, 256 * MIB, GIB],
                sizes_rounds: 5,
                small_rounds: 61,
                startup_rounds: 101,
                warmup: 1,
            },
            true => Plan {
                big: 128 * MIB,
                big_rounds: 3,
                capped: 16 * MIB,
                capped_rounds: 3,
                sizes: vec![64 * MIB, 256 * MIB],
                sizes_rounds: 3,
                small_rounds: 21,
                startup_rounds: 41,
                warmup: 1,
            },
        };
        if let Some(n) = rounds {
            plan.big_rounds = n;
            plan.capped_rounds = n;
            plan.sizes_rounds = n;
        }
        plan
    }

    /// Every size of noise (raw) and of log text (GetFile) the run needs.
    fn data_sizes(&self, options: &Options) -> (Vec<u64>, Vec<u64>) {
        let mut noise = Vec::new();
        let mut text = Vec::new();
        if options.runs("md5") {
            noise.push(self.big);
        }
        if options.runs("capped") {
            noise.push(self.capped);
        }
        if options.runs("getfile") {
            text.push(self.big);
        }
        if options.runs("sizes") {
            noise.extend(&self.sizes);
            text.extend(&self.sizes);
        }
        for v in [&mut noise, &mut text] {
            v.sort_unstable();
            v.dedup();
        }
        (noise, text)
    }
}

struct Options {
    quick: bool,
    rounds: Option<usize>,
    write: bool,
    /// Benchmark this binary instead of the dist one (never written to BENCHMARKS.md).
    mdlr: Option<PathBuf>,
    /// `--only`: the parts to run (never written to BENCHMARKS.md unless all of them).
    only: Vec<String>,
    /// `--baseline PATH`: another mdlr binary, run interleaved with the first wherever
    /// mdlr downloads, for before/after figures of a change (never written).
    baseline: Option<PathBuf>,
    /// `--connections N`: mdlr (and the baseline) fetch over N connections in every
    /// download row, for figures by connection count (never written).
    connections: Option<u32>,
}

impl Options {
    fn runs(&self, part: &str) -> bool {
        self.only.iter().any(|p| p == part)
    }
}

fn parse(args: &[&str]) -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        rounds: None,
        write: true,
        mdlr: None,
        only: PARTS.iter().map(|p| (*p).to_owned()).collect(),
        baseline: None,
        connections: None,
    };
    let mut flags = Flags::new(args, USAGE);
    while let Some((key, switch)) = flags.next() {
        match key {
            "--quick" if switch => options.quick = true,
            "--no-write" if switch => options.write = false,
            "--write" if switch => options.write = true,
            "--rounds" => {
                let v = flags.value()?;
                options.rounds = Some(
                    v.parse()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| {
                            format!("--rounds: {v:?} is not a number in 1..=100\n{USAGE}")
                        })?,
                );
            }
            "--mdlr" => options.mdlr = Some(PathBuf::from(flags.value()?)),
            "--baseline" => options.baseline = Some(PathBuf::from(flags.value()?)),
            "--connections" => {
                let v = flags.value()?;
                options.connections = Some(
                    v.parse()
                        .ok()
                        .filter(|n| (1..=16).contains(n))
                        .ok_or_else(|| {
                            format!("--connections: {v:?} is not a number in 1..=16\n{USAGE}")
                        })?,
                );
            }
            "--only" => {
                let v = flags.value()?;
                options.only = v.split(',').map(|p| p.trim().to_owned()).collect();
                if let Some(bad) = options.only.iter().find(|p| !PARTS.contains(&p.as_str())) {
                    return Err(format!(
                        "--only: {bad:?} is not one of {}\n{USAGE}",
                        PARTS.join(", ")
                    ));
                }
            }
            _ => return Err(flags.unknown()),
        }
    }
    Ok(options)
}

/// Runs the benchmark; `args` are what follows `bench` on the command line.
pub fn run(root: &Path, args: &[&str]) -> Result<(), String> {
    let mut options = parse(args)?;
    // The clients run in their output directories: a relative path would not be found.
    for path in [&mut options.mdlr, &mut options.baseline]
        .into_iter()
        .flatten()
    {
        *path = path
            .canonicalize()
            .map_err(|e| format!("cannot find {}: {e}", path.display()))?;
    }
    let plan = Plan::new(options.quick, options.rounds);
    let command = command_line("cargo xtask bench", args);
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
    let bin_sha = measure::sha256_file(&bin)?;
    let connections = has_connections(&bin)?;
    if options.connections.is_some() && !connections {
        return Err("--connections: the binary has no --connections".to_owned());
    }
    let baseline_connections = match &options.baseline {
        Some(b) => has_connections(b)?,
        None => false,
    };
    let tools = Tools::find(options.runs("capped"))?;
    let places = Places::new(root)?;
    println!("bench: downloads go to {}", places.describe());
    let dropped = measure::can_drop_caches();
    let load_before = load_average();

    let (noise, text) = plan.data_sizes(&options);
    let data = Data::prepare(&root.join("target").join("bench-data"), &noise, &text)?;
    let small = SmallResult::new();
    let host = Host::start(small.transcript.clone())?;
    let env = Env {
        mdlr: bin.clone(),
        baseline: options.baseline.clone(),
        baseline_connections,
        api: host.url(),
        tools,
        report: places.disk.join(".time"),
        scratch: places.disk.join("scratch"),
    };
    std::fs::create_dir_all(&env.scratch)
        .map_err(|e| format!("cannot create {}: {e}", env.scratch.display()))?;

    let mut run = Run {
        size,
        connections,
        ..Run::default()
    };
    let both = [Where::Disk, Where::Tmpfs];
    if options.runs("md5") {
        let source = data.noise(plan.big)?;
        for place in both.iter().filter(|p| places.has(**p)) {
            let case = CaseSpec {
                id: "md5",
                title: format!("raw {}, the host sends `Content-MD5`", human(plan.big)),
                place: *place,
                tools: env.with_baseline(vec![Tool::mdlr_raw(options.connections), Tool::CurlO]),
                rounds: plan.big_rounds,
                warmup: plan.warmup,
                hash_every_round: false,
            };
            let blob = source.blob(true, None)?;
            run.cases
                .push(env.run_case(&host, &places, &case, blob, &source)?);
        }
    }
    if options.runs("getfile") {
        let source = data.text(plan.big)?;
        for place in both.iter().filter(|p| places.has(**p)) {
            let case = CaseSpec {
                id: "getfile",
                title: format!(
                    "GetFile {} (gzip blob {}), un-gzipped",
                    human(plan.big),
                    human_exact(source.blob_len)
                ),
                place: *place,
                tools: env.with_baseline(vec![
                    Tool::mdlr_gunzip(options.connections),
                    Tool::CurlGunzip,
                ]),
                rounds: plan.big_rounds,
                warmup: plan.warmup,
                hash_every_round: false,
            };
            let blob = source.blob(false, None)?;
            run.cases
                .push(env.run_case(&host, &places, &case, blob, &source)?);
        }
    }
    if options.runs("capped") {
        let source = data.noise(plan.capped)?;
        let mut tools = match connections {
            true => vec![Tool::mdlr_raw(Some(
                options.connections.unwrap_or(CONNECTIONS),
            ))],
            false => vec![Tool::mdlr_raw(None)],
        };
        tools.push(Tool::CurlO);
        match &env.tools.aria2c {
            Ok(_) => tools.push(Tool::Aria2c),
            Err(why) => println!("bench: no aria2c row: {why}"),
        }
        let case = CaseSpec {
            id: "capped",
            title: format!(
                "raw {} over a capped link ({:.1} MiB/s a connection, {} ms before each reply)",
                human(plan.capped),
                CAPPED.mib_per_s(),
                CAPPED.latency.as_millis()
            ),
            place: Where::Disk,
            tools: env.with_baseline(tools),
            rounds: plan.capped_rounds,
            warmup: plan.warmup,
            hash_every_round: true,
        };
        let blob = source.blob(true, Some(CAPPED))?;
        run.cases
            .push(env.run_case(&host, &places, &case, blob, &source)?);
    }
    if options.runs("sizes") {
        // The same connections at every size, so that "flat" compares sizes only: by
        // default mdlr uses 4 from a 64 MiB blob on and 1 below (the 64 and 256 MiB
        // GetFile blobs are 10 and 41 MiB, the 1 GiB one 162 MiB), and each connection
        // holds buffers of its own. Four: the most mdlr uses unless told.
        let fixed = connections.then_some(options.connections.unwrap_or(CONNECTIONS));
        for &s in &plan.sizes {
            for gzip in [false, true] {
                let (source, tools, title) = match gzip {
                    false => (
                        data.noise(s)?,
                        vec![Tool::mdlr_raw(fixed), Tool::CurlO],
                        format!("raw {}", human(s)),
                    ),
                    true => {
                        let source = data.text(s)?;
                        let title = format!(
                            "GetFile {} (gzip blob {}), un-gzipped",
                            human(s),
                            human_exact(source.blob_len)
                        );
                        let tools = vec![Tool::mdlr_gunzip(fixed), Tool::CurlGunzip];
                        (source, tools, title)
                    }
                };
                let case = CaseSpec {
                    id: if gzip { "sizes-getfile" } else { "sizes-raw" },
                    title,
                    place: Where::Disk,
                    tools: env.with_baseline(tools),
                    rounds: plan.sizes_rounds,
                    warmup: plan.warmup,
                    hash_every_round: false,
                };
                let blob = source.blob(false, None)?;
                let mut done = env.run_case(&host, &places, &case, blob, &source)?;
                done.size = s;
                run.cases.push(done);
            }
        }
    }
    if options.runs("small") {
        println!("small RunScript result: {} rounds ...", plan.small_rounds);
        run.small = Some(env.bench_small(&small, plan.small_rounds)?);
    }
    if options.runs("startup") {
        println!("start-up: {} rounds ...", plan.startup_rounds);
        run.startup = Some(env.bench_startup(plan.startup_rounds)?);
    }
    drop(host);

    let mut machine = Machine::detect(root, &places, &env.tools, dropped, &bin_sha);
    machine.load = format!("{} before, {} after", load_before, load_average());
    let verdicts = run.verdicts();
    // Verdicts compare only between runs of the same binary with the same sizes and
    // round counts.
    let method = format!(
        "{}-{}-{}-{}",
        if options.quick { "quick" } else { "full" },
        plan.big_rounds,
        plan.capped_rounds,
        plan.sizes_rounds
    );
    let repeat = Repeat::check(root, &format!("{bin_sha} {method}"), &verdicts);
    let goals = goals_table(&verdicts);
    let tables = run.tables(&places);
    println!();
    print!("{goals}");
    println!();
    println!("{}", repeat.line());
    println!();
    print!("{}", repeat.table());
    println!();
    print!("{tables}");
    println!();
    println!("{}", machine.line());
    let not_written = if options.mdlr.is_some() {
        Some("--mdlr names a binary not built from this tree")
    } else if options.baseline.is_some() {
        Some("--baseline adds rows of another binary")
    } else if options.connections.is_some() {
        Some("--connections changes mdlr's rows")
    } else if options.only.len() < PARTS.len() {
        Some("--only leaves figures out")
    } else if options.quick {
        Some("--quick measures other sizes than the goals name")
    } else if !options.write {
        Some("--no-write")
    } else {
        None
    };
    match not_written {
        Some(why) => println!("BENCHMARKS.md not written: {why}"),
        None => {
            let section = section(&command, &goals, &repeat, &tables, &machine, &run, &plan);
            crate::write_section(&root.join("BENCHMARKS.md"), START_MARK, END_MARK, &section)?;
            println!(
                "wrote   BENCHMARKS.md (section \"{}\")",
                &SECTION_TITLE[3..]
            );
        }
    }
    Ok(())
}

/// The 1-minute load average (`/proc/loadavg`), as text.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// Whether `mdlr help fetch` offers `--connections` (the parallel engine of issue 11).
fn has_connections(bin: &Path) -> Result<bool, String> {
    let output = Command::new(bin)
        .args(["help", "fetch"])
        .env_clear()
        .output()
        .map_err(|e| format!("cannot run {} help fetch: {e}", bin.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`{} help fetch` failed ({}): this bench needs `mdlr fetch`",
            bin.display(),
            output.status
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).contains("--connections"))
}

// ---------------------------------------------------------------------------------------
// Tools and places

struct Tools {
    curl: PathBuf,
    jq: PathBuf,
    time: PathBuf,
    sh: PathBuf,
    gzip: PathBuf,
    /// `Err`: why there is no aria2c row.
    aria2c: Result<PathBuf, String>,
}

impl Tools {
    fn find(capped: bool) -> Result<Tools, String> {
        let need = |fixed: &str, name: &str, package: &str, why: &str| {
            measure::find_tool(name, &[fixed]).ok_or_else(|| {
                format!("{name} is missing: {why}; install it (Debian: apt-get install {package})")
            })
        };
        Ok(Tools {
            curl: need(
                "/usr/bin/curl",
                "curl",
                "curl",
                "it is the reference the downloads are measured against",
            )?,
            jq: need(
                "/usr/bin/jq",
                "jq",
                "jq",
                "the small RunScript reference extracts with it",
            )?,
            time: need(
                "/usr/bin/time",
                "time",
                "time",
                "GNU time reports the CPU time and peak memory of each run",
            )?,
            sh: need("/bin/sh", "sh", "dash", "the pipelines run under it")?,
            gzip: need(
                "/usr/bin/gzip",
                "gzip",
                "gzip",
                "it makes the GetFile results and un-gzips for a reference",
            )?,
            aria2c: match capped {
                true => measure::aria2c(),
                false => Err("the capped link is not measured (--only)".to_owned()),
            },
        })
    }
}

/// Where a case's files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    /// A directory under `target/`: the filesystem `-o` writes to from the working tree.
    Disk,
    /// `/dev/shm`: memory, where an `fsync` costs nothing.
    Tmpfs,
}

impl Where {
    fn label(self) -> &'static str {
        match self {
            Where::Disk => "disk",
            Where::Tmpfs => "tmpfs",
        }
    }
}

struct Places {
    /// `target/bench-out/`, emptied now and removed at the end.
    disk: PathBuf,
    disk_mount: Option<Mount>,
    /// `/dev/shm/mdlr-bench-PID/` when `/dev/shm` is a tmpfs.
    tmpfs: Option<crate::TempDir>,
    tmpfs_mount: Option<Mount>,
    /// The working tree's path, to say the disk directory is on its filesystem.
    root: PathBuf,
}

impl Places {
    fn new(root: &Path) -> Result<Places, String> {
        let disk = root.join("target").join("bench-out");
        let _ = std::fs::remove_dir_all(&disk);
        std::fs::create_dir_all(&disk)
            .map_err(|e| format!("cannot create {}: {e}", disk.display()))?;
        if measure::device(&disk) != measure::device(root) {
            return Err(format!(
                "{} is not on the working tree's filesystem (target/ is a mount of its \
                 own?): the disk row would not measure the disk `-o` writes to",
                disk.display()
            ));
        }
        let disk_mount = Mount::of(&disk);
        let shm = Mount::of(Path::new("/dev/shm")).filter(|m| m.fstype == "tmpfs");
        let tmpfs = match shm {
            Some(_) => {
                let path = PathBuf::from(format!("/dev/shm/mdlr-bench-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&path);
                std::fs::create_dir_all(&path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                Some(crate::TempDir(path))
            }
            None => {
                println!("bench: /dev/shm is not a tmpfs here: no tmpfs rows");
                None
            }
        };
        Ok(Places {
            disk,
            disk_mount,
            tmpfs,
            tmpfs_mount: shm,
            root: root.to_path_buf(),
        })
    }

    fn has(&self, place: Where) -> bool {
        place == Where::Disk || self.tmpfs.is_some()
    }

    /// The directory a case at `place` writes to.
    fn dir(&self, place: Where) -> PathBuf {
        match (place, &self.tmpfs) {
            (Where::Tmpfs, Some(t)) => t.path().join("out"),
            _ => self.disk.join("out"),
        }
    }

    fn describe(&self) -> String {
        let disk = self
            .disk
            .strip_prefix(&self.root)
            .unwrap_or(&self.disk)
            .display()
            .to_string();
        let mut text = format!(
            "disk: `{disk}/` on {}",
            self.disk_mount
                .as_ref()
                .map_or("an unknown filesystem".to_owned(), Mount::describe)
        );
        if let (Some(_), Some(m)) = (&self.tmpfs, &self.tmpfs_mount) {
            text.push_str(&format!(
                "; tmpfs: `/dev/shm/mdlr-bench-PID/` on {}",
                m.describe()
            ));
        }
        text
    }
}

impl Drop for Places {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.disk);
    }
}

// ---------------------------------------------------------------------------------------
// Data

/// The result files, generated once under `target/bench-data/`.
struct Data {
    noise: Vec<Source>,
    text: Vec<Source>,
}

/// One result as the host stores it and as a client must deliver it.
#[derive(Clone)]
struct Source {
    size: u64,
    /// The blob's file (noise, or the gzip of the text).
    blob: PathBuf,
    blob_len: u64,
    /// `Content-Disposition` file name.
    name: String,
    /// The length of the file a client must write: the blob's, or for a GetFile
    /// un-gzipped the text's.
    delivered_len: u64,
    /// SHA-256 of `blob` and of `delivered`.
    blob_sha: String,
    delivered_sha: String,
}

impl Source {
    /// The blob for the host, with its MD5 when `md5`.
    fn blob(&self, md5: bool, shape: Option<Shape>) -> Result<Blob, String> {
        let bytes = std::fs::read(&self.blob)
            .map_err(|e| format!("cannot read {}: {e}", self.blob.display()))?;
        Ok(Blob {
            bytes: Arc::new(bytes),
            disposition: Some(format!("attachment; filename=\"{}\"", self.name)),
            content_md5: match md5 {
                true => Some(md5_of(&self.blob)?),
                false => None,
            },
            shape,
        })
    }
}

impl Data {
    fn prepare(dir: &Path, noise: &[u64], text: &[u64]) -> Result<Data, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut data = Data {
            noise: Vec::new(),
            text: Vec::new(),
        };
        for &size in noise {
            let path = dir.join(format!("noise-v{DATA_VERSION}-{}M.bin", size / MIB));
            if !path.is_file() {
                println!(
                    "bench: generating {} ({}, once) ...",
                    path.display(),
                    human(size)
                );
                generate(&path, size, write_noise)?;
            }
            let sha = sha256_cached(&path)?;
            data.noise.push(Source {
                size,
                blob: path,
                blob_len: size,
                name: format!("evidence-{}M.bin", size / MIB),
                delivered_len: size,
                blob_sha: sha.clone(),
                delivered_sha: sha,
            });
        }
        for &size in text {
            let path = dir.join(format!("log-v{DATA_VERSION}-{}M.txt", size / MIB));
            let gz = dir.join(format!("log-v{DATA_VERSION}-{}M.txt.gz", size / MIB));
            if !path.is_file() {
                println!(
                    "bench: generating {} ({}, once) ...",
                    path.display(),
                    human(size)
                );
                generate(&path, size, write_log)?;
            }
            if !gz.is_file() {
                println!("bench: gzip -6 {} (once) ...", path.display());
                gzip(&path, &gz)?;
            }
            let blob_len = std::fs::metadata(&gz)
                .map_err(|e| format!("cannot read {}: {e}", gz.display()))?
                .len();
            data.text.push(Source {
                size,
                blob_sha: sha256_cached(&gz)?,
                blob: gz,
                blob_len,
                name: format!("evidence-{}M.log.gz", size / MIB),
                delivered_sha: sha256_cached(&path)?,
                delivered_len: size,
            });
        }
        Ok(data)
    }

    fn noise(&self, size: u64) -> Result<Source, String> {
        self.noise
            .iter()
            .find(|s| s.size == size)
            .cloned()
            .ok_or_else(|| format!("no noise of {}", human(size)))
    }

    fn text(&self, size: u64) -> Result<Source, String> {
        self.text
            .iter()
            .find(|s| s.size == size)
            .cloned()
            .ok_or_else(|| format!("no log text of {}", human(size)))
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
/// random id — compressible like real logs (gzip -6 keeps about a sixth), not trivially.
pub(crate) fn write_log(out: &mut dyn Write, size: u64) -> std::io::Result<()> {
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
pub(crate) fn write_noise(out: &mut dyn Write, size: u64) -> std::io::Result<()> {
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

/// The lowercase hex SHA-256 of `path`, from `sha256sum` once, then from `PATH.sha256`.
fn sha256_cached(path: &Path) -> Result<String, String> {
    let cache = PathBuf::from(format!("{}.sha256", path.display()));
    if let Ok(hex) = std::fs::read_to_string(&cache)
        && hex.len() == 64
    {
        return Ok(hex);
    }
    println!("bench: sha256sum {} (once) ...", path.display());
    let hex = measure::sha256_file(path)?;
    std::fs::write(&cache, &hex).map_err(|e| format!("cannot write {}: {e}", cache.display()))?;
    Ok(hex)
}

/// The base64 MD5 of `path`, from `md5sum` once, then from `PATH.md5`: the host's
/// `Content-MD5` is computed once, not per request.
fn md5_of(path: &Path) -> Result<String, String> {
    let cache = PathBuf::from(format!("{}.md5", path.display()));
    let hex = match std::fs::read_to_string(&cache) {
        Ok(hex) => hex,
        Err(_) => {
            println!("bench: md5sum {} (once) ...", path.display());
            let output = Command::new("md5sum")
                .arg(path)
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
pub(crate) fn gzip(text: &Path, gz: &Path) -> Result<(), String> {
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

/// The small RunScript result: a transcript, and the `script_output` mdlr prints.
struct SmallResult {
    transcript: Vec<u8>,
    script_output: String,
}

impl SmallResult {
    fn new() -> SmallResult {
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
        SmallResult {
            transcript,
            script_output: output,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clients and cases

/// One client of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tool {
    /// `mdlr fetch URL [--raw] [--connections N] -o DIR/`; `baseline`: the `--baseline`
    /// binary.
    Mdlr {
        raw: bool,
        connections: Option<u32>,
        baseline: bool,
    },
    /// `curl -s -o FILE URL`.
    CurlO,
    /// `curl -s URL | gzip -dc > FILE`, the whole pipeline timed.
    CurlGunzip,
    /// `aria2c -q -x4 -s4 -k1M -d DIR -o FILE URL`.
    Aria2c,
}

impl Tool {
    fn mdlr_raw(connections: Option<u32>) -> Tool {
        Tool::Mdlr {
            raw: true,
            connections,
            baseline: false,
        }
    }

    fn mdlr_gunzip(connections: Option<u32>) -> Tool {
        Tool::Mdlr {
            raw: false,
            connections,
            baseline: false,
        }
    }

    fn is_mdlr(&self) -> bool {
        matches!(
            self,
            Tool::Mdlr {
                baseline: false,
                ..
            }
        )
    }

    fn label(&self) -> String {
        match self {
            Tool::Mdlr {
                raw,
                connections,
                baseline,
            } => format!(
                "{}`mdlr fetch URL{}{} -o DIR/`{}",
                if *baseline { "baseline: " } else { "" },
                if *raw { " --raw" } else { "" },
                connections.map_or(String::new(), |n| format!(" --connections {n}")),
                if *raw { "" } else { " (un-gzips)" },
            ),
            Tool::CurlO => "`curl -s -o FILE URL`".to_owned(),
            Tool::CurlGunzip => "`curl -s URL \\| gzip -dc > FILE`".to_owned(),
            Tool::Aria2c => format!("`aria2c -q -x{CONNECTIONS} -s{CONNECTIONS} -k1M`"),
        }
    }

    /// Whether it is mdlr, this tree's binary or the `--baseline` one.
    fn is_any_mdlr(&self) -> bool {
        matches!(self, Tool::Mdlr { .. })
    }

    /// Whether it writes the un-gzipped text rather than the blob.
    fn gunzips(&self) -> bool {
        matches!(self, Tool::Mdlr { raw: false, .. } | Tool::CurlGunzip)
    }
}

/// What to run.
struct CaseSpec {
    id: &'static str,
    title: String,
    place: Where,
    tools: Vec<Tool>,
    rounds: usize,
    warmup: usize,
    /// SHA-256 of every output of every round (else of the warm-up and the last round,
    /// and the length of every one).
    hash_every_round: bool,
}

/// What a case measured.
struct Case {
    id: &'static str,
    title: String,
    place: Where,
    /// The size of the result (for the sizes rows).
    size: u64,
    /// Bytes on the wire, and bytes of the file a client that un-gzips writes.
    blob_len: u64,
    delivered_len: u64,
    rounds: usize,
    warmup: usize,
    /// Each client's samples of the counted rounds, and the requests the host saw of it
    /// in its last round.
    tools: Vec<(Tool, Vec<Sample>, host::Counts)>,
    /// Outputs whose SHA-256 was compared with the source's, all equal (else `Err`).
    hashed: usize,
}

impl Case {
    fn summary(&self, tool: &Tool) -> Option<Summary> {
        self.tools
            .iter()
            .find(|(t, _, _)| t == tool)
            .and_then(|(_, s, _)| Summary::of(s))
    }

    fn mdlr(&self) -> Option<(&Tool, Summary)> {
        self.tools
            .iter()
            .find(|(t, _, _)| t.is_mdlr())
            .and_then(|(t, s, _)| Some((t, Summary::of(s)?)))
    }
}

struct Env {
    mdlr: PathBuf,
    baseline: Option<PathBuf>,
    /// Whether the baseline has `--connections`.
    baseline_connections: bool,
    api: String,
    tools: Tools,
    /// GNU time's report.
    report: PathBuf,
    /// Where the small result's stdout goes.
    scratch: PathBuf,
}

impl Env {
    /// `tools` with the `--baseline` binary beside every mdlr.
    fn with_baseline(&self, tools: Vec<Tool>) -> Vec<Tool> {
        let mut out = Vec::new();
        for t in tools {
            if self.baseline.is_some()
                && let Tool::Mdlr {
                    raw, connections, ..
                } = &t
            {
                out.push(Tool::Mdlr {
                    raw: *raw,
                    // The same connections, unless the baseline predates them.
                    connections: match self.baseline_connections {
                        true => *connections,
                        false => None,
                    },
                    baseline: true,
                });
            }
            out.push(t);
        }
        out
    }

    fn command(&self, tool: &Tool, link: &str, dir: &Path) -> Command {
        let file = dir.join("download");
        match tool {
            Tool::Mdlr {
                raw,
                connections,
                baseline,
            } => {
                let bin = match (baseline, &self.baseline) {
                    (true, Some(b)) => b,
                    _ => &self.mdlr,
                };
                let mut c = Command::new(bin);
                c.args(["fetch", link]);
                if *raw {
                    c.arg("--raw");
                }
                if let Some(n) = connections {
                    c.args(["--connections", &n.to_string()]);
                }
                c.arg("-o").arg(format!("{}/", dir.display()));
                c.env_clear().current_dir(dir);
                c
            }
            Tool::CurlO => {
                let mut c = Command::new(&self.tools.curl);
                // -q: no ~/.curlrc; an empty environment: no proxy.
                c.args(["-q", "-sS", "--fail", "-o"])
                    .arg(&file)
                    .arg(link)
                    .env_clear()
                    .current_dir(dir);
                c
            }
            Tool::CurlGunzip => {
                let script = "\"$1\" -q -sS --fail \"$2\" | \"$3\" -dc > \"$4\"";
                let mut c = Command::new(&self.tools.sh);
                c.args(["-c", script, "sh"])
                    .arg(&self.tools.curl)
                    .arg(link)
                    .arg(&self.tools.gzip)
                    .arg(&file)
                    .env_clear()
                    .env("PATH", "/usr/bin:/bin")
                    .current_dir(dir);
                c
            }
            Tool::Aria2c => {
                let aria2c = self
                    .tools
                    .aria2c
                    .as_ref()
                    .map_or(Path::new("aria2c"), |p| p);
                let mut c = Command::new(aria2c);
                let n = CONNECTIONS.to_string();
                // --no-conf: no ~/.aria2/aria2.conf; defaults otherwise (what a user runs).
                c.args(["--no-conf", "-q", "-x", &n, "-s", &n, "-k1M", "-d"])
                    .arg(dir)
                    .args([
                        "-o",
                        "download",
                        "--allow-overwrite=true",
                        "--auto-file-renaming=false",
                    ])
                    .arg(link)
                    .env_clear()
                    .current_dir(dir);
                c
            }
        }
    }

    fn run_case(
        &self,
        host: &Host,
        places: &Places,
        spec: &CaseSpec,
        blob: Blob,
        source: &Source,
    ) -> Result<Case, String> {
        let name = format!("{}-{}", spec.id, source.size / MIB);
        let md5 = blob.content_md5.is_some();
        host.put(&name, blob);
        let link = host.link(&name);
        let dir = places.dir(spec.place);
        println!(
            "{} [{}]: {} rounds after {} warm-up ...",
            spec.title.replace('`', ""),
            spec.place.label(),
            spec.rounds,
            spec.warmup
        );
        let mut tools: Vec<(Tool, Vec<Sample>, host::Counts)> = spec
            .tools
            .iter()
            .map(|t| (t.clone(), Vec::new(), host::Counts::default()))
            .collect();
        let mut hashed = 0;
        let total = spec.warmup + spec.rounds;
        for round in 0..total {
            for k in stats::round_order(spec.tools.len(), round) {
                let tool = &spec.tools[k];
                // A fresh, empty directory; nothing dirty left from the round before.
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                measure::sync()?;
                let _ = host.take_counts(&name);
                let command = self.command(tool, &link, &dir);
                let (sample, status, stderr) =
                    measure::run(command, Some(&self.tools.time), &self.report, None)?;
                let counts = host.take_counts(&name);
                if !status.success() {
                    return Err(format!(
                        "{} failed ({status}): {}",
                        tool.label(),
                        stderr.trim()
                    ));
                }
                let (want_len, want_sha) = match tool.gunzips() {
                    true => (source.delivered_len, &source.delivered_sha),
                    false => (source.blob_len, &source.blob_sha),
                };
                let file = only_file(&dir)?;
                if tool.is_any_mdlr() {
                    check_manifest(&dir, &file, source, md5, tool.gunzips())
                        .map_err(|e| format!("{}: {e}", tool.label()))?;
                }
                let len = std::fs::metadata(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?
                    .len();
                if len != want_len {
                    return Err(format!(
                        "{} wrote {len} bytes, not {want_len}",
                        tool.label()
                    ));
                }
                if spec.hash_every_round || round == 0 || round + 1 == total {
                    let sha = measure::sha256_file(&file)?;
                    if sha != *want_sha {
                        return Err(format!(
                            "{} wrote other bytes than the result's (SHA-256 {sha}, not \
                             {want_sha})",
                            tool.label()
                        ));
                    }
                    hashed += 1;
                }
                if round >= spec.warmup
                    && let Some((_, samples, c)) = tools.get_mut(k)
                {
                    samples.push(sample);
                    *c = counts;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        host.remove(&name);
        let case = Case {
            id: spec.id,
            title: spec.title.clone(),
            place: spec.place,
            size: source.size,
            blob_len: source.blob_len,
            delivered_len: source.delivered_len,
            rounds: spec.rounds,
            warmup: spec.warmup,
            tools,
            hashed,
        };
        for (tool, samples, counts) in &case.tools {
            let Some(s) = Summary::of(samples) else {
                continue;
            };
            println!(
                "  {:<52} median {:>7.3} s  p75 {:>7.3} s  ({:.3}–{:.3})  user {:>5.2} s  \
                 sys {:>5.2} s  rss {:>6.1} MiB  {} request(s)",
                tool.label().replace('`', "").replace("\\|", "|"),
                s.wall.median,
                s.wall.p75,
                s.wall.min,
                s.wall.max,
                s.user.unwrap_or(f64::NAN),
                s.sys.unwrap_or(f64::NAN),
                s.max_rss_kib.map_or(f64::NAN, |k| k as f64 / 1024.0),
                counts.requests,
            );
        }
        Ok(case)
    }

    /// The small RunScript result: `mdlr result ID` against two curls and jq.
    fn bench_small(&self, small: &SmallResult, rounds: usize) -> Result<Small, String> {
        let stdout = self.scratch.join("stdout");
        let link_url = format!(
            "{}/api/machineactions/{}/GetLiveResponseResultDownloadLink(index=0)",
            self.api,
            host::SMALL_ID
        );
        let script = "link=$(\"$1\" -q -sS --fail -H \"Authorization: Bearer $3\" \"$4\" | \
                      \"$2\" -r .value) && \"$1\" -q -sS --fail \"$link\" | \"$2\" -j .script_output";
        let mut mdlr = Vec::new();
        let mut reference = Vec::new();
        for round in 0..rounds + 1 {
            for k in stats::round_order(2, round) {
                let is_mdlr = k == 0;
                let mut command;
                if is_mdlr {
                    command = Command::new(&self.mdlr);
                    command
                        .args(["result", host::SMALL_ID])
                        .env_clear()
                        .env("MDLR_TOKEN", host::TOKEN)
                        .env("MDLR_API_URL", &self.api);
                } else {
                    command = Command::new(&self.tools.sh);
                    command
                        .args(["-c", script, "sh"])
                        .arg(&self.tools.curl)
                        .arg(&self.tools.jq)
                        .arg(host::TOKEN)
                        .arg(&link_url)
                        .env_clear()
                        .env("PATH", "/usr/bin:/bin");
                }
                command.current_dir(&self.scratch);
                let (sample, status, stderr) =
                    measure::run(command, None, &self.report, Some(&stdout))?;
                let printed = std::fs::read_to_string(&stdout).unwrap_or_default();
                let who = if is_mdlr { "mdlr result" } else { "curl + jq" };
                if !status.success() {
                    return Err(format!("{who} failed ({status}): {}", stderr.trim()));
                }
                if printed != small.script_output {
                    return Err(format!(
                        "{who} printed {} bytes, not the script's output",
                        printed.len()
                    ));
                }
                // Round 0 is the warm-up.
                match (round, is_mdlr) {
                    (0, _) => {}
                    (_, true) => mdlr.push(sample.wall),
                    (_, false) => reference.push(sample.wall),
                }
            }
        }
        let small = Small {
            mdlr: Spread::of(&mdlr).ok_or("no small-result rounds")?,
            reference: Spread::of(&reference).ok_or("no small-result rounds")?,
            bytes: small.transcript.len(),
        };
        println!(
            "  mdlr result: median {:.2} ms (p75 {:.2}); curl + jq: median {:.2} ms (p75 {:.2})",
            small.mdlr.median * 1e3,
            small.mdlr.p75 * 1e3,
            small.reference.median * 1e3,
            small.reference.p75 * 1e3
        );
        Ok(small)
    }

    /// `mdlr --version` against `curl --version`.
    fn bench_startup(&self, rounds: usize) -> Result<Startup, String> {
        let mut mdlr = Vec::new();
        let mut curl = Vec::new();
        for round in 0..rounds + 1 {
            for k in stats::round_order(2, round) {
                let mut command = match k {
                    0 => Command::new(&self.mdlr),
                    _ => Command::new(&self.tools.curl),
                };
                command
                    .arg("--version")
                    .env_clear()
                    .current_dir(&self.scratch);
                let (sample, status, _) = measure::run(command, None, &self.report, None)?;
                if !status.success() {
                    return Err(format!("--version failed ({status})"));
                }
                match (round, k) {
                    (0, _) => {}
                    (_, 0) => mdlr.push(sample.wall),
                    _ => curl.push(sample.wall),
                }
            }
        }
        // The memory of a start, under GNU time.
        let mut rss = Vec::new();
        for _ in 0..3 {
            let mut command = Command::new(&self.mdlr);
            command.arg("--version").env_clear();
            let (sample, _, _) = measure::run(command, Some(&self.tools.time), &self.report, None)?;
            rss.extend(sample.max_rss_kib);
        }
        let startup = Startup {
            mdlr: Spread::of(&mdlr).ok_or("no start-up rounds")?,
            curl: Spread::of(&curl).ok_or("no start-up rounds")?,
            rss_kib: rss.iter().copied().max().unwrap_or(0),
        };
        println!(
            "  mdlr --version: median {:.2} ms (p75 {:.2}); curl --version: median {:.2} ms",
            startup.mdlr.median * 1e3,
            startup.mdlr.p75 * 1e3,
            startup.curl.median * 1e3
        );
        Ok(startup)
    }
}

/// The evidence manifest `mdlr` writes into its `-o DIR` (issue 12).
const MANIFEST: &str = "manifest.jsonl";

/// The one visible file a client left in `dir` (besides mdlr's manifest); a part file
/// left behind is an error.
fn only_file(dir: &Path) -> Result<PathBuf, String> {
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains("mdlr-part") || name.ends_with(".aria2") {
            return Err(format!("{name} was left behind in {}", dir.display()));
        }
        if !name.starts_with('.') && name != MANIFEST {
            files.push(entry.path());
        }
    }
    match files.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!(
            "{} files in {}, not one: {}",
            files.len(),
            dir.display(),
            files
                .iter()
                .map(|f| f.file_name().unwrap_or_default().to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Checks the line mdlr wrote into `dir`'s manifest for `file` (when it writes one: an
/// older binary does not): its SHA-256 as written and as served, its sizes and whether
/// the `Content-MD5` was checked must be what the source says. They are what mdlr
/// computed while streaming; the bench hashes the file itself as well.
fn check_manifest(
    dir: &Path,
    file: &Path,
    source: &Source,
    md5: bool,
    gunzips: bool,
) -> Result<(), String> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let lines: Vec<&str> = text.lines().collect();
    let [line] = lines.as_slice() else {
        return Err(format!("{MANIFEST} has {} lines, not one", lines.len()));
    };
    let entry: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("{MANIFEST}: {e}"))?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    let (size, sha) = match gunzips {
        true => (source.delivered_len, &source.delivered_sha),
        false => (source.blob_len, &source.blob_sha),
    };
    let want = serde_json::json!({
        "path": name,
        "size": size,
        "sha256": sha,
        "size_served": source.blob_len,
        "sha256_served": source.blob_sha,
        "md5_checked": md5,
    });
    for (key, value) in want.as_object().into_iter().flatten() {
        if entry.get(key) != Some(value) {
            return Err(format!(
                "{MANIFEST} says {key} {}, not {value}",
                entry.get(key).unwrap_or(&serde_json::Value::Null)
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Figures and verdicts

struct Small {
    mdlr: Spread,
    reference: Spread,
    bytes: usize,
}

struct Startup {
    mdlr: Spread,
    curl: Spread,
    rss_kib: u64,
}

#[derive(Default)]
struct Run {
    size: u64,
    /// Whether the binary has `--connections`.
    connections: bool,
    cases: Vec<Case>,
    small: Option<Small>,
    startup: Option<Startup>,
}

/// One row of the goals table.
struct Row {
    /// Stable across runs: what the repeat check compares.
    id: String,
    figure: String,
    goal: String,
    measured: String,
    /// `None`: no goal, or not measurable.
    met: Option<bool>,
    /// The figure the verdict is taken on, short (`2.08×`, `4.0 MiB`), for the repeat
    /// check.
    value: String,
}

impl Run {
    fn case(&self, id: &str, place: Where) -> Option<&Case> {
        self.cases.iter().find(|c| c.id == id && c.place == place)
    }

    fn verdicts(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let ratio_row = |case: &Case, other: &Tool, goal: Goal, what: &str| -> Option<Row> {
            let (tool, m) = case.mdlr()?;
            let o = case.summary(other)?;
            let v = goal.judge(&m.wall, &o.wall);
            let how = match goal {
                Goal::AtMost(_) => "mdlr's p75 ÷ the other's median",
                Goal::FasterBy(_) => "the other's median ÷ mdlr's p75",
            };
            Some(Row {
                id: format!("{}-{}-{what}", case.id, case.place.label()),
                figure: format!(
                    "{} [{}]: {} against {}",
                    case.title,
                    case.place.label(),
                    tool.label(),
                    other.label()
                ),
                goal: goal.describe(),
                measured: format!(
                    "**{:.2}×** ({how}: {:.3} s, {:.3} s); at the medians {:.2}×, mdlr's best \
                     round {:.2}×",
                    v.judged, m.wall.p75, o.wall.median, v.at_medians, v.best
                ),
                met: Some(v.met),
                value: format!("{:.2}×", v.judged),
            })
        };
        for place in [Where::Disk, Where::Tmpfs] {
            if let Some(c) = self.case("md5", place) {
                rows.extend(ratio_row(c, &Tool::CurlO, GOAL_MD5, "curl"));
            }
        }
        for place in [Where::Disk, Where::Tmpfs] {
            if let Some(c) = self.case("getfile", place) {
                rows.extend(ratio_row(c, &Tool::CurlGunzip, GOAL_GETFILE, "curl-gzip"));
            }
        }
        if let Some(c) = self.case("capped", Where::Disk) {
            rows.extend(self.capped_rows(c, &ratio_row));
        }
        for id in ["sizes-raw", "sizes-getfile"] {
            let Some((tool, _)) = self.cases.iter().find(|c| c.id == id).and_then(Case::mdlr)
            else {
                continue;
            };
            let peaks: Vec<(u64, f64)> = self
                .cases
                .iter()
                .filter(|c| c.id == id)
                .filter_map(|c| {
                    let kib = c.mdlr()?.1.max_rss_kib?;
                    Some((c.size, kib as f64 / 1024.0))
                })
                .collect();
            if peaks.is_empty() {
                continue;
            }
            let worst = peaks.iter().map(|(_, m)| *m).fold(0.0, f64::max);
            let least = peaks.iter().map(|(_, m)| *m).fold(f64::INFINITY, f64::min);
            rows.push(Row {
                id: format!("{id}-rss"),
                figure: format!(
                    "peak RSS of {}, by size (largest of every round) [disk]",
                    tool.label()
                ),
                goal: format!("≤ {GOAL_RSS_MIB:.0} MiB, flat (within {FLAT_MIB:.0} MiB)"),
                measured: peaks
                    .iter()
                    .map(|(s, m)| format!("{}: {m:.1} MiB", human(*s)))
                    .collect::<Vec<_>>()
                    .join(", "),
                met: Some(worst <= GOAL_RSS_MIB && worst - least <= FLAT_MIB),
                value: format!("{least:.1}–{worst:.1} MiB"),
            });
        }
        rows.push(Row {
            id: "size".to_owned(),
            figure: "static binary size".to_owned(),
            goal: format!("≤ {}", crate::dist::mib(crate::dist::SIZE_LIMIT)),
            measured: format!("{} bytes ({})", self.size, crate::dist::mib(self.size)),
            met: Some(self.size <= crate::dist::SIZE_LIMIT),
            value: format!("{} bytes", self.size),
        });
        if let Some(s) = &self.startup {
            rows.push(Row {
                id: "startup".to_owned(),
                figure: "start-up: `mdlr --version` against `curl --version`".to_owned(),
                goal: "–".to_owned(),
                measured: format!(
                    "{:.2} ms (p75 {:.2}, {:.2}–{:.2}) against {:.2} ms (p75 {:.2}), medians of \
                     {}; peak RSS {:.1} MiB",
                    s.mdlr.median * 1e3,
                    s.mdlr.p75 * 1e3,
                    s.mdlr.min * 1e3,
                    s.mdlr.max * 1e3,
                    s.curl.median * 1e3,
                    s.curl.p75 * 1e3,
                    s.mdlr.n,
                    s.rss_kib as f64 / 1024.0
                ),
                met: None,
                value: String::new(),
            });
        }
        if let Some(s) = &self.small {
            rows.push(Row {
                id: "small".to_owned(),
                figure: format!(
                    "small RunScript result ({} bytes): `mdlr result ID` (one process) against \
                     two `curl` and two `jq` (four) — start-up cost (process start-ups \
                     counted), not a throughput win",
                    s.bytes
                ),
                goal: "– (no verdict)".to_owned(),
                measured: format!(
                    "{:.1} ms (p75 {:.1}) against {:.1} ms (p75 {:.1}), medians of {}",
                    s.mdlr.median * 1e3,
                    s.mdlr.p75 * 1e3,
                    s.reference.median * 1e3,
                    s.reference.p75 * 1e3,
                    s.mdlr.n
                ),
                met: None,
                value: String::new(),
            });
        }
        rows
    }

    /// The goals of the capped link: against curl and aria2c, identical bytes, memory.
    fn capped_rows(
        &self,
        c: &Case,
        ratio_row: &dyn Fn(&Case, &Tool, Goal, &str) -> Option<Row>,
    ) -> Vec<Row> {
        let n = CONNECTIONS;
        let figure =
            |what: &str| format!("{} [disk]: `mdlr fetch --connections {n}` {what}", c.title);
        if !self.connections {
            let none = "not measurable yet: the binary has no --connections";
            let mdlr_one = c.mdlr().map_or(String::new(), |(_, m)| {
                let curl = c.summary(&Tool::CurlO).map(|s| s.wall.median);
                let aria = c.summary(&Tool::Aria2c).map(|s| s.wall.median);
                format!(
                    " (one connection: mdlr {:.2} s, curl {}, aria2c {}, medians)",
                    m.wall.median,
                    curl.map_or("–".to_owned(), |w| format!("{w:.2} s")),
                    aria.map_or("–".to_owned(), |w| format!("{w:.2} s")),
                )
            });
            return [
                ("curl", GOAL_CAPPED_CURL.describe() + " curl"),
                ("aria2c", GOAL_CAPPED_ARIA2.describe() + " aria2c"),
                ("identical", "byte-identical".to_owned()),
                ("rss", format!("peak RSS ≤ {GOAL_RSS_MIB:.0} MiB")),
            ]
            .into_iter()
            .enumerate()
            .map(|(i, (what, goal))| Row {
                id: format!("capped-disk-{what}"),
                figure: figure(&goal),
                goal,
                measured: match i {
                    0 => format!("{none}{mdlr_one}"),
                    _ => none.to_owned(),
                },
                met: None,
                value: String::new(),
            })
            .collect();
        }
        let mut rows = Vec::new();
        rows.extend(ratio_row(c, &Tool::CurlO, GOAL_CAPPED_CURL, "curl"));
        if c.summary(&Tool::Aria2c).is_some() {
            rows.extend(ratio_row(c, &Tool::Aria2c, GOAL_CAPPED_ARIA2, "aria2c"));
        } else {
            rows.push(Row {
                id: "capped-disk-aria2c".to_owned(),
                figure: figure("against aria2c"),
                goal: GOAL_CAPPED_ARIA2.describe(),
                measured: "not measured: no aria2c (see above)".to_owned(),
                met: None,
                value: String::new(),
            });
        }
        rows.push(Row {
            id: "capped-disk-identical".to_owned(),
            figure: figure("byte-identical to the blob"),
            goal: "every round".to_owned(),
            measured: format!(
                "{} outputs of {} clients, SHA-256 equal to the blob's",
                c.hashed,
                c.tools.len()
            ),
            // A difference stops the bench before this.
            met: Some(true),
            value: format!("{} equal", c.hashed),
        });
        let rss = c.mdlr().and_then(|(_, m)| m.max_rss_kib);
        rows.push(Row {
            id: "capped-disk-rss".to_owned(),
            figure: figure("peak RSS (largest of every round)"),
            goal: format!("≤ {GOAL_RSS_MIB:.0} MiB"),
            measured: rss.map_or("–".to_owned(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            }),
            met: rss.map(|k| k as f64 / 1024.0 <= GOAL_RSS_MIB),
            value: rss.map_or(String::new(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
        });
        rows
    }

    /// Every client of every case: walls (median, p75, range), CPU, memory, speed.
    fn tables(&self, places: &Places) -> String {
        let mut out = String::from(
            "| case | on | client | rounds | wall median (s) | wall p75 (s) | min–max (s) | \
             user (s) | sys (s) | peak RSS (MiB) | MiB/s written (median) | requests |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for c in &self.cases {
            for (tool, samples, counts) in &c.tools {
                let Some(s) = Summary::of(samples) else {
                    continue;
                };
                let written = match tool.gunzips() {
                    true => c.delivered_len,
                    false => c.blob_len,
                } as f64;
                let secs = |x: Option<f64>| x.map_or("–".to_owned(), |v| format!("{v:.2}"));
                out.push_str(&format!(
                    "| {} | {} | {} | {}+{} | {:.3} | {:.3} | {:.3}–{:.3} | {} | {} | {} | {:.0} | {} |\n",
                    cell(&c.title),
                    c.place.label(),
                    tool.label(),
                    c.warmup,
                    c.rounds,
                    s.wall.median,
                    s.wall.p75,
                    s.wall.min,
                    s.wall.max,
                    secs(s.user),
                    secs(s.sys),
                    s.max_rss_kib
                        .map_or("–".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
                    written / MIB as f64 / s.wall.median,
                    counts.requests,
                ));
            }
        }
        out.push_str(&format!(
            "\n*disk* is {}.\n",
            places
                .describe()
                .replace("disk: ", "")
                .replace("; tmpfs: ", "; *tmpfs* is ")
        ));
        out
    }
}

fn goals_table(rows: &[Row]) -> String {
    let mut out = String::from("| figure | goal | measured | met |\n|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            cell(&r.figure),
            r.goal,
            cell(&r.measured),
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            }
        ));
    }
    out
}

/// The verdicts of the previous run of the same binary, against this run's.
struct Repeat {
    /// When the previous run was (`DATE at COMMIT`); `None`: no earlier run of this
    /// binary and method to compare with.
    when: Option<String>,
    /// `(id, previous verdict and figure, this run's)` of every goal judged in both.
    pairs: Vec<(String, String, String)>,
    /// The ids whose verdicts differ.
    differ: Vec<String>,
}

impl Repeat {
    /// Compares with `target/bench-verdicts.txt` when it holds a run of the same `key`
    /// (binary and method), and writes this run's there.
    fn check(root: &Path, key: &str, rows: &[Row]) -> Repeat {
        let path = root.join("target").join("bench-verdicts.txt");
        let previous = std::fs::read_to_string(&path).unwrap_or_default();
        let mut repeat = Repeat::compare(&previous, key, rows);
        let now = crate::utc_date(SystemTime::now());
        let mut text = format!("{key} {now} at {}\n", crate::commit_description(root));
        for r in rows {
            if let Some(met) = r.met {
                text.push_str(&format!("{}\t{}\t{}\n", r.id, verdict_word(met), r.value));
            }
        }
        if std::fs::write(&path, text).is_err() {
            repeat.when = None;
        }
        repeat
    }

    fn compare(previous: &str, key: &str, rows: &[Row]) -> Repeat {
        let mut lines = previous.lines();
        let header = lines.next().unwrap_or_default();
        let Some(when) = header.strip_prefix(&format!("{key} ")) else {
            return Repeat {
                when: None,
                pairs: Vec::new(),
                differ: Vec::new(),
            };
        };
        let old: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
        let mut pairs = Vec::new();
        let mut differ = Vec::new();
        for r in rows {
            let Some(met) = r.met else { continue };
            let Some(was) = old.iter().find(|f| f.first() == Some(&r.id.as_str())) else {
                continue;
            };
            let was_word = was.get(1).copied().unwrap_or_default();
            if was_word != verdict_word(met) {
                differ.push(r.id.clone());
            }
            pairs.push((
                r.id.clone(),
                format!("{was_word}, {}", was.get(2).copied().unwrap_or_default()),
                format!("{}, {}", verdict_word(met), r.value),
            ));
        }
        Repeat {
            when: Some(when.to_owned()),
            pairs,
            differ,
        }
    }

    fn line(&self) -> String {
        let compared = self.pairs.len();
        match &self.when {
            None => "Repeat check: no earlier run of this binary with these rounds to compare \
                     the verdicts with (run the bench again to check them)."
                .to_owned(),
            Some(when) if self.differ.is_empty() => format!(
                "Repeat check: all {compared} verdicts are the same as in the previous run of \
                 this binary with these rounds ({when})."
            ),
            Some(when) => format!(
                "Repeat check: **{} of {compared} verdicts differ** from the previous run of \
                 this binary ({when}): {}. Those goals sit within the noise: more rounds \
                 (`--rounds`) or a quieter machine.",
                self.differ.len(),
                self.differ.join(", ")
            ),
        }
    }

    /// The two runs' verdicts side by side.
    fn table(&self) -> String {
        if self.pairs.is_empty() {
            return String::new();
        }
        let mut out = String::from("| goal | previous run | this run |\n|---|---|---|\n");
        for (id, was, now) in &self.pairs {
            out.push_str(&format!("| `{id}` | {was} | {now} |\n"));
        }
        out
    }
}

fn verdict_word(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

/// `text` for a Markdown table cell: a `|`, even in a code span, would end the cell.
fn cell(text: &str) -> String {
    let mut out = String::new();
    let mut prev = ' ';
    for c in text.chars() {
        if c == '|' && prev != '\\' {
            out.push('\\');
        }
        out.push(c);
        prev = c;
    }
    out
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
    kernel: String,
    rustc: String,
    curl: String,
    aria2c: String,
    date: String,
    commit: String,
    bin_sha: String,
    places: String,
    drop_caches: bool,
    /// The 1-minute load average before and after the run: other work on the machine.
    load: String,
}

impl Machine {
    fn detect(
        root: &Path,
        places: &Places,
        tools: &Tools,
        drop_caches: bool,
        bin_sha: &str,
    ) -> Machine {
        let cores = std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".to_owned());
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let rustc =
            crate::first_line(Command::new(rustc).arg("-V")).unwrap_or_else(|| "rustc ?".into());
        let version = |bin: &Path, name: &str, word: usize| {
            crate::first_line(Command::new(bin).arg("--version"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(word)
                        .map(|v| format!("{name} {v}"))
                })
                .unwrap_or_else(|| format!("{name} ?"))
        };
        Machine {
            cores,
            cpu: crate::cpu_model(),
            kernel: crate::first_line(Command::new("uname").arg("-r"))
                .map_or("Linux ?".to_owned(), |r| format!("Linux {r}")),
            rustc,
            curl: version(&tools.curl, "curl", 1),
            aria2c: tools
                .aria2c
                .as_ref()
                .map_or("no aria2c".to_owned(), |p| version(p, "aria2", 2)),
            date: crate::utc_date(SystemTime::now()),
            commit: crate::commit_description(root),
            bin_sha: bin_sha.chars().take(16).collect(),
            places: places.describe(),
            drop_caches,
            load: String::new(),
        }
    }

    /// A warning when other work kept the cores busy during the run.
    fn busy(&self) -> String {
        let loads: Vec<f64> = self
            .load
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter_map(|w| w.parse().ok())
            .collect();
        let cores: f64 = self.cores.parse().unwrap_or(1.0);
        match loads.iter().copied().fold(0.0, f64::max) > cores {
            true => format!(
                " **The machine was busy** (load average above its {} cores): walls include \
                 waiting for a core, CPU times do not; the verdicts hold for such a machine, \
                 and a quiet one gives shorter walls to every client.",
                self.cores
            ),
            false => String::new(),
        }
    }

    fn line(&self) -> String {
        format!(
            "Measured {} at {} (binary SHA-256 {}…) on {} core(s) (load average {}), {}, {}, \
             {}, {}, {}; {}.",
            self.date,
            self.commit,
            self.bin_sha,
            self.cores,
            self.load,
            self.cpu,
            self.kernel,
            self.rustc,
            self.curl,
            self.aria2c,
            self.places
        )
    }
}

fn section(
    command: &str,
    goals: &str,
    repeat: &Repeat,
    tables: &str,
    machine: &Machine,
    run: &Run,
    plan: &Plan,
) -> String {
    format!(
        "{START_MARK}\n{SECTION_TITLE}\n\n\
         ```console\n$ {command}\n```\n\n\
         {}\n\n\
         ### Goals\n\n\
         {goals}\n\
         {}\n\n\
         ### Every client\n\n\
         {tables}\n\
         ### How\n\n\
         - **Verdicts.** Each goal is judged on mdlr's *upper quartile* against the other \
         client's *median* (for \"≥ N× curl\": curl's median ÷ mdlr's upper quartile): mdlr \
         must meet it in three rounds of four against the other's typical round, so noise in \
         mdlr's rounds can only turn a verdict into a miss, and neither mdlr's best round nor \
         the other's worst can win it. The ratio at both medians and at mdlr's best round \
         are printed beside it, for reference only. The repeat check compares every verdict \
         with the previous run of the same binary (`target/bench-verdicts.txt`).\n\
         - **Rounds.** Each case runs its clients in turn (mdlr, curl, [aria2c]; the next \
         round starts one client further on), {} warm-up round(s) first, not counted: \
         {} counted rounds for the {} cases, {} for the capped link, {} for each size, {} for \
         the small result, {} for the start-up. Every round writes a fresh file: the output \
         directory is emptied and `sync` runs before the clock starts, so what one client \
         left unwritten is not written back in another's time. The page cache is not dropped \
         (`/proc/sys/vm/drop_caches` {}): the host sends from memory and the clients read \
         nothing from disk but their own binaries.\n\
         - **Where.** *disk*: a directory under `target/`, on the working tree's filesystem \
         (the one `mdlr fetch -o` writes to from there), checked to be on the same device; \
         *tmpfs*: `/dev/shm`, memory, where mdlr's `fsync` costs nothing. mdlr syncs its file \
         before the rename (and keeps a received `.gz` beside it until the end); curl and \
         aria2c never sync.\n\
         - **What runs.** The dist binary (`cargo xtask dist`: static, release profile) as \
         `mdlr fetch URL` with an empty environment, against a std-only stand-in of the \
         result host on 127.0.0.1 in the xtask process (`xtask/src/bench/host.rs`), which \
         holds the blob in memory and sends a whole reply with one `write`; `curl`, `gzip` \
         and `aria2c` fetch the same link and get the same bytes and headers. Raw results \
         are incompressible noise (`--raw`); GetFile results are log-like text, `gzip -6`, \
         sent with `Content-Disposition: attachment; filename=\"….log.gz\"`, which `mdlr \
         fetch` un-gzips while it streams (checking the gzip CRC and length) and `curl | gzip \
         -dc` un-gzips in a pipeline, timed whole. The host sends `Content-MD5` (the MD5 is \
         computed once, not per request) for the raw `Content-MD5` case and the capped link, \
         as Azure does for a blob written in one piece; mdlr checks it, curl and aria2c \
         check nothing. Every output's length is checked every round and its SHA-256 in the \
         warm-up and the last round (every round on the capped link); mdlr's line in \
         `DIR/manifest.jsonl` (the SHA-256 it computed while streaming, as written and as \
         served, and whether it checked the MD5) is checked every round. {}\n\
         - **Capped link.** The same host, pausing {} ms after every {} KiB on each \
         connection (about {:.1} MiB/s a connection; several connections get several times \
         that) and waiting {} ms before each reply's head, as a distant jump host or a \
         throttling proxy would. It answers `Range: bytes=A-B`, `A-` and `-N` (206 with \
         `Content-Range`, 416 past the end), `If-Match` (412 on another ETag) and `HEAD`. \
         aria2c runs as `aria2c --no-conf -q -x4 -s4 -k1M` with its defaults (the Debian \
         package `aria2`, installed by the bench when it is missing and it runs as root); \
         it sends one whole GET and then `Range: bytes=A-B` requests. The *requests* column \
         is what the host saw of each client in its last round. {}\n\
         - **Measured how.** The wall is measured by the bench around the process; user and \
         system CPU and the peak resident set come from `wait4` through GNU `time -f '%U %S \
         %M'` (for a pipeline: the CPU of every process and the RSS of the largest). Peak RSS \
         in the tables is the largest of every counted round.\n\
         - **Small RunScript result.** `mdlr result ID` (action, link, blob; prints \
         `script_output`, one process) against `sh -c 'link=$(curl -H \"Authorization: \
         Bearer $T\" .../GetLiveResponseResultDownloadLink(index=0) | jq -r .value) && curl \
         \"$link\" | jq -j .script_output'` (four processes and a shell). At a few kilobytes \
         this measures process start-ups, not downloading: it is shown, not judged.\n\n\
         {HISTORY}\n\
         {END_MARK}\n",
        machine.line() + &machine.busy(),
        match repeat.table().is_empty() {
            true => repeat.line(),
            false => format!("{}\n\n{}", repeat.line(), repeat.table().trim_end()),
        },
        plan.warmup,
        plan.big_rounds,
        human(plan.big),
        plan.capped_rounds,
        plan.sizes_rounds,
        plan.small_rounds,
        plan.startup_rounds,
        if machine.drop_caches {
            "is writable here, and not needed"
        } else {
            "is not writable here"
        },
        CAPPED.pause.as_millis(),
        match run.connections {
            true =>
                "**Connections.** Unless told, `mdlr fetch` fetches a blob of 64 MiB or \
                     more over 4 connections (pieces of 1–16 MiB, each its own `Range` \
                     request) and a smaller one over 1: the 512 MiB rows run as a user would, \
                     with 4 (the *requests* column counts them). The rows by size ask for \
                     `--connections 4` at every size, so that \"flat\" compares sizes, not \
                     connection counts (the 64 and 256 MiB GetFile blobs are under 64 MiB); \
                     each connection holds buffers of its own.",
            false => "",
        },
        CAPPED.chunk / 1024,
        CAPPED.mib_per_s(),
        CAPPED.latency.as_millis(),
        match run.connections {
            true => "mdlr runs as `mdlr fetch URL --raw --connections 4 -o DIR/`.",
            false =>
                "The binary has no `--connections` yet: mdlr's row is one connection \
                      (`mdlr fetch URL --raw -o DIR/`), and the goals of the capped link are \
                      not measurable until the parallel engine lands.",
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let o = parse(&[]);
        assert!(
            o.as_ref()
                .is_ok_and(|o| !o.quick && o.rounds.is_none() && o.write)
        );
        let o = parse(&["--quick", "--no-write", "--rounds=2"]);
        assert!(
            o.as_ref()
                .is_ok_and(|o| o.quick && o.rounds == Some(2) && !o.write)
        );
        assert!(
            parse(&["--only", "md5,capped"]).is_ok_and(|o| o.runs("capped") && !o.runs("sizes"))
        );
        assert!(parse(&["--only", "gzip"]).is_err());
        assert!(parse(&["--rounds", "0"]).is_err());
        assert!(parse(&["--rounds"]).is_err());
        assert!(parse(&["--fast"]).is_err());
        assert!(parse(&["--connections", "1"]).is_ok_and(|o| o.connections == Some(1)));
        assert!(parse(&["--connections", "0"]).is_err());
    }

    #[test]
    fn plans() {
        let full = Plan::new(false, None);
        assert_eq!((full.big, full.big_rounds, full.warmup), (512 * MIB, 9, 1));
        let o = parse(&["--only", "md5,sizes"]).unwrap_or_else(|e| panic!("{e}"));
        let (noise, text) = full.data_sizes(&o);
        assert_eq!(noise, [64 * MIB, 256 * MIB, 512 * MIB, GIB]);
        assert_eq!(text, [64 * MIB, 256 * MIB, GIB]);
        assert_eq!(Plan::new(true, Some(4)).capped_rounds, 4);
    }

    #[test]
    fn labels_and_cells() {
        assert_eq!(human(64 * MIB), "64 MiB");
        assert_eq!(human(GIB), "1 GiB");
        assert_eq!(cell("`curl | gzip -dc`"), "`curl \\| gzip -dc`");
        assert_eq!(cell("`curl \\| gzip`"), "`curl \\| gzip`");
        assert_eq!(
            Tool::mdlr_raw(Some(4)).label(),
            "`mdlr fetch URL --raw --connections 4 -o DIR/`"
        );
        assert_eq!(
            Tool::mdlr_gunzip(None).label(),
            "`mdlr fetch URL -o DIR/` (un-gzips)"
        );
        assert!(Tool::mdlr_gunzip(Some(4)).gunzips() && !Tool::CurlO.gunzips());
        assert_eq!(
            Tool::mdlr_gunzip(Some(4)).label(),
            "`mdlr fetch URL --connections 4 -o DIR/` (un-gzips)"
        );
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

    #[test]
    fn repeats() {
        let row = |id: &str, met, value: &str| Row {
            id: id.to_owned(),
            figure: String::new(),
            goal: String::new(),
            measured: String::new(),
            met,
            value: value.to_owned(),
        };
        let previous = "abc full-9 2026-12-04 at x\na\tmet\t0.90×\nb\tmissed\t2.00×\n";
        let rows = [
            row("a", Some(true), "0.95×"),
            row("b", Some(true), "0.99×"),
            row("c", None, ""),
        ];
        let r = Repeat::compare(previous, "abc full-9", &rows);
        assert_eq!(r.when.as_deref(), Some("2026-12-04 at x"));
        assert_eq!(r.differ, ["b"]);
        assert_eq!(r.pairs.len(), 2);
        assert!(r.line().contains("1 of 2 verdicts differ"), "{}", r.line());
        assert!(r.table().contains("| `a` | met, 0.90× | met, 0.95× |"));
        // Another binary or another method: nothing to compare.
        assert!(
            Repeat::compare(previous, "abc quick-3", &rows)
                .when
                .is_none()
        );
        assert!(
            Repeat::compare("", "abc full-9", &rows)
                .line()
                .contains("no earlier run")
        );
    }

    #[test]
    fn the_section_keeps_its_history() {
        assert!(HISTORY.starts_with("### Historical figures"));
        assert!(HISTORY.contains("| 2026-11-28 | b2fef1b |"));
        assert!(!HISTORY.contains(START_MARK) && !HISTORY.contains(END_MARK));
    }
}
