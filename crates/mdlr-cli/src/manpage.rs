//! `mdlr man`: the manual page mdlr(1), in roff with the `man` macros, rendered from the
//! table that `mdlr help` and the completions come from (`args::COMMANDS`,
//! `args::OPTIONS`), so the three cannot drift apart. `cargo xtask dist` writes it as
//! `mdlr.1` and puts it in the .deb and the tarball.
//!
//! Every piece of text goes through [`escape`]: backslashes, hyphens (`\-`, so options
//! and commands copy as typed), quotes and anything outside ASCII become roff escapes,
//! and no line starts with a control character. The page turns hyphenation off and
//! leaves the right margin ragged, so no option or command is ever split.

use std::fmt::Write as _;

use crate::args::{COMMANDS, CommandSpec, Kind, OPTIONS, OptionSpec, Scope, options_for};
use crate::output;

/// What the page says about each variable that no option names (options' variables are
/// described from the table); a test holds this list to what `settings.rs` reads.
const ENVIRONMENT: &[(&[&str], &str)] = &[
    (
        &["MDLR_TOKEN"],
        "A bearer token for the API, used as is and never renewed (sign-in method \
         token). --token-file reads one from a file instead.",
    ),
    (
        &["AZURE_TENANT_ID"],
        "The tenant (a name such as contoso.onmicrosoft.com, or its id) of the \
         client-secret and client-certificate sign-ins and of mdlr login; the tenant \
         azure-cli asks a token for.",
    ),
    (
        &["AZURE_CLIENT_ID"],
        "The application (client) id of the client-secret and client-certificate \
         sign-ins and of mdlr login; with managed-identity, the user-assigned identity \
         to use.",
    ),
    (
        &["AZURE_CLIENT_SECRET"],
        "The application's client secret (sign-in method client-secret). Secrets are \
         never read from the command line.",
    ),
    (
        &["AZURE_CLIENT_CERTIFICATE_PATH"],
        "A PEM file with the application's certificate and its unencrypted RSA key \
         (PKCS#8 or PKCS#1) (sign-in method client-certificate).",
    ),
    (
        &["AZURE_POD_IDENTITY_AUTHORITY_HOST"],
        "Where managed-identity asks for tokens, instead of the instance metadata \
         service at 169.254.169.254 (always reached without a proxy).",
    ),
    (
        &["HTTPS_PROXY", "https_proxy"],
        "The proxy for https:// URLs (the API, the sign-in and the result downloads), \
         as curl reads it; the lower-case name wins. http:// and https:// proxies, with \
         user:password@ if needed. --proxy overrides it, --no-proxy ignores it.",
    ),
    (
        &["HTTP_PROXY", "http_proxy"],
        "The proxy for plain http:// URLs (loopback only).",
    ),
    (
        &["ALL_PROXY", "all_proxy"],
        "The proxy for both when the two above are unset.",
    ),
    (
        &["NO_PROXY", "no_proxy"],
        "Hosts reached directly, comma-separated: a domain also matches its \
         subdomains, IP addresses and CIDR ranges (10.0.0.0/8) match addresses, and * \
         matches all. It applies to --proxy too.",
    ),
    (
        &["XDG_CONFIG_HOME", "HOME"],
        "Where the login kept by mdlr login lives: $XDG_CONFIG_HOME/mdlr/login.json, \
         else $HOME/.config/mdlr/login.json (see FILES).",
    ),
    (
        &["XDG_RUNTIME_DIR", "XDG_CACHE_HOME"],
        "Where the quota state shared by your mdlr processes lives: \
         $XDG_RUNTIME_DIR/mdlr, else $XDG_CACHE_HOME/mdlr, else $HOME/.cache/mdlr (see \
         FILES). With none of them set, quotas are kept by each process alone.",
    ),
    (
        &["PATH"],
        "Where the Azure CLI, az, is looked for (sign-in method azure-cli).",
    ),
];

