//! Writing to stdout and stderr, error reports and exit statuses.

use std::io::{self, Write};

use mdlr::{Error, ErrorKind};

use crate::args::Global;

pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_NOINPUT: u8 = 66;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_CANTCREAT: u8 = 73;
pub const EX_IOERR: u8 = 74;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_NOPERM: u8 = 77;
pub const EX_CONFIG: u8 = 78;

/// Why a command stopped early.
#[derive(Debug)]
pub enum Failure {
    /// Whoever read stdout went away: not an error.
    BrokenPipe,
    /// An error to report, with what was being done.
    Error {
        error: Box<Error>,
        context: Option<String>,
    },
}

impl Failure {
    /// The exit status to end with.
    pub fn exit_status(&self) -> u8 {
        match self {
            Failure::BrokenPipe => 0,
            Failure::Error { error, .. } => exit_status(error),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Error {
            error: Box::new(error),
            context: None,
        }
    }
}

/// Adds what was being done to an error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T> Context<T> for Result<T, Failure> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|f| match f {
            Failure::Error { error, .. } => Failure::Error {
                error,
                context: Some(what()),
            },
            other => other,
        })
    }
}

impl<T> Context<T> for Result<T, Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|error| Failure::Error {
            error: Box::new(error),
            context: Some(what()),
        })
    }
}

/// The exit status SPEC B4 gives an error, from what the library says it means.
pub fn exit_status(error: &Error) -> u8 {
    exit_status_of(error.kind())
}

/// The exit status SPEC B4 gives each kind of error.
fn exit_status_of(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Config => EX_CONFIG,
        ErrorKind::InvalidInput => EX_USAGE,
        ErrorKind::Unauthenticated | ErrorKind::PermissionDenied => EX_NOPERM,
        ErrorKind::NotFound => EX_NOINPUT,
        ErrorKind::Busy | ErrorKind::Throttled | ErrorKind::NotFinished | ErrorKind::TimedOut => {
            EX_TEMPFAIL
        }
        ErrorKind::Failed | ErrorKind::Unavailable => EX_UNAVAILABLE,
        ErrorKind::Malformed => EX_DATAERR,
        ErrorKind::Exists => EX_CANTCREAT,
        ErrorKind::Io => EX_IOERR,
        _ => 1,
    }
}

/// The Defender API permission a command needs (application role; the delegated
/// permission of `mdlr login` has the same name, except for reads).
fn permission_for(command: &str) -> &'static str {
    match command {
        "run" | "getfile" | "putfile" | "result" | "link" => {
            "Machine.LiveResponse (and Machine.Read.All to look machines up)"
        }
        "cancel" => "Machine.LiveResponse or Machine.ReadWrite.All",
        "package" => "Machine.CollectForensics (and Machine.Read.All for the package's link)",
        "library" => "Library.Manage",
        "actions" | "action" | "machines" => "Machine.Read.All (delegated: Machine.Read)",
        _ => "Machine.LiveResponse and Machine.Read.All",
    }
}

/// A hint that helps with `error`, if there is one. `command` is the command that
/// ran (`run`, `library`, ...).
fn hint(error: &Error, command: &str) -> Option<String> {
    use mdlr::TransportKind as K;
    if let Error::Auth { code, message, .. } = error {
        return aadsts_hint(code.as_deref(), message);
    }
    match error.kind() {
        ErrorKind::Unauthenticated => {
            return Some(
                "the token was refused: it may have expired, or be for another API or cloud \
                 (check --cloud and --scope); `mdlr auth` shows what it is for"
                    .into(),
            );
        }
        ErrorKind::PermissionDenied if matches!(error, Error::Blob { .. }) => {
            return (command == "fetch").then(|| {
                "the result host refused the link: it may have expired (links last 30 \
                 minutes); get a fresh one with `mdlr link ACTION_ID --index N --reveal` and \
                 run again: what was received is kept"
                    .into()
            });
        }
        ErrorKind::PermissionDenied => {
            return Some(format!(
                "this needs the WindowsDefenderATP API permission {}, granted to the app \
                 (or the user, for `mdlr login`) with admin consent; `mdlr auth` shows what \
                 your token carries",
                permission_for(command)
            ));
        }
        ErrorKind::Throttled => {
            return Some("the API quota is used up for now; try again in a minute".into());
        }
        ErrorKind::TimedOut => {
            return Some(
                "the action timed out on the machine, so this command will not finish; \
                 start it again"
                    .into(),
            );
        }
        _ => {}
    }
    match error {
        Error::Exists { path }
            if path
                .file_name()
                .is_some_and(|n| n == crate::journal::FILE_NAME) =>
        {
            Some(
                "an earlier run left its journal there: add --resume to continue it, or \
                 choose another -o directory"
                    .into(),
            )
        }
        Error::Exists { .. } => Some("pass --force to overwrite it".into()),
        Error::NotFinished { action_id, .. } => Some(format!(
            "run `mdlr result {action_id} --wait` to wait for it"
        )),
        Error::Transport { kind, .. } => match kind {
            K::UntrustedCertificate => Some(
                "if a proxy inspects TLS on this network, trust its CA with --ca-cert PATH \
                 (or SSL_CERT_FILE=PATH): a PEM file of the CA certificate"
                    .into(),
            ),
            K::Tls => Some(
                "check the machine's clock and the host name; for a private CA use \
                 --ca-cert PATH"
                    .into(),
            ),
            K::Proxy => Some(
                "check --proxy (or HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY); \
                 --no-proxy connects directly"
                    .into(),
            ),
            K::Dns | K::Connect | K::Timeout => Some(
                "check the network; behind a proxy, set HTTPS_PROXY or pass --proxy URL".into(),
            ),
            _ => None,
        },
        _ => None,
    }
}

