//! Command-line parsing, first stage: raw flags into typed arguments. No I/O here.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use pico_args::Arguments;

pub const HELP: &str = "\
mdlr — Microsoft Defender for Endpoint live response from the command line

Usage: mdlr [OPTIONS] <COMMAND> [ARGS]

Commands:
  link ACTION_ID [--index N]      print the download link of a command's result
  result ACTION_ID [--index N | --all] [-o PATH] [--raw] [--force] [--wait]
                                  fetch a result: a script's output, or a collected file
  action ACTION_ID [--wait]       show a machine action and its commands
  run MACHINE... --script NAME [--args TEXT] [--put NAME]... [--get PATH]...
                                  run a library script on machines, wait, deliver
  getfile MACHINE... PATH         collect a file from machines
  putfile MACHINE... FILE_NAME    copy a library file onto machines
  cancel ACTION_ID [--comment T]  cancel an action
  actions [--machine M] [--status S] [--top N]
                                  list actions
  machines [--name NAME] [--top N]
                                  list machines, or look one up
  library list | upload PATH | delete NAME
                                  the live response library
  help [COMMAND]                  show this help, or a command's

Options (anywhere on the line):
      --cloud NAME        commercial (default), us, eu, uk, au, swa, ina, gcc, gcc-high,
                          dod                                         [env: MDLR_CLOUD]
      --api-url URL       API base, with or without /api              [env: MDLR_API_URL]
      --login-url URL     token authority                    [env: AZURE_AUTHORITY_HOST]
      --scope SCOPE       token scope                                 [env: MDLR_SCOPE]
      --token-file PATH   use the bearer token in this file   [env: MDLR_TOKEN, the token]
      --json              machine-readable output on stdout
  -q, --quiet             say less on stderr
  -v, --verbose           log each HTTP exchange on stderr (secrets redacted)
      --timeout DUR       longest wait to connect or for any read (default: 30s to
                          connect, 60s per read); a stalled transfer resumes after it
      --retries N         retries of a failed request (default 4); a transfer may
                          reconnect twice as often without progress
      --api-quota SPEC    client-side API quota (default 100/1m,1500/1h)
      --start-quota SPEC  client-side quota on session starts (default 10/1m)
  -h, --help              show help
  -V, --version           show the version

Sign-in, first match wins:
  MDLR_TOKEN or --token-file                      a bearer token used as is
  AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET   an app registration's secret

Exit status: 0 success · the script's exit code for a transcript · 64 usage ·
65 malformed reply · 66 not found · 69 unavailable, or action failed/cancelled ·
73 output exists · 74 local I/O · 75 try later · 77 sign-in or permission ·
78 configuration

Run `mdlr help COMMAND` for a command's options and examples.
";

pub const HELP_LINK: &str = "\
mdlr link — print the download link of a command's result

Usage: mdlr link ACTION_ID [--index N] [--reveal]

The link is an Azure Blob Storage URL valid for 30 minutes; asking again gives a
fresh one and runs nothing again. Its signature grants read access to the result, so
it is shown redacted unless you pass --reveal.

Options:
      --index N   the command's index in the action (default 0)
      --reveal    print the usable link, signature included

Examples:
  mdlr link 988cc94e-7a8f-4b28-ab65-54970c5d5018
  curl -o out.gz \"$(mdlr link 988cc94e-7a8f-4b28-ab65-54970c5d5018 --index 1 --reveal)\"
";

pub const HELP_RESULT: &str = "\
mdlr result — fetch and deliver the result of a live response command

Usage: mdlr result ACTION_ID [--index N | --all] [-o PATH] [--raw] [--force] [--wait]

RunScript: the script's output goes to stdout, its errors to stderr, and mdlr exits
with the script's exit code (1 when it is outside 0-255). With --json: one object
with script_name, exit_code, script_output and script_errors, and exit status 0.
With -o or --raw: the transcript as the service stored it, to a file or stdout.

GetFile: the file is streamed to disk and un-gzipped on the way (--raw keeps the
.gz), under its original name in the current directory or in -o. It is written to a
temporary name and renamed only when complete; an existing file is kept unless
--force.

PutFile: has no result; mdlr says so.