/// The exit statuses, as SPEC B4 and `output` define them.
fn exit_statuses() -> Vec<(String, &'static str)> {
    let code = |c: u8| c.to_string();
    vec![
        ("0".to_owned(), "Success."),
        (
            "n".to_owned(),
            "A RunScript result: the script's own exit code (1 when it is outside 0-255), \
             as ssh does. Not with --json, where the code is in the record.",
        ),
        (
            code(output::EX_USAGE),
            "Usage: bad arguments, an action id that is not one.",
        ),
        (
            code(output::EX_DATAERR),
            "The service sent malformed data: bad JSON, a transcript that is not one, a \
             corrupt gzip stream.",
        ),
        (
            code(output::EX_NOINPUT),
            "Not found: action, machine, command index, result.",
        ),
        (
            code(output::EX_UNAVAILABLE),
            "Service unavailable (network, 5xx after retries, download cut short), or the \
             command failed or the action was cancelled.",
        ),
        (
            code(output::EX_CANTCREAT),
            "The output file exists (pass --force), or a batch journal exists (pass \
             --resume).",
        ),
        (code(output::EX_IOERR), "Local I/O error."),
        (
            code(output::EX_TEMPFAIL),
            "Try later: 429 after retries, the command has not finished, the wait or the \
             action timed out.",
        ),
        (
            code(output::EX_NOPERM),
            "Sign-in or permission refused: a 401 or 403 reply, an error from the token \
             endpoint, or an expired result link mdlr cannot renew.",
        ),
        (
            code(output::EX_CONFIG),
            "Configuration: no credential, unknown cloud, insecure URL.",
        ),
    ]
}

