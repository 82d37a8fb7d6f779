//! Shared workflows: JSON files in `workflows_dir`, loaded and validated at start, runnable
//! from every session. A file that does not validate stops the start with a line naming it:
//! an operator's mistake should not surface later as a missing workflow.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use kailash_actors::engine::{
    node::NodeRegistry,
    workflow::{Workflow, WorkflowLimits},
};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
#[error("shared workflow {path}: {why}")]
pub struct LoadError {
    path: PathBuf,
    why: String,
}

/// Every `*.json` file of `dir`, by workflow id (the file's `workflow_id`, else its stem).
pub fn load(
    dir: &Path,
    registry: &NodeRegistry,
    limits: WorkflowLimits,
) -> Result<BTreeMap<String, Arc<Workflow>>, LoadError> {
    let fail = |path: &Path, why: String| LoadError {
        path: path.to_owned(),
        why,
    };
    let entries =
        fs::read_dir(dir).map_err(|e| fail(dir, format!("cannot read the directory: {e}")))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut workflows = BTreeMap::new();
    for path in paths {
        let text = fs::read_to_string(&path).map_err(|e| fail(&path, e.to_string()))?;
        let mut config: Value =
            serde_json::from_str(&text).map_err(|e| fail(&path, format!("not JSON: {e}")))?;
        if let (Some(body), Some(stem)) = (
            config.as_object_mut(),
            path.file_stem().and_then(|s| s.to_str()),
        ) {
            body.entry("workflow_id")
                .or_insert_with(|| Value::String(stem.to_owned()));
        }
        let workflow = Workflow::parse(&config, registry, limits).map_err(|problems| {
            let listed: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect();
            fail(&path, listed.join("; "))
        })?;
        let id = workflow.workflow_id.clone();
        if workflows.insert(id.clone(), Arc::new(workflow)).is_some() {
            return Err(fail(
                &path,
                format!("workflow id '{id}' is used by another file too"),
            ));
        }
    }
    Ok(workflows)
}
