//! Attribute-based access with Cedar: the policy sets (shipped from `policies_path` for every
//! tenant, plus each tenant's own from `/api/admin/policies`), the entities a decision sees,
//! and validation that points at the line of a bad policy.
//!
//! A decision asks Cedar whether `User::"<id>"` may do `Action::"<permission>"` on a
//! `Route::"<METHOD pattern>"` or a `Workflow::"<name>"`:
//! - principal attributes: the user's account attributes (`department`, `clearance`,
//!   `location`, ...) plus `roles`, `tenant` and `clearance_level` (1 public … 4 secret);
//! - resource attributes: a workflow's metadata `department`, `classification` (and
//!   `classification_level`) and `node_types`; a route's `method` and `path`;
//! - context: `hour`, `minute`, `weekday` (0 = Monday), all UTC from the injectable clock,
//!   and `client_ip`.
//!
//! Cedar denies unless a `permit` applies and no `forbid` does; the shipped examples are a
//! base `permit` and `forbid ... unless { condition }` rules, so each rule narrows access.
//!
//! The policies are compiled per (tenant, action) when first needed after a change: only
//! those whose action scope can match, filed by [`index`] so that a decision evaluates only
//! the ones whose principal, resource or context guard the request meets.

mod entities;
mod index;

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    str::FromStr,
    sync::{Arc, RwLock},
};

use cedar_policy::{ActionConstraint, EntityUid, PolicyId, PolicySet, Request};
use chrono::{DateTime, Utc};
use kailash_actors::accounts::PolicyRecord;

use crate::http::FieldError;
use entities::{Cache, TYPES, context_values, uid};
pub use entities::{Subject, Target};