/// What the common Entra ID (AADSTS) errors mean for mdlr's user.
fn aadsts_hint(code: Option<&str>, message: &str) -> Option<String> {
    let known = [
        (
            "AADSTS7000215",
            "the client secret is wrong: check AZURE_CLIENT_SECRET (the secret's value, not its id)",
        ),
        (
            "AADSTS7000222",
            "the client secret has expired: create a new one in the app registration",
        ),
        (
            "AADSTS700016",
            "no such application in this tenant: check AZURE_CLIENT_ID and AZURE_TENANT_ID",
        ),
        ("AADSTS90002", "no such tenant: check AZURE_TENANT_ID"),
        (
            "AADSTS900023",
            "AZURE_TENANT_ID is not a tenant id or domain",
        ),
        (
            "AADSTS500011",
            "the API is not known in this tenant: check --cloud and --scope",
        ),
        (
            "AADSTS700027",
            "the certificate was not accepted: upload its public part (.cer/.pem) to the app \
             registration, and check AZURE_CLIENT_CERTIFICATE_PATH holds that certificate \
             and its key",
        ),
        (
            "AADSTS700024",
            "the assertion is outside its valid time: check this machine's clock",
        ),
        (
            "AADSTS7000112",
            "the application is disabled in this tenant",
        ),
        (
            "AADSTS65001",
            "the permission was not consented: an administrator must grant admin consent \
             to the app's API permissions",
        ),
        (
            "AADSTS70011",
            "the scope is not valid for this app: check --scope (it should end in /.default)",
        ),
        (
            "AADSTS53003",
            "a Conditional Access policy blocked the sign-in: ask the tenant's \
             administrators, or run from a compliant network or device",
        ),
        (
            "AADSTS50076",
            "the tenant requires multi-factor authentication: sign in with `mdlr login`",
        ),
        (
            "AADSTS50079",
            "the tenant requires multi-factor authentication: sign in with `mdlr login`",
        ),
        (
            "AADSTS70043",
            "the kept login has expired: run `mdlr login` again",
        ),
        (
            "AADSTS700082",
            "the kept login has expired after a long time unused: run `mdlr login` again",
        ),
        (
            "AADSTS7000218",
            "the app does not allow public client flows: enable \"Allow public client \
             flows\" in its Authentication settings to use `mdlr login`",
        ),
        (
            "AADSTS50059",
            "no tenant was named: pass --tenant or set AZURE_TENANT_ID",
        ),
    ];
    known
        .iter()
        .find(|(id, _)| {
            message
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|word| word == *id)
        })
        .map(|(_, h)| (*h).to_owned())
        .or_else(|| match code {
            Some("invalid_client") => {
                Some("check AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or the certificate".to_owned())
            }
            Some("authorization_declined") => {
                Some("the sign-in was declined in the browser; run `mdlr login` again".to_owned())
            }
            Some("expired_token") => Some(
                "the code expired before the sign-in finished; run `mdlr login` again".to_owned(),
            ),
            Some("invalid_grant") => {
                Some("the kept login is no longer valid: run `mdlr login` again".to_owned())
            }
            _ => None,
        })
}

/// `--wait-timeout` as the user would write it: `15m`, `90s`, `500ms`.
pub fn human_duration(d: std::time::Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{}ms", d.as_millis());
    }
    match d.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `text` from the service or the network, made safe for a terminal: control
/// characters — escape sequences that retitle the window or clear the screen, line
/// breaks that forge a line — are shown escaped (`\u{1b}`, `\n`).
pub fn clean(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Seconds since the epoch as `YYYY-MM-DD{sep}HH:MM:SS` (UTC).
pub fn utc(secs: u64, sep: char) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Where output goes and how much of it.
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    /// The command that runs, for hints.
    pub command: &'static str,
    /// Whether downloads show a progress bar on stderr.
    pub progress: bool,
}

impl Output {
    pub fn new(global: &Global, command: &'static str) -> Output {
        Output {
            json: global.json,
            quiet: global.quiet,
            command,
            progress: crate::progress::wanted(global),
        }
    }

