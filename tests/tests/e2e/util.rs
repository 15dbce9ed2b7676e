//! Helpers shared by the end-to-end tests: a stand-in for the Defender API and the result
//! host (httpmock servers on loopback), a raw TCP server for replies httpmock cannot
//! send, the `mdlr` binary and a way to run it, and `check` helpers that compare output.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use httpmock::{Mock, MockServer, Then};
use mdlr::{Client, Credential, Endpoints, Event, RetryPolicy, Timeouts};
use mdlr_tests::sim::{Quota, SimConfig, SimMachine, SimStats, Simulator};
use serde_json::{Value, json};

/// The action id of the seed page's example.
pub const ACTION: &str = "988cc94e-7a8f-4b28-ab65-54970c5d5018";
/// The bearer token handed to the client. Distinctive, so a leak is easy to find.
pub const TOKEN: &str = "tok-SECRET-123";
/// The app registration of the client-secret tests.
pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const CLIENT_ID: &str = "app-0001";
pub const CLIENT_SECRET: &str = "cs-SECRET-456";
/// The SAS signature of every result link.
pub const SIG: &str = "SIGSECRET";
/// The default token scope (commercial cloud).
pub const SCOPE: &str = "https://api.securitycenter.microsoft.com/.default";

/// The RunScript transcript of the seed page (`seed/get-live-response-result.ja.txt`),
/// byte for byte: a raw line break inside `script_output` and `\u0000` padding.
pub const SEED: &str = r#"{
    "script_name": "minidump.ps1",
    "exit_code": 0,
    "script_output": "Transcript started, output file is C:\\ProgramData\\Microsoft\\Windows Defender Advanced Threat Protection\\Temp\\PSScriptOutputs\\PSScript_Transcript_{TRANSCRIPT_ID}.txt
C:\\windows\\TEMP\\OfficeClickToRun.dmp.zip\n51 MB\n\u0000\u0000\u0000",
    "script_errors":""
}"#;

/// What `script_output` of [`SEED`] is, once decoded and without the NULs.
pub const SEED_OUTPUT: &str = r"Transcript started, output file is C:\ProgramData\Microsoft\Windows Defender Advanced Threat Protection\Temp\PSScriptOutputs\PSScript_Transcript_{TRANSCRIPT_ID}.txt
C:\windows\TEMP\OfficeClickToRun.dmp.zip
51 MB
";

/// The query of every result link: the seed's, with our signature.
pub const LINK_QUERY: &str = "se=2021-02-04T16%3A13%3A50Z&sp=r&sv=2019-07-07&sr=b&sig=SIGSECRET";

// ---------------------------------------------------------------------------------------
// Temporary directories

/// A fresh directory under cargo's per-target temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("e2e-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The names in `dir`, sorted (hidden ones included: a leftover `.x.mdlr-part` shows).
#[track_caller]
pub fn list(dir: &Path) -> Vec<String> {
    mdlr_tests::util::names_in(dir)
}

#[track_caller]
pub fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[track_caller]
pub fn write(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) {
    let path = path.as_ref();
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// Payloads

/// `bytes` as one gzip stream, as the result host holds a GetFile result.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

/// A machine action whose commands are `(type, commandStatus)` pairs, indexed from 0.
pub fn action_json(status: &str, commands: &[(&str, &str)]) -> Value {
    let commands: Vec<Value> = commands
        .iter()
        .enumerate()
        .map(|(i, (kind, command_status))| {
            let params = match *kind {
                "RunScript" => json!([{"key": "ScriptName", "value": "minidump.ps1"}]),
                "GetFile" => json!([{"key": "Path", "value": "C:\\windows\\TEMP\\evidence.txt"}]),
                _ => json!([{"key": "FileName", "value": "tool.ps1"}]),
            };
            json!({
                "index": i,
                "startTime": "2021-02-04T15:40:00Z",
                "endTime": null,
                "commandStatus": command_status,
                "errors": if *command_status == "Failed" { json!(["The script failed"]) } else { json!([]) },
                "command": {"type": kind, "params": params},
            })
        })
        .collect();
    json!({
        "id": ACTION,
        "type": "LiveResponse",
        "requestor": "analyst@contoso.com",
        "requestorComment": "triage",
        "status": status,
        "machineId": "1e5bc9d7e413ddd7902c2932e418702b84d0cc07",
        "computerDnsName": "host1.contoso.com",
        "creationDateTimeUtc": "2021-02-04T15:39:00Z",
        "lastUpdateDateTimeUtc": "2021-02-04T15:43:00Z",
        "someFieldFromTheFuture": {"x": 1},
        "commands": commands,
    })
}

/// The usual finished action: command 0 a RunScript, command 1 a GetFile.
pub fn done_action() -> Value {
    action_json(
        "Succeeded",
        &[("RunScript", "Completed"), ("GetFile", "Completed")],
    )
}

/// An API error body as Defender sends it.
pub fn api_error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "target": "corr-42"}})
}

