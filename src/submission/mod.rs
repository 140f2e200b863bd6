//! Sheepdog's write side: programs, projects, entity uploads and deletions.
//! Every operation validates and writes in one database transaction that
//! commits only when all of it is valid, so a request either lands whole or
//! leaves nothing behind.

mod chunks;
mod delete;
pub mod envelope;
mod upload;

use serde_json::{Map, Value, json};

use crate::dictionary::{Dictionary, NodeType};
use crate::store::{
    ChangeSet, Edge, EntityIds, NodeRow, NodeWrite, Store, StoreError, TransactionRecord,
};
use crate::validate::Validators;
pub use chunks::ChunkSender;
use envelope::EntityResult;
pub use upload::{BodyCapture, Mode, Rights, UPLOAD_CHUNK};

/// UUIDv5 namespaces Gen3 uses for program and project node ids.
const PROGRAM_NAMESPACE: uuid::Uuid = uuid::uuid!("85b08c6a-56a6-4474-9c30-b65abfd214a8");
const PROJECT_NAMESPACE: uuid::Uuid = uuid::uuid!("249b4405-2c69-45d9-96bc-7410333d5d80");

/// A project addressed by a submission URL.
#[derive(Debug, Clone)]
pub struct Project {
    pub program: String,
    pub code: String,
    pub project_id: String,
    pub node: NodeRow,
}

impl Project {
    pub fn state(&self) -> &str {
        self.node
            .props
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("open")
    }
}

/// A failure reported as plain `{"message": ...}` (no envelope).
#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    /// The request is wrong as sent.
    #[error("{0}")]
    Invalid(String),
    /// The program or project it names does not exist.
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn bad_request(message: impl Into<String>) -> SubmissionError {
    SubmissionError::Invalid(message.into())
}

/// The write operations, bound to one caller.
pub struct Submission<'a> {
    pub dictionary: &'a Dictionary,
    pub validators: &'a Validators,
    pub store: &'a Store,
    pub username: &'a str,
    /// The buckets uploads land in: a data-file node naming an upload that
    /// went straight to S3 finds its size and MD5 there.
    pub landing: Option<&'a crate::storage::Storage>,
}

/// The lower-cased natural key of a document (None when a key value is missing).
pub fn natural_key_of(
    node: &NodeType,
    project_id: &str,
    doc: &Map<String, Value>,
) -> Option<String> {
    if node.natural_key.is_empty() {
        return None;
    }
    let mut parts = Vec::with_capacity(node.natural_key.len());
    for key in &node.natural_key {
        let value = if key == "project_id" {
            project_id.to_string()
        } else {
            match doc.get(key)? {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            }
        };
        parts.push(value.to_lowercase());
    }
    Some(parts.join("\u{1f}"))
}

