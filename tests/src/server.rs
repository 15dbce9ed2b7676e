//! A minimal HTTP/1.1 server on loopback for tests and the demo: one thread per
//! connection, one request per connection (`Connection: close`), no async runtime, no
//! crates.
//!
//! - Request bodies are read from `Content-Length` or `Transfer-Encoding: chunked`, up to
//!   [`ServerConfig::max_body`] (8 MiB by default; more gets `413`). `Expect:
//!   100-continue` is answered.
//! - Whatever the client sends, the server answers or closes: a malformed request gets
//!   `400`, a handler that panics gets `500`, and no thread dies silently.
//! - The accepting thread only accepts and hands each connection to a fresh thread, so
//!   hundreds of concurrent clients are served as fast as the kernel's listen backlog
//!   fills.
//! - [`Server::stop`] (also on drop) stops accepting and waits (briefly) for the
//!   requests in flight to be answered.
//! - The exchange itself works on any `Read + Write` stream, so another transport can
//!   serve the same [`Handler`]s with this module's accepting, stopping and draining.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Largest request head (request line and headers) accepted.
const MAX_HEAD: u64 = 64 * 1024;

/// How the server reads requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes; a larger one gets `413`.
    pub max_body: usize,
    /// How long a connection may sit idle while its request is read or its reply written.
    pub idle: Duration,
    /// How long [`Server::stop`] waits for requests in flight.
    pub drain: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_body: 8 << 20,
            idle: Duration::from_secs(10),
            drain: Duration::from_secs(5),
        }
    }
}

/// A request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target: path and query, as sent (not decoded).
    pub target: String,
    headers: Vec<(String, String)>,
    /// The body (empty when none was sent).
    pub body: Vec<u8>,
}