// ---------------------------------------------------------------------------------------
// The service stand-in

/// The Defender API (which also serves the token endpoint) and the result host, each an
/// httpmock server on loopback, plus a scratch directory (the binary's working directory).
pub struct Service {
    pub api: MockServer,
    pub blob: MockServer,
    pub dir: TempDir,
    /// A mock on the result host that catches any request carrying `Authorization`.
    trap: usize,
}

impl Service {
    pub fn start() -> Service {
        let api = MockServer::start();
        let blob = MockServer::start();
        // Created first, so it wins over every other mock of the result host.
        let trap = blob
            .mock(|when, then| {
                when.header_exists("authorization");
                then.status(400)
                    .body("the result host must never see a bearer token");
            })
            .id();
        Service {
            api,
            blob,
            dir: TempDir::new(),
            trap,
        }
    }

    /// The API base (also the token authority in client-secret tests).
    pub fn api_url(&self) -> String {
        self.api.base_url()
    }

    /// A result link to `path` on the result host, signature included.
    pub fn blob_url(&self, path: &str) -> String {
        format!("{}{path}?{LINK_QUERY}", self.blob.base_url())
    }

    /// `GET /api/machineactions/{ACTION}` with our token answers `body`.
    pub fn action(&self, body: Value) -> Mock<'_> {
        self.api.mock(|when, then| {
            when.method("GET")
                .path(format!("/api/machineactions/{ACTION}"))
                .header("authorization", format!("Bearer {TOKEN}"));
            then.status(200)
                .header("content-type", "application/json")
                .json_body(body);
        })
    }

    /// `GET /api/machineactions/{ACTION}` answers `status` with `body`, whatever the token.
    pub fn action_error(&self, status: u16, body: Value) -> Mock<'_> {
        self.api.mock(|when, then| {
            when.method("GET")
                .path(format!("/api/machineactions/{ACTION}"));
            then.status(status).json_body(body);
        })
    }

    /// The seed call for command `index`, matched on its literal path and our token,
    /// answers a link to `url`.
    pub fn link_to(&self, index: u32, url: &str) -> Mock<'_> {
        self.api.mock(|when, then| {
            when.method("GET")
                .path(seed_path(index))
                .header("authorization", format!("Bearer {TOKEN}"));
            then.status(200).json_body(json!({
                "@odata.context": format!("{}/api/$metadata#Edm.String", self.api.base_url()),
                "value": url,
            }));
        })
    }

    /// The seed call for command `index` answers a link to `path` on the result host.
    pub fn link(&self, index: u32, path: &str) -> Mock<'_> {
        self.link_to(index, &self.blob_url(path))
    }

    /// `GET path` on the result host, with our signature and without `Authorization`,
    /// answers as `reply` says.
    pub fn blob(&self, path: &str, reply: impl FnOnce(Then) -> Then) -> Mock<'_> {
        self.blob.mock(|when, then| {
            when.method("GET")
                .path(path)
                .query_param("sig", SIG)
                .query_param("sr", "b")
                .header_missing("authorization");
            reply(then.status(200));
        })
    }

    /// A finished RunScript at index 0 whose result is `transcript`.
    pub fn transcript(&self, transcript: impl AsRef<[u8]>) -> [Mock<'_>; 3] {
        let body = transcript.as_ref().to_vec();
        [
            self.action(done_action()),
            self.link(0, "/results/transcript"),
            self.blob("/results/transcript", |then| then.body(body)),
        ]
    }

    /// A finished GetFile at index 1 whose result is `body`, sent with a
    /// `Content-Disposition` of `disposition` when given.
    pub fn getfile(&self, body: Vec<u8>, disposition: Option<&str>) -> [Mock<'_>; 3] {
        let disposition = disposition.map(str::to_owned);
        [
            self.action(done_action()),
            self.link(1, "/results/file"),
            self.blob("/results/file", |then| {
                let then = then.header("content-type", "application/octet-stream");
                match disposition {
                    Some(d) => then.header("content-disposition", d).body(body),
                    None => then.body(body),
                }
            }),
        ]
    }

    /// The token endpoint of [`TENANT`], checking the client-credentials form, answers
    /// `token` (only `times` times when given).
    pub fn token_endpoint(&self, token: &str, times: Option<usize>) -> Mock<'_> {
        self.api.mock(|when, then| {
            when.method("POST")
                .path(format!("/{TENANT}/oauth2/v2.0/token"))
                .header_missing("authorization")
                .form_urlencoded_tuple("grant_type", "client_credentials")
                .form_urlencoded_tuple("client_id", CLIENT_ID)
                .form_urlencoded_tuple("client_secret", CLIENT_SECRET)
                .form_urlencoded_tuple("scope", SCOPE);
            let then = then.status(200).json_body(json!({
                "token_type": "Bearer",
                "expires_in": "3599",
                "ext_expires_in": 3599,
                "access_token": token,
            }));
            if let Some(n) = times {
                then.up_to_n_times(n);
            }
        })
    }

    /// A library client for this service with a given token and fast retries.
    pub fn client(&self) -> Client {
        self.client_with(Credential::token(TOKEN))
    }

    /// A library client for this service with `credential` and fast retries.
    pub fn client_with(&self, credential: Credential) -> Client {
        let endpoints = Endpoints {
            authority: self.api_url(),
            ..Endpoints::default().with_api_base(&self.api_url())
        };
        fast_client(credential, endpoints)
    }

    /// The `mdlr` binary pointed at this service, with our token, run in [`Service::dir`].
    pub fn mdlr(&self, args: &[&str]) -> Run {
        Run::new(args)
            .arg("--api-url")
            .arg(self.api_url())
            .env("MDLR_TOKEN", TOKEN)
            .cwd(self.dir.path())
            .replace(self.api_url(), "{API}")
            .replace(self.blob.base_url(), "{BLOB}")
            .replace(self.dir.path().display().to_string(), "{DIR}")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let hits = Mock::new(self.trap, &self.blob).calls();
            assert_eq!(hits, 0, "the result host received an Authorization header");
        }
    }
}