/// The manual page.
pub fn page() -> String {
    let mut p = String::new();
    let version = env!("CARGO_PKG_VERSION");
    p.push_str(
        ".\\\" mdlr(1), generated by `mdlr man` from the table behind `mdlr help`; \
         do not edit.\n",
    );
    let _ = writeln!(
        p,
        ".TH MDLR 1 \"\" \"mdlr {}\" \"User Commands\"",
        escape(version)
    );
    p.push_str(".nh\n.ad l\n");

    p.push_str(".SH NAME\n");
    p.push_str(&text(
        "mdlr - Microsoft Defender for Endpoint live response from the command line",
    ));

    p.push_str(".SH SYNOPSIS\n");
    p.push_str(".B mdlr\n[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]\n.br\n");
    p.push_str(".B mdlr help\n[\\fICOMMAND\\fR]\n.br\n");
    p.push_str(".B mdlr \\-\\-version\n");

    p.push_str(".SH DESCRIPTION\n");
    p.push_str(&paragraphs(DESCRIPTION));

    p.push_str(".SH COMMANDS\n");
    for c in COMMANDS {
        command(&mut p, c);
    }

    p.push_str(".SH OPTIONS\n");
    p.push_str(&text(
        "These apply to every command and may come anywhere on the line.",
    ));
    options(&mut p, options_for(None));
    p.push_str(".PP\n");
    p.push_str(&text(DURATIONS));

    p.push_str(".SH \"BATCH OPTIONS\"\n");
    p.push_str(&text(&format!(
        "{} take these too, on one machine or many:",
        list(crate::args::BATCH_COMMANDS)
    )));
    options(&mut p, OPTIONS.iter().filter(|o| o.scope == Scope::Batch));
    p.push_str(".PP\n");
    p.push_str(&paragraphs(BATCH_NOTES));

    p.push_str(".SH ENVIRONMENT\n");
    p.push_str(&text(
        "Empty variables count as unset. Options on the command line win over them.",
    ));
    for (names, help) in environment() {
        item(&mut p, &bold_list(&names), &help);
    }

    p.push_str(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in exit_statuses() {
        let tag = match code.as_str() {
            "n" => "\\fIn\\fR".to_owned(),
            c => format!("\\fB{c}\\fR"),
        };
        item(&mut p, &tag, meaning);
    }
    p.push_str(".PP\n");
    p.push_str(&text(
        "A batch (run, getfile, putfile on several machines) exits 0 only when every \
         machine succeeded, else with the most severe status among them: 78, 77, 64, \
         74, 73, 65, 69, 66, 75, then script exit codes. Errors go to stderr as \
         \"mdlr: MESSAGE\", then one line per cause, the API error code and correlation \
         id when there is one, and a hint where one helps.",
    ));

    p.push_str(".SH FILES\n");
    for (name, help) in files() {
        item(&mut p, &format!("\\fI{}\\fR", escape(&name)), &help);
    }

    p.push_str(".SH EXAMPLES\n");
    for c in COMMANDS.iter().filter(|c| !c.examples.is_empty()) {
        p.push_str(".PP\n");
        let _ = writeln!(p, "\\fB{}\\fR: {}", escape(c.name), escape(c.summary));
        p.push_str(".RS 4\n.nf\n");
        for e in c.examples {
            p.push_str(&line(e));
        }
        p.push_str(".fi\n.RE\n");
    }

    p.push_str(".SH \"SEE ALSO\"\n");
    p.push_str(&text(&format!(
        "mdlr help COMMAND for one command's help; the README at {} for setting up an \
         application in Entra ID and for putting mdlr on a jump host.",
        env!("CARGO_PKG_REPOSITORY")
    )));
    p
}

const DESCRIPTION: &str = "\
mdlr gets Microsoft Defender for Endpoint live response work done from a jump host: it
starts live response commands on one machine or thousands within the API's quotas,
waits for them, and gets their results back. A RunScript transcript goes to the
terminal with the script's exit code; a collected file is streamed to disk, un-gzipped,
under its original name.

Downloads resume from the byte they reached after a cut, renew expired links, continue
after a kill from the partial file, and are renamed into place only when complete and
verified; an existing file is never replaced without --force. The bearer token goes to
the API host only, and no token, client secret or link signature is ever printed.
Secrets are never read from the command line: they come from the environment or files.

Options may come anywhere on the line; a misspelt command or option gets a suggestion.";

const DURATIONS: &str = "DUR is 90s, 10m, 1h, 500ms or plain seconds.";

const BATCH_NOTES: &str = "\
MACHINE is a machine id (40 hex characters) or a computer DNS name; names are looked up
before anything starts. At once, at most 10 session starts a minute, 100 API calls a
minute and 1500 an hour, and --max-in-flight unfinished actions, one per machine. On a
terminal a live count per state is shown on stderr. Ctrl-C stops waiting, leaves the
actions running and prints, per machine, the mdlr result command that picks it up.";

/// One command: its usage lines, what it does, its own options.
fn command(p: &mut String, c: &CommandSpec) {
    let _ = writeln!(p, ".SS {}", quoted(c.name));
    p.push_str(".PP\n");
    for (i, usage) in c.usage.iter().enumerate() {
        if i > 0 {
            p.push_str(".br\n");
        }
        let usage = usage.replace('\n', " ");
        let rest = usage.strip_prefix(c.name).unwrap_or(&usage);
        let _ = writeln!(
            p,
            "\\fBmdlr {}\\fR{}",
            escape(c.name),
            keep_groups(&escape(rest))
        );
    }
    p.push_str(".PP\n");
    p.push_str(&text(&sentence(c.summary)));
    if !c.description.is_empty() {
        p.push_str(".PP\n");
        p.push_str(&paragraphs(c.description));
    }
    for sub in c.subcommands {
        let args: Vec<&str> = sub.args.iter().map(|a| a.name).collect();
        let tag = format!("\\fB{}\\fR {}", escape(sub.name), escape(&args.join(" ")));
        item(p, tag.trim_end(), &sentence(sub.summary));
    }
    let own: Vec<&OptionSpec> = OPTIONS
        .iter()
        .filter(|o| matches!(o.scope, Scope::Only(cs) if cs.contains(&c.name)))
        .collect();
    if !own.is_empty() {
        p.push_str(".PP\n");
        p.push_str(&text("Options:"));
        p.push_str(".RS\n");
        options(p, own.into_iter());
        p.push_str(".RE\n");
    }
}

/// Options as tagged paragraphs: names and value, then what the option does, its
/// default and variables, and the words it takes with what each means.
fn options<'a>(p: &mut String, options: impl Iterator<Item = &'a OptionSpec>) {
    for o in options {
        let names: Vec<String> = o
            .names()
            .map(|n| format!("\\fB{}\\fR", escape(n)))
            .collect();
        let mut tag = names.join(", ");
        if let Some(v) = o.value {
            let _ = write!(tag, " \\fI{}\\fR", escape(v.name));
        }
        item(p, &tag, &crate::args::option_help(o));
        let words = o.value.map(|v| v.kind.words()).unwrap_or_default();
        if words.iter().any(|(_, help)| !help.is_empty()) {
            p.push_str(".RS\n");
            for (word, help) in words {
                item(p, &format!("\\fB{}\\fR", escape(word)), help);
            }
            p.push_str(".RE\n");
        }
    }
}

