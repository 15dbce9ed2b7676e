//! A hostile world: services that echo secrets back, misbehave or lie, and users who
//! pass nonsense. mdlr must never show a secret (issue 4, item 5), must refuse hostile
//! input with the documented exit status and a clear message, and must never panic
//! (item 6).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mdlr::{Credential, DownloadRequest, Endpoints, Gunzip, ResultLink, Secret};
use mdlr_tests::sim::{LibraryFile, SimMachine};
use serde_json::json;

use crate::util::*;

// ---------------------------------------------------------------------------------------
// A scripted server

/// A request as the [`Scripted`] server saw it.
struct Seen {
    /// The request line and headers, as sent.
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or("")
    }

    /// The request target (path and query).
    fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// What the [`Scripted`] server sends back.
enum Reply {
    /// These bytes, as they are (status line, headers and body).
    Raw(Vec<u8>),
    /// A `200` announcing `len` bytes of `fill`, written lazily until the client hangs
    /// up: a body too large to build in memory.
    Flood { len: u64, fill: u8 },
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A loopback HTTP server whose every reply is computed from the request by a script:
/// for what httpmock cannot send (echoes of the request, lazily streamed bodies, bodies
/// cut short). One request per connection. It records every request.
struct Scripted {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let (stop2, seen2) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (script, seen) = (script.clone(), seen2.clone());
                std::thread::spawn(move || serve_one(stream, &*script, &seen));
            }
        });
        Scripted { port, stop, seen }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A result link to `path` here, signature included.
    fn link(&self, path: &str) -> String {
        format!("{}{path}?{LINK_QUERY}", self.base())
    }

    /// The heads of the requests received so far.
    fn heads(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().map(|s| s.head.clone()).collect()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_one(mut stream: TcpStream, script: &Script, seen: &Mutex<Vec<Seen>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let mut request = Seen {
        head: String::from_utf8_lossy(&head).into_owned(),
        body: Vec::new(),
    };
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    request.body = vec![0; length.min(16 << 20)];
    if stream.read_exact(&mut request.body).is_err() {
        return;
    }
    let reply = script(&request);
    seen.lock().unwrap_or_else(|e| e.into_inner()).push(request);
    match reply {
        Reply::Raw(bytes) => {
            let _ = stream.write_all(&bytes);
        }
        Reply::Flood { len, fill } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            );
            let chunk = vec![fill; 256 * 1024];
            let mut left = len;
            let mut ok = stream.write_all(head.as_bytes()).is_ok();
            while ok && left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                ok = stream.write_all(&chunk[..n]).is_ok();
                left -= n as u64;
            }
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// A complete reply: `status`, `headers`, `body`, and `Content-Length` for it.
fn http(status: u16, headers: &[(&str, &str)], body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    let mut r = format!(
        "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

/// Everything the client sent, the `Authorization` line first (so that it lands in any
/// excerpt of the reply): what a careless proxy or a debugging endpoint echoes back.
fn echo(seen: &Seen) -> String {
    let auth = seen
        .head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "you sent {auth} with {} {}",
        seen.head.replace("\r\n", " "),
        String::from_utf8_lossy(&seen.body)
    )
}

/// An API that signs in (`/{tenant}/oauth2/v2.0/token` hands out [`TOKEN`]) and then
/// answers every API call with `status` and a body that echoes the request, the
/// `Authorization` header included: `401` as a Defender JSON error (echo in `message`),
/// `403` with the echo in `message` and `target`, anything else as plain text.
fn echo_api(status: u16) -> Scripted {
    Scripted::start(move |seen| {
        if seen.method() == "POST" && seen.target().ends_with("/oauth2/v2.0/token") {
            return Reply::Raw(http(
                200,
                &[("Content-Type", "application/json")],
                json!({"token_type": "Bearer", "expires_in": 3599, "access_token": TOKEN})
                    .to_string(),
            ));
        }
        let e = echo(seen);
        let json = [("Content-Type", "application/json")];
        Reply::Raw(match status {
            401 => http(401, &json, api_error("Unauthorized", &e).to_string()),
            403 => http(
                403,
                &json,
                json!({"error": {"code": "Forbidden", "message": e, "target": e}}).to_string(),
            ),
            other => http(other, &[("Content-Type", "text/plain")], e),
        })
    })
}

/// A token endpoint that refuses the client secret and quotes the form it was sent
/// (secret included) in `error_description` and `correlation_id`.
fn echo_login() -> Scripted {
    Scripted::start(|seen| {
        let e = echo(seen);
        Reply::Raw(http(
            401,
            &[("Content-Type", "application/json")],
            json!({
                "error": "invalid_client",
                "error_description": format!("AADSTS7000215: Invalid client secret provided: {e}"),
                "correlation_id": e,
            })
            .to_string(),
        ))
    })
}

/// A result host that refuses every link with `403` and quotes the request line
/// (signature included) in the XML `Message`, `x-ms-request-id` and `x-ms-error-code`.
fn echo_blob() -> Scripted {
    Scripted::start(|seen| {
        let line = seen.head.lines().next().unwrap_or("").to_owned();
        Reply::Raw(http(
            403,
            &[
                ("Content-Type", "application/xml"),
                ("x-ms-error-code", &format!("AuthenticationFailed {line}")),
                ("x-ms-request-id", &line),
            ],
            format!(
                "<?xml version=\"1.0\"?><Error><Code>AuthenticationFailed</Code><Message>Signature did not match: {line}</Message></Error>"
            ),
        ))
    })
}

// ---------------------------------------------------------------------------------------
// Finding secrets

/// What kind of secret leaked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Token,
    ClientSecret,
    Signature,
}

/// The secrets to look for, with their kinds: raw and percent-encoded.
struct Secrets(Vec<(Kind, String)>);

impl Secrets {
    fn new(signatures: &[String]) -> Secrets {
        let mut all = vec![
            (Kind::Token, TOKEN.to_owned()),
            (Kind::Token, "tok-SECRET".to_owned()),
            (Kind::ClientSecret, CLIENT_SECRET.to_owned()),
            (Kind::ClientSecret, "cs-SECRET".to_owned()),
            (Kind::Signature, SIG.to_owned()),
        ];
        for s in signatures {
            all.push((Kind::Signature, s.clone()));
            all.push((Kind::Signature, mdlr_tests::server::percent_encode(s)));
        }
        Secrets(all)
    }

    /// The secrets `bytes` shows: known values, and any `sig=` query value that is not
    /// `REDACTED` (whatever signature the service made up).
    fn find(&self, bytes: &[u8]) -> Vec<(Kind, String)> {
        let text = String::from_utf8_lossy(bytes);
        let mut found: Vec<(Kind, String)> = self
            .0
            .iter()
            .filter(|(_, s)| text.contains(s.as_str()))
            .cloned()
            .collect();
        let lower = text.to_ascii_lowercase();
        for (i, _) in lower.match_indices("sig=") {
            let after_separator = i == 0 || matches!(lower.as_bytes()[i - 1], b'?' | b'&');
            // A signature is base64, maybe percent-encoded.
            let value: String = text[i + 4..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '+' | '/' | '='))
                .collect();
            if after_separator && !value.is_empty() && value != "REDACTED" {
                found.push((Kind::Signature, format!("sig={value}")));
            }
        }
        found
    }
}

