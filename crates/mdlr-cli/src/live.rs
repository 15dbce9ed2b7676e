//! `run`, `getfile`, `putfile` and `package`: start live response (or investigation
//! package collections) on one machine or many, wait, and deliver every result.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mdlr::files::{safe_file_name, write_file};
use mdlr::{
    ActionStatus, BatchEvent, BatchOptions, BatchWork, Client, CommandResult, CommandStatus,
    CommandType, Deferral, DownloadRequest, Error, Gunzip, LiveResponse, MachineAction, Outcome,
    Report, Target,
};
use serde_json::{Value, json};

use crate::admin::resolve;
use crate::args::Live;
use crate::csv;
use crate::interrupt;
use crate::journal::Journal;
use crate::manifest::{Entry, Manifest, Origin, sha256_bytes};
use crate::output::{self, Context, Failure, Output};

/// `mdlr run | getfile | putfile | package`.
pub fn live(client: &Client, out: &Output, args: &Live) -> Result<u8, Failure> {
    let work = work(args)?;
    let mut inputs = args.machines.clone();
    if let Some(file) = &args.machines_file {
        inputs.extend(read_machines_file(file)?);
    }
    if inputs.is_empty() {
        return Err(Error::InvalidArgument {
            message: "no machine given".to_owned(),
        }
        .into());
    }
    let targets = resolve(client, &inputs)?;
    let single = targets.len() == 1 && args.output.is_none();

    let journal = match &args.output {
        Some(dir) => Some(Journal::open(dir, &work, args.resume)?),
        None => None,
    };
    if let Some(j) = &journal
        && matches!(work, BatchWork::LiveResponse(_))
    {
        // The interrupted run's starts still count against the quotas.
        client.record_earlier_starts(&j.earlier_starts());
    }
    let (mut fresh, mut resumed, mut finished) = (Vec::new(), Vec::new(), Vec::new());
    for t in targets {
        match journal.as_ref().and_then(|j| j.state_of(&t.machine_id)) {
            Some((action_id, Some(status))) => finished.push((t, action_id, status)),
            Some((action_id, None)) => resumed.push((t, action_id)),
            None => fresh.push(t),
        }
    }
    if args.resume
        && let Some(j) = &journal
        && let Some(opened) = j.opened()
        && !fresh.is_empty()
    {
        for (t, action_id) in adopt_unjournaled(client, &mut fresh, &work, opened)? {
            j.started(&t.machine_id, &t.name, &action_id);
            resumed.push((t, action_id));
        }
    }
    let total = fresh.len() + resumed.len() + finished.len();
    let ticker = Ticker::new(out, total);
    let manifest = match &args.output {
        Some(dir) => Some(Manifest::open(dir)?),
        None => None,
    };
    let report = match &args.report {
        Some(path) => Some(csv::Report::create(path)?),
        None => None,
    };
    let delivery = Delivery {
        client,
        out,
        args,
        single,
        journal: journal.as_ref(),
        manifest: manifest.as_ref(),
        report: report.as_ref(),
        ticker: &ticker,
        worst: Mutex::new(0),
        printing: Mutex::new(()),
    };
    for (t, action_id, status) in &finished {
        delivery.line(
            t,
            Some(action_id),
            *status,
            "done in an earlier run",
            Vec::new(),
        );
        delivery.note_status(*status);
    }
    interrupt::watch(args.output.is_some());
    for (t, action_id) in &resumed {
        interrupt::started(action_id, &t.name);
    }
    let mut options = BatchOptions::default()
        .max_in_flight(args.max_in_flight)
        .on_busy(args.on_busy)
        .wait_timeout(args.wait.timeout)
        .offline_after(args.wait.offline_after)
        .poll(crate::commands::poll_policy(args.wait))
        .wait(!args.no_wait);
    if args.wait.timeout_given {
        // --wait-timeout given: it counts from the start, queued or not.
        options = options.queue_timeout(None);
    }
    let on_event = |event: BatchEvent<'_>| match event {
        BatchEvent::Started { target, action_id } => {
            interrupt::started(action_id, &target.name);
            if let Some(j) = &journal {
                j.started(&target.machine_id, &target.name, action_id);
            }
        }
        BatchEvent::Busy {
            target,
            other_action,
        } => ticker.note(&format!(
            "{} is busy with action {other_action}; waiting for it to end",
            target.name
        )),
        BatchEvent::PollError(e) => ticker.note(&format!("could not read action states: {e}")),
        BatchEvent::StartDeferred {
            target,
            reason,
            retry_in,
        } => ticker.note(&format!(
            "{}: {}; trying again in {}",
            target.name,
            match reason {
                Deferral::SessionCap { cap } => format!(
                    "the service refused a session for too many at once; \
                     keeping to {cap} at a time for a while"
                ),
                Deferral::BusyUnseen => "busy with a session the API does not show \
                     (one opened in the portal?)"
                    .to_owned(),
                _ => "the service throttled the start; starts pause".to_owned(),
            },
            output::human_duration(retry_in)
        )),
        BatchEvent::ProbablyOffline {
            target,
            action_id,
            machine,
        } => ticker.note(&format!(
            "{}: action {action_id} still Pending after {}: the machine is probably \
             offline{}; the service keeps the action queued for up to 2 hours",
            target.name,
            output::human_duration(args.wait.offline_after),
            machine
                .map(|m| format!(
                    " (last seen {}, health {})",
                    m.last_seen.as_deref().unwrap_or("unknown"),
                    m.health_status.as_deref().unwrap_or("unknown")
                ))
                .unwrap_or_default()
        )),
        BatchEvent::Progress(counts) => ticker.show(counts),
        _ => {}
    };
    let on_done = |report: Report| {
        if let Some(id) = &report.action_id {
            interrupt::ended(id);
        }
        delivery.machine(report);
    };
    let stats = client
        .batch(work)
        .targets(fresh)
        .resume(resumed)
        .options(options)
        .on_event(on_event)
        .for_each(on_done);
    ticker.clear();
    interrupt::done();
    let worst = *delivery.worst.lock().unwrap_or_else(|e| e.into_inner());
    if !single && !out.json {
        out.note(&format!(
            "{total} machine(s), {} started, {} poll round(s), {:.1} s; exit status {worst}",
            stats.started,
            stats.poll_rounds,
            stats.elapsed.as_secs_f64()
        ));
    }
    Ok(worst)
}

