//! A fault-injecting TCP proxy on loopback, for testing what a client does when the
//! network misbehaves between it and a server (Azurite, or any local server).
//!
//! [`Proxy::start`] listens on `127.0.0.1:0` and forwards every connection it accepts
//! to a target address, byte for byte, in both directions. Connections are numbered from
//! 0 in the order they are accepted, and a [`Plan`] says what happens to each: after
//! `after` bytes of the server's reply stream have gone to the client, the proxy
//!
//! - [`Fault::Cut`]s the connection (an orderly close both ways: the client's read ends
//!   early),
//! - [`Fault::Reset`]s it (an `RST`: the client's read fails with "connection reset"),
//! - [`Fault::Stall`]s it (forwards nothing for a while, then goes on as if nothing
//!   happened — longer than the client's read timeout, the client gives up first),
//! - or [`Fault::Truncate`]s the reply (rewrites its `Content-Length` so that the reply
//!   looks complete after `after` bytes of body, sends them and closes).
//!
//! A plan can also throttle replies to a given rate (to make a transfer last long
//! enough to kill the client in the middle of it) and call a hook when it injects a
//! fault (to change the server's state between a cut and the client's next try).
//!
//! The proxy counts the bytes it forwarded each way and records the head of every
//! request (request line and headers), so a test can tell how many bytes were fetched
//! twice and check what the server was sent (no `Authorization`, the right `Range`).
//!
//! Threads and std only: one thread accepts, two per connection forward.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Size of the forwarding buffers.
const BUFFER: usize = 64 * 1024;

/// What happens to a connection at the chosen point of its reply stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close both ways (FIN): the client sees the reply end before its length.
    Cut,
    /// Reset (RST): the client's next read fails, and whatever it had not read yet of
    /// what was sent is lost.
    Reset,
    /// Forward nothing for this long, then go on forwarding.
    Stall(Duration),
    /// Rewrite the first reply's `Content-Length` to `after` (counted in body bytes for
    /// this fault), send that much body and close: a reply that looks complete but is
    /// short. A reply no longer than `after` goes through untouched.
    Truncate,
}

/// Which connections a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    All,
    Nth(usize),
    From(usize),
}

