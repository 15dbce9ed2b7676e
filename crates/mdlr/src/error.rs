//! The one error type of the library, and what each error means ([`ErrorKind`]).

use std::fmt;
use std::path::PathBuf;

use crate::model::{ActionStatus, CommandStatus, Machine};

/// Everything that can go wrong in `mdlr`.
///
/// Each variant keeps what support and scripts need: the HTTP status, the API error code,
/// the service's message and its correlation id where the service gave one. `Display` is
/// a short lowercase sentence; the underlying cause, when there is one, is reached
/// through [`std::error::Error::source`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The settings handed to the client cannot be used (insecure URL, unknown cloud).
    Config {
        /// What is wrong, for a person.
        message: String,
    },
    /// An argument cannot be used (an action id with characters no id has, say).
    InvalidArgument {
        /// What is wrong, for a person.
        message: String,
    },
    /// The token endpoint refused to issue a token, or the given token was rejected.
    Auth {
        /// HTTP status of the refusal, when there was one.
        status: Option<u16>,
        /// The OAuth error code (`invalid_client`) or API code (`Unauthorized`).
        code: Option<String>,
        /// The message the service gave, or ours.
        message: String,
        /// The correlation id (trace id) to quote to support.
        correlation_id: Option<String>,
    },
    /// The Defender API answered with an error status.
    Api {
        /// HTTP status.
        status: u16,
        /// The API error code (`ResourceNotFound`, `ActiveRequestAlreadyExists`, ...).
        code: Option<String>,
        /// The API's message, or a summary of a non-JSON body.
        message: String,
        /// The correlation id (`error.target`) to quote to support.
        correlation_id: Option<String>,
    },
    /// The result host (Azure Blob Storage) answered with an error status.
    Blob {
        /// HTTP status.
        status: u16,
        /// The storage error code from `x-ms-error-code` (`AuthenticationFailed`, ...).
        code: Option<String>,
        /// A summary of the reply.
        message: String,
        /// The storage request id (`x-ms-request-id`).
        request_id: Option<String>,
    },
    /// The request did not get an answer: connection refused, DNS, TLS, timeout.
    Transport {
        /// The URL, with secrets redacted.
        url: String,
        /// What kind of failure, for hints (a proxy, an untrusted certificate, ...).
        kind: TransportKind,
        /// What happened, for a person.
        message: String,
        /// The underlying error.
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The service sent something that is not what its documentation promises.
    Malformed {
        /// What was being read (`machine action`, `transcript`, `gzip stream`, ...).
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// Something the caller named does not exist.
    NotFound {
        /// What is missing, for a person.
        message: String,
    },
    /// Machine names that name no machine, or several: each name must name exactly one
    /// machine before anything starts.
    UnresolvedMachines {
        /// Names no machine has.
        unknown: Vec<String>,
        /// Names several machines have, each with the machines (pick one by id).
        ambiguous: Vec<(String, Vec<Machine>)>,
    },
    /// The action has no command at that index.
    NoSuchCommand {
        /// The action id.
        action_id: String,
        /// The index asked for.
        index: u32,
        /// How many commands the action has.
        count: usize,
    },
    /// The command has not finished, so it has no result yet (also what a result link
    /// asked for too early becomes, instead of the API's bare 400).
    NotFinished {
        /// The action id.
        action_id: String,
        /// The command index.
        index: u32,
        /// The action's status.
        action_status: ActionStatus,
        /// The command's status; `None` while the service lists no commands yet.
        command_status: Option<CommandStatus>,
        /// The service's own refusal, when it refused a result link although the
        /// action said the command was done (or could not be read).
        refusal: Option<Box<Error>>,
    },
    /// The command failed, was cancelled or timed out, so it has no result.
    CommandFailed {
        /// The action id.
        action_id: String,
        /// The command index.
        index: u32,
        /// The action's status (`Failed`, `Cancelled`, `TimeOut`, or still running when
        /// the command itself failed).
        action_status: ActionStatus,
        /// The command's status, when the service gave one.
        command_status: Option<CommandStatus>,
        /// The errors the service listed for the command.
        errors: Vec<String>,
    },
    /// The action has not succeeded (yet), so what it collects — an investigation
    /// package — is not there.
    ActionNotSucceeded {
        /// The action id.
        action_id: String,
        /// Its status.
        status: ActionStatus,
    },
    /// The body ended before the length the server announced.
    Incomplete {
        /// Bytes announced by `Content-Length`.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The output file exists and overwriting was not allowed.
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// Reading or writing a local file failed.
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The operation (`create`, `write`, `rename`, ...).
        op: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The API error code of a start refused because the machine has a session already.
pub(crate) const BUSY_CODE: &str = "ActiveRequestAlreadyExists";

/// What an [`Error`] means, for a program deciding what to do next. (The `mdlr`
/// command line turns each kind into an exit status: see the crate documentation.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The settings cannot be used (an insecure URL, an unusable credential).
    Config,
    /// An argument, or a request the API refused as invalid (400).
    InvalidInput,
    /// Signing in failed, or the API refused the token (401).
    Unauthenticated,
    /// The token lacks a permission (403), or the result host refused the link.
    PermissionDenied,
    /// The action, machine, command or result does not exist (404).
    NotFound,
    /// The machine has a live response session already.
    Busy,
    /// The API quota is spent (429 after the retries).
    Throttled,
    /// The command has not finished yet.
    NotFinished,
    /// The action timed out on the machine.
    TimedOut,
    /// The command or the action failed, or was cancelled.
    Failed,
    /// The service or the network did not answer (connection, DNS, TLS, 5xx), or the
    /// transfer stopped short.
    Unavailable,
    /// The service sent something that is not what its documentation promises.
    Malformed,
    /// The output file exists.
    Exists,
    /// A local file could not be read or written.
    Io,
}

/// What kind of transport failure an [`Error::Transport`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// The host name did not resolve.
    Dns,
    /// The connection was refused or could not be made.
    Connect,
    /// No answer within the timeout.
    Timeout,
    /// The proxy could not be reached or refused the tunnel.
    Proxy,
    /// The server's certificate is not signed by a trusted CA (TLS inspection, a private
    /// CA): add the CA to the trusted roots.
    UntrustedCertificate,
    /// Another TLS failure (name mismatch, expired certificate, protocol).
    Tls,
    /// The connection broke or the reply could not be read.
    Broken,
    /// Anything else.
    Other,
}

impl Error {
    /// The HTTP status behind this error, if it came from an HTTP reply.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Blob { status, .. } => Some(*status),
            Error::Auth { status, .. } => *status,
            Error::NotFinished {
                refusal: Some(r), ..
            } => r.status(),
            _ => None,
        }
    }

    /// The service's error code (`ResourceNotFound`, `invalid_client`, ...), if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } | Error::Auth { code, .. } | Error::Blob { code, .. } => {
                code.as_deref()
            }
            Error::NotFinished {
                refusal: Some(r), ..
            } => r.code(),
            _ => None,
        }
    }

    /// The correlation id to quote to Microsoft support, if the service gave one.
    pub fn correlation_id(&self) -> Option<&str> {
        match self {
            Error::Api { correlation_id, .. } | Error::Auth { correlation_id, .. } => {
                correlation_id.as_deref()
            }
            Error::Blob { request_id, .. } => request_id.as_deref(),
            Error::NotFinished {
                refusal: Some(r), ..
            } => r.correlation_id(),
            _ => None,
        }
    }

    /// What this error means, whatever variant carries it: how a program (or the
    /// command line's exit status) should react.
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            Error::Config { .. } => K::Config,
            Error::InvalidArgument { .. } => K::InvalidInput,
            Error::Auth { .. } => K::Unauthenticated,
            Error::Api { .. } if self.is_busy() => K::Busy,
            Error::Api { status, .. } => match status {
                401 => K::Unauthenticated,
                403 => K::PermissionDenied,
                404 => K::NotFound,
                429 => K::Throttled,
                400..=499 => K::InvalidInput,
                _ => K::Unavailable,
            },
            Error::Blob { status, .. } => match status {
                401 | 403 => K::PermissionDenied,
                404 => K::NotFound,
                _ => K::Unavailable,
            },
            Error::Transport { .. } | Error::Incomplete { .. } => K::Unavailable,
            Error::Malformed { .. } => K::Malformed,
            Error::NotFound { .. }
            | Error::UnresolvedMachines { .. }
            | Error::NoSuchCommand { .. } => K::NotFound,
            Error::NotFinished { .. } => K::NotFinished,
            Error::ActionNotSucceeded { status, .. } => match status {
                ActionStatus::TimeOut => K::TimedOut,
                s if s.is_terminal() => K::Failed,
                _ => K::NotFinished,
            },
            Error::CommandFailed {
                action_status: ActionStatus::TimeOut,
                ..
            } => K::TimedOut,
            Error::CommandFailed { .. } => K::Failed,
            Error::Exists { .. } => K::Exists,
            Error::Io { .. } => K::Io,
        }
    }

    /// Whether the machine already has a live response session (the service refused a
    /// start with `ActiveRequestAlreadyExists`): wait for it to end and try again.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Api { status: 400, code: Some(c), .. } if c == BUSY_CODE)
    }

    /// Whether the service refused a start because too many live response sessions are
    /// open at once (a 429 whose message speaks of concurrent sessions; the exact reply
    /// is not documented): start fewer at a time, and this machine later.
    pub fn is_session_cap(&self) -> bool {
        matches!(self, Error::Api { status: 429, message, .. }
            if message.to_ascii_lowercase().contains("concurrent"))
    }

    /// Whether the command (or the action) has not finished yet: ask again later.
    pub fn is_not_finished(&self) -> bool {
        self.kind() == ErrorKind::NotFinished
    }

    /// This error with `scrub` applied to every text the service or the network put in
    /// it (a careless service or proxy may quote the request — its `Authorization`
    /// header, form or URL — back in its reply).
    pub(crate) fn map_text(self, scrub: &dyn Fn(&str) -> String) -> Error {
        let s = |text: String| scrub(&text);
        let o = |text: Option<String>| text.map(|t| scrub(&t));
        match self {
            Error::Auth {
                status,
                code,
                message,
                correlation_id,
            } => Error::Auth {
                status,
                code: o(code),
                message: s(message),
                correlation_id: o(correlation_id),
            },
            Error::Api {
                status,
                code,
                message,
                correlation_id,
            } => Error::Api {
                status,
                code: o(code),
                message: s(message),
                correlation_id: o(correlation_id),
            },
            Error::Blob {
                status,
                code,
                message,
                request_id,
            } => Error::Blob {
                status,
                code: o(code),
                message: s(message),
                request_id: o(request_id),
            },
            Error::Transport {
                url,
                kind,
                message,
                source,
            } => Error::Transport {
                url: s(url),
                kind,
                message: s(message),
                source,
            },
            Error::NotFinished {
                action_id,
                index,
                action_status,
                command_status,
                refusal,
            } => Error::NotFinished {
                action_id,
                index,
                action_status,
                command_status,
                refusal: refusal.map(|r| Box::new(r.map_text(scrub))),
            },
            Error::Malformed { what, message } => Error::Malformed {
                what,
                message: s(message),
            },
            Error::NotFound { message } => Error::NotFound {
                message: s(message),
            },
            Error::CommandFailed {
                action_id,
                index,
                action_status,
                command_status,
                errors,
            } => Error::CommandFailed {
                action_id,
                index,
                action_status,
                command_status,
                errors: errors.into_iter().map(s).collect(),
            },
            other => other,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::Config {
            message: message.into(),
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Malformed {
            what: what.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { message }
            | Error::InvalidArgument { message }
            | Error::NotFound { message } => f.write_str(message),
            Error::UnresolvedMachines { unknown, ambiguous } => {
                let mut parts: Vec<String> = unknown
                    .iter()
                    .map(|n| format!("no machine is named {n}"))
                    .collect();
                for (name, machines) in ambiguous {
                    let candidates: Vec<String> = machines
                        .iter()
                        .map(|m| {
                            format!(
                                "{} (last seen {})",
                                m.id.as_deref().unwrap_or("?"),
                                m.last_seen.as_deref().unwrap_or("?")
                            )
                        })
                        .collect();
                    parts.push(format!(
                        "{name} names {} machines; pass one id: {}",
                        machines.len(),
                        candidates.join(", ")
                    ));
                }
                f.write_str(&parts.join("; "))
            }
            Error::Auth {
                status, message, ..
            } => match status {
                Some(s) => write!(f, "sign-in failed ({s}): {message}"),
                None => write!(f, "sign-in failed: {message}"),
            },
            Error::Api {
                status, message, ..
            } => write!(f, "the API answered {status}: {message}"),
            Error::Blob {
                status, message, ..
            } => write!(f, "the result host answered {status}: {message}"),
            Error::Transport { url, message, .. } => write!(f, "{message} ({url})"),
            Error::Malformed { what, message } => write!(f, "malformed {what}: {message}"),
            Error::NoSuchCommand {
                action_id,
                index,
                count,
            } => write!(
                f,
                "action {action_id} has no command at index {index} (it has {count})"
            ),
            Error::NotFinished {
                action_id,
                index,
                action_status,
                command_status,
                refusal,
            } => {
                let command = command_status
                    .as_ref()
                    .map_or("not listed yet", CommandStatus::as_str);
                match refusal {
                    None => write!(
                        f,
                        "command {index} of action {action_id} has not finished yet \
                         (action {action_status}, command {command})"
                    ),
                    Some(refusal) => write!(
                        f,
                        "the service has no result for command {index} of action \
                         {action_id} yet (action {action_status}, command {command}): \
                         {refusal}"
                    ),
                }
            }
            Error::CommandFailed {
                action_id,
                index,
                action_status,
                command_status,
                ..
            } => write!(
                f,
                "command {index} of action {action_id} has no result: \
                 action {action_status}, command {}",
                command_status
                    .as_ref()
                    .map_or("unknown", CommandStatus::as_str)
            ),
            Error::ActionNotSucceeded { action_id, status } if status.is_terminal() => {
                write!(f, "action {action_id} ended {status}: it collected nothing")
            }
            Error::ActionNotSucceeded { action_id, status } => write!(
                f,
                "action {action_id} is {status}: what it collects is not ready yet"
            ),
            Error::Incomplete { expected, received } => write!(
                f,
                "the download stopped after {received} of {expected} bytes"
            ),
            Error::Exists { path } => write!(f, "{} exists already", path.display()),
            Error::Io { path, op, .. } => write!(f, "cannot {op} {}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport {
                source: Some(s), ..
            } => Some(s.as_ref()),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for `Result<T, mdlr::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<&str>) -> Error {
        Error::Api {
            status,
            code: code.map(str::to_owned),
            message: String::new(),
            correlation_id: None,
        }
    }

    #[test]
    fn kinds_per_reply() {
        use ErrorKind as K;
        assert_eq!(api(401, None).kind(), K::Unauthenticated);
        assert_eq!(api(403, Some("Forbidden")).kind(), K::PermissionDenied);
        assert_eq!(api(404, Some("ResourceNotFound")).kind(), K::NotFound);
        assert_eq!(api(429, None).kind(), K::Throttled);
        assert_eq!(api(400, Some("BadRequest")).kind(), K::InvalidInput);
        let busy = api(400, Some(BUSY_CODE));
        assert!(busy.is_busy());
        assert_eq!(busy.kind(), K::Busy);
        assert!(!api(409, Some(BUSY_CODE)).is_busy());
        let cap = Error::Api {
            status: 429,
            code: Some("TooManyRequests".to_owned()),
            message: "Maximum number of concurrent live response sessions reached".to_owned(),
            correlation_id: None,
        };
        assert!(cap.is_session_cap());
        assert_eq!(cap.kind(), K::Throttled);
        assert!(!api(429, Some("TooManyRequests")).is_session_cap());
        assert_eq!(api(503, None).kind(), K::Unavailable);
        let blob = |status| Error::Blob {
            status,
            code: None,
            message: String::new(),
            request_id: None,
        };
        assert_eq!(blob(403).kind(), K::PermissionDenied);
        assert_eq!(blob(404).kind(), K::NotFound);
        assert_eq!(blob(500).kind(), K::Unavailable);
    }

    #[test]
    fn a_refusal_inside_not_finished_keeps_its_code() {
        let e = Error::NotFinished {
            action_id: "a".into(),
            index: 1,
            action_status: ActionStatus::Succeeded,
            command_status: Some(CommandStatus::Completed),
            refusal: Some(Box::new(api(400, Some("BadRequest")))),
        };
        assert!(e.is_not_finished());
        assert_eq!(e.kind(), ErrorKind::NotFinished);
        assert_eq!((e.status(), e.code()), (Some(400), Some("BadRequest")));
        assert!(e.to_string().contains("the API answered 400"), "{e}");
    }

    #[test]
    fn unresolved_names_list_their_candidates() {
        let m = |id: &str| Machine {
            id: Some(id.into()),
            last_seen: Some("2026-12-01T00:00:00Z".into()),
            ..Machine::default()
        };
        let e = Error::UnresolvedMachines {
            unknown: vec!["ghost".into()],
            ambiguous: vec![("twin".into(), vec![m("a1"), m("b2")])],
        };
        assert_eq!(
            e.to_string(),
            "no machine is named ghost; twin names 2 machines; pass one id: \
             a1 (last seen 2026-12-01T00:00:00Z), b2 (last seen 2026-12-01T00:00:00Z)"
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
}