/// The first line of `text` that shows one of `found`.
fn leaking_line<'a>(found: &[(Kind, String)], text: &'a str) -> &'a str {
    text.lines()
        .find(|l| found.iter().any(|(_, s)| l.contains(s.as_str())))
        .unwrap_or_default()
}

/// Every file under `dir` and its bytes.
fn file_contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let path = dir.join(f);
            let bytes = read(&path);
            (path, bytes)
        })
        .collect()
}

// The simulator signs its links with `base64(noise(mix(seed ^ 0x5349_4753 ^ n), 32))`, n
// counting ids and links from 1 (tests/src/sim/util.rs). The signatures are computed here
// so that a leak of one shows even outside a `sig=`; `sim_signatures_are_known` checks
// the computation against a real link.

/// The first `count` link signatures of a simulator seeded with `seed`.
fn sim_signatures(seed: u64, count: u64) -> Vec<String> {
    use mdlr_tests::util::{base64, mix, noise};
    (1..=count)
        .map(|n| base64(&noise(mix(seed ^ 0x5349_4753 ^ n), 32)))
        .collect()
}

/// The `sig` value of the first link in `text`, percent-decoded.
fn sig_in(text: &str) -> Option<String> {
    let start = text.find("sig=")? + 4;
    let value: String = text[start..]
        .chars()
        .take_while(|c| !matches!(c, '&' | '"') && !c.is_whitespace())
        .collect();
    Some(mdlr_tests::server::percent_decode(&value))
}

// ---------------------------------------------------------------------------------------
// Item 5: no secret anywhere

/// One run of the secrets matrix.
struct Case {
    /// `credential | path | command`, for the report.
    label: String,
    /// The working directory: every file mdlr writes lands under it.
    dir: TempDir,
    /// The exit status it must end with (so that each path is the one meant).
    code: i32,
    /// `link --reveal`: its stdout may show the signature, and must.
    reveal: bool,
}

