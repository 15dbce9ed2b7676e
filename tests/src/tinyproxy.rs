//! tinyproxy (the Debian package, 1.11) as a real HTTP proxy for tests: each
//! [`Tinyproxy`] is a process of its own on a free loopback port, with its own
//! configuration and log in a temporary directory, stopped when it is dropped.
//!
//! Its log shows every request it received, `CONNECT host:port` included
//! ([`Tinyproxy::requests`], [`Tinyproxy::connects`]), and every upstream connection
//! it made ([`Tinyproxy::established`]). It allows `CONNECT` to any port (there is no
//! `ConnectPort` line), so a test can tunnel to a loopback server.
//!
//! What was learned about tinyproxy 1.11 on these machines:
//! - As root it switches to the `User`/`Group` of its configuration *before* it opens
//!   its log file; our configuration names none, so it keeps running as the user that
//!   started it (and logs a warning saying so) and can write its log in our temporary
//!   directory, which only that user can write to.
//! - `-d` keeps it in the foreground, one process (connections are served by threads).
//! - It logs the request line before it checks `BasicAuth`, so a request refused with
//!   `407` is in [`Tinyproxy::requests`] but has no [`Tinyproxy::established`] entry.
//!
//! The executable is `$MDLR_TINYPROXY`, else `tinyproxy` on `PATH`, in `/usr/bin` or in
//! `/usr/sbin`; without one, [`Tinyproxy::start`] fails with [`NOT_INSTALLED`].
//!
//! Like Azurite, it runs under a small `sh` that holds a pipe from this process on its
//! standard input and kills tinyproxy when that pipe closes, so no proxy outlives the
//! test process, even one killed with `SIGKILL`.
//!
//! ```no_run
//! use mdlr_tests::tinyproxy::Tinyproxy;
//! let proxy = Tinyproxy::start().unwrap_or_else(|e| panic!("{e}"));
//! // ... run mdlr with HTTPS_PROXY=proxy.url() ...
//! assert!(proxy.connects().iter().any(|c| c.starts_with("127.0.0.1:")), "{}", proxy.log());
//! ```

use std::ffi::OsString;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pki::Scratch;
use crate::server::percent_encode;

/// What [`Tinyproxy::start`] says when there is no tinyproxy.
pub const NOT_INSTALLED: &str = "tinyproxy is not installed: run `cargo xtask test` (it \
     installs it as root) or `apt-get install tinyproxy`";

/// How long tinyproxy may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What tinyproxy logs once it listens (at `LogLevel Info`).
const READY: &str = "Accepting connections";

/// Runs tinyproxy (`$2...`) in the background, writes its pid to `$1/pid`, and kills it
/// when standard input closes.
const WRAPPER: &str = r#"dir=$1; shift
"$@" >"$dir/stderr.txt" 2>&1 &
pid=$!
echo "$pid" >"$dir/pid"
read _ignored
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null"#;

/// Where the tinyproxy executable is: `$MDLR_TINYPROXY`, `PATH`, `/usr/bin`,
/// `/usr/sbin`; else why there is none.
pub fn executable() -> Result<PathBuf, String> {
    locate(std::env::var_os("MDLR_TINYPROXY"), std::env::var_os("PATH"))
}

fn locate(exe: Option<OsString>, path: Option<OsString>) -> Result<PathBuf, String> {
    if let Some(exe) = exe.filter(|p| !p.is_empty()) {
        let exe = PathBuf::from(exe);
        return match exe.is_file() {
            true => Ok(exe),
            false => Err(format!(
                "{NOT_INSTALLED} (MDLR_TINYPROXY={} is not a file)",
                exe.display()
            )),
        };
    }
    std::env::split_paths(&path.unwrap_or_default())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("tinyproxy"))
        .find(|p| p.is_file())
        .ok_or_else(|| NOT_INSTALLED.to_owned())
}

/// A request line from the proxy's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    /// `CONNECT`, `GET`, ...
    pub method: String,
    /// `host:port` for `CONNECT`, the absolute URL otherwise.
    pub target: String,
}

