//! `mdlr`: Microsoft Defender for Endpoint live response from the command line.

#![forbid(unsafe_code)]

mod args;
mod commands;
mod output;
mod settings;

use std::process::ExitCode;

use mdlr::{Client, Error, Event};

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
    let out = Output::new(&args.global);
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

fn run(args: &args::Args, out: &Output) -> Result<u8, Failure> {
    match &args.command {
        Command::Help(topic) => {
            out.print(args::help_for(topic.as_deref()))?;
            return Ok(0);
        }
        Command::Version => {
            out.print(&format!("mdlr {}\n", env!("CARGO_PKG_VERSION")))?;
            return Ok(0);
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
        } => commands::result(
            &client,
            out,
            &commands::ResultArgs {
                action_id,
                which: *which,
                output: output.as_deref(),
                raw: *raw,
                force: *force,
                wait: *wait,
            },
        ),
        Command::Action { action_id, wait } => commands::action(&client, out, action_id, *wait),
        Command::Help(_) | Command::Version => Ok(0),
    }
}

/// Builds the client from options and environment; logs exchanges at `-v`.
fn client(args: &args::Args, out: &Output) -> Result<Client, Error> {
    let env = settings::process_env;
    let endpoints = settings::endpoints(&args.global, &env)?;
    let credential = settings::credential(&args.global, &env)?;
    if args.global.verbose >= 2 {
        out.note(&format!(
            "API {}, authority {}, scope {}, sign-in {}",
            endpoints.api_base,
            endpoints.authority,
            endpoints.scope,
            credential.method()
        ));
    }
    let verbose = args.global.verbose;
    let quiet = args.global.quiet;
    Client::builder(credential)
        .endpoints(endpoints)
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
            Event::Throttled { delay } if !quiet && delay.as_secs() >= 1 => {
                eprintln!(
                    "mdlr: waiting {:.1} s to stay within the API quota",
                    delay.as_secs_f64()
                );
            }
            _ => {}
        })
        .build()
}