/// Both credentials: `MDLR_TOKEN`, and an app registration whose token endpoint is at
/// `login`.
fn with_credentials(run: impl Fn() -> Run, login: &str) -> [(&'static str, Run); 2] {
    [
        ("MDLR_TOKEN", run().env("MDLR_TOKEN", TOKEN)),
        (
            "client secret",
            run().client_secret().args(&["--login-url", login]),
        ),
    ]
}

/// Every command at `-vv` with both credentials, on the success paths and on error
/// paths whose replies quote the secrets back: nothing mdlr prints or writes shows a
/// token, a client secret or a signature, except stdout of `link --reveal`; and the
/// result host and redirect targets never see `Authorization`.
#[test]
fn no_secret_leaves_through_any_command() {
    let mut cases: Vec<Case> = Vec::new();
    let mut runs: Vec<Run> = Vec::new();
    let mut add = |label: String, run: Run, dir: TempDir, code: i32| {
        let reveal = label.contains("--reveal");
        runs.push(run);
        cases.push(Case {
            label,
            dir,
            code,
            reveal,
        });
    };
    let words = |args: &[&str]| args.join(" ");

    // --- The result commands against the stand-in (signature SIG) -------------------
    let svc = Service::start();
    svc.token_endpoint(TOKEN, None);
    svc.getfile(
        gzip(b"evidence\n"),
        Some("attachment; filename=\"e.txt.gz\""),
    );
    svc.link(0, "/results/transcript");
    svc.blob("/results/transcript", |then| then.body(SEED));
    let result_commands: &[(&[&str], i32)] = &[
        (&["link", ACTION], 0),
        (&["--json", "link", ACTION, "--index", "1"], 0),
        (&["link", ACTION, "--reveal"], 0),
        (&["--json", "link", ACTION, "--reveal"], 0),
        (&["result", ACTION], 0),
        (&["--json", "result", ACTION], 0),
        (&["result", ACTION, "--raw"], 0),
        (&["result", ACTION, "-o", "t.json"], 0),
        (&["result", ACTION, "--index", "1"], 0),
        (
            &["result", ACTION, "--index", "1", "--raw", "-o", "raw/"],
            0,
        ),
        (&["--json", "result", ACTION, "--all", "-o", "all"], 0),
        (&["action", ACTION], 0),
        (&["--json", "action", ACTION, "--wait"], 0),
    ];
    for (args, code) in result_commands {
        for (cred, run) in with_credentials(|| svc.mdlr(&["-vv"]).args(args), &svc.api_url()) {
            let dir = TempDir::new();
            let run = run.cwd(dir.path());
            add(format!("{cred} | ok | {}", words(args)), run, dir, *code);
        }
    }

    // --- Redirects from the result host to another loopback server ------------------
    let moved = Service::start();
    moved.token_endpoint(TOKEN, None);
    moved.action(done_action());
    let target_transcript = RawServer::start(RawServer::reply(SEED.len(), "", SEED.as_bytes()));
    let gz = gzip(b"moved evidence\n");
    let target_file = RawServer::start(RawServer::reply(
        gz.len(),
        "Content-Disposition: attachment; filename=\"m.txt.gz\"\r\n",
        &gz,
    ));
    for (index, path, target) in [
        (0, "/results/moved-t", &target_transcript),
        (1, "/results/moved-f", &target_file),
    ] {
        moved.link(index, path);
        let location = target.url("/elsewhere");
        moved.blob(path, |then| then.status(302).header("location", location));
    }
    for args in [
        &["result", ACTION][..],
        &["result", ACTION, "--index", "1", "-o", "out/"],
    ] {
        for (cred, run) in with_credentials(|| moved.mdlr(&["-vv"]).args(args), &moved.api_url()) {
            let dir = TempDir::new();
            let run = run.cwd(dir.path());
            add(format!("{cred} | redirect | {}", words(args)), run, dir, 0);
        }
    }

    // --- A download cut short, then refused: partial files stay for a rerun ---------
    let full = gzip(&b"partial evidence\n".repeat(20_000));
    let half = full.len() / 2;
    let cut = Scripted::start(move |seen| match seen.header("range") {
        None => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"0x8D9\"\r\nContent-Disposition: attachment; filename=\"p.txt.gz\"\r\nConnection: close\r\n\r\n",
                full.len()
            )
            .into_bytes();
            r.extend_from_slice(&full[..half]);
            Reply::Raw(r)
        }
        Some(_) => Reply::Raw(http(500, &[("Content-Type", "text/plain")], echo(seen))),
    });
    let partial = Service::start();
    partial.token_endpoint(TOKEN, None);
    partial.action(done_action());
    partial.link_to(1, &cut.link("/results/cut"));
    let args = [
        "--retries",
        "1",
        "result",
        ACTION,
        "--index",
        "1",
        "-o",
        "out/",
    ];
    for (cred, run) in with_credentials(|| partial.mdlr(&["-vv"]).args(&args), &partial.api_url()) {
        let dir = TempDir::new();
        let run = run.cwd(dir.path());
        add(
            format!("{cred} | cut short | {}", words(&args)),
            run,
            dir,
            69,
        );
    }

    // --- The live response commands against the simulator ----------------------------
    let mut machines = SimMachine::many(14);
    for m in &mut machines[12..] {
        // Somebody else's action runs there: something to cancel.
        m.busy_for = Some(Duration::from_secs(24 * 3600));
    }
    let mut config = sim_config(machines);
    config.token = TOKEN.to_owned();
    config.client_secret = Some(CLIENT_SECRET.to_owned());
    config.library.push(LibraryFile::new("old-0.ps1", b"'old'"));
    config.library.push(LibraryFile::new("old-1.ps1", b"'old'"));
    let seed = config.seed;
    let sim = Sim::start(config);
    let busy: Vec<String> = sim
        .sim
        .actions()
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(busy.len(), 2, "the busy machines' actions");
    let login = sim.sim.authority_url();
    for (c, (cred, secret)) in [("MDLR_TOKEN", false), ("client secret", true)]
        .into_iter()
        .enumerate()
    {
        // Each credential has machines of its own: one session per machine.
        let host = |n: usize| sim.machine(6 * c + n).dns_name;
        let (h1, h2, h3, h4, h5, h6) = (host(1), host(2), host(3), host(4), host(5), host(6));
        let id1 = sim.machine(6 * c + 1).id;
        let upload = format!("new-{c}.ps1");
        let old = format!("old-{c}.ps1");
        let commands: Vec<(Vec<String>, bool)> = [
            (vec!["run", &h1, "--script", "x.ps1", "--args", "-v"], true),
            (vec!["run", &h2, &h3, "--script", "x.ps1"], true),
            (
                vec![
                    "--json",
                    "run",
                    &h4,
                    "--script",
                    "x.ps1",
                    "--get",
                    "C:\\e.txt",
                    "-o",
                    "out",
                ],
                true,
            ),
            (vec!["getfile", &h5, "C:\\f.txt", "-o", "got/"], true),
            (vec!["putfile", &h6, "x.ps1"], true),
            (vec!["cancel", &busy[c], "--comment", "stop"], false),
            (vec!["actions"], false),
            (vec!["--json", "actions", "--machine", &h1], false),
            (vec!["machines"], false),
            (vec!["machines", "--name", &id1], false),
            (vec!["--json", "machines", "--name", &h2], false),
            (vec!["library", "list"], false),
            (
                vec!["library", "upload", &upload, "--description", "d"],
                false,
            ),
            (vec!["library", "delete", &old], false),
        ]
        .into_iter()
        .map(|(a, live)| (a.into_iter().map(str::to_owned).collect(), live))
        .collect();
        for (args, live) in commands {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // Options go anywhere on the line: -vv last.
            let run = if live {
                sim.live(&args)
            } else {
                sim.mdlr(&args)
            };
            let mut run = run.arg("-vv");
            if secret {
                run = run.client_secret().args(&["--login-url", &login]);
            }
            let dir = TempDir::new();
            write(dir.join(&upload), "Write-Output 'new'\r\n");
            let run = run.cwd(dir.path());
            add(
                format!("{cred} | simulator | {}", words(&args)),
                run,
                dir,
                0,
            );
        }
    }
    for topic in [&["help"][..], &["help", "result"], &["--help"], &["-V"]] {
        for (cred, run) in with_credentials(|| Run::new(&["-vv"]).args(topic), "http://127.0.0.1:9")
        {
            let dir = TempDir::new();
            let run = run.cwd(dir.path());
            add(format!("{cred} | help | {}", words(topic)), run, dir, 0);
        }
    }

    // --- Error paths: replies that quote the secrets back -----------------------------
    let machine = SimMachine::new(1).id;
    let every_api_command: Vec<Vec<&str>> = vec![
        vec!["link", ACTION],
        vec!["--json", "link", ACTION, "--reveal"],
        vec!["result", ACTION],
        vec!["result", ACTION, "--index", "1", "-o", "out/"],
        vec!["result", ACTION, "--raw"],
        vec!["action", ACTION, "--wait", "--poll-interval", "10ms"],
        vec!["actions"],
        vec!["machines"],
        vec!["machines", "--name", "host1.contoso.com"],
        vec!["cancel", ACTION],
        vec!["run", &machine, "--script", "x.ps1"],
        vec![
            "run",
            "host1.contoso.com",
            &machine,
            "--script",
            "x.ps1",
            "-o",
            "out",
        ],
        vec!["getfile", &machine, "C:\\x.txt", "-o", "got"],
        vec!["putfile", &machine, "x.ps1"],
        vec!["library", "list"],
        vec!["library", "upload", "up.ps1", "--description", "d"],
        vec!["library", "delete", "x.ps1"],
    ];
    let echoes: Vec<(u16, i32, Scripted)> = vec![
        (401, 77, echo_api(401)),
        (403, 77, echo_api(403)),
        (500, 69, echo_api(500)),
    ];
    for (status, code, api) in &echoes {
        for args in &every_api_command {
            let base = || Run::new(&["-vv", "--retries", "1", "--api-url", &api.base()]).args(args);
            for (cred, run) in with_credentials(base, &api.base()) {
                let dir = TempDir::new();
                write(dir.join("up.ps1"), "Write-Output 'up'\r\n");
                let run = run.cwd(dir.path());
                let label = format!("{cred} | {status} echo | {}", words(args));
                add(label, run, dir, *code);
            }
        }
    }
    let login = echo_login();
    for args in [
        &["action", ACTION][..],
        &["result", ACTION, "--index", "1"],
        &["run", &machine, "--script", "x.ps1"],
        &["library", "list"],
    ] {
        let dir = TempDir::new();
        let run = Run::new(&[
            "-vv",
            "--api-url",
            &login.base(),
            "--login-url",
            &login.base(),
        ])
        .args(args)
        .client_secret()
        .cwd(dir.path());
        add(
            format!("client secret | token endpoint echo | {}", words(args)),
            run,
            dir,
            77,
        );
    }
    let refusing = Service::start();
    refusing.token_endpoint(TOKEN, None);
    refusing.action(done_action());
    let blob = echo_blob();
    refusing.link_to(0, &blob.link("/results/t"));
    refusing.link_to(1, &blob.link("/results/f"));
    for args in [
        &["result", ACTION][..],
        &["result", ACTION, "--index", "1", "-o", "out/"],
    ] {
        for (cred, run) in
            with_credentials(|| refusing.mdlr(&["-vv"]).args(args), &refusing.api_url())
        {
            let dir = TempDir::new();
            let run = run.cwd(dir.path());
            add(
                format!("{cred} | result host 403 echo | {}", words(args)),
                run,
                dir,
                77,
            );
        }
    }
    // `mdlr fetch` of a bare link, on the command line and on stdin, with no
    // credential at all: the link's signature stays hidden whether the host answers or
    // quotes the request back in its refusal.
    for (what, link, code) in [
        ("ok", svc.blob_url("/results/file"), 0),
        ("result host 403 echo", blob.link("/results/f"), 77),
    ] {
        for on_stdin in [false, true] {
            let dir = TempDir::new();
            let run = match on_stdin {
                false => Run::new(&["-vv", "fetch", &link, "-o", "out/"]),
                true => Run::new(&["-vv", "fetch", "-", "-o", "out/"]).stdin(link.clone()),
            };
            let label = format!("no credential | {what} | fetch (stdin: {on_stdin})");
            add(label, run.cwd(dir.path()), dir, code);
        }
    }

    // --- Run them all, a few at a time ------------------------------------------------
    let outcomes = run_all(runs);

    // The simulator's signatures are known to the test: check the copy of its signer on
    // the link made last (its counter is the highest, so every earlier one is in too).
    let signatures = sim_signatures(seed, 1000);
    let done = sim
        .sim
        .actions()
        .into_iter()
        .find(|a| a["status"] == "Succeeded" && a["commands"][0]["commandStatus"] == "Completed")
        .expect("a finished action in the simulator");
    let id = done["id"].as_str().expect("an id").to_owned();
    let revealed = sim.mdlr(&["link", &id, "--reveal"]).status(0);
    let sig = sig_in(&revealed.stdout).expect("a signature in the revealed link");
    assert!(
        signatures.contains(&sig),
        "the simulator signs links differently now: update sim_signatures ({sig:?} unknown)"
    );

    let secrets = Secrets::new(&signatures);
    let mut problems = Vec::new();
    let (mut partial_files, mut journals) = (0, 0);
    for (case, out) in cases.iter().zip(&outcomes) {
        if out.code != Some(case.code) {
            problems.push(format!(
                "{}: exit status {:?}, expected {}\n--- stdout\n{}--- stderr\n{}",
                case.label, out.code, case.code, out.stdout, out.stderr
            ));
        }
        let mut seen_sig = false;
        for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let mut found = secrets.find(text.as_bytes());
            if case.reveal && name == "stdout" {
                seen_sig = found.iter().any(|(k, _)| *k == Kind::Signature);
                found.retain(|(k, _)| *k != Kind::Signature);
            }
            if !found.is_empty() {
                let line = leaking_line(&found, text);
                problems.push(format!("{}: {name} shows {found:?}:\n  {line}", case.label));
            }
        }
        if case.reveal && case.code == 0 && !seen_sig {
            problems.push(format!("{}: the revealed link is missing", case.label));
        }
        for (path, bytes) in file_contents(case.dir.path()) {
            let name = path.to_string_lossy();
            partial_files += usize::from(name.contains(".mdlr-part"));
            journals += usize::from(name.ends_with(".mdlr-journal.jsonl"));
            let found = secrets.find(&bytes);
            if !found.is_empty() {
                problems.push(format!(
                    "{}: file {} shows {found:?}",
                    case.label,
                    path.display()
                ));
            }
        }
    }
    assert!(
        partial_files > 0,
        "the cut-short downloads left partial files"
    );
    assert!(journals > 0, "the batches with -o wrote journals");
    for server in [&target_transcript, &target_file] {
        let heads = server.requests();
        assert!(!heads.is_empty(), "the redirect target was asked");
        for head in heads {
            assert!(
                !head.to_ascii_lowercase().contains("authorization"),
                "a redirect target received Authorization:\n{head}"
            );
        }
    }
    for head in cut.heads().iter().chain(&blob.heads()) {
        assert!(
            !head.to_ascii_lowercase().contains("authorization"),
            "a result host received Authorization:\n{head}"
        );
    }
    assert!(
        problems.is_empty(),
        "{} of {} runs went wrong:\n\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n\n")
    );
}

