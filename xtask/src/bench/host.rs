//! The std-only stand-in for the result host (Azure Blob Storage) and, for the small
//! RunScript case, the Defender API, on 127.0.0.1 in the xtask process.
//!
//! - Blobs are held in memory and a whole reply is sent with one `write` (std's
//!   `io::copy` does not `sendfile` to a socket, and a small-buffer copy made the
//!   server the bottleneck), so the server carries more than any client takes.
//! - As Azure: `Range: bytes=A-B`, `A-` and `-N` (206 with `Content-Range`, 416 past the
//!   end), `If-Match` on the ETag (412 when it differs), `HEAD`, `Content-MD5` on whole
//!   replies and `x-ms-blob-content-md5` on ranged ones when the blob has an MD5.
//! - A blob can be *shaped*: every connection waits before its reply's head (latency)
//!   and pauses after every chunk of its body, which caps each connection's speed the
//!   way a distant jump host or a throttling proxy does, while several connections
//!   together get several times that.
//! - One request per connection (`Connection: close`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The bearer token the stand-in API takes. Not a secret.
pub const TOKEN: &str = "bench-token-0d5c";
/// The action id of the small RunScript result.
pub const SMALL_ID: &str = "988cc94e-7a8f-4b28-ab65-54970c5d5018";

/// How a shaped blob is sent on each connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Bytes written between pauses.
    pub chunk: usize,
    /// The pause after each chunk.
    pub pause: Duration,
    /// The wait before the reply's head.
    pub latency: Duration,
}

impl Shape {
    /// The speed one connection is capped at, MiB/s (not counting the time to write).
    pub fn mib_per_s(&self) -> f64 {
        self.chunk as f64 / (1024.0 * 1024.0) / self.pause.as_secs_f64()
    }
}

/// A blob the host serves.
pub struct Blob {
    pub bytes: Arc<Vec<u8>>,
    /// `Content-Disposition`, as the service sets for GetFile results.
    pub disposition: Option<String>,
    /// The blob's MD5, base64, computed once by the caller.
    pub content_md5: Option<String>,
    pub shape: Option<Shape>,
}

/// What the host saw of one blob.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    /// Requests with a `Range`.
    pub ranged: u64,
}

struct State {
    base: String,
    blobs: Mutex<HashMap<String, Arc<Blob>>>,
    counts: Mutex<HashMap<String, Counts>>,
    /// The small RunScript transcript.
    transcript: Vec<u8>,
}

