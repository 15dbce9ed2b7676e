//! The service's rules about its own values: which command of an action has a result
//! now, and of what type. Kept apart from the wire types (`model`) so that those stand
//! alone and errors can name their statuses.

use crate::error::{Error, Result};
use crate::model::{ActionStatus, CommandEntry, CommandType, MachineAction};

impl MachineAction {
    /// The action's id as the service gave it, or `"?"`.
    fn id_or_unknown(&self) -> String {
        self.id.clone().unwrap_or_else(|| "?".to_owned())
    }

    /// Whether the command at `index` has a result to fetch now, and of what type:
    /// a `RunScript` has a transcript, a `GetFile` a gzip stream of the file, a
    /// `PutFile` nothing.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchCommand`] when the action has no such command;
    /// [`Error::NotFinished`] while it runs (also while the service lists no commands
    /// yet, which it does for a few seconds after the start);
    /// [`Error::CommandFailed`] when the command failed, or the action ended without
    /// it (its `action_status` then says `TimeOut`, `Cancelled` or `Failed`).
    pub fn result_type(&self, index: u32) -> Result<CommandType> {
        let status = self.status_or_unknown();
        let Some(entry) = self.command(index) else {
            if !status.is_terminal() && self.commands.is_empty() {
                return Err(Error::NotFinished {
                    action_id: self.id_or_unknown(),
                    index,
                    action_status: status,
                    command_status: None,
                    refusal: None,
                });
            }
            return Err(Error::NoSuchCommand {
                action_id: self.id_or_unknown(),
                index,
                count: self.commands.len(),
            });
        };
        let command_type = entry
            .command
            .as_ref()
            .map(|c| c.command_type.clone())
            .unwrap_or_else(|| CommandType::Other("unknown".into()));
        match &entry.command_status {
            Some(crate::model::CommandStatus::Completed) => Ok(command_type),
            Some(crate::model::CommandStatus::Failed) => Err(self.failed(index, entry, status)),
            _ if !status.is_terminal() => Err(Error::NotFinished {
                action_id: self.id_or_unknown(),
                index,
                action_status: status,
                command_status: entry.command_status.clone(),
                refusal: None,
            }),
            _ => Err(self.failed(index, entry, status)),
        }
    }

    /// The indexes of its commands, in order, each once.
    pub fn command_indexes(&self) -> Vec<u32> {
        let mut all: Vec<u32> = self
            .commands
            .iter()
            .enumerate()
            .map(|(i, c)| c.index.unwrap_or(i as u32))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Whether what the action collects (an investigation package) is there: it is
    /// once the action has succeeded.
    ///
    /// # Errors
    ///
    /// [`Error::ActionNotSucceeded`] with the action's status otherwise.
    pub fn package_ready(&self) -> Result<()> {
        match self.status_or_unknown() {
            ActionStatus::Succeeded => Ok(()),
            status => Err(Error::ActionNotSucceeded {
                action_id: self.id_or_unknown(),
                status,
            }),
        }
    }

    /// Whether the action has ended (`Succeeded`, `Failed`, `TimeOut`, `Cancelled`).
    pub fn is_finished(&self) -> bool {
        self.status_or_unknown().is_terminal()
    }

    fn failed(&self, index: u32, entry: &CommandEntry, status: ActionStatus) -> Error {
        Error::CommandFailed {
            action_id: self.id_or_unknown(),
            index,
            action_status: status,
            command_status: entry.command_status.clone(),
            errors: entry.errors.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CommandStatus;

    #[test]
    fn result_type_per_state() {
        let a: MachineAction = serde_json::from_str(
            r#"{"id":"a","status":"InProgress","commands":[
              {"index":0,"commandStatus":"Completed","command":{"type":"RunScript","params":[]}},
              {"index":1,"commandStatus":"Created","command":{"type":"GetFile","params":null}},
              {"index":2,"commandStatus":"Failed","errors":["boom", 7],"command":{"type":"GetFile"}}]}"#,
        )
        .expect("decodes");
        assert_eq!(a.result_type(0).ok(), Some(CommandType::RunScript));
        match a.result_type(1) {
            Err(Error::NotFinished {
                action_id,
                action_status,
                command_status,
                ..
            }) => {
                assert_eq!(action_id, "a");
                assert_eq!(action_status, ActionStatus::InProgress);
                assert_eq!(command_status, Some(CommandStatus::Created));
            }
            other => panic!("{other:?}"),
        }
        match a.result_type(2) {
            Err(Error::CommandFailed { errors, .. }) => assert_eq!(errors, ["boom", "7"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            a.result_type(3),
            Err(Error::NoSuchCommand { count: 3, .. })
        ));
        assert_eq!(a.command_indexes(), [0, 1, 2]);
        assert!(!a.is_finished());
    }

    #[test]
    fn no_commands_listed_yet() {
        let a: MachineAction = serde_json::from_str(r#"{"status":"Pending"}"#).expect("decodes");
        match a.result_type(0) {
            Err(e @ Error::NotFinished { .. }) => {
                assert!(e.is_not_finished());
                assert!(e.to_string().contains("not listed yet"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let ended: MachineAction = serde_json::from_str(
            r#"{"status":"TimeOut","commands":[{"index":0,"commandStatus":"Created"}]}"#,
        )
        .expect("decodes");
        let e = ended.result_type(0).err();
        assert_eq!(e.map(|e| e.kind()), Some(crate::ErrorKind::TimedOut));
    }
}
