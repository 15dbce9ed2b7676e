//! Command-line parsing, first stage: raw flags into typed arguments. No I/O here.
//!
//! [`COMMANDS`] and [`OPTIONS`] describe every command and option once: `mdlr help`,
//! `mdlr COMMAND --help` and the shell completions (`completions.rs`) are rendered from
//! them, and the unit tests below hold the parser to them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

/// Options that apply to every command.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Global {
    pub cloud: Option<String>,
    pub api_url: Option<String>,
    pub login_url: Option<String>,
    pub scope: Option<String>,
    pub token_file: Option<PathBuf>,
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    /// `--api-quota`: (calls, window) pairs.
    pub api_quota: Option<Vec<(u32, Duration)>>,
    /// `--start-quota`: (calls, window) pairs.
    pub start_quota: Option<Vec<(u32, Duration)>>,
    /// `--package-quota`: (calls, window) pairs.
    pub package_quota: Option<Vec<(u32, Duration)>>,
    /// `--no-shared-quotas`: keep to the quotas without the other processes.
    pub no_shared_quotas: bool,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--retries`.
    pub retries: Option<u32>,
    /// `--auth METHOD`: how to sign in (`auto` when absent and `MDLR_AUTH` is unset).
    pub auth: Option<String>,
    /// `--proxy URL`: the proxy for every request (except the IMDS address).
    pub proxy: Option<String>,
    /// `--no-proxy`: ignore the proxy variables and connect directly.
    pub no_proxy: bool,
    /// `--ca-cert PATH`: a PEM file of CA certificates trusted on top of the bundled roots.
    pub ca_cert: Option<PathBuf>,
    /// `--progress`: show the download progress bar even when stderr is not a terminal.
    pub progress: bool,
}

/// How long and how often to wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    pub enabled: bool,
    pub timeout: Duration,
    /// `--wait-timeout` was given: it counts from the start, whatever the state.
    pub timeout_given: bool,
    pub poll: Duration,
    /// `--offline-after`: how long an action may be `Pending` before its machine is
    /// said to be probably offline.
    pub offline_after: Duration,
}

/// Which commands of an action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Which {
    Index(u32),
    All,
}

/// A command and its own arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help(Option<String>),
    Version,
    Link {
        action_id: String,
        index: u32,
        reveal: bool,
    },
    Result {
        action_id: String,
        which: Which,
        output: Option<PathBuf>,
        raw: bool,
        force: bool,
        wait: Wait,
        connections: Option<usize>,
        report: Option<PathBuf>,
    },
    /// `mdlr verify DIR`: the files of DIR against its manifest.
    Verify {
        dir: PathBuf,
    },
    Action {
        action_id: String,
        wait: Wait,
    },
    /// `mdlr fetch URL`: a bare result link, downloaded without any credential.
    Fetch {
        url: String,
        output: Option<PathBuf>,
        raw: bool,
        force: bool,
        connections: Option<usize>,
    },
    Live(Live),
    Cancel {
        action_id: String,
        comment: String,
    },
    Actions {
        machine: Option<String>,
        status: Option<String>,
        top: u32,
        csv: bool,
    },
    Machines {
        name: Option<String>,
        top: u32,
        csv: bool,
    },
    LibraryList,
    LibraryUpload {
        path: PathBuf,
        name: Option<String>,
        description: String,
        parameters_description: Option<String>,
        override_existing: bool,
    },
    LibraryDelete {
        name: String,
    },
    /// `mdlr login`: device-code sign-in, tokens kept for later runs.
    Login {
        tenant: Option<String>,
        client_id: Option<String>,
    },
    /// `mdlr logout`: forget the kept tokens.
    Logout,
    /// `mdlr auth`: which sign-in would be used and what its token grants.
    Auth,
    /// `mdlr completions SHELL`.
    Completions(Shell),
    /// `mdlr man`: the manual page, in roff.
    Man,
}

/// The shells `mdlr completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// What `run`, `getfile` and `putfile` start, where, and how the batch runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub command: &'static str,
    pub machines: Vec<String>,
    pub machines_file: Option<PathBuf>,
    pub puts: Vec<String>,
    pub script: Option<(String, String)>,
    pub gets: Vec<String>,
    pub comment: Option<String>,
    pub no_wait: bool,
    pub output: Option<PathBuf>,
    pub resume: bool,
    pub on_busy: mdlr::OnBusy,
    pub max_in_flight: usize,
    pub wait: Wait,
    pub raw: bool,
    pub force: bool,
    /// `--connections`: per GetFile result.
    pub connections: Option<usize>,
    /// `--report FILE`: a CSV row per machine and command.
    pub report: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub global: Global,
    pub command: Command,
}

/// A usage error: what is wrong, and the help to point at.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub message: String,
    pub command: Option<&'static str>,
}

fn usage(message: impl Into<String>, command: Option<&'static str>) -> Usage {
    Usage {
        message: message.into(),
        command,
    }
}

// ---------------------------------------------------------------------------------------
// The table: every command and option, once. Help and completions are rendered from it.

/// What a value is: how completion offers it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Free text (an id, a name, a number, a duration, a remote path): nothing to offer.
    Text,
    /// A local file (completion offers files and directories).
    File,
    /// A local directory.
    Dir,
    /// One of these words.
    OneOf(&'static [Word]),
    /// A cloud name, from [`mdlr::Cloud::ALL`].
    Cloud,
    /// A command name of [`COMMANDS`].
    Command,
}

impl Kind {
    /// The words a value of this kind is one of, with what each means (may be empty);
    /// empty when the kind is not a closed list.
    pub fn words(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Kind::OneOf(words) => words.iter().map(|w| (w.name, w.help)).collect(),
            Kind::Cloud => mdlr::Cloud::ALL.iter().map(|c| (c.name(), "")).collect(),
            Kind::Command => COMMANDS.iter().map(|c| (c.name, c.summary)).collect(),
            Kind::Text | Kind::File | Kind::Dir => Vec::new(),
        }
    }
}

/// One word of a closed list of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Word {
    pub name: &'static str,
    /// What it means, for help and completion (may be empty).
    pub help: &'static str,
}

/// A value: an option's, or a positional argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value {
    /// As help shows it: `PATH`, `DUR`, `MACHINE...` (a trailing `...` repeats).
    pub name: &'static str,
    pub kind: Kind,
}

/// Which commands an option belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scope {
    /// Every command (and none): shown by `mdlr help`.
    Global,
    /// [`BATCH_COMMANDS`]: shown under "Batch options".
    Batch,
    /// These commands: shown in their help.
    Only(&'static [&'static str]),
}

/// The commands that take the batch options.
pub const BATCH_COMMANDS: &[&str] = &["run", "getfile", "putfile", "package"];

/// The batch commands that start live response sessions (the others collect packages).
const LIVE_COMMANDS: Scope = Scope::Only(&["run", "getfile", "putfile"]);

impl Scope {
    /// Whether an option of this scope belongs to `command` (global ones to every one).
    pub fn includes(self, command: &str) -> bool {
        match self {
            Scope::Global => true,
            Scope::Batch => BATCH_COMMANDS.contains(&command),
            Scope::Only(commands) => commands.contains(&command),
        }
    }
}

/// One option. The same option may have several rows, for different commands.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// `-o`, or empty.
    pub short: &'static str,
    /// `--output`.
    pub long: &'static str,
    /// The value it takes; `None` for a flag.
    pub value: Option<Value>,
    /// What it does. `{values}` is replaced by the words of its value's kind.
    pub help: &'static str,
    /// Environment variables read when the option is absent.
    pub env: &'static [&'static str],
    /// What applies when it is absent.
    pub default: Option<&'static str>,
    /// Whether it may be given more than once (otherwise the last one counts).
    pub repeat: bool,
    pub scope: Scope,
    /// What it does to the parsed line: the parser has no other description of it.
    pub apply: Apply,
}

/// A sub-command (`library list`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubSpec {
    pub name: &'static str,
    pub summary: &'static str,
    /// Its positional arguments, in order.
    pub args: &'static [Value],
}

/// One command.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommandSpec {
    pub name: &'static str,
    /// The short form in the command list of `mdlr help`, after `mdlr `.
    pub synopsis: &'static str,
    /// One line: the command list and the title of its help.
    pub summary: &'static str,
    /// Usage lines, after `mdlr `; a `\n` continues the line above.
    pub usage: &'static [&'static str],
    /// Its positional arguments, in order (after the sub-command, if any).
    pub args: &'static [Value],
    pub subcommands: &'static [SubSpec],
    /// Paragraphs, wrapped by hand.
    pub description: &'static str,
    pub examples: &'static [&'static str],
}

/// How an option changes what is parsed: a flag sets something, a value is checked
/// and stored (or refused with a message).
#[derive(Clone, Copy)]
pub enum Apply {
    Flag(fn(&mut Parsed)),
    Value(fn(&mut Parsed, &str) -> Result<(), String>),
}

impl std::fmt::Debug for Apply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Apply::Flag(_) => "Flag",
            Apply::Value(_) => "Value",
        })
    }
}

const fn flag(
    long: &'static str,
    help: &'static str,
    scope: Scope,
    apply: fn(&mut Parsed),
) -> OptionSpec {
    OptionSpec {
        short: "",
        long,
        value: None,
        help,
        env: &[],
        default: None,
        repeat: false,
        scope,
        apply: Apply::Flag(apply),
    }
}

const fn valued(
    long: &'static str,
    name: &'static str,
    kind: Kind,
    help: &'static str,
    scope: Scope,
    apply: fn(&mut Parsed, &str) -> Result<(), String>,
) -> OptionSpec {
    OptionSpec {
        short: "",
        long,
        value: Some(Value { name, kind }),
        help,
        env: &[],
        default: None,
        repeat: false,
        scope,
        apply: Apply::Value(apply),
    }
}

impl OptionSpec {
    const fn short(mut self, short: &'static str) -> OptionSpec {
        self.short = short;
        self
    }

    const fn env(mut self, env: &'static [&'static str]) -> OptionSpec {
        self.env = env;
        self
    }

    const fn default(mut self, default: &'static str) -> OptionSpec {
        self.default = Some(default);
        self
    }

    const fn repeat(mut self) -> OptionSpec {
        self.repeat = true;
        self
    }

    /// Its names: `-o`, `--output` (the short one only when there is one).
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        [self.short, self.long]
            .into_iter()
            .filter(|n| !n.is_empty())
    }
}

const fn text(name: &'static str) -> Value {
    Value {
        name,
        kind: Kind::Text,
    }
}

