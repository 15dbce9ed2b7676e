//! The service's wire types: machine actions, their commands, machines.
//!
//! Every field may be missing or `null`, unknown fields are ignored, and status values
//! the documentation does not list are kept as [`ActionStatus::Other`] and the like.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares an enum of documented string values plus `Other(String)` for the rest.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value the documentation does not list, kept as the service spelt it.
            Other(String),
        }

        impl $name {
            /// The value as the service spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                match s {
                    $($text => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::from(s.as_str()))
            }
        }
    };
}

string_enum! {
    /// The status of a machine action.
    ActionStatus {
        /// Waiting for the machine.
        Pending = "Pending",
        /// Running on the machine.
        InProgress = "InProgress",
        /// Every command finished.
        Succeeded = "Succeeded",
        /// A command failed; later commands did not run.
        Failed = "Failed",
        /// The machine did not finish in time.
        TimeOut = "TimeOut",
        /// Somebody cancelled it.
        Cancelled = "Cancelled",
    }
}

impl ActionStatus {
    /// Whether the action has ended (`Succeeded`, `Failed`, `TimeOut`, `Cancelled`).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ActionStatus::Succeeded
                | ActionStatus::Failed
                | ActionStatus::TimeOut
                | ActionStatus::Cancelled
        )
    }
}

string_enum! {
    /// The status of one command inside a live response action.
    CommandStatus {
        /// Not finished.
        Created = "Created",
        /// Finished; its result can be fetched.
        Completed = "Completed",
        /// Failed on the machine.
        Failed = "Failed",
    }
}

string_enum! {
    /// The type of a live response command.
    CommandType {
        /// Copies a library file onto the machine; it has no result.
        PutFile = "PutFile",
        /// Runs a library script; its result is a JSON transcript.
        RunScript = "RunScript",
        /// Collects a file; its result is a gzip stream of the file.
        GetFile = "GetFile",
    }
}

/// A machine action (`GET /api/machineactions/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MachineAction {
    /// The action id (a GUID).
    #[serde(default)]
    pub id: Option<String>,
    /// `LiveResponse`, `Isolate`, ...
    #[serde(default, rename = "type")]
    pub action_type: Option<String>,
    /// Who started it.
    #[serde(default)]
    pub requestor: Option<String>,
    /// The comment given at the start.
    #[serde(default)]
    pub requestor_comment: Option<String>,
    /// Where it stands.
    #[serde(default)]
    pub status: Option<ActionStatus>,
    /// The machine id (40 hex characters).
    #[serde(default)]
    pub machine_id: Option<String>,
    /// The machine's DNS name.
    #[serde(default)]
    pub computer_dns_name: Option<String>,
    /// When it was created (UTC, ISO 8601).
    #[serde(default)]
    pub creation_date_time_utc: Option<String>,
    /// When it last changed (UTC, ISO 8601); some replies say `lastUpdateTimeUtc`.
    #[serde(default, alias = "lastUpdateTimeUtc")]
    pub last_update_date_time_utc: Option<String>,
    /// Who cancelled it.
    #[serde(default)]
    pub cancellation_requestor: Option<String>,
    /// Why it was cancelled.
    #[serde(default)]
    pub cancellation_comment: Option<String>,
    /// The Windows error code when it failed.
    #[serde(default)]
    pub error_h_result: Option<i64>,
    /// The caller's own id for it.
    #[serde(default, rename = "externalID")]
    pub external_id: Option<String>,
    /// A title.
    #[serde(default)]
    pub title: Option<String>,
    /// The live response commands, in order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub commands: Vec<CommandEntry>,
}

/// One command of a live response action and where it stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CommandEntry {
    /// Its position in the action (0-based).
    #[serde(default)]
    pub index: Option<u32>,
    /// When it started on the machine.
    #[serde(default)]
    pub start_time: Option<String>,
    /// When it ended.
    #[serde(default)]
    pub end_time: Option<String>,
    /// Where it stands.
    #[serde(default)]
    pub command_status: Option<CommandStatus>,
    /// Errors the machine reported.
    #[serde(default, deserialize_with = "errors_as_text")]
    pub errors: Vec<String>,
    /// What it is.
    #[serde(default)]
    pub command: Option<Command>,
}

/// A live response command: a type and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Command {
    /// `RunScript`, `GetFile`, `PutFile`.
    #[serde(rename = "type")]
    pub command_type: CommandType,
    /// Its parameters (`ScriptName`, `Args`, `Path`, `FileName`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub params: Vec<Param>,
}

impl Command {
    /// Builds a command.
    pub fn new(command_type: CommandType, params: Vec<Param>) -> Command {
        Command {
            command_type,
            params,
        }
    }

    /// The value of the parameter named `key`, if present.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.key == key)
            .and_then(|p| p.value.as_deref())
    }
}

/// A command parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Param {
    /// Its name.
    pub key: String,
    /// Its value.
    #[serde(default)]
    pub value: Option<String>,
}

impl Param {
    /// Builds a parameter.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Param {
        Param {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

impl MachineAction {
    /// The status, or `Other("unknown")` when the service sent none.
    pub fn status_or_unknown(&self) -> ActionStatus {
        self.status
            .clone()
            .unwrap_or_else(|| ActionStatus::Other("unknown".into()))
    }

    /// The command at `index`: the entry whose `index` field says so, else the
    /// `index`-th entry.
    pub fn command(&self, index: u32) -> Option<&CommandEntry> {
        self.commands
            .iter()
            .find(|c| c.index == Some(index))
            .or_else(|| {
                self.commands
                    .get(index as usize)
                    .filter(|c| c.index.is_none())
            })
    }
}

/// A machine (device) known to Defender for Endpoint. Every field may be missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Machine {
    /// The machine id (40 hex characters).
    #[serde(default)]
    pub id: Option<String>,
    /// Its fully qualified DNS name.
    #[serde(default)]
    pub computer_dns_name: Option<String>,
    /// `Windows10`, `WindowsServer2019`, `Linux`, ...
    #[serde(default)]
    pub os_platform: Option<String>,
    /// `Active`, `Inactive`, ...
    #[serde(default)]
    pub health_status: Option<String>,
    /// When it was last seen (UTC, ISO 8601).
    #[serde(default)]
    pub last_seen: Option<String>,
    /// Its last internal IP address.
    #[serde(default)]
    pub last_ip_address: Option<String>,
    /// `None`, `Informational`, `Low`, `Medium`, `High`.
    #[serde(default)]
    pub risk_score: Option<String>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn errors_as_text<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let values: Option<Vec<serde_json::Value>> = Option::deserialize(d)?;
    Ok(values
        .unwrap_or_default()
        .into_iter()
        .filter(|v| !v.is_null())
        .map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_decoding() {
        let a: MachineAction = serde_json::from_str(
            r#"{"id":"x","status":"Exploded","commands":null,"brandNew":{"a":1},
                "lastUpdateTimeUtc":"2021-01-01T00:00:00Z","errorHResult":null}"#,
        )
        .expect("decodes");
        assert_eq!(a.status, Some(ActionStatus::Other("Exploded".into())));
        assert!(a.commands.is_empty());
        assert_eq!(
            a.last_update_date_time_utc.as_deref(),
            Some("2021-01-01T00:00:00Z")
        );
        let empty: MachineAction = serde_json::from_str("{}").expect("decodes");
        assert_eq!(empty, MachineAction::default());
    }
}
