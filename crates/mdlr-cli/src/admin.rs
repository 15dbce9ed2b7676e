//! The commands around live response: cancel, actions, machines, library; and turning
//! MACHINE arguments into machine ids.

use std::path::Path;

use mdlr::ids::is_machine_id;
use mdlr::{ActionQuery, ActionStatus, Client, Error, LibraryUpload, Target};
use serde_json::json;

use crate::output::{Context, Failure, Output, clean};

/// `mdlr cancel`.
pub fn cancel(
    client: &Client,
    out: &Output,
    action_id: &str,
    comment: &str,
) -> Result<u8, Failure> {
    let action = client
        .cancel_action(action_id, comment)
        .context(|| format!("cannot cancel action {action_id}"))?;
    if out.json {
        out.json_line(&serde_json::to_value(&action).unwrap_or_default())?;
    } else {
        out.print(&format!(
            "cancellation requested for action {action_id} (status {})\n",
            action.status_or_unknown()
        ))?;
    }
    Ok(0)
}

/// `mdlr actions`.
pub fn actions(
    client: &Client,
    out: &Output,
    machine: Option<&str>,
    status: Option<&str>,
    top: u32,
    csv: bool,
) -> Result<u8, Failure> {
    let mut query = ActionQuery::new();
    query.top = Some(top.clamp(1, 10_000));
    if let Some(m) = machine {
        let target = resolve(client, &[m.to_owned()])?;
        query.machine_ids = target.into_iter().map(|t| t.machine_id).collect();
    }
    if let Some(s) = status {
        let parsed = ActionStatus::from(s);
        if let ActionStatus::Other(_) = parsed {
            return Err(Error::InvalidArgument {
                message: format!(
                    "--status takes Pending, InProgress, Succeeded, Failed, TimeOut or \
                     Cancelled, not {s:?}"
                ),
            }
            .into());
        }
        query.statuses = vec![parsed];
    }
    let list = client
        .list_actions(&query)
        .context(|| "cannot list actions".to_owned())?;
    if out.json {
        for a in &list {
            out.json_line(&serde_json::to_value(a).unwrap_or_default())?;
        }
        return Ok(0);
    }
    if csv {
        let mut text = crate::csv::header(&[
            "id",
            "status",
            "type",
            "machine",
            "machine_id",
            "requestor",
            "comment",
            "created",
            "updated",
        ]);
        for a in &list {
            let status = a.status_or_unknown();
            text.push_str(&crate::csv::row(&[
                crate::csv::text(a.id.as_deref()),
                crate::csv::Cell::Text(status.as_str()),
                crate::csv::text(a.action_type.as_deref()),
                crate::csv::text(a.computer_dns_name.as_deref()),
                crate::csv::text(a.machine_id.as_deref()),
                crate::csv::text(a.requestor.as_deref()),
                crate::csv::text(a.requestor_comment.as_deref()),
                crate::csv::text(a.creation_date_time_utc.as_deref()),
                crate::csv::text(a.last_update_date_time_utc.as_deref()),
            ]));
        }
        out.print(&text)?;
        return Ok(0);
    }
    let mut text = String::new();
    for a in &list {
        text.push_str(&format!(
            "{:<38}{:<12}{:<14}{:<30}{}\n",
            clean(a.id.as_deref().unwrap_or("?")),
            clean(a.status_or_unknown().as_str()),
            clean(a.action_type.as_deref().unwrap_or("?")),
            clean(
                a.computer_dns_name
                    .as_deref()
                    .or(a.machine_id.as_deref())
                    .unwrap_or("?")
            ),
            clean(a.creation_date_time_utc.as_deref().unwrap_or(""))
        ));
    }
    out.print(&text)?;
    out.note(&format!("{} action(s)", list.len()));
    Ok(0)
}

