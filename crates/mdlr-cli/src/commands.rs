//! The commands: each turns arguments into library calls and output.

use std::path::Path;

use mdlr::{
    ActionStatus, Client, CommandResult, CommandType, DownloadRequest, Downloaded, Downloader,
    Error, Gunzip, MachineAction, PollPolicy, ResultLink, TransportConfig,
};
use serde_json::json;

use crate::csv;
use crate::manifest::{Entry, Manifest, Origin};

use crate::args::{Wait, Which};
use crate::output::{self, Context, Failure, Output, clean};

/// `mdlr link`.
pub fn link(
    client: &Client,
    out: &Output,
    action_id: &str,
    index: u32,
    reveal: bool,
) -> Result<u8, Failure> {
    let action = client
        .action(action_id)
        .context(|| format!("cannot read action {action_id}"))?;
    if action.result_type(index)? == CommandType::PutFile {
        eprintln!(
            "mdlr: command {index} of action {action_id} is a PutFile: it has no result, \
             so there is no link"
        );
        return Ok(output::EX_NOINPUT);
    }
    let link = client.result_link(action_id, index)?;
    let shown = if reveal {
        link.expose().to_owned()
    } else {
        link.redacted()
    };
    if out.json {
        out.json_line(&json!({
            "action_id": action_id,
            "index": index,
            "url": shown,
            "expires": link.expires(),
            "redacted": !reveal,
        }))?;
    } else {
        out.print(&format!("{shown}\n"))?;
        if !reveal {
            out.note(&format!(
                "the link's signature is hidden; pass --reveal to print the usable link{}",
                link.expires()
                    .map(|e| format!(" (valid until {e})"))
                    .unwrap_or_default()
            ));
        }
    }
    Ok(0)
}

/// The arguments of `mdlr result`.
pub struct ResultArgs<'a> {
    pub action_id: &'a str,
    pub which: Which,
    pub save: Save<'a>,
    pub wait: Wait,
    /// `--report FILE`.
    pub report: Option<&'a Path>,
}

/// Where evidence of what was delivered goes: the manifest of `-o DIR`, the report.
#[derive(Default)]
struct Evidence {
    manifest: Option<Manifest>,
    report: Option<csv::Report>,
}

impl Evidence {
    /// The manifest when results go into a directory named by `-o` (`always_dir`: any
    /// `-o` names one), and the report when asked for.
    fn open(save: &Save<'_>, always_dir: bool, report: Option<&Path>) -> Result<Evidence, Failure> {
        let dir = save
            .output
            .filter(|p| always_dir || p.is_dir() || names_directory(p));
        Ok(Evidence {
            manifest: dir.map(Manifest::open).transpose()?,
            report: report.map(csv::Report::create).transpose()?,
        })
    }

    fn wanted(&self) -> bool {
        self.manifest.is_some() || self.report.is_some()
    }

    /// Records a download in the manifest, if there is one.
    fn delivered(&self, done: &Downloaded, origin: Origin) -> Result<(), Error> {
        match &self.manifest {
            Some(m) => m.record_all(&[Entry::of_download(m, done, origin)]),
            None => Ok(()),
        }
    }

    /// Adds a row to the report, if there is one.
    fn row(&self, row: &csv::ReportRow) -> Result<(), Error> {
        match &self.report {
            Some(r) => r.add(row),
            None => Ok(()),
        }
    }
}

/// Where and how a result is saved: `-o`, `--raw`, `--force`, `--connections`.
pub struct Save<'a> {
    pub output: Option<&'a Path>,
    pub raw: bool,
    pub force: bool,
    pub connections: Option<usize>,
}

