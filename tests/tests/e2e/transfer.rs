//! Resumable downloads against a real blob host: Azurite (`mdlr_tests::azurite`) behind
//! the fault-injecting proxy (`mdlr_tests::faults`), and an API stand-in that hands out
//! real SAS links to the blob through the proxy, signed afresh each time it is asked.
//!
//! Each test has its own container, proxy and API; Azurite is shared by the process
//! (and a test that needs it fails when it is not installed). Every test checks on the
//! way out that no request through the proxy carried an `Authorization` header: the
//! bearer token never reaches the blob host.
//!
//! The 1 GiB run and the renewal at its real margins are slow: they are ignored, and
//! `cargo xtask test --slow` runs them (see [`one_gib_through_cuts_and_expiring_links`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use mdlr::{
    Client, Credential, DownloadRequest, Downloaded, Endpoints, Error, Event, Gunzip, ResultLink,
    Timeouts,
};
use mdlr_tests::azurite::{Azurite, BlobProps, azurite, sas_query};
use mdlr_tests::faults::{Fault, Injected, Plan, Proxy, Seen};
use mdlr_tests::server::{Request, Response, Server};
use mdlr_tests::util::{gzip, mix, noise};
use serde_json::json;

use crate::util::*;

const MIB: u64 = 1 << 20;

/// The size of the payloads of the default run.
const SIZE: usize = 24 << 20;

/// The blob every test downloads (each test has its own container).
const BLOB: &str = "result-1";

/// The name the result host gives a GetFile result, and the file it becomes.
const GZ_NAME: &str = "evidence.bin.gz";
const NAME: &str = "evidence.bin";

/// [`SIZE`] bytes of noise and their gzip stream, made once.
///
/// Noise does not compress, so the stream is made of stored blocks
/// (`Compression::none`): about as long as a compressing level would make it, and three
/// times faster to make in a debug build.
fn payload() -> &'static (Vec<u8>, Vec<u8>) {
    static PAYLOAD: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    PAYLOAD.get_or_init(|| {
        let content = noise(0x7472_616e_7366_6572, SIZE);
        let gz = gzip_stored(&content);
        (content, gz)
    })
}

/// `bytes` as a gzip stream of stored blocks.
fn gzip_stored(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    std::io::Write::write_all(&mut gz, bytes).expect("gzip in memory");
    gz.finish().expect("gzip in memory")
}

// ---------------------------------------------------------------------------------------
// The rig: Azurite, a proxy in front of it, and an API handing out links through it

/// What the API stand-in hands out: links to `BLOB` through the proxy, each signed
/// when asked for, valid for `lifetime`.
struct Links {
    base: String,
    container: String,
    lifetime: Mutex<Duration>,
    asked: AtomicUsize,
    /// The signatures handed out (percent-encoded, as in the links).
    sigs: Mutex<Vec<String>>,
}

impl Links {
    fn mint(&self) -> String {
        let lifetime = *self.lifetime.lock().unwrap_or_else(|e| e.into_inner());
        let query = sas_query(&self.container, BLOB, SystemTime::now() + lifetime);
        if let Some((_, sig)) = query.split_once("sig=") {
            self.sigs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sig.to_owned());
        }
        format!(
            "{}{}?{query}",
            self.base,
            Azurite::blob_path(&self.container, BLOB)
        )
    }
}

/// The API stand-in: [`ACTION`] is a finished action whose command 1 is a GetFile, and
/// its result link is a fresh SAS link each time.
fn api(links: Arc<Links>) -> Server {
    let handler = move |req: &Request| {
        if req.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return Response::json(401, &api_error("Unauthorized", "no or wrong token"));
        }
        let action = format!("/api/machineactions/{ACTION}");
        if req.path() == action {
            Response::json(200, &done_action())
        } else if req.path() == format!("{action}/GetLiveResponseResultDownloadLink(index=1)") {
            links.asked.fetch_add(1, Ordering::SeqCst);
            Response::json(
                200,
                &json!({"@odata.context": "$metadata#Edm.String", "value": links.mint()}),
            )
        } else {
            Response::json(404, &api_error("ResourceNotFound", "no such thing"))
        }
    };
    Server::start(Arc::new(handler)).expect("start the API stand-in")
}

/// One test's world: a container on Azurite holding [`BLOB`], a proxy in front of
/// Azurite, the API handing out links through the proxy, and a scratch directory.
struct Rig {
    az: &'static Azurite,
    container: String,
    proxy: Proxy,
    links: Arc<Links>,
    api: Server,
    dir: TempDir,
}

impl Rig {
    /// A rig with container `container` (3–63 lowercase letters, digits and dashes)
    /// whose proxy follows `plan`; links live 10 minutes.
    fn start(container: &str, plan: Plan) -> Rig {
        let az = azurite();
        az.create_container(container);
        let proxy = Proxy::start(az.addr(), plan);
        let links = Arc::new(Links {
            base: proxy.url(),
            container: container.to_owned(),
            lifetime: Mutex::new(Duration::from_secs(600)),
            asked: AtomicUsize::new(0),
            sigs: Mutex::default(),
        });
        let api = api(Arc::clone(&links));
        let dir = TempDir::new();
        std::fs::create_dir(dir.join("out")).expect("create out");
        Rig {
            az,
            container: container.to_owned(),
            proxy,
            links,
            api,
            dir,
        }
    }

    /// Writes the blob; returns its ETag. Azurite stores the MD5 of `bytes` unless
    /// `props` gives one.
    fn upload(&self, bytes: &[u8], props: &BlobProps) -> String {
        self.az.put_blob(&self.container, BLOB, bytes, props)
    }

    /// Writes the blob as a GetFile result named [`GZ_NAME`].
    fn upload_getfile(&self, gz: &[u8]) -> String {
        self.upload(gz, &BlobProps::attachment(GZ_NAME))
    }

    /// Links handed out from now on live `lifetime` (to the second).
    fn set_link_lifetime(&self, lifetime: Duration) {
        *self
            .links
            .lifetime
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = lifetime;
    }

    /// How many links the API handed out.
    fn links_asked(&self) -> usize {
        self.links.asked.load(Ordering::SeqCst)
    }

    /// A link through the proxy valid for ten minutes, not from the API.
    fn link(&self) -> ResultLink {
        ResultLink::new(self.links.mint())
    }

    /// Where the binary saves: `DIR/out`.
    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// The binary pointed at the API, with our token, run in the scratch directory.
    fn mdlr(&self, args: &[&str]) -> Run {
        Run::new(args)
            .arg("--api-url")
            .arg(self.api.url())
            .env("MDLR_TOKEN", TOKEN)
            .cwd(self.dir.path())
            .replace(self.dir.path().display().to_string(), "{DIR}")
    }

    /// `mdlr result ACTION --index 1 -o out/` (and `extra`).
    fn result(&self, extra: &[&str]) -> Run {
        self.mdlr(&["result", ACTION, "--index", "1", "-o", "out/"])
            .args(extra)
    }

    /// A library client for the API with fast retries and the events it reports.
    fn client(&self, read_timeout: Duration) -> (Client, Events) {
        let (events, record) = recorder();
        let client = Client::builder(Credential::token(TOKEN))
            .endpoints(Endpoints::default().with_api_base(&self.api.url()))
            .retry_policy(fast_retries())
            .timeouts(Timeouts::new(Duration::from_secs(5), read_timeout))
            .on_event(record)
            .build()
            .expect("client builds");
        (client, events)
    }

    /// `client.download_result` of command 1 into `DIR/out`, un-gzipping.
    fn download_result(&self, client: &Client) -> mdlr::Result<Downloaded> {
        let request = DownloadRequest::to_dir(self.out())
            .gunzip(Gunzip::On)
            .fallback_name("fallback");
        client.download_result(ACTION, 1, &request)
    }

