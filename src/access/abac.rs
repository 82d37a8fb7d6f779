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

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    str::FromStr,
    sync::{Arc, RwLock},
};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Entities, Entity, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression,
};
use chrono::{DateTime, Datelike, Timelike, Utc};
use kailash_actors::accounts::PolicyRecord;
use serde_json::{Map, Value};

use crate::http::FieldError;

/// Levels of the seeds' data classifications, compared with a user's clearance.
const LEVELS: &[(&str, i64)] = &[
    ("public", 1),
    ("internal", 2),
    ("confidential", 3),
    ("secret", 4),
];

fn level(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::String(name) => LEVELS.iter().find(|(n, _)| n == name).map(|(_, l)| *l),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A JSON value as a Cedar value; floats and nulls have none and are left out.
fn cedar_value(value: &Value) -> Option<RestrictedExpression> {
    Some(match value {
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => RestrictedExpression::new_long(n.as_i64()?),
        Value::Array(items) => RestrictedExpression::new_set(items.iter().filter_map(cedar_value)),
        Value::Object(fields) => RestrictedExpression::new_record(
            fields
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), cedar_value(v)?))),
        )
        .ok()?,
        Value::Null => return None,
    })
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        items
            .into_iter()
            .map(|s| RestrictedExpression::new_string(s.into())),
    )
}

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_str(&format!("{kind}::{}", Value::String(id.to_owned())))
        .expect("a quoted id always parses")
}

/// Who is asking, as the policies see them.
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub tenant_id: &'a str,
    pub roles: &'a [String],
    pub attributes: &'a Map<String, Value>,
}

/// What is asked about.
pub enum Target<'a> {
    Route {
        method: &'a str,
        pattern: &'a str,
    },
    Workflow {
        name: &'a str,
        metadata: &'a Value,
        node_types: Vec<&'a str>,
    },
}

impl Target<'_> {
    fn entity(&self) -> Entity {
        let mut attrs = HashMap::new();
        let uid = match self {
            Target::Route { method, pattern } => {
                attrs.insert(
                    "method".into(),
                    RestrictedExpression::new_string((*method).into()),
                );
                attrs.insert(
                    "path".into(),
                    RestrictedExpression::new_string((*pattern).into()),
                );
                uid("Route", &format!("{method} {pattern}"))
            }
            Target::Workflow {
                name,
                metadata,
                node_types,
            } => {
                for key in ["department", "classification"] {
                    if let Some(value) = metadata.get(key).and_then(cedar_value) {
                        attrs.insert(key.into(), value);
                    }
                }
                if let Some(l) = level(metadata.get("classification")) {
                    attrs.insert(
                        "classification_level".into(),
                        RestrictedExpression::new_long(l),
                    );
                }
                attrs.insert("node_types".into(), strings(node_types.iter().copied()));
                uid("Workflow", name)
            }
        };
        Entity::new(uid, attrs, HashSet::new()).expect("plain attribute values")
    }
}

fn principal(subject: &Subject<'_>) -> Entity {
    let mut attrs: HashMap<String, RestrictedExpression> = subject
        .attributes
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), cedar_value(v)?)))
        .collect();
    attrs.insert("roles".into(), strings(subject.roles.iter().cloned()));
    attrs.insert(
        "tenant".into(),
        RestrictedExpression::new_string(subject.tenant_id.into()),
    );
    if let Some(l) = level(subject.attributes.get("clearance")) {
        attrs.insert("clearance_level".into(), RestrictedExpression::new_long(l));
    }
    Entity::new(uid("User", subject.user_id), attrs, HashSet::new())
        .expect("plain attribute values")
}

fn context(now: DateTime<Utc>, client_ip: Option<&str>) -> Context {
    Context::from_pairs([
        (
            "hour".into(),
            RestrictedExpression::new_long(now.hour().into()),
        ),
        (
            "minute".into(),
            RestrictedExpression::new_long(now.minute().into()),
        ),
        (
            "weekday".into(),
            RestrictedExpression::new_long(now.weekday().num_days_from_monday().into()),
        ),
        (
            "client_ip".into(),
            RestrictedExpression::new_string(client_ip.unwrap_or_default().into()),
        ),
    ])
    .expect("distinct context keys")
}

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
    /// Per (tenant, action): only the policies whose action scope can match it, so a
    /// decision evaluates none that cannot apply.
    compiled: RwLock<HashMap<(String, String), Arc<PolicySet>>>,
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

    fn set_for(&self, tenant_id: &str, action: &EntityUid) -> Arc<PolicySet> {
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
        let mut set = PolicySet::new();
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
                        let _ = set.add(policy.clone());
                    }
                }
            }
        }
        let set = Arc::new(set);
        self.compiled
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, set.clone());
        set
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
        let principal = principal(subject);
        let resource = target.entity();
        let action = uid("Action", action);
        let policies = self.set_for(subject.tenant_id, &action);
        let request = Request::new(
            principal.uid(),
            action,
            resource.uid(),
            context(now, client_ip),
            None,
        );
        let (Ok(request), Ok(entities)) = (
            request,
            Entities::from_entities([principal, resource], None),
        ) else {
            return false;
        };
        Authorizer::new()
            .is_authorized(&request, &policies, &entities)
            .decision()
            == Decision::Allow
    }
}