/// `mdlr result`.
pub fn result(client: &Client, out: &Output, args: &ResultArgs<'_>) -> Result<u8, Failure> {
    let id = args.action_id;
    let poll = poll_policy(args.wait);
    let action = match args.which {
        Which::Index(i) if args.wait.enabled => {
            client.wait_for_command(id, i, args.wait.timeout, poll)
        }
        Which::All if args.wait.enabled => {
            client.wait_for(id, args.wait.timeout, poll, MachineAction::is_finished)
        }
        _ => client.action(id),
    }
    .context(|| format!("cannot read action {id}"))?;
    let indexes: Vec<u32> = match args.which {
        Which::Index(i) => vec![i],
        Which::All => {
            if let Some(dir) = args.save.output {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Io {
                        path: dir.to_owned(),
                        op: "create directory",
                        source: e,
                    })
                    .map_err(Failure::from)?;
            }
            action.command_indexes()
        }
    };
    if indexes.is_empty() {
        return Err(Error::NoSuchCommand {
            action_id: id.to_owned(),
            index: 0,
            count: 0,
        }
        .into());
    }
    let evidence = Evidence::open(&args.save, args.which == Which::All, args.report)?;
    let mut status = None;
    let mut first_error = None;
    for index in indexes {
        let mut row = csv::ReportRow {
            machine: action.computer_dns_name.clone().unwrap_or_default(),
            machine_id: action.machine_id.clone().unwrap_or_default(),
            action_id: Some(id.to_owned()),
            status: action.status_or_unknown().to_string(),
            ..csv::ReportRow::default()
        };
        let delivered = deliver(client, out, args, &action, index, &evidence, &mut row);
        if let Err(Failure::Error { error, .. }) = &delivered {
            row.error = Some(error.to_string());
        }
        evidence.row(&row)?;
        match delivered {
            Ok(code) => {
                status.get_or_insert(code);
                if code != 0 && status == Some(0) {
                    status = Some(code);
                }
            }
            Err(Failure::BrokenPipe) => return Err(Failure::BrokenPipe),
            Err(f) if args.which == Which::All => {
                if let Failure::Error { error, context, .. } = &f {
                    out.report(error, context.as_deref());
                }
                first_error.get_or_insert(f.exit_status());
            }
            Err(f) => return Err(f),
        }
    }
    Ok(first_error.or(status).unwrap_or(0))
}

/// Whether `-o PATH` names a directory by its form: it ends with a separator.
fn names_directory(path: &Path) -> bool {
    let s = path.as_os_str().to_string_lossy();
    s.ends_with('/') || s.ends_with(std::path::MAIN_SEPARATOR)
}

/// `--poll-interval P`: the longest interval between looks. The first look at a fresh
/// action comes after a fifth of it (1 s by default), and no two looks come closer
/// together than that; in between, `mdlr result|action --wait` lengthens the interval
/// by half each time, and a batch looks as often as the quotas leave room for.
pub(crate) fn poll_policy(wait: Wait) -> PollPolicy {
    PollPolicy::new(wait.poll / 5, wait.poll)
}

/// Fetches and delivers the result of one command, recording it in the evidence and
/// in its report `row`.
fn deliver(
    client: &Client,
    out: &Output,
    args: &ResultArgs<'_>,
    action: &MachineAction,
    index: u32,
    evidence: &Evidence,
    row: &mut csv::ReportRow,
) -> Result<u8, Failure> {
    let id = args.action_id;
    let context = || format!("command {index} of action {id}");
    let kind = match action.result_type(index) {
        Err(e @ Error::NotFinished { .. }) if args.wait.enabled => {
            return Err(e).context(|| {
                format!(
                    "gave up waiting after {}",
                    crate::output::human_duration(args.wait.timeout)
                )
            });
        }
        other => other?,
    };
    // A transcript asked for as it is, or to be saved as a file, is a plain download.
    if kind == CommandType::RunScript && args.save.output.is_none() && args.save.raw {
        let bytes = client.transcript_bytes(id, index).context(context)?;
        out.print_bytes(&bytes)?;
        return Ok(0);
    }
    let (request, bar) = crate::progress::attach(
        download_request(args)?.sha256(evidence.wanted()),
        out.progress,
        &format!("{id} #{index}"),
    );
    // With -o, a transcript is saved as the host holds it.
    let result = if kind == CommandType::RunScript && args.save.output.is_some() {
        let request = request
            .gunzip(Gunzip::Off)
            .fallback_name(format!("{id}-{index}.json"));
        client
            .download_result(id, index, &request)
            .map(CommandResult::File)
    } else {
        client.result_of(action, index, &request)
    };
    drop(bar);
    match result.context(context)? {
        CommandResult::NoResult => {
            if out.json {
                out.json_line(&json!({
                    "action_id": id, "index": index, "type": "PutFile", "result": null,
                }))?;
            } else {
                out.note(&format!(
                    "command {index} of action {id} is a PutFile: it has no result"
                ));
            }
            Ok(0)
        }
        CommandResult::Transcript { transcript: t, .. } => {
            row.exit_code = Some(t.exit_code);
            if out.json {
                out.json_line(&json!({
                    "action_id": id,
                    "index": index,
                    "script_name": t.script_name,
                    "exit_code": t.exit_code,
                    "script_output": t.script_output,
                    "script_errors": t.script_errors,
                }))?;
                Ok(0)
            } else {
                out.print(&t.script_output)?;
                out.eprint(&t.script_errors);
                Ok(t.exit_status())
            }
        }
        CommandResult::File(done) => {
            evidence.delivered(&done, Origin::of(action, Some(index)))?;
            row.file = Some(done.path.display().to_string());
            row.sha256 = done.sha256.clone();
            saved(out, id, index, &kind, &done)?;
            Ok(0)
        }
        _ => Ok(0),
    }
}