/// The seed call's path, as it must go on the wire: parentheses and `=` literal.
pub fn seed_path(index: u32) -> String {
    format!("/api/machineactions/{ACTION}/GetLiveResponseResultDownloadLink(index={index})")
}

/// Retries fast enough for tests: two retries, 10 ms base backoff.
pub fn fast_retries() -> RetryPolicy {
    let mut retry = RetryPolicy::with_retries(2);
    retry.base_delay = Duration::from_millis(10);
    retry.max_delay = Duration::from_millis(50);
    retry.max_retry_after = Duration::from_secs(5);
    retry
}

pub fn fast_client(credential: Credential, endpoints: Endpoints) -> Client {
    Client::builder(credential)
        .endpoints(endpoints)
        .retry_policy(fast_retries())
        .timeouts(Timeouts::new(
            Duration::from_secs(5),
            Duration::from_secs(5),
        ))
        .build()
        .expect("client builds")
}

/// Events a client reported, recorded by [`recorder`].
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    /// What was recorded so far.
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A recorder to hand to `ClientBuilder::on_event`, and what it records.
pub fn recorder() -> (Events, impl Fn(&Event) + Send + Sync + 'static) {
    let events = Events::default();
    let sink = events.clone();
    let record = move |e: &Event| {
        sink.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone())
    };
    (events, record)
}

/// A loopback port nobody listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("local address").port()
}

// ---------------------------------------------------------------------------------------
// A raw HTTP server

/// A loopback server that answers every connection with the same raw bytes and closes
/// it: for replies httpmock will not send, such as a body shorter than its
/// `Content-Length`. It records the head of each request.
pub struct RawServer {
    port: u16,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl RawServer {
    pub fn start(reply: Vec<u8>) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop2, requests2) = (stop.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let head = read_head(&mut stream);
                requests2
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(head);
                let _ = stream.write_all(&reply);
                let _ = stream.flush();
                let _ = stream.shutdown(Shutdown::Both);
            }
        });
        RawServer {
            port,
            stop,
            requests,
        }
    }

    /// A reply with status 200, `headers` and `body`, announcing `content_length` bytes.
    pub fn reply(content_length: usize, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {content_length}\r\nConnection: close\r\n{headers}\r\n"
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    /// A result link to `path` on this server, signature included.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}?{LINK_QUERY}", self.port)
    }

    /// The heads of the requests received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Every file under `dir`, recursively, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, files);
            } else {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    let mut names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(dir).expect("inside").display().to_string())
        .collect();
    names.sort();
    names
}