impl Submission<'_> {
    /// Look up `/P/Q`: unknown program or project is a 404.
    pub async fn project(&self, program: &str, code: &str) -> Result<Project, SubmissionError> {
        self.program(program).await?;
        let rows = self
            .store
            .nodes_by_natural_keys("project", &[code.to_lowercase()])
            .await?;
        let project_id = format!("{program}-{code}");
        let node = rows
            .into_iter()
            .map(|(_, row)| row)
            .find(|row| row.project_id.as_deref() == Some(project_id.as_str()))
            .ok_or_else(|| SubmissionError::NotFound(format!("Project {code} not found")))?;
        Ok(Project {
            program: program.to_string(),
            code: code.to_string(),
            project_id,
            node,
        })
    }

    pub async fn program(&self, name: &str) -> Result<NodeRow, SubmissionError> {
        self.store
            .nodes_by_natural_keys("program", &[name.to_lowercase()])
            .await?
            .into_iter()
            .map(|(_, row)| row)
            .find(|row| row.props.get("name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| SubmissionError::NotFound(format!("Program {name} not found")))
    }

    /// `POST /`: register or update a program (API.md §2.2).
    pub async fn upsert_program(&self, doc: Value) -> Result<Value, SubmissionError> {
        let doc = single_document(
            doc,
            "The program creation endpoint only supports single documents (dict). Received a list of documents.",
        )?;
        let node_type = doc.get("type").and_then(Value::as_str).unwrap_or("");
        if node_type != "program" {
            return Err(bad_request(format!(
                "Invalid type in key type='{node_type}'"
            )));
        }
        let name = doc
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad_request("No program specified in key 'name'"))?
            .to_string();
        if name.contains('-') || name.contains('/') {
            return Err(bad_request(format!(
                "Program name '{name}' must not contain '-' or '/': project ids are '<program>-<project>'"
            )));
        }
        let mut props = Map::new();
        for (key, value) in &doc {
            if key != "type" && key != "id" {
                props.insert(key.trim_start_matches('*').to_string(), value.clone());
            }
        }
        self.schema_errors("program", &props, None)?;
        let existing = self.program(&name).await.ok();
        let id = match &existing {
            Some(row) => row.id.clone(),
            None => {
                self.unused_id(uuid::Uuid::new_v5(&PROGRAM_NAMESPACE, name.as_bytes()))
                    .await?
            }
        };
        let mut stored = existing
            .as_ref()
            .map(|r| r.props.clone())
            .unwrap_or_default();
        stored.extend(props);
        let change = ChangeSet {
            nodes: vec![NodeWrite {
                id: id.clone(),
                node_type: "program".into(),
                project_id: None,
                natural_key: Some(name.to_lowercase()),
                props: stored,
                stored_seq: existing.as_ref().map(|row| row.seq),
            }],
            ..ChangeSet::default()
        };
        self.commit(&change, &self.record(&name, None, "create", &id))
            .await?;
        self.store
            .upsert_resource(&format!("/programs/{name}"))
            .await?;
        let message = if existing.is_some() {
            "Program is updated!"
        } else {
            "Program registered."
        };
        Ok(json!({"id": id, "name": name, "message": message}))
    }

    /// `PUT|POST /P`: create or update a project (API.md §2.3).
    pub async fn upsert_project(
        &self,
        program: &str,
        doc: Value,
    ) -> Result<Value, SubmissionError> {
        let program_row = self.program(program).await?;
        let mut doc = single_document(
            doc,
            "The project creation endpoint only supports single documents (dict). Received a list of documents.",
        )?;
        if let Some(t) = doc.get("type").and_then(Value::as_str)
            && t != "project"
        {
            return Err(bad_request(format!(
                "Invalid post to program endpoint with type='{t}'"
            )));
        }
        let code = doc
            .get("code")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad_request("No project specified in key 'code'"))?
            .to_string();
        if code.contains('/') {
            return Err(bad_request(format!(
                "Project code '{code}' must not contain '/'"
            )));
        }
        for dropped in ["type", "state", "released", "programs", "id"] {
            doc.remove(dropped);
        }
        let existing_code = self
            .store
            .nodes_by_natural_keys("project", &[code.to_lowercase()])
            .await?
            .into_iter()
            .map(|(_, row)| row)
            .next();
        let project_id = format!("{program}-{code}");
        if let Some(row) = &existing_code
            && row.project_id.as_deref() != Some(project_id.as_str())
        {
            return Err(bad_request(format!(
                "ERROR: Project {code} already exists in DB"
            )));
        }
        if existing_code.is_none() && !doc.contains_key("dbgap_accession_number") {
            return Err(bad_request("No dbgap_accession_number specified."));
        }
        let node = self
            .dictionary
            .node("project")
            .ok_or_else(|| bad_request("the dictionary has no project node"))?;
        let mut props = existing_code
            .as_ref()
            .map(|r| r.props.clone())
            .unwrap_or_default();
        for (key, value) in doc {
            props.insert(key, value);
        }
        // Sheepdog applies no schema defaults to a project: a new one is
        // `open`, and `released`, `releasable` and the rest stay unset (null).
        if existing_code.is_none() && node.property("state").is_some() {
            props.insert("state".into(), Value::String("open".into()));
        }
        self.schema_errors("project", &props, Some(&program_row.id))?;
        let is_new = existing_code.is_none();
        let id = match &existing_code {
            Some(row) => row.id.clone(),
            None => {
                self.unused_id(uuid::Uuid::new_v5(&PROJECT_NAMESPACE, code.as_bytes()))
                    .await?
            }
        };
        let change = ChangeSet {
            nodes: vec![NodeWrite {
                id: id.clone(),
                node_type: "project".into(),
                project_id: Some(project_id.clone()),
                natural_key: Some(code.to_lowercase()),
                props,
                stored_seq: existing_code.as_ref().map(|row| row.seq),
            }],
            add_edges: vec![(
                Edge {
                    src_id: id.clone(),
                    link: "programs".into(),
                    dst_id: program_row.id.clone(),
                },
                Some(project_id.clone()),
            )],
            ..ChangeSet::default()
        };
        let action = if is_new { "create" } else { "update" };
        let transaction_id = self
            .commit(&change, &self.record(program, Some(&code), action, &id))
            .await?;
        self.store
            .upsert_resource(&format!("/programs/{program}/projects/{code}"))
            .await?;
        let entity = EntityResult {
            id: Some(id),
            node_type: Some("project".into()),
            action: Some(action),
            unique_keys: vec![json!({"code": code})],
            ..EntityResult::default()
        };
        Ok(envelope::upload_envelope(transaction_id, &[entity]))
    }

    /// Validate a program/project document; problems become one 400 message.
    fn schema_errors(
        &self,
        node_type: &str,
        props: &Map<String, Value>,
        program_id: Option<&str>,
    ) -> Result<(), SubmissionError> {
        let mut doc = props.clone();
        doc.insert("type".into(), Value::String(node_type.into()));
        if let Some(id) = program_id {
            doc.insert("programs".into(), json!({"id": id}));
        }
        let problems = self.validators.check(node_type, &Value::Object(doc));
        if problems.is_empty() {
            return Ok(());
        }
        let text: Vec<String> = problems.into_iter().map(|p| p.message).collect();
        Err(bad_request(format!("ERROR: {}", text.join("; "))))
    }

    /// `DELETE /P`: only an empty program.
    pub async fn delete_program(&self, name: &str) -> Result<(), SubmissionError> {
        let guard = self.store.lock_writes().await;
        let program = self.program(name).await?;
        let prefix = format!("{name}-");
        let projects = self.store.nodes_of_type("project").await?;
        if projects.iter().any(|p| {
            p.project_id
                .as_deref()
                .is_some_and(|id| id.starts_with(&prefix))
        }) {
            return Err(bad_request(format!(
                "ERROR: Can not delete the program. Program {name} is not empty"
            )));
        }
        let record = self.record(name, None, "delete", &program.id);
        let change = ChangeSet {
            delete_nodes: vec![program.id],
            ..ChangeSet::default()
        };
        self.store.write(&guard, &change, &record).await?;
        drop(guard);
        self.store
            .delete_resource(&format!("/programs/{name}"))
            .await?;
        Ok(())
    }

    /// `DELETE /P/Q`: only an empty project.
    pub async fn delete_project(&self, project: &Project) -> Result<(), SubmissionError> {
        let guard = self.store.lock_writes().await;
        if self.store.count_project_nodes(&project.project_id).await? > 0 {
            return Err(bad_request(format!(
                "ERROR: Can not delete the project. Project {} is not empty",
                project.code
            )));
        }
        let change = ChangeSet {
            delete_nodes: vec![project.node.id.clone()],
            ..ChangeSet::default()
        };
        self.store
            .write(
                &guard,
                &change,
                &self.record(
                    &project.program,
                    Some(&project.code),
                    "delete",
                    &project.node.id,
                ),
            )
            .await?;
        drop(guard);
        self.store
            .delete_resource(&format!(
                "/programs/{}/projects/{}",
                project.program, project.code
            ))
            .await?;
        Ok(())
    }

    /// Lock, write and release: for changes validated without reading the graph.
    async fn commit(
        &self,
        change: &ChangeSet,
        record: &TransactionRecord,
    ) -> Result<i64, StoreError> {
        let guard = self.store.lock_writes().await;
        self.store.write(&guard, change, record).await
    }

    /// `PUT /P/Q/open` and friends: move a project to `state`.
    pub async fn transition_project(
        &self,
        project: &Project,
        state: &str,
    ) -> Result<Value, SubmissionError> {
        let mut props = project.node.props.clone();
        props.insert("state".into(), Value::String(state.to_string()));
        let change = ChangeSet {
            nodes: vec![NodeWrite {
                id: project.node.id.clone(),
                node_type: "project".into(),
                project_id: Some(project.project_id.clone()),
                natural_key: Some(project.code.to_lowercase()),
                props,
                stored_seq: Some(project.node.seq),
            }],
            ..ChangeSet::default()
        };
        let id = self
            .commit(
                &change,
                &self.record(
                    &project.program,
                    Some(&project.code),
                    state,
                    &project.node.id,
                ),
            )
            .await?;
        let entity = EntityResult {
            id: Some(project.node.id.clone()),
            node_type: Some("project".into()),
            action: Some("update"),
            unique_keys: vec![json!({"code": project.code})],
            ..EntityResult::default()
        };
        let mut body = envelope::upload_envelope(id, &[entity]);
        body["message"] = json!(format!(
            "Successfully transitioned project state to '{state}'"
        ));
        Ok(body)
    }

    /// A new program's or project's id: the one derived from its name, unless
    /// a record took it already (submitters may choose entity ids, so one could
    /// otherwise block a program or project forever); then a fresh one.
    async fn unused_id(&self, derived: uuid::Uuid) -> Result<String, SubmissionError> {
        let derived = derived.to_string();
        if self
            .store
            .nodes_by_ids(std::slice::from_ref(&derived))
            .await?
            .is_empty()
        {
            Ok(derived)
        } else {
            Ok(uuid::Uuid::now_v7().to_string())
        }
    }

    /// The log row of a successful change of one program or project node.
    fn record(
        &self,
        program: &str,
        code: Option<&str>,
        role: &str,
        node_id: &str,
    ) -> TransactionRecord {
        let mut record = TransactionRecord::new(program, code, role, self.username);
        record.entity_ids = EntityIds::new([node_id]);
        record
    }
}

fn single_document(doc: Value, list_message: &str) -> Result<Map<String, Value>, SubmissionError> {
    match doc {
        Value::Object(map) => Ok(map),
        Value::Array(mut items) if items.len() == 1 => match items.pop() {
            Some(Value::Object(map)) => Ok(map),
            _ => Err(bad_request(list_message)),
        },
        _ => Err(bad_request(list_message)),
    }
}