/// Where and how `mdlr result` saves a file.
fn download_request(args: &ResultArgs<'_>) -> Result<DownloadRequest, Failure> {
    save_as(&args.save, args.which == Which::All)
}

/// The download request of `save`: `-o` names a file, or a directory (one that exists,
/// a path ending in a separator, or any path when `always_dir`); by default the current
/// directory. `--raw` keeps the bytes as sent; `--force` replaces a file.
fn save_as(save: &Save<'_>, always_dir: bool) -> Result<DownloadRequest, Failure> {
    let request = match save.output {
        Some(p) if p.is_dir() || always_dir => DownloadRequest::to_dir(p),
        Some(p) if names_directory(p) => {
            std::fs::create_dir_all(p).map_err(|e| Error::Io {
                path: p.to_owned(),
                op: "create directory",
                source: e,
            })?;
            DownloadRequest::to_dir(p)
        }
        Some(p) => DownloadRequest::to_file(p),
        None => DownloadRequest::to_dir("."),
    };
    let request = request
        .gunzip(if save.raw { Gunzip::Off } else { Gunzip::Auto })
        .overwrite(save.force);
    Ok(match save.connections {
        Some(n) => request.connections(n),
        None => request,
    })
}

/// `mdlr fetch`: a bare result link, downloaded as `mdlr result` would, without any
/// API call or credential. `-` reads the link from stdin.
pub fn fetch(
    transport: TransportConfig,
    out: &Output,
    url: &str,
    save: &Save<'_>,
) -> Result<u8, Failure> {
    let url = match url {
        "-" => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Error::Io {
                    path: "standard input".into(),
                    op: "read",
                    source: e,
                })?;
            line.trim().to_owned()
        }
        url => url.trim().to_owned(),
    };
    if url.is_empty() {
        return Err(Error::InvalidArgument {
            message: "no link given (stdin was empty)".to_owned(),
        }
        .into());
    }
    let link = ResultLink::new(url);
    let downloader = Downloader::new(transport)?;
    let evidence = Evidence::open(save, false, None)?;
    let label = link
        .redacted()
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .map(|n| clean(n).into_owned())
        .unwrap_or_default();
    let (request, bar) = crate::progress::attach(
        save_as(save, false)?.sha256(evidence.wanted()),
        out.progress,
        &label,
    );
    let done = downloader.download(&link, &request);
    drop(bar);
    let done = done.context(|| format!("cannot download {}", link.redacted()))?;
    // A bare link: no machine, action or command to say where it came from.
    evidence.delivered(&done, Origin::default())?;
    if done.not_gzip {
        out.warn(&not_gzip(&done, &label));
    }
    if out.json {
        out.json_line(&json!({
            "path": done.path,
            "bytes": done.written,
            "received": done.received,
            "original_name": done.original_name,
            "gunzipped": done.gunzipped,
            "not_gzip": done.not_gzip,
            "md5_checked": done.md5_checked,
        }))?;
        return Ok(0);
    }
    out.print(&saved_line(&done))?;
    Ok(0)
}

/// The warning for a result that should have been gzip and was not.
pub fn not_gzip(done: &Downloaded, what: &str) -> String {
    format!(
        "{what} is not gzip (it does not start with 1f 8b): saved as it came, {} bytes, to {}",
        done.written,
        done.path.display()
    )
}

/// `saved PATH (N bytes, from NAME)`: where a download went.
fn saved_line(done: &Downloaded) -> String {
    let from = done
        .original_name
        .as_deref()
        .map(|n| format!(", from {}", clean(n)))
        .unwrap_or_default();
    format!(
        "saved {} ({} bytes{from})\n",
        done.path.display(),
        done.written
    )
}

