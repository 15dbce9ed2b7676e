//! The release a security team signs off (`cargo xtask dist`, issue 14), checked as they
//! would: the man page renders, the SBOM lists exactly the crates inside the binary at
//! their `Cargo.lock` versions and checksums, the binary's `.dep-v0` section is readable
//! with standard tools, the .deb installs into a scratch root and runs, the tarball has
//! the same layout, and `SHA256SUMS` covers every file.
//!
//! The release is found beside `$MDLR_DIST_BINARY`, or built (`mdlr_tests::dist`). The
//! tools used are Debian's: man-db, groff, binutils (objcopy), dpkg, tar, coreutils;
//! `cargo xtask test` installs the missing ones when run as root.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mdlr_tests::dist;
use serde_json::Value;

/// Crates the workspace uses in tests or tasks only: none may be in the binary.
const TEST_ONLY: &[&str] = &[
    "httpmock",
    "tokio",
    "hyper",
    "webpki-root-certs",
    "mdlr-tests",
    "xtask",
];

/// The files every package installs, relative to `/`.
const INSTALLED: &[(&str, &str)] = &[
    ("usr/bin/mdlr", "-rwxr-xr-x"),
    ("usr/share/bash-completion/completions/mdlr", "-rw-r--r--"),
    ("usr/share/doc/mdlr/changelog.gz", "-rw-r--r--"),
    ("usr/share/doc/mdlr/copyright", "-rw-r--r--"),
    (
        "usr/share/fish/vendor_completions.d/mdlr.fish",
        "-rw-r--r--",
    ),
    ("usr/share/man/man1/mdlr.1.gz", "-rw-r--r--"),
    ("usr/share/zsh/vendor-completions/_mdlr", "-rw-r--r--"),
];

// ---------------------------------------------------------------------------------------
// Helpers

/// A fresh, empty directory under cargo's per-target temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("release-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temporary directory");
        TempDir(path)
    }

    fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `command`, which must succeed; a missing program names the package to install.
#[track_caller]
fn run(command: &mut Command, package: &str) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {program} ({e}): install Debian's {package} (`apt-get install \
                 {package}`; `cargo xtask test` does it when run as root)"
        )
    });
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the release binary prints for `args`, run with an empty environment.
fn mdlr(args: &[&str]) -> Vec<u8> {
    run(Command::new(dist::binary()).args(args).env_clear(), "mdlr").stdout
}

/// A manual page as `man -l` shows it, 80 columns wide, without bold or underline.
fn render_man(page: &Path) -> String {
    let output = run(
        Command::new("man")
            .arg("-l")
            .arg(page)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("LC_ALL", "C.UTF-8")
            .env_remove("MAN_KEEP_FORMATTING"),
        "man-db",
    );
    // `X\bX` (bold) and `_\bX` (underline), should a pager setting keep them.
    let mut out = String::new();
    for c in text(&output).chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

/// The `.dep-v0` section of `binary` as cargo-auditable wrote it: zlib-compressed JSON,
/// read back with objcopy as a scanner's user would.
fn dep_v0(binary: &Path) -> Value {
    let dir = TempDir::new(&format!(
        "dep-v0-{}",
        binary.file_name().unwrap_or_default().to_string_lossy()
    ));
    let section = dir.join("dep-v0.zlib");
    run(
        Command::new("objcopy")
            .arg(format!("--dump-section=.dep-v0={}", section.display()))
            .arg(binary)
            .arg(dir.join("copy")),
        "binutils",
    );
    let compressed = std::fs::read(&section).expect("objcopy wrote the section");
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(&compressed[..])
        .read_to_end(&mut json)
        .expect("the .dep-v0 section is zlib-compressed");
    serde_json::from_slice(&json).expect("the .dep-v0 section is JSON")
}

/// The (name, version) of the packages of a `.dep-v0` document that are compiled into
/// the binary (`kind` absent or `runtime`; `build` ones ran at build time only).
fn runtime_packages(deps: &Value) -> BTreeSet<(String, String)> {
    packages(deps)
        .iter()
        .filter(|p| p["kind"].as_str().unwrap_or("runtime") == "runtime")
        .map(|p| (s(&p["name"]), s(&p["version"])))
        .collect()
}

fn packages(deps: &Value) -> &Vec<Value> {
    deps["packages"]
        .as_array()
        .expect("a .dep-v0 document has a packages list")
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// `Cargo.lock`'s packages: (name, version) → checksum (`None`: a workspace crate).
/// Read here on its own, not with the xtask's reader, to check it.
fn lock() -> BTreeMap<(String, String), Option<String>> {
    let text = std::fs::read_to_string(dist::root().join("Cargo.lock")).expect("Cargo.lock");
    let mut out = BTreeMap::new();
    for block in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(&format!("{key} = \""))
                    .and_then(|v| v.strip_suffix('"'))
                    .map(str::to_owned)
            })
        };
        let (Some(name), Some(version)) = (field("name"), field("version")) else {
            panic!("a Cargo.lock package without name or version: {block}");
        };
        out.insert((name, version), field("checksum"));
    }
    out
}