    /// Bytes that went through the proxy beyond the blob's `len`: fetched twice (and
    /// the reply heads, a few hundred bytes each).
    fn fetched_twice(&self, len: usize) -> u64 {
        self.proxy.bytes_to_client().saturating_sub(len as u64)
    }

    /// The blob requests the proxy saw.
    fn requests(&self) -> Vec<Seen> {
        self.proxy.requests()
    }

    /// Checks that no output of the binary shows the token or a link's signature.
    #[track_caller]
    fn check_no_secrets(&self, out: &Outcome) {
        out.check_no_secrets();
        let sigs = self.links.sigs.lock().unwrap_or_else(|e| e.into_inner());
        for sig in sigs.iter() {
            let decoded = mdlr_tests::server::percent_decode(sig);
            for text in [&out.stdout, &out.stderr] {
                assert!(
                    !text.contains(sig.as_str()) && !text.contains(&decoded),
                    "a SAS signature shows:\n{text}"
                );
            }
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for seen in self.proxy.requests() {
            assert_eq!(
                seen.header("authorization"),
                None,
                "the blob host received an Authorization header:\n{}",
                seen.head
            );
            assert!(
                !seen.head.contains(TOKEN),
                "the blob host received the token:\n{}",
                seen.head
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Checks

/// Checks that the file at `path` holds exactly `want`, without printing megabytes.
#[track_caller]
fn check_file(path: &Path, want: &[u8]) {
    let got = read(path);
    check_same(&got, want, path);
}

#[track_caller]
fn check_same(got: &[u8], want: &[u8], what: &Path) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{} differs: {} bytes, want {}; first difference at {at:?}",
            what.display(),
            got.len(),
            want.len()
        );
    }
}

/// Checks that less than 5 % of a blob of `len` bytes went through the proxy twice.
#[track_caller]
fn check_fetched_twice(rig: &Rig, len: usize) {
    let twice = rig.fetched_twice(len);
    assert!(
        twice * 20 < len as u64,
        "{twice} of {len} bytes were fetched twice ({:.1} %); {} bytes through the proxy",
        twice as f64 * 100.0 / len as f64,
        rig.proxy.bytes_to_client()
    );
}

/// The offset a request asks for with `Range: bytes=N-` (0 without `Range`, and for
/// the `bytes=0-0` probe a rerun sends first, to learn which blob it is about).
#[track_caller]
fn range_start(seen: &Seen) -> u64 {
    match seen.header("range") {
        None | Some("bytes=0-0") => 0,
        Some(r) => r
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected Range: {r}")),
    }
}

/// Checks that the requests continue where the previous ones stopped: the first asks
/// for the whole blob, each later one for a later byte with `If-Match: etag`.
#[track_caller]
fn check_resumed(requests: &[Seen], etag: &str) {
    assert!(!requests.is_empty(), "no request reached the blob host");
    assert_eq!(requests[0].header("range"), None, "{}", requests[0].head);
    let mut last = 0;
    for seen in &requests[1..] {
        let start = range_start(seen);
        assert!(
            start > last,
            "a request went back to byte {start} after {last}:\n{}",
            seen.head
        );
        assert_eq!(seen.header("if-match"), Some(etag), "{}", seen.head);
        last = start;
    }
}

/// What `mdlr result` prints for the [`GZ_NAME`] result un-gzipped to `len` bytes.
fn saved(len: usize) -> String {
    format!("saved out/{NAME} ({len} bytes, from {GZ_NAME})\n")
}

/// Checks that stderr is `n` lines, each saying that a transfer goes on after a
/// broken connection (and showing the link with its signature redacted).
#[track_caller]
fn check_retries(out: &Outcome, n: usize) {
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), n, "stderr:\n{}", out.stderr);
    for line in lines {
        assert!(
            line.starts_with("mdlr: ") && line.contains("sig=REDACTED; retrying in "),
            "{line}"
        );
    }
}

/// Waits until `done` says so, up to `timeout`.
#[track_caller]
fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn count<T>(items: &[T], f: impl Fn(&T) -> bool) -> usize {
    items.iter().filter(|i| f(i)).count()
}

// ---------------------------------------------------------------------------------------
// The tests

/// The emulator behaves as the tests assume: ranges, ETags, expiring links.
#[test]
fn azurite_serves_ranges_etags_and_refuses_expired_links() {
    let rig = Rig::start("t-azurite", Plan::clean());
    let body = b"0123456789".repeat(100);
    let etag = rig.upload(&body, &BlobProps::attachment("x.txt.gz"));
    let url = rig.link().expose().to_owned();
    let whole = Azurite::get(&url, &[]).expect("GET");
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, body);
    assert_eq!(whole.header("etag"), Some(etag.as_str()));
    assert_eq!(
        whole.header("content-disposition"),
        Some("attachment; filename=\"x.txt.gz\"")
    );
    assert!(whole.header("content-md5").is_some());
    let part = Azurite::get(&url, &[("Range", "bytes=990-"), ("If-Match", &etag)]).expect("GET");
    assert_eq!(part.status, 206);
    assert_eq!(part.body, b"0123456789");
    assert_eq!(part.header("content-range"), Some("bytes 990-999/1000"));
    let changed =
        Azurite::get(&url, &[("Range", "bytes=10-"), ("If-Match", "\"0x1\"")]).expect("GET");
    assert_eq!(changed.status, 412);
    rig.set_link_lifetime(Duration::ZERO);
    let old = rig.link();
    std::thread::sleep(Duration::from_millis(1100));
    let expired = Azurite::get(old.expose(), &[]).expect("GET");
    assert_eq!(expired.status, 403);
    assert_eq!(
        expired.header("x-ms-error-code"),
        Some("AuthorizationFailure")
    );
}

/// A 24 MiB GetFile result through connections cut every 3 MiB, with the binary:
/// byte-identical, each retry continuing from the byte reached, < 5 % fetched twice.
#[test]
fn gzip_result_through_cuts_every_3_mib() {
    let (content, gz) = payload();
    let rig = Rig::start("t-cuts-gzip", Plan::clean().every(3 * MIB, Fault::Cut));
    let etag = rig.upload_getfile(gz);
    let out = rig.result(&[]).run();
    out.status(0);
    assert_eq!(out.normalize(&out.stdout), saved(content.len()));
    let requests = rig.requests();
    check_retries(&out, requests.len() - 1);
    rig.check_no_secrets(&out);
    check_file(&rig.out().join(NAME), content);
    assert_eq!(list(&rig.out()), delivered(NAME));
    check_resumed(&requests, &etag);
    assert!(requests.len() >= 8, "{} requests", requests.len());
    check_fetched_twice(&rig, gz.len());
    assert_eq!(rig.links_asked(), 1);
}

/// A raw 24 MiB result through connections cut every 3 MiB and replies that end
/// early while looking complete (`Content-Length` rewritten), with the library:
/// byte-identical, its MD5 (Azurite's `Content-MD5`) checked over the pieces, < 5 %
/// fetched twice.
#[test]
fn raw_result_through_cuts_and_truncated_replies() {
    let (content, _) = payload();
    let mut plan = Plan::clean();
    for n in 0..20 {
        plan = match n % 2 {
            0 => plan.nth(n, 3 * MIB, Fault::Cut),
            _ => plan.nth(n, 2 * MIB, Fault::Truncate),
        };
    }
    let rig = Rig::start("t-cuts-raw", plan);
    let etag = rig.upload(content, &BlobProps::default());
    let (client, events) = rig.client(Duration::from_secs(5));
    let path = rig.out().join("raw.bin");
    let request = DownloadRequest::to_file(path.clone()).gunzip(Gunzip::Off);
    let done = client
        .download(&rig.link(), &request)
        .expect("the download completes");
    assert_eq!(done.path, path);
    assert_eq!(done.received, content.len() as u64);
    check_file(&path, content);
    assert_eq!(list(&rig.out()), ["raw.bin"]);
    check_resumed(&rig.requests(), &etag);
    let injected = rig.proxy.injected();
    assert!(injected.iter().any(|i| i.fault == Fault::Truncate));
    let retries = count(&events.all(), |e| matches!(e, Event::Retry { .. }));
    assert_eq!(retries, injected.len(), "{injected:?}");
    check_fetched_twice(&rig, content.len());
}