/// Finds the actions an interrupted run started but could not journal (killed between
/// the service's answer and the journal line): actions of the batch's type on the
/// `fresh` machines with its comment, created since the journal was opened (less ten
/// minutes for clocks that differ). They are followed instead of started again; the
/// machines are taken out of `fresh`.
fn adopt_unjournaled(
    client: &Client,
    fresh: &mut Vec<Target>,
    work: &BatchWork,
    opened: std::time::SystemTime,
) -> Result<Vec<(Target, String)>, Failure> {
    let since = iso_utc(opened - std::time::Duration::from_secs(600));
    let mut newest: std::collections::HashMap<String, (String, String)> = Default::default();
    for chunk in fresh.chunks(20) {
        let mut query = mdlr::ActionQuery::new();
        query.machine_ids = chunk.iter().map(|t| t.machine_id.clone()).collect();
        query.action_type = Some(work.action_type().to_owned());
        let found = client
            .list_actions(&query)
            .context(|| "cannot look for actions the interrupted run started".to_owned())?;
        for a in found {
            let (Some(id), Some(machine), Some(created)) =
                (a.id, a.machine_id, a.creation_date_time_utc)
            else {
                continue;
            };
            let ours = a.requestor_comment.as_deref() == Some(work.comment());
            // ISO 8601 in UTC compares as text, to the second.
            let recent = created.get(..19).unwrap_or("") >= since.as_str();
            let newer = newest
                .get(&machine.to_ascii_lowercase())
                .is_none_or(|(_, c)| created > *c);
            if ours && recent && newer {
                newest.insert(machine.to_ascii_lowercase(), (id, created));
            }
        }
    }
    let mut adopted = Vec::new();
    fresh.retain(|t| match newest.remove(&t.machine_id) {
        Some((id, _)) => {
            adopted.push((t.clone(), id));
            false
        }
        None => true,
    });
    Ok(adopted)
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC.
fn iso_utc(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    crate::output::utc(secs, 'T')
}

/// What the batch starts on each machine, checked.
fn work(args: &Live) -> Result<BatchWork, Error> {
    if args.command == "package" {
        let comment = args.comment.clone();
        return Ok(BatchWork::investigation_package(
            comment.unwrap_or_else(|| "mdlr package".to_owned()),
        ));
    }
    let request = live_request(args);
    request.validate()?;
    Ok(BatchWork::LiveResponse(request))
}

fn live_request(args: &Live) -> LiveResponse {
    let what = match (&args.script, args.gets.first(), args.puts.first()) {
        (Some((s, _)), _, _) => format!("run {s}"),
        (None, Some(g), _) => format!("getfile {g}"),
        (None, None, Some(p)) => format!("putfile {p}"),
        _ => "live response".to_owned(),
    };
    let mut request = LiveResponse::new(
        args.comment
            .clone()
            .unwrap_or_else(|| format!("mdlr {what}")),
    );
    for p in &args.puts {
        request = request.put_file(p);
    }
    if let Some((script, script_args)) = &args.script {
        request = request.run_script(script, script_args);
    }
    for g in &args.gets {
        request = request.get_file(g);
    }
    request
}

/// Machines from a file: one per line; `#` starts a comment.
fn read_machines_file(path: &Path) -> Result<Vec<String>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_owned(),
        op: "read",
        source: e,
    })?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Delivers each machine's results as its action ends, from the finisher threads.