impl Which {
    fn matches(self, n: usize) -> bool {
        match self {
            Which::All => true,
            Which::Nth(k) => n == k,
            Which::From(k) => n >= k,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Rule {
    which: Which,
    after: u64,
    fault: Fault,
}

/// A fault the proxy injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// The connection's number (0 is the first accepted).
    pub connection: usize,
    /// Bytes of the reply stream (of the body, for [`Fault::Truncate`]) sent before it.
    pub after: u64,
    pub fault: Fault,
}

/// Called on the connection's thread just before a fault is injected: the client
/// cannot see the fault, nor try again, before the hook returns.
pub type Hook = Arc<dyn Fn(&Injected) + Send + Sync>;

/// What the proxy does to the connections it accepts. Rules are tried in the order they
/// were added; the first that applies to a connection is the one fault it gets.
#[derive(Clone, Default)]
pub struct Plan {
    rules: Vec<Rule>,
    throttle: Option<u64>,
    hook: Option<Hook>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("rules", &self.rules)
            .field("throttle", &self.throttle)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Plan {
    /// Forward everything untouched.
    pub fn clean() -> Plan {
        Plan::default()
    }

    /// `fault` on every connection after `after` bytes of reply.
    pub fn every(self, after: u64, fault: Fault) -> Plan {
        self.rule(Which::All, after, fault)
    }

    /// `fault` on connection `n` (0 is the first) after `after` bytes of reply.
    pub fn nth(self, n: usize, after: u64, fault: Fault) -> Plan {
        self.rule(Which::Nth(n), after, fault)
    }

    /// `fault` on connection `n` and every later one after `after` bytes of reply.
    pub fn starting_at(self, n: usize, after: u64, fault: Fault) -> Plan {
        self.rule(Which::From(n), after, fault)
    }

    /// Replies go to the client at no more than `bytes_per_second` on each connection.
    pub fn throttle(mut self, bytes_per_second: u64) -> Plan {
        self.throttle = Some(bytes_per_second.max(1));
        self
    }

    /// Calls `hook` just before each fault is injected (see [`Hook`]).
    pub fn on_fault(mut self, hook: impl Fn(&Injected) + Send + Sync + 'static) -> Plan {
        self.hook = Some(Arc::new(hook));
        self
    }

    fn rule(mut self, which: Which, after: u64, fault: Fault) -> Plan {
        self.rules.push(Rule {
            which,
            after,
            fault,
        });
        self
    }

    fn for_connection(&self, n: usize) -> Option<Rule> {
        self.rules.iter().copied().find(|r| r.which.matches(n))
    }
}

/// The head of a request the proxy forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The connection's number.
    pub connection: usize,
    /// The request line and headers, as sent (without the blank line).
    pub head: String,
}

impl Seen {
    /// The request line (`GET /path?query HTTP/1.1`).
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

struct Shared {
    target: SocketAddr,
    plan: Mutex<Plan>,
    accepted: AtomicUsize,
    to_client: AtomicU64,
    to_server: AtomicU64,
    requests: Mutex<Vec<Seen>>,
    injected: Mutex<Vec<Injected>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running proxy; it stops accepting when dropped (connections in flight go on
/// until either end closes them).
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards to `target` as `plan` says.
    pub fn start(target: SocketAddr, plan: Plan) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            target,
            plan: Mutex::new(plan),
            accepted: AtomicUsize::new(0),
            to_client: AtomicU64::new(0),
            to_server: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            injected: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if accepting.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let n = accepting.accepted.fetch_add(1, Ordering::SeqCst);
                    let shared = Arc::clone(&accepting);
                    let _ = std::thread::Builder::new()
                        .name(format!("proxy-{n}"))
                        .spawn(move || serve(&shared, client, n));
                }
            })
            .expect("start the proxy's thread");
        Proxy { addr, shared }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the plan for the connections accepted from now on.
    pub fn set_plan(&self, plan: Plan) {
        *lock(&self.shared.plan) = plan;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the server to clients so far (reply heads included).
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.to_client.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from clients to the server so far.
    pub fn bytes_to_server(&self) -> u64 {
        self.shared.to_server.load(Ordering::SeqCst)
    }

    /// The heads of the requests forwarded so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.requests).clone()
    }

    /// The faults injected so far, in order.
    pub fn injected(&self) -> Vec<Injected> {
        lock(&self.shared.injected).clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() up so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Forwards one connection.
fn serve(shared: &Arc<Shared>, client: TcpStream, n: usize) {
    let (rule, throttle, hook) = {
        let plan = lock(&shared.plan);
        (plan.for_connection(n), plan.throttle, plan.hook.clone())
    };
    let Ok(upstream) = TcpStream::connect(shared.target) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(client_in), Ok(upstream_out)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    // A reset needs unread data in the socket when it is closed: for such a connection
    // the requests are peeked at, never consumed.
    let peek = rule.is_some_and(|r| r.fault == Fault::Reset);
    let done = Arc::new(AtomicBool::new(false));
    let requests = {
        let (shared, done) = (Arc::clone(shared), Arc::clone(&done));
        std::thread::Builder::new()
            .name(format!("proxy-{n}-up"))
            .spawn(move || forward_requests(&shared, n, client_in, upstream_out, peek, &done))
    };
    let mut replies = Replies {
        shared,
        n,
        client: &client,
        upstream: &upstream,
        throttle,
        started: Instant::now(),
        sent: 0,
    };
    let ending = replies.forward(rule, hook.as_ref());
    done.store(true, Ordering::SeqCst);
    match ending {
        Ending::Reset => {
            // The request thread holds the other handle: let it go first, so that the
            // socket closes (with its unread request inside: RST) when ours drops.
            if let Ok(t) = requests {
                let _ = t.join();
            }
            let _ = upstream.shutdown(Shutdown::Both);
            drop(client);
        }
        Ending::Closed => {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
        Ending::ServerDone => {
            let _ = client.shutdown(Shutdown::Write);
        }
    }
}

/// How the reply stream of a connection ended.
enum Ending {
    /// The server closed: pass the close on.
    ServerDone,
    /// Cut, truncated, or a write to the client failed: close both.
    Closed,
    /// Reset the client.
    Reset,
}

struct Replies<'a> {
    shared: &'a Shared,
    n: usize,
    client: &'a TcpStream,
    upstream: &'a TcpStream,
    throttle: Option<u64>,
    started: Instant,
    /// Bytes sent to the client on this connection.
    sent: u64,
}

impl Replies<'_> {
    fn forward(&mut self, rule: Option<Rule>, hook: Option<&Hook>) -> Ending {
        if let Some(Rule {
            after,
            fault: Fault::Truncate,
            ..
        }) = rule
        {
            return self.truncate(after, hook);
        }
        let mut pending = rule;
        let mut buf = vec![0u8; BUFFER];
        loop {
            let n = match (&*self.upstream).read(&mut buf) {
                Ok(0) | Err(_) => return Ending::ServerDone,
                Ok(n) => n,
            };
            let mut chunk = &buf[..n];
            loop {
                if let Some(rule) = pending
                    && self.sent >= rule.after
                {
                    pending = None;
                    self.inject(rule.after, rule.fault, hook);
                    match rule.fault {
                        Fault::Cut | Fault::Truncate => return Ending::Closed,
                        Fault::Reset => return Ending::Reset,
                        Fault::Stall(pause) => {
                            std::thread::sleep(pause);
                            // The client's patience is measured from here on.
                            self.started = Instant::now();
                            self.sent = 0;
                        }
                    }
                }
                if chunk.is_empty() {
                    break;
                }
                let room = pending.map_or(u64::MAX, |r| r.after - self.sent);
                let take = chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX));
                if self.send(&chunk[..take]).is_err() {
                    return Ending::Closed;
                }
                chunk = &chunk[take..];
            }
        }
    }