Options:
      --index N               the command's index in the action (default 0)
      --all                   every command of the action, in order
  -o, --output PATH           a file, or a directory to put the file in
      --raw                   keep the bytes as stored (GetFile: the .gz)
      --force                 overwrite an existing file
      --wait                  wait for the command to finish first
      --wait-timeout DUR      how long --wait waits (default 15m)
      --poll-interval DUR     first interval between looks when waiting (default 5s)

DUR is 90s, 10m, 1h, 500ms or plain seconds.

Examples:
  mdlr result 988cc94e-7a8f-4b28-ab65-54970c5d5018
  mdlr result 988cc94e-7a8f-4b28-ab65-54970c5d5018 --index 1 -o evidence/
  mdlr result 988cc94e-7a8f-4b28-ab65-54970c5d5018 --all --wait -o evidence/
";

pub const HELP_ACTION: &str = "\
mdlr action — show a machine action and its commands

Usage: mdlr action ACTION_ID [--wait] [--wait-timeout DUR] [--poll-interval DUR]

With --wait, mdlr looks again until the action has ended, and exits with 0 when it
Succeeded, 69 when it Failed or was Cancelled, 75 when it timed out or the wait did.

Options:
      --wait                  wait for the action to end
      --wait-timeout DUR      how long --wait waits (default 15m)
      --poll-interval DUR     first interval between looks (default 5s)

Examples:
  mdlr action 988cc94e-7a8f-4b28-ab65-54970c5d5018
  mdlr --json action 988cc94e-7a8f-4b28-ab65-54970c5d5018 --wait
";

pub const HELP_RUN: &str = "\
mdlr run — run a library script on one machine or many, wait, and deliver the results

Usage: mdlr run MACHINE... --script NAME [--args TEXT] [--put NAME]... [--get PATH]...
                [--comment TEXT] [--no-wait] [BATCH OPTIONS]

MACHINE is a machine id (40 hex characters) or a computer DNS name. The commands go in
the order the service requires: every --put (PutFile), the script, every --get
(GetFile). On one machine without -o, the transcript is delivered as `mdlr result`
does: the script's output on stdout, its errors on stderr, its exit code as mdlr's.
On several machines, each machine's output follows a `== NAME` header; with -o DIR
every result is saved under DIR/NAME/ and each machine reports one line.

Options:
      --script NAME           the library script to run (RunScript)
      --args TEXT             its arguments
      --put NAME              copy a library file onto the machine first (repeatable)
      --get PATH              collect a file after the script (repeatable)
      --comment TEXT          why, for the action center (default: mdlr run NAME)
      --no-wait               start and print the action ids; do not wait
";

pub const HELP_GETFILE: &str = "\
mdlr getfile — collect a file from one machine or many

Usage: mdlr getfile MACHINE... PATH [-o DIR] [--raw] [--force] [BATCH OPTIONS]

The file is streamed to disk and un-gzipped on the way (--raw keeps the .gz). On one
machine it goes in the current directory or -o; on several, under DIR/NAME/.

Examples:
  mdlr getfile host1.contoso.com 'C:\\Windows\\System32\\drivers\\etc\\hosts'
  mdlr getfile --machines-file hosts.txt 'C:\\Temp\\triage.zip' -o evidence/
";

pub const HELP_PUTFILE: &str = "\
mdlr putfile — copy a file from the live response library onto machines

Usage: mdlr putfile MACHINE... FILE_NAME [BATCH OPTIONS]

Examples:
  mdlr putfile host1.contoso.com collect.ps1
";