struct Delivery<'a> {
    client: &'a Client,
    out: &'a Output,
    args: &'a Live,
    single: bool,
    journal: Option<&'a Journal>,
    /// With `-o DIR`: the evidence manifest of DIR.
    manifest: Option<&'a Manifest>,
    /// With `--report FILE`: a row per machine and command.
    report: Option<&'a csv::Report>,
    ticker: &'a Ticker,
    worst: Mutex<u8>,
    printing: Mutex<()>,
}

/// One delivered result: its `--json` record, a script's exit code, and the file it
/// went to with its SHA-256 (for the report).
struct Delivered {
    value: Value,
    exit_code: Option<i64>,
    file: Option<PathBuf>,
    sha256: Option<String>,
}

/// What one machine prints, gathered so that it comes out in one piece.
#[derive(Default)]
struct Block {
    out: String,
    err: String,
}

impl Delivery<'_> {
    fn note_status(&self, status: u8) {
        let mut worst = self.worst.lock().unwrap_or_else(|e| e.into_inner());
        // Ties (two script exit codes) go to the higher code, whatever order the
        // machines finished in, so that a rerun ends the same way.
        if (severity(status), status) > (severity(*worst), *worst) {
            *worst = status;
        }
    }

    fn machine(&self, report: Report) {
        let target = report.target;
        let id = report.action_id.as_deref();
        let started_only = matches!(report.outcome, Outcome::Started);
        let ended = matches!(report.outcome, Outcome::Ended);
        let mut clean = started_only;
        let mut block = Block::default();
        let (status, what, results) = match report.outcome {
            Outcome::Started => (0, "started".to_owned(), Vec::new()),
            Outcome::Ended => match &report.action {
                Some(action) => {
                    let (status, what, results, ok) =
                        self.results(&target, id.unwrap_or(""), action, &mut block);
                    clean = ok;
                    (status, what, results)
                }
                None => (output::EX_UNAVAILABLE, "ended".to_owned(), Vec::new()),
            },
            // Skipping was asked for: a skipped machine does not fail the batch.
            Outcome::Busy { other_action } => (
                match self.args.on_busy {
                    mdlr::OnBusy::Skip => 0,
                    _ => output::EX_TEMPFAIL,
                },
                match (other_action, self.args.on_busy) {
                    (_, mdlr::OnBusy::Skip) => "busy with another session; skipped".to_owned(),
                    (Some(o), _) => format!("busy with action {o}; not started"),
                    (None, _) => "busy with another session; not started".to_owned(),
                },
                Vec::new(),
            ),
            Outcome::WaitTimedOut => (
                output::EX_TEMPFAIL,
                format!(
                    "still {} after the wait timeout; pick it up with `mdlr result {} --all --wait`",
                    report
                        .action
                        .as_ref()
                        .map_or("running".to_owned(), |a| a.status_or_unknown().to_string()),
                    id.unwrap_or("?")
                ),
                Vec::new(),
            ),
            Outcome::StartFailed(e) => (
                output::exit_status(&e),
                format!("not started: {}", one_line(&e)),
                Vec::new(),
            ),
            Outcome::PollFailed(e) => (output::exit_status(&e), one_line(&e), Vec::new()),
            _ => (1, "unknown outcome".to_owned(), Vec::new()),
        };
        if !ended {
            self.row(csv::ReportRow {
                machine: target.name.clone(),
                machine_id: target.machine_id.clone(),
                action_id: id.map(str::to_owned),
                status: match status {
                    0 if started_only => "started".to_owned(),
                    0 => "skipped".to_owned(),
                    _ => "not done".to_owned(),
                },
                error: (status != 0).then(|| what.clone()),
                ..csv::ReportRow::default()
            });
        }
        // Only an action whose results were delivered is done; one started and not
        // waited for, or still running, is for a later --resume to follow.
        if let (Some(j), Some(id)) = (self.journal, id)
            && !matches!(status, output::EX_TEMPFAIL)
            && !started_only
        {
            j.finished(&target.machine_id, id, status);
        }
        self.note_status(status);
        // One machine's output stays together, whatever the other finishers print.
        let _printing = self.printing.lock().unwrap_or_else(|e| e.into_inner());
        self.ticker.clear();
        let _ = self.out.print(&block.out);
        self.out.eprint(&block.err);
        if self.single && !clean && !self.out.json {
            eprintln!(
                "mdlr: {}: {what} (action {})",
                target.name,
                id.unwrap_or("none")
            );
            return;
        }
        self.line(&target, id, status, &what, results);
    }

    /// Delivers every result of an ended action; returns the machine's status, a
    /// summary, the results for --json, and whether all went well.
    fn results(
        &self,
        target: &Target,
        id: &str,
        action: &MachineAction,
        block: &mut Block,
    ) -> (u8, String, Vec<Value>, bool) {
        if self.args.command == "package" {
            return self.package(target, id, action, block);
        }
        let status = action.status_or_unknown();
        let mut worst = match status {
            ActionStatus::Succeeded => 0,
            ActionStatus::TimeOut => output::EX_TEMPFAIL,
            _ => output::EX_UNAVAILABLE,
        };
        let mut script_code = None;
        let mut results = Vec::new();
        let mut problems = Vec::new();
        let mut put_files = Vec::new();
        for (i, entry) in action.commands.iter().enumerate() {
            let index = entry.index.unwrap_or(i as u32);
            let mut row = csv::ReportRow {
                machine: target.name.clone(),
                machine_id: target.machine_id.clone(),
                action_id: Some(id.to_owned()),
                status: status.to_string(),
                ..csv::ReportRow::default()
            };
            match action.result_type(index) {
                Ok(CommandType::PutFile) if self.out.json => results.push(json!({
                    "index": index, "type": "PutFile", "result": null,
                })),
                Ok(CommandType::PutFile) => put_files.push(index),
                Ok(kind) => match self.one_result(target, action, index, &kind, block) {
                    Ok(d) => {
                        script_code = script_code.or(d.exit_code.filter(|c| *c != 0));
                        row.exit_code = d.exit_code;
                        row.file = d.file.map(|f| f.display().to_string());
                        row.sha256 = d.sha256;
                        results.push(d.value);
                    }
                    Err(e) => {
                        let s = output::exit_status(&e);
                        if severity(s) > severity(worst) {
                            worst = s;
                        }
                        row.error = Some(one_line(&e));
                        problems.push(format!("command {index}: {}", one_line(&e)));
                    }
                },
                Err(Error::CommandFailed {
                    errors,
                    command_status,
                    ..
                }) => {
                    row.error = Some(errors.join("; "));
                    if command_status == Some(CommandStatus::Failed) {
                        problems.push(format!(
                            "command {index} failed{}",
                            errors
                                .first()
                                .map(|e| format!(": {}", output::clean(e)))
                                .unwrap_or_default()
                        ));
                    }
                }
                Err(e) => {
                    row.error = Some(one_line(&e));
                    problems.push(format!("command {index}: {}", one_line(&e)));
                }
            }
            self.row(row);
        }
        // A PutFile has no result: say so when nothing else was delivered.
        if results.is_empty() && problems.is_empty() && self.single && !self.out.quiet {
            for index in put_files {
                block.err.push_str(&format!(
                    "mdlr: command {index} of action {id} is a PutFile: it has no result\n"
                ));
            }
        }
        // Like `mdlr result`: a script's exit code becomes mdlr's, except with --json,
        // where it is in the record and exit 0 means every result was retrieved.
        if worst == 0
            && !self.out.json
            && let Some(code) = script_code
        {
            worst = u8::try_from(code).unwrap_or(1);
        }
        let clean = status == ActionStatus::Succeeded && problems.is_empty();
        let mut what = status.to_string();
        if let Some(code) = script_code {
            what.push_str(&format!(", script exit code {code}"));
        }
        for p in problems {
            what.push_str("; ");
            what.push_str(&p);
        }
        (worst, what, results, clean)
    }

    /// Delivers the investigation package of a collection that ended: the same as
    /// [`Delivery::results`] for a live response.
    fn package(
        &self,
        target: &Target,
        id: &str,
        action: &MachineAction,
        block: &mut Block,
    ) -> (u8, String, Vec<Value>, bool) {
        let status = action.status_or_unknown();
        let mut row = csv::ReportRow {
            machine: target.name.clone(),
            machine_id: target.machine_id.clone(),
            action_id: Some(id.to_owned()),
            status: status.to_string(),
            ..csv::ReportRow::default()
        };
        let outcome = match status {
            ActionStatus::Succeeded => self.one_package(target, action, block),
            ActionStatus::TimeOut => Err((output::EX_TEMPFAIL, None)),
            _ => Err((output::EX_UNAVAILABLE, None)),
        };
        let (code, what, results, clean) = match outcome {
            Ok(d) => {
                row.file = d.file.map(|f| f.display().to_string());
                row.sha256 = d.sha256;
                (0, status.to_string(), vec![d.value], true)
            }
            Err((code, None)) => {
                row.error = Some(format!("the collection ended {status}"));
                (code, status.to_string(), Vec::new(), false)
            }
            Err((code, Some(e))) => {
                let problem = format!("the package: {}", one_line(&e));
                row.error = Some(one_line(&e));
                (code, format!("{status}; {problem}"), Vec::new(), false)
            }
        };
        self.row(row);
        (code, what, results, clean)
    }

    /// Downloads one package (or finds it delivered by an earlier run).
    fn one_package(
        &self,
        target: &Target,
        action: &MachineAction,
        block: &mut Block,
    ) -> Result<Delivered, (u8, Option<Error>)> {
        let id = action.id.as_deref().unwrap_or_default();
        let base = json!({ "type": action.action_type });
        if let Some(d) = self.earlier(id, None, &base) {
            return Ok(d);
        }
        let fail = |e: Error| (output::exit_status(&e), Some(e));
        let dir = self.dir_for(target).map_err(fail)?;
        let (request, bar) =
            self.request_into(dir, Gunzip::Off, &format!("{} package", target.name));
        let done = self.client.package_of(action, &request).map_err(fail)?;
        drop(bar);
        self.file_delivered(target, done, action, None, base, block)
            .map_err(fail)
    }

    /// What an earlier run delivered of command `index` of action `id` (`None`: its
    /// package), as the journal or the manifest says, recorded again in the journal (a
    /// run killed after the manifest line and before the journal's).
    fn earlier(&self, id: &str, index: Option<u32>, base: &Value) -> Option<Delivered> {
        let path = self
            .journal
            .and_then(|j| j.downloaded(id, index.unwrap_or(0)))
            .or_else(|| self.manifest.and_then(|m| m.delivered(id, index)))?;
        self.record(id, index.unwrap_or(0), &path);
        Some(Delivered {
            value: merge(
                base.clone(),
                json!({ "path": path, "skipped": "downloaded before" }),
            ),
            exit_code: None,
            sha256: None,
            file: Some(path),
        })
    }

    /// How a result or package is downloaded into `dir` (the current directory when
    /// `None`): the options, and a progress bar for one machine.
    fn request_into(
        &self,
        dir: Option<PathBuf>,
        gunzip: Gunzip,
        label: &str,
    ) -> (DownloadRequest, crate::progress::Shown) {
        let dir = dir.unwrap_or_else(|| PathBuf::from("."));
        let mut request = DownloadRequest::to_dir(dir)
            .gunzip(gunzip)
            .overwrite(self.overwrite())
            .sha256(self.manifest.is_some() || self.report.is_some());
        if let Some(n) = self.args.connections {
            request = request.connections(n);
        }
        // One download at a time: a bar. In a batch the live count says enough.
        crate::progress::attach(request, self.single && self.out.progress, label)
    }

    /// A file downloaded for command `index` of `action` (`None`: its package): in the
    /// manifest and the journal, said on one machine, warned about when it was not
    /// gzip.
    fn file_delivered(
        &self,
        target: &Target,
        done: mdlr::Downloaded,
        action: &MachineAction,
        index: Option<u32>,
        base: Value,
        block: &mut Block,
    ) -> Result<Delivered, Error> {
        let id = action.id.as_deref().unwrap_or_default();
        if let Some(m) = self.manifest {
            m.record_all(&[Entry::of_download(m, &done, Origin::of(action, index))])?;
        }
        self.record(id, index.unwrap_or(0), &done.path);
        if self.single && !self.out.json {
            block.out.push_str(&format!(
                "saved {} ({} bytes)\n",
                done.path.display(),
                done.written
            ));
        }
        let mut value = merge(base, json!({ "path": done.path, "bytes": done.written }));
        if done.not_gzip {
            let what = match index {
                Some(i) => format!("{}: command {i} of action {id}", target.name),
                None => format!("{}: the package of action {id}", target.name),
            };
            block.err.push_str(&format!(
                "mdlr: warning: {}\n",
                output::clean(&crate::commands::not_gzip(&done, &what))
            ));
            value = merge(value, json!({ "not_gzip": true }));
        }
        Ok(Delivered {
            value,
            exit_code: None,
            sha256: done.sha256,
            file: Some(done.path),
        })
    }

    /// Adds a row to the report, if there is one (a failure to write it is said once
    /// in the summary's status, not here: the results matter more).
    fn row(&self, row: csv::ReportRow) {
        if let Some(r) = self.report
            && let Err(e) = r.add(&row)
        {
            self.ticker.note(&format!("cannot add to the report: {e}"));
        }
    }

    /// Fetches one result: its --json record, a script's exit code, and the file.
    fn one_result(
        &self,
        target: &Target,
        action: &MachineAction,
        index: u32,
        kind: &CommandType,
        block: &mut Block,
    ) -> Result<Delivered, Error> {
        let id = action.id.as_deref().unwrap_or_default();
        let base = json!({ "index": index, "type": kind.as_str() });
        if let Some(d) = self.earlier(id, Some(index), &base) {
            return Ok(d);
        }
        if *kind == CommandType::RunScript {
            // Transcripts are saved with -o, printed otherwise.
            let dir = match self.args.output {
                Some(_) => self.dir_for(target)?,
                None => None,
            };
            let bytes = self.client.transcript_bytes(id, index)?;
            let t = mdlr::Transcript::parse(&bytes)?;
            let code = Some(t.exit_code);
            if self.out.json && dir.is_none() {
                return Ok(Delivered {
                    value: merge(base, json!(t)),
                    exit_code: code,
                    file: None,
                    sha256: None,
                });
            }
            let (mut sha, mut file) = (None, None);
            let value = match &dir {
                Some(dir) => {
                    let stem = format!("{index}-{}", file_stem(&t.script_name));
                    let json_path = dir.join(format!("{stem}.json"));
                    let mut files = vec![(json_path.clone(), &bytes[..])];
                    files.push((dir.join(format!("{stem}.out")), t.script_output.as_bytes()));
                    if !t.script_errors.is_empty() {
                        files.push((dir.join(format!("{stem}.err")), t.script_errors.as_bytes()));
                    }
                    for (path, content) in &files {
                        write_file(path, content, self.overwrite())?;
                    }
                    if let Some(m) = self.manifest {
                        let served = sha256_bytes(&bytes);
                        let entries: Vec<Entry> = files
                            .iter()
                            .map(|(path, content)| Entry {
                                path: m.relative(path),
                                size: content.len() as u64,
                                sha256: sha256_bytes(content),
                                sha256_served: served.clone(),
                                size_served: bytes.len() as u64,
                                md5_checked: false,
                                origin: Origin::of(action, Some(index)),
                            })
                            .collect();
                        m.record_all(&entries)?;
                    }
                    self.record(id, index, &json_path);
                    sha = Some(sha256_bytes(&bytes));
                    file = Some(json_path.clone());
                    merge(base, json!({ "path": json_path, "exit_code": t.exit_code }))
                }
                None => {
                    let mut text = String::new();
                    if !self.single {
                        text.push_str(&format!(
                            "== {} (command {index}, exit code {})\n",
                            target.name, t.exit_code
                        ));
                    }
                    text.push_str(&t.script_output);
                    if !self.single && !text.ends_with('\n') {
                        text.push('\n');
                    }
                    block.out.push_str(&text);
                    block.err.push_str(&t.script_errors);
                    merge(base, json!({ "exit_code": t.exit_code }))
                }
            };
            Ok(Delivered {
                value,
                exit_code: code,
                file,
                sha256: sha,
            })
        } else {
            let gunzip = match self.args.raw {
                true => Gunzip::Off,
                false => Gunzip::Auto,
            };
            let label = format!("{} #{index}", target.name);
            let (request, bar) = self.request_into(self.dir_for(target)?, gunzip, &label);
            let done = match self.client.result_of(action, index, &request)? {
                CommandResult::File(done) => done,
                // Only a RunScript (above) or a PutFile (never asked for) give other results.
                _ => {
                    return Ok(Delivered {
                        value: base,
                        exit_code: None,
                        file: None,
                        sha256: None,
                    });
                }
            };
            drop(bar);
            self.file_delivered(target, done, action, Some(index), base, block)
        }
    }

    /// Whether a result may replace a file of its name. With `--resume`, a file of a
    /// result the journal does not record as downloaded was left by the interrupted
    /// run (killed between writing it and recording it), so it is written again.
    fn overwrite(&self) -> bool {
        self.args.force || self.args.resume
    }

    fn record(&self, id: &str, index: u32, path: &Path) {
        if let Some(j) = self.journal {
            j.record_download(id, index, path);
        }
    }

    /// Where a machine's files go: DIR/NAME/ in batch mode, the current directory for
    /// one machine; `None` for transcripts printed rather than saved.
    fn dir_for(&self, target: &Target) -> Result<Option<PathBuf>, Error> {
        let dir = match (&self.args.output, self.single) {
            (Some(dir), _) => dir.join(machine_dir(&target.name)),
            (None, true) => return Ok(None),
            (None, false) => PathBuf::from(machine_dir(&target.name)),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
            path: dir.clone(),
            op: "create directory",
            source: e,
        })?;
        Ok(Some(dir))
    }

    /// One line per machine (or one JSON object).
    fn line(&self, target: &Target, id: Option<&str>, status: u8, what: &str, results: Vec<Value>) {
        if self.out.json {
            let _ = self.out.json_line(&json!({
                "machine": target.name,
                "machine_id": target.machine_id,
                "action_id": id,
                "exit_status": status,
                "summary": what,
                "results": results,
            }));
            return;
        }
        let text = format!("{}: {what} (action {})", target.name, id.unwrap_or("none"));
        if self.single {
            if self.args.no_wait {
                let _ = self.out.print(&format!("{}\n", id.unwrap_or("")));
            }
        } else {
            let _ = self.out.print(&format!("{text}\n"));
        }
    }
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut a, b) {
        a.extend(b);
    }
    a
}

