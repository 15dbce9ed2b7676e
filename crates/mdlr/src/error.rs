//! The one error type of the library.

use std::fmt;
use std::path::PathBuf;

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
    /// Something the caller named does not exist, or names several things (a machine
    /// name, say).
    NotFound {
        /// What is missing or ambiguous, for a person.
        message: String,
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
    /// The command has not finished, so it has no result yet.
    NotFinished {
        /// The action id.
        action_id: String,
        /// The command index.
        index: u32,
        /// The action status, as the service spelt it.
        action_status: String,
        /// The command status, as the service spelt it.
        command_status: String,
    },
    /// The command failed, was cancelled or timed out, so it has no result.
    CommandFailed {
        /// The action id.
        action_id: String,
        /// The command index.
        index: u32,
        /// The action status, as the service spelt it.
        action_status: String,
        /// The command status, as the service spelt it.
        command_status: String,
        /// The errors the service listed for the command.
        errors: Vec<String>,
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
            _ => None,
        }
    }

    /// The service's error code (`ResourceNotFound`, `invalid_client`, ...), if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } | Error::Auth { code, .. } | Error::Blob { code, .. } => {
                code.as_deref()
            }
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
            _ => None,
        }
    }

    /// This error with `secrets` taken out of everything the service said in it (see
    /// [`crate::secret::scrub`]): a careless service or proxy may quote the request —
    /// its `Authorization` header, form or URL — back in its reply.
    pub(crate) fn redact(self, secrets: &[&str]) -> Error {
        if secrets.is_empty() {
            return self;
        }
        let s = |text: String| crate::secret::scrub(&text, secrets);
        let o = |text: Option<String>| text.map(|t| crate::secret::scrub(&t, secrets));
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
            Error::Malformed { what, message } => Error::Malformed {
                what,
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
                action_status: s(action_status),
                command_status: s(command_status),
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
            } => write!(
                f,
                "command {index} of action {action_id} has not finished yet \
                 (action {action_status}, command {command_status})"
            ),
            Error::CommandFailed {
                action_id,
                index,
                action_status,
                command_status,
                ..
            } => write!(
                f,
                "command {index} of action {action_id} has no result: \
                 action {action_status}, command {command_status}"
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
