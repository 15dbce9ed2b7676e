//! Starting, listing and cancelling live response actions.

use serde::Serialize;

use std::collections::HashSet;

use crate::api::{ApiCall, Client, NotFound, Quota};
use crate::error::{Error, Result};
use crate::http::Method;
use crate::ids::{check_action_id, check_machine_id};
use crate::model::{Command, CommandType, MachineAction, Param};
use crate::odata::ActionQuery;

/// What to run in one live response action: commands in the order the service requires
/// (every `PutFile`, then every `RunScript`, then every `GetFile`) and a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveResponse {
    /// The commands, in order.
    pub commands: Vec<Command>,
    /// Why (shown in the Defender portal's action center).
    pub comment: String,
}

impl LiveResponse {
    /// An empty request with `comment`; add commands with the builder methods.
    pub fn new(comment: impl Into<String>) -> LiveResponse {
        LiveResponse {
            commands: Vec::new(),
            comment: comment.into(),
        }
    }

    /// Adds a `PutFile` of a library file.
    pub fn put_file(mut self, file_name: impl Into<String>) -> Self {
        self.commands.push(Command::new(
            CommandType::PutFile,
            vec![Param::new("FileName", file_name)],
        ));
        self
    }

    /// Adds a `RunScript` of a library script, with arguments when `args` is not empty.
    pub fn run_script(mut self, script_name: impl Into<String>, args: impl Into<String>) -> Self {
        let args = args.into();
        let mut params = vec![Param::new("ScriptName", script_name)];
        if !args.is_empty() {
            params.push(Param::new("Args", args));
        }
        self.commands
            .push(Command::new(CommandType::RunScript, params));
        self
    }

    /// Adds a `GetFile` of a path on the machine.
    pub fn get_file(mut self, path: impl Into<String>) -> Self {
        self.commands.push(Command::new(
            CommandType::GetFile,
            vec![Param::new("Path", path)],
        ));
        self
    }

    /// Checks that there is at least one command, of known types, in the required order.
    pub fn validate(&self) -> Result<()> {
        if self.commands.is_empty() {
            return Err(invalid("a live response needs at least one command"));
        }
        let mut last = 0;
        for c in &self.commands {
            let rank = match c.command_type {
                CommandType::PutFile => 0,
                CommandType::RunScript => 1,
                CommandType::GetFile => 2,
                ref other => return Err(invalid(format!("unknown command type {other}"))),
            };
            if rank < last {
                return Err(invalid(
                    "commands must come in the order PutFile, RunScript, GetFile",
                ));
            }
            last = rank;
        }
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument {
        message: message.into(),
    }
}

#[derive(Serialize)]
struct StartBody<'a> {
    #[serde(rename = "Commands")]
    commands: &'a [Command],
    #[serde(rename = "Comment")]
    comment: &'a str,
}

impl Client {
    /// `POST /api/machines/{id}/runliveresponse`: starts a live response action on a
    /// machine and returns it (status `Pending`; command details follow later).
    ///
    /// Waits for the start quota (10 a minute by default) and the API quotas first. A
    /// start is never retried after a reply of 5xx or a connection that broke after
    /// sending: that could start a second session. A machine with a running action
    /// answers 400 `ActiveRequestAlreadyExists`.
    pub fn start_live_response(
        &self,
        machine_id: &str,
        request: &LiveResponse,
    ) -> Result<MachineAction> {
        check_machine_id(machine_id)?;
        request.validate()?;
        let body = serde_json::to_vec(&StartBody {
            commands: &request.commands,
            comment: &request.comment,
        })
        .map_err(|e| invalid(format!("cannot encode the request: {e}")))?;
        let url = self
            .endpoints()
            .api_url(&format!("machines/{machine_id}/runliveresponse"));
        let mut call = ApiCall::json(Method::Post, url, body);
        call.quota = Some(Quota::Starts);
        let resp = self.call(&call)?;
        self.read_json(resp, "machine action")
    }

    /// `POST /api/machineactions/{id}/cancel`: asks the service to cancel an action.
    pub fn cancel_action(&self, action_id: &str, comment: &str) -> Result<MachineAction> {
        check_action_id(action_id)?;
        let body = serde_json::json!({ "Comment": comment })
            .to_string()
            .into_bytes();
        let url = self
            .endpoints()
            .api_url(&format!("machineactions/{action_id}/cancel"));
        let mut call = ApiCall::json(Method::Post, url, body);
        call.idempotent = true; // cancelling twice does no harm
        let resp = self.call(&call)?;
        self.read_json(resp, "machine action")
    }

    /// `GET /api/machineactions?$filter=...`: the actions `query` selects, following
    /// further pages up to `query.top` (default 10 000). A 404 (which a service may
    /// answer when nothing matches) is an empty list.
    ///
    /// A service that refuses alternatives in a filter (several ids, machines or
    /// statuses OR-ed: a 400) is asked for each combination on its own instead, by this
    /// call and every later list call of the client and its clones
    /// ([`Client::lists_one_at_a_time`]); the actions then come query by query.
    pub fn list_actions(&self, query: &ActionQuery) -> Result<Vec<MachineAction>> {
        for id in &query.ids {
            check_action_id(id)?;
        }
        let max = query.top.unwrap_or(10_000) as usize;
        if !query.has_alternatives() || !self.lists_one_at_a_time() {
            match self.list_actions_once(query, max) {
                Err(e) if query.has_alternatives() && crate::odata::refuses_alternatives(&e) => {
                    self.go_one_at_a_time();
                }
                listed => return listed,
            }
        }
        let mut seen = HashSet::new();
        let mut all = Vec::new();
        for single in query.one_at_a_time() {
            for a in self.list_actions_once(&single, max)? {
                if a.id
                    .as_ref()
                    .is_none_or(|id| seen.insert(id.to_ascii_lowercase()))
                {
                    all.push(a);
                }
            }
            if all.len() >= max {
                break;
            }
        }
        all.truncate(max);
        Ok(all)
    }

    fn list_actions_once(&self, query: &ActionQuery, max: usize) -> Result<Vec<MachineAction>> {
        self.get_list(&query.path(), "action list", max, NotFound::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_order() {
        let ok = LiveResponse::new("c")
            .put_file("a.ps1")
            .run_script("a.ps1", "-x 1")
            .get_file("C:\\x");
        assert!(ok.validate().is_ok());
        assert_eq!(ok.commands[1].param("Args"), Some("-x 1"));
        let bad = LiveResponse::new("c")
            .get_file("C:\\x")
            .run_script("a.ps1", "");
        assert!(bad.validate().is_err());
        assert!(LiveResponse::new("c").validate().is_err());
        let body = serde_json::to_string(&StartBody {
            commands: &LiveResponse::new("").run_script("x.ps1", "").commands,
            comment: "why",
        })
        .expect("encodes");
        assert_eq!(
            body,
            r#"{"Commands":[{"type":"RunScript","params":[{"key":"ScriptName","value":"x.ps1"}]}],"Comment":"why"}"#
        );
    }
}