/// The running host; stops on drop.
pub struct Host {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Host {
    /// Listens on 127.0.0.1; `transcript` is the small RunScript result's blob.
    pub fn start(transcript: Vec<u8>) -> Result<Host, String> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        let state = Arc::new(State {
            base: format!("http://{addr}"),
            blobs: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            transcript,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let serving = Arc::clone(&state);
        let accept = std::thread::Builder::new()
            .name("bench-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let state = Arc::clone(&serving);
                    let _ =
                        std::thread::Builder::new()
                            .name("bench-conn".into())
                            .spawn(move || {
                                // A client that goes away mid-reply is not our problem.
                                let _ = state.serve(stream);
                            });
                }
            })
            .map_err(|e| format!("cannot start the server thread: {e}"))?;
        Ok(Host {
            addr,
            state,
            stop,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:PORT`, the API's base URL.
    pub fn url(&self) -> String {
        self.state.base.clone()
    }

    /// Serves `blob` under `name` (replacing one of that name).
    pub fn put(&self, name: &str, blob: Blob) {
        if let Ok(mut blobs) = self.state.blobs.lock() {
            blobs.insert(name.to_owned(), Arc::new(blob));
        }
    }

    /// Stops serving `name` (its memory goes once the replies in flight end).
    pub fn remove(&self, name: &str) {
        if let Ok(mut blobs) = self.state.blobs.lock() {
            blobs.remove(name);
        }
    }

    /// The SAS-style link of blob `name` (signature and expiry as a real one has them).
    pub fn link(&self, name: &str) -> String {
        self.state.link(name)
    }

    /// What the host saw of `name` since the last call (and forgets it).
    pub fn take_counts(&self, name: &str) -> Counts {
        self.state
            .counts
            .lock()
            .ok()
            .and_then(|mut c| c.remove(name))
            .unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

/// The parts of a request the host looks at.
#[derive(Debug, Default, PartialEq)]
struct Head {
    method: String,
    path: String,
    authorization: Option<String>,
    range: Option<String>,
    if_match: Option<String>,
}

impl State {
    fn link(&self, name: &str) -> String {
        format!(
            "{}/blob/{name}?se=2099-01-01T00%3A00%3A00Z&sp=r&sv=2019-07-07&sr=b&sig=bench",
            self.base
        )
    }

    fn serve(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        let head = read_head(&mut BufReader::new(stream.try_clone()?))?;
        if head.method != "GET" && head.method != "HEAD" {
            return reply(&mut stream, 405, "text/plain", b"GET only\n", &[]);
        }
        if let Some(name) = head.path.strip_prefix("/blob/") {
            if head.authorization.is_some() {
                return reply(
                    &mut stream,
                    400,
                    "text/plain",
                    b"no bearer token here\n",
                    &[],
                );
            }
            if name == "small" {
                let etag = [("ETag", "\"0x8DEADBEEF\"")];
                return reply(
                    &mut stream,
                    200,
                    "application/octet-stream",
                    &self.transcript,
                    &etag,
                );
            }
            let blob = self.blobs.lock().ok().and_then(|b| b.get(name).cloned());
            let Some(blob) = blob else {
                return reply(
                    &mut stream,
                    404,
                    "application/xml",
                    b"<Error><Code>BlobNotFound</Code></Error>",
                    &[],
                );
            };
            if let Ok(mut counts) = self.counts.lock() {
                let c = counts.entry(name.to_owned()).or_default();
                c.requests += 1;
                c.ranged += u64::from(head.range.is_some());
            }
            return send_blob(&mut stream, &blob, &head);
        }
        self.api(&mut stream, &head)
    }

    /// The two API calls of `mdlr result SMALL_ID`.
    fn api(&self, stream: &mut TcpStream, head: &Head) -> std::io::Result<()> {
        if head.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
            let body = b"{\"error\":{\"code\":\"Unauthorized\",\"message\":\"no token\"}}";
            return reply(stream, 401, "application/json", body, &[]);
        }
        let json = "application/json; charset=utf-8";
        let action = format!("/api/machineactions/{SMALL_ID}");
        if head.path == action {
            return reply(stream, 200, json, &small_action_json(), &[]);
        }
        if head.path == format!("{action}/GetLiveResponseResultDownloadLink(index=0)") {
            let body = serde_json::json!({
                "@odata.context": "https://api.securitycenter.microsoft.com/api/$metadata#Edm.String",
                "value": self.link("small"),
            });
            return reply(stream, 200, json, body.to_string().as_bytes(), &[]);
        }
        let body = b"{\"error\":{\"code\":\"ResourceNotFound\",\"message\":\"no such action\"}}";
        reply(stream, 404, "application/json", body, &[])
    }
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Head> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let mut head = Head {
        method: parts.next().unwrap_or_default().to_owned(),
        path: parts
            .next()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned(),
        ..Head::default()
    };
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            return Ok(head);
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = Some(value.trim().to_owned());
        match name.trim().to_ascii_lowercase().as_str() {
            "authorization" => head.authorization = value,
            "range" | "x-ms-range" => head.range = value,
            "if-match" => head.if_match = value,
            _ => {}
        }
    }
}

fn small_action_json() -> Vec<u8> {
    serde_json::json!({
        "id": SMALL_ID,
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
            "command": {"type": "RunScript", "params": [{"key": "ScriptName", "value": "triage.ps1"}]},
        }],
    })
    .to_string()
    .into_bytes()
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

/// What a `Range` header asks of a blob of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    /// No range, or one Azure ignores (several ranges, a malformed one): all of it.
    Whole,
    /// Bytes `from..=to`.
    Part(u64, u64),
    /// Starts past the end: 416.
    Unsatisfiable,
}

fn wanted(range: Option<&str>, len: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Wanted::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // The last N bytes.
        return match b.parse::<u64>() {
            Ok(0) => Wanted::Unsatisfiable,
            Ok(_) if len == 0 => Wanted::Unsatisfiable,
            Ok(n) => Wanted::Part(len.saturating_sub(n), len - 1),
            Err(_) => Wanted::Whole,
        };
    }
    let Ok(from) = a.parse::<u64>() else {
        return Wanted::Whole;
    };
    let to = match b {
        "" => u64::MAX,
        b => match b.parse::<u64>() {
            Ok(to) if to >= from => to,
            _ => return Wanted::Whole,
        },
    };
    if from >= len {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part(from, to.min(len - 1))
}

/// The blob as Azure sends one: whole, or the part a `Range` asks for.
fn send_blob(stream: &mut TcpStream, blob: &Blob, head: &Head) -> std::io::Result<()> {
    let len = blob.bytes.len() as u64;
    let etag = format!("\"0x8DC{len:X}\"");
    if let Some(shape) = &blob.shape {
        std::thread::sleep(shape.latency);
    }
    if let Some(tag) = &head.if_match
        && tag != "*"
        && *tag != etag
    {
        let body = b"<Error><Code>ConditionNotMet</Code></Error>";
        return reply(stream, 412, "application/xml", body, &[]);
    }
    let (status, from, to) = match wanted(head.range.as_deref(), len) {
        Wanted::Unsatisfiable => {
            let range = format!("bytes */{len}");
            let body = b"<Error><Code>InvalidRange</Code></Error>";
            return reply(
                stream,
                416,
                "application/xml",
                body,
                &[("Content-Range", &range)],
            );
        }
        Wanted::Whole => (200, 0, len),
        Wanted::Part(from, to) => (206, from, to + 1),
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\
         Last-Modified: Fri, 27 Nov 2026 10:01:02 GMT\r\nAccept-Ranges: bytes\r\n\
         ETag: {etag}\r\nx-ms-blob-type: BlockBlob\r\nx-ms-version: 2019-07-07\r\n",
        mdlr_tests::server::reason(status),
        to - from,
    );
    if status == 206 {
        out.push_str(&format!("Content-Range: bytes {from}-{}/{len}\r\n", to - 1));
    }
    if let Some(d) = &blob.disposition {
        out.push_str(&format!("Content-Disposition: {d}\r\n"));
    }
    // As Azure: the whole blob's MD5 as Content-MD5 on a whole reply, in its own header
    // on a ranged one.
    if let Some(md5) = &blob.content_md5 {
        let name = if status == 200 {
            "Content-MD5"
        } else {
            "x-ms-blob-content-md5"
        };
        out.push_str(&format!("{name}: {md5}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    stream.write_all(out.as_bytes())?;
    if head.method == "HEAD" {
        return stream.flush();
    }
    let body = usize::try_from(from)
        .ok()
        .zip(usize::try_from(to).ok())
        .and_then(|(a, b)| blob.bytes.get(a..b))
        .ok_or_else(|| std::io::Error::other("range out of the blob"))?;
    match &blob.shape {
        // One write: the kernel copies it into the socket as the client reads.
        None => stream.write_all(body)?,
        Some(shape) => {
            for chunk in body.chunks(shape.chunk.max(1)) {
                stream.write_all(chunk)?;
                std::thread::sleep(shape.pause);
            }
        }
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(wanted(None, 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-0"), 10), Wanted::Part(0, 0));
        assert_eq!(wanted(Some("bytes=4-"), 10), Wanted::Part(4, 9));
        assert_eq!(wanted(Some("bytes=4-99"), 10), Wanted::Part(4, 9));
        assert_eq!(wanted(Some("bytes=-3"), 10), Wanted::Part(7, 9));
        assert_eq!(wanted(Some("bytes=-30"), 10), Wanted::Part(0, 9));
        assert_eq!(wanted(Some("bytes=10-"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=5-2"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-1,4-5"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-1"), 10), Wanted::Whole);
    }

    #[test]
    fn heads() {
        let text = "GET /blob/x?sig=a HTTP/1.1\r\nRange: bytes=1-2\r\nIf-Match: \"e\"\r\n\
                    authorization: Bearer t\r\n\r\nbody";
        let head = read_head(&mut text.as_bytes());
        assert_eq!(
            head.ok(),
            Some(Head {
                method: "GET".into(),
                path: "/blob/x".into(),
                authorization: Some("Bearer t".into()),
                range: Some("bytes=1-2".into()),
                if_match: Some("\"e\"".into()),
            })
        );
    }

    #[test]
    fn shaped_speed() {
        let shape = Shape {
            chunk: 64 * 1024,
            pause: Duration::from_millis(8),
            latency: Duration::from_millis(20),
        };
        assert!((shape.mib_per_s() - 7.8125).abs() < 1e-9);
    }
}