/// Every variable mdlr reads, with what it does: those of options first, from the table.
fn environment() -> Vec<(Vec<&'static str>, String)> {
    let mut out: Vec<(Vec<&'static str>, String)> = Vec::new();
    let described = |name: &str| ENVIRONMENT.iter().any(|(names, _)| names.contains(&name));
    for o in OPTIONS {
        for var in o.env.iter().copied().filter(|v| !described(v)) {
            if out.iter().any(|(names, _)| names.contains(&var)) {
                continue;
            }
            let value = o.value.map(|v| format!(" {}", v.name)).unwrap_or_default();
            // The help up to a pointer elsewhere (`; see Sign-in below`).
            let filled = fill_values(o.help, o.value.map(|v| v.kind));
            let what = filled.split("; see ").next().unwrap_or(&filled);
            let mut help = format!("The default of {}{value}: {what}", o.long);
            if let Some(default) = o.default {
                let _ = write!(help, " (default {default})");
            }
            help.push('.');
            out.push((vec![var], help));
        }
    }
    out.extend(
        ENVIRONMENT
            .iter()
            .map(|(names, help)| (names.to_vec(), (*help).to_owned())),
    );
    out
}

/// The files mdlr reads and writes.
fn files() -> Vec<(String, String)> {
    vec![
        (
            "$XDG_CONFIG_HOME/mdlr/login.json".to_owned(),
            "The sign-in kept by mdlr login (its refresh token, replaced each time the \
             service rotates it), else in ~/.config/mdlr/login.json. Written with mode \
             600 in a directory of mode 700; mdlr refuses to use it if others can read \
             it. mdlr logout removes it."
                .to_owned(),
        ),
        (
            "$XDG_RUNTIME_DIR/mdlr/quota-KEY.json".to_owned(),
            "The API quotas that your mdlr processes on this host share: the service \
             counts calls per application and tenant, whichever process makes them, so \
             processes that use the same application on the same tenant (KEY: a hash of \
             the API host, the tenant and the application) keep to the quotas together. \
             It holds when recent calls were made, no secret; it is replaced whole under \
             a lock on quota-KEY.json.lock beside it, and a process killed at any point \
             cannot block or damage it. Else in $XDG_CACHE_HOME/mdlr or ~/.cache/mdlr, \
             made with mode 700; files mode 600. Other users and other hosts are not \
             counted. --no-shared-quotas keeps to the quotas alone."
                .to_owned(),
        ),
        (
            format!("DIR/{}", crate::journal::FILE_NAME),
            "The journal of a batch saved with -o DIR: every start, download and end. \
             The same command with --resume continues from it (nothing starts or \
             downloads twice); without --resume an existing journal stops the run (73)."
                .to_owned(),
        ),
        (
            format!("DIR/{}", crate::manifest::FILE_NAME),
            "The evidence manifest of what was delivered into DIR: one JSON line a \
             file, with its SHA-256 as written and as served, its size, the machine, \
             action, command and requestor, and when it was downloaded. Appended and \
             synced as each file lands; a rerun with --resume adds nothing twice. mdlr \
             verify DIR checks every file against it. It is a record, not a signature."
                .to_owned(),
        ),
        (
            ".NAME.mdlr-part".to_owned(),
            "A download in progress, beside its target NAME, moved into place only when \
             complete and verified. When un-gzipping, .NAME.gz.mdlr-part holds the bytes \
             as received and .NAME.mdlr-part.json says which blob they are from; they \
             are kept after a failure so that a rerun continues from them."
                .to_owned(),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// roff

/// `text` with roff's special characters escaped, for a text line or a macro argument.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '\'' => out.push_str("\\(aq"),
            '`' => out.push_str("\\(ga"),
            '"' => out.push_str("\\(dq"),
            '\t' => out.push(' '),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c if c.is_ascii_control() => {}
            c => {
                let _ = write!(out, "\\[u{:04X}]", u32::from(c));
            }
        }
    }
    out
}

/// A line of escaped text, protected from being read as a request (`.` or `'` first).
fn line(text: &str) -> String {
    let escaped = escape(text);
    match escaped.starts_with('.') {
        true => format!("\\&{escaped}\n"),
        false => format!("{escaped}\n"),
    }
}

/// Filled text: words joined into lines, one line of input per line of the source.
fn text(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(line)
        .collect()
}

/// Paragraphs separated by blank lines, as `.PP`-separated filled text.
fn paragraphs(source: &str) -> String {
    source
        .split("\n\n")
        .map(text)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(".PP\n")
}

/// A tagged paragraph: `tag` (already roff) above, `body` (plain text) indented.
fn item(p: &mut String, tag: &str, body: &str) {
    p.push_str(".TP\n");
    // A tag line must not start with a control character either.
    if tag.starts_with('.') {
        p.push_str("\\&");
    }
    p.push_str(tag);
    p.push('\n');
    p.push_str(&text(body));
}

/// A macro argument in double quotes.
fn quoted(arg: &str) -> String {
    format!("\"{}\"", escape(arg))
}

/// `\fBA\fR, \fBB\fR`.
fn bold_list(names: &[&str]) -> String {
    let names: Vec<String> = names
        .iter()
        .map(|n| format!("\\fB{}\\fR", escape(n)))
        .collect();
    names.join(", ")
}

/// `a, b and c`.
fn list(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Spaces inside `[...]` become unbreakable, so that `[--index N]` stays on one line.
fn keep_groups(escaped: &str) -> String {
    let mut depth = 0usize;
    escaped
        .chars()
        .map(|c| match c {
            '[' => {
                depth += 1;
                "[".to_owned()
            }
            ']' => {
                depth = depth.saturating_sub(1);
                "]".to_owned()
            }
            ' ' if depth > 0 => "\\ ".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// A summary as a sentence: capital first, full stop last.
fn sentence(summary: &str) -> String {
    let mut chars = summary.chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// An option's help with `{values}` filled in.
fn fill_values(help: &str, kind: Option<Kind>) -> String {
    let words: Vec<&str> = kind
        .map(|k| k.words().into_iter().map(|(w, _)| w).collect())
        .unwrap_or_default();
    help.replace("{values}", &words.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::AUTH_METHODS;

    /// The page as a reader sees it, roughly: escapes undone, requests dropped.
    fn plain(page: &str) -> String {
        page.lines()
            .filter(|l| !l.starts_with('.'))
            .map(|l| {
                l.replace("\\-", "-")
                    .replace("\\e", "\\")
                    .replace("\\(aq", "'")
                    .replace("\\(ga", "`")
                    .replace("\\(dq", "\"")
                    .replace("\\&", "")
                    .replace("\\ ", " ")
                    .replace("\\fB", "")
                    .replace("\\fI", "")
                    .replace("\\fR", "")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The text of the section headed `name`, up to the next `.SH`.
    fn section<'a>(page: &'a str, name: &str) -> &'a str {
        let head = format!(".SH {name}\n");
        let start = page
            .find(&head)
            .unwrap_or_else(|| panic!("no section {name}"))
            + head.len();
        let end = page[start..].find(".SH ").map_or(page.len(), |e| start + e);
        &page[start..end]
    }

    #[test]
    fn escapes_what_roff_would_read() {
        assert_eq!(escape("--index"), "\\-\\-index");
        assert_eq!(escape(r"C:\Temp\out.zip"), r"C:\eTemp\eout.zip");
        assert_eq!(escape("it's `x` \"y\""), "it\\(aqs \\(gax\\(ga \\(dqy\\(dq");
        assert_eq!(escape("a — b·"), "a \\[u2014] b\\[u00B7]");
        assert_eq!(escape("a\tb\x07"), "a b");
        assert_eq!(line(".hidden file"), "\\&.hidden file\n");
        assert_eq!(line("'quoted"), "\\(aqquoted\n");
        assert_eq!(text("  one\n\n   two  \n"), "one\ntwo\n");
        assert_eq!(
            keep_groups("x [\\-\\-index N] [\\-o PATH]"),
            "x [\\-\\-index\\ N] [\\-o\\ PATH]"
        );
        assert_eq!(sentence("print it"), "Print it.");
        assert_eq!(
            list(&["run", "getfile", "putfile"]),
            "run, getfile and putfile"
        );
    }

    #[test]
    fn every_line_is_safe_roff() {
        let page = page();
        assert!(page.is_ascii(), "raw non-ASCII would need preconv");
        let requests = [
            ".\\\"", ".TH", ".nh", ".ad", ".SH", ".SS", ".PP", ".TP", ".RS", ".RE", ".nf", ".fi",
            ".br", ".B",
        ];
        for l in page.lines() {
            assert!(!l.starts_with('\''), "a line read as a request: {l}");
            if l.starts_with('.') {
                assert!(
                    requests
                        .iter()
                        .any(|r| l == *r || l.starts_with(&format!("{r} "))),
                    "unexpected request: {l}"
                );
            }
            assert!(!l.is_empty(), "a blank line in the page");
            // Every backslash starts a known escape.
            let mut rest = l;
            while let Some(at) = rest.find('\\') {
                let after = &rest[at + 1..];
                let known = [
                    "-", "e", "(aq", "(ga", "(dq", "&", " ", "fB", "fI", "fR", "\"",
                ]
                .iter()
                .any(|e| after.starts_with(e))
                    || after.starts_with("[u");
                assert!(known, "unknown escape in {l}");
                rest = &after[1..];
            }
        }
        // Not one unescaped hyphen: options copy as typed.
        for l in page.lines().filter(|l| !l.starts_with(".\\\"")) {
            let bare = l.replace("\\-", "");
            assert!(!bare.contains('-'), "unescaped hyphen in {l}");
        }
    }

    #[test]
    fn every_command_option_and_word_is_on_the_page() {
        let page = page();
        let reading = plain(&page);
        let commands = section(&page, "COMMANDS");
        for c in COMMANDS {
            assert!(
                commands.contains(&format!(".SS \"{}\"\n", escape(c.name))),
                "{}",
                c.name
            );
            for u in c.usage {
                let u = u.replace('\n', " ");
                let words: Vec<&str> = u.split_whitespace().collect();
                let shown: Vec<&str> = reading.split_whitespace().collect();
                assert!(
                    shown.windows(words.len()).any(|w| w == words.as_slice()),
                    "usage of {}: {u}",
                    c.name
                );
            }
            for e in c.examples {
                assert!(reading.contains(e), "example of {}: {e}", c.name);
            }
        }
        for o in OPTIONS {
            for n in o.names() {
                assert!(page.contains(&format!("\\fB{}\\fR", escape(n))), "{n}");
            }
            if let Some(v) = o.value {
                for (word, _) in v.kind.words() {
                    assert!(reading.contains(word), "{}: {word}", o.long);
                }
            }
        }
        for m in AUTH_METHODS {
            assert!(page.contains(&format!(".TP\n\\fB{}\\fR\n", escape(m.name))));
        }
        let global = section(&page, "OPTIONS");
        for o in options_for(None) {
            assert!(global.contains(&escape(o.long)), "{}", o.long);
        }
    }

    /// Every variable `settings.rs` reads (outside its tests), and every variable an
    /// option of the table names, is described under ENVIRONMENT.
    #[test]
    fn every_variable_mdlr_reads_is_described() {
        let source = include_str!("settings.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        let mut read = Vec::new();
        for call in ["env(\"", "either(\""] {
            for (at, _) in code.match_indices(call) {
                let rest = &code[at + call.len()..];
                if let Some(end) = rest.find('"') {
                    read.push(rest[..end].to_owned());
                }
                // `either("lower", "UPPER")`: the second name too.
                if call == "either(\""
                    && let Some(second) = rest.split('"').nth(2)
                {
                    read.push(second.to_owned());
                }
            }
        }
        assert!(read.len() > 15, "the scan found too little: {read:?}");
        read.extend(
            OPTIONS
                .iter()
                .flat_map(|o| o.env.iter().map(|v| (*v).to_owned())),
        );
        let page = page();
        let environment = section(&page, "ENVIRONMENT");
        for var in &read {
            assert!(
                environment.contains(&format!("\\fB{}\\fR", escape(var))),
                "{var} is read but not described under ENVIRONMENT"
            );
        }
    }

    #[test]
    fn exit_statuses_are_those_of_the_help_and_output() {
        let page = page();
        let statuses = section(&page, "\"EXIT STATUS\"");
        let source = include_str!("output.rs");
        let mut codes = Vec::new();
        for l in source.lines() {
            if let Some(rest) = l.strip_prefix("pub const EX_")
                && let Some((_, value)) = rest.split_once("u8 = ")
            {
                codes.push(value.trim_end_matches(';').to_owned());
            }
        }
        assert_eq!(codes.len(), 9, "{codes:?}");
        let help = crate::args::help_for(None);
        let help_statuses = help.split("Exit status:").nth(1).unwrap_or_default();
        for code in &codes {
            assert!(
                statuses.contains(&format!(".TP\n\\fB{code}\\fR\n")),
                "{code}"
            );
            assert!(help_statuses.contains(code), "{code} not in mdlr help");
        }
    }

    #[test]
    fn names_files_and_sections() {
        let page = page();
        assert!(page.starts_with(".\\\" mdlr(1)"));
        assert!(page.contains(&format!(
            ".TH MDLR 1 \"\" \"mdlr {}\"",
            env!("CARGO_PKG_VERSION")
        )));
        for s in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "COMMANDS",
            "OPTIONS",
            "\"BATCH OPTIONS\"",
            "ENVIRONMENT",
            "\"EXIT STATUS\"",
            "FILES",
            "EXAMPLES",
            "\"SEE ALSO\"",
        ] {
            section(&page, s);
        }
        let files = plain(section(&page, "FILES"));
        for f in [
            "$XDG_CONFIG_HOME/mdlr/login.json",
            "~/.config/mdlr/login.json",
            "$XDG_RUNTIME_DIR/mdlr/quota-KEY.json",
            "~/.cache/mdlr",
            ".mdlr-journal.jsonl",
            "manifest.jsonl",
            ".NAME.mdlr-part",
        ] {
            assert!(files.contains(f), "{f}");
        }
    }
}