const fn word(name: &'static str, help: &'static str) -> Word {
    Word { name, help }
}

/// The sign-in methods of `--auth`, in the order `auto` tries them (managed identity
/// excepted).
pub const AUTH_METHODS: &[Word] = &[
    word("auto", "the first of the methods below that is set up"),
    word(
        "token",
        "MDLR_TOKEN (the token itself) or --token-file: a bearer token used as is",
    ),
    word(
        "client-secret",
        "AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_CLIENT_SECRET: an app's secret",
    ),
    word(
        "client-certificate",
        "AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_CLIENT_CERTIFICATE_PATH: an app's \
         certificate (a PEM file with the certificate and its private key)",
    ),
    word(
        "device-code",
        "the sign-in kept by `mdlr login` (a person's, with a device code)",
    ),
    word(
        "azure-cli",
        "the Azure CLI's sign-in (az account get-access-token)",
    ),
    word(
        "managed-identity",
        "only when asked for: the identity of the Azure VM (IMDS); AZURE_CLIENT_ID picks \
         a user-assigned one",
    ),
];

/// `--on-busy` modes.
pub const ON_BUSY: &[Word] = &[
    word("wait", "wait for its session to end, then start"),
    word("skip", "leave the machine out"),
    word("fail", "fail the machine (75)"),
];

/// `--status` values: the action states of the API (`mdlr::ActionStatus`).
pub const STATUSES: &[Word] = &[
    word("Pending", "waiting for the machine"),
    word("InProgress", "running on the machine"),
    word("Succeeded", "every command finished"),
    word("Failed", "a command failed"),
    word("TimeOut", "the machine did not finish in time"),
    word("Cancelled", "somebody cancelled it"),
];

/// The shells `mdlr completions` writes for ([`Shell`]).
pub const SHELLS: &[Word] = &[word("bash", ""), word("zsh", ""), word("fish", "")];

const DUR: &str = "DUR";
const ACTION_ID: &[Value] = &[text("ACTION_ID")];

/// Every command, in the order `mdlr help` lists them.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "link",
        synopsis: "link ACTION_ID [--index N]",
        summary: "print the download link of a command's result",
        usage: &["link ACTION_ID [--index N] [--reveal]"],
        args: ACTION_ID,
        subcommands: &[],
        description: "\
The link is an Azure Blob Storage URL valid for 30 minutes; asking again gives a
fresh one and runs nothing again. Its signature grants read access to the result, so
it is shown redacted unless you pass --reveal.",
        examples: &[
            "mdlr link 988cc94e-7a8f-4b28-ab65-54970c5d5018",
            "curl -o out.gz \"$(mdlr link 988cc94e-7a8f-4b28-ab65-54970c5d5018 --index 1 --reveal)\"",
        ],
    },
    CommandSpec {
        name: "result",
        synopsis: "result ACTION_ID [--index N | --all] [-o PATH] [--raw] [--force] [--wait]",
        summary: "fetch a result: a script's output, or a collected file",
        usage: &["result ACTION_ID [--index N | --all] [-o PATH] [--raw] [--force] [--wait]"],
        args: ACTION_ID,
        subcommands: &[],
        description: "\
RunScript: the script's output goes to stdout, its errors to stderr, and mdlr exits
with the script's exit code (1 when it is outside 0-255). With --json: one object
with script_name, exit_code, script_output and script_errors, and exit status 0.
With -o or --raw: the transcript as the service stored it, to a file or stdout.

GetFile: the file is streamed to disk and un-gzipped on the way (--raw keeps the
.gz), under its original name in the current directory or in -o. It is written to a
temporary name and renamed only when complete; an existing file is kept unless
--force.

PutFile: has no result; mdlr says so.",
        examples: &[
            "mdlr result 988cc94e-7a8f-4b28-ab65-54970c5d5018",
            "mdlr result 988cc94e-7a8f-4b28-ab65-54970c5d5018 --index 1 -o evidence/",
            "mdlr result 988cc94e-7a8f-4b28-ab65-54970c5d5018 --all --wait -o evidence/",
        ],
    },
    CommandSpec {
        name: "action",
        synopsis: "action ACTION_ID [--wait]",
        summary: "show a machine action and its commands",
        usage: &["action ACTION_ID [--wait] [--wait-timeout DUR] [--poll-interval DUR]"],
        args: ACTION_ID,
        subcommands: &[],
        description: "\
With --wait, mdlr looks again until the action has ended, and exits with 0 when it
Succeeded, 69 when it Failed or was Cancelled, 75 when it timed out or the wait did.",
        examples: &[
            "mdlr action 988cc94e-7a8f-4b28-ab65-54970c5d5018",
            "mdlr --json action 988cc94e-7a8f-4b28-ab65-54970c5d5018 --wait",
        ],
    },
    CommandSpec {
        name: "fetch",
        synopsis: "fetch URL [-o PATH] [--raw] [--force]",
        summary: "download a result link, with no sign-in at all",
        usage: &["fetch URL [-o PATH] [--raw] [--force]"],
        args: &[text("URL")],
        subcommands: &[],
        description: "\
URL is a result link (an Azure Blob Storage SAS URL) from the portal, from another tool
or from `mdlr link --reveal`; `-` reads it from stdin, which keeps it out of the
process list and the shell's history. It is downloaded as `mdlr result` would: streamed,
checked, un-gzipped when the host names it .gz (--raw keeps it as sent), under its
original name in the current directory or in -o. No API call is made and no token is
read or sent. A dropped connection resumes where it stopped, and a rerun continues from
what an interrupted run left; an expired link cannot be renewed without the API, so
get a fresh one (`mdlr link ACTION_ID --index N --reveal`) and run again.",
        examples: &[
            "mdlr fetch \"https://x.blob.core.windows.net/c/b?se=...&sig=...\" -o evidence/",
            "mdlr link 988cc94e-7a8f-4b28-ab65-54970c5d5018 --index 1 --reveal | mdlr fetch -",
        ],
    },
    CommandSpec {
        name: "run",
        synopsis: "run MACHINE... --script NAME [--args TEXT] [--put NAME]... [--get PATH]...",
        summary: "run a library script on machines, wait, and deliver",
        usage: &[
            "run MACHINE... --script NAME [--args TEXT] [--put NAME]... [--get PATH]...
[--comment TEXT] [--no-wait] [BATCH OPTIONS]",
        ],
        args: &[text("MACHINE...")],
        subcommands: &[],
        description: "\
MACHINE is a machine id (40 hex characters) or a computer DNS name. The commands go in
the order the service requires: every --put (PutFile), the script, every --get
(GetFile). On one machine without -o, the transcript is delivered as `mdlr result`
does: the script's output on stdout, its errors on stderr, its exit code as mdlr's.
On several machines, each machine's output follows a `== NAME` header; with -o DIR
every result is saved under DIR/NAME/ and each machine reports one line.",
        examples: &[
            "mdlr run host1.contoso.com --script triage.ps1 --args '-Days 3'",
            "mdlr run host1.contoso.com host2.contoso.com --script triage.ps1",
            "mdlr run --machines-file hosts.txt --script collect.ps1 --get 'C:\\Temp\\out.zip' -o evidence/",
            "mdlr run --machines-file hosts.txt --script collect.ps1 -o evidence/ --resume",
        ],
    },
    CommandSpec {
        name: "getfile",
        synopsis: "getfile MACHINE... PATH",
        summary: "collect a file from one machine or many",
        usage: &["getfile MACHINE... PATH [-o DIR] [--raw] [--force] [BATCH OPTIONS]"],
        args: &[text("MACHINE..."), text("PATH")],
        subcommands: &[],
        description: "\
The file is streamed to disk and un-gzipped on the way (--raw keeps the .gz). On one
machine it goes in the current directory or -o; on several, under DIR/NAME/.",
        examples: &[
            "mdlr getfile host1.contoso.com 'C:\\Windows\\System32\\drivers\\etc\\hosts'",
            "mdlr getfile --machines-file hosts.txt 'C:\\Temp\\triage.zip' -o evidence/",
        ],
    },
    CommandSpec {
        name: "putfile",
        synopsis: "putfile MACHINE... FILE_NAME",
        summary: "copy a library file onto machines",
        usage: &["putfile MACHINE... FILE_NAME [BATCH OPTIONS]"],
        args: &[text("MACHINE..."), text("FILE_NAME")],
        subcommands: &[],
        description: "\
FILE_NAME is the name of a file in the live response library (`mdlr library list`).
PutFile delivers files up to 300 MB to Windows and 10 MB to macOS and Linux; mdlr
cannot check this first, as the library does not say how large its files are.",
        examples: &["mdlr putfile host1.contoso.com collect.ps1"],
    },
    CommandSpec {
        name: "package",
        synopsis: "package MACHINE...",
        summary: "collect investigation packages",
        usage: &["package MACHINE... [-o DIR] [--comment TEXT] [BATCH OPTIONS]"],
        args: &[text("MACHINE...")],
        subcommands: &[],
        description: "\
Collects each machine's investigation package (a zip of its forensic state: processes,
services, autoruns, event logs, network connections and more), waits for it, and
downloads it, as served. Without -o one machine's package goes in the current
directory; with -o DIR, under DIR/NAME/ with the journal and the evidence manifest. A
collection already running on a machine is waited for like a busy
session (--on-busy). The download link has a quota of its own, 2 a minute and 120 an
hour (--package-quota): it is asked for only once a collection has succeeded, and
across all machines no faster than that. Needs the Machine.CollectForensics
permission.",
        examples: &[
            "mdlr package host1.contoso.com --comment 'case 4711'",
            "mdlr package --machines-file hosts.txt -o evidence/ --report evidence/report.csv",
        ],
    },
    CommandSpec {
        name: "verify",
        synopsis: "verify DIR",
        summary: "check an output directory against its manifest",
        usage: &["verify DIR"],
        args: &[Value {
            name: "DIR",
            kind: Kind::Dir,
        }],
        subcommands: &[],
        description: "\
Every command that saves results under -o DIR lists each file it delivered in
DIR/manifest.jsonl, with its SHA-256 (and that of the bytes as the service sent them),
its size, the machine, action and command it came from, and when. verify re-hashes
every listed file and names each one missing, changed or not listed; it exits 0 only
when all match, 65 otherwise. With --json, one record per file. The manifest shows
the files are the ones delivered; it is not a signature: whoever can write DIR can
rewrite it too (keep a copy of its SHA-256 elsewhere).",
        examples: &["mdlr verify evidence/", "mdlr --json verify evidence/"],
    },
    CommandSpec {
        name: "cancel",
        synopsis: "cancel ACTION_ID [--comment T]",
        summary: "cancel a machine action",
        usage: &["cancel ACTION_ID [--comment TEXT]"],
        args: ACTION_ID,
        subcommands: &[],
        description: "",
        examples: &["mdlr cancel 988cc94e-7a8f-4b28-ab65-54970c5d5018 --comment 'wrong machine'"],
    },
    CommandSpec {
        name: "actions",
        synopsis: "actions [--machine M] [--status S] [--top N]",
        summary: "list machine actions, newest first",
        usage: &["actions [--machine MACHINE] [--status STATUS] [--top N]"],
        args: &[],
        subcommands: &[],
        description: "\
Actions come newest first, as the service sends them. With --json, one action per
line.",
        examples: &["mdlr actions --machine host1.contoso.com --status InProgress"],
    },
    CommandSpec {
        name: "machines",
        synopsis: "machines [--name NAME] [--top N]",
        summary: "list machines, or look one up by DNS name",
        usage: &["machines [--name NAME] [--top N]"],
        args: &[],
        subcommands: &[],
        description: "",
        examples: &["mdlr machines --name host1.contoso.com"],
    },
    CommandSpec {
        name: "library",
        synopsis: "library list | upload PATH | delete NAME",
        summary: "the live response library",
        usage: &[
            "library list",
            "library upload PATH [--name NAME] [--description TEXT]
[--parameters-description TEXT] [--override]",
            "library delete NAME",
        ],
        args: &[],
        subcommands: &[
            SubSpec {
                name: "list",
                summary: "list the library's files",
                args: &[],
            },
            SubSpec {
                name: "upload",
                summary: "add a script or file to the library",
                args: &[Value {
                    name: "PATH",
                    kind: Kind::File,
                }],
            },
            SubSpec {
                name: "delete",
                summary: "remove a file from the library",
                args: &[text("NAME")],
            },
        ],
        description: "\
Needs the Library.Manage permission. upload refuses, before anything is sent, a file
over 20 MB (the API's limit; the Defender portal takes up to 250 MB) and a name with
characters other than letters, digits, '-', '_' and '.', suggesting one that would do
(--name gives it).",
        examples: &[
            "mdlr library upload ./triage.ps1 --description 'Collect triage data'",
            "mdlr library delete triage.ps1",
        ],
    },
    CommandSpec {
        name: "login",
        synopsis: "login [--tenant TENANT]",
        summary: "sign in as a person, with a device code",
        usage: &["login [--tenant TENANT] [--client-id ID]"],
        args: &[],
        subcommands: &[],
        description: "\
mdlr shows a code to enter at a web page and waits while you sign in there. The
tokens are kept in a file only you can read, in your config directory
($XDG_CONFIG_HOME/mdlr/login.json, or ~/.config/mdlr/login.json), and later runs
use them (--auth auto or device-code) until `mdlr logout`.",
        examples: &["mdlr login --tenant contoso.onmicrosoft.com"],
    },
    CommandSpec {
        name: "logout",
        synopsis: "logout",
        summary: "forget the sign-in kept by `mdlr login`",
        usage: &["logout"],
        args: &[],
        subcommands: &[],
        description: "\
Removes the file `mdlr login` keeps its tokens in ($XDG_CONFIG_HOME/mdlr/login.json,
or ~/.config/mdlr/login.json).",
        examples: &["mdlr logout"],
    },
    CommandSpec {
        name: "auth",
        synopsis: "auth",
        summary: "say which sign-in is used and what it grants",
        usage: &["auth"],
        args: &[],
        subcommands: &[],
        description: "\
Signs in as any other command would, and says which method was used and what the
token grants: tenant, application, roles or scopes, and when it expires. The token
itself is never shown.",
        examples: &["mdlr auth", "mdlr --auth azure-cli auth"],
    },
    CommandSpec {
        name: "completions",
        synopsis: "completions SHELL",
        summary: "print the completion script for bash, zsh or fish",
        usage: &["completions SHELL"],
        args: &[Value {
            name: "SHELL",
            kind: Kind::OneOf(SHELLS),
        }],
        subcommands: &[],
        description: "\
SHELL is bash, zsh or fish. The script completes commands, options, and the values
mdlr knows: clouds, sign-in methods, --on-busy modes, action states and local files.",
        examples: &[
            "mdlr completions bash > ~/.local/share/bash-completion/completions/mdlr",
            "mdlr completions zsh > ~/.zfunc/_mdlr    # with fpath=(~/.zfunc $fpath) before compinit",
            "mdlr completions fish > ~/.config/fish/completions/mdlr.fish",
        ],
    },
    CommandSpec {
        name: "man",
        synopsis: "man",
        summary: "print the manual page, mdlr(1), in roff",
        usage: &["man"],
        args: &[],
        subcommands: &[],
        description: "\
The page holds every command and option, the environment variables, exit statuses,
files and examples, from the same table as this help. The .deb and the tarball of a
release install it; with the bare binary, read it with `mdlr man | man -l -`.",
        examples: &[
            "mdlr man | man -l -",
            "mdlr man > ~/.local/share/man/man1/mdlr.1",
        ],
    },
    CommandSpec {
        name: "help",
        synopsis: "help [COMMAND]",
        summary: "show this help, or a command's",
        usage: &["help [COMMAND]"],
        args: &[Value {
            name: "COMMAND",
            kind: Kind::Command,
        }],
        subcommands: &[],
        description: "",
        examples: &["mdlr help result"],
    },
];