/// Connections reset (RST) every 3 MiB, with the library: byte-identical, each try
/// continuing from the byte received. No bound on the bytes fetched twice here: a
/// reset discards what the client's kernel had received but not yet delivered (up to
/// megabytes on loopback), and no client can get those bytes but by asking again.
#[test]
fn raw_result_through_resets() {
    let content = &payload().0[..12 << 20];
    let rig = Rig::start("t-resets", Plan::clean().every(3 * MIB, Fault::Reset));
    let etag = rig.upload(content, &BlobProps::default());
    let (client, _) = rig.client(Duration::from_secs(5));
    let path = rig.out().join("raw.bin");
    let request = DownloadRequest::to_file(path.clone()).gunzip(Gunzip::Off);
    client
        .download(&rig.link(), &request)
        .expect("the download completes");
    check_file(&path, content);
    let requests = rig.requests();
    check_resumed(&requests, &etag);
    assert_eq!(rig.proxy.injected().len(), requests.len() - 1);
}

/// Links that expire after 2 s, cuts every 3 MiB and a proxy slow enough that links
/// expire between tries: each refused link (403 `AuthorizationFailure`) is renewed
/// through the API and the download goes on from the same byte.
#[test]
fn expiring_links_are_renewed_between_cuts() {
    let (content, gz) = payload();
    let rig = Rig::start(
        "t-expiring",
        Plan::clean().every(3 * MIB, Fault::Cut).throttle(8 * MIB),
    );
    rig.set_link_lifetime(Duration::from_secs(2));
    let etag = rig.upload_getfile(gz);
    let (client, events) = rig.client(Duration::from_secs(5));
    let done = rig
        .download_result(&client)
        .expect("the download completes");
    assert_eq!(done.path, rig.out().join(NAME));
    check_file(&done.path, content);
    assert_eq!(list(&rig.out()), [NAME]);
    let refused = count(&events.all(), |e| {
        matches!(
            e,
            Event::Exchange {
                status: Some(403),
                ..
            }
        )
    });
    assert!(refused >= 1, "no link expired: {:?}", events.all());
    assert!(
        rig.links_asked() > 1,
        "{} links asked for",
        rig.links_asked()
    );
    assert_eq!(rig.links_asked(), refused + 1);
    let requests: Vec<Seen> = rig.requests();
    // A refused request and its retry with a fresh link ask for the same byte.
    let mut starts: Vec<u64> = requests.iter().map(range_start).collect();
    starts.dedup();
    assert_eq!(starts.len() + refused, requests.len(), "{requests:?}");
    check_resumed(&dedup_by_range(&requests), &etag);
    check_fetched_twice(&rig, gz.len());
}

/// The requests with the first of each run asking for the same byte.
fn dedup_by_range(requests: &[Seen]) -> Vec<Seen> {
    let mut out: Vec<Seen> = Vec::new();
    for seen in requests {
        if out
            .last()
            .is_none_or(|l| range_start(l) != range_start(seen))
        {
            out.push(seen.clone());
        }
    }
    out
}

/// A connection that stalls for longer than `--timeout 1s`: the binary gives up on it
/// after a second and continues on a new connection, without waiting for the stall.
#[test]
fn stall_longer_than_the_timeout_resumes() {
    let (content, gz) = payload();
    let stall = Duration::from_secs(8);
    let rig = Rig::start(
        "t-stall",
        Plan::clean().nth(0, 4 * MIB, Fault::Stall(stall)),
    );
    let etag = rig.upload_getfile(gz);
    let out = rig.result(&["--timeout", "1s"]).run();
    out.status(0);
    rig.check_no_secrets(&out);
    check_file(&rig.out().join(NAME), content);
    assert!(
        out.elapsed < stall,
        "took {:?}: it waited for the stall",
        out.elapsed
    );
    let requests = rig.requests();
    check_resumed(&requests, &etag);
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(rig.proxy.injected().len(), 1);
    check_fetched_twice(&rig, gz.len());
}

/// The blob changes between a cut and the next try: `If-Match` fails (412), and the
/// download fails as malformed data (the library's `Error::Malformed`, the binary's
/// exit 65) leaving nothing behind, never a file mixing both versions. A rerun then
/// gets the new version whole.
#[test]
fn changed_blob_between_tries_is_never_mixed() {
    let (content, gz) = payload();
    let new_content = noise(99, 5 << 20);
    let new_gz = gzip(&new_content);
    assert_ne!(content.len(), new_content.len());
    // Through the library, then through the binary.
    for (binary, container) in [(false, "t-changed-lib"), (true, "t-changed-bin")] {
        let upload = {
            let az = azurite();
            let (container, new_gz) = (container.to_owned(), new_gz.clone());
            move |_: &Injected| {
                az.put_blob(&container, BLOB, &new_gz, &BlobProps::attachment(GZ_NAME));
            }
        };
        let rig = Rig::start(
            container,
            Plan::clean().nth(0, 2 * MIB, Fault::Cut).on_fault(upload),
        );
        let etag = rig.upload_getfile(gz);
        if binary {
            let out = rig.result(&[]).run();
            out.check_err(65, &["changed"]);
            rig.check_no_secrets(&out);
        } else {
            match rig.download_result(&rig.client(Duration::from_secs(5)).0) {
                Err(Error::Malformed { message, .. }) if message.contains("changed") => {}
                other => panic!("want a malformed download, got {other:?}"),
            }
        }
        assert_eq!(list(&rig.out()), Vec::<String>::new());
        let requests = rig.requests();
        assert_eq!(requests.len(), 2, "{requests:?}");
        assert_eq!(requests[1].header("if-match"), Some(etag.as_str()));
        // A rerun gets the new blob, whole.
        if binary {
            rig.result(&[]).run().status(0);
        } else {
            rig.download_result(&rig.client(Duration::from_secs(5)).0)
                .expect("the rerun completes");
        }
        check_file(&rig.out().join(NAME), &new_content);
        let want = if binary {
            delivered(NAME)
        } else {
            vec![NAME.to_owned()]
        };
        assert_eq!(list(&rig.out()), want);
    }
}

/// What a directory holds after the CLI delivered `name` into it: the file, and the
/// evidence manifest that records it.
fn delivered(name: &str) -> Vec<String> {
    let mut names = vec![name.to_owned(), "manifest.jsonl".to_owned()];
    names.sort();
    names
}

/// The partial files of a download killed in the middle: the bytes received (when
/// un-gzipping, also the file being written) and what they are.
fn partial_files(name: &str, gunzip: bool) -> Vec<String> {
    let mut names = vec![
        format!(".{name}.mdlr-part"),
        format!(".{name}.mdlr-part.json"),
    ];
    if gunzip {
        names.push(format!(".{name}.gz.mdlr-part"));
    }
    names.sort();
    names
}

/// How a test downloads the result: through the API (`mdlr result`, which gets its
/// own links), or a bare link (`mdlr fetch`, no API and no credential).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Result,
    Fetch,
}

