//! `cargo xtask demo`: the real `mdlr` binary against a local stand-in for the Defender
//! API and the result (blob) host, serving the test fixtures. No credentials, no network
//! beyond loopback.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use mdlr::{CommandType, MachineAction};
use mdlr_tests::server::{Request, Response, Server};

use crate::fixtures;

/// The bearer token the stand-in API accepts. Not a secret, but mdlr must never print it.
const TOKEN: &str = "demo-token-5b0e7c1f";
/// An action id the stand-in does not know.
const UNKNOWN_ID: &str = "3d1f0c55-9e2b-4a7d-8c61-0f5e2b9a7c44";
/// How long one mdlr run may take before the demo gives up on it.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

type Error = String;

/// Runs the demo; `Err` says what did not behave.
pub fn run(root: &Path) -> Result<(), Error> {
    let world = Arc::new(World::from_fixtures()?);
    eprintln!("demo: building mdlr (cargo build --package mdlr-cli)");
    let bin = crate::build_mdlr(root, false)?;

    let handler_world = Arc::clone(&world);
    let server = Server::start(Arc::new(move |req: &Request| handler_world.handle(req)))
        .map_err(|e| format!("cannot start the stand-in server on 127.0.0.1: {e}"))?;
    let base = format!("http://127.0.0.1:{}", server.port());
    world.set_blob_base(&format!("{base}/blob"));

    let dir = crate::TempDir::new(&format!("mdlr-demo-{}", std::process::id()))?;
    let evidence = dir.path().join("evidence");
    std::fs::create_dir(&evidence)
        .map_err(|e| format!("cannot create {}: {e}", evidence.display()))?;

    println!("mdlr demo: a stand-in for the Defender API and its result host listens on {base}.");
    println!("Each `mdlr` below is the real binary, run in a fresh empty directory with");
    println!("  MDLR_TOKEN=<demo token>  --api-url {base}");
    println!("and no other MDLR_*, AZURE_* or proxy variables. `server |` lines show what the");
    println!("stand-in received; /blob/... is the result host, which refuses any Authorization.");

    let steps = steps(&world)?;
    let mut failures = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        println!();
        println!("# {}. {}", n + 1, step.about);
        println!("$ mdlr {}", step.args.join(" "));
        let outcome = run_mdlr(&bin, dir.path(), &base, &step.args)?;
        show("stdout", &outcome.stdout);
        show("stderr", &outcome.stderr);
        for line in world.take_log() {
            println!("  server | {line}");
        }
        let mut problems = Vec::new();
        match outcome.status.code() {
            Some(code) if code == step.expect => {
                println!("  exit   | {code}, as expected");
            }
            Some(code) => {
                println!("  exit   | {code}, expected {}", step.expect);
                problems.push(format!("exited with {code}, expected {}", step.expect));
            }
            None => {
                println!("  exit   | killed by a signal ({})", outcome.status);
                problems.push(format!("did not exit normally: {}", outcome.status));
            }
        }
        if let Some((file, content)) = step.saved {
            problems.extend(look_at(dir.path(), file, world.file(content)?));
        }
        let leaked = world
            .secrets()
            .iter()
            .any(|s| contains(&outcome.stdout, s) || contains(&outcome.stderr, s));
        if leaked {
            problems.push("printed the token or a link signature".to_owned());
        }
        for p in problems {
            println!("  FAILED | {p}");
            failures.push(format!(
                "step {} (mdlr {}): {p}",
                n + 1,
                step.args.join(" ")
            ));
        }
    }
    server.stop();
    failures.extend(world.take_violations());

    println!();
    let (api, blob) = world.counts();
    if failures.is_empty() {
        println!(
            "demo: all {} steps behaved as expected; {api} API requests all carried the \
             bearer token, {blob} result-host requests none",
            steps.len()
        );
        Ok(())
    } else {
        Err(format!(
            "demo failed, {} thing(s) did not behave as expected:\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}

/// One run of mdlr and what it should do.
struct Step {
    about: &'static str,
    args: Vec<String>,
    expect: i32,
    /// A file the run leaves (relative to the working directory) and the fixture it
    /// must equal.
    saved: Option<(&'static str, &'static str)>,
}

fn steps(world: &World) -> Result<Vec<Step>, Error> {
    let seed = world.action_id("actions/runscript-succeeded.json")?;
    let chain = world.action_id("actions/chain-succeeded.json")?;
    let getfile = world.action_id("actions/getfile-succeeded.json")?;
    let script_error = world.action_id("actions/runscript-script-error.json")?;
    let pending = world.action_id("actions/pending.json")?;
    let failed = world.action_id("actions/failed.json")?;
    let step = |about, args: &[&str], expect, saved| Step {
        about,
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        expect,
        saved,
    };
    Ok(vec![
        step(
            "The seed call: the download link of command 0, its signature hidden",
            &["link", &seed],
            0,
            None,
        ),
        step(
            "The seed's RunScript result: the transcript's output on stdout, NUL padding gone",
            &["result", &seed],
            0,
            None,
        ),
        step(
            "An action of three commands: PutFile, RunScript, GetFile",
            &["action", &chain],
            0,
            None,
        ),
        step(
            "Its RunScript transcript: UTF-8 BOM, CRLF line ends, non-ASCII text",
            &["result", &chain, "--index", "1"],
            0,
            None,
        ),
        step(
            "Its GetFile result into a directory: un-gzipped while streaming, original name",
            &["result", &chain, "--index", "2", "-o", "evidence/"],
            0,
            Some(("evidence/collect.txt", "files/collect.txt")),
        ),
        step(
            "A GetFile result into the current directory",
            &["result", &getfile],
            0,
            Some(("hosts", "files/hosts")),
        ),
        step(
            "The same again: an existing file is never overwritten without --force",
            &["result", &getfile],
            73,
            Some(("hosts", "files/hosts")),
        ),
        step(
            "A script that failed: its errors on stderr, and mdlr exits with its exit code",
            &["result", &script_error],
            3,
            None,
        ),
        step(
            "An action still Pending: not finished yet, try later",
            &["result", &pending],
            75,
            None,
        ),
        step(
            "A command that Failed on the machine: its errors, and exit 69",
            &["result", &failed, "--index", "1"],
            69,
            None,
        ),
        step(
            "An action the service does not know: its error code and correlation id",
            &["action", UNKNOWN_ID],
            66,
            None,
        ),
    ])
}

/// Prints a captured stream, one `label | line` per line, control characters escaped.
fn show(label: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if bytes.is_empty() {
        return;
    }
    for line in text.split('\n') {
        println!(
            "  {label} | {}",
            printable(line.strip_suffix('\r').unwrap_or(line))
        );
    }
}

fn printable(line: &str) -> String {
    line.chars()
        .map(|c| match c {
            '\t' => "    ".to_owned(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Looks at a file a step saved: prints its name, size and first line, and checks it
/// holds what the fixture holds.
fn look_at(dir: &Path, file: &str, want: &[u8]) -> Option<String> {
    let got = match std::fs::read(dir.join(file)) {
        Ok(got) => got,
        Err(e) => return Some(format!("{file} was not saved: {e}")),
    };
    let text = String::from_utf8_lossy(&got);
    let first = text.lines().next().unwrap_or_default();
    println!(
        "  file   | {file}: {} bytes, first line {:?}",
        got.len(),
        first.trim_end_matches('\r')
    );
    (got != want).then(|| format!("{file} does not hold what the GetFile collected"))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------------------------
// The stand-in service

/// A result the stand-in serves.
struct Served {
    action_id: String,
    index: u32,
    /// The link reply, placeholder still in.
    link: String,
    /// The blob path after `/blob`.
    path: String,
    /// The link's `sig` value as it appears in the URL.
    sig: String,
    body: Vec<u8>,
    disposition: Option<String>,
}

#[derive(Default)]
struct State {
    blob_base: String,
    log: Vec<String>,
    violations: Vec<String>,
    api_requests: usize,
    blob_requests: usize,
}

/// The fixtures, arranged for serving, and what the server saw.
struct World {
    files: BTreeMap<&'static str, Vec<u8>>,
    /// Action id → fixture bytes.
    actions: BTreeMap<String, &'static str>,
    served: Vec<Served>,
    state: Mutex<State>,
}

impl World {
    fn from_fixtures() -> Result<World, Error> {
        let files: BTreeMap<&'static str, Vec<u8>> = fixtures::all().into_iter().collect();
        let mut actions = BTreeMap::new();
        for (name, bytes) in &files {
            if name.starts_with("actions/") {
                let action = decode_action(name, bytes)?;
                let id = action.id.ok_or_else(|| format!("{name} has no id"))?;
                actions.insert(id, *name);
            }
        }
        let mut world = World {
            files,
            actions,
            served: Vec::new(),
            state: Mutex::new(State::default()),
        };
        for s in fixtures::SERVED {
            let served = world.served_from(s)?;
            world.served.push(served);
        }
        Ok(world)
    }

    fn served_from(&self, s: &fixtures::Served) -> Result<Served, Error> {
        let action = decode_action(s.action, self.file(s.action)?)?;
        let action_id = action
            .id
            .clone()
            .ok_or_else(|| format!("{} has no id", s.action))?;
        let command = action
            .command(s.index)
            .and_then(|c| c.command.as_ref())
            .ok_or_else(|| format!("{} has no command {}", s.action, s.index))?;
        let content = self.file(s.content)?;
        let (body, disposition) = if command.command_type == CommandType::GetFile {
            let path = command
                .param("Path")
                .ok_or_else(|| format!("{}: GetFile without Path", s.action))?;
            let name = path.rsplit(['\\', '/']).next().unwrap_or(path);
            let disposition = format!("attachment; filename=\"{name}.gz\"");
            (gzip(content)?, Some(disposition))
        } else {
            (content.to_vec(), None)
        };
        let link = String::from_utf8_lossy(self.file(s.link)?).into_owned();
        let reply: serde_json::Value =
            serde_json::from_str(&link).map_err(|e| format!("{} is not JSON: {e}", s.link))?;
        let url = reply["value"]
            .as_str()
            .ok_or_else(|| format!("{} has no value", s.link))?;
        let rest = url.strip_prefix(fixtures::BLOB).ok_or_else(|| {
            format!(
                "{}: the link does not start with {}",
                s.link,
                fixtures::BLOB
            )
        })?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let sig = query
            .split('&')
            .find_map(|p| p.strip_prefix("sig="))
            .ok_or_else(|| format!("{}: the link has no sig", s.link))?;
        Ok(Served {
            action_id,
            index: s.index,
            link,
            path: path.to_owned(),
            sig: sig.to_owned(),
            body,
            disposition,
        })
    }

    fn file(&self, name: &str) -> Result<&[u8], Error> {
        self.files
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("no fixture {name}"))
    }

    fn action_id(&self, fixture: &str) -> Result<String, Error> {
        self.actions
            .iter()
            .find(|(_, name)| **name == fixture)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| format!("no action fixture {fixture}"))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A handler thread that panicked leaves the state usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_blob_base(&self, base: &str) {
        self.state().blob_base = base.to_owned();
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.state().log)
    }

    fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.state().violations)
    }

    fn counts(&self) -> (usize, usize) {
        let s = self.state();
        (s.api_requests, s.blob_requests)
    }

    /// What mdlr must never print: the token and every link signature (as sent and
    /// percent-decoded).
    fn secrets(&self) -> Vec<String> {
        let mut out = vec![TOKEN.to_owned()];
        for s in &self.served {
            out.push(s.sig.clone());
            out.push(mdlr_tests::server::percent_decode(&s.sig));
        }
        out
    }

    /// Answers one request and logs it.
    fn handle(&self, req: &Request) -> Response {
        let (response, note) = self.route(req);
        let shown = if req.path().starts_with("/blob/") {
            // Never log the signature.
            format!("{}?…", req.path())
        } else {
            req.target.clone()
        };
        let mut state = self.state();
        state.log.push(format!(
            "{} {shown} -> {}{note}",
            req.method, response.status
        ));
        response
    }

    fn route(&self, req: &Request) -> (Response, String) {
        if req.method != "GET" {
            return (
                Response::new(405, "text/plain", "only GET here\n"),
                String::new(),
            );
        }
        let path = req.path();
        if let Some(rest) = path.strip_prefix("/api/") {
            self.state().api_requests += 1;
            if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
                self.violation(format!("API request without the bearer token: {path}"));
                return (
                    self.json(401, "errors/401-unauthorized.json"),
                    " (no bearer token!)".into(),
                );
            }
            return (self.api(rest), ", bearer token".into());
        }
        if let Some(rest) = path.strip_prefix("/blob") {
            self.state().blob_requests += 1;
            if req.header("authorization").is_some() {
                self.violation(format!(
                    "the result host received an Authorization header: {path}"
                ));
                return (
                    blob_error(
                        400,
                        "InvalidAuthenticationInfo",
                        "A SAS link takes no Authorization header.",
                    ),
                    " (Authorization header refused!)".into(),
                );
            }
            return (
                self.blob(rest, req.query()),
                ", no Authorization header".into(),
            );
        }
        (
            Response::new(404, "text/plain", "nothing here\n"),
            String::new(),
        )
    }

    fn api(&self, rest: &str) -> Response {
        let Some(rest) = rest.strip_prefix("machineactions/") else {
            return self.json(404, "errors/404-resource-not-found.json");
        };
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let Some(fixture) = self.actions.get(id) else {
            return self.json(404, "errors/404-resource-not-found.json");
        };
        if tail.is_empty() {
            return self.json(200, fixture);
        }
        // The parentheses and `=` must arrive literally.
        let index = tail
            .strip_prefix("GetLiveResponseResultDownloadLink(index=")
            .and_then(|t| t.strip_suffix(')'))
            .and_then(|n| n.parse::<u32>().ok());
        let Some(index) = index else {
            return self.json(404, "errors/404-resource-not-found.json");
        };
        match self
            .served
            .iter()
            .find(|s| s.action_id == id && s.index == index)
        {
            Some(s) => {
                let base = self.state().blob_base.clone();
                Response::new(
                    200,
                    "application/json; charset=utf-8",
                    s.link.replace(fixtures::BLOB, &base),
                )
            }
            None => self.json(400, "errors/400-not-finished.json"),
        }
    }

    fn blob(&self, path: &str, query: Option<&str>) -> Response {
        let Some(s) = self.served.iter().find(|s| s.path == path) else {
            return blob_error(404, "BlobNotFound", "The specified blob does not exist.");
        };
        let signed = query
            .unwrap_or_default()
            .split('&')
            .any(|p| p.strip_prefix("sig=") == Some(s.sig.as_str()));
        if !signed {
            return blob_error(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
            );
        }
        let mut response = Response::new(200, "application/octet-stream", s.body.clone());
        if let Some(d) = &s.disposition {
            response = response.header("Content-Disposition", d.clone());
        }
        response
    }

    fn json(&self, status: u16, fixture: &str) -> Response {
        match self.file(fixture) {
            Ok(body) => Response::new(status, "application/json; charset=utf-8", body),
            Err(e) => Response::new(500, "text/plain", e),
        }
    }

    fn violation(&self, what: String) {
        self.state().violations.push(what);
    }
}

fn blob_error(status: u16, code: &str, message: &str) -> Response {
    let body = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{message}\nRequestId:00000000-0000-0000-0000-000000000000\nTime:2021-02-04T15:43:51.0000000Z</Message></Error>"
    );
    Response::new(status, "application/xml", body).header("x-ms-error-code", code)
}

fn decode_action(name: &str, bytes: &[u8]) -> Result<MachineAction, Error> {
    serde_json::from_slice(bytes).map_err(|e| format!("{name} is not a machine action: {e}"))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|e| format!("cannot gzip: {e}"))
}

// ---------------------------------------------------------------------------------------
// Building and running mdlr

struct Outcome {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `mdlr --api-url API ARGS...` in `dir` with a scrubbed environment.
fn run_mdlr(bin: &Path, dir: &Path, api: &str, args: &[String]) -> Result<Outcome, Error> {
    let mut command = Command::new(bin);
    command
        .arg("--api-url")
        .arg(api)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        let upper = name.to_string_lossy().to_ascii_uppercase();
        if upper.starts_with("MDLR_") || upper.starts_with("AZURE_") || upper.ends_with("_PROXY") {
            command.env_remove(&name);
        }
    }
    command.env("MDLR_TOKEN", TOKEN);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let stdout = crate::read_in_background(child.stdout.take());
    let stderr = crate::read_in_background(child.stderr.take());
    let deadline = Instant::now() + STEP_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "mdlr {} did not finish within {} s",
                    args.join(" "),
                    STEP_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for mdlr: {e}")),
        }
    };
    Ok(Outcome {
        status,
        stdout: crate::collect(stdout)?,
        stderr: crate::collect(stderr)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpStream;

    /// Sends one raw GET and returns the status line, the head and the body.
    fn get(port: u16, target: &str, extra: &str) -> (String, String, Vec<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n"
        )
        .expect("sends");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).expect("reads");
        let split = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head");
        let head = String::from_utf8_lossy(&reply[..split]).into_owned();
        let status = head.lines().next().unwrap_or_default().to_owned();
        (status, head, reply[split + 4..].to_vec())
    }

    fn start() -> (Arc<World>, Server) {
        let world = Arc::new(World::from_fixtures().expect("fixtures arrange"));
        let w = Arc::clone(&world);
        let server = Server::start(Arc::new(move |r: &Request| w.handle(r))).expect("starts");
        world.set_blob_base(&format!("http://127.0.0.1:{}/blob", server.port()));
        (world, server)
    }

    #[test]
    fn api_wants_the_bearer_token_and_the_literal_path() {
        let (world, server) = start();
        let id = world
            .action_id("actions/runscript-succeeded.json")
            .expect("seed");
        let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
        let link = format!("/api/machineactions/{id}/GetLiveResponseResultDownloadLink(index=0)");
        assert!(get(server.port(), &link, "").0.contains(" 401 "));
        let (status, _, body) = get(server.port(), &link, &bearer);
        assert!(status.contains(" 200 "), "{status}");
        let body = String::from_utf8_lossy(&body).into_owned();
        assert!(body.contains(&format!("http://127.0.0.1:{}/blob/", server.port())));
        let encoded =
            format!("/api/machineactions/{id}/GetLiveResponseResultDownloadLink%28index%3D0%29");
        assert!(get(server.port(), &encoded, &bearer).0.contains(" 404 "));
        let unknown = format!("/api/machineactions/{UNKNOWN_ID}");
        assert!(get(server.port(), &unknown, &bearer).0.contains(" 404 "));
        assert_eq!(
            world.take_violations().len(),
            1,
            "the request without a token"
        );
        server.stop();
    }

    #[test]
    fn blob_host_refuses_a_bearer_token_and_serves_gzip() {
        let (world, server) = start();
        let s = world
            .served
            .iter()
            .find(|s| s.disposition.is_some())
            .expect("a GetFile result");
        let target = format!("/blob{}?sp=r&sr=b&sig={}", s.path, s.sig);
        let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
        assert!(get(server.port(), &target, &bearer).0.contains(" 400 "));
        assert_eq!(world.take_violations().len(), 1);
        let unsigned = format!("/blob{}?sp=r&sr=b", s.path);
        let (status, head, _) = get(server.port(), &unsigned, "");
        assert!(status.contains(" 403 "), "{status}");
        assert!(
            head.contains("x-ms-error-code: AuthenticationFailed"),
            "{head}"
        );
        let (status, head, body) = get(server.port(), &target, "");
        assert!(status.contains(" 200 "), "{status}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(
            head.contains("filename=\"collect.txt.gz\"") || head.contains("filename=\"hosts.gz\"")
        );
        assert_eq!(body, s.body);
        assert!(body.starts_with(&[0x1f, 0x8b]), "gzip magic");
        server.stop();
    }
}