const RESULT: Scope = Scope::Only(&["result"]);
/// Options of the commands that save a result: `result` and `fetch`.
const SAVES: Scope = Scope::Only(&["result", "fetch"]);
const WAITING: Scope = Scope::Only(&["result", "action"]);

/// Every option. Global ones in the order `mdlr help` lists them; a command's in the
/// order its help lists them.
pub const OPTIONS: &[OptionSpec] = &[
    // Global.
    valued(
        "--cloud",
        "NAME",
        Kind::Cloud,
        "the cloud: {values}",
        Scope::Global,
        |r, v| set(&mut r.global.cloud, v),
    )
    .env(&["MDLR_CLOUD"])
    .default("commercial"),
    valued(
        "--api-url",
        "URL",
        Kind::Text,
        "API base, with or without /api",
        Scope::Global,
        |r, v| set(&mut r.global.api_url, v),
    )
    .env(&["MDLR_API_URL"]),
    valued(
        "--login-url",
        "URL",
        Kind::Text,
        "token authority",
        Scope::Global,
        |r, v| set(&mut r.global.login_url, v),
    )
    .env(&["AZURE_AUTHORITY_HOST"]),
    valued(
        "--scope",
        "SCOPE",
        Kind::Text,
        "token scope",
        Scope::Global,
        |r, v| set(&mut r.global.scope, v),
    )
    .env(&["MDLR_SCOPE"]),
    valued(
        "--auth",
        "METHOD",
        Kind::OneOf(AUTH_METHODS),
        "how to sign in: {values}; see Sign-in below",
        Scope::Global,
        |r, v| set(&mut r.global.auth, v),
    )
    .env(&["MDLR_AUTH"])
    .default("auto"),
    valued(
        "--token-file",
        "PATH",
        Kind::File,
        "use the bearer token in this file (MDLR_TOKEN: the token itself)",
        Scope::Global,
        |r, v| set_path(&mut r.global.token_file, v),
    ),
    flag(
        "--json",
        "machine-readable output on stdout",
        Scope::Global,
        |r| r.global.json = true,
    ),
    flag("--quiet", "say less on stderr", Scope::Global, |r| {
        r.global.quiet = true
    })
    .short("-q"),
    flag(
        "--verbose",
        "log each HTTP exchange on stderr (secrets redacted); -vv also the endpoints \
         and the sign-in method",
        Scope::Global,
        |r| r.global.verbose = r.global.verbose.saturating_add(1),
    )
    .short("-v"),
    flag(
        "--progress",
        "show the download progress bar even when stderr is not a terminal (it is shown \
         on a terminal, never with -q)",
        Scope::Global,
        |r| r.global.progress = true,
    ),
    valued(
        "--timeout",
        DUR,
        Kind::Text,
        "longest wait to connect or for any read; a stalled transfer resumes after it",
        Scope::Global,
        |r, v| {
            let t = duration("--timeout", v)?;
            if t.is_zero() {
                return Err("--timeout must be above zero".to_owned());
            }
            r.global.timeout = Some(t);
            Ok(())
        },
    )
    .default("30s to connect, 60s per read"),
    valued(
        "--retries",
        "N",
        Kind::Text,
        "retries of a failed request; a transfer may reconnect twice as often without \
         progress",
        Scope::Global,
        |r, v| number("--retries", v).map(|n| r.global.retries = Some(n)),
    )
    .default("4"),
    valued(
        "--api-quota",
        "SPEC",
        Kind::Text,
        "client-side API quota",
        Scope::Global,
        |r, v| quota("--api-quota", v).map(|q| r.global.api_quota = Some(q)),
    )
    .default("100/1m,1500/1h"),
    valued(
        "--start-quota",
        "SPEC",
        Kind::Text,
        "client-side quota on session starts",
        Scope::Global,
        |r, v| quota("--start-quota", v).map(|q| r.global.start_quota = Some(q)),
    )
    .default("10/1m"),
    valued(
        "--package-quota",
        "SPEC",
        Kind::Text,
        "client-side quota on investigation package links",
        Scope::Global,
        |r, v| quota("--package-quota", v).map(|q| r.global.package_quota = Some(q)),
    )
    .default("2/1m,120/1h"),
    flag(
        "--no-shared-quotas",
        "keep to the quotas alone, not together with this user's other mdlr processes \
         on this host that use the same app on the same tenant",
        Scope::Global,
        |r| r.global.no_shared_quotas = true,
    ),
    valued(
        "--proxy",
        "URL",
        Kind::Text,
        "send requests through this proxy; NO_PROXY lists hosts to reach directly (a \
         domain also matches its subdomains)",
        Scope::Global,
        |r, v| set(&mut r.global.proxy, v),
    )
    .env(&["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"]),
    flag(
        "--no-proxy",
        "ignore the proxy variables and connect directly",
        Scope::Global,
        |r| r.global.no_proxy = true,
    ),
    valued(
        "--ca-cert",
        "PATH",
        Kind::File,
        "PEM CA certificates to trust on top of the bundled roots (e.g. for TLS \
         inspection)",
        Scope::Global,
        |r, v| set_path(&mut r.global.ca_cert, v),
    )
    .env(&["SSL_CERT_FILE"]),
    flag("--help", "show help", Scope::Global, |r| r.help = true).short("-h"),
    flag("--version", "show the version", Scope::Global, |r| {
        r.version = true
    })
    .short("-V"),
    // link, result, action.
    valued(
        "--index",
        "N",
        Kind::Text,
        "the command's index in the action",
        Scope::Only(&["link", "result"]),
        |r, v| {
            let i = v
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("--index takes a command index (0, 1, 2, ...), not {v:?}"))?;
            r.index = Some(i);
            Ok(())
        },
    )
    .default("0"),
    flag(
        "--reveal",
        "print the usable link, signature included",
        Scope::Only(&["link"]),
        |r| r.reveal = true,
    ),
    flag(
        "--all",
        "every command of the action, in order",
        RESULT,
        |r| r.all = true,
    ),
    valued(
        "--output",
        "PATH",
        Kind::File,
        "a file, or a directory to put the file in",
        SAVES,
        |r, v| set_path(&mut r.output, v),
    )
    .short("-o"),
    flag(
        "--raw",
        "keep the bytes as stored (GetFile: the .gz)",
        SAVES,
        |r| r.raw = true,
    ),
    valued(
        "--connections",
        "N",
        Kind::Text,
        "connections fetching pieces of the result at once (1-16)",
        SAVES,
        connections,
    )
    .default("4 for results of 64 MiB and more, else 1"),
    valued(
        "--report",
        "FILE",
        Kind::File,
        "also write a CSV report: a row per command (status, exit code, file, SHA-256, \
         error)",
        RESULT,
        |r, v| set_path(&mut r.report, v),
    ),
    flag("--force", "overwrite an existing file", SAVES, |r| {
        r.force = true
    }),
    flag(
        "--wait",
        "wait for the command to finish first",
        RESULT,
        |r| r.wait = true,
    ),
    flag(
        "--wait",
        "wait for the action to end",
        Scope::Only(&["action"]),
        |r| r.wait = true,
    ),
    valued(
        "--wait-timeout",
        DUR,
        Kind::Text,
        "how long --wait waits",
        WAITING,
        |r, v| duration("--wait-timeout", v).map(|d| r.wait_timeout = Some(d)),
    )
    .default("15m"),
    valued(
        "--poll-interval",
        DUR,
        Kind::Text,
        "longest interval between looks when waiting (the first after a fifth of it)",
        WAITING,
        |r, v| duration("--poll-interval", v).map(|d| r.poll_interval = Some(d)),
    )
    .default("5s"),
    // run, getfile, putfile.
    valued(
        "--script",
        "NAME",
        Kind::Text,
        "the library script to run (RunScript)",
        Scope::Only(&["run"]),
        |r, v| set(&mut r.script, v),
    ),
    valued(
        "--args",
        "TEXT",
        Kind::Text,
        "its arguments",
        Scope::Only(&["run"]),
        |r, v| set(&mut r.script_args, v),
    ),
    valued(
        "--put",
        "NAME",
        Kind::Text,
        "copy a library file onto the machine first",
        LIVE_COMMANDS,
        |r, v| {
            r.puts.push(v.to_owned());
            Ok(())
        },
    )
    .repeat(),
    valued(
        "--get",
        "PATH",
        Kind::Text,
        "collect a file from the machine, after the script",
        LIVE_COMMANDS,
        |r, v| {
            r.gets.push(v.to_owned());
            Ok(())
        },
    )
    .repeat(),
    valued(
        "--machines-file",
        "FILE",
        Kind::File,
        "more machines, one per line (# starts a comment)",
        Scope::Batch,
        |r, v| set_path(&mut r.machines_file, v),
    ),
    valued(
        "--output",
        "DIR",
        Kind::Dir,
        "save results under DIR/NAME/ (and keep a journal there)",
        Scope::Batch,
        |r, v| set_path(&mut r.output, v),
    )
    .short("-o"),
    flag(
        "--resume",
        "continue an interrupted batch from DIR's journal: nothing starts twice, nothing \
         downloads twice",
        Scope::Batch,
        |r| r.resume = true,
    ),
    valued(
        "--on-busy",
        "MODE",
        Kind::OneOf(ON_BUSY),
        "a machine with a session already: wait for it to end, skip it, or fail it",
        Scope::Batch,
        |r, v| {
            r.on_busy = Some(match v {
                "wait" => mdlr::OnBusy::Wait,
                "skip" => mdlr::OnBusy::Skip,
                "fail" => mdlr::OnBusy::Fail,
                other => return Err(format!("--on-busy takes wait, skip or fail, not {other:?}")),
            });
            Ok(())
        },
    )
    .default("wait"),
    valued(
        "--max-in-flight",
        "N",
        Kind::Text,
        "most unfinished actions at once",
        Scope::Batch,
        |r, v| {
            let n = number("--max-in-flight", v)?;
            if n == 0 {
                return Err("--max-in-flight must be at least 1".to_owned());
            }
            r.max_in_flight = Some(n);
            Ok(())
        },
    )
    .default("50"),
    valued(
        "--wait-timeout",
        DUR,
        Kind::Text,
        "how long to wait for each action once it runs; given, it counts from the start, \
         queued or not",
        Scope::Batch,
        |r, v| duration("--wait-timeout", v).map(|d| r.wait_timeout = Some(d)),
    )
    .default("15m, after up to 2h queued for an offline machine"),
    valued(
        "--offline-after",
        DUR,
        Kind::Text,
        "say a machine is probably offline (last seen, health) when its action is still \
         Pending after DUR",
        Scope::Batch,
        |r, v| duration("--offline-after", v).map(|d| r.offline_after = Some(d)),
    )
    .default("1m"),
    valued(
        "--poll-interval",
        DUR,
        Kind::Text,
        "longest interval between looks; the first after a fifth of it, then as often as the quotas allow",
        Scope::Batch,
        |r, v| duration("--poll-interval", v).map(|d| r.poll_interval = Some(d)),
    )
    .default("5s"),
    flag(
        "--wait",
        "wait for the actions to end and deliver their results (the default)",
        Scope::Batch,
        |r| r.wait = true,
    ),
    flag(
        "--no-wait",
        "start and print the action ids; do not wait",
        Scope::Batch,
        |r| r.no_wait = true,
    ),
    valued(
        "--report",
        "FILE",
        Kind::File,
        "also write a CSV report: a row per machine and command (status, exit code, \
         file, SHA-256, error)",
        Scope::Batch,
        |r, v| set_path(&mut r.report, v),
    ),
    valued(
        "--comment",
        "TEXT",
        Kind::Text,
        "why, for the action center",
        Scope::Batch,
        |r, v| set(&mut r.comment, v),
    )
    .default("`mdlr run NAME` and the like"),
    flag(
        "--raw",
        "keep GetFile results gzipped",
        LIVE_COMMANDS,
        |r| r.raw = true,
    ),
    valued(
        "--connections",
        "N",
        Kind::Text,
        "connections fetching pieces of each GetFile result or package at once (1-16)",
        Scope::Batch,
        connections,
    )
    .default("4 for results of 64 MiB and more, else 1"),
    flag("--force", "overwrite existing files", Scope::Batch, |r| {
        r.force = true
    }),
    // The other commands.
    valued(
        "--comment",
        "TEXT",
        Kind::Text,
        "why, for the action center",
        Scope::Only(&["cancel"]),
        |r, v| set(&mut r.comment, v),
    )
    .default("\"Cancelled with mdlr\""),
    flag(
        "--csv",
        "CSV on stdout instead of a table (RFC 4180, formulas neutralised)",
        Scope::Only(&["actions", "machines"]),
        |r| r.csv = true,
    ),
    valued(
        "--machine",
        "MACHINE",
        Kind::Text,
        "only this machine's actions (id or DNS name)",
        Scope::Only(&["actions"]),
        |r, v| set(&mut r.machine, v),
    ),
    valued(
        "--status",
        "STATUS",
        Kind::OneOf(STATUSES),
        "only actions in this state: {values}",
        Scope::Only(&["actions"]),
        |r, v| set(&mut r.status, v),
    ),
    valued(
        "--top",
        "N",
        Kind::Text,
        "most actions to list",
        Scope::Only(&["actions"]),
        |r, v| number("--top", v).map(|n| r.top = Some(n)),
    )
    .default("100"),
    valued(
        "--name",
        "NAME",
        Kind::Text,
        "the machine's DNS name",
        Scope::Only(&["machines"]),
        |r, v| set(&mut r.name, v),
    ),
    valued(
        "--top",
        "N",
        Kind::Text,
        "most machines to list",
        Scope::Only(&["machines"]),
        |r, v| number("--top", v).map(|n| r.top = Some(n)),
    )
    .default("1000"),
    valued(
        "--name",
        "NAME",
        Kind::Text,
        "upload: its name in the library",
        Scope::Only(&["library"]),
        |r, v| set(&mut r.name, v),
    )
    .default("the file's name"),
    valued(
        "--description",
        "TEXT",
        Kind::Text,
        "upload: what it does",
        Scope::Only(&["library"]),
        |r, v| set(&mut r.description, v),
    ),
    valued(
        "--parameters-description",
        "TEXT",
        Kind::Text,
        "upload: the parameters a script takes",
        Scope::Only(&["library"]),
        |r, v| set(&mut r.parameters_description, v),
    ),
    flag(
        "--override",
        "upload: replace a file of the same name",
        Scope::Only(&["library"]),
        |r| r.override_existing = true,
    ),
    valued(
        "--tenant",
        "TENANT",
        Kind::Text,
        "the tenant to sign in to (name or id)",
        Scope::Only(&["login"]),
        |r, v| set(&mut r.tenant, v),
    )
    .env(&["AZURE_TENANT_ID"]),
    valued(
        "--client-id",
        "ID",
        Kind::Text,
        "the application (client) id to sign in with",
        Scope::Only(&["login"]),
        |r, v| set(&mut r.client_id, v),
    )
    .env(&["AZURE_CLIENT_ID"]),
];