pub const HELP_BATCH: &str = "\
Batch options (run, getfile, putfile):
      --machines-file FILE    more machines, one per line (# starts a comment)
  -o, --output DIR            save results under DIR/NAME/ (and keep a journal there)
      --resume                continue an interrupted batch from DIR's journal: nothing
                              starts twice, nothing downloads twice
      --on-busy MODE          a machine with a session already: wait (default) for it
                              to end, skip it, or fail it
      --max-in-flight N       most unfinished actions at once (default 25)
      --wait-timeout DUR      how long to wait for each action (default 15m)
      --poll-interval DUR     first interval between looks (default 5s; grows to 6x)
      --raw                   keep GetFile results gzipped
      --force                 overwrite existing files

Quotas: at most 10 starts a minute, 100 API calls a minute and 1500 an hour, and
--max-in-flight unfinished actions, all at once. Exit status: 0 when every machine
succeeded, else the most severe status among them. On a terminal, a live count per
state is shown on stderr. Ctrl-C stops waiting and says how to pick the actions up.

Examples:
  mdlr run host1.contoso.com host2.contoso.com --script triage.ps1
  mdlr run --machines-file hosts.txt --script collect.ps1 --get 'C:\\Temp\\out.zip' -o evidence/
  mdlr run --machines-file hosts.txt --script collect.ps1 -o evidence/ --resume
";

pub const HELP_CANCEL: &str = "\
mdlr cancel — cancel a machine action

Usage: mdlr cancel ACTION_ID [--comment TEXT]

Example:
  mdlr cancel 988cc94e-7a8f-4b28-ab65-54970c5d5018 --comment 'wrong machine'
";

pub const HELP_ACTIONS: &str = "\
mdlr actions — list machine actions, newest first as the service sends them

Usage: mdlr actions [--machine MACHINE] [--status STATUS] [--top N]

STATUS is Pending, InProgress, Succeeded, Failed, TimeOut or Cancelled. --top defaults
to 100. With --json, one action per line.

Example:
  mdlr actions --machine host1.contoso.com --status InProgress
";

pub const HELP_MACHINES: &str = "\
mdlr machines — list machines, or look one up by DNS name

Usage: mdlr machines [--name NAME] [--top N]

Example:
  mdlr machines --name host1.contoso.com
";

pub const HELP_LIBRARY: &str = "\
mdlr library — the live response library (needs the Library.Manage permission)

Usage: mdlr library list
       mdlr library upload PATH [--name NAME] [--description TEXT]
                                [--parameters-description TEXT] [--override]
       mdlr library delete NAME

Examples:
  mdlr library upload ./triage.ps1 --description 'Collect triage data'
  mdlr library delete triage.ps1
";

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

const COMMANDS: &[&str] = &[
    "link",
    "result",
    "action",
    "run",
    "getfile",
    "putfile",
    "cancel",
    "actions",
    "machines",
    "library",
    "login",
    "logout",
    "auth",
    "completions",
    "help",
];

/// The help text of `command`, or the general help.
pub fn help_for(command: Option<&str>) -> &'static str {
    match command {
        Some("link") => HELP_LINK,
        Some("result") => HELP_RESULT,
        Some("action") => HELP_ACTION,
        Some("run") => HELP_RUN,
        Some("getfile") => HELP_GETFILE,
        Some("putfile") => HELP_PUTFILE,
        Some("cancel") => HELP_CANCEL,
        Some("actions") => HELP_ACTIONS,
        Some("machines") => HELP_MACHINES,
        Some("library") => HELP_LIBRARY,
        _ => HELP,
    }
}

/// The batch options' help, shown after the help of `run`, `getfile` and `putfile`.
pub fn help_batch(command: Option<&str>) -> Option<&'static str> {
    matches!(command, Some("run" | "getfile" | "putfile")).then_some(HELP_BATCH)
}

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
        .position(|a| a.to_str().is_some_and(|s| COMMANDS.contains(&s)));
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
    let mut args = Arguments::from_vec(rest);
    let command = match name.as_str() {
        "help" => Command::Help(args.opt_free_from_str::<String>().ok().flatten()),
        _ if help => Command::Help(Some(name.clone())),
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
    let leftovers = args.finish();
    if let Some(extra) = leftovers.first() {
        let extra = extra.to_string_lossy();
        let what = if extra.starts_with('-') {
            "unknown option"
        } else {
            "unexpected argument"
        };
        return Err(usage(
            format!("{what} {extra:?}"),
            COMMANDS.iter().copied().find(|c| *c == name),
        ));
    }
    Ok(Args { global, command })
}

fn parse_live(
    name: &str,
    args: &mut Arguments,
    script_args: Option<String>,
    comment: Option<String>,
) -> Result<Live, Usage> {
    let c = COMMANDS.iter().copied().find(|c| *c == name);
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
}