fn sbom() -> Value {
    let path = dist::file(&format!("mdlr-{}-x86_64-linux.cdx.json", dist::version()));
    serde_json::from_slice(&std::fs::read(path).expect("read the SBOM")).expect("SBOM is JSON")
}

/// `dpkg-deb --contents`-style lines as (mode, owner, path without `./` or `/`).
fn listing(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "a listing line: {l}");
            let path = f[5].trim_start_matches("./").trim_end_matches('/');
            (f[0].to_owned(), f[1].to_owned(), path.to_owned())
        })
        .collect()
}

/// Every file under `dir` with its bytes, by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// 1. The man page

#[test]
fn man_page_renders_with_every_command_option_and_variable() {
    let page = dist::file("mdlr.1");
    assert!(
        std::fs::read(&page).expect("read mdlr.1") == mdlr(&["man"]),
        "mdlr.1 is not what `mdlr man` prints"
    );
    let groff = run(
        Command::new("groff").args(["-ww", "-z", "-man"]).arg(&page),
        "groff-base",
    );
    assert!(
        groff.stderr.is_empty(),
        "groff warns about mdlr.1:\n{}",
        String::from_utf8_lossy(&groff.stderr)
    );
    let shown = render_man(&page);
    for heading in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "OPTIONS",
        "BATCH OPTIONS",
        "ENVIRONMENT",
        "EXIT STATUS",
        "FILES",
        "EXAMPLES",
    ] {
        assert!(
            shown.contains(&format!("\n{heading}\n")),
            "no {heading} section in what man shows"
        );
    }
    // A section: from its heading to the next line at column 0.
    let section = |name: &str| -> String {
        let start = shown
            .find(&format!("\n{name}\n"))
            .unwrap_or_else(|| panic!("no {name}"));
        // Keep the line break before the first line, so every line starts after one.
        let rest = &shown[start + name.len() + 1..];
        let end = rest
            .match_indices('\n')
            .map(|(i, _)| i + 1)
            .find(|&i| i > 1 && rest[i..].starts_with(|c: char| c.is_ascii_uppercase()))
            .unwrap_or(rest.len());
        rest[..end].to_owned()
    };

    // Every command `mdlr help` lists has its heading; every option any help page shows
    // is on the page, as typed.
    let help = String::from_utf8_lossy(&mdlr(&["help"])).into_owned();
    let commands: Vec<String> = help
        .split("Commands:\n")
        .nth(1)
        .expect("mdlr help lists commands")
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(commands.len() > 15, "{commands:?}");
    let command_section = section("COMMANDS");
    let mut pages = vec![help.clone()];
    for c in &commands {
        assert!(
            command_section.contains(&format!("\n   {c}\n")),
            "the man page has no heading for `mdlr {c}`"
        );
        pages.push(String::from_utf8_lossy(&mdlr(&["help", c])).into_owned());
    }
    let mut options = BTreeSet::new();
    let mut variables = BTreeSet::new();
    for p in &pages {
        for word in p.split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | '[' | ']'))
        {
            let long = word.starts_with("--")
                && word.len() > 3
                && word[2..]
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-');
            let short = word.len() == 2
                && word.starts_with('-')
                && word[1..].chars().all(|c| c.is_ascii_alphabetic());
            if long || short {
                options.insert(word.to_owned());
            }
        }
        for env in p.split("[env: ").skip(1) {
            for var in env.split(']').next().unwrap_or_default().split(", ") {
                variables.insert(var.trim().to_owned());
            }
        }
    }
    assert!(options.len() > 40, "{options:?}");
    let words: BTreeSet<&str> = shown
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | '[' | ']'))
        .collect();
    for o in &options {
        assert!(words.contains(o.as_str()), "{o} is not on the man page");
    }
    let environment = section("ENVIRONMENT");
    variables.extend(
        [
            "MDLR_TOKEN",
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_CLIENT_CERTIFICATE_PATH",
            "NO_PROXY",
        ]
        .map(str::to_owned),
    );
    for v in &variables {
        assert!(
            environment.contains(&format!("\n       {v}")),
            "{v} is not under ENVIRONMENT"
        );
    }
    let statuses = section("EXIT STATUS");
    for code in ["0", "64", "65", "66", "69", "73", "74", "75", "77", "78"] {
        assert!(
            statuses.contains(&format!("\n       {code} ")),
            "exit status {code} is not described"
        );
    }
    let files = section("FILES");
    for f in [
        "$XDG_CONFIG_HOME/mdlr/login.json",
        "~/.config/mdlr/login.json",
        ".mdlr-journal.jsonl",
        ".NAME.mdlr-part",
    ] {
        assert!(files.contains(f), "{f} is not under FILES");
    }
}