/// Reads a request head (up to the blank line).
fn read_head(stream: &mut TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

// ---------------------------------------------------------------------------------------
// The binary

/// The `mdlr` binary under test.
///
/// `CARGO_BIN_EXE_mdlr` exists only for the tests of the package that owns the binary
/// (`mdlr-cli`), and a binary-only package cannot be a dependency of this one. So the
/// binary is taken from the target directory this test executable was built into
/// (`target/<profile>/deps/e2e-HASH` → `target/<profile>/mdlr`), after one
/// `cargo build -p mdlr-cli --bin mdlr` per test run with the same cargo, target
/// directory and profile. That build is a no-op when the binary is up to date and
/// rebuilds it when the CLI changed, so `cargo test -p mdlr-tests` never runs a stale or
/// missing binary (`cargo test --workspace` does not build a package's binary unless that
/// package has integration tests).
pub fn mdlr_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let profile_dir =
            mdlr_tests::build_beside_this_test(&["--package", "mdlr-cli", "--bin", "mdlr"]);
        let bin = profile_dir.join(format!("mdlr{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// One run of the binary, built up before it starts.
pub struct Run {
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    replacements: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
}

impl Run {
    pub fn new(args: &[&str]) -> Run {
        Run {
            args: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
            cwd: None,
            replacements: Vec::new(),
            stdin: None,
        }
    }

    /// What the child reads on stdin (otherwise nothing: stdin is empty).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Run {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Run {
        self.args.push(arg.into());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Run {
        self.args.extend(args.iter().map(OsString::from));
        self
    }

    /// Sets an environment variable for the child (`""` removes one set before).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Run {
        self.env.retain(|(k, _)| k != key);
        let value = value.into();
        if !value.is_empty() {
            self.env.push((key.to_owned(), value));
        }
        self
    }

    /// Sign in with the app registration instead of the token.
    pub fn client_secret(self) -> Run {
        self.env("MDLR_TOKEN", "")
            .env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", CLIENT_ID)
            .env("AZURE_CLIENT_SECRET", CLIENT_SECRET)
    }

    pub fn cwd(mut self, dir: &Path) -> Run {
        self.cwd = Some(dir.to_owned());
        self
    }

    /// Shows `from` as `to` in the output compared by [`Outcome::check`].
    pub fn replace(mut self, from: impl Into<String>, to: &str) -> Run {
        self.replacements.push((from.into(), to.to_owned()));
        self
    }

    /// Runs the binary with nothing from the developer's environment but `PATH`: no
    /// `MDLR_*`, `AZURE_*` or proxy variable can leak in.
    pub fn run(self) -> Outcome {
        let mut cmd = self.command();
        let started = std::time::Instant::now();
        let out = match &self.stdin {
            None => cmd.stdin(Stdio::null()).output().expect("run mdlr"),
            Some(bytes) => {
                cmd.stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = cmd.spawn().expect("start mdlr");
                if let Some(mut input) = child.stdin.take() {
                    std::io::Write::write_all(&mut input, bytes).expect("write stdin");
                }
                child.wait_with_output().expect("run mdlr")
            }
        };
        Outcome {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
            replacements: self.replacements,
            args: self.args,
        }
    }

    /// The command to run: the binary with nothing from the developer's environment
    /// but `PATH`.
    fn command(&self) -> Command {
        let mut cmd = Command::new(mdlr_bin());
        cmd.args(&self.args).env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Starts it without waiting: see [`Spawned`].
    pub fn spawn(self) -> Spawned {
        let mut cmd = self.command();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = std::time::Instant::now();
        let mut child = cmd.spawn().expect("start mdlr");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let mut readers = Vec::new();
        for (pipe, sink) in [
            (
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                Arc::clone(&stdout),
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                Arc::clone(&stderr),
            ),
        ] {
            let Some(mut pipe) = pipe else { continue };
            let sink: Arc<Mutex<Vec<u8>>> = sink;
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            }));
        }
        Spawned {
            child,
            stdout,
            stderr,
            readers,
            started,
            replacements: self.replacements,
            args: self.args,
        }
    }

    /// Runs it and checks the exit status and both outputs; see [`Outcome::check`].
    #[track_caller]
    pub fn check(self, code: i32, stdout: &str, stderr: &str) -> Outcome {
        let out = self.run();
        out.check(code, stdout, stderr);
        out
    }

    /// Runs it and checks the exit status only.
    #[track_caller]
    pub fn status(self, code: i32) -> Outcome {
        let out = self.run();
        out.status(code);
        out
    }
}