impl Request {
    /// Builds a request by hand (for handler unit tests).
    pub fn new(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header, in the order received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The target without its query (not decoded).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The target's query, if any (not decoded).
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The query's parameters, names and values percent-decoded (`+` as a space).
    pub fn query_params(&self) -> Vec<(String, String)> {
        parse_query(self.query().unwrap_or_default())
    }

    /// The decoded value of query parameter `name` (the first one, case-sensitive).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// A reply: status, headers (besides `Content-Length` and `Connection`) and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers to send, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A reply with `content_type` and `body`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    /// A JSON reply.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(
            status,
            "application/json; charset=utf-8",
            value.to_string().into_bytes(),
        )
    }

    /// A plain-text reply.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            text.into().into_bytes(),
        )
    }

    /// A reply without a body (no `Content-Type`).
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What answers requests. It runs on the connection's own thread.
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// Requests being answered, and a way to wait until there are none.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    fn enter(self: &Arc<Self>) -> InFlightGuard {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        InFlightGuard(Arc::clone(self))
    }

    fn wait_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count > 0 {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            count = match self.idle.wait_timeout(count, deadline - now) {
                Ok((c, _)) => c,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut count = self.0.count.lock().unwrap_or_else(|e| e.into_inner());
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// A running server; [`Server::stop`] (or drop) ends it.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    in_flight: Arc<InFlight>,
    drain: Duration,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Listens on `127.0.0.1` on a port the system picks and serves with `handler`.
    pub fn start(handler: Arc<Handler>) -> io::Result<Server> {
        Server::start_with(ServerConfig::default(), handler)
    }

    /// As [`Server::start`], with `config`.
    pub fn start_with(config: ServerConfig, handler: Arc<Handler>) -> io::Result<Server> {
        Server::start_connections(
            config,
            Arc::new(move |stream| serve(stream, &*handler, &config)),
        )
    }

    /// Listens on `127.0.0.1` on a port the system picks and hands each accepted
    /// connection to `connection`, on a thread of its own (how another transport gets
    /// the same accepting, stopping and draining).
    pub(crate) fn start_connections(
        config: ServerConfig,
        connection: Arc<dyn Fn(TcpStream) + Send + Sync>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(InFlight::default());
        let stopping = Arc::clone(&stop);
        let flight = Arc::clone(&in_flight);
        let accept = std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let stream = match conn {
                        Ok(stream) => stream,
                        Err(_) => {
                            // Out of file descriptors and the like: let it pass.
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                    };
                    let connection = Arc::clone(&connection);
                    let guard = flight.enter();
                    // A connection that cannot get a thread is dropped: the client sees
                    // the failure.
                    let _ = std::thread::Builder::new()
                        .name("http-conn".into())
                        .spawn(move || {
                            connection(stream);
                            drop(guard);
                        });
                }
            })?;
        Ok(Server {
            addr,
            stop,
            in_flight,
            drain: config.drain,
            accept: Some(accept),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, waits for the accepting thread, then waits (up to
    /// [`ServerConfig::drain`]) for the requests in flight to be answered.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() up so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
        self.in_flight.wait_idle(self.drain);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.shutdown();
        }
    }
}

/// Why a request could not be read.
enum ReadError {
    /// Malformed: answer `400`.
    Bad(String),
    /// Body larger than allowed: answer `413`.
    TooLarge,
    /// The connection failed: nothing to answer.
    Io,
}

/// Serves one request on `stream`, then closes it.
fn serve(stream: TcpStream, handler: &Handler, config: &ServerConfig) {
    let _ = stream.set_read_timeout(Some(config.idle));
    let _ = stream.set_write_timeout(Some(config.idle));
    let _ = stream.set_nodelay(true);
    if exchange(&mut &stream, handler, config).is_some() {
        close(&stream);
    }
}

/// Reads one request from `stream`, answers it and flushes the reply. `None` when there
/// was nothing to answer (the connection closed or failed first); else whether the
/// whole reply was written.
pub(crate) fn exchange<S: Read + Write>(
    stream: &mut S,
    handler: &Handler,
    config: &ServerConfig,
) -> Option<bool> {
    let response = match read_request(stream, config) {
        Ok(Some(request)) => {
            match std::panic::catch_unwind(AssertUnwindSafe(|| handler(&request))) {
                Ok(response) => response,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Response::text(500, format!("the handler panicked: {what}\n"))
                }
            }
        }
        Ok(None) | Err(ReadError::Io) => return None,
        Err(ReadError::Bad(e)) => Response::text(400, format!("bad request: {e}\n")),
        Err(ReadError::TooLarge) => Response::text(413, "request body too large\n"),
    };
    Some(write_response(stream, &response).is_ok())
}

/// Ends the connection after a reply: no more writes, then a brief drain of what the
/// client still sends, so closing does not reset the connection under an unread body
/// and the client reads the whole reply.
pub(crate) fn close(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = io::copy(&mut stream.take(1 << 20), &mut io::sink());
}

fn read_request<S: Read + Write>(
    stream: &mut S,
    config: &ServerConfig,
) -> Result<Option<Request>, ReadError> {
    let mut reader = BufReader::new(stream);
    let mut head_size = 0u64;
    let mut line = String::new();
    let mut next_line =
        |reader: &mut BufReader<&mut S>, line: &mut String| -> Result<usize, ReadError> {
            line.clear();
            let n = match reader.take(MAX_HEAD - head_size).read_line(line) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(ReadError::Bad("request head is not UTF-8".into()));
                }
                Err(_) => return Err(ReadError::Io),
            };
            head_size += n as u64;
            if n > 0 && !line.ends_with('\n') {
                return Err(ReadError::Bad("request head cut short or too large".into()));
            }
            Ok(n)
        };
    if next_line(&mut reader, &mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad("malformed request line".into()));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad("not HTTP/1.x".into()));
    }
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    loop {
        if next_line(&mut reader, &mut line)? == 0 {
            return Err(ReadError::Bad("request head cut short".into()));
        }
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(ReadError::Bad("malformed header line".into()));
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut request = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = match request.header("content-length") {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ReadError::Bad("bad Content-Length".into()))?,
        ),
        None => None,
    };
    if length.is_some_and(|n| n > config.max_body as u64) {
        return Err(ReadError::TooLarge);
    }
    let expects_continue = request
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"));
    if expects_continue && (chunked || length.is_some_and(|n| n > 0)) {
        let w = reader.get_mut();
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .and_then(|()| w.flush())
            .map_err(|_| ReadError::Io)?;
    }
    if chunked {
        request.body = read_chunked(&mut reader, config.max_body)?;
    } else if let Some(length) = length {
        let mut body = Vec::with_capacity(length as usize);
        (&mut reader)
            .take(length)
            .read_to_end(&mut body)
            .map_err(|_| ReadError::Io)?;
        if (body.len() as u64) < length {
            return Err(ReadError::Bad("body cut short".into()));
        }
        request.body = body;
    }
    Ok(Some(request))
}