/// Free-text sections of `mdlr help`, after the options.
const SIGN_IN: &str = "\
Sign-in (--auth METHOD, or MDLR_AUTH; auto, the default, takes the first of these
that is set up; managed-identity only when asked for):";

const SIGN_IN_AFTER: &str = "Secrets are never read from the command line.";

const NETWORK: &str = "\
Network: requests go through --proxy, else HTTPS_PROXY (for https://; HTTP_PROXY for
http://), else ALL_PROXY, as curl does; NO_PROXY lists hosts to reach directly, and
--no-proxy ignores them all.
--ca-cert (or SSL_CERT_FILE) adds PEM CA certificates to the bundled roots, e.g. for
a proxy that inspects TLS. Plain http:// is refused except to loopback.";

const EXIT_STATUS: &str = "\
Exit status: 0 success · the script's exit code for a transcript · 64 usage ·
65 malformed reply · 66 not found · 69 unavailable, or action failed/cancelled ·
73 output exists · 74 local I/O · 75 try later · 77 sign-in or permission ·
78 configuration";

/// After the batch options of `run`, `getfile` and `putfile`.
const BATCH_NOTES: &str = "\
Quotas: at most 10 starts a minute, 100 API calls a minute and 1500 an hour, and
--max-in-flight unfinished actions, all at once. The quotas are kept together with
your other mdlr processes on this host that use the same app on the same tenant
(--no-shared-quotas: alone); not with other users or hosts. Exit status: 0 when
every machine succeeded, else the most severe status among them. On a terminal, a
live count per state is shown on stderr. Ctrl-C stops waiting and says how to pick
the actions up.";