/// Runs every one, four at a time, and returns their outcomes in order.
fn run_all(runs: Vec<Run>) -> Vec<Outcome> {
    let count = runs.len();
    let queue = Mutex::new(runs.into_iter().enumerate());
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((i, run)) = next else { break };
                    let out = run.run();
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(out);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|o| o.expect("every case ran"))
        .collect()
}

/// What the library shows of itself — `Debug` of credentials, secrets, links, clients,
/// requests and errors, and `Display` of errors from replies that quote the secrets —
/// never holds a secret.
#[test]
fn library_values_never_show_secrets() {
    let link = ResultLink::new(format!("https://h.blob.core.windows.net/c/b?{LINK_QUERY}"));
    let token = Credential::token(TOKEN);
    let app = Credential::client_secret(TENANT, CLIENT_ID, CLIENT_SECRET);
    let client = |c: &Credential| mdlr::Client::builder(c.clone()).build().expect("builds");
    let request = DownloadRequest::to_dir(".")
        .gunzip(Gunzip::On)
        .fallback_name("x");
    let mut shown = vec![
        format!("{:?}", Secret::new(TOKEN)),
        format!("{:?}", Some(Secret::new(CLIENT_SECRET))),
        format!("{token:?}"),
        format!("{token:#?}"),
        format!("{app:?}"),
        format!("{app:#?}"),
        format!("{link:?}"),
        format!("{link:#?}"),
        format!("{:?}", client(&token)),
        format!("{:#?}", client(&app)),
        format!("{request:?}"),
        format!("{:?}", link.expires()),
        link.redacted(),
        mdlr::secret::redact_url(link.expose()),
    ];
    // Errors made of replies that quote the secrets back.
    for status in [401, 403, 500] {
        let api = echo_api(status);
        let endpoints = Endpoints {
            authority: api.base(),
            ..Endpoints::default().with_api_base(&api.base())
        };
        for c in [&token, &app] {
            let e = fast_client(c.clone(), endpoints.clone())
                .action(ACTION)
                .expect_err("refused");
            shown.push(format!("{e}"));
            shown.push(format!("{e:?}"));
        }
    }
    let login = echo_login();
    let endpoints = Endpoints {
        authority: login.base(),
        ..Endpoints::default().with_api_base(&login.base())
    };
    let e = fast_client(app.clone(), endpoints)
        .action(ACTION)
        .expect_err("refused");
    shown.push(format!("{e}"));
    shown.push(format!("{e:?}"));
    let svc = Service::start();
    svc.action(done_action());
    let blob = echo_blob();
    svc.link_to(0, &blob.link("/results/t"));
    let e = svc.client().transcript(ACTION, 0).expect_err("refused");
    shown.push(format!("{e}"));
    shown.push(format!("{e:?}"));

    let secrets = Secrets::new(&[]);
    let leaks: Vec<String> = shown
        .iter()
        .filter(|text| !secrets.find(text.as_bytes()).is_empty())
        .cloned()
        .collect();
    assert!(leaks.is_empty(), "secrets shown:\n{}", leaks.join("\n"));
    assert!(format!("{app:?}").contains(CLIENT_ID));
    assert!(format!("{link:?}").contains("sig=REDACTED"));
}

