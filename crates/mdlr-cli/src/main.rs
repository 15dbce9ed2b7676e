//! `mdlr`: Microsoft Defender for Endpoint live response from the command line.

#![forbid(unsafe_code)]

mod admin;
mod args;
mod auth;
mod commands;
mod completions;
mod csv;
mod interrupt;
mod journal;
mod live;
mod manifest;
mod manpage;
mod output;
mod progress;
mod settings;

use std::process::ExitCode;

use mdlr::{Client, Error, Event, RateLimit, RetryPolicy, Timeouts, TransportConfig};

use crate::args::{Command, Usage};
use crate::output::{Failure, Output};

fn main() -> ExitCode {
    let argv = std::env::args_os().skip(1).collect();
    let args = match args::parse(argv) {
        Ok(args) => args,
        Err(Usage { message, command }) => {
            eprintln!("mdlr: {message}");
            match command {
                Some(c) => eprintln!("Run `mdlr help {c}` for its usage."),
                None => eprintln!("Run `mdlr help` for usage."),
            }
            return ExitCode::from(output::EX_USAGE);
        }
    };
    let out = Output::new(&args.global, command_name(&args.command));
    let status = match run(&args, &out) {
        Ok(status) => status,
        Err(failure) => {
            if let Failure::Error { error, context, .. } = &failure {
                out.report(error, context.as_deref());
            }
            failure.exit_status()
        }
    };
    ExitCode::from(status)
}

/// The command's name as typed, for hints.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Help(_) => "help",
        Command::Version => "version",
        Command::Link { .. } => "link",
        Command::Result { .. } => "result",
        Command::Verify { .. } => "verify",
        Command::Action { .. } => "action",
        Command::Fetch { .. } => "fetch",
        Command::Live(live) => live.command,
        Command::Cancel { .. } => "cancel",
        Command::Actions { .. } => "actions",
        Command::Machines { .. } => "machines",
        Command::LibraryList | Command::LibraryUpload { .. } | Command::LibraryDelete { .. } => {
            "library"
        }
        Command::Login { .. } => "login",
        Command::Logout => "logout",
        Command::Auth => "auth",
        Command::Completions(_) => "completions",
        Command::Man => "man",
    }
}

fn run(args: &args::Args, out: &Output) -> Result<u8, Failure> {
    match &args.command {
        Command::Help(topic) => {
            out.print(args::help_for(topic.as_deref()))?;
            if let Some(batch) = args::help_batch(topic.as_deref()) {
                out.print("\n")?;
                out.print(batch)?;
            }
            return Ok(0);
        }
        Command::Version => {
            // The commit comes from build.rs (git, or MDLR_COMMIT for tarball builds).
            out.print(&format!(
                "mdlr {} (commit {})\n",
                env!("CARGO_PKG_VERSION"),
                env!("MDLR_BUILD_COMMIT")
            ))?;
            return Ok(0);
        }
        Command::Completions(shell) => {
            out.print(&completions::script(*shell))?;
            return Ok(0);
        }
        Command::Man => {
            out.print(&manpage::page())?;
            return Ok(0);
        }
        Command::Login { tenant, client_id } => {
            return auth::login(args, out, tenant.as_deref(), client_id.as_deref());
        }
        Command::Logout => return auth::logout(out),
        Command::Verify { dir } => return manifest::verify(out, dir),
        Command::Fetch {
            url,
            output,
            raw,
            force,
            connections,
        } => {
            let transport = transport(args, out, None)?;
            let save = commands::Save {
                output: output.as_deref(),
                raw: *raw,
                force: *force,
                connections: *connections,
            };
            return commands::fetch(transport, out, url, &save);
        }
        _ => {}
    }
    let client = client(args, out).map_err(Failure::from)?;
    match &args.command {
        Command::Link {
            action_id,
            index,
            reveal,
        } => commands::link(&client, out, action_id, *index, *reveal),
        Command::Result {
            action_id,
            which,
            output,
            raw,
            force,
            wait,
            connections,
            report,
        } => commands::result(
            &client,
            out,
            &commands::ResultArgs {
                action_id,
                which: *which,
                save: commands::Save {
                    output: output.as_deref(),
                    raw: *raw,
                    force: *force,
                    connections: *connections,
                },
                wait: *wait,
                report: report.as_deref(),
            },
        ),
        Command::Action { action_id, wait } => commands::action(&client, out, action_id, *wait),
        Command::Live(live) => live::live(&client, out, live),
        Command::Cancel { action_id, comment } => admin::cancel(&client, out, action_id, comment),
        Command::Actions {
            machine,
            status,
            top,
            csv,
        } => admin::actions(
            &client,
            out,
            machine.as_deref(),
            status.as_deref(),
            *top,
            *csv,
        ),
        Command::Machines { name, top, csv } => {
            admin::machines(&client, out, name.as_deref(), *top, *csv)
        }
        Command::LibraryList => admin::library_list(&client, out),
        Command::LibraryUpload {
            path,
            name,
            description,
            parameters_description,
            override_existing,
        } => admin::library_upload(
            &client,
            out,
            path,
            name.as_deref(),
            description,
            parameters_description.as_deref(),
            *override_existing,
        ),
        Command::LibraryDelete { name } => admin::library_delete(&client, out, name),
        Command::Auth => auth::show(&client, out),
        Command::Help(_)
        | Command::Version
        | Command::Login { .. }
        | Command::Logout
        | Command::Fetch { .. }
        | Command::Verify { .. }
        | Command::Completions(_)
        | Command::Man => Ok(0),
    }
}