impl Rig {
    /// `mdlr fetch LINK -o out/` (and `extra`) with a fresh link of the rig, and
    /// nothing else: no API URL, no token, no credential of any kind.
    fn fetch(&self, extra: &[&str]) -> Run {
        let link = self.link();
        Run::new(&["fetch", link.expose(), "-o", "out/"])
            .args(extra)
            .cwd(self.dir.path())
            .replace(self.dir.path().display().to_string(), "{DIR}")
    }

    /// The command downloading the result into `out/` `via` the API or a bare link.
    fn download_via(&self, via: Via, extra: &[&str]) -> Run {
        match via {
            Via::Result => self.result(extra),
            Via::Fetch => self.fetch(extra),
        }
    }
}

/// Starts `mdlr result` or `mdlr fetch` (with `--raw` unless `gunzip`) on the 24 MiB
/// GetFile result through a slow proxy, kills it (SIGKILL) once 8 MiB are on disk,
/// checks what it left (its partial files, no final file), then runs the same command
/// again at full speed and checks that it asked for the remaining bytes only and
/// finished the file byte-identical.
#[track_caller]
fn check_killed_and_rerun(container: &str, gunzip: bool, via: Via) {
    let (content, gz) = payload();
    let (name, want, args): (&str, &[u8], &[&str]) = match gunzip {
        true => (NAME, content, &[]),
        false => (GZ_NAME, gz, &["--raw"]),
    };
    let rig = Rig::start(container, Plan::clean().throttle(6 * MIB));
    let etag = rig.upload_getfile(gz);
    let received = rig.out().join(match gunzip {
        true => format!(".{NAME}.gz.mdlr-part"),
        false => format!(".{GZ_NAME}.mdlr-part"),
    });
    let running = rig.download_via(via, args).spawn();
    wait_until(Duration::from_secs(30), "8 MiB on disk", || {
        file_len(&received) >= 8 * MIB
    });
    let killed = running.kill();
    assert_eq!(killed.code, None, "mdlr ended before it was killed");
    assert_eq!(list(&rig.out()), partial_files(name, gunzip));
    let kept = file_len(&received);
    assert!(kept < gz.len() as u64, "it had finished");
    let meta = read(rig.out().join(format!(".{name}.mdlr-part.json")));
    let meta: serde_json::Value =
        serde_json::from_slice(&meta).expect("the partial file's metadata is JSON");
    assert_eq!(meta["etag"], etag.as_str());
    assert_eq!(meta["length"], gz.len());
    assert!(!meta.to_string().contains("sig"), "{meta}");

    // The same command again, at full speed.
    rig.proxy.set_plan(Plan::clean());
    let before_requests = rig.requests().len();
    let before_bytes = rig.proxy.bytes_to_client();
    let out = rig.download_via(via, args).run();
    out.check(
        0,
        &format!("saved out/{name} ({} bytes, from {GZ_NAME})\n", want.len()),
        "",
    );
    check_file(&rig.out().join(name), want);
    assert_eq!(list(&rig.out()), delivered(name));
    let rerun = &rig.requests()[before_requests..];
    let ranged: Vec<&Seen> = rerun.iter().filter(|s| range_start(s) > 0).collect();
    assert_eq!(ranged.len(), 1, "{rerun:?}");
    assert_eq!(
        ranged[0].header("range"),
        Some(format!("bytes={kept}-").as_str())
    );
    assert_eq!(ranged[0].header("if-match"), Some(etag.as_str()));
    // A rerun asks for the first byte only (the reply names the file and the blob),
    // then for the rest: nothing of what it has is sent again. (The margin covers reply
    // heads, and what the proxy still pushed into the killed run's socket buffers
    // after the count was taken.)
    assert_eq!(rerun[0].header("range"), Some("bytes=0-0"), "{rerun:?}");
    let fetched = rig.proxy.bytes_to_client() - before_bytes;
    let remaining = gz.len() as u64 - kept;
    assert!(
        fetched < remaining + 256 * 1024,
        "the rerun fetched {fetched} bytes for the {remaining} remaining ({kept} kept)"
    );
}

/// `mdlr result` killed in the middle of a GetFile download and run again: it
/// continues from the bytes received, and un-gzips the whole file.
#[test]
fn killed_download_continues_where_it_stopped() {
    check_killed_and_rerun("t-kill", true, Via::Result);
}

/// The same with `--raw` (the gzip stream kept as it is).
#[test]
fn killed_raw_download_continues_where_it_stopped() {
    check_killed_and_rerun("t-kill-raw", false, Via::Result);
}

/// `mdlr fetch` killed in the middle and run again with a fresh link to the same
/// blob: it continues from the bytes received, with no API and no credential.
#[test]
fn killed_fetch_continues_where_it_stopped() {
    check_killed_and_rerun("t-kill-fetch", true, Via::Fetch);
    check_killed_and_rerun("t-kill-fetch-raw", false, Via::Fetch);
}

/// A file that appears under the final name while the download runs stops it at the
/// end (exit 73: it is never replaced without `--force`), with every byte received and
/// checked beside it. Once that file is moved away, the same command publishes the
/// download without fetching it again.
///
/// FAILS with mdlr as of this writing: `Parts::resumable` (crates/mdlr/src/transfer.rs)
/// only continues from a partial file shorter than the blob, so a complete one is
/// thrown away and the whole blob fetched again.
#[test]
fn complete_download_blocked_at_the_end_is_not_fetched_again() {
    let content = &payload().0[..8 << 20];
    let gz = gzip_stored(content);
    let rig = Rig::start("t-blocked", Plan::clean().throttle(8 * MIB));
    rig.upload_getfile(&gz);
    let received = rig.out().join(format!(".{NAME}.gz.mdlr-part"));
    let running = rig.result(&[]).spawn();
    wait_until(Duration::from_secs(30), "1 MiB on disk", || {
        file_len(&received) >= MIB
    });
    write(rig.out().join(NAME), "someone else's");
    let out = running.wait();
    out.check_err(73, &["exists"]);
    let mut left = partial_files(NAME, true);
    left.push(NAME.to_owned());
    left.sort();
    assert_eq!(list(&rig.out()), left);
    assert_eq!(file_len(&received), gz.len() as u64);

    std::fs::remove_file(rig.out().join(NAME)).expect("move the other file away");
    rig.proxy.set_plan(Plan::clean());
    let before_requests = rig.requests().len();
    let before_bytes = rig.proxy.bytes_to_client();
    let out = rig.result(&[]).run();
    out.check(0, &saved(content.len()), "");
    check_file(&rig.out().join(NAME), content);
    assert_eq!(list(&rig.out()), delivered(NAME));
    // One request, whose reply names the file (and is dropped after its head): no
    // byte of the blob is asked for again.
    let rerun = &rig.requests()[before_requests..];
    assert_eq!(rerun.len(), 1, "{rerun:?}");
    let fetched = rig.proxy.bytes_to_client() - before_bytes;
    assert!(
        fetched < gz.len() as u64 / 2,
        "the rerun fetched {fetched} bytes of {} already on disk",
        gz.len()
    );
}

/// A blob killed in the middle and changed before the rerun: the rerun sees another
/// ETag and starts over instead of continuing the old bytes.
#[test]
fn killed_download_of_a_changed_blob_starts_over() {
    let (_, gz) = payload();
    let rig = Rig::start("t-kill-changed", Plan::clean().throttle(8 * MIB));
    rig.upload_getfile(gz);
    let raw_part = rig.out().join(format!(".{NAME}.gz.mdlr-part"));
    let running = rig.result(&[]).spawn();
    wait_until(Duration::from_secs(30), "2 MiB on disk", || {
        file_len(&raw_part) >= 2 * MIB
    });
    running.kill();
    assert_eq!(list(&rig.out()), partial_files(NAME, true));
    let new_content = noise(7, 3 << 20);
    rig.upload_getfile(&gzip(&new_content));
    rig.proxy.set_plan(Plan::clean());
    let before = rig.requests().len();
    rig.result(&[]).run().status(0);
    check_file(&rig.out().join(NAME), &new_content);
    assert_eq!(list(&rig.out()), delivered(NAME));
    let rerun = &rig.requests()[before..];
    assert!(
        rerun.iter().all(|s| range_start(s) == 0),
        "the rerun continued the old bytes: {rerun:?}"
    );
}