    /// Writes `text` to stdout as is.
    pub fn print(&self, text: &str) -> Result<(), Failure> {
        write_to(&mut io::stdout().lock(), text.as_bytes())
    }

    /// Writes raw bytes to stdout.
    pub fn print_bytes(&self, bytes: &[u8]) -> Result<(), Failure> {
        write_to(&mut io::stdout().lock(), bytes)
    }

    /// Writes one JSON document (one line) to stdout.
    pub fn json_line(&self, value: &serde_json::Value) -> Result<(), Failure> {
        self.print(&format!("{value}\n"))
    }

    /// Writes `text` to stderr as is (a script's own error output).
    pub fn eprint(&self, text: &str) {
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }

    /// A warning on stderr, even when quiet: something about a result its user must
    /// know.
    pub fn warn(&self, text: &str) {
        eprintln!("mdlr: warning: {}", clean(text));
    }

    /// A remark on stderr, unless quiet.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("mdlr: {}", clean(text));
        }
    }

    /// Reports an error on stderr: the message, one line per cause, the service's
    /// code and correlation id, and a hint.
    pub fn report(&self, error: &Error, context: Option<&str>) {
        let said = clean_string(error.to_string());
        let mut text = match context {
            Some(c) => format!("mdlr: {}: {said}\n", clean(c)),
            None => format!("mdlr: {said}\n"),
        };
        let mut cause = std::error::Error::source(error);
        while let Some(c) = cause {
            text.push_str(&format!("  caused by: {}\n", clean_string(c.to_string())));
            cause = c.source();
        }
        if let Error::CommandFailed { errors, .. } = error {
            for e in errors {
                text.push_str(&format!("  error: {}\n", clean(e)));
            }
        }
        let mut ids = Vec::new();
        if let Some(code) = error.code() {
            ids.push(format!("code {}", clean(code)));
        }
        if let Some(id) = error.correlation_id() {
            ids.push(format!("correlation id {}", clean(id)));
        }
        if !ids.is_empty() {
            text.push_str(&format!("  {}\n", ids.join(", ")));
        }
        if let Some(h) = hint(error, self.command) {
            text.push_str(&format!("  hint: {h}\n"));
        }
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }
}

fn clean_string(text: String) -> String {
    match clean(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(cleaned) => cleaned,
    }
}

fn write_to(w: &mut impl Write, bytes: &[u8]) -> Result<(), Failure> {
    match w.write_all(bytes).and_then(|()| w.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Failure::BrokenPipe),
        Err(e) => Err(Error::Io {
            path: "standard output".into(),
            op: "write to",
            source: e,
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aadsts_codes_are_matched_whole() {
        let hint = |m: &str| aadsts_hint(Some("invalid_grant"), m);
        assert!(
            hint("AADSTS70043: The refresh token has expired")
                .is_some_and(|h| h.contains("mdlr login"))
        );
        assert!(
            hint("AADSTS700082: The refresh token has expired due to inactivity")
                .is_some_and(|h| h.contains("long time unused"))
        );
        assert!(
            hint("AADSTS700027: Client assertion failed signature validation.")
                .is_some_and(|h| h.contains("upload its public part"))
        );
        assert!(
            hint("AADSTS53003: Access has been blocked by Conditional Access policies.")
                .is_some_and(|h| h.contains("Conditional Access"))
        );
        // A code that merely starts like a known one is not taken for it: what the
        // OAuth code says applies instead.
        assert_eq!(
            hint("AADSTS7004399: something else").as_deref(),
            Some("the kept login is no longer valid: run `mdlr login` again")
        );
        assert!(
            aadsts_hint(Some("invalid_client"), "AADSTS1: new")
                .is_some_and(|h| h.contains("AZURE_CLIENT_ID"))
        );
    }

    #[test]
    fn terminal_controls_are_escaped() {
        assert_eq!(clean("plain"), "plain");
        assert_eq!(
            clean("\u{1b}]0;pwned\u{7}a\nb\0"),
            "\\u{1b}]0;pwned\\u{7}a\\nb\\u{0}"
        );
    }

    #[test]
    fn statuses_per_spec() {
        use ErrorKind as K;
        for (kind, status) in [
            (K::Config, 78),
            (K::InvalidInput, 64),
            (K::Unauthenticated, 77),
            (K::PermissionDenied, 77),
            (K::NotFound, 66),
            (K::Busy, 75),
            (K::Throttled, 75),
            (K::NotFinished, 75),
            (K::TimedOut, 75),
            (K::Failed, 69),
            (K::Unavailable, 69),
            (K::Malformed, 65),
            (K::Exists, 73),
            (K::Io, 74),
        ] {
            assert_eq!(exit_status_of(kind), status, "{kind:?}");
        }
        assert_eq!(exit_status(&Error::Exists { path: "x".into() }), 73);
    }
}