/// Builds the client from options and environment; logs exchanges at `-v`.
fn client(args: &args::Args, out: &Output) -> Result<Client, Error> {
    let env = settings::process_env;
    let endpoints = settings::endpoints(&args.global, &env)?;
    let quiet = args.global.quiet;
    let warn: settings::Warn = std::sync::Arc::new(move |message: &str| {
        if !quiet {
            eprintln!("mdlr: warning: {}", output::clean(message));
        }
    });
    let credential = settings::credential(&args.global, &env, &endpoints, warn.clone())?;
    let transport = transport(args, out, Some((&endpoints, credential.method())))?;
    let limits = |q: &Option<Vec<(u32, std::time::Duration)>>, default: Vec<RateLimit>| {
        q.as_ref().map_or(default, |q| {
            q.iter()
                .map(|&(calls, per)| RateLimit::new(calls, per))
                .collect()
        })
    };
    let builder = || {
        Client::builder(credential.clone())
            .endpoints(endpoints.clone())
            .transport(transport.clone())
            .rate_limits(limits(&args.global.api_quota, RateLimit::defaults()))
            .start_limits(limits(
                &args.global.start_quota,
                RateLimit::start_defaults(),
            ))
            .package_limits(limits(
                &args.global.package_quota,
                RateLimit::package_defaults(),
            ))
    };
    // The quotas are shared with this user's other mdlr processes on this host, unless
    // asked not to or there is nowhere to keep them: then kept alone, as before.
    let dir = if args.global.no_shared_quotas {
        None
    } else {
        settings::quota_dir(&env).unwrap_or_else(|why| {
            warn(&format!("quotas not shared with other processes: {why}"));
            None
        })
    };
    let client = match dir.map(|dir| builder().shared_quotas_in(dir).build()) {
        Some(Ok(client)) => client,
        Some(Err(e)) => {
            warn(&format!("quotas not shared with other processes: {e}"));
            builder().build()?
        }
        None => builder().build()?,
    };
    if args.global.verbose >= 2 {
        out.note(&match client.shared_quotas_path() {
            Some(path) => format!("quotas shared through {}", path.display()),
            None => "quotas kept by this process alone".to_owned(),
        });
    }
    Ok(client)
}

/// How requests are sent: proxies, CAs, timeouts, retries and the exchange log (at
/// `-v`). At `-vv` it says which hosts, sign-in method and proxy are used (`about`: the
/// API's hosts and the sign-in method; `None` for a bare link, which needs neither).
pub fn transport(
    args: &args::Args,
    out: &Output,
    about: Option<(&mdlr::Endpoints, &str)>,
) -> Result<TransportConfig, Error> {
    let env = settings::process_env;
    let (proxies, roots) = settings::network(&args.global, &env)?;
    if args.global.verbose >= 2 {
        let proxy = |url: &str| proxies.for_url(url).map_or("direct", |p| p.display());
        out.note(&match about {
            Some((endpoints, sign_in)) => format!(
                "API {}, authority {}, scope {}, sign-in {sign_in}, proxy {}, {} extra CA \
                 certificate(s)",
                endpoints.api_base,
                endpoints.authority,
                endpoints.scope,
                proxy(&endpoints.api_base),
                roots.len(),
            ),
            None => format!(
                "no API and no sign-in (a bare link), proxy {}, {} extra CA certificate(s)",
                proxy("https://blob.core.windows.net"),
                roots.len(),
            ),
        });
    }
    let verbose = args.global.verbose;
    let quiet = args.global.quiet;
    let defaults = Timeouts::default();
    let timeouts = args
        .global
        .timeout
        .map_or(defaults, |t| Timeouts::new(t.min(defaults.connect), t));
    let retry = args
        .global
        .retries
        .map_or_else(RetryPolicy::default, RetryPolicy::with_retries);
    let mut transport = TransportConfig::new()
        .proxies(proxies)
        .timeouts(timeouts)
        .retry_policy(retry)
        .on_event(move |event| match event {
            Event::Exchange {
                method,
                url,
                status,
                elapsed,
            } if verbose > 0 => {
                let status = status.map_or_else(|| "no reply".to_owned(), |s| s.to_string());
                eprintln!(
                    "mdlr: {method} {url} -> {status} ({} ms)",
                    elapsed.as_millis()
                );
            }
            Event::Retry { url, reason, delay } if !quiet => {
                eprintln!(
                    "mdlr: {reason} from {url}; retrying in {:.1} s",
                    delay.as_secs_f64()
                );
            }
            Event::Fallback { message } if verbose > 0 => {
                eprintln!("mdlr: {}", output::clean(message));
            }
            Event::SharedQuotas { problem } if !quiet => {
                eprintln!("mdlr: warning: {}", output::clean(problem));
            }
            Event::Throttled { delay } if !quiet && delay.as_secs() >= 1 => {
                eprintln!(
                    "mdlr: waiting {:.1} s to stay within the API quota",
                    delay.as_secs_f64()
                );
            }
            _ => {}
        });
    for der in roots {
        transport = transport.add_root_certificate(der);
    }
    Ok(transport)
}
