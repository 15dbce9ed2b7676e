//! Investigation packages: a machine's forensic state collected as a zip (SPEC A7).
//! Starting a collection is a machine action like any other; its link has a quota of
//! its own (2 a minute, 120 an hour), so it is asked for only once the action has
//! succeeded.

use serde::Deserialize;

use crate::api::{ApiCall, Client, Quota};
use crate::cloud::check_url;
use crate::error::{Error, Result};
use crate::http::Method;
use crate::ids::{check_action_id, check_machine_id};
use crate::link::ResultLink;
use crate::model::MachineAction;

#[derive(Deserialize)]
struct LinkEnvelope {
    value: Option<serde_json::Value>,
}

impl Client {
    /// `POST /api/machines/{id}/collectInvestigationPackage`: starts collecting the
    /// machine's investigation package; returns the action (type
    /// `CollectInvestigationPackage`). A collection already running on the machine is
    /// refused like a busy machine ([`Error::is_busy`]). Needs the
    /// `Machine.CollectForensics` permission.
    ///
    /// Like a live response start, it is never retried once it may have reached the
    /// service: a retry could start a second collection.
    pub fn collect_investigation_package(
        &self,
        machine_id: &str,
        comment: &str,
    ) -> Result<MachineAction> {
        check_machine_id(machine_id)?;
        let body = serde_json::json!({ "Comment": comment })
            .to_string()
            .into_bytes();
        let url = self.endpoints().api_url(&format!(
            "machines/{machine_id}/collectInvestigationPackage"
        ));
        let resp = self.call(&ApiCall::json(Method::Post, url, body))?;
        self.read_json(resp, "machine action")
    }

    /// `GET /api/machineactions/{id}/GetPackageUri`: a fresh link to the investigation
    /// package of a collection that has succeeded. The call has a quota of its own (2 a
    /// minute, 120 an hour, see [`ClientBuilder::package_limits`]): the client waits
    /// for it. [`Client::download_package`] reads the action first and asks for a link
    /// only when there is a package.
    ///
    /// [`ClientBuilder::package_limits`]: crate::ClientBuilder::package_limits
    pub fn package_link(&self, action_id: &str) -> Result<ResultLink> {
        check_action_id(action_id)?;
        let url = self
            .endpoints()
            .api_url(&format!("machineactions/{action_id}/GetPackageUri"));
        let mut call = ApiCall::get(url);
        call.quota = Some(Quota::PackageLinks);
        let envelope: LinkEnvelope = self.read_json(self.call(&call)?, "package link reply")?;
        let url = match envelope.value {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s,
            _ => {
                return Err(Error::malformed(
                    "package link reply",
                    "it has no `value` link",
                ));
            }
        };
        check_url(&url, "package link")?;
        self.http().redactor().add_link(&url);
        Ok(ResultLink::new(url))
    }
}
