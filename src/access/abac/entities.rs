//! The entities and context a decision sees, built from the caller and the target, and the
//! cache of recently built entities.

use std::{
    collections::{HashMap, HashSet, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    str::FromStr,
    sync::{Arc, LazyLock, RwLock},
};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::{Map, Value};

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

/// The entity types a decision names, parsed once.
pub(super) struct Types {
    pub user: EntityTypeName,
    pub action: EntityTypeName,
    route: EntityTypeName,
    workflow: EntityTypeName,
}

pub(super) static TYPES: LazyLock<Types> = LazyLock::new(|| {
    let name = |n: &str| EntityTypeName::from_str(n).expect("a plain identifier");
    Types {
        user: name("User"),
        action: name("Action"),
        route: name("Route"),
        workflow: name("Workflow"),
    }
});

/// `kind::"id"`, built directly: the id is the entity's name as is, never Cedar source.
pub(super) fn uid(kind: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
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
    pub(super) fn uid(&self) -> EntityUid {
        match self {
            Target::Route { method, pattern } => uid(&TYPES.route, &format!("{method} {pattern}")),
            Target::Workflow { name, .. } => uid(&TYPES.workflow, name),
        }
    }

    pub(super) fn entity(&self) -> Entity {
        let mut attrs = HashMap::new();
        match self {
            Target::Route { method, pattern } => {
                attrs.insert(
                    "method".into(),
                    RestrictedExpression::new_string((*method).into()),
                );
                attrs.insert(
                    "path".into(),
                    RestrictedExpression::new_string((*pattern).into()),
                );
            }
            Target::Workflow {
                metadata,
                node_types,
                ..
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
            }
        }
        Entity::new(self.uid(), attrs, HashSet::new()).expect("plain attribute values")
    }
}

pub(super) fn principal(subject: &Subject<'_>) -> Entity {
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
    Entity::new(uid(&TYPES.user, subject.user_id), attrs, HashSet::new())
        .expect("plain attribute values")
}

/// The request context as JSON: what Cedar sees as `context`, and what the index's context
/// guards are checked against.
pub(super) fn context_values(
    now: DateTime<Utc>,
    client_ip: Option<&str>,
) -> [(&'static str, Value); 4] {
    [
        ("hour", now.hour().into()),
        ("minute", now.minute().into()),
        ("weekday", now.weekday().num_days_from_monday().into()),
        ("client_ip", client_ip.unwrap_or_default().into()),
    ]
}

pub(super) fn context(values: &[(&'static str, Value)]) -> Context {
    Context::from_pairs(
        values
            .iter()
            .filter_map(|(name, value)| Some(((*name).to_owned(), cedar_value(value)?))),
    )
    .expect("distinct context keys")
}

/// Entities the cache holds at most; a full cache starts over.
const CACHE_CAPACITY: usize = 4096;

/// The entities of recent route decisions, by caller and route. Building them (every
/// attribute evaluated, the hierarchy closed) costs more than deciding, and a caller asks
/// about the same few routes request after request. An entry is used only if it was built
/// from the same inputs — roles and account attributes included — so a change to either is
/// seen by the next decision without anyone having to invalidate it.
#[derive(Default)]
pub(super) struct EntityCache {
    entries: RwLock<HashMap<u64, Arc<Built>>>,
}

/// Entities and the inputs they were built from.
pub(super) struct Built {
    tenant_id: String,
    user_id: String,
    roles: Vec<String>,
    attributes: Map<String, Value>,
    route: Option<(String, String)>,
    pub entities: Entities,
}

impl Built {
    fn new(subject: &Subject<'_>, target: &Target<'_>) -> Option<Self> {
        Some(Self {
            tenant_id: subject.tenant_id.to_owned(),
            user_id: subject.user_id.to_owned(),
            roles: subject.roles.to_vec(),
            attributes: subject.attributes.clone(),
            route: route(target).map(|(m, p)| (m.to_owned(), p.to_owned())),
            entities: Entities::from_entities([principal(subject), target.entity()], None).ok()?,
        })
    }

    fn is_for(&self, subject: &Subject<'_>, target: &Target<'_>) -> bool {
        self.tenant_id == subject.tenant_id
            && self.user_id == subject.user_id
            && self.roles == subject.roles
            && self.attributes == *subject.attributes
            && self.route.as_ref().map(|(m, p)| (m.as_str(), p.as_str())) == route(target)
    }
}

fn route<'a>(target: &Target<'a>) -> Option<(&'a str, &'a str)> {
    match target {
        Target::Route { method, pattern } => Some((method, pattern)),
        Target::Workflow { .. } => None,
    }
}

impl EntityCache {
    /// The entities of `subject` and `target`: cached for routes, built afresh for workflows
    /// (asked about once, at creation). `None` if Cedar refuses them.
    pub fn entities(&self, subject: &Subject<'_>, target: &Target<'_>) -> Option<Arc<Built>> {
        let Some((method, pattern)) = route(target) else {
            return Built::new(subject, target).map(Arc::new);
        };
        let mut hasher = DefaultHasher::new();
        (subject.tenant_id, subject.user_id, method, pattern).hash(&mut hasher);
        let key = hasher.finish();
        let cached = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(built) = cached.filter(|b| b.is_for(subject, target)) {
            return Some(built);
        }
        let built = Arc::new(Built::new(subject, target)?);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert(key, built.clone());
        Some(built)
    }
}
