//! Command-line parsing, first stage: raw flags into typed arguments. No I/O here.
//!
//! [`COMMANDS`] and [`OPTIONS`] describe every command and option once: `mdlr help`,
//! `mdlr COMMAND --help` and the shell completions (`completions.rs`) are rendered from
//! them, and the unit tests below hold the parser to them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use pico_args::Arguments;

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
    pub poll: Duration,
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
    },
    Action {
        action_id: String,
        wait: Wait,
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
    },
    Machines {
        name: Option<String>,
        top: u32,
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
pub const BATCH_COMMANDS: &[&str] = &["run", "getfile", "putfile"];

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
#[derive(Debug, Clone, Copy, PartialEq)]
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
    /// Whether it may be given more than once.
    pub repeat: bool,
    pub scope: Scope,
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

const fn flag(long: &'static str, help: &'static str, scope: Scope) -> OptionSpec {
    OptionSpec {
        short: "",
        long,
        value: None,
        help,
        env: &[],
        default: None,
        repeat: false,
        scope,
    }
}

const fn valued(
    long: &'static str,
    name: &'static str,
    kind: Kind,
    help: &'static str,
    scope: Scope,
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
FILE_NAME is the name of a file in the live response library (`mdlr library list`).",
        examples: &["mdlr putfile host1.contoso.com collect.ps1"],
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
        description: "Needs the Library.Manage permission.",
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
    )
    .env(&["MDLR_CLOUD"])
    .default("commercial"),
    valued(
        "--api-url",
        "URL",
        Kind::Text,
        "API base, with or without /api",
        Scope::Global,
    )
    .env(&["MDLR_API_URL"]),
    valued(
        "--login-url",
        "URL",
        Kind::Text,
        "token authority",
        Scope::Global,
    )
    .env(&["AZURE_AUTHORITY_HOST"]),
    valued("--scope", "SCOPE", Kind::Text, "token scope", Scope::Global).env(&["MDLR_SCOPE"]),
    valued(
        "--auth",
        "METHOD",
        Kind::OneOf(AUTH_METHODS),
        "how to sign in: {values}; see Sign-in below",
        Scope::Global,
    )
    .env(&["MDLR_AUTH"])
    .default("auto"),
    valued(
        "--token-file",
        "PATH",
        Kind::File,
        "use the bearer token in this file (MDLR_TOKEN: the token itself)",
        Scope::Global,
    ),
    flag("--json", "machine-readable output on stdout", Scope::Global),
    flag("--quiet", "say less on stderr", Scope::Global).short("-q"),
    flag(
        "--verbose",
        "log each HTTP exchange on stderr (secrets redacted); -vv also the endpoints \
         and the sign-in method",
        Scope::Global,
    )
    .short("-v"),
    flag(
        "--progress",
        "show the download progress bar even when stderr is not a terminal (it is shown \
         on a terminal, never with -q)",
        Scope::Global,
    ),
    valued(
        "--timeout",
        DUR,
        Kind::Text,
        "longest wait to connect or for any read; a stalled transfer resumes after it",
        Scope::Global,
    )
    .default("30s to connect, 60s per read"),
    valued(
        "--retries",
        "N",
        Kind::Text,
        "retries of a failed request; a transfer may reconnect twice as often without \
         progress",
        Scope::Global,
    )
    .default("4"),
    valued(
        "--api-quota",
        "SPEC",
        Kind::Text,
        "client-side API quota",
        Scope::Global,
    )
    .default("100/1m,1500/1h"),
    valued(
        "--start-quota",
        "SPEC",
        Kind::Text,
        "client-side quota on session starts",
        Scope::Global,
    )
    .default("10/1m"),
    valued(
        "--proxy",
        "URL",
        Kind::Text,
        "send requests through this proxy; NO_PROXY lists hosts to reach directly (a \
         domain also matches its subdomains)",
        Scope::Global,
    )
    .env(&["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"]),
    flag(
        "--no-proxy",
        "ignore the proxy variables and connect directly",
        Scope::Global,
    ),
    valued(
        "--ca-cert",
        "PATH",
        Kind::File,
        "PEM CA certificates to trust on top of the bundled roots (e.g. for TLS \
         inspection)",
        Scope::Global,
    )
    .env(&["SSL_CERT_FILE"]),
    flag("--help", "show help", Scope::Global).short("-h"),
    flag("--version", "show the version", Scope::Global).short("-V"),
    // link, result, action.
    valued(
        "--index",
        "N",
        Kind::Text,
        "the command's index in the action",
        Scope::Only(&["link", "result"]),
    )
    .default("0"),
    flag(
        "--reveal",
        "print the usable link, signature included",
        Scope::Only(&["link"]),
    ),
    flag("--all", "every command of the action, in order", RESULT),
    valued(
        "--output",
        "PATH",
        Kind::File,
        "a file, or a directory to put the file in",
        RESULT,
    )
    .short("-o"),
    flag(
        "--raw",
        "keep the bytes as stored (GetFile: the .gz)",
        RESULT,
    ),
    flag("--force", "overwrite an existing file", RESULT),
    flag("--wait", "wait for the command to finish first", RESULT),
    flag(
        "--wait",
        "wait for the action to end",
        Scope::Only(&["action"]),
    ),
    valued(
        "--wait-timeout",
        DUR,
        Kind::Text,
        "how long --wait waits",
        WAITING,
    )
    .default("15m"),
    valued(
        "--poll-interval",
        DUR,
        Kind::Text,
        "first interval between looks when waiting",
        WAITING,
    )
    .default("5s"),
    // run, getfile, putfile.
    valued(
        "--script",
        "NAME",
        Kind::Text,
        "the library script to run (RunScript)",
        Scope::Only(&["run"]),
    ),
    valued(
        "--args",
        "TEXT",
        Kind::Text,
        "its arguments",
        Scope::Only(&["run"]),
    ),
    valued(
        "--put",
        "NAME",
        Kind::Text,
        "copy a library file onto the machine first",
        Scope::Batch,
    )
    .repeat(),
    valued(
        "--get",
        "PATH",
        Kind::Text,
        "collect a file from the machine, after the script",
        Scope::Batch,
    )
    .repeat(),
    valued(
        "--machines-file",
        "FILE",
        Kind::File,
        "more machines, one per line (# starts a comment)",
        Scope::Batch,
    ),
    valued(
        "--output",
        "DIR",
        Kind::Dir,
        "save results under DIR/NAME/ (and keep a journal there)",
        Scope::Batch,
    )
    .short("-o"),
    flag(
        "--resume",
        "continue an interrupted batch from DIR's journal: nothing starts twice, nothing \
         downloads twice",
        Scope::Batch,
    ),
    valued(
        "--on-busy",
        "MODE",
        Kind::OneOf(ON_BUSY),
        "a machine with a session already: wait for it to end, skip it, or fail it",
        Scope::Batch,
    )
    .default("wait"),
    valued(
        "--max-in-flight",
        "N",
        Kind::Text,
        "most unfinished actions at once",
        Scope::Batch,
    )
    .default("25"),
    valued(
        "--wait-timeout",
        DUR,
        Kind::Text,
        "how long to wait for each action",
        Scope::Batch,
    )
    .default("15m"),
    valued(
        "--poll-interval",
        DUR,
        Kind::Text,
        "first interval between looks, growing to 6x",
        Scope::Batch,
    )
    .default("5s"),
    flag(
        "--wait",
        "wait for the actions to end and deliver their results (the default)",
        Scope::Batch,
    ),
    flag(
        "--no-wait",
        "start and print the action ids; do not wait",
        Scope::Batch,
    ),
    valued(
        "--comment",
        "TEXT",
        Kind::Text,
        "why, for the action center",
        Scope::Batch,
    )
    .default("`mdlr run NAME` and the like"),
    flag("--raw", "keep GetFile results gzipped", Scope::Batch),
    flag("--force", "overwrite existing files", Scope::Batch),
    // The other commands.
    valued(
        "--comment",
        "TEXT",
        Kind::Text,
        "why, for the action center",
        Scope::Only(&["cancel"]),
    )
    .default("\"Cancelled with mdlr\""),
    valued(
        "--machine",
        "MACHINE",
        Kind::Text,
        "only this machine's actions (id or DNS name)",
        Scope::Only(&["actions"]),
    ),
    valued(
        "--status",
        "STATUS",
        Kind::OneOf(STATUSES),
        "only actions in this state: {values}",
        Scope::Only(&["actions"]),
    ),
    valued(
        "--top",
        "N",
        Kind::Text,
        "most actions to list",
        Scope::Only(&["actions"]),
    )
    .default("100"),
    valued(
        "--name",
        "NAME",
        Kind::Text,
        "the machine's DNS name",
        Scope::Only(&["machines"]),
    ),
    valued(
        "--top",
        "N",
        Kind::Text,
        "most machines to list",
        Scope::Only(&["machines"]),
    )
    .default("1000"),
    valued(
        "--name",
        "NAME",
        Kind::Text,
        "upload: its name in the library",
        Scope::Only(&["library"]),
    )
    .default("the file's name"),
    valued(
        "--description",
        "TEXT",
        Kind::Text,
        "upload: what it does",
        Scope::Only(&["library"]),
    ),
    valued(
        "--parameters-description",
        "TEXT",
        Kind::Text,
        "upload: the parameters a script takes",
        Scope::Only(&["library"]),
    ),
    flag(
        "--override",
        "upload: replace a file of the same name",
        Scope::Only(&["library"]),
    ),
    valued(
        "--tenant",
        "TENANT",
        Kind::Text,
        "the tenant to sign in to (name or id)",
        Scope::Only(&["login"]),
    )
    .env(&["AZURE_TENANT_ID"]),
    valued(
        "--client-id",
        "ID",
        Kind::Text,
        "the application (client) id to sign in with",
        Scope::Only(&["login"]),
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
--max-in-flight unfinished actions, all at once. Exit status: 0 when every machine
succeeded, else the most severe status among them. On a terminal, a live count per
state is shown on stderr. Ctrl-C stops waiting and says how to pick the actions up.";

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
// Parsing. (A unit test checks that every option named from here on is in the table.)

/// Parses the command line (without the program name).
pub fn parse(mut raw: Vec<OsString>) -> Result<Args, Usage> {
    // Free text that may look like flags (`--args -Verbose`) is taken out first.
    let script_args = take_value(&mut raw, "--args")?;
    let comment = take_value(&mut raw, "--comment")?;
    let mut args = Arguments::from_vec(raw);
    let help = args.contains(["-h", "--help"]);
    let version = args.contains(["-V", "--version"]);
    let mut global = Global {
        json: args.contains("--json"),
        ..Global::default()
    };
    loop {
        if args.contains(["-q", "--quiet"]) {
            global.quiet = true;
        } else if args.contains("-vv") {
            global.verbose = global.verbose.saturating_add(2);
        } else if args.contains(["-v", "--verbose"]) {
            global.verbose = global.verbose.saturating_add(1);
        } else {
            break;
        }
    }
    global.cloud = opt_string(&mut args, "--cloud", None)?;
    global.api_url = opt_string(&mut args, "--api-url", None)?;
    global.login_url = opt_string(&mut args, "--login-url", None)?;
    global.scope = opt_string(&mut args, "--scope", None)?;
    global.token_file = opt_string(&mut args, "--token-file", None)?.map(PathBuf::from);
    global.timeout = opt_string(&mut args, "--timeout", None)?
        .map(|s| parse_duration(&s).map_err(|m| usage(format!("--timeout: {m}"), None)))
        .transpose()?;
    if global.timeout.is_some_and(|t| t.is_zero()) {
        return Err(usage("--timeout must be above zero", None));
    }
    global.retries = opt_number(&mut args, "--retries", None)?;
    global.api_quota = opt_string(&mut args, "--api-quota", None)?
        .map(|s| parse_quota(&s).map_err(|m| usage(format!("--api-quota: {m}"), None)))
        .transpose()?;
    global.start_quota = opt_string(&mut args, "--start-quota", None)?
        .map(|s| parse_quota(&s).map_err(|m| usage(format!("--start-quota: {m}"), None)))
        .transpose()?;
    global.auth = opt_string(&mut args, "--auth", None)?;
    global.proxy = opt_string(&mut args, "--proxy", None)?;
    global.no_proxy = args.contains("--no-proxy");
    if global.no_proxy && global.proxy.is_some() {
        return Err(usage("--proxy and --no-proxy exclude each other", None));
    }
    global.ca_cert = opt_string(&mut args, "--ca-cert", None)?.map(PathBuf::from);
    global.progress = args.contains("--progress");

    let mut rest = args.finish();
    let position = rest
        .iter()
        .position(|a| a.to_str().and_then(command_spec).is_some());
    let name = match position {
        Some(i) => rest.remove(i).into_string().unwrap_or_default(),
        None => {
            if let Some(other) = rest.iter().find(|a| !a.to_string_lossy().starts_with('-')) {
                return Err(usage(
                    format!("unknown command {:?}", other.to_string_lossy()),
                    None,
                ));
            }
            if version {
                return Ok(Args {
                    global,
                    command: Command::Version,
                });
            }
            if help || rest.is_empty() {
                return Ok(Args {
                    global,
                    command: Command::Help(None),
                });
            }
            return Err(usage(
                format!("unknown option {:?}", rest[0].to_string_lossy()),
                None,
            ));
        }
    };
    let spec = command_spec(&name).map(|c| c.name);
    let mut args = Arguments::from_vec(rest);
    let command = match name.as_str() {
        "help" => Command::Help(args.opt_free_from_str::<String>().ok().flatten()),
        // `mdlr result abc --help`: the help, whatever else the line holds.
        _ if help => {
            return Ok(Args {
                global,
                command: Command::Help(spec.map(str::to_owned)),
            });
        }
        "link" => {
            let c = Some("link");
            let index = opt_index(&mut args, c)?.unwrap_or(0);
            let reveal = args.contains("--reveal");
            Command::Link {
                action_id: action_id(&mut args, c)?,
                index,
                reveal,
            }
        }
        "result" => {
            let c = Some("result");
            let index = opt_index(&mut args, c)?;
            let all = args.contains("--all");
            let which = match (index, all) {
                (Some(_), true) => return Err(usage("--index and --all exclude each other", c)),
                (Some(i), false) => Which::Index(i),
                (None, true) => Which::All,
                (None, false) => Which::Index(0),
            };
            let output = opt_string(&mut args, "-o", c)?
                .or(opt_string(&mut args, "--output", c)?)
                .map(PathBuf::from);
            let raw = args.contains("--raw");
            let force = args.contains("--force");
            let wait = wait_options(&mut args, c)?;
            Command::Result {
                action_id: action_id(&mut args, c)?,
                which,
                output,
                raw,
                force,
                wait,
            }
        }
        "action" => {
            let c = Some("action");
            let wait = wait_options(&mut args, c)?;
            Command::Action {
                action_id: action_id(&mut args, c)?,
                wait,
            }
        }
        "run" | "getfile" | "putfile" => Command::Live(parse_live(
            &name,
            &mut args,
            script_args.clone(),
            comment.clone(),
        )?),
        "cancel" => {
            let c = Some("cancel");
            let comment = comment
                .clone()
                .unwrap_or_else(|| "Cancelled with mdlr".to_owned());
            Command::Cancel {
                action_id: action_id(&mut args, c)?,
                comment,
            }
        }
        "actions" => {
            let c = Some("actions");
            Command::Actions {
                machine: opt_string(&mut args, "--machine", c)?,
                status: opt_string(&mut args, "--status", c)?,
                top: opt_number(&mut args, "--top", c)?.unwrap_or(100),
            }
        }
        "machines" => {
            let c = Some("machines");
            Command::Machines {
                name: opt_string(&mut args, "--name", c)?,
                top: opt_number(&mut args, "--top", c)?.unwrap_or(1000),
            }
        }
        "library" => parse_library(&mut args)?,
        "login" => {
            let c = Some("login");
            Command::Login {
                tenant: opt_string(&mut args, "--tenant", c)?,
                client_id: opt_string(&mut args, "--client-id", c)?,
            }
        }
        "logout" => Command::Logout,
        "auth" => Command::Auth,
        "completions" => {
            let c = Some("completions");
            let shell: Option<String> = args
                .opt_free_from_str()
                .map_err(|e| usage(describe(e, "SHELL"), c))?;
            Command::Completions(match shell.as_deref() {
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
            })
        }
        _ => return Err(usage(format!("unknown command {name:?}"), None)),
    };
    // Taken out first for every command, so a command that does not take them says so.
    if !matches!(command, Command::Help(_)) {
        let takes = |key: &str| {
            OPTIONS
                .iter()
                .any(|o| o.scope.includes(&name) && o.names().any(|n| n == key))
        };
        for (key, value) in [("--args", &script_args), ("--comment", &comment)] {
            if value.is_some() && !takes(key) {
                return Err(usage(format!("unknown option {key:?}"), spec));
            }
        }
    }
    let leftovers = args.finish();
    if let Some(extra) = leftovers.first() {
        let extra = extra.to_string_lossy();
        let what = if extra.starts_with('-') {
            "unknown option"
        } else {
            "unexpected argument"
        };
        return Err(usage(format!("{what} {extra:?}"), spec));
    }
    Ok(Args { global, command })
}

fn parse_live(
    name: &str,
    args: &mut Arguments,
    script_args: Option<String>,
    comment: Option<String>,
) -> Result<Live, Usage> {
    let c = command_spec(name).map(|c| c.name);
    let mut puts = repeated(args, "--put", c)?;
    let mut gets = repeated(args, "--get", c)?;
    let script = opt_string(args, "--script", c)?;
    let no_wait = args.contains("--no-wait");
    let machines_file = opt_string(args, "--machines-file", c)?.map(PathBuf::from);
    let output = opt_string(args, "-o", c)?
        .or(opt_string(args, "--output", c)?)
        .map(PathBuf::from);
    let resume = args.contains("--resume");
    let on_busy = match opt_string(args, "--on-busy", c)?.as_deref() {
        None | Some("wait") => mdlr::OnBusy::Wait,
        Some("skip") => mdlr::OnBusy::Skip,
        Some("fail") => mdlr::OnBusy::Fail,
        Some(other) => {
            return Err(usage(
                format!("--on-busy takes wait, skip or fail, not {other:?}"),
                c,
            ));
        }
    };
    let max_in_flight = opt_number(args, "--max-in-flight", c)?.unwrap_or(25);
    if max_in_flight == 0 {
        return Err(usage("--max-in-flight must be at least 1", c));
    }
    let wait = wait_options(args, c)?;
    let raw = args.contains("--raw");
    let force = args.contains("--force");
    let mut free = Vec::new();
    while let Some(v) = args
        .opt_free_from_str::<String>()
        .map_err(|e| usage(describe(e, "MACHINE"), c))?
    {
        free.push(v);
    }
    if let Some(flag) = free.iter().find(|f| f.starts_with('-') && f.len() > 1) {
        return Err(usage(format!("unknown option {flag:?}"), c));
    }
    let script = match (name, script) {
        ("run", Some(s)) => Some((s, script_args.unwrap_or_default())),
        ("run", None) => return Err(usage("run needs --script NAME", c)),
        (_, Some(_)) => return Err(usage(format!("{name} takes no --script; use run"), c)),
        (_, None) => None,
    };
    // getfile and putfile take their PATH or FILE_NAME last.
    match name {
        "getfile" => match free.pop() {
            Some(path) => gets.insert(0, path),
            None => return Err(usage("missing PATH", c)),
        },
        "putfile" => match free.pop() {
            Some(file) => puts.push(file),
            None => return Err(usage("missing FILE_NAME", c)),
        },
        _ => {}
    }
    if free.is_empty() && machines_file.is_none() {
        return Err(usage("missing MACHINE (or --machines-file FILE)", c));
    }
    if resume && output.is_none() {
        return Err(usage("--resume needs -o DIR, where the journal is", c));
    }
    if no_wait && resume {
        return Err(usage("--resume and --no-wait exclude each other", c));
    }
    Ok(Live {
        command: c.unwrap_or("run"),
        machines: free,
        machines_file,
        puts,
        script,
        gets,
        comment,
        no_wait,
        output,
        resume,
        on_busy,
        max_in_flight,
        wait,
        raw,
        force,
    })
}

/// Removes `key VALUE` or `key=VALUE` from `raw` and returns the value.
fn take_value(raw: &mut Vec<OsString>, key: &'static str) -> Result<Option<String>, Usage> {
    let prefix = format!("{key}=");
    for i in 0..raw.len() {
        let Some(arg) = raw[i].to_str() else {
            continue;
        };
        if arg == key {
            if i + 1 >= raw.len() {
                return Err(usage(format!("{key} needs a value"), None));
            }
            let value = raw.remove(i + 1);
            raw.remove(i);
            return value
                .into_string()
                .map(Some)
                .map_err(|_| usage(format!("{key}: not valid UTF-8"), None));
        }
        if let Some(value) = arg.strip_prefix(&prefix) {
            let value = value.to_owned();
            raw.remove(i);
            return Ok(Some(value));
        }
    }
    Ok(None)
}

fn parse_library(args: &mut Arguments) -> Result<Command, Usage> {
    let c = Some("library");
    let name = opt_string(args, "--name", c)?;
    let description = opt_string(args, "--description", c)?.unwrap_or_default();
    let parameters_description = opt_string(args, "--parameters-description", c)?;
    let override_existing = args.contains("--override");
    let sub: Option<String> = args
        .opt_free_from_str()
        .map_err(|e| usage(describe(e, "list, upload or delete"), c))?;
    match sub.as_deref() {
        Some("list") => Ok(Command::LibraryList),
        Some("upload") => Ok(Command::LibraryUpload {
            path: args
                .opt_free_from_str::<String>()
                .map_err(|e| usage(describe(e, "PATH"), c))?
                .map(PathBuf::from)
                .ok_or_else(|| usage("missing PATH", c))?,
            name,
            description,
            parameters_description,
            override_existing,
        }),
        Some("delete") => Ok(Command::LibraryDelete {
            name: args
                .opt_free_from_str::<String>()
                .map_err(|e| usage(describe(e, "NAME"), c))?
                .ok_or_else(|| usage("missing NAME", c))?,
        }),
        Some(other) => Err(usage(
            format!("library takes list, upload or delete, not {other:?}"),
            c,
        )),
        None => Err(usage("library needs list, upload or delete", c)),
    }
}

fn repeated(
    args: &mut Arguments,
    key: &'static str,
    command: Option<&'static str>,
) -> Result<Vec<String>, Usage> {
    args.values_from_str::<_, String>(key)
        .map_err(|e| usage(describe(e, key), command))
}

fn opt_number<T: std::str::FromStr>(
    args: &mut Arguments,
    key: &'static str,
    command: Option<&'static str>,
) -> Result<Option<T>, Usage> {
    match opt_string(args, key, command)? {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| usage(format!("{key} takes a whole number, not {v:?}"), command)),
    }
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

fn opt_string(
    args: &mut Arguments,
    key: &'static str,
    command: Option<&'static str>,
) -> Result<Option<String>, Usage> {
    args.opt_value_from_str::<_, String>(key)
        .map_err(|e| usage(describe(e, key), command))
}

fn opt_index(args: &mut Arguments, command: Option<&'static str>) -> Result<Option<u32>, Usage> {
    match opt_string(args, "--index", command)? {
        None => Ok(None),
        Some(v) => v.trim().parse::<u32>().map(Some).map_err(|_| {
            usage(
                format!("--index takes a command index (0, 1, 2, ...), not {v:?}"),
                command,
            )
        }),
    }
}

fn wait_options(args: &mut Arguments, command: Option<&'static str>) -> Result<Wait, Usage> {
    let enabled = args.contains("--wait");
    let timeout = match opt_string(args, "--wait-timeout", command)? {
        Some(v) => {
            parse_duration(&v).map_err(|m| usage(format!("--wait-timeout: {m}"), command))?
        }
        None => Duration::from_secs(15 * 60),
    };
    let poll = match opt_string(args, "--poll-interval", command)? {
        Some(v) => {
            parse_duration(&v).map_err(|m| usage(format!("--poll-interval: {m}"), command))?
        }
        None => Duration::from_secs(5),
    };
    Ok(Wait {
        enabled,
        timeout,
        poll,
    })
}

fn action_id(args: &mut Arguments, command: Option<&'static str>) -> Result<String, Usage> {
    match args.opt_free_from_str::<String>() {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(usage("missing ACTION_ID", command)),
        Err(e) => Err(usage(describe(e, "ACTION_ID"), command)),
    }
}

fn describe(e: pico_args::Error, key: &str) -> String {
    match e {
        pico_args::Error::OptionWithoutAValue(_) => format!("{key} needs a value"),
        pico_args::Error::NonUtf8Argument => format!("{key}: not valid UTF-8"),
        other => format!("{key}: {other}"),
    }
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
            poll: Duration::from_secs(5),
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
                    poll: Duration::from_millis(200),
                },
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
        check_usage("getfile h1 --script x", "no --script");
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
            "run" => "run h --script s.ps1",
            "getfile" => "getfile h C:\\x",
            "putfile" => "putfile h f.ps1",
            "cancel" => "cancel a",
            "actions" => "actions",
            "machines" => "machines",
            "library" => "library upload t.ps1",
            "login" => "login",
            "logout" => "logout",
            "auth" => "auth",
            "completions" => "completions bash",
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
    fn every_option_the_parser_names_is_in_the_table() {
        let source = include_str!("args.rs");
        let start = source.find("// Parsing.").expect("the parsing marker");
        let end = source.find("#[cfg(test)]").expect("the tests");
        let parser = &source[start..end];
        let known: Vec<&str> = OPTIONS.iter().flat_map(|o| o.names()).collect();
        let mut named = Vec::new();
        // Every `--name`, in literals, messages and comments alike.
        for (i, _) in parser.match_indices("--") {
            let name: String = parser[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if name.starts_with(|c: char| c.is_ascii_lowercase()) {
                named.push(format!("--{name}"));
            }
        }
        // Every short option literal: `"-o"`.
        for (i, _) in parser.match_indices("\"-") {
            let rest = &parser[i + 2..];
            let mut chars = rest.chars();
            if let (Some(c), Some('"')) = (chars.next(), chars.next())
                && c.is_ascii_alphabetic()
            {
                named.push(format!("-{c}"));
            }
        }
        assert!(named.len() > 40, "the scan found only {named:?}");
        for name in &named {
            assert!(known.contains(&name.as_str()), "{name} is not in OPTIONS");
        }
        for short in ["-q", "-v", "-h", "-V", "-o"] {
            assert!(named.iter().any(|n| n == short), "{short} not found");
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
            // Completion skips the word after an option that takes a value, whatever
            // the command: the same name must take one everywhere.
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