// ---------------------------------------------------------------------------------------
// 2 and 3. The SBOM and the dependency list inside the binary

#[test]
fn dependency_section_of_the_binary_is_readable_with_objcopy() {
    let deps = dep_v0(dist::binary());
    let packages = packages(&deps);
    let roots: Vec<&Value> = packages.iter().filter(|p| p["root"] == true).collect();
    assert_eq!(roots.len(), 1, "one root: {roots:?}");
    assert_eq!(roots[0]["name"], "mdlr-cli");
    assert_eq!(s(&roots[0]["version"]), dist::version());
    for p in packages {
        let source = s(&p["source"]);
        assert!(
            source == "crates.io" || source == "local",
            "{}: from {source}",
            p["name"]
        );
        if source == "local" {
            assert!(
                ["mdlr", "mdlr-cli"].contains(&s(&p["name"]).as_str()),
                "{p}"
            );
        }
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let i = d.as_u64().expect("an index") as usize;
            assert!(i < packages.len(), "{p}: dependency {i} out of range");
        }
    }
    let runtime = runtime_packages(&deps);
    for name in ["mdlr", "ureq", "rustls", "ring", "flate2", "serde_json"] {
        assert!(
            runtime.iter().any(|(n, _)| n == name),
            "{name} is not listed as compiled in"
        );
    }
    for name in TEST_ONLY {
        assert!(
            packages.iter().all(|p| p["name"] != *name),
            "{name} (test-only) is in the binary's list"
        );
    }
    // The versioned binary is the same file.
    let versioned = dist::file(&format!("mdlr-{}-x86_64-linux", dist::version()));
    assert_eq!(dep_v0(&versioned), deps);
}

