//! OData queries of the list calls: `$filter` expressions and paths.

use crate::encode::{self, odata_quote};
use crate::error::Error;
use crate::model::ActionStatus;

/// Which actions to list (`GET /api/machineactions?$filter=...`). Empty fields do not
/// filter; `ids` are OR-ed, the rest AND-ed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActionQuery {
    /// Any of these action ids.
    pub ids: Vec<String>,
    /// On any of these machines.
    pub machine_ids: Vec<String>,
    /// In any of these statuses.
    pub statuses: Vec<ActionStatus>,
    /// Of this type (`LiveResponse`, ...).
    pub action_type: Option<String>,
    /// Started by this requestor.
    pub requestor: Option<String>,
    /// At most this many (the API allows 10 000 a page).
    pub top: Option<u32>,
}

impl ActionQuery {
    /// Every action (up to `top`).
    pub fn new() -> ActionQuery {
        ActionQuery::default()
    }

    /// The `$filter` expression, unencoded; `None` when nothing filters.
    pub fn filter(&self) -> Option<String> {
        let mut clauses = Vec::new();
        let any = |field: &str, values: Vec<&str>| {
            let terms: Vec<String> = values
                .iter()
                .map(|v| format!("{field} eq {}", odata_quote(v)))
                .collect();
            match terms.len() {
                0 => None,
                1 => terms.into_iter().next(),
                _ => Some(format!("({})", terms.join(" or "))),
            }
        };
        clauses.extend(any("id", self.ids.iter().map(String::as_str).collect()));
        clauses.extend(any(
            "machineId",
            self.machine_ids.iter().map(String::as_str).collect(),
        ));
        clauses.extend(any(
            "status",
            self.statuses.iter().map(ActionStatus::as_str).collect(),
        ));
        if let Some(t) = &self.action_type {
            clauses.push(format!("type eq {}", odata_quote(t)));
        }
        if let Some(r) = &self.requestor {
            clauses.push(format!("requestor eq {}", odata_quote(r)));
        }
        (!clauses.is_empty()).then(|| clauses.join(" and "))
    }

    /// Whether its `$filter` has alternatives (`or`): several ids, machines or statuses.
    pub(crate) fn has_alternatives(&self) -> bool {
        self.ids.len() > 1 || self.machine_ids.len() > 1 || self.statuses.len() > 1
    }

    /// The same selection as queries without alternatives, one per combination of an
    /// id, a machine and a status (the fields left empty stay empty).
    pub(crate) fn one_at_a_time(&self) -> Vec<ActionQuery> {
        fn each<T: Clone>(values: &[T]) -> Vec<Vec<T>> {
            if values.is_empty() {
                vec![Vec::new()]
            } else {
                values.iter().map(|v| vec![v.clone()]).collect()
            }
        }
        let mut singles = Vec::new();
        for ids in each(&self.ids) {
            for machine_ids in each(&self.machine_ids) {
                for statuses in each(&self.statuses) {
                    singles.push(ActionQuery {
                        ids: ids.clone(),
                        machine_ids: machine_ids.clone(),
                        statuses,
                        ..self.clone()
                    });
                }
            }
        }
        singles
    }

    /// The list call's path and query, under `/api/`.
    pub(crate) fn path(&self) -> String {
        let mut params = Vec::new();
        if let Some(f) = self.filter() {
            params.push(format!("$filter={}", encode::query(&f)));
        }
        params.push(format!("$top={}", self.top.unwrap_or(10_000).min(10_000)));
        format!("machineactions?{}", params.join("&"))
    }
}

/// Whether `e`, the answer to a list query whose `$filter` has alternatives (`or`),
/// refuses the alternatives: a 400. A stricter service refuses `or` in a filter; nothing
/// else in such a query can be wrong that a query of one item would not also get wrong
/// (ids and names are checked before they are sent), so one item at a time is worth a
/// try.
pub(crate) fn refuses_alternatives(e: &Error) -> bool {
    matches!(e, Error::Api { status: 400, .. }) && !e.is_busy()
}

/// The `$filter` of a list URL, decoded and made comparable: without white space or
/// `+`, in lower case. Another page's link must carry the same.
pub(crate) fn filter_of(url: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or_default();
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (encode::percent_decode(key) == "$filter").then(|| {
            encode::percent_decode(value)
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '+')
                .flat_map(char::to_lowercase)
                .collect()
        })
    })
}