/// Parses `text` into policies with ids `<source>#<n>`; errors name line and column.
pub fn parse(source: &str, text: &str) -> Result<PolicySet, Vec<FieldError>> {
    let parsed = PolicySet::from_str(text).map_err(|errors| {
        errors
            .iter()
            .map(|error| {
                let offset = miette::Diagnostic::labels(error)
                    .and_then(|mut labels| labels.next())
                    .map_or(0, |label| label.offset());
                let before = &text[..offset.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                FieldError {
                    path: "text".into(),
                    message: format!("line {line}, column {column}: {error}"),
                }
            })
            .collect::<Vec<_>>()
    })?;
    let mut renamed = PolicySet::new();
    for (n, policy) in parsed.policies().enumerate() {
        let id = PolicyId::new(format!("{source}#{n}"));
        renamed
            .add(policy.new_id(id))
            .expect("ids are unique within one source");
    }
    Ok(renamed)
}

/// The policies in force, per tenant.
#[derive(Default)]
pub struct Policies {
    /// From `policies_path`: (source name, text), for every tenant.
    shipped: Vec<(String, String)>,
    stored: RwLock<HashMap<(String, String), PolicyRecord>>,
    /// Per (tenant, action): the policies whose action scope can match it, indexed.
    compiled: RwLock<HashMap<(String, String), Arc<index::Index>>>,
    /// Entities and contexts of recent decisions.
    cache: Cache,
}

#[derive(Debug, thiserror::Error)]
#[error("policies_path {path}: {why}")]
pub struct PolicyLoadError {
    path: String,
    why: String,
}

impl Policies {
    /// Loads a `.cedar` file, or every `.cedar` file of a directory; a bad one stops the start.
    pub fn load(path: Option<&Path>) -> Result<Self, PolicyLoadError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let fail = |why: String| PolicyLoadError {
            path: path.display().to_string(),
            why,
        };
        let mut files = if path.is_dir() {
            std::fs::read_dir(path)
                .map_err(|e| fail(e.to_string()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
                .collect()
        } else {
            vec![path.to_path_buf()]
        };
        files.sort();
        let mut shipped = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| fail(e.to_string()))?;
            let source = format!("file:{}", file.file_name().unwrap_or_default().display());
            parse(&source, &text)
                .map_err(|errors| fail(format!("{}: {}", file.display(), errors[0].message)))?;
            shipped.push((source, text));
        }
        Ok(Self {
            shipped,
            ..Self::default()
        })
    }

    pub fn put(&self, record: PolicyRecord) {
        let tenant = record.tenant_id.clone();
        let key = (tenant.clone(), record.policy_id.clone());
        self.stored
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, record);
        self.forget_compiled(&tenant);
    }

    pub fn remove(&self, tenant_id: &str, policy_id: &str) {
        let key = (tenant_id.to_owned(), policy_id.to_owned());
        self.stored
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        self.forget_compiled(tenant_id);
    }

    /// Makes the stored policies exactly `records` (as another node left them), recompiling
    /// only the tenants whose policies changed.
    pub fn replace_all(&self, records: Vec<PolicyRecord>) {
        let fresh: HashMap<_, _> = records
            .into_iter()
            .map(|r| ((r.tenant_id.clone(), r.policy_id.clone()), r))
            .collect();
        let changed: HashSet<String> = {
            let mut stored = self.stored.write().unwrap_or_else(|p| p.into_inner());
            let differ = |from: &HashMap<(String, String), PolicyRecord>,
                          to: &HashMap<(String, String), PolicyRecord>| {
                from.iter()
                    .filter(|(key, record)| to.get(*key) != Some(*record))
                    .map(|((tenant, _), _)| tenant.clone())
                    .collect::<Vec<_>>()
            };
            let changed: HashSet<String> = differ(&stored, &fresh)
                .into_iter()
                .chain(differ(&fresh, &stored))
                .collect();
            if !changed.is_empty() {
                *stored = fresh;
            }
            changed
        };
        for tenant in changed {
            self.forget_compiled(&tenant);
        }
    }

    /// The shipped policies' sources and texts, then the tenant's stored ones.
    pub fn listing(&self, tenant_id: &str) -> (Vec<(String, String)>, Vec<PolicyRecord>) {
        let mut stored: Vec<_> = self
            .stored
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|r| r.tenant_id == tenant_id)
            .cloned()
            .collect();
        stored.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
        (self.shipped.clone(), stored)
    }

    fn forget_compiled(&self, tenant_id: &str) {
        self.compiled
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(tenant, _), _| tenant != tenant_id);
    }

    fn index_for(&self, tenant_id: &str, action: &EntityUid) -> Arc<index::Index> {
        let key = (tenant_id.to_owned(), action.id().unescaped().to_owned());
        if let Some(set) = self
            .compiled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return set.clone();
        }
        let (shipped, stored) = self.listing(tenant_id);
        let mut applying = Vec::new();
        let sources = shipped.into_iter().chain(
            stored
                .into_iter()
                .map(|r| (format!("policy:{}", r.policy_id), r.text)),
        );
        for (source, text) in sources {
            // Each text was validated when it was loaded or stored.
            if let Ok(parsed) = parse(&source, &text) {
                for policy in parsed.policies() {
                    let applies = match policy.action_constraint() {
                        ActionConstraint::Any => true,
                        ActionConstraint::Eq(uid) => uid == *action,
                        // No action has parents here, so `in [...]` is membership of the list.
                        ActionConstraint::In(uids) => uids.contains(action),
                    };
                    if applies {
                        applying.push(policy.clone());
                    }
                }
            }
        }
        let index = Arc::new(index::Index::new(applying));
        self.compiled
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, index.clone());
        index
    }

    /// Whether the tenant's policies allow `subject` to do `action` on `target` now.
    pub fn allows(
        &self,
        subject: &Subject<'_>,
        action: &str,
        target: &Target<'_>,
        now: DateTime<Utc>,
        client_ip: Option<&str>,
    ) -> bool {
        let action = uid(&TYPES.action, action);
        let index = self.index_for(subject.tenant_id, &action);
        let context_values = context_values(now, client_ip);
        let keys = index::Keys {
            principal: &uid(&TYPES.user, subject.user_id),
            resource: &target.uid(),
            context: &context_values,
        };
        let request = Request::new(
            keys.principal.clone(),
            action,
            keys.resource.clone(),
            self.cache.context(now, client_ip),
            None,
        );
        let (Ok(request), Some(entities)) = (request, self.cache.entities(subject, target)) else {
            return false;
        };
        index.allows(&request, &entities, &keys)
    }
}

#[cfg(test)]
mod tests;