/// What the fuzz targets found (their inputs are in `fuzz/seeds/*/regression-*`).
#[test]
fn fuzz_findings_stay_fixed() {
    // `safe_file_name`: dots and blanks in turn at the start left a hidden name.
    for raw in [
        ". .;",
        ". .bashrc",
        ".\u{2003}.bashrc",
        ". . .profile",
        ".. ..x",
    ] {
        let name = mdlr::files::safe_file_name(raw);
        assert!(
            name.as_deref().is_none_or(|n| !n.starts_with('.')),
            "{raw:?} gave the hidden name {name:?}"
        );
    }
    // `ResultLink::expires_at`: a year far ahead overflowed (a panic in debug builds, a
    // wrong time in release ones).
    for se in [
        "555555555555555-01-01T00:00:00Z",
        "-555555555555555-01-01T00:00:00Z",
    ] {
        let link = ResultLink::new(format!("https://h/c/b?se={se}&sig=x"));
        let read = std::panic::catch_unwind(|| link.expires_at());
        assert!(read.is_ok(), "se={se} made expires_at panic");
    }
}

#[test]
fn sim_signature_copy_is_exact() {
    // The copy of the simulator's base64 is standard base64.
    assert_eq!(mdlr_tests::util::base64(b"f"), "Zg==");
    assert_eq!(mdlr_tests::util::base64(b"foo"), "Zm9v");
    assert_eq!(sim_signatures(0, 3).len(), 3);
}

// ---------------------------------------------------------------------------------------
// Item 6: hostile input

/// What a row's misbehaving service needs kept alive, and where its API is when it is
/// not the stand-in's.
#[derive(Default)]
struct Served {
    keep: Vec<Scripted>,
    api: Option<String>,
}

type Serve = Box<dyn Fn(&Service) -> Served + Send + Sync>;

/// One row of the hostile table.
struct Row {
    name: &'static str,
    /// How the service (or the user) misbehaves.
    misbehaves: String,
    serve: Serve,
    /// The command, run in `work/` inside the stand-in's scratch directory.
    args: Vec<String>,
    code: i32,
    /// A fragment of what mdlr says (stdout and stderr together).
    message: String,
    /// Every file the scratch directory holds afterwards, if checked.
    files: Option<Vec<String>>,
    /// Run with `work/full` a 64 KiB tmpfs.
    full_disk: bool,
}

fn row(
    name: &'static str,
    misbehaves: &str,
    serve: Serve,
    args: &[&str],
    code: i32,
    message: &str,
) -> Row {
    Row {
        name,
        misbehaves: misbehaves.to_owned(),
        serve,
        args: args.iter().map(|a| a.to_string()).collect(),
        code,
        message: message.to_owned(),
        files: None,
        full_disk: false,
    }
}

/// A service whose action reply is `body`, sent as JSON with status `status`.
fn action_reply(status: u16, body: impl Into<Vec<u8>>) -> Serve {
    let body = body.into();
    Box::new(move |svc| {
        svc.api.mock(|when, then| {
            when.method("GET")
                .path(format!("/api/machineactions/{ACTION}"));
            then.status(status)
                .header("content-type", "application/json")
                .body(body.clone());
        });
        Served::default()
    })
}

/// A finished action whose link reply for index 0 is `body`.
fn link_reply(body: impl Into<Vec<u8>>) -> Serve {
    let body = body.into();
    Box::new(move |svc| {
        svc.action(done_action());
        svc.api.mock(|when, then| {
            when.method("GET").path(seed_path(0));
            then.status(200)
                .header("content-type", "application/json")
                .body(body.clone());
        });
        Served::default()
    })
}

/// A finished RunScript at index 0 whose transcript is `body`.
fn transcript_reply(body: impl Into<Vec<u8>>) -> Serve {
    let body = body.into();
    Box::new(move |svc| {
        svc.transcript(body.clone());
        Served::default()
    })
}

/// A finished GetFile at index 1 whose result is `body` with `disposition`.
fn getfile_reply(body: Vec<u8>, disposition: Option<&str>) -> Serve {
    let disposition = disposition.map(str::to_owned);
    Box::new(move |svc| {
        svc.getfile(body.clone(), disposition.as_deref());
        Served::default()
    })
}

/// A finished action whose result links (0 and 1) lead to `path` on the result host,
/// which answers as `reply` says.
fn blob_reply(
    reply: impl Fn(&Service) -> (u16, Vec<(String, String)>) + Send + Sync + 'static,
) -> Serve {
    Box::new(move |svc| {
        svc.action(done_action());
        svc.link(0, "/results/r");
        svc.link(1, "/results/r");
        let (status, headers) = reply(svc);
        svc.blob("/results/r", |then| {
            let mut then = then.status(status);
            for (k, v) in &headers {
                then = then.header(k, v);
            }
            then.body("")
        });
        Served::default()
    })
}

/// A finished GetFile at index 1 on a [`Scripted`] result host that sends `reply`.
fn raw_getfile(reply: Vec<u8>) -> Serve {
    Box::new(move |svc| {
        svc.action(done_action());
        let reply = reply.clone();
        let host = Scripted::start(move |_| Reply::Raw(reply.clone()));
        svc.link_to(1, &host.link("/results/raw"));
        Served {
            keep: vec![host],
            api: None,
        }
    })
}

/// The evidence every GetFile row collects.
fn evidence() -> Vec<u8> {
    b"evidence line\n".repeat(700)
}

/// A row: a GetFile result sent with `disposition` lands in `work/` as `name`, and
/// nothing appears anywhere else.
fn disposition_row(name: &'static str, disposition: &str, saved: &str) -> Row {
    let mut r = row(
        name,
        &format!("Content-Disposition: {disposition}"),
        getfile_reply(gzip(&evidence()), Some(disposition)),
        &["result", ACTION, "--index", "1"],
        0,
        &format!("saved {saved} ("),
    );
    r.files = Some(vec![format!("work/{saved}")]);
    r
}