const DURATIONS: &str = "DUR is 90s, 10m, 1h, 500ms or plain seconds.";

/// The command named `name`.
pub fn command_spec(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The options of `command` (global ones first); only the global ones for `None`.
pub fn options_for(command: Option<&str>) -> impl Iterator<Item = &'static OptionSpec> {
    OPTIONS.iter().filter(move |o| match command {
        Some(c) => o.scope.includes(c),
        None => o.scope == Scope::Global,
    })
}

// ---------------------------------------------------------------------------------------
// Help, rendered from the table.

/// The width help text is wrapped to.
const WIDTH: usize = 88;

/// The help text of `command`, or the general help.
pub fn help_for(command: Option<&str>) -> &'static str {
    static PAGES: LazyLock<Vec<String>> =
        LazyLock::new(|| COMMANDS.iter().map(render_command).collect());
    static TOP: LazyLock<String> = LazyLock::new(render_top);
    match command.and_then(|c| COMMANDS.iter().position(|s| s.name == c)) {
        Some(i) if COMMANDS[i].name != "help" => &PAGES[i],
        _ => &TOP,
    }
}

/// The batch options' help, shown after the help of `run`, `getfile` and `putfile`.
pub fn help_batch(command: Option<&str>) -> Option<&'static str> {
    static BATCH: LazyLock<String> = LazyLock::new(render_batch);
    command
        .is_some_and(|c| BATCH_COMMANDS.contains(&c))
        .then(|| BATCH.as_str())
}

fn render_top() -> String {
    let mut out = String::from(
        "mdlr — Microsoft Defender for Endpoint live response from the command line\n\n\
         Usage: mdlr [OPTIONS] <COMMAND> [ARGS]\n\nCommands:\n",
    );
    let rows: Vec<(String, String)> = COMMANDS
        .iter()
        .map(|c| (c.synopsis.to_owned(), c.summary.to_owned()))
        .collect();
    render_rows(&mut out, &rows, 34);
    out.push_str("\nOptions (anywhere on the line):\n");
    render_options(&mut out, options_for(None));
    out.push('\n');
    out.push_str(SIGN_IN);
    out.push('\n');
    let methods: Vec<(String, String)> = AUTH_METHODS
        .iter()
        .filter(|m| m.name != "auto")
        .map(|m| (m.name.to_owned(), m.help.to_owned()))
        .collect();
    render_rows(&mut out, &methods, 22);
    out.push_str(SIGN_IN_AFTER);
    out.push_str("\n\n");
    out.push_str(NETWORK);
    out.push_str("\n\n");
    out.push_str(EXIT_STATUS);
    out.push_str("\n\nRun `mdlr help COMMAND` for a command's options and examples.\n");
    out
}

fn render_command(c: &CommandSpec) -> String {
    let mut out = format!("mdlr {} — {}\n\n", c.name, c.summary);
    let indent = " ".repeat("Usage: mdlr ".len() + c.name.len() + 1);
    for (i, usage) in c.usage.iter().enumerate() {
        out.push_str(if i == 0 {
            "Usage: mdlr "
        } else {
            "       mdlr "
        });
        out.push_str(&usage.replace('\n', &format!("\n{indent}")));
        out.push('\n');
    }
    if !c.description.is_empty() {
        out.push('\n');
        out.push_str(c.description);
        out.push('\n');
    }
    let own: Vec<&OptionSpec> = OPTIONS
        .iter()
        .filter(|o| matches!(o.scope, Scope::Only(cs) if cs.contains(&c.name)))
        .collect();
    if !own.is_empty() {
        out.push_str("\nOptions:\n");
        render_options(&mut out, own.iter().copied());
    }
    if !c.examples.is_empty() {
        out.push_str(if c.examples.len() == 1 {
            "\nExample:\n"
        } else {
            "\nExamples:\n"
        });
        for e in c.examples {
            out.push_str("  ");
            out.push_str(e);
            out.push('\n');
        }
    }
    out
}

fn render_batch() -> String {
    let mut out = format!("Batch options ({}):\n", BATCH_COMMANDS.join(", "));
    render_options(&mut out, OPTIONS.iter().filter(|o| o.scope == Scope::Batch));
    out.push('\n');
    out.push_str(BATCH_NOTES);
    out.push('\n');
    out
}

/// Options as `  -o, --output PATH   help (default X) [env: Y]`, then the note on
/// durations when one takes a `DUR`.
fn render_options<'a>(out: &mut String, options: impl Iterator<Item = &'a OptionSpec>) {
    let options: Vec<&OptionSpec> = options.collect();
    let rows: Vec<(String, String)> = options
        .iter()
        .map(|o| {
            let names = match o.short {
                "" => format!("    {}", o.long),
                short => format!("{short}, {}", o.long),
            };
            let value = o.value.map(|v| format!(" {}", v.name)).unwrap_or_default();
            (format!("{names}{value}"), option_help(o))
        })
        .collect();
    let column = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 4;
    render_rows(out, &rows, column);
    if options
        .iter()
        .any(|o| o.value.is_some_and(|v| v.name == DUR))
    {
        out.push('\n');
        out.push_str(DURATIONS);
        out.push('\n');
    }
}

/// An option's help as its row shows it: `{values}` filled in, then whether it repeats,
/// its default and environment variables.
pub fn option_help(o: &OptionSpec) -> String {
    let words: Vec<&str> = o
        .value
        .map(|v| v.kind.words().into_iter().map(|(w, _)| w).collect())
        .unwrap_or_default();
    let mut help = o.help.replace("{values}", &words.join(", "));
    if o.repeat {
        help.push_str(" (repeatable)");
    }
    if let Some(default) = o.default {
        help.push_str(&format!(" (default {default})"));
    }
    if !o.env.is_empty() {
        help.push_str(&format!(" [env: {}]", o.env.join(", ")));
    }
    help
}