/// A running tinyproxy; dropping it stops it and removes its directory.
pub struct Tinyproxy {
    port: u16,
    credentials: Option<(String, String)>,
    /// The wrapper's standard input: tinyproxy stops when it closes.
    stdin: Option<ChildStdin>,
    wrapper: Child,
    dir: Scratch,
}

impl std::fmt::Debug for Tinyproxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tinyproxy")
            .field("port", &self.port)
            .field("auth", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

impl Tinyproxy {
    /// Starts a proxy that lets any loopback client through.
    pub fn start() -> Result<Tinyproxy, String> {
        Tinyproxy::start_inner(None)
    }

    /// Starts a proxy that wants `Proxy-Authorization: Basic` with `user` and
    /// `password` (`BasicAuth`), and answers `407` without them.
    pub fn start_with_auth(user: &str, password: &str) -> Result<Tinyproxy, String> {
        let fine = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() && c != '"');
        if !fine(user) || !fine(password) {
            return Err("tinyproxy's BasicAuth takes printable ASCII words without quotes".into());
        }
        Tinyproxy::start_inner(Some((user.to_owned(), password.to_owned())))
    }

    fn start_inner(credentials: Option<(String, String)>) -> Result<Tinyproxy, String> {
        let exe = executable()?;
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Tinyproxy::try_start(&exe, credentials.clone()) {
                Ok(proxy) => return Ok(proxy),
                Err(why) => failures.push(why),
            }
        }
        Err(format!(
            "{} did not start:\n{}",
            exe.display(),
            failures.join("\n")
        ))
    }

    fn try_start(exe: &Path, credentials: Option<(String, String)>) -> Result<Tinyproxy, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot find a free loopback port: {e}"))?
            .port();
        let dir = Scratch::new("tinyproxy")
            .map_err(|e| format!("cannot make tinyproxy's directory: {e}"))?;
        let log = dir.join("tinyproxy.log");
        let mut config = format!(
            "Port {port}\n\
             Listen 127.0.0.1\n\
             Allow 127.0.0.1\n\
             Timeout 60\n\
             MaxClients 100\n\
             LogFile \"{}\"\n\
             LogLevel Info\n",
            log.display()
        );
        if let Some((user, password)) = &credentials {
            config.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let conf = dir.join("tinyproxy.conf");
        std::fs::write(&conf, config)
            .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let mut wrapper = Command::new("sh")
            .args(["-c", WRAPPER, "tinyproxy"])
            .arg(dir.path())
            .arg(exe)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run sh to start {}: {e}", exe.display()))?;
        let stdin = wrapper.stdin.take();
        // Dropped on failure: the wrapper sees its stdin close and stops tinyproxy.
        let proxy = Tinyproxy {
            port,
            credentials,
            stdin,
            wrapper,
            dir,
        };
        let started = Instant::now();
        loop {
            if proxy.log().contains(READY) {
                return Ok(proxy);
            }
            let why = |what: &str| {
                let stderr = std::fs::read_to_string(proxy.dir.join("stderr.txt"));
                format!(
                    "{what} (port {port})\n--- its output:\n{}\n--- its log:\n{}",
                    stderr.unwrap_or_default().trim(),
                    proxy.log().trim()
                )
            };
            if !proxy.running() {
                return Err(why("it ended"));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(why(&format!(
                    "it did not log {READY:?} in {START_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the tinyproxy process is still there (until its pid is known: yes).
    fn running(&self) -> bool {
        let pid = std::fs::read_to_string(self.dir.join("pid")).unwrap_or_default();
        let pid = pid.trim();
        if pid.is_empty() || !Path::new("/proc/self/stat").exists() {
            return true;
        }
        // A zombie is not running: the wrapper reaps it only at the end.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        !matches!(state, None | Some('Z' | 'X'))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT`, without credentials.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT` (percent-encoded) for a proxy started with
    /// [`Tinyproxy::start_with_auth`]; [`Tinyproxy::url`] otherwise.
    pub fn url_with_credentials(&self) -> String {
        match &self.credentials {
            Some((user, password)) => format!(
                "http://{}:{}@{}",
                percent_encode(user),
                percent_encode(password),
                self.addr()
            ),
            None => self.url(),
        }
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tinyproxy.log")).unwrap_or_default()
    }

    /// Every request line it received, in order (refused ones too).
    pub fn requests(&self) -> Vec<ProxyRequest> {
        parse_requests(&self.log())
    }

    /// The `host:port` of every `CONNECT` it received, in order (refused ones too).
    pub fn connects(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "CONNECT")
            .map(|r| r.target)
            .collect()
    }

    /// The host of every upstream connection it made, in order.
    pub fn established(&self) -> Vec<String> {
        parse_established(&self.log())
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        // Closing the pipe makes the wrapper kill tinyproxy and wait for it.
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.wrapper.wait();
    }
}

/// The message of a log line: what follows `[pid]: `.
fn message(line: &str) -> Option<&str> {
    line.split_once("]: ").map(|(_, m)| m)
}

/// `Request (file descriptor 5): CONNECT 127.0.0.1:443 HTTP/1.1` lines.
fn parse_requests(log: &str) -> Vec<ProxyRequest> {
    log.lines()
        .filter_map(message)
        .filter_map(|m| m.strip_prefix("Request (file descriptor "))
        .filter_map(|m| m.split_once("): ").map(|(_, r)| r))
        .filter_map(|r| {
            let mut words = r.split_whitespace();
            Some(ProxyRequest {
                method: words.next()?.to_owned(),
                target: words.next()?.to_owned(),
            })
        })
        .collect()
}

/// `Established connection to host "127.0.0.1" using file descriptor 6.` lines.
fn parse_established(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(message)
        .filter_map(|m| m.strip_prefix("Established connection to host \""))
        .filter_map(|m| m.split_once('"').map(|(host, _)| host.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"NOTICE    Nov 28 00:33:27.220 [3947]: Initializing tinyproxy ...
INFO      Nov 28 00:33:27.231 [3947]: Starting main loop. Accepting connections.
CONNECT   Nov 28 00:33:28.046 [3947]: Connect (file descriptor 5): 127.0.0.1
CONNECT   Nov 28 00:33:28.046 [3947]: Request (file descriptor 5): GET http://127.0.0.1:18999/x HTTP/1.1
CONNECT   Nov 28 00:33:28.072 [3947]: Request (file descriptor 5): CONNECT 127.0.0.1:18999 HTTP/1.1
CONNECT   Nov 28 00:33:28.082 [3947]: Established connection to host "localhost" using file descriptor 6.
"#;

    #[test]
    fn log_lines() {
        assert_eq!(
            parse_requests(LOG),
            [
                ProxyRequest {
                    method: "GET".into(),
                    target: "http://127.0.0.1:18999/x".into()
                },
                ProxyRequest {
                    method: "CONNECT".into(),
                    target: "127.0.0.1:18999".into()
                },
            ]
        );
        assert_eq!(parse_established(LOG), ["localhost"]);
    }

    #[test]
    fn a_missing_executable_is_explained() {
        let nowhere = Some(OsString::from("/nonexistent/mdlr-test"));
        let err = locate(nowhere.clone(), None).expect_err("no such file");
        assert!(err.starts_with(NOT_INSTALLED), "{err}");
        assert!(
            err.contains("MDLR_TINYPROXY=/nonexistent/mdlr-test"),
            "{err}"
        );
        if !Path::new("/usr/bin/tinyproxy").exists() && !Path::new("/usr/sbin/tinyproxy").exists() {
            assert_eq!(locate(None, nowhere), Err(NOT_INSTALLED.to_owned()));
        }
        let found = locate(Some(OsString::from("/bin/sh")), None);
        assert_eq!(found, Ok(PathBuf::from("/bin/sh")));
    }
}