#[test]
fn sbom_lists_exactly_the_crates_in_the_binary_at_their_lock_versions() {
    let sbom = sbom();
    let version = dist::version();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["specVersion"], "1.5");
    assert_eq!(sbom["version"], 1);
    let serial = s(&sbom["serialNumber"]);
    let uuid = serial.strip_prefix("urn:uuid:").expect("a urn:uuid serial");
    let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{serial}");
    assert!(uuid.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    assert!(sbom["metadata"]["timestamp"].is_string());

    // The application is the binary itself: its name, version and hash.
    let app = &sbom["metadata"]["component"];
    assert_eq!(app["name"], "mdlr");
    assert_eq!(app["type"], "application");
    assert_eq!(s(&app["version"]), version);
    let binary = std::fs::read(dist::binary()).expect("read the binary");
    assert_eq!(app["hashes"][0]["alg"], "SHA-256");
    assert_eq!(
        s(&app["hashes"][0]["content"]),
        mdlr_tests::util::sha256_hex(&binary)
    );
    let app_purl = format!("pkg:cargo/mdlr-cli@{version}");
    assert_eq!(s(&app["purl"]), app_purl);

    // Its crates: every one at its Cargo.lock version, with the lock's checksum and a
    // licence; the same set as in the binary's .dep-v0 section; none test-only.
    let lock = lock();
    for name in ["httpmock", "tokio"] {
        assert!(
            lock.keys().any(|(n, _)| n == name),
            "{name} should be in Cargo.lock (a test dependency), or this check checks nothing"
        );
    }
    let components = sbom["components"].as_array().expect("components");
    let mut listed = BTreeSet::from([("mdlr-cli".to_owned(), version.clone())]);
    let mut refs = BTreeSet::from([app_purl.clone()]);
    for c in components {
        let purl = s(&c["purl"]);
        assert_eq!(s(&c["bom-ref"]), purl);
        assert!(refs.insert(purl.clone()), "{purl} twice");
        let (name, v) = (s(&c["name"]), s(&c["version"]));
        let Some(rest) = purl.strip_prefix("pkg:cargo/") else {
            // The C library, GCC's runtime, Rust's std: not crates, named by a CPE.
            assert!(purl.starts_with("pkg:generic/"), "{purl}");
            assert!(s(&c["cpe"]).starts_with("cpe:2.3:a:"), "{c}");
            continue;
        };
        assert_eq!(rest, format!("{name}@{v}"));
        let expression = s(&c["licenses"][0]["expression"]);
        assert!(!expression.is_empty() && !expression.contains('/'), "{c}");
        let checksum = lock
            .get(&(name.clone(), v.clone()))
            .unwrap_or_else(|| panic!("{name} {v} is not in Cargo.lock"));
        match checksum {
            Some(sum) => {
                assert_eq!(c["hashes"][0]["alg"], "SHA-256", "{c}");
                assert_eq!(&s(&c["hashes"][0]["content"]), sum, "{name} {v}");
            }
            None => {
                assert_eq!(name, "mdlr", "only the workspace's library is a path crate");
                assert!(c.get("hashes").is_none());
            }
        }
        assert!(!TEST_ONLY.contains(&name.as_str()), "{name} is test-only");
        listed.insert((name, v));
    }
    for system in ["glibc", "rust-std"] {
        assert!(
            components.iter().any(|c| c["name"] == system),
            "{system} is linked in but not listed"
        );
    }
    let deps = dep_v0(dist::binary());
    let inside = runtime_packages(&deps);
    let only_sbom: Vec<_> = listed.difference(&inside).collect();
    let only_binary: Vec<_> = inside.difference(&listed).collect();
    assert!(
        only_sbom.is_empty() && only_binary.is_empty(),
        "the SBOM and the binary's .dep-v0 disagree:\nonly in the SBOM: {only_sbom:?}\n\
         only in the binary: {only_binary:?}"
    );

    // Its dependency graph: every ref known, every edge one the binary's list has too.
    let by_index: Vec<String> = packages(&deps)
        .iter()
        .map(|p| format!("pkg:cargo/{}@{}", s(&p["name"]), s(&p["version"])))
        .collect();
    let mut edges_inside = BTreeSet::new();
    for (i, p) in packages(&deps).iter().enumerate() {
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let j = d.as_u64().expect("index") as usize;
            edges_inside.insert((by_index[i].clone(), by_index[j].clone()));
        }
    }
    let dependencies = sbom["dependencies"].as_array().expect("dependencies");
    assert_eq!(dependencies.len(), refs.len(), "one entry per component");
    for d in dependencies {
        let from = s(&d["ref"]);
        assert!(refs.contains(&from), "unknown ref {from}");
        for to in d["dependsOn"].as_array().expect("dependsOn") {
            let to = s(to);
            assert!(refs.contains(&to), "{from} depends on unknown {to}");
            if from.starts_with("pkg:cargo/") && to.starts_with("pkg:cargo/") {
                assert!(
                    edges_inside.contains(&(from.clone(), to.clone())),
                    "{from} -> {to} is not in the binary's list"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4. The Debian package and the tarball

#[test]
fn deb_installs_into_a_scratch_root_and_runs() {
    let version = dist::version();
    let deb = dist::file(&format!("mdlr_{}_amd64.deb", version.replacen('-', "~", 1)));
    let fields = [
        "Package",
        "Version",
        "Architecture",
        "Section",
        "Priority",
        "Maintainer",
        "Installed-Size",
        "Depends",
    ];
    let info = text(&run(
        Command::new("dpkg-deb")
            .arg("--field")
            .arg(&deb)
            .args(fields),
        "dpkg",
    ));
    let info: BTreeMap<&str, &str> = info.lines().filter_map(|l| l.split_once(": ")).collect();
    assert_eq!(info.get("Package"), Some(&"mdlr"));
    assert_eq!(
        info.get("Version"),
        Some(&version.replacen('-', "~", 1).as_str())
    );
    assert_eq!(info.get("Architecture"), Some(&"amd64"));
    assert_eq!(info.get("Section"), Some(&"admin"));
    assert_eq!(info.get("Priority"), Some(&"optional"));
    assert!(info.get("Maintainer").is_some_and(|m| m.contains('@')));
    let kib: u64 = info
        .get("Installed-Size")
        .and_then(|k| k.parse().ok())
        .expect("Installed-Size in KiB");
    let size = std::fs::metadata(dist::binary()).expect("binary").len();
    assert!(
        kib * 1024 >= size && kib * 1024 < size + 256 * 1024,
        "{kib} KiB"
    );
    assert_eq!(
        info.get("Depends"),
        None,
        "a static binary depends on nothing"
    );

    // Its files: where Debian puts them, owned by root, with these modes.
    let contents = listing(&text(&run(
        Command::new("dpkg-deb").arg("--contents").arg(&deb),
        "dpkg",
    )));
    let files: Vec<(&str, &str)> = contents
        .iter()
        .filter(|(mode, _, _)| !mode.starts_with('d'))
        .map(|(mode, _, path)| (path.as_str(), mode.as_str()))
        .collect();
    assert_eq!(files, INSTALLED);
    for (mode, owner, path) in &contents {
        assert_eq!(owner, "root/root", "{path}");
        if mode.starts_with('d') {
            assert_eq!(mode, "drwxr-xr-x", "{path}");
        }
    }

    // Installed into a scratch root by dpkg itself (as root or not), it runs.
    let scratch = TempDir::new("deb");
    let root = scratch.join("root");
    for dir in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(root.join("var/lib/dpkg").join(dir)).expect("admin dir");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("status file");
    // dpkg wants ldconfig and start-stop-daemon on PATH, even for a package that
    // needs neither; they live in sbin, which a user's PATH may lack.
    let path = format!(
        "/usr/local/sbin:/usr/sbin:/sbin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let dpkg = |args: &[&str]| {
        let mut command = Command::new("dpkg");
        command
            .arg(format!("--root={}", root.display()))
            .arg(format!("--log={}", scratch.join("dpkg.log").display()))
            .args(["--force-not-root", "--force-script-chrootless"])
            .args(args)
            .env("PATH", &path);
        command
    };
    run(dpkg(&["--install"]).arg(&deb), "dpkg");
    let status = text(&run(&mut dpkg(&["--status", "mdlr"]), "dpkg"));
    assert!(status.contains("Status: install ok installed"), "{status}");
    run(&mut dpkg(&["--verify", "mdlr"]), "dpkg");
    let installed = root.join("usr/bin/mdlr");
    assert!(
        std::fs::read(&installed).expect("installed binary")
            == std::fs::read(dist::binary()).expect("dist binary"),
        "the installed binary is not the release's"
    );
    let version_line = text(&run(
        Command::new(&installed).arg("--version").env_clear(),
        "mdlr",
    ));
    assert!(
        version_line.starts_with(&format!("mdlr {version} (commit ")),
        "{version_line}"
    );
    let man = render_man(&root.join("usr/share/man/man1/mdlr.1.gz"));
    assert!(
        man == render_man(&dist::file("mdlr.1")),
        "the installed man page is not mdlr.1"
    );
    assert!(man.starts_with("MDLR(1)"), "{man}");
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/mdlr"),
        ("zsh", "usr/share/zsh/vendor-completions/_mdlr"),
        ("fish", "usr/share/fish/vendor_completions.d/mdlr.fish"),
    ] {
        assert!(
            std::fs::read(root.join(path)).expect("completion script")
                == mdlr(&["completions", shell]),
            "{path} is not what `mdlr completions {shell}` prints"
        );
    }
    // The copyright file names every crate from crates.io inside.
    let copyright =
        std::fs::read_to_string(root.join("usr/share/doc/mdlr/copyright")).expect("copyright");
    for c in sbom()["components"].as_array().expect("components") {
        if c.get("hashes").is_some() {
            let id = format!("{} {}", s(&c["name"]), s(&c["version"]));
            assert!(copyright.contains(&id), "{id} is not in the copyright file");
        }
    }

    // And it goes away again.
    run(&mut dpkg(&["--purge", "mdlr"]), "dpkg");
    assert!(!installed.exists(), "dpkg --purge left the binary");
}

#[test]
fn tarball_has_the_layout_of_the_deb() {
    let version = dist::version();
    let tarball = dist::file(&format!("mdlr-{version}-x86_64-linux.tar.gz"));
    let deb = dist::file(&format!("mdlr_{}_amd64.deb", version.replacen('-', "~", 1)));
    let top = format!("mdlr-{version}");
    let entries = listing(&text(&run(
        Command::new("tar")
            .args(["--numeric-owner", "-tvzf"])
            .arg(&tarball),
        "tar",
    )));
    for (mode, owner, path) in &entries {
        assert_eq!(owner, "0/0", "{path}");
        assert!(
            path == &top || path.starts_with(&format!("{top}/")),
            "{path} is outside {top}/"
        );
        if mode.starts_with('d') {
            assert_eq!(mode, "drwxr-xr-x", "{path}");
        }
    }
    let files: Vec<(String, &str)> = entries
        .iter()
        .filter(|(mode, _, _)| !mode.starts_with('d'))
        .map(|(mode, _, path)| (path.clone(), mode.as_str()))
        .collect();
    let expected: Vec<(String, &str)> = INSTALLED
        .iter()
        .map(|(path, mode)| (format!("{top}/{path}"), *mode))
        .collect();
    assert_eq!(files, expected);

    // The same bytes as the .deb installs.
    let scratch = TempDir::new("tarball");
    let (from_tar, from_deb) = (scratch.join("tar"), scratch.join("deb"));
    for dir in [&from_tar, &from_deb] {
        std::fs::create_dir_all(dir).expect("create");
    }
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&from_tar)
            .arg("-xzf")
            .arg(&tarball),
        "tar",
    );
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&from_deb),
        "dpkg",
    );
    assert!(
        tree(&from_tar.join(&top)) == tree(&from_deb),
        "the tarball's files differ from the .deb's"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Checksums

#[test]
fn sha256sums_cover_every_artifact() {
    let version = dist::version();
    let sums = std::fs::read_to_string(dist::file("SHA256SUMS")).expect("SHA256SUMS");
    let listed: BTreeMap<&str, &str> = sums
        .lines()
        .map(|l| {
            let (sum, name) = l.split_once("  ").expect("`SUM  NAME` lines");
            (name, sum)
        })
        .collect();
    let mut expected = vec![
        "mdlr".to_owned(),
        format!("mdlr-{version}-x86_64-linux"),
        format!("mdlr-{version}-x86_64-linux.cdx.json"),
        format!("mdlr-{version}-x86_64-linux.tar.gz"),
        "mdlr.1".to_owned(),
        format!("mdlr_{}_amd64.deb", version.replacen('-', "~", 1)),
    ];
    expected.sort();
    assert_eq!(listed.keys().copied().collect::<Vec<_>>(), expected);
    let mut on_disk: Vec<String> = std::fs::read_dir(dist::dir())
        .expect("list the release")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "SHA256SUMS")
        .collect();
    on_disk.sort();
    assert_eq!(
        on_disk, expected,
        "a file of the release is not in SHA256SUMS"
    );
    for (name, sum) in &listed {
        let bytes = std::fs::read(dist::dir().join(name)).expect("read");
        assert_eq!(mdlr_tests::util::sha256_hex(&bytes), *sum, "{name}");
    }
    run(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(dist::dir()),
        "coreutils",
    );
}

