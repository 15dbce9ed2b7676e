//! Machines: reading them, looking them up by DNS name, and turning what a person typed
//! (ids or names) into exactly one machine each.

use std::collections::{HashMap, HashSet};

use crate::api::{Client, NotFound};
use crate::error::{Error, Result};
use crate::ids::{check_dns_name, check_machine_id, is_machine_id};
use crate::model::Machine;

/// A machine to run on: its id, and the name to show and file its results under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The machine id (40 hex characters, lowercase).
    pub machine_id: String,
    /// The name it was given by (a DNS name, lowercase), or its id.
    pub name: String,
}

impl Target {
    /// A machine known by its id; its name is the id.
    pub fn from_id(machine_id: impl Into<String>) -> Target {
        let machine_id = machine_id.into().to_ascii_lowercase();
        Target {
            name: machine_id.clone(),
            machine_id,
        }
    }

    /// A machine with an id and a name to show.
    pub fn new(machine_id: impl Into<String>, name: impl Into<String>) -> Target {
        Target {
            machine_id: machine_id.into().to_ascii_lowercase(),
            name: name.into(),
        }
    }
}

/// How many names go into one lookup query.
const NAMES_PER_QUERY: usize = 20;

impl Client {
    /// `GET /api/machines/{id}`.
    pub fn machine(&self, machine_id: &str) -> Result<Machine> {
        check_machine_id(machine_id)?;
        self.get_json(&format!("machines/{machine_id}"), "machine")
    }

    /// `GET /api/machines?$top=N`: machines, up to `top`.
    pub fn list_machines(&self, top: u32) -> Result<Vec<Machine>> {
        let top = top.clamp(1, 10_000);
        self.get_list(
            &format!("machines?$top={top}"),
            "machine list",
            top as usize,
            NotFound::Error,
        )
    }

    /// Machines whose DNS name is one of `names` (case-insensitive as the service
    /// compares), looked up with as few calls as possible: names are OR-ed together
    /// twenty to a query. An empty result (which the service may send as 404) is an
    /// empty list. A name may match several machines (a reinstalled host keeps its old
    /// record for a while): [`Client::resolve_targets`] insists on one.
    ///
    /// A service that refuses names OR-ed together (a 400) is asked one name at a time,
    /// by this call and every later list call of the client and its clones
    /// ([`Client::lists_one_at_a_time`]).
    pub fn find_machines(&self, names: &[&str]) -> Result<Vec<Machine>> {
        for n in names {
            check_dns_name(n)?;
        }
        let mut found = Vec::new();
        let mut rest = names;
        while !rest.is_empty() {
            let per_query = if self.lists_one_at_a_time() {
                1
            } else {
                NAMES_PER_QUERY
            };
            let (chunk, after) = rest.split_at(per_query.min(rest.len()));
            let path = crate::odata::machines_named(chunk);
            match self.get_list::<Machine>(&path, "machine list", 10_000, NotFound::Empty) {
                Ok(ms) => found.extend(ms),
                Err(e) if chunk.len() > 1 && crate::odata::refuses_alternatives(&e) => {
                    // The same names again, one at a time.
                    self.go_one_at_a_time();
                    continue;
                }
                Err(e) => return Err(e),
            }
            rest = after;
        }
        Ok(found)
    }

    /// Turns machine ids and DNS names into exactly one [`Target`] each, in the order
    /// given, without duplicates. Ids are taken as they are; names are looked up with as
    /// few calls as possible. A name that names no machine, or several, fails the whole
    /// call with [`Error::UnresolvedMachines`], which lists every such name and the
    /// candidates of each — before anything starts.
    pub fn resolve_targets<S: AsRef<str>>(&self, machines: &[S]) -> Result<Vec<Target>> {
        let inputs: Vec<&str> = machines.iter().map(AsRef::as_ref).collect();
        let names: Vec<&str> = inputs
            .iter()
            .copied()
            .filter(|m| !is_machine_id(m))
            .collect();
        let mut by_name: HashMap<String, Vec<Machine>> = HashMap::new();
        if !names.is_empty() {
            for m in self.find_machines(&names)? {
                if let Some(n) = &m.computer_dns_name {
                    by_name.entry(n.to_ascii_lowercase()).or_default().push(m);
                }
            }
        }
        let mut targets = Vec::new();
        let (mut unknown, mut ambiguous) = (Vec::new(), Vec::new());
        for input in inputs {
            if is_machine_id(input) {
                targets.push(Target::from_id(input));
                continue;
            }
            let name = input.to_ascii_lowercase();
            match by_name.get(&name).map(Vec::as_slice) {
                Some([m]) => match &m.id {
                    Some(id) if is_machine_id(id) => targets.push(Target::new(id, name)),
                    _ => {
                        return Err(Error::malformed(
                            "machine list",
                            format!("the machine named {name} has no usable id"),
                        ));
                    }
                },
                Some(several) if several.len() > 1 => {
                    ambiguous.push((input.to_owned(), several.to_vec()));
                }
                _ => unknown.push(input.to_owned()),
            }
        }
        if !unknown.is_empty() || !ambiguous.is_empty() {
            return Err(Error::UnresolvedMachines { unknown, ambiguous });
        }
        let mut seen = HashSet::new();
        targets.retain(|t| seen.insert(t.machine_id.clone()));
        Ok(targets)
    }
}