/// Says where a downloaded result went.
pub fn saved(
    out: &Output,
    action_id: &str,
    index: u32,
    kind: &CommandType,
    done: &Downloaded,
) -> Result<(), Failure> {
    if done.not_gzip {
        out.warn(&not_gzip(
            done,
            &format!("command {index} of action {action_id}"),
        ));
    }
    if out.json {
        return out.json_line(&json!({
            "action_id": action_id,
            "index": index,
            "type": kind.as_str(),
            "path": done.path,
            "bytes": done.written,
            "received": done.received,
            "original_name": done.original_name,
            "not_gzip": done.not_gzip,
        }));
    }
    out.print(&saved_line(done))
}

/// `mdlr action`.
pub fn action(client: &Client, out: &Output, action_id: &str, wait: Wait) -> Result<u8, Failure> {
    let action = if wait.enabled {
        client.wait_for(
            action_id,
            wait.timeout,
            poll_policy(wait),
            MachineAction::is_finished,
        )
    } else {
        client.action(action_id)
    }
    .context(|| format!("cannot read action {action_id}"))?;
    if out.json {
        let value = serde_json::to_value(&action).unwrap_or_default();
        out.json_line(&value)?;
    } else {
        out.print(&describe_action(action_id, &action))?;
    }
    if !wait.enabled {
        return Ok(0);
    }
    Ok(match action.status_or_unknown() {
        ActionStatus::Succeeded => 0,
        ActionStatus::Failed | ActionStatus::Cancelled => output::EX_UNAVAILABLE,
        ActionStatus::TimeOut => output::EX_TEMPFAIL,
        _ => {
            out.note(&format!(
                "gave up waiting after {}; the action is still {}",
                crate::output::human_duration(wait.timeout),
                action.status_or_unknown()
            ));
            output::EX_TEMPFAIL
        }
    })
}

/// A machine action as a person reads it.
pub fn describe_action(action_id: &str, a: &MachineAction) -> String {
    let mut s = String::new();
    let mut line = |label: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            s.push_str(&format!("{label:<10}{}\n", clean(&v)));
        }
    };
    line(
        "action",
        Some(a.id.clone().unwrap_or_else(|| action_id.to_owned())),
    );
    line("status", Some(a.status_or_unknown().to_string()));
    line("type", a.action_type.clone());
    let machine = match (&a.machine_id, &a.computer_dns_name) {
        (Some(id), Some(name)) => Some(format!("{name} ({id})")),
        (id, name) => id.clone().or(name.clone()),
    };
    line("machine", machine);
    line("requestor", a.requestor.clone());
    line("comment", a.requestor_comment.clone());
    line("created", a.creation_date_time_utc.clone());
    line("updated", a.last_update_date_time_utc.clone());
    line("cancelled", a.cancellation_requestor.clone());
    line(
        "error",
        a.error_h_result.filter(|e| *e != 0).map(|e| e.to_string()),
    );
    if !a.commands.is_empty() {
        s.push_str("commands\n");
        for (i, c) in a.commands.iter().enumerate() {
            let (kind, what) = match &c.command {
                Some(cmd) => {
                    let what = match cmd.command_type {
                        CommandType::RunScript => {
                            let name = cmd.param("ScriptName").unwrap_or("?");
                            match cmd.param("Args") {
                                Some(a) if !a.is_empty() => format!("{name} {a}"),
                                _ => name.to_owned(),
                            }
                        }
                        CommandType::GetFile => cmd.param("Path").unwrap_or("?").to_owned(),
                        CommandType::PutFile => cmd.param("FileName").unwrap_or("?").to_owned(),
                        _ => String::new(),
                    };
                    (cmd.command_type.to_string(), what)
                }
                None => ("?".to_owned(), String::new()),
            };
            let status = c
                .command_status
                .as_ref()
                .map_or("?".to_owned(), |s| s.to_string());
            s.push_str(&format!(
                "  {:<3}{:<11}{:<11}{}\n",
                c.index.unwrap_or(i as u32),
                clean(&kind),
                clean(&status),
                clean(&what)
            ));
            for e in &c.errors {
                s.push_str(&format!("       error: {}\n", clean(e)));
            }
        }
    }
    s
}