// ---------------------------------------------------------------------------------------
// Reproducible

/// Two clones of the commit checked out, at paths of different lengths, each running
/// `cargo xtask dist` from nothing: the same bytes, every file. Slow (two cold builds of
/// the xtask and the release, minutes each on 2 cores):
/// `cargo test -p mdlr-tests --test release -- --ignored`.
#[test]
#[ignore = "two cold release builds from clones (minutes); run with --ignored"]
fn two_builds_from_different_paths_are_byte_identical() {
    let scratch = TempDir::new("repro");
    let source = dist::root();
    let mut sums = Vec::new();
    for place in ["a", "bb/longer-path"] {
        let clone = scratch.join(place).join("mdlr");
        std::fs::create_dir_all(clone.parent().expect("parent")).expect("create");
        run(
            Command::new("git")
                .args(["clone", "--quiet", "--no-hardlinks"])
                .arg(&source)
                .arg(&clone),
            "git",
        );
        // Both use the pinned tools in ~/.cargo/mdlr-tools, as any checkout of this user.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
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
            .current_dir(&clone)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("MDLR_COMMIT");
        mdlr_tests::clean_cargo_env(&mut build);
        run(&mut build, "cargo");
        let dist = clone.join("target/dist");
        sums.push((
            std::fs::read_to_string(dist.join("SHA256SUMS")).expect("SHA256SUMS"),
            tree(&dist),
        ));
    }
    assert_eq!(
        sums[0].0, sums[1].0,
        "SHA256SUMS differ between the two paths"
    );
    assert!(
        sums[0].1 == sums[1].1,
        "the releases differ between the two paths"
    );
}