    /// [`Fault::Truncate`]: the first reply ends after `after` bytes of body.
    fn truncate(&mut self, after: u64, hook: Option<&Hook>) -> Ending {
        let mut head = Vec::new();
        let mut buf = vec![0u8; BUFFER];
        let end = loop {
            if let Some(end) = find(&head, b"\r\n\r\n") {
                break end + 4;
            }
            match (&*self.upstream).read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = self.send(&head);
                    return Ending::ServerDone;
                }
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        };
        let mut body = head.split_off(end);
        let text = String::from_utf8_lossy(&head).into_owned();
        let length = header_value(&text, "content-length").and_then(|v| v.parse::<u64>().ok());
        if length.is_none_or(|l| l <= after) {
            // Short enough: forward untouched from here on.
            if self.send(&head).is_err() || self.send(&body).is_err() {
                return Ending::Closed;
            }
            return self.forward(None, None);
        }
        let rewritten: String = text
            .split_inclusive("\r\n")
            .map(|line| match line.split_once(':') {
                Some((k, _)) if k.trim().eq_ignore_ascii_case("content-length") => {
                    format!("{k}: {after}\r\n")
                }
                _ => line.to_owned(),
            })
            .collect();
        if self.send(rewritten.as_bytes()).is_err() {
            return Ending::Closed;
        }
        let mut body_sent = 0u64;
        loop {
            let take = body
                .len()
                .min(usize::try_from(after - body_sent).unwrap_or(usize::MAX));
            if self.send(&body[..take]).is_err() {
                return Ending::Closed;
            }
            body_sent += take as u64;
            if body_sent >= after {
                self.inject(after, Fault::Truncate, hook);
                return Ending::Closed;
            }
            body = match (&*self.upstream).read(&mut buf) {
                Ok(0) | Err(_) => return Ending::ServerDone,
                Ok(n) => buf[..n].to_vec(),
            };
        }
    }

    fn inject(&self, after: u64, fault: Fault, hook: Option<&Hook>) {
        let injected = Injected {
            connection: self.n,
            after,
            fault,
        };
        if let Some(hook) = hook {
            hook(&injected);
        }
        lock(&self.shared.injected).push(injected);
    }

    /// Sends `bytes` to the client, at the throttled rate if there is one.
    fn send(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let take = match self.throttle {
                // Small steps keep the rate smooth.
                Some(rate) => bytes.len().min(
                    usize::try_from(rate / 20)
                        .unwrap_or(BUFFER)
                        .clamp(1, BUFFER),
                ),
                None => bytes.len(),
            };
            if let Some(rate) = self.throttle {
                let due = Duration::from_secs_f64((self.sent + take as u64) as f64 / rate as f64);
                let elapsed = self.started.elapsed();
                if due > elapsed {
                    std::thread::sleep(due - elapsed);
                }
            }
            (&*self.client).write_all(&bytes[..take])?;
            self.sent += take as u64;
            self.shared
                .to_client
                .fetch_add(take as u64, Ordering::SeqCst);
            bytes = &bytes[take..];
        }
        Ok(())
    }
}