/// Two columns: `  left` padded to `column`, then `right` wrapped to [`WIDTH`] and
/// indented to `column`; a `left` too long for the column gets a line of its own.
fn render_rows(out: &mut String, rows: &[(String, String)], column: usize) {
    for (left, right) in rows {
        let mut line = format!("  {left}");
        if line.chars().count() + 2 > column {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        // `[env: X]` keeps its first name on the line of `[env:`.
        let mut words: Vec<String> = Vec::new();
        for word in right.split_whitespace() {
            match words.last_mut() {
                Some(last) if last == "[env:" => {
                    last.push(' ');
                    last.push_str(word);
                }
                _ => words.push(word.to_owned()),
            }
        }
        for word in &words {
            let len = line.chars().count();
            if len < column {
                line.push_str(&" ".repeat(column - len));
            } else if len + 1 + word.chars().count() > WIDTH {
                out.push_str(&line);
                out.push('\n');
                line = " ".repeat(column);
            } else {
                line.push(' ');
            }
            line.push_str(word);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

// ---------------------------------------------------------------------------------------
// Parsing: the table above drives it. A word that starts with `-` is looked up in
// OPTIONS (whatever the command, to know whether it takes a value), the first other word
// is the command, and each option's `apply` stores what it says in `Parsed`; then the
// command's own rules (its positional arguments, options that exclude each other) make
// the `Command`.

/// Everything the options of a line said, before the command's rules apply.
#[derive(Debug, Default)]
pub struct Parsed {
    global: Global,
    help: bool,
    version: bool,
    index: Option<u32>,
    reveal: bool,
    all: bool,
    output: Option<PathBuf>,
    raw: bool,
    force: bool,
    wait: bool,
    wait_timeout: Option<Duration>,
    offline_after: Option<Duration>,
    poll_interval: Option<Duration>,
    script: Option<String>,
    script_args: Option<String>,
    puts: Vec<String>,
    gets: Vec<String>,
    machines_file: Option<PathBuf>,
    resume: bool,
    on_busy: Option<mdlr::OnBusy>,
    max_in_flight: Option<usize>,
    no_wait: bool,
    comment: Option<String>,
    machine: Option<String>,
    status: Option<String>,
    top: Option<u32>,
    name: Option<String>,
    description: Option<String>,
    parameters_description: Option<String>,
    override_existing: bool,
    tenant: Option<String>,
    client_id: Option<String>,
    connections: Option<usize>,
    report: Option<PathBuf>,
    csv: bool,
}

fn set(slot: &mut Option<String>, value: &str) -> Result<(), String> {
    *slot = Some(value.to_owned());
    Ok(())
}

fn set_path(slot: &mut Option<PathBuf>, value: &str) -> Result<(), String> {
    *slot = Some(PathBuf::from(value));
    Ok(())
}

fn connections(p: &mut Parsed, value: &str) -> Result<(), String> {
    match number::<usize>("--connections", value)? {
        n @ 1..=16 => {
            p.connections = Some(n);
            Ok(())
        }
        _ => Err(format!("--connections takes 1 to 16, not {value:?}")),
    }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{key} takes a whole number, not {value:?}"))
}

fn duration(key: &str, value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|m| format!("{key}: {m}"))
}

fn quota(key: &str, value: &str) -> Result<Vec<(u32, Duration)>, String> {
    parse_quota(value).map_err(|m| format!("{key}: {m}"))
}

/// One word of the line, sorted: an option or a positional argument.
#[derive(Debug)]
enum Token {
    /// An option as typed (`--index`, `-o`), with its value when it takes one.
    Opt {
        name: String,
        value: Option<String>,
    },
    Positional(String),
}

/// Whether the option named `name` takes a value (the same name takes one for every
/// command, a test holds the table to that); `None` when no command has it.
fn takes_value(name: &str) -> Option<bool> {
    OPTIONS
        .iter()
        .find(|o| o.names().any(|n| n == name))
        .map(|o| o.value.is_some())
}

/// Sorts the line into options (with their values) and positional words. `--` ends
/// the options; `-vv` is `-v -v`; `--name=value` and `-o=value` are the same as two
/// words. A value is the next word whatever it looks like (`--args -Verbose`).
fn words(raw: Vec<OsString>) -> Result<Vec<Token>, Usage> {
    let mut out = Vec::new();
    let mut raw = raw.into_iter();
    let mut only_positional = false;
    while let Some(arg) = raw.next() {
        let arg = arg.into_string().map_err(|a| {
            usage(
                format!("{:?} is not valid UTF-8", a.to_string_lossy()),
                None,
            )
        })?;
        if only_positional || arg == "-" || !arg.starts_with('-') {
            out.push(Token::Positional(arg));
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        if arg.len() > 2 && !arg.starts_with("--") && arg[1..].bytes().all(|b| b == b'v') {
            for _ in 1..arg.len() {
                out.push(Token::Opt {
                    name: "-v".to_owned(),
                    value: None,
                });
            }
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (arg, None),
        };
        let value = match (takes_value(&name), inline) {
            (Some(true), Some(v)) => Some(v),
            (Some(true), None) => match raw.next().map(OsString::into_string) {
                Some(Ok(v)) => Some(v),
                Some(Err(_)) => return Err(usage(format!("{name}: not valid UTF-8"), None)),
                None => return Err(usage(format!("{name} needs a value"), None)),
            },
            (Some(false), Some(_)) => {
                return Err(usage(format!("{name} takes no value"), None));
            }
            (_, _) => None,
        };
        out.push(Token::Opt { name, value });
    }
    Ok(out)
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut last = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let old = row[j + 1];
            row[j + 1] = (old + 1).min(row[j] + 1).min(last + usize::from(ca != *cb));
            last = old;
        }
    }
    row[b.len()]
}

/// `; did you mean X?` for the candidate closest to `typed`, when one is close: a
/// misspelling of at most two characters (one for short words), or a word it begins.
fn suggestion<'a>(typed: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let bare = |s: &str| s.trim_start_matches('-').len();
    let close = candidates
        .filter(|c| bare(c) > 1)
        .map(|c| (distance(typed, c), c))
        .filter(|(d, c)| {
            let limit = if bare(c) <= 3 { 1 } else { 2 };
            *d <= limit || (bare(typed) > 1 && c.starts_with(typed))
        })
        .min();
    match close {
        Some((_, c)) => format!("; did you mean `{c}`?"),
        None => String::new(),
    }
}

/// The usage error for an option the command does not take.
fn unknown_option(name: &str, command: Option<&'static str>) -> Usage {
    let mine: Vec<&str> = options_for(command).flat_map(|o| o.names()).collect();
    let elsewhere: Vec<&str> = COMMANDS
        .iter()
        .filter(|c| {
            OPTIONS
                .iter()
                .any(|o| o.scope.includes(c.name) && o.names().any(|n| n == name))
        })
        .map(|c| c.name)
        .collect();
    let hint = if elsewhere.is_empty() {
        suggestion(name, mine.into_iter())
    } else {
        format!(" (it is an option of {})", elsewhere.join(", "))
    };
    usage(format!("unknown option {name:?}{hint}"), command)
}

/// Parses the command line (without the program name).
pub fn parse(raw: Vec<OsString>) -> Result<Args, Usage> {
    let mut words = words(raw)?;
    let position = words.iter().position(|w| matches!(w, Token::Positional(_)));
    let command = match position.map(|i| words.remove(i)) {
        Some(Token::Positional(name)) => match command_spec(&name) {
            Some(spec) => Some(spec.name),
            None => {
                let hint = suggestion(&name, COMMANDS.iter().map(|c| c.name));
                return Err(usage(format!("unknown command {name:?}{hint}"), None));
            }
        },
        _ => None,
    };
    let mut parsed = Parsed::default();
    let mut positionals = Vec::new();
    let mut unknown = None;
    for word in words {
        match word {
            Token::Positional(p) => positionals.push(p),
            Token::Opt { name, value } => {
                let spec = options_for(command).find(|o| o.names().any(|n| n == name));
                match (spec.map(|o| o.apply), value) {
                    (Some(Apply::Flag(f)), _) => f(&mut parsed),
                    (Some(Apply::Value(f)), Some(v)) => {
                        f(&mut parsed, &v).map_err(|m| usage(m, command))?;
                    }
                    _ => {
                        unknown.get_or_insert(name);
                    }
                }
            }
        }
    }
    // `mdlr result abc --help`: the help, whatever else the line holds.
    if parsed.help || (command.is_none() && !parsed.version && unknown.is_none()) {
        return Ok(Args {
            global: parsed.global,
            command: Command::Help(command.filter(|c| *c != "help").map(str::to_owned)),
        });
    }
    if let Some(name) = unknown {
        return Err(unknown_option(&name, command));
    }
    let Some(command) = command else {
        return Ok(Args {
            global: parsed.global,
            command: Command::Version,
        });
    };
    if parsed.global.no_proxy && parsed.global.proxy.is_some() {
        return Err(usage("--proxy and --no-proxy exclude each other", None));
    }
    let command = build(command, &mut parsed, positionals)?;
    Ok(Args {
        global: parsed.global,
        command,
    })
}

/// The positional arguments of a command, taken in order.
struct Positionals {
    words: std::vec::IntoIter<String>,
    command: &'static str,
}

impl Positionals {
    /// The next one, which the command needs.
    fn needed(&mut self, what: &str) -> Result<String, Usage> {
        self.words
            .next()
            .ok_or_else(|| usage(format!("missing {what}"), Some(self.command)))
    }

    /// The rest must be nothing.
    fn done(mut self) -> Result<(), Usage> {
        match self.words.next() {
            Some(extra) => Err(usage(
                format!("unexpected argument {extra:?}"),
                Some(self.command),
            )),
            None => Ok(()),
        }
    }
}

/// The command `name`, from what its options said and its positional words.
fn build(name: &'static str, p: &mut Parsed, words: Vec<String>) -> Result<Command, Usage> {
    let c = Some(name);
    let mut args = Positionals {
        words: words.into_iter(),
        command: name,
    };
    let wait = Wait {
        enabled: p.wait,
        timeout: p.wait_timeout.unwrap_or(Duration::from_secs(15 * 60)),
        timeout_given: p.wait_timeout.is_some(),
        poll: p.poll_interval.unwrap_or(Duration::from_secs(5)),
        offline_after: p.offline_after.unwrap_or(Duration::from_secs(60)),
    };
    let command = match name {
        "help" => {
            let topic = args.words.next();
            Command::Help(topic)
        }
        "link" => Command::Link {
            action_id: args.needed("ACTION_ID")?,
            index: p.index.unwrap_or(0),
            reveal: p.reveal,
        },
        "result" => Command::Result {
            action_id: args.needed("ACTION_ID")?,
            which: match (p.index, p.all) {
                (Some(_), true) => return Err(usage("--index and --all exclude each other", c)),
                (Some(i), false) => Which::Index(i),
                (None, true) => Which::All,
                (None, false) => Which::Index(0),
            },
            output: p.output.take(),
            raw: p.raw,
            force: p.force,
            wait,
            connections: p.connections,
            report: p.report.take(),
        },
        "action" => Command::Action {
            action_id: args.needed("ACTION_ID")?,
            wait,
        },
        "fetch" => Command::Fetch {
            url: args.needed("URL")?,
            output: p.output.take(),
            raw: p.raw,
            force: p.force,
            connections: p.connections,
        },
        "run" | "getfile" | "putfile" | "package" => {
            let machines: Vec<String> = args.words.by_ref().collect();
            return Ok(Command::Live(live(name, p, machines, wait)?));
        }
        "cancel" => Command::Cancel {
            action_id: args.needed("ACTION_ID")?,
            comment: p
                .comment
                .take()
                .unwrap_or_else(|| "Cancelled with mdlr".to_owned()),
        },
        "actions" => Command::Actions {
            machine: p.machine.take(),
            status: p.status.take(),
            top: p.top.unwrap_or(100),
            csv: p.csv,
        },
        "machines" => Command::Machines {
            name: p.name.take(),
            top: p.top.unwrap_or(1000),
            csv: p.csv,
        },
        "verify" => Command::Verify {
            dir: PathBuf::from(args.needed("DIR")?),
        },
        "library" => match args.words.next().as_deref() {
            Some("list") => Command::LibraryList,
            Some("upload") => Command::LibraryUpload {
                path: PathBuf::from(args.needed("PATH")?),
                name: p.name.take(),
                description: p.description.take().unwrap_or_default(),
                parameters_description: p.parameters_description.take(),
                override_existing: p.override_existing,
            },
            Some("delete") => Command::LibraryDelete {
                name: args.needed("NAME")?,
            },
            Some(other) => {
                let hint = suggestion(other, ["list", "upload", "delete"].into_iter());
                return Err(usage(
                    format!("library takes list, upload or delete, not {other:?}{hint}"),
                    c,
                ));
            }
            None => return Err(usage("library needs list, upload or delete", c)),
        },
        "login" => Command::Login {
            tenant: p.tenant.take(),
            client_id: p.client_id.take(),
        },
        "logout" => Command::Logout,
        "auth" => Command::Auth,
        "completions" => Command::Completions(match args.words.next().as_deref() {
            Some("bash") => Shell::Bash,
            Some("zsh") => Shell::Zsh,
            Some("fish") => Shell::Fish,
            Some(other) => {
                return Err(usage(
                    format!("completions are for bash, zsh or fish, not {other:?}"),
                    c,
                ));
            }
            None => return Err(usage("completions needs a SHELL: bash, zsh or fish", c)),
        }),
        "man" => Command::Man,
        other => return Err(usage(format!("unknown command {other:?}"), None)),
    };
    args.done()?;
    Ok(command)
}

/// `run`, `getfile`, `putfile` and `package`: what they start, where, and how the batch
/// runs.
fn live(
    name: &'static str,
    p: &mut Parsed,
    mut machines: Vec<String>,
    wait: Wait,
) -> Result<Live, Usage> {
    let c = Some(name);
    let mut puts = std::mem::take(&mut p.puts);
    let mut gets = std::mem::take(&mut p.gets);
    let script = match (name, p.script.take()) {
        ("run", Some(s)) => Some((s, p.script_args.take().unwrap_or_default())),
        ("run", None) => return Err(usage("run needs --script NAME", c)),
        (_, _) => None,
    };
    // getfile and putfile take their PATH or FILE_NAME last.
    match name {
        "getfile" => match machines.pop() {
            Some(path) => gets.insert(0, path),
            None => return Err(usage("missing PATH", c)),
        },
        "putfile" => match machines.pop() {
            Some(file) => puts.push(file),
            None => return Err(usage("missing FILE_NAME", c)),
        },
        _ => {}
    }
    if machines.is_empty() && p.machines_file.is_none() {
        return Err(usage("missing MACHINE (or --machines-file FILE)", c));
    }
    if p.resume && p.output.is_none() {
        return Err(usage("--resume needs -o DIR, where the journal is", c));
    }
    if p.no_wait && p.resume {
        return Err(usage("--resume and --no-wait exclude each other", c));
    }
    Ok(Live {
        command: name,
        machines,
        machines_file: p.machines_file.take(),
        puts,
        script,
        gets,
        comment: p.comment.take(),
        no_wait: p.no_wait,
        output: p.output.take(),
        resume: p.resume,
        on_busy: p.on_busy.unwrap_or_default(),
        max_in_flight: p.max_in_flight.unwrap_or(50),
        wait,
        raw: p.raw,
        force: p.force,
        connections: p.connections,
        report: p.report.take(),
    })
}

/// `100/1m,1500/1h`: calls per window, comma-separated.
pub fn parse_quota(text: &str) -> Result<Vec<(u32, Duration)>, String> {
    let mut quotas = Vec::new();
    for part in text.split(',') {
        let (calls, window) = part
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{part:?} is not CALLS/DURATION (100/1m)"))?;
        let calls: u32 = calls
            .trim()
            .parse()
            .map_err(|_| format!("{calls:?} is not a number of calls"))?;
        let window = parse_duration(window)?;
        if calls == 0 || window.is_zero() {
            return Err(format!("{part:?}: calls and duration must be above zero"));
        }
        quotas.push((calls, window));
    }
    Ok(quotas)
}

/// `90s`, `10m`, `1h`, `500ms` or plain (possibly fractional) seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let scale = match unit.to_ascii_lowercase().as_str() {
        "ms" => 0.001,
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{text:?} is not a duration (90s, 10m, 1h, 500ms)")),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (90s, 10m, 1h, 500ms)"))?;
    if !value.is_finite() || value < 0.0 || value * scale > 1e9 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Args, Usage> {
        parse(line.split_whitespace().map(OsString::from).collect())
    }

    #[track_caller]
    fn check(line: &str, expected: Command) -> Global {
        let args = parse_str(line).expect("parses");
        assert_eq!(args.command, expected, "{line}");
        args.global
    }

    #[track_caller]
    fn check_usage(line: &str, fragment: &str) {
        match parse_str(line) {
            Err(u) => assert!(u.message.contains(fragment), "{line}: {}", u.message),
            Ok(a) => panic!("{line}: parsed as {a:?}"),
        }
    }

    fn no_wait() -> Wait {
        Wait {
            enabled: false,
            timeout: Duration::from_secs(900),
            timeout_given: false,
            poll: Duration::from_secs(5),
            offline_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn options_anywhere() {
        let g = check(
            "--json link abc --index 2 -v --cloud eu",
            Command::Link {
                action_id: "abc".into(),
                index: 2,
                reveal: false,
            },
        );
        assert!(g.json);
        assert_eq!(g.verbose, 1);
        assert_eq!(g.cloud.as_deref(), Some("eu"));
        check(
            "--index 1 link abc --reveal",
            Command::Link {
                action_id: "abc".into(),
                index: 1,
                reveal: true,
            },
        );
        assert_eq!(
            check(
                "-vv action x",
                Command::Action {
                    action_id: "x".into(),
                    wait: no_wait()
                }
            )
            .verbose,
            2
        );
    }

    #[test]
    fn result_forms() {
        check(
            "result abc",
            Command::Result {
                action_id: "abc".into(),
                which: Which::Index(0),
                output: None,
                raw: false,
                force: false,
                wait: no_wait(),
                connections: None,
                report: None,
            },
        );
        check(
            "result abc --all -o out --raw --force --wait --wait-timeout 90s --poll-interval=200ms",
            Command::Result {
                action_id: "abc".into(),
                which: Which::All,
                output: Some(PathBuf::from("out")),
                raw: true,
                force: true,
                wait: Wait {
                    enabled: true,
                    timeout: Duration::from_secs(90),
                    timeout_given: true,
                    poll: Duration::from_millis(200),
                    offline_after: Duration::from_secs(60),
                },
                connections: None,
                report: None,
            },
        );
    }

    #[test]
    fn usage_errors() {
        check_usage("result", "missing ACTION_ID");
        check_usage("result a --index -1", "--index takes");
        check_usage("result a --index 99999999999", "--index takes");
        check_usage("result a --index 1 --all", "exclude");
        check_usage("result a b", "unexpected argument");
        check_usage("result a --bogus", "unknown option");
        check_usage("frobnicate", "unknown command");
        check_usage("link a --index", "needs a value");
        check_usage("action a --wait-timeout soon", "not a duration");
        check_usage("--bogus", "unknown option");
    }

    #[test]
    fn help_and_version() {
        check("", Command::Help(None));
        check("--help", Command::Help(None));
        check("help result", Command::Help(Some("result".into())));
        check("result --help", Command::Help(Some("result".into())));
        check("-V", Command::Version);
    }

    #[track_caller]
    fn live(line: &str) -> Live {
        match parse_str(line).map(|a| a.command) {
            Ok(Command::Live(l)) => l,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn live_commands() {
        let l =
            live("run h1 h2 --script x.ps1 --args -v --put a.ps1 --get C:\\a --get C:\\b -o out");
        assert_eq!(l.machines, ["h1", "h2"]);
        assert_eq!(l.script, Some(("x.ps1".into(), "-v".into())));
        assert_eq!(l.puts, ["a.ps1"]);
        assert_eq!(l.gets, ["C:\\a", "C:\\b"]);
        assert_eq!(l.output, Some(PathBuf::from("out")));
        let g = live("getfile h1 h2 C:\\x --on-busy skip --max-in-flight 5");
        assert_eq!(
            (g.machines, g.gets),
            (vec!["h1".into(), "h2".into()], vec!["C:\\x".into()])
        );
        assert_eq!((g.on_busy, g.max_in_flight), (mdlr::OnBusy::Skip, 5));
        let p = live("putfile --machines-file hosts.txt tool.exe");
        assert_eq!((p.machines.len(), p.puts), (0, vec!["tool.exe".to_owned()]));
        check_usage("run h1", "needs --script");
        check_usage("getfile h1 --script x", "it is an option of run");
        check_usage("getfile", "missing PATH");
        check_usage("getfile C:\\x", "missing MACHINE");
        check_usage("run h1 --script x --resume", "needs -o");
        check_usage("run h1 --script x --on-busy later", "wait, skip or fail");
        check_usage("run h1 --script x --bogus", "unknown option");
    }

    #[test]
    fn admin_commands() {
        check(
            "library upload ./t.ps1 --override --description d",
            Command::LibraryUpload {
                path: PathBuf::from("./t.ps1"),
                name: None,
                description: "d".into(),
                parameters_description: None,
                override_existing: true,
            },
        );
        check(
            "library delete t.ps1",
            Command::LibraryDelete {
                name: "t.ps1".into(),
            },
        );
        check_usage("library", "list, upload or delete");
        check(
            "actions --status Pending --top 5",
            Command::Actions {
                machine: None,
                status: Some("Pending".into()),
                top: 5,
                csv: false,
            },
        );
        check(
            "cancel a1",
            Command::Cancel {
                action_id: "a1".into(),
                comment: "Cancelled with mdlr".into(),
            },
        );
    }

    #[test]
    fn quotas() {
        let g = parse_str("--api-quota 100/1m,1500/1h --start-quota 10/600ms actions")
            .expect("parses")
            .global;
        assert_eq!(
            g.api_quota,
            Some(vec![
                (100, Duration::from_secs(60)),
                (1500, Duration::from_secs(3600))
            ])
        );
        assert_eq!(g.start_quota, Some(vec![(10, Duration::from_millis(600))]));
        check_usage("--api-quota 0/1m actions", "above zero");
        let g = parse_str("--timeout 90s --retries 7 actions")
            .expect("parses")
            .global;
        assert_eq!(
            (g.timeout, g.retries),
            (Some(Duration::from_secs(90)), Some(7))
        );
        check_usage("--timeout 0s actions", "above zero");
        check_usage("--retries many actions", "whole number");
        check_usage("--api-quota lots actions", "CALLS/DURATION");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("-3s").is_err());
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn misspellings_get_a_suggestion() {
        check_usage(
            "reslt abc",
            "unknown command \"reslt\"; did you mean `result`?",
        );
        check_usage(
            "result --idx 3 abc",
            "unknown option \"--idx\"; did you mean `--index`?",
        );
        check_usage("result abc --indx=3", "did you mean `--index`?");
        check_usage("--jsn actions", "did you mean `--json`?");
        check_usage("libary list", "did you mean `library`?");
        check_usage("library lst", "did you mean `list`?");
        check_usage("run h --script x --ouput d", "did you mean `--output`?");
        // Nothing close: no guess.
        check_usage("frobnicate", "unknown command \"frobnicate\"");
        assert!(
            parse_str("frobnicate")
                .err()
                .is_some_and(|u| !u.message.contains("did you mean"))
        );
        // An option of another command says whose it is.
        check_usage(
            "link a --all",
            "unknown option \"--all\" (it is an option of result)",
        );
    }

    #[test]
    fn unknown_options_are_named_wherever_they_stand() {
        // Before the positional they precede, not taken for a stray argument.
        check_usage("result --bogus 3 abc", "unknown option \"--bogus\"");
        check_usage("--bogus result abc", "unknown option \"--bogus\"");
        check_usage("link --reveal=yes abc", "--reveal takes no value");
    }

    #[test]
    fn values_are_taken_whatever_they_look_like() {
        let l = live("run h --script s.ps1 --args -v --comment --help");
        assert_eq!(l.script, Some(("s.ps1".into(), "-v".into())));
        assert_eq!(l.comment.as_deref(), Some("--help"));
        assert_eq!(
            live("run h --script=s.ps1 --args=-Days=3").script,
            Some(("s.ps1".into(), "-Days=3".into()))
        );
        let g = parse_str("-vvv actions").expect("parses").global;
        assert_eq!(g.verbose, 3);
        // `--` ends the options: a machine named like an option.
        assert_eq!(live("putfile -- -odd-host f.ps1").machines, ["-odd-host"]);
        check(
            "fetch -",
            Command::Fetch {
                url: "-".into(),
                output: None,
                raw: false,
                force: false,
                connections: None,
            },
        );
        check(
            "fetch https://h/c/b?sig=x -o out --raw --force --connections 4",
            Command::Fetch {
                url: "https://h/c/b?sig=x".into(),
                output: Some(PathBuf::from("out")),
                raw: true,
                force: true,
                connections: Some(4),
            },
        );
        check_usage("fetch u --connections 0", "--connections takes 1 to 16");
        check_usage("fetch u --connections 17", "--connections takes 1 to 16");
        assert_eq!(live("getfile h C:\\x --connections 8").connections, Some(8));
        check_usage("fetch", "missing URL");
        check_usage("fetch u --all", "unknown option \"--all\"");
    }

    #[test]
    fn args_and_comment_only_where_they_belong() {
        check_usage("link a --comment x", "unknown option \"--comment\"");
        check_usage("getfile h C:\\x --args -v", "unknown option \"--args\"");
        check_usage("actions --args=-v", "unknown option \"--args\"");
        assert_eq!(
            live("putfile h f --comment why").comment.as_deref(),
            Some("why")
        );
        check(
            "cancel a --comment x --help",
            Command::Help(Some("cancel".into())),
        );
    }

    // --- The parser and the table agree ---------------------------------------------------

    /// The shortest line that runs `command`, without any option.
    fn minimal(command: &str) -> &'static str {
        match command {
            "link" => "link a",
            "result" => "result a",
            "action" => "action a",
            "fetch" => "fetch https://h/c/b",
            "verify" => "verify out",
            "run" => "run h --script s.ps1",
            "getfile" => "getfile h C:\\x",
            "package" => "package h",
            "putfile" => "putfile h f.ps1",
            "cancel" => "cancel a",
            "actions" => "actions",
            "machines" => "machines",
            "library" => "library upload t.ps1",
            "login" => "login",
            "logout" => "logout",
            "auth" => "auth",
            "completions" => "completions bash",
            "man" => "man",
            "help" => "help",
            other => panic!("no minimal line for {other}: add one to this test"),
        }
    }

    /// `OPTION VALUE` (or `OPTION`) with a value the parser takes, and what else the
    /// option needs on the line.
    fn with_value(o: &OptionSpec) -> String {
        let Some(value) = o.value else {
            return match o.long {
                "--resume" => "--resume -o out".to_owned(),
                long => long.to_owned(),
            };
        };
        let sample = match (value.kind.words().first(), value.name) {
            (Some((word, _)), _) => word.to_string(),
            (None, "DUR") => "90s".to_owned(),
            (None, "N") => "3".to_owned(),
            (None, "SPEC") => "10/1m".to_owned(),
            (None, _) => "x".to_owned(),
        };
        format!("{} {sample}", o.long)
    }

    #[test]
    fn every_option_of_the_table_is_taken_by_the_parser_for_its_commands() {
        for c in COMMANDS {
            let line = minimal(c.name);
            assert!(parse_str(line).is_ok(), "{line}");
            for o in options_for(Some(c.name)) {
                if line.split(' ').any(|w| w == o.long) {
                    continue; // run's --script: the line has it already.
                }
                for name in o.names() {
                    // Before the command and after it: options go anywhere.
                    let option = with_value(o).replacen(o.long, name, 1);
                    for line in [format!("{line} {option}"), format!("{option} {line}")] {
                        if let Err(u) = parse_str(&line) {
                            panic!("{line}: {}", u.message);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_parser_refuses_options_the_table_does_not_give_a_command() {
        for c in COMMANDS.iter().filter(|c| c.name != "help") {
            for o in OPTIONS {
                if options_for(Some(c.name)).any(|mine| mine.long == o.long) {
                    continue;
                }
                let line = format!("{} {}", minimal(c.name), with_value(o));
                check_usage(&line, o.long);
            }
        }
    }

    #[test]
    fn the_closed_lists_are_what_the_parser_and_the_library_take() {
        for w in SHELLS {
            assert!(parse_str(&format!("completions {}", w.name)).is_ok());
        }
        for w in ON_BUSY {
            live(&format!("run h --script s --on-busy {}", w.name));
        }
        for w in STATUSES {
            let status = mdlr::ActionStatus::from(w.name);
            assert!(
                !matches!(status, mdlr::ActionStatus::Other(_)),
                "{}",
                w.name
            );
        }
        for (name, _) in Kind::Cloud.words() {
            assert_eq!(
                name.parse::<mdlr::Cloud>().map(|c| c.name()).ok(),
                Some(name)
            );
        }
        for c in COMMANDS {
            for sub in c.subcommands {
                let line = match sub.args.first() {
                    Some(_) => format!("{} {} x", c.name, sub.name),
                    None => format!("{} {}", c.name, sub.name),
                };
                assert!(parse_str(&line).is_ok(), "{line}");
            }
        }
    }

    #[test]
    fn the_table_is_consistent() {
        let safe =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        for o in OPTIONS {
            assert!(o.long.starts_with("--") && safe(o.long), "{}", o.long);
            assert!(
                o.short.is_empty() || (o.short.len() == 2 && o.short.starts_with('-')),
                "{}",
                o.short
            );
            // The parser stores a value exactly when the table says there is one.
            assert_eq!(
                o.value.is_some(),
                matches!(o.apply, Apply::Value(_)),
                "{}",
                o.long
            );
            // Completion and the parser skip the word after an option that takes a
            // value, whatever the command: the same name must take one everywhere.
            for other in OPTIONS.iter().filter(|p| p.long == o.long) {
                assert_eq!(o.value.is_some(), other.value.is_some(), "{}", o.long);
                assert_eq!(o.short, other.short, "{}", o.long);
            }
            if let Scope::Only(commands) = o.scope {
                for c in commands {
                    assert!(command_spec(c).is_some(), "{}: no command {c}", o.long);
                }
            }
            if let Some(v) = o.value {
                for (word, _) in v.kind.words() {
                    assert!(safe(word), "{word}");
                    // The help says what completion offers.
                    assert!(option_help(o).contains(word), "{}: {word}", o.long);
                }
            }
        }
        for c in COMMANDS {
            assert!(safe(c.name));
            let mut names: Vec<&str> = options_for(Some(c.name)).flat_map(|o| o.names()).collect();
            let all = names.len();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), all, "{}: an option twice", c.name);
            for v in c.args {
                for (word, _) in v.kind.words() {
                    assert!(safe(word), "{word}");
                }
            }
            for s in c.subcommands {
                assert!(safe(s.name));
                assert!(c.usage.iter().any(|u| u.contains(s.name)), "{}", s.name);
            }
        }
    }

    // --- Help, rendered from the table ----------------------------------------------------

    #[test]
    fn help_pages_show_every_command_and_option() {
        let top = help_for(None);
        let batch = help_batch(Some("run")).expect("batch options");
        assert_eq!(help_for(Some("help")), top);
        assert_eq!(help_for(Some("nonsense")), top);
        assert_eq!(help_batch(Some("link")), None);
        for c in COMMANDS {
            assert!(top.contains(&format!("  {}", c.synopsis)), "{}", c.name);
            assert!(top.contains(c.summary), "{}", c.name);
            if c.name == "help" {
                continue;
            }
            let page = help_for(Some(c.name));
            assert!(
                page.starts_with(&format!(
                    "mdlr {} — {}\n\nUsage: mdlr {}",
                    c.name, c.summary, c.name
                )),
                "{page}"
            );
            assert_eq!(
                help_batch(Some(c.name)).is_some(),
                BATCH_COMMANDS.contains(&c.name)
            );
            for e in c.examples {
                assert!(page.contains(e), "{}: {e}", c.name);
            }
            for v in c.args {
                for (word, _) in v.kind.words() {
                    assert!(page.contains(word), "{}: {word}", c.name);
                }
            }
        }
        for o in OPTIONS {
            let shown = match o.scope {
                Scope::Global => top.to_owned(),
                Scope::Batch => batch.to_owned(),
                Scope::Only(commands) => help_for(Some(commands[0])).to_owned(),
            };
            let names = match o.short {
                "" => format!("    {}", o.long),
                short => format!("{short}, {}", o.long),
            };
            assert!(shown.contains(&names), "{names}");
            // Help texts are wrapped: compare word by word.
            let help = option_help(o);
            let words: Vec<&str> = help.split_whitespace().collect();
            let text: Vec<&str> = shown.split_whitespace().collect();
            assert!(
                text.windows(words.len()).any(|w| w == words.as_slice()),
                "{}: {help:?}",
                o.long
            );
        }
    }

    #[test]
    fn help_lines_fit_the_width() {
        let mut pages = vec![help_for(None).to_owned()];
        pages.extend(COMMANDS.iter().map(|c| help_for(Some(c.name)).to_owned()));
        pages.extend(help_batch(Some("run")).map(str::to_owned));
        for page in pages {
            for line in page.lines() {
                // Examples are commands to copy; they are not wrapped.
                if !line.starts_with("  mdlr ") && !line.starts_with("  curl ") {
                    assert!(line.chars().count() <= WIDTH, "too long: {line}");
                }
            }
        }
    }

    #[test]
    fn the_top_help_says_how_to_sign_in_and_reach_the_service() {
        let top = help_for(None);
        let order = [
            "token",
            "client-secret",
            "client-certificate",
            "device-code",
            "azure-cli",
            "managed-identity",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|m| {
                top.find(&format!("\n  {m} "))
                    .unwrap_or_else(|| panic!("{m}"))
            })
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "sign-in order {at:?}");
        for fragment in [
            "--auth METHOD",
            "MDLR_AUTH",
            "MDLR_TOKEN",
            "AZURE_CLIENT_SECRET",
            "AZURE_CLIENT_CERTIFICATE_PATH",
            "mdlr login",
            "az account get-access-token",
            "only when asked for",
            "IMDS",
            "--proxy URL",
            "HTTPS_PROXY",
            "NO_PROXY",
            "subdomains",
            "--no-proxy",
            "--ca-cert PATH",
            "SSL_CERT_FILE",
            "TLS inspection",
            "--progress",
            "-vv",
            "Secrets are never read from the command line.",
        ] {
            assert!(top.contains(fragment), "{fragment}");
        }
        let login = help_for(Some("login"));
        for fragment in [
            "$XDG_CONFIG_HOME/mdlr/login.json",
            "~/.config/mdlr/login.json",
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
        ] {
            assert!(login.contains(fragment), "{fragment}");
        }
        assert!(help_for(Some("auth")).contains("never shown"));
    }
}