/// A blob whose stored `Content-MD5` does not match its bytes: exit 65 and nothing
/// under the final name, whether or not the download was cut on the way.
#[test]
fn content_md5_mismatch_is_malformed() {
    let content = noise(5, 3 << 20);
    let gz = gzip(&content);
    for (container, plan) in [
        ("t-md5", Plan::clean()),
        ("t-md5-cut", Plan::clean().every(MIB, Fault::Cut)),
    ] {
        let rig = Rig::start(container, plan);
        let props = BlobProps {
            content_md5: Some("AAAAAAAAAAAAAAAAAAAAAA==".to_owned()),
            ..BlobProps::attachment(GZ_NAME)
        };
        rig.upload(&gz, &props);
        let out = rig.result(&[]).run();
        out.check_err(65, &["MD5"]);
        rig.check_no_secrets(&out);
        assert!(
            !rig.out().join(NAME).exists(),
            "{container}: a file with the wrong MD5 was published"
        );
        assert_eq!(list(&rig.out()), Vec::<String>::new(), "{container}");
    }
}

/// A first reply cut short with a matching `Content-Length` (it claims to be the whole
/// blob): the gzip stream and the MD5 say otherwise, so exit 65 and no file.
#[test]
fn truncated_first_reply_is_not_taken_for_the_whole_result() {
    let content = noise(11, 3 << 20);
    let gz = gzip(&content);
    let rig = Rig::start("t-truncated", Plan::clean().nth(0, MIB, Fault::Truncate));
    rig.upload_getfile(&gz);
    let out = rig.result(&[]).run();
    out.status(65);
    rig.check_no_secrets(&out);
    assert!(!rig.out().join(NAME).exists());
    assert_eq!(rig.proxy.injected().len(), 1);
}

/// At `-vv`, through a cut: the blob host never gets an
/// `Authorization` header or the token (checked by the rig for every test), and no
/// output shows the token or a link's signature.
#[test]
fn token_never_reaches_the_blob_host() {
    let content = noise(13, 3 << 20);
    let gz = gzip(&content);
    let rig = Rig::start("t-token", Plan::clean().nth(0, MIB, Fault::Cut));
    rig.upload_getfile(&gz);
    let out = rig.result(&["-vv"]).run();
    out.status(0);
    rig.check_no_secrets(&out);
    check_file(&rig.out().join(NAME), &content);
    assert!(out.stderr.contains("sig=REDACTED"), "{}", out.stderr);
    let requests = rig.requests();
    assert!(requests.len() >= 2, "{requests:?}");
    for seen in &requests {
        assert_eq!(seen.header("authorization"), None, "{}", seen.head);
        assert!(!seen.head.contains(TOKEN), "{}", seen.head);
    }
}

// ---------------------------------------------------------------------------------------
// Several connections: the same faults, with the result fetched in pieces

/// A piece a request asked for: `Range: bytes=A-B` (or `A-`, up to `total`), as a
/// half-open range; the whole blob without `Range`, the first byte for the probe.
#[track_caller]
fn asked_range(seen: &Seen, total: u64) -> (u64, u64) {
    let Some(range) = seen.header("range") else {
        return (0, total);
    };
    let (a, b) = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .unwrap_or_else(|| panic!("unexpected Range: {range}"));
    let a: u64 = a
        .parse()
        .unwrap_or_else(|_| panic!("unexpected Range: {range}"));
    let b = match b {
        "" => total,
        b => {
            b.parse::<u64>()
                .unwrap_or_else(|_| panic!("unexpected Range: {range}"))
                + 1
        }
    };
    (a, b)
}

/// Checks the requests of a download in pieces: every one but the first asks for a
/// range with `If-Match: etag`, several ask at once (more than one connection was
/// open), and together they cover the blob.
#[track_caller]
fn check_pieces(requests: &[Seen], etag: &str, total: u64) {
    assert!(
        requests.len() > 1,
        "one request for the whole blob: {requests:?}"
    );
    let mut covered: Vec<(u64, u64)> = Vec::new();
    for (i, seen) in requests.iter().enumerate() {
        let (a, b) = asked_range(seen, total);
        if i > 0 || seen.header("range").is_some() {
            assert_eq!(seen.header("if-match"), Some(etag), "{}", seen.head);
        }
        covered.push((a, b));
    }
    covered.sort_unstable();
    let mut at = 0;
    for (a, b) in covered {
        assert!(a <= at, "bytes {at}..{a} were never asked for");
        at = at.max(b);
    }
    assert!(at >= total, "bytes from {at} were never asked for");
}

/// The 24 MiB GetFile result over 4 connections through cuts every 3 MiB of each
/// connection, with the binary: byte-identical, every piece with `If-Match`, < 5 %
/// fetched twice, one link.
#[test]
fn gzip_result_in_pieces_through_cuts() {
    let (content, gz) = payload();
    let rig = Rig::start("p-cuts-gzip", Plan::clean().every(3 * MIB, Fault::Cut));
    let etag = rig.upload_getfile(gz);
    let out = rig.result(&["--connections", "4"]).run();
    out.status(0);
    assert_eq!(out.normalize(&out.stdout), saved(content.len()));
    rig.check_no_secrets(&out);
    check_file(&rig.out().join(NAME), content);
    assert_eq!(list(&rig.out()), delivered(NAME));
    check_pieces(&rig.requests(), &etag, gz.len() as u64);
    assert!(
        rig.proxy.connections() >= 4,
        "{} connections",
        rig.proxy.connections()
    );
    check_fetched_twice(&rig, gz.len());
    assert_eq!(rig.links_asked(), 1);
}

/// A raw result in pieces through cuts, truncated replies and resets, with the
/// library: byte-identical, its MD5 (Azurite's `Content-MD5`) checked over the pieces
/// as their prefix grows.
#[test]
fn raw_result_in_pieces_through_cuts_truncations_and_resets() {
    let content = &payload().0[..16 << 20];
    let mut plan = Plan::clean();
    for n in 0..24 {
        plan = match n % 3 {
            0 => plan.nth(n, 3 * MIB / 2, Fault::Cut),
            1 => plan.nth(n, MIB, Fault::Truncate),
            _ => plan.nth(n, 2 * MIB, Fault::Reset),
        };
    }
    let rig = Rig::start("p-cuts-raw", plan);
    let etag = rig.upload(content, &BlobProps::default());
    let (client, _) = rig.client(Duration::from_secs(5));
    let path = rig.out().join("raw.bin");
    let request = DownloadRequest::to_file(path.clone())
        .gunzip(Gunzip::Off)
        .connections(4)
        .sha256(true);
    let done = client
        .download(&rig.link(), &request)
        .expect("the download completes");
    assert!(done.md5_checked, "Azurite sends Content-MD5");
    // The SHA-256, computed while the pieces arrived, is the file's.
    let want = mdlr_tests::util::sha256_hex(content);
    assert_eq!(done.sha256.as_deref(), Some(want.as_str()));
    assert_eq!(done.sha256_served.as_deref(), Some(want.as_str()));
    assert_eq!(done.received, content.len() as u64);
    check_file(&path, content);
    assert_eq!(list(&rig.out()), ["raw.bin"]);
    check_pieces(&rig.requests(), &etag, content.len() as u64);
    assert!(!rig.proxy.injected().is_empty());
}

