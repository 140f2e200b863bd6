//! Arborist's authorization model: a grant of (service, method) on a resource
//! path covers that path and every descendant (API.md §1.5).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::plan::ReadScope;
use crate::store::{Result, Store};

/// One permission a caller holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub resource: String,
    pub service: String,
    pub method: String,
}

/// Everything a caller (or the anonymous group) may do.
#[derive(Debug, Clone, Default)]
pub struct Permissions {
    grants: Vec<Grant>,
}

/// `path` equals `ancestor` or lies below it.
fn covers(ancestor: &str, path: &str) -> bool {
    let ancestor = ancestor.trim_end_matches('/');
    ancestor.is_empty()
        || path == ancestor
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn matches(granted: &str, wanted: &str) -> bool {
    granted == "*" || granted == wanted
}

impl Permissions {
    /// The permissions of `username` (None: anonymous), from the database.
    pub async fn load(store: &Store, username: Option<&str>) -> Result<Self> {
        // Independent lookups, side by side: every authenticated request waits for them.
        let (policies, roles) = tokio::try_join!(store.policies_for(username), store.roles())?;
        if policies.is_empty() {
            return Ok(Self::default());
        }
        let mut grants = BTreeSet::new();
        for policy in &policies {
            for role in roles.iter().filter(|r| policy.role_ids.contains(&r.id)) {
                for permission in role.permissions.as_array().into_iter().flatten() {
                    let action = &permission["action"];
                    let (Some(service), Some(method)) =
                        (action["service"].as_str(), action["method"].as_str())
                    else {
                        continue;
                    };
                    for resource in &policy.resource_paths {
                        grants.insert(Grant {
                            resource: resource.clone(),
                            service: service.to_string(),
                            method: method.to_string(),
                        });
                    }
                }
            }
        }
        Ok(Self {
            grants: grants.into_iter().collect(),
        })
    }

    /// Arborist's check: some grant on `resource` or an ancestor matches.
    /// Asking for method `*` only matches grants whose method is literally `*`.
    pub fn allows(&self, resource: &str, service: &str, method: &str) -> bool {
        self.grants.iter().any(|g| {
            covers(&g.resource, resource)
                && matches(&g.service, service)
                && matches(&g.method, method)
        })
    }

    /// Sheepdog's project check: any of `methods` on `/programs/P/projects/Q`.
    pub fn allows_project(&self, program: &str, project: &str, methods: &[&str]) -> bool {
        let resource = format!("/programs/{program}/projects/{project}");
        methods
            .iter()
            .any(|m| self.allows(&resource, "sheepdog", m))
    }

    /// A peregrine read grant on every program: the list of projects need not
    /// be read to know the caller's [`ReadScope`].
    pub fn reads_every_project(&self) -> bool {
        self.graphql_reads()
            .any(|g| matches!(g.resource.trim_end_matches('/'), "" | "/programs"))
    }

    /// The grants that let GraphQL (peregrine) read.
    fn graphql_reads(&self) -> impl Iterator<Item = &Grant> {
        self.grants
            .iter()
            .filter(|g| matches(&g.service, "peregrine") && matches(&g.method, "read"))
    }

    /// The projects this caller reads through GraphQL: all of them, or
    /// those its grants cover, which depends on every project's program,
    /// code and availability.
    pub async fn graphql_scope(&self, store: &Store) -> Result<ReadScope> {
        let projects: Vec<(String, String, bool)> = if self.reads_every_project() {
            Vec::new()
        } else {
            store
                .nodes_of_type("project")
                .await?
                .into_iter()
                .filter_map(|p| {
                    let project_id = p.project_id?;
                    let (program, code) = project_id.split_once('-')?;
                    let open =
                        p.props.get("availability_type").and_then(Value::as_str) == Some("Open");
                    Some((program.to_string(), code.to_string(), open))
                })
                .collect()
        };
        Ok(self.read_scope(&projects))
    }

    /// The projects readable through GraphQL, given every `(program, project, open)`.
    pub fn read_scope(&self, projects: &[(String, String, bool)]) -> ReadScope {
        if self.reads_every_project() {
            return ReadScope::All;
        }
        let mut set = BTreeSet::new();
        for (program, code, open) in projects {
            let program_path = format!("/programs/{program}");
            let readable = *open
                || self.graphql_reads().any(|g| {
                    let r = g.resource.trim_end_matches('/');
                    r == program_path
                        || r == format!("{program_path}/projects")
                        || r == format!("{program_path}/projects/{code}")
                });
            if readable {
                set.insert(format!("{program}-{code}"));
            }
        }
        ReadScope::Projects(set)
    }

    /// `/authz/mapping`: every known resource covered by a grant, with its actions.
    pub fn mapping(&self, resources: &[String]) -> Value {
        let mut out: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        for grant in &self.grants {
            let covered = resources
                .iter()
                .filter(|r| covers(&grant.resource, r))
                .chain(std::iter::once(&grant.resource));
            for resource in covered {
                out.entry(resource.clone())
                    .or_default()
                    .insert((grant.service.clone(), grant.method.clone()));
            }
        }
        let map: serde_json::Map<String, Value> = out
            .into_iter()
            .map(|(resource, actions)| {
                let list: Vec<Value> = actions
                    .into_iter()
                    .map(|(service, method)| json!({"service": service, "method": method}))
                    .collect();
                (resource, Value::Array(list))
            })
            .collect();
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(grants: &[(&str, &str, &str)]) -> Permissions {
        Permissions {
            grants: grants
                .iter()
                .map(|(r, s, m)| Grant {
                    resource: r.to_string(),
                    service: s.to_string(),
                    method: m.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn grants_cover_descendants_only() {
        let p = perms(&[("/programs/P", "*", "read")]);
        assert!(p.allows("/programs/P/projects/Q", "sheepdog", "read"));
        assert!(!p.allows("/programs/PX/projects/Q", "sheepdog", "read"));
        assert!(!p.allows("/programs/P/projects/Q", "sheepdog", "create"));
    }

    #[test]
    fn asking_for_star_needs_a_literal_star() {
        let p = perms(&[("/", "sheepdog", "create")]);
        assert!(!p.allows("/services/sheepdog/submission/program", "sheepdog", "*"));
        let admin = perms(&[("/", "*", "*")]);
        assert!(admin.allows("/services/sheepdog/submission/program", "sheepdog", "*"));
    }

    #[test]
    fn read_scope_lists_granted_and_open_projects() {
        let p = perms(&[("/programs/P/projects/Q", "peregrine", "read")]);
        let projects = vec![
            ("P".to_string(), "Q".to_string(), false),
            ("P".to_string(), "R".to_string(), false),
            ("O".to_string(), "S".to_string(), true),
        ];
        let ReadScope::Projects(set) = p.read_scope(&projects) else {
            panic!("a project grant is not a grant on everything");
        };
        assert_eq!(set.into_iter().collect::<Vec<_>>(), vec!["O-S", "P-Q"]);
        assert_eq!(
            perms(&[("/", "*", "*")]).read_scope(&projects),
            ReadScope::All
        );
    }
}