/// What a run of the binary did.
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    replacements: Vec<(String, String)>,
    args: Vec<OsString>,
}

impl Outcome {
    /// `text` with the hosts, the scratch directory, the action id and the timings of
    /// `-v` lines replaced by placeholders (`{API}`, `{BLOB}`, `{DIR}`, `{ID}`, `N ms`).
    pub fn normalize(&self, text: &str) -> String {
        let mut text = text.to_owned();
        let mut replacements: Vec<&(String, String)> = self.replacements.iter().collect();
        // Longest first: `http://127.0.0.1:4000` must not eat into `http://127.0.0.1:40001`.
        replacements.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        for (from, to) in replacements {
            text = text.replace(from.as_str(), to);
        }
        mask_millis(&text.replace(ACTION, "{ID}"))
    }

    #[track_caller]
    pub fn status(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "exit status of mdlr {:?}\n--- stdout\n{}--- stderr\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
    }

    /// Checks the exit status, stdout and stderr (both normalised, see
    /// [`Outcome::normalize`]).
    #[track_caller]
    pub fn check(&self, code: i32, stdout: &str, stderr: &str) {
        self.status(code);
        assert_eq!(
            self.normalize(&self.stdout),
            stdout,
            "stdout of mdlr {:?}",
            self.args
        );
        assert_eq!(
            self.normalize(&self.stderr),
            stderr,
            "stderr of mdlr {:?}",
            self.args
        );
    }

    /// Checks the exit status and that stderr contains each of `fragments`.
    #[track_caller]
    pub fn check_err(&self, code: i32, fragments: &[&str]) {
        self.status(code);
        let stderr = self.normalize(&self.stderr);
        for f in fragments {
            assert!(
                stderr.contains(f),
                "stderr of mdlr {:?} lacks {f:?}:\n{stderr}",
                self.args
            );
        }
    }

    /// Checks that no secret appears in stdout or stderr.
    #[track_caller]
    pub fn check_no_secrets(&self) {
        for secret in [TOKEN, CLIENT_SECRET, SIG, "tok-SECRET"] {
            for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
                assert!(
                    !text.contains(secret),
                    "{name} of mdlr {:?} shows {secret:?}:\n{text}",
                    self.args
                );
            }
        }
    }

    /// stdout parsed as one JSON document per line.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Replaces the `(123 ms)` of `-v` lines with `(N ms)`.