/// Links that expire after 2 s while 4 slow connections fetch pieces, with the
/// library: each refused link (403) is renewed through the API — never more often than
/// links were refused, since connections that find the same link refused share the
/// fresh one — and each piece goes on from the byte it reached.
#[test]
fn expiring_links_are_renewed_once_for_every_connection() {
    let (content, gz) = payload();
    let rig = Rig::start(
        "p-expiring",
        Plan::clean().every(2 * MIB, Fault::Cut).throttle(MIB),
    );
    rig.set_link_lifetime(Duration::from_secs(2));
    let etag = rig.upload_getfile(gz);
    let (client, events) = rig.client(Duration::from_secs(5));
    let request = DownloadRequest::to_dir(rig.out())
        .gunzip(Gunzip::On)
        .connections(4)
        .sha256(true);
    let done = client
        .download_result(ACTION, 1, &request)
        .expect("the download completes");
    check_file(&done.path, content);
    // The SHA-256 of the file delivered and of the gzip stream served.
    let delivered = mdlr_tests::util::sha256_hex(content);
    let served = mdlr_tests::util::sha256_hex(gz);
    assert_eq!(done.sha256.as_deref(), Some(delivered.as_str()));
    assert_eq!(done.sha256_served.as_deref(), Some(served.as_str()));
    let refused = count(&events.all(), |e| {
        matches!(
            e,
            Event::Exchange {
                status: Some(403),
                ..
            }
        )
    });
    assert!(refused >= 1, "no link expired");
    assert!(rig.links_asked() > 1, "no link was renewed");
    assert!(
        rig.links_asked() <= refused + 1,
        "{} links asked for after {refused} refusals",
        rig.links_asked()
    );
    check_pieces(&rig.requests(), &etag, gz.len() as u64);
}

/// One connection of four (the one reading the reply of the whole blob from the
/// front) stalls longer than `--timeout 1s`: it is given up after a second and its
/// piece continues on a new connection, without waiting for the stall.
#[test]
fn a_stalled_piece_resumes() {
    let (content, gz) = payload();
    let stall = Duration::from_secs(8);
    let rig = Rig::start(
        "p-stall",
        Plan::clean().nth(0, 4 * MIB, Fault::Stall(stall)),
    );
    let etag = rig.upload_getfile(gz);
    let out = rig.result(&["--timeout", "1s", "--connections", "4"]).run();
    out.status(0);
    check_file(&rig.out().join(NAME), content);
    assert!(
        out.elapsed < stall,
        "took {:?}: it waited for the stall",
        out.elapsed
    );
    check_pieces(&rig.requests(), &etag, gz.len() as u64);
    assert_eq!(rig.proxy.injected().len(), 1);
}

/// The blob changes while 4 connections fetch it: a piece asked for with `If-Match`
/// is refused (412), the download fails as malformed (exit 65) and leaves nothing —
/// never a file mixing both versions; a rerun gets the new version whole.
#[test]
fn a_blob_changed_under_the_pieces_is_never_mixed() {
    let (_, gz) = payload();
    let new_content = noise(98, 5 << 20);
    let new_gz = gzip(&new_content);
    let upload = {
        let az = azurite();
        let new_gz = new_gz.clone();
        move |_: &Injected| {
            az.put_blob("p-changed", BLOB, &new_gz, &BlobProps::attachment(GZ_NAME));
        }
    };
    let rig = Rig::start(
        "p-changed",
        Plan::clean()
            .every(2 * MIB, Fault::Cut)
            .throttle(8 * MIB)
            .on_fault(upload),
    );
    rig.upload_getfile(gz);
    let out = rig.result(&["--connections", "4"]).run();
    out.check_err(65, &["changed"]);
    rig.check_no_secrets(&out);
    assert_eq!(list(&rig.out()), Vec::<String>::new());
    rig.proxy.set_plan(Plan::clean());
    rig.result(&["--connections", "4"]).run().status(0);
    check_file(&rig.out().join(NAME), &new_content);
    assert_eq!(list(&rig.out()), delivered(NAME));
}

