//! An HTTPS server on loopback for tests: [`crate::server`]'s handlers, accepting,
//! stopping and draining, with rustls (ring provider) in front.
//!
//! It counts the TLS handshakes that succeeded and records those that failed, with the
//! alert the client sent, so a test can tell "the client refused our certificate"
//! (`UnknownCA`, `BadCertificate`, ...) from "the client never tried".
//!
//! ```no_run
//! use std::sync::Arc;
//! use mdlr_tests::{pki::TestCa, server::Response, tls::TlsServer};
//! let ca = TestCa::new().expect("test CA");
//! let cert = ca.localhost_cert().expect("server certificate");
//! let server = TlsServer::start(&cert, Arc::new(|_req| Response::text(200, "hi"))).expect("start");
//! println!("{} trusts {}", server.url(), ca.ca_pem_path().display());
//! ```

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::pki::ServerCert;
use crate::server::{self, Handler, Server, ServerConfig};

/// A TLS handshake that did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// The alert the client sent, as rustls names it (`UnknownCA`, `BadCertificate`,
    /// `CertificateUnknown`, `HandshakeFailure`, ...); `None` when the client sent none
    /// (it closed the connection, or spoke something else than TLS).
    pub alert: Option<String>,
    /// The server name the client asked for (SNI), if it sent one.
    pub server_name: Option<String>,
    /// Whether the server had sent its certificate: the client had it and gave up
    /// (with an alert, or by closing the connection as ureq does), rather than never
    /// getting that far.
    pub certificate_sent: bool,
    /// The error as rustls reported it.
    pub error: String,
}

#[derive(Debug, Default)]
struct Counts {
    handshakes: usize,
    failures: Vec<HandshakeFailure>,
    requests: usize,
}

#[derive(Debug, Default)]
struct State {
    counts: Mutex<Counts>,
    changed: Condvar,
}

impl State {
    fn update(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_all();
    }

    fn read<T>(&self, f: impl FnOnce(&Counts) -> T) -> T {
        f(&self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A running HTTPS server; [`TlsServer::stop`] (or drop) ends it.
pub struct TlsServer {
    server: Server,
    state: Arc<State>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Listens on `127.0.0.1` on a port the system picks and serves `handler` over TLS
    /// 1.2 and 1.3 with `cert` (and its CA certificate, as the chain).
    pub fn start(cert: &ServerCert, handler: Arc<Handler>) -> io::Result<TlsServer> {
        TlsServer::start_with(ServerConfig::default(), cert, handler)
    }

    /// As [`TlsServer::start`], with `config`.
    pub fn start_with(
        config: ServerConfig,
        cert: &ServerCert,
        handler: Arc<Handler>,
    ) -> io::Result<TlsServer> {
        let chain: Vec<CertificateDer<'static>> = cert
            .chain_der()
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der().to_vec()));
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(io::Error::other)?;
        let tls = Arc::new(tls);
        let state = Arc::new(State::default());
        let counts = Arc::clone(&state);
        let server = Server::start_connections(
            config,
            Arc::new(move |tcp| serve(tcp, &tls, &*handler, &config, &counts)),
        )?;
        Ok(TlsServer { server, state })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `https://localhost:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port())
    }

    /// `https://127.0.0.1:PORT`, without a trailing slash (the certificate must name
    /// `127.0.0.1`, as [`crate::pki::TestCa::localhost_cert`]'s does).
    pub fn url_ip(&self) -> String {
        format!("https://{}", self.addr())
    }

    /// How many TLS handshakes completed.
    pub fn handshakes(&self) -> usize {
        self.state.read(|c| c.handshakes)
    }

    /// The TLS handshakes that failed, in order.
    pub fn failures(&self) -> Vec<HandshakeFailure> {
        self.state.read(|c| c.failures.clone())
    }

    /// How many requests were answered (a reply written in full).
    pub fn requests(&self) -> usize {
        self.state.read(|c| c.requests)
    }

    /// Waits up to `timeout` until at least `n` handshakes have failed, and returns
    /// them all. (The client may see its error before the server has read the alert.)
    pub fn wait_failures(&self, n: usize, timeout: Duration) -> Vec<HandshakeFailure> {
        let deadline = Instant::now() + timeout;
        let mut counts = self.state.counts.lock().unwrap_or_else(|e| e.into_inner());
        while counts.failures.len() < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            counts = match self.state.changed.wait_timeout(counts, deadline - now) {
                Ok((c, _)) => c,
                Err(e) => e.into_inner().0,
            };
        }
        counts.failures.clone()
    }

    /// Stops accepting connections and waits (briefly) for the requests in flight.
    pub fn stop(self) {
        self.server.stop();
    }
}

/// The alert a failed handshake's error carries, if the peer sent one.
fn alert_of(error: &io::Error) -> Option<String> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(format!("{alert:?}")),
        _ => None,
    }
}

/// Drives the handshake to its end; `certificate_sent` tells whether our flight with the
/// certificate went out (the client had it when it gave up).
fn handshake(
    conn: &mut rustls::ServerConnection,
    tcp: &mut TcpStream,
    certificate_sent: &mut bool,
) -> io::Result<()> {
    loop {
        while conn.wants_write() {
            conn.write_tls(tcp)?;
            *certificate_sent = true;
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        if conn.read_tls(tcp)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client closed the connection during the handshake",
            ));
        }
        if let Err(e) = conn.process_new_packets() {
            // Send our own alert, if rustls has one queued.
            let _ = conn.write_tls(tcp);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

/// One connection: the handshake, one request, close_notify.
fn serve(
    mut tcp: TcpStream,
    tls: &Arc<rustls::ServerConfig>,
    handler: &Handler,
    config: &ServerConfig,
    state: &State,
) {
    let _ = tcp.set_read_timeout(Some(config.idle));
    let _ = tcp.set_write_timeout(Some(config.idle));
    let _ = tcp.set_nodelay(true);
    let mut conn = match rustls::ServerConnection::new(Arc::clone(tls)) {
        Ok(conn) => conn,
        Err(e) => {
            let error = e.to_string();
            state.update(|c| {
                c.failures.push(HandshakeFailure {
                    alert: None,
                    server_name: None,
                    certificate_sent: false,
                    error,
                })
            });
            return;
        }
    };
    let mut certificate_sent = false;
    if let Err(e) = handshake(&mut conn, &mut tcp, &mut certificate_sent) {
        let failure = HandshakeFailure {
            alert: alert_of(&e),
            server_name: conn.server_name().map(str::to_owned),
            certificate_sent,
            error: e.to_string(),
        };
        state.update(|c| c.failures.push(failure));
        return;
    }
    state.update(|c| c.handshakes += 1);
    let served = server::exchange(
        &mut rustls::Stream::new(&mut conn, &mut tcp),
        handler,
        config,
    );
    if served == Some(true) {
        state.update(|c| c.requests += 1);
    }
    if served.is_some() {
        conn.send_close_notify();
        while conn.wants_write() {
            if conn.write_tls(&mut tcp).is_err() {
                break;
            }
        }
        let _ = tcp.flush();
        server::close(&tcp);
    }
}