fn hostile_rows() -> Vec<Row> {
    let none = || -> Serve { Box::new(|_| Served::default()) };
    let done = || -> Serve {
        Box::new(|svc| {
            svc.action(done_action());
            Served::default()
        })
    };
    let mut action = done_action();
    action["status"] = json!(7);
    let status_number = action.to_string();
    let mut action = done_action();
    action["commands"] = json!("x");
    let commands_text = action.to_string();
    let mut action = done_action();
    action["commands"][0]["index"] = json!(-1);
    let negative_index = action.to_string();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_action =
        done_action()
            .to_string()
            .replacen('{', &format!("{{\"brandNew\": {deep}, "), 1);
    let deep_transcript =
        format!(r#"{{"exit_code": 0, "script_output": "x", "brandNew": {deep}}}"#);
    let gz = gzip(&evidence());
    let mut corrupt = gz.clone();
    for b in &mut corrupt[12..40] {
        *b ^= 0x5a;
    }
    let cut = gz[..gz.len() / 2].to_vec();
    let long_name = "A".repeat(5000);
    let mut rows = vec![
        // --- The API ------------------------------------------------------------------
        row(
            "malformed JSON",
            "the action reply stops in the middle of a string",
            action_reply(200, r#"{"id": "x", "status": "Succ"#),
            &["result", ACTION],
            65,
            "malformed machine action: EOF while parsing a string",
        ),
        row(
            "oversized JSON",
            "the action reply is 65 MiB (of spaces), over the 64 MiB cap",
            Box::new(|_| {
                let api = Scripted::start(|_| Reply::Flood {
                    len: 65 << 20,
                    fill: b' ',
                });
                Served {
                    api: Some(api.base()),
                    keep: vec![api],
                }
            }),
            &["result", ACTION],
            65,
            "malformed machine action: larger than the 67108864-byte limit",
        ),
        row(
            "deeply nested JSON",
            "an unknown field of the action nests 100 000 lists (skipped without recursion)",
            action_reply(200, deep_action),
            &["action", ACTION],
            0,
            "status    Succeeded",
        ),
        row(
            "deeply nested transcript",
            "the transcript nests 100 000 lists",
            transcript_reply(deep_transcript),
            &["result", ACTION],
            65,
            "malformed transcript: not a JSON document: recursion limit exceeded",
        ),
        row(
            "JSON that is not UTF-8",
            "the action reply holds the byte 0xFF",
            action_reply(200, &b"{\"id\": \"\xff\"}"[..]),
            &["action", ACTION],
            65,
            "malformed machine action",
        ),
        row(
            "HTML error page",
            "a proxy answers 502 with an HTML page",
            action_reply(
                502,
                "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
            ),
            &["result", ACTION],
            69,
            "the API answered 502: an HTML or XML page instead of JSON",
        ),
        row(
            "empty error",
            "a gateway answers 503 with no body",
            action_reply(503, ""),
            &["result", ACTION],
            69,
            "the API answered 503: an empty reply",
        ),
        row(
            "status is a number",
            "the action says \"status\": 7",
            action_reply(200, status_number),
            &["result", ACTION],
            65,
            "malformed machine action: invalid type: integer `7`, expected a string",
        ),
        row(
            "commands is text",
            "the action says \"commands\": \"x\"",
            action_reply(200, commands_text),
            &["result", ACTION],
            65,
            "malformed machine action: invalid type: string \"x\", expected a sequence",
        ),
        row(
            "negative command index",
            "a command says \"index\": -1",
            action_reply(200, negative_index),
            &["action", ACTION],
            65,
            "malformed machine action: invalid value: integer `-1`, expected u32",
        ),
        row(
            "link is a number",
            "the link reply says \"value\": 7",
            link_reply(r#"{"value": 7}"#),
            &["link", ACTION],
            65,
            "malformed download link reply: it has no `value` link",
        ),
        row(
            "link to plain http://",
            "the link points to http://results.example.com",
            link_reply(json!({"value": format!("http://results.example.com/c/b?{LINK_QUERY}")}).to_string()),
            &["result", ACTION],
            78,
            "refusing plain http:// for download link http://results.example.com/c/b?se=2021-02-04T16%3A13%3A50Z&sp=r&sv=2019-07-07&sr=b&sig=REDACTED",
        ),
        row(
            "link expiring in year 10^15",
            "the link says se=999999999999999-01-01T00:00:00Z",
            Box::new(|svc| {
                svc.action(done_action());
                let url = format!(
                    "{}/results/far?se=999999999999999-01-01T00%3A00%3A00Z&sp=r&sr=b&sig={SIG}",
                    svc.blob.base_url()
                );
                svc.link_to(1, &url);
                svc.blob("/results/far", |then| then.body(gzip(&evidence())));
                Served::default()
            }),
            &["result", ACTION, "--index", "1"],
            0,
            "saved {ID}-1 (9800 bytes)",
        ),
        row(
            "link that is no URL",
            "the link is javascript:alert(1)",
            link_reply(r#"{"value": "javascript:alert(1)"}"#),
            &["result", ACTION],
            78,
            "is not an absolute URL",
        ),
        row(
            "next page elsewhere",
            "a list's @odata.nextLink points to another host",
            Box::new(|svc| {
                svc.api.mock(|when, then| {
                    when.method("GET").path("/api/machineactions");
                    then.status(200).json_body(json!({
                        "value": [done_action()],
                        "@odata.nextLink": "https://evil.example.com/api/machineactions?$skip=1",
                    }));
                });
                Served::default()
            }),
            &["actions", "--top", "5"],
            65,
            "its next page is not on the API host: https://evil.example.com/api/machineactions?$skip=1",
        ),
        row(
            "absurd Retry-After",
            "a 429 says Retry-After: 18446744073709551615",
            Box::new(|svc| {
                svc.api.mock(|when, then| {
                    when.method("GET").path(format!("/api/machineactions/{ACTION}"));
                    then.status(429)
                        .header("retry-after", "18446744073709551615")
                        .json_body(api_error("TooManyRequests", "slow down"));
                });
                Served::default()
            }),
            &["--retries", "3", "action", ACTION],
            75,
            "the API answered 429: slow down (retry after 18446744073709551615 s)",
        ),
        // --- Transcripts --------------------------------------------------------------
        row(
            "truncated transcript",
            "the transcript stops halfway",
            transcript_reply(&SEED.as_bytes()[..SEED.len() / 2]),
            &["result", ACTION],
            65,
            "malformed transcript: not a JSON document",
        ),
        row(
            "transcript not UTF-8",
            "the transcript holds the bytes 0xFF 0xFE",
            transcript_reply(&b"{\"exit_code\": 0, \"script_output\": \"\xff\xfe\"}"[..]),
            &["result", ACTION],
            65,
            "malformed transcript: not UTF-8 text",
        ),
        row(
            "exit_code is an object",
            "the transcript says \"exit_code\": {}",
            transcript_reply(r#"{"exit_code": {"value": 3}, "script_output": "x"}"#),
            &["result", ACTION],
            65,
            "malformed transcript: `exit_code` should be a number, found an object",
        ),
        row(
            "exit_code too large",
            "the transcript says \"exit_code\": 99999999999999999999",
            transcript_reply(r#"{"exit_code": 99999999999999999999, "script_output": "x"}"#),
            &["result", ACTION],
            65,
            "malformed transcript: `exit_code` is not a whole number",
        ),
        row(
            "transcript is HTML",
            "the result host sends an HTML page as the transcript",
            transcript_reply("<html><body>Sign in</body></html>"),
            &["result", ACTION],
            65,
            "malformed transcript: not a JSON document",
        ),
        // --- The result host ----------------------------------------------------------
        row(
            "redirect to plain http://",
            "the result host redirects to http://results.example.com",
            blob_reply(|_| {
                (
                    302,
                    vec![("location".into(), format!("http://results.example.com/x?{LINK_QUERY}"))],
                )
            }),
            &["result", ACTION],
            78,
            "refusing plain http:// for redirect target http://results.example.com/x?se=2021-02-04T16%3A13%3A50Z&sp=r&sv=2019-07-07&sr=b&sig=REDACTED",
        ),
        row(
            "redirect loop",
            "the result host redirects to itself",
            blob_reply(|svc| (302, vec![("location".into(), svc.blob_url("/results/r"))])),
            &["result", ACTION, "--index", "1"],
            69,
            "more than 5 redirects",
        ),
        row(
            "result gone",
            "the result host answers 404",
            blob_reply(|_| (404, vec![])),
            &["result", ACTION],
            66,
            "the result host answered 404: no such result",
        ),
        row(
            "corrupt gzip",
            "28 bytes of the GetFile gzip stream are flipped",
            getfile_reply(corrupt, Some("attachment; filename=\"e.txt.gz\"")),
            &["result", ACTION, "--index", "1"],
            65,
            "malformed gzip stream",
        ),
        row(
            "gzip cut short",
            "the GetFile gzip stream ends halfway (and says so in Content-Length)",
            getfile_reply(cut, Some("attachment; filename=\"e.txt.gz\"")),
            &["result", ACTION, "--index", "1"],
            65,
            "malformed gzip stream",
        ),
        row(
            "NUL in a header",
            "Content-Disposition holds a raw NUL byte",
            raw_getfile(
                [
                    &b"HTTP/1.1 200 OK\r\nContent-Length: "[..],
                    gz.len().to_string().as_bytes(),
                    b"\r\nContent-Disposition: attachment; filename=\"a\0b.txt.gz\"\r\nConnection: close\r\n\r\n",
                    &gz,
                ]
                .concat(),
            ),
            &["result", ACTION, "--index", "1"],
            65,
            "malformed reply: it is not valid HTTP",
        ),
        disposition_row("name with ../", "attachment; filename=\"../../evil.txt.gz\"", "evil.txt"),
        disposition_row("name with ..\\", "attachment; filename=\"..\\\\..\\\\evil.txt.gz\"", "evil.txt"),
        disposition_row("absolute name", "attachment; filename=\"/etc/cron.d/evil.gz\"", "evil"),
        disposition_row("drive letter", "attachment; filename=\"C:\\\\Windows\\\\evil.txt.gz\"", "evil.txt"),
        disposition_row("drive-relative name", "attachment; filename=\"C:evil.txt.gz\"", "evil.txt"),
        disposition_row("encoded ../", "attachment; filename*=UTF-8''%2F..%2F..%2Fevil.txt.gz", "evil.txt"),
        disposition_row(
            "encoded name wins",
            "attachment; filename=\"ok.txt.gz\"; filename*=UTF-8''..%5C..%5Cevil.txt.gz",
            "evil.txt",
        ),
        disposition_row("encoded NUL", "attachment; filename*=UTF-8''nul%00byte.txt.gz", "nulbyte.txt"),
        disposition_row("hidden name", "attachment; filename=\".bashrc.gz\"", "bashrc"),
        disposition_row("hidden behind `. .`", "attachment; filename=\". .bashrc.gz\"", "bashrc"),
        disposition_row("name ..", "attachment; filename=\"..\"", &format!("{ACTION}-1")),
        disposition_row("name ending in /", "attachment; filename=\"evil/\"", &format!("{ACTION}-1")),
        // --- Terminal escapes: what the service says reaches a terminal ---------------
        disposition_row(
            "escapes in a file name",
            "attachment; filename*=UTF-8''%1B%5D0%3Bpwned%07%1B%5B2Je.txt.gz",
            "]0;pwned[2Je.txt",
        ),
        row(
            "escapes in an API error",
            "a 404's message sets the terminal title and clears the screen",
            action_reply(
                404,
                api_error("ResourceNotFound", "\u{1b}]0;pwned\u{7}\u{1b}[2Jgone").to_string(),
            ),
            &["action", ACTION],
            66,
            "gone",
        ),
        row(
            "escapes in an action",
            "the action's requestor sets the terminal title and clears the screen",
            action_reply(200, {
                let mut a = done_action();
                a["requestor"] = json!("\u{1b}]0;pwned\u{7}\u{1b}[2Jevil@contoso.com");
                a.to_string()
            }),
            &["action", ACTION],
            0,
            "evil@contoso.com",
        ),
        // --- The user -----------------------------------------------------------------
        row("action id ../x", "ACTION_ID is ../x", none(), &["result", "../x"], 64, "\"../x\" is not a machine action id"),
        row("action id with a space", "ACTION_ID is `a b`", none(), &["link", "a b"], 64, "\"a b\" is not a machine action id"),
        row("empty action id", "ACTION_ID is empty", none(), &["action", ""], 64, "\"\" is not a machine action id"),
        row("negative index", "--index -1", none(), &["result", ACTION, "--index", "-1"], 64, "--index takes a command index (0, 1, 2, ...), not \"-1\""),
        row("huge index", "--index 99999999999", none(), &["link", ACTION, "--index", "99999999999"], 64, "--index takes a command index (0, 1, 2, ...), not \"99999999999\""),
        row("index past the commands", "--index 5 of an action with 2 commands", done(), &["result", ACTION, "--index", "5"], 66, "has no command at index 5 (it has 2)"),
        row(
            "directory under a file",
            "-o names a directory below a regular file",
            getfile_reply(gzip(&evidence()), None),
            &["result", ACTION, "--index", "1", "-o", "file/sub/"],
            74,
            "cannot create directory file/sub/",
        ),
        row(
            "file under a file",
            "-o names a file below a regular file",
            getfile_reply(gzip(&evidence()), None),
            &["result", ACTION, "--index", "1", "-o", "file/e.txt"],
            74,
            "cannot write file/",
        ),
        row(
            "output in /proc",
            "-o names a new file in /proc",
            getfile_reply(gzip(&evidence()), None),
            &["result", ACTION, "--index", "1", "-o", "/proc/mdlr-hostile.txt"],
            74,
            "cannot write /proc/",
        ),
        row(
            "output is /dev/full",
            "-o /dev/full, which exists",
            getfile_reply(gzip(&evidence()), None),
            &["result", ACTION, "--index", "1", "-o", "/dev/full"],
            73,
            "/dev/full exists already",
        ),
    ];
    // 500 characters, and a name 5000 characters long.
    let long_id = "a".repeat(500);
    let mut r = row(
        "500-character action id",
        "ACTION_ID is 500 characters",
        none(),
        &["result"],
        64,
        "is not a machine action id",
    );
    r.args.push(long_id);
    rows.push(r);
    let saved = "A".repeat(200);
    let mut r = disposition_row(
        "very long name",
        &format!("attachment; filename=\"{long_name}.txt.gz\""),
        &saved,
    );
    r.misbehaves = "Content-Disposition names a file 5007 characters long".into();
    rows.push(r);
    let mut r = row(
        "full output directory",
        "-o is a 64 KiB file system and the file is 1 MiB",
        getfile_reply(
            gzip(&vec![b'x'; 1 << 20]),
            Some("attachment; filename=\"big.txt.gz\""),
        ),
        &["result", ACTION, "--index", "1", "-o", "full/"],
        74,
        "cannot write full/",
    );
    r.full_disk = true;
    rows.push(r);
    rows
}

/// What a row's run did.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The files in the scratch directory afterwards.
    files: Vec<String>,
}

/// Runs `row` against a stand-in of its own; `None` when it cannot run here (no tmpfs).
fn run_row(row: &Row) -> Option<Ran> {
    let svc = Service::start();
    let work = svc.dir.join("work");
    std::fs::create_dir_all(&work).expect("create work");
    write(work.join("file"), "in the way");
    let served = (row.serve)(&svc);
    let api = served.api.clone().unwrap_or_else(|| svc.api_url());
    let args: Vec<&str> = row.args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = if row.full_disk {
        let full = work.join("full");
        std::fs::create_dir_all(&full).expect("create full");
        // A private mount namespace: the tmpfs vanishes with the process.
        let script = "mount -t tmpfs -o size=64k tmpfs \"$0\" || exit 99\n\"$@\"\nrc=$?\nls -A \"$0\" > \"$0.list\"\nexit $rc";
        let mut cmd = Command::new("unshare");
        cmd.args(["-rm", "sh", "-c", script])
            .arg(&full)
            .arg(mdlr_bin())
            .args(["--retries", "0", "--api-url", &api])
            .args(&args)
            .env_clear()
            .env("MDLR_TOKEN", TOKEN)
            .current_dir(&work);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let out = cmd.output().ok()?;
        let listing = std::fs::read_to_string(work.join("full.list")).ok()?;
        let _ = std::fs::remove_file(work.join("full.list"));
        let stderr = format!(
            "{}[in full/: {}]\n",
            String::from_utf8_lossy(&out.stderr),
            listing.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        )
    } else {
        // No retries (they only add time), unless the row is about them.
        let retries: &[&str] = if args.contains(&"--retries") {
            &[]
        } else {
            &["--retries", "0"]
        };
        let out = Run::new(&["--api-url", &api])
            .args(retries)
            .args(&args)
            .env("MDLR_TOKEN", TOKEN)
            .cwd(&work)
            .run();
        (out.code, out.stdout, out.stderr)
    };
    let _ = std::fs::remove_file(work.join("file"));
    let files = files_under(svc.dir.path());
    drop(served.keep);
    Some(Ran {
        code,
        stdout,
        stderr,
        files,
    })
}

/// Services that lie, break and attack, and users who pass nonsense: each row names
/// the misbehaviour, the command, the exit status and a fragment of the message. No
/// row may panic, and no file may land outside the target directory.
#[test]
fn hostile_input_is_refused_without_panicking() {
    let rows = hostile_rows();
    let queue = Mutex::new(rows.iter());
    let results: Mutex<Vec<(&Row, Option<Ran>)>> = Mutex::default();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some(row) = next else { break };
                    let ran = run_row(row);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((row, ran));
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    assert_eq!(results.len(), rows.len());
    let mut problems = Vec::new();
    for (row, ran) in &results {
        let Some(ran) = ran else {
            eprintln!(
                "hostile row {:?} not run: no tmpfs can be mounted here",
                row.name
            );
            continue;
        };
        let said = format!("{}{}", ran.stdout, ran.stderr).replace(ACTION, "{ID}");
        eprintln!(
            "{:<26} {:?} {}",
            row.name,
            ran.code,
            said.lines()
                .find(|l| l.contains("mdlr: ") || l.starts_with("saved"))
                .unwrap_or_default()
        );
        let message = row.message.replace(ACTION, "{ID}");
        let mut wrong = Vec::new();
        if ran.code != Some(row.code) {
            wrong.push(format!("exit status {:?}, expected {}", ran.code, row.code));
        }
        if !said.contains(&message) {
            wrong.push(format!("no {message:?} in the output"));
        }
        if let Some(c) = said
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            wrong.push(format!(
                "it passed the control character {c:?} from the service to the terminal"
            ));
        }
        if said.contains("panicked") || ran.code == Some(101) || ran.code.is_none() {
            wrong.push("it panicked or died".to_owned());
        }
        if let Some(files) = &row.files
            && &ran.files != files
        {
            wrong.push(format!("files {:?}, expected {files:?}", ran.files));
        }
        if !ran.files.iter().all(|f| f.starts_with("work/")) {
            wrong.push(format!("a file outside work/: {:?}", ran.files));
        }
        if row.full_disk && said.contains("big.txt\n") {
            wrong.push("the full directory holds a file under the final name".to_owned());
        }
        if !wrong.is_empty() {
            problems.push(format!(
                "{} ({}): mdlr {}\n  {}\n--- stdout\n{}--- stderr\n{}",
                row.name,
                row.misbehaves,
                row.args.join(" ").chars().take(200).collect::<String>(),
                wrong.join("\n  "),
                ran.stdout,
                ran.stderr
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} rows went wrong:\n\n{}",
        problems.len(),
        rows.len(),
        problems.join("\n\n")
    );
}