/// `mdlr result --connections 4` killed in the middle: the note records the pieces
/// held; the rerun asks only for what is missing (plus the pieces that were half
/// written), with `If-Match`, and finishes byte-identical.
#[test]
fn killed_download_in_pieces_continues_with_what_is_missing() {
    for (container, gunzip) in [("p-kill", true), ("p-kill-raw", false)] {
        let (content, gz) = payload();
        let (name, want, raw): (&str, &[u8], &[&str]) = match gunzip {
            true => (NAME, content, &[]),
            false => (GZ_NAME, gz, &["--raw"]),
        };
        let args = [raw, &["--connections", "4"][..]].concat();
        let rig = Rig::start(container, Plan::clean().throttle(2 * MIB));
        let etag = rig.upload_getfile(gz);
        let note = rig.out().join(format!(".{name}.mdlr-part.json"));
        let held = || -> u64 {
            let Ok(text) = std::fs::read(&note) else {
                return 0;
            };
            let meta: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
            meta["held"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .map(|p| p[1].as_u64().unwrap_or(0) - p[0].as_u64().unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0)
        };
        let running = rig.result(&args).spawn();
        wait_until(Duration::from_secs(30), "8 MiB of pieces held", || {
            held() >= 8 * MIB
        });
        let killed = running.kill();
        assert_eq!(killed.code, None, "mdlr ended before it was killed");
        assert_eq!(list(&rig.out()), partial_files(name, gunzip));
        let kept = held();
        let meta: serde_json::Value =
            serde_json::from_slice(&read(&note)).expect("the note is JSON");
        assert_eq!(meta["etag"], etag.as_str());
        assert!(!meta.to_string().contains("sig"), "{meta}");

        rig.proxy.set_plan(Plan::clean());
        let before_requests = rig.requests().len();
        let before_bytes = rig.proxy.bytes_to_client();
        let out = rig.result(&args).run();
        out.check(
            0,
            &format!("saved out/{name} ({} bytes, from {GZ_NAME})\n", want.len()),
            "",
        );
        check_file(&rig.out().join(name), want);
        assert_eq!(list(&rig.out()), delivered(name));
        let rerun = &rig.requests()[before_requests..];
        assert_eq!(rerun[0].header("range"), Some("bytes=0-0"), "{rerun:?}");
        for seen in &rerun[1..] {
            assert_eq!(
                seen.header("if-match"),
                Some(etag.as_str()),
                "{}",
                seen.head
            );
        }
        // Pieces are 1.5 MiB here: at most one half-written piece per connection is
        // fetched again.
        let fetched = rig.proxy.bytes_to_client() - before_bytes;
        let remaining = gz.len() as u64 - kept;
        assert!(
            fetched < remaining + 4 * (3 * MIB / 2) + 256 * 1024,
            "{container}: the rerun fetched {fetched} bytes for the {remaining} missing"
        );
    }
}

/// A stored `Content-MD5` that does not match, over 4 connections (one of them cut):
/// exit 65 and nothing under the final name.
#[test]
fn content_md5_mismatch_in_pieces_is_malformed() {
    let content = noise(6, 6 << 20);
    let gz = gzip(&content);
    let rig = Rig::start("p-md5", Plan::clean().nth(2, MIB, Fault::Cut));
    let props = BlobProps {
        content_md5: Some("AAAAAAAAAAAAAAAAAAAAAA==".to_owned()),
        ..BlobProps::attachment(GZ_NAME)
    };
    rig.upload(&gz, &props);
    let out = rig.result(&["--connections", "4"]).run();
    out.check_err(65, &["MD5"]);
    rig.check_no_secrets(&out);
    assert_eq!(list(&rig.out()), Vec::<String>::new());
}

/// A result of 64 MiB or more is fetched over 4 connections without being asked.
#[test]
fn large_results_use_four_connections_by_default() {
    let content = noise(64, 64 << 20);
    let rig = Rig::start("p-default", Plan::clean());
    let etag = rig.upload(&content, &BlobProps::attachment("big.bin"));
    let out = rig.fetch(&[]).run();
    out.check(
        0,
        &format!(
            "saved out/big.bin ({} bytes, from big.bin)\n",
            content.len()
        ),
        "",
    );
    check_file(&rig.out().join("big.bin"), &content);
    check_pieces(&rig.requests(), &etag, content.len() as u64);
    assert!(
        rig.proxy.connections() >= 4,
        "{} connections",
        rig.proxy.connections()
    );
}

// ---------------------------------------------------------------------------------------
// `mdlr fetch`: a bare link, no API, no credential

/// A GetFile result through connections cut every 2 MiB, fetched from a bare link with
/// nothing in the environment: byte-identical, each try continuing from the byte
/// reached, the API never asked, and (checked by the rig) no `Authorization` header.
#[test]
fn fetch_needs_no_credential_and_resumes_through_cuts() {
    let content = &payload().0[..8 << 20];
    let gz = gzip_stored(content);
    let rig = Rig::start("t-fetch-cuts", Plan::clean().every(2 * MIB, Fault::Cut));
    let etag = rig.upload_getfile(&gz);
    let out = rig.fetch(&[]).run();
    out.status(0);
    assert_eq!(out.normalize(&out.stdout), saved(content.len()));
    let requests = rig.requests();
    check_retries(&out, requests.len() - 1);
    rig.check_no_secrets(&out);
    check_file(&rig.out().join(NAME), content);
    assert_eq!(list(&rig.out()), delivered(NAME));
    check_resumed(&requests, &etag);
    assert!(requests.len() >= 4, "{} requests", requests.len());
    assert_eq!(rig.links_asked(), 0, "fetch asked the API for a link");
}

/// The link read from stdin (out of the process list), `--raw`, `-o FILE`, an existing
/// file kept without `--force`, and `--json`.
#[test]
fn fetch_forms() {
    let content = noise(21, 300_000);
    let gz = gzip(&content);
    let rig = Rig::start("t-fetch-forms", Plan::clean());
    rig.upload_getfile(&gz);
    let link = rig.link();
    Run::new(&["fetch", "-", "-o", "out/"])
        .stdin(format!("{}\n", link.expose()))
        .cwd(rig.dir.path())
        .check(0, &saved(content.len()), "");
    check_file(&rig.out().join(NAME), &content);
    rig.fetch(&[])
        .run()
        .check_err(73, &["exists already", "--force"]);
    rig.fetch(&["--force", "--raw"]).check(
        0,
        &format!("saved out/{GZ_NAME} ({} bytes, from {GZ_NAME})\n", gz.len()),
        "",
    );
    check_file(&rig.out().join(GZ_NAME), &gz);
    let file = rig.out().join("named.bin");
    let out = Run::new(&["--json", "fetch", link.expose(), "-o"])
        .arg(&file)
        .run();
    out.status(0);
    let record = &out.json_lines()[0];
    assert_eq!(record["bytes"], content.len());
    assert_eq!(record["received"], gz.len());
    assert_eq!(record["original_name"], GZ_NAME);
    assert_eq!(record["gunzipped"], true);
    assert_eq!(record["md5_checked"], true);
    check_file(&file, &content);
    rig.check_no_secrets(&out);
    Run::new(&["fetch", "-"])
        .stdin("")
        .run()
        .check_err(64, &["no link given"]);
    assert_eq!(rig.links_asked(), 0);
}

/// A link that expires while the download runs cannot be renewed without the API:
/// the next connection is refused (77), the message says to get a fresh link, and the
/// bytes received stay; `mdlr fetch` with a fresh link continues from them.
#[test]
fn fetch_of_an_expiring_link_fails_clearly_and_resumes_with_a_fresh_one() {
    let content = &payload().0[..6 << 20];
    let gz = gzip_stored(content);
    // 1 MiB/s, and one cut at 4 MiB: 4 s in, after the link (2 s) has expired.
    let rig = Rig::start(
        "t-fetch-expiry",
        Plan::clean().throttle(MIB).nth(0, 4 * MIB, Fault::Cut),
    );
    let etag = rig.upload_getfile(&gz);
    rig.set_link_lifetime(Duration::from_secs(2));
    let out = rig.fetch(&[]).run();
    out.check_err(
        77,
        &[
            "the result host answered 403",
            "hint: the result host refused the link: it may have expired",
            "mdlr link ACTION_ID --index N --reveal",
        ],
    );
    rig.check_no_secrets(&out);
    // The bytes as received and what they are; the un-gzipped part is rebuilt from them.
    assert_eq!(
        list(&rig.out()),
        [
            format!(".{NAME}.gz.mdlr-part"),
            format!(".{NAME}.mdlr-part.json")
        ]
    );
    let kept = file_len(&rig.out().join(format!(".{NAME}.gz.mdlr-part")));
    assert!(kept >= 3 * MIB, "only {kept} bytes kept");
    // A fresh link to the same blob: only the rest is fetched.
    rig.proxy.set_plan(Plan::clean());
    rig.set_link_lifetime(Duration::from_secs(600));
    let before = rig.requests().len();
    rig.fetch(&[]).check(0, &saved(content.len()), "");
    check_file(&rig.out().join(NAME), content);
    let rerun = &rig.requests()[before..];
    let ranged: Vec<&Seen> = rerun.iter().filter(|s| range_start(s) > 0).collect();
    assert_eq!(ranged.len(), 1, "{rerun:?}");
    assert_eq!(
        ranged[0].header("range"),
        Some(format!("bytes={kept}-").as_str())
    );
    assert_eq!(ranged[0].header("if-match"), Some(etag.as_str()));
    assert_eq!(rig.links_asked(), 0);
}

/// What `mdlr fetch` refuses before anything is sent: plain http to a host that is not
/// loopback (78), and a line without a link (64).
#[test]
fn fetch_refuses_insecure_links_before_sending() {
    Run::new(&["fetch", "http://results.example.com/c/b?sig=abc123secret"])
        .run()
        .check_err(78, &["refusing plain http://", "sig=REDACTED"]);
    Run::new(&["fetch"]).run().check_err(64, &["missing URL"]);
}

// ---------------------------------------------------------------------------------------
// Renewal ahead of expiry (fast, and at the real margins: slow), and the 1 GiB figure

/// Links are renewed ahead of their expiry (`se`), not only once refused, over one
/// connection and over four: a link that lives 9 s, renewed 6 s before its end (so
/// after 3 s), at the first request from then on; no request is ever refused. The
/// same promise at its real margins (5 minutes) is [`links_are_renewed_ahead_of_expiry`].
#[test]
fn links_are_renewed_ahead_of_expiry_fast() {
    let content = &payload().0[..4 << 20];
    // About 4 s either way: 1 MiB/s over one connection, 256 KiB/s over each of four.
    for (connections, container) in [(1, "t-ahead-fast"), (4, "p-ahead-fast")] {
        let rig = Rig::start(
            container,
            Plan::clean()
                .every(MIB / 2, Fault::Cut)
                .throttle(MIB / connections as u64),
        );
        rig.set_link_lifetime(Duration::from_secs(9));
        let etag = rig.upload(content, &BlobProps::attachment("raw.bin"));
        let (events, record) = recorder();
        let client = Client::builder(Credential::token(TOKEN))
            .endpoints(Endpoints::default().with_api_base(&rig.api.url()))
            .retry_policy(fast_retries())
            .renew_links_before(Duration::from_secs(6))
            .on_event(record)
            .build()
            .expect("client builds");
        let request = DownloadRequest::to_dir(rig.out())
            .gunzip(Gunzip::Off)
            .connections(connections);
        let started = Instant::now();
        let done = client
            .download_result(ACTION, 1, &request)
            .expect("the download completes");
        let elapsed = started.elapsed();
        assert!(elapsed > Duration::from_secs(3), "too fast: {elapsed:?}");
        check_file(&done.path, content);
        let refused = count(&events.all(), |e| {
            matches!(
                e,
                Event::Exchange {
                    status: Some(403),
                    ..
                }
            )
        });
        assert_eq!(
            refused, 0,
            "{connections} connection(s): a link was refused"
        );
        assert!(
            rig.links_asked() >= 2,
            "{connections} connection(s): no renewal in {elapsed:?}"
        );
        match connections {
            1 => check_resumed(&rig.requests(), &etag),
            _ => check_pieces(&rig.requests(), &etag, content.len() as u64),
        }
    }
}

/// Links are renewed ahead of their expiry at the real margins: a link that lives
/// 6 min 1 s is renewed 5 min before its end, that is after 61 s, at the first
/// reconnection from then on, and no request is ever refused. The transfer is slowed
/// down to last about 80 s: `cargo xtask test --slow` runs it.
#[test]
#[ignore = "slow: 80 s; cargo xtask test --slow"]
fn links_are_renewed_ahead_of_expiry() {
    let content = &payload().0[..];
    let rig = Rig::start(
        "t-ahead",
        Plan::clean().every(2 * MIB, Fault::Cut).throttle(300 << 10),
    );
    rig.set_link_lifetime(Duration::from_secs(361));
    let etag = rig.upload(content, &BlobProps::attachment("raw.bin"));
    let (client, events) = rig.client(Duration::from_secs(5));
    let request = DownloadRequest::to_dir(rig.out())
        .gunzip(Gunzip::Off)
        .fallback_name("x");
    let started = Instant::now();
    let done = client
        .download_result(ACTION, 1, &request)
        .expect("the download completes");
    let elapsed = started.elapsed();
    assert!(elapsed > Duration::from_secs(65), "too fast: {elapsed:?}");
    check_file(&done.path, content);
    check_resumed(&rig.requests(), &etag);
    let refused = count(&events.all(), |e| {
        matches!(
            e,
            Event::Exchange {
                status: Some(403),
                ..
            }
        )
    });
    assert_eq!(refused, 0);
    assert_eq!(rig.links_asked(), 2, "in {elapsed:?}");
}

/// Noise as a stream: the same bytes as `mdlr_tests::util::noise(seed, len)`.
struct Noise {
    x: u64,
    left: u64,
    word: [u8; 8],
    used: usize,
}

impl Noise {
    fn new(seed: u64, len: u64) -> Noise {
        Noise {
            x: seed,
            left: len,
            word: [0; 8],
            used: 8,
        }
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for b in &mut buf[..n] {
            if self.used == 8 {
                self.x = mix(self.x);
                self.word = self.x.to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Checks that the file at `path` holds what `want` produces, a block at a time.
#[track_caller]
fn check_file_streaming(path: &Path, mut want: impl Read) {
    let mut file = std::io::BufReader::new(std::fs::File::open(path).expect("open the file"));
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let n = read_up_to(&mut want, &mut b);
        let m = read_up_to(&mut file, &mut a[..n.max(1)]);
        assert_eq!(
            m,
            n,
            "{} ends at {} bytes",
            path.display(),
            offset + m as u64
        );
        if n == 0 {
            return;
        }
        if a[..n] != b[..n] {
            let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(0);
            panic!("{} differs at byte {}", path.display(), offset + at as u64);
        }
        offset += n as u64;
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => panic!("read: {e}"),
        }
    }
    n
}

/// The large-transfer figure for BENCHMARKS.md: a 1 GiB GetFile result (noise, so the
/// gzip stream is 1 GiB too) downloaded and un-gzipped by the binary through
/// connections cut every 8 MiB, with links that expire every 5 s; then the same
/// download again through the same proxy without faults, for comparison. Prints the
/// figures. `MDLR_FAULTS_SIZE_MIB` sets another size.
///
/// `cargo test --release -p mdlr-tests --test e2e \
///  transfer::one_gib_through_cuts_and_expiring_links -- --ignored --nocapture`
/// (or `cargo xtask test --slow`).
#[test]
#[ignore = "slow: minutes; cargo xtask test --slow"]
fn one_gib_through_cuts_and_expiring_links() {
    let size: u64 = std::env::var("MDLR_FAULTS_SIZE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
        * MIB;
    let cut = 8 * MIB;
    let lifetime = Duration::from_secs(5);
    let seed = 0x0001_0000_0000;
    let rig = Rig::start("t-one-gib", Plan::clean().every(cut, Fault::Cut));
    rig.set_link_lifetime(lifetime);
    let started = Instant::now();
    let gz = flate2::read::GzEncoder::new(Noise::new(seed, size), flate2::Compression::fast());
    let (etag, blob_len) = rig.az.put_blob_blocks(
        &rig.container,
        BLOB,
        gz,
        64 << 20,
        &BlobProps::attachment(GZ_NAME),
    );
    eprintln!(
        "uploaded {blob_len} bytes ({etag}) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let out = rig.result(&[]).run();
    out.status(0);
    rig.check_no_secrets(&out);
    check_file_streaming(&rig.out().join(NAME), Noise::new(seed, size));
    let requests = rig.requests();
    check_resumed(&dedup_by_range(&requests), &etag);
    let fetched = rig.proxy.bytes_to_client();
    let twice = fetched.saturating_sub(blob_len);
    let (cuts, links) = (rig.proxy.injected().len(), rig.links_asked());
    let secs = out.elapsed.as_secs_f64();

    // The same without faults, for comparison.
    std::fs::remove_file(rig.out().join(NAME)).expect("remove the file");
    rig.proxy.set_plan(Plan::clean());
    rig.set_link_lifetime(Duration::from_secs(600));
    let (clean_requests, clean_bytes) = (requests.len(), fetched);
    let clean = rig.result(&[]).run();
    clean.status(0);
    let clean_requests = rig.requests().len() - clean_requests;
    let clean_bytes = rig.proxy.bytes_to_client() - clean_bytes;
    let clean_secs = clean.elapsed.as_secs_f64();
    let mib = blob_len as f64 / MIB as f64;
    eprintln!(
        "\n== transfer-faults figures\n\
         binary:            {}\n\
         blob:              {blob_len} bytes (gzip of {size} bytes of noise)\n\
         cut every:         {cut} bytes of reply ({cuts} cuts)\n\
         link lifetime:     {} s ({links} links handed out)\n\
         requests:          {}\n\
         bytes fetched:     {fetched}\n\
         fetched twice:     {twice} bytes ({:.4} %)\n\
         wall time:         {secs:.1} s ({:.1} MiB/s of blob)\n\
         without faults:    {clean_secs:.1} s ({:.1} MiB/s of blob), {clean_requests} \
         request(s), {clean_bytes} bytes fetched",
        mdlr_bin().display(),
        lifetime.as_secs(),
        requests.len(),
        twice as f64 * 100.0 / blob_len as f64,
        mib / secs,
        mib / clean_secs,
    );
    assert!(twice * 20 < blob_len, "{twice} bytes fetched twice");
    assert!(links > 1, "no link was renewed");
}