fn one_line(e: &Error) -> String {
    let mut s = e.to_string();
    if let Some(code) = e.code() {
        s.push_str(&format!(" [{code}]"));
    }
    output::clean(&s).into_owned()
}

/// A machine's directory name: its name made safe.
fn machine_dir(name: &str) -> String {
    safe_file_name(name).unwrap_or_else(|| "machine".to_owned())
}

fn file_stem(script: &str) -> String {
    let name = safe_file_name(script).unwrap_or_else(|| "script".to_owned());
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_owned(),
        _ => name,
    }
}

/// How bad an exit status is, to pick the most severe of a batch.
fn severity(code: u8) -> u8 {
    match code {
        0 => 0,
        output::EX_CONFIG => 100,
        output::EX_NOPERM => 90,
        output::EX_USAGE => 85,
        output::EX_IOERR => 80,
        output::EX_CANTCREAT => 75,
        output::EX_DATAERR => 70,
        output::EX_UNAVAILABLE => 60,
        output::EX_NOINPUT => 55,
        output::EX_TEMPFAIL => 50,
        _ => 10,
    }
}

/// The live count per state on a terminal's stderr.
struct Ticker {
    enabled: bool,
    total: usize,
    shown: Mutex<bool>,
    quiet: bool,
}

impl Ticker {
    fn new(out: &Output, total: usize) -> Ticker {
        Ticker {
            enabled: !out.quiet && total > 1 && std::io::stderr().is_terminal(),
            total,
            shown: Mutex::new(false),
            quiet: out.quiet,
        }
    }

    fn show(&self, c: mdlr::Counts) {
        if !self.enabled {
            return;
        }
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        eprint!(
            "\r\x1b[2K{} queued · {} busy · {} pending · {} running · {}/{} done",
            c.queued, c.busy, c.pending, c.running, c.done, self.total
        );
        *shown = true;
    }

    fn clear(&self) {
        if !self.enabled {
            return;
        }
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        if *shown {
            eprint!("\r\x1b[2K");
            *shown = false;
        }
    }

    fn note(&self, text: &str) {
        if !self.quiet {
            self.clear();
            eprintln!("mdlr: {}", output::clean(text));
        }
    }
}