/// The path of a machine lookup by DNS names (OR-ed; lowercase, as the service stores
/// them), asking for up to 10 000 a page.
pub(crate) fn machines_named(names: &[&str]) -> String {
    let filter = names
        .iter()
        .map(|n| {
            format!(
                "computerDnsName eq {}",
                odata_quote(&n.to_ascii_lowercase())
            )
        })
        .collect::<Vec<_>>()
        .join(" or ");
    format!("machines?$filter={}&$top=10000", encode::query(&filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let mut q = ActionQuery::new();
        assert_eq!(q.filter(), None);
        assert_eq!(q.path(), "machineactions?$top=10000");
        q.ids = vec!["a".into(), "b".into()];
        q.statuses = vec![ActionStatus::InProgress];
        q.requestor = Some("o'brien@x".into());
        assert_eq!(
            q.filter().as_deref(),
            Some(
                "(id eq 'a' or id eq 'b') and status eq 'InProgress' and requestor eq 'o''brien@x'"
            )
        );
        q.top = Some(5);
        assert!(
            q.path()
                .starts_with("machineactions?$filter=%28id%20eq%20%27a%27")
        );
        assert!(q.path().ends_with("&$top=5"));
        q.ids.clear();
        q.statuses.push(ActionStatus::Pending);
        assert!(
            q.filter()
                .is_some_and(|f| f.starts_with("(status eq 'InProgress' or status eq 'Pending')"))
        );
    }

    #[test]
    fn machine_lookups() {
        assert_eq!(
            machines_named(&["A.x", "b"]),
            "machines?$filter=computerDnsName%20eq%20%27a.x%27%20or%20computerDnsName%20eq%20%27b%27&$top=10000"
        );
    }

    #[test]
    fn one_at_a_time() {
        let mut q = ActionQuery::new();
        assert!(!q.has_alternatives());
        assert_eq!(q.one_at_a_time(), [q.clone()]);
        q.ids = vec!["a".into(), "b".into()];
        q.statuses = vec![ActionStatus::Pending, ActionStatus::InProgress];
        q.action_type = Some("LiveResponse".into());
        q.top = Some(7);
        assert!(q.has_alternatives());
        let singles = q.one_at_a_time();
        let filters: Vec<String> = singles.iter().filter_map(ActionQuery::filter).collect();
        assert_eq!(
            filters,
            [
                "id eq 'a' and status eq 'Pending' and type eq 'LiveResponse'",
                "id eq 'a' and status eq 'InProgress' and type eq 'LiveResponse'",
                "id eq 'b' and status eq 'Pending' and type eq 'LiveResponse'",
                "id eq 'b' and status eq 'InProgress' and type eq 'LiveResponse'",
            ]
        );
        assert!(
            singles
                .iter()
                .all(|s| !s.has_alternatives() && s.top == Some(7))
        );
    }

    #[test]
    fn filters_of_links() {
        let mut q = ActionQuery::new();
        q.ids = vec!["A".into(), "b".into()];
        let ours = filter_of(&format!("https://h/api/{}", q.path()));
        assert_eq!(ours.as_deref(), Some("(ideq'a'orideq'b')"));
        // Another encoding of the same filter, and `+` for spaces.
        let theirs = "https://h/api/machineactions?%24top=2&%24filter=(id+eq+%27a%27+or+id%20eq%20'B')&$skip=2";
        assert_eq!(filter_of(theirs), ours);
        assert_eq!(
            filter_of("https://h/api/machineactions?$top=2&$skip=2"),
            None
        );
        assert_eq!(filter_of("https://h/api/machineactions"), None);
        assert_eq!(filter_of("https://h/api/m?$filter=").as_deref(), Some(""));
    }

    #[test]
    fn a_400_refuses_alternatives() {
        let api = |status, code: &str| Error::Api {
            status,
            code: Some(code.to_owned()),
            message: "m".into(),
            correlation_id: None,
        };
        assert!(refuses_alternatives(&api(400, "ODataError")));
        assert!(refuses_alternatives(&api(400, "BadRequest")));
        assert!(!refuses_alternatives(&api(404, "ResourceNotFound")));
        assert!(!refuses_alternatives(&api(429, "TooManyRequests")));
    }
}