/// Forwards the client's bytes to the server and records each request head. With
/// `peek`, the bytes are read without being consumed (see [`Fault::Reset`]) until
/// `done`.
fn forward_requests(
    shared: &Shared,
    n: usize,
    client: TcpStream,
    mut upstream: TcpStream,
    peek: bool,
    done: &AtomicBool,
) {
    let mut heads = Heads::default();
    let mut buf = vec![0u8; BUFFER];
    // Peeking returns all unread bytes each time: those up to here were forwarded.
    let mut peeked = 0;
    loop {
        if done.load(Ordering::SeqCst) {
            break;
        }
        let got = if peek {
            match client.peek(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) if k <= peeked => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                Ok(k) => {
                    let new = peeked..k;
                    peeked = k;
                    new
                }
            }
        } else {
            match (&client).read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => 0..k,
            }
        };
        let bytes = &buf[got];
        for head in heads.push(bytes) {
            lock(&shared.requests).push(Seen {
                connection: n,
                head,
            });
        }
        if upstream.write_all(bytes).is_err() {
            break;
        }
        shared
            .to_server
            .fetch_add(bytes.len() as u64, Ordering::SeqCst);
    }
    if !peek {
        let _ = upstream.shutdown(Shutdown::Write);
    }
}

/// Splits a client's byte stream into request heads (skipping bodies by their
/// `Content-Length`).
#[derive(Default)]
struct Heads {
    pending: Vec<u8>,
    /// Body bytes still to skip.
    skip: u64,
}

impl Heads {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut input = bytes.to_vec();
        loop {
            let k = input
                .len()
                .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            self.skip -= k as u64;
            input.drain(..k);
            if input.is_empty() {
                return out;
            }
            // Only the part that may complete a head needs searching again.
            let from = self.pending.len().saturating_sub(3);
            self.pending.extend_from_slice(&input);
            let Some(end) = find(&self.pending[from..], b"\r\n\r\n").map(|e| e + from) else {
                return out;
            };
            let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
            // What follows may hold a body and more requests.
            input = self.pending.split_off(end + 4);
            self.pending.clear();
            self.skip = header_value(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            out.push(head);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_split_across_pushes_and_bodies_skipped() {
        let mut h = Heads::default();
        assert!(h.push(b"GET /a HTTP/1.1\r\nRange: bytes=5-\r").is_empty());
        assert_eq!(
            h.push(b"\n\r\nGET /b HTTP/1.1\r\n\r\nPUT /c HTTP/1.1\r\nContent-Length: 4\r\n\r\nab"),
            [
                "GET /a HTTP/1.1\r\nRange: bytes=5-",
                "GET /b HTTP/1.1",
                "PUT /c HTTP/1.1\r\nContent-Length: 4",
            ]
        );
        assert_eq!(h.push(b"cdGET /d HTTP/1.1\r\n\r\n"), ["GET /d HTTP/1.1"]);
        let seen = Seen {
            connection: 0,
            head: "GET /a HTTP/1.1\r\nRange: bytes=5-".into(),
        };
        assert_eq!(seen.request_line(), "GET /a HTTP/1.1");
        assert_eq!(seen.header("range"), Some("bytes=5-"));
        assert_eq!(seen.header("authorization"), None);
    }
}