fn mask_millis(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(" (") {
        out.push_str(&rest[..i + 2]);
        rest = &rest[i + 2..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(" ms)") {
            out.push('N');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------
// The simulator

/// Real seconds per service second in the simulator tests: a 60 s quota window lasts
/// 0.6 s, a 20 s command 0.2 s. Debug builds spend 1–2 ms of CPU per request, so a
/// smaller scale would let the client's own work distort the service's timing.
pub const SCALE: f64 = 0.01;

/// A simulator configuration at [`SCALE`] with `machines` and the default quotas.
pub fn sim_config(machines: Vec<SimMachine>) -> SimConfig {
    SimConfig {
        time_scale: SCALE,
        machines,
        ..SimConfig::default()
    }
}

/// The live response simulator and a scratch directory (the binary's working directory).
pub struct Sim {
    pub sim: Simulator,
    pub dir: TempDir,
    scale: f64,
}

impl Sim {
    /// Starts a simulator of `config`, once the binary is built: the service clock
    /// runs from here, and scenarios timed from the start (`SimMachine::busy_for`) must
    /// not be spent waiting for cargo.
    pub fn start(config: SimConfig) -> Sim {
        mdlr_bin();
        let scale = config.time_scale;
        Sim {
            sim: Simulator::start(config).expect("the simulator starts"),
            dir: TempDir::new(),
            scale,
        }
    }

    /// Starts a simulator of `machines` at [`SCALE`].
    pub fn with(machines: Vec<SimMachine>) -> Sim {
        Sim::start(sim_config(machines))
    }

    /// `service` seconds of service time as a real duration for the command line
    /// (`600ms` for 60 s at 0.01).
    pub fn dur(&self, service_secs: f64) -> String {
        format!(
            "{}ms",
            (service_secs * self.scale * 1000.0).round().max(1.0)
        )
    }

    /// The client-side quotas that match the simulator's, scaled like them: with the
    /// service's quotas at 0.01, `--api-quota 100/600ms,1500/36000ms --start-quota
    /// 10/600ms --package-quota 2/600ms,120/36000ms`. A quota the simulator does not enforce is left out.
    pub fn quota_args(&self) -> Vec<String> {
        let config = self.sim.config();
        let spec = |quotas: &[Quota]| -> Option<String> {
            let parts: Vec<String> = quotas
                .iter()
                .filter(|q| q.limit != usize::MAX)
                .map(|q| format!("{}/{}", q.limit, self.dur(q.window.as_secs_f64())))
                .collect();
            (!parts.is_empty()).then(|| parts.join(","))
        };
        let mut args = Vec::new();
        if let Some(api) = spec(&[config.api_per_minute, config.api_per_hour]) {
            args.extend(["--api-quota".to_owned(), api]);
        }
        if let Some(starts) = spec(&[config.starts_per_minute]) {
            args.extend(["--start-quota".to_owned(), starts]);
        }
        if let Some(links) = spec(&[
            config.package_links_per_minute,
            config.package_links_per_hour,
        ]) {
            args.extend(["--package-quota".to_owned(), links]);
        }
        args
    }

    /// The `mdlr` binary pointed at the simulator, with its token and the client-side
    /// quotas of [`Sim::quota_args`], run in [`Sim::dir`].
    pub fn mdlr(&self, args: &[&str]) -> Run {
        let quotas = self.quota_args();
        let quotas: Vec<&str> = quotas.iter().map(String::as_str).collect();
        Run::new(args)
            .args(&["--api-url", &self.sim.api_url()])
            .args(&quotas)
            .env("MDLR_TOKEN", self.sim.token())
            .cwd(self.dir.path())
            .replace(self.sim.api_url(), "{API}")
            .replace(self.dir.path().display().to_string(), "{DIR}")
    }

    /// [`Sim::mdlr`] for a command that waits (`run`, `getfile`, `putfile`, `result`,
    /// `action`): adds `--poll-interval` (5 s scaled) and, unless `args` set one,
    /// `--wait-timeout` (15 min scaled).
    pub fn live(&self, args: &[&str]) -> Run {
        let mut run = self.mdlr(args).args(&["--poll-interval", &self.dur(5.0)]);
        if !args.contains(&"--wait-timeout") {
            run = run.args(&["--wait-timeout", &self.dur(15.0 * 60.0)]);
        }
        run
    }

    /// The counters now.
    pub fn stats(&self) -> SimStats {
        self.sim.stats()
    }

    /// Machine number `n` (1-based) as configured.
    pub fn machine(&self, n: usize) -> SimMachine {
        self.sim.machines()[n - 1].clone()
    }
}

/// A running `mdlr`, its outputs collected as they come.
pub struct Spawned {
    pub child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    started: std::time::Instant,
    replacements: Vec<(String, String)>,
    args: Vec<OsString>,
}

impl Spawned {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it SIGINT, as Ctrl-C on a terminal does.
    #[track_caller]
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT {}", self.pid());
    }

    /// Waits for it to end.
    pub fn wait(mut self) -> Outcome {
        let status = self.child.wait().expect("wait for mdlr");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let text = |b: &Arc<Mutex<Vec<u8>>>| {
            String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        };
        Outcome {
            code: status.code(),
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
            elapsed: self.started.elapsed(),
            replacements: self.replacements,
            args: self.args,
        }
    }

    /// Kills it (SIGKILL) and waits for it.
    pub fn kill(mut self) -> Outcome {
        let _ = self.child.kill();
        self.wait()
    }
}

/// The DNS name of simulated machine `n` (`SimMachine::new`).
pub fn host(n: usize) -> String {
    format!("host{n:04}.contoso.test")
}

/// The lines of `DIR/manifest.jsonl` (none when there is no manifest).
#[track_caller]
pub fn manifest(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("manifest.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a manifest line is JSON"))
        .collect()
}