/// `mdlr machines`.
pub fn machines(
    client: &Client,
    out: &Output,
    name: Option<&str>,
    top: u32,
    csv: bool,
) -> Result<u8, Failure> {
    let list = match name {
        Some(n) if is_machine_id(n) => vec![
            client
                .machine(n)
                .context(|| format!("cannot read machine {n}"))?,
        ],
        Some(n) => {
            let found = client
                .find_machines(&[n])
                .context(|| format!("cannot look up {n}"))?;
            if found.is_empty() {
                return Err(Error::NotFound {
                    message: format!("no machine is named {n}"),
                }
                .into());
            }
            found
        }
        None => client
            .list_machines(top)
            .context(|| "cannot list machines".to_owned())?,
    };
    if out.json {
        for m in &list {
            out.json_line(&serde_json::to_value(m).unwrap_or_default())?;
        }
        return Ok(0);
    }
    if csv {
        let mut text = crate::csv::header(&[
            "id",
            "computer_dns_name",
            "os_platform",
            "health_status",
            "last_seen",
            "last_ip_address",
            "risk_score",
        ]);
        for m in &list {
            text.push_str(&crate::csv::row(&[
                crate::csv::text(m.id.as_deref()),
                crate::csv::text(m.computer_dns_name.as_deref()),
                crate::csv::text(m.os_platform.as_deref()),
                crate::csv::text(m.health_status.as_deref()),
                crate::csv::text(m.last_seen.as_deref()),
                crate::csv::text(m.last_ip_address.as_deref()),
                crate::csv::text(m.risk_score.as_deref()),
            ]));
        }
        out.print(&text)?;
        return Ok(0);
    }
    let mut text = String::new();
    for m in &list {
        text.push_str(&format!(
            "{:<42}{:<36}{:<20}{:<10}{}\n",
            clean(m.id.as_deref().unwrap_or("?")),
            clean(m.computer_dns_name.as_deref().unwrap_or("?")),
            clean(m.os_platform.as_deref().unwrap_or("")),
            clean(m.health_status.as_deref().unwrap_or("")),
            m.last_seen.as_deref().unwrap_or("")
        ));
    }
    out.print(&text)?;
    Ok(0)
}

/// `mdlr library list`.
pub fn library_list(client: &Client, out: &Output) -> Result<u8, Failure> {
    let files = client
        .library_files()
        .context(|| "cannot list the library".to_owned())?;
    if out.json {
        for f in &files {
            out.json_line(&serde_json::to_value(f).unwrap_or_default())?;
        }
        return Ok(0);
    }
    let mut text = String::new();
    for f in &files {
        text.push_str(&format!(
            "{:<40}{:<14}{}\n",
            clean(f.file_name.as_deref().unwrap_or("?")),
            match f.has_parameters {
                Some(true) => "parameters",
                _ => "",
            },
            clean(f.description.as_deref().unwrap_or(""))
        ));
    }
    out.print(&text)?;
    Ok(0)
}

/// `mdlr library upload`.
pub fn library_upload(
    client: &Client,
    out: &Output,
    path: &Path,
    name: Option<&str>,
    description: &str,
    parameters_description: Option<&str>,
    override_existing: bool,
) -> Result<u8, Failure> {
    let file_name = match name {
        Some(n) => n.to_owned(),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::InvalidArgument {
                message: format!("{} has no file name; pass --name", path.display()),
            })?,
    };
    let read_error = |e| Error::Io {
        path: path.to_owned(),
        op: "read",
        source: e,
    };
    // What the service would refuse is refused before the file is read or anything sent.
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    mdlr::ids::check_library_upload_name(&file_name).context(|| match name {
        Some(_) => format!("cannot upload {}", path.display()),
        None => format!(
            "cannot upload {} under its own name (--name gives it another)",
            path.display()
        ),
    })?;
    LibraryUpload::check(&file_name, size)
        .context(|| format!("cannot upload {}", path.display()))?;
    let content = std::fs::read(path).map_err(read_error)?;
    let mut upload = LibraryUpload::new(file_name.clone(), content);
    upload.description = description.to_owned();
    upload.parameters_description = parameters_description.map(str::to_owned);
    upload.override_if_exists = override_existing;
    let file = client
        .upload_library_file(&upload)
        .context(|| format!("cannot upload {file_name}"))?;
    if out.json {
        out.json_line(&serde_json::to_value(&file).unwrap_or_default())?;
    } else {
        out.print(&format!(
            "uploaded {} ({} bytes)\n",
            file.file_name.as_deref().unwrap_or(&file_name),
            upload.content.len()
        ))?;
    }
    Ok(0)
}

/// `mdlr library delete`.
pub fn library_delete(client: &Client, out: &Output, name: &str) -> Result<u8, Failure> {
    client
        .delete_library_file(name)
        .context(|| format!("cannot delete {name}"))?;
    if out.json {
        out.json_line(&json!({ "deleted": name }))?;
    } else {
        out.print(&format!("deleted {name}\n"))?;
    }
    Ok(0)
}

/// Turns MACHINE arguments (ids or DNS names) into targets, each exactly one machine
/// (see [`Client::resolve_targets`]).
pub fn resolve(client: &Client, inputs: &[String]) -> Result<Vec<Target>, Failure> {
    client.resolve_targets(inputs).map_err(|e| match e {
        Error::UnresolvedMachines { .. } | Error::InvalidArgument { .. } => Failure::from(e),
        other => Failure::Error {
            error: Box::new(other),
            context: Some("cannot look up machines by name".to_owned()),
        },
    })
}