/// Reads a `Transfer-Encoding: chunked` body (trailers are read and dropped).
fn read_chunked(reader: &mut impl BufRead, max: usize) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader
            .take(1024)
            .read_line(&mut line)
            .map_err(|_| ReadError::Io)?;
        let size = line.trim().split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| ReadError::Bad("bad chunk size".into()))?;
        if size == 0 {
            // Trailers up to the empty line.
            loop {
                line.clear();
                let n = reader
                    .take(8 * 1024)
                    .read_line(&mut line)
                    .map_err(|_| ReadError::Io)?;
                if n == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len().saturating_add(size) > max {
            return Err(ReadError::TooLarge);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|_| ReadError::Bad("chunk cut short".into()))?;
        let mut crlf = [0u8; 2];
        reader
            .read_exact(&mut crlf)
            .map_err(|_| ReadError::Bad("chunk cut short".into()))?;
        if &crlf != b"\r\n" {
            return Err(ReadError::Bad("chunk not followed by CRLF".into()));
        }
    }
}

fn write_response(stream: &mut impl Write, r: &Response) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (name, value) in &r.headers {
        // Never let a value break the head.
        let value: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let bodiless = r.status == 204 || r.status == 304 || (100..200).contains(&r.status);
    if !bodiless {
        head.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    if !bodiless {
        stream.write_all(&r.body)?;
    }
    stream.flush()
}

/// The standard reason phrase of `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Percent-decodes `s` (invalid escapes are kept as they are; invalid UTF-8 is replaced).
pub fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Everything but RFC 3986's unreserved characters: what [`percent_encode`] encodes.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// Splits a query string into decoded `(name, value)` pairs; `+` is a space.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b%27c%2"), "a b'c%2");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41"), "A");
        assert_eq!(
            parse_query("$filter=id+eq+%27a%27&$top=2&x"),
            vec![
                ("$filter".to_owned(), "id eq 'a'".to_owned()),
                ("$top".to_owned(), "2".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
        assert_eq!(percent_encode("id eq 'a'"), "id%20eq%20%27a%27");
        assert_eq!(percent_encode("aZ09-._~*+/é"), "aZ09-._~%2A%2B%2F%C3%A9");
        assert_eq!(percent_decode("%c3%A9%ff"), "é\u{fffd}");
    }

    #[test]
    fn chunked_bodies() {
        let mut r = io::Cursor::new(b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nT: v\r\n\r\n".to_vec());
        assert!(matches!(read_chunked(&mut r, 100), Ok(b) if b == b"Wikipedia"));
        let mut r = io::Cursor::new(b"4\r\nWiki\r\n0\r\n\r\n".to_vec());
        assert!(matches!(read_chunked(&mut r, 3), Err(ReadError::TooLarge)));
        let mut r = io::Cursor::new(b"zz\r\n".to_vec());
        assert!(matches!(read_chunked(&mut r, 3), Err(ReadError::Bad(_))));
    }
}
