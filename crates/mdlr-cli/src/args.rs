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

const COMMANDS: &[&str] = &["link", "result", "action", "help"];

/// The help text of `command`, or the general help.
pub fn help_for(command: Option<&str>) -> &'static str {
    match command {
        Some("link") => HELP_LINK,
        Some("result") => HELP_RESULT,
        Some("action") => HELP_ACTION,
        _ => HELP,
    }
}

/// Parses the command line (without the program name).
pub fn parse(raw: Vec<OsString>) -> Result<Args, Usage> {
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
