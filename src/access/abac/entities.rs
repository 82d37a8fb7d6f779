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

/// Entries a [`Memo`] holds at most; a full memo starts over.
const MEMO_CAPACITY: usize = 4096;

/// What was built from some inputs, by a hash of the inputs. Each entry keeps its inputs and
/// counts only if they equal the asker's, so a hash collision or a changed input is a miss:
/// nothing ever needs to be invalidated.
struct Memo<I, V> {
    entries: RwLock<HashMap<u64, Arc<(I, V)>>>,
}

impl<I, V> Default for Memo<I, V> {
    fn default() -> Self {
        Self {
            entries: RwLock::default(),
        }
    }
}

impl<I, V> Memo<I, V> {
    /// The entry for `key` whose inputs `matches`, or a new one from `build`.
    fn get(
        &self,
        key: impl Hash,
        matches: impl Fn(&I) -> bool,
        build: impl FnOnce() -> Option<(I, V)>,
    ) -> Option<Arc<(I, V)>> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let key = hasher.finish();
        let cached = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(entry) = cached.filter(|entry| matches(&entry.0)) {
            return Some(entry);
        }
        let entry = Arc::new(build()?);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MEMO_CAPACITY {
            entries.clear();
        }
        entries.insert(key, entry.clone());
        Some(entry)
    }
}

/// The inputs of a route decision's entities: tenant, user, roles, account attributes,
/// method and pattern.
type EntityInputs = (
    String,
    String,
    Vec<String>,
    Map<String, Value>,
    String,
    String,
);

/// The entities and contexts of recent decisions. Building them (every attribute evaluated,
/// the hierarchy closed) costs more than deciding, and a caller asks about the same few
/// routes request after request, from one address.
#[derive(Default)]
pub(super) struct Cache {
    entities: Memo<EntityInputs, Arc<Entities>>,
    /// By minute of the week and client IP.
    contexts: Memo<(u32, String), Context>,
}

impl Cache {
    /// The entities of `subject` and `target`: remembered for routes, built afresh for
    /// workflows (asked about once, at creation). `None` if Cedar refuses them.
    pub fn entities(&self, subject: &Subject<'_>, target: &Target<'_>) -> Option<Arc<Entities>> {
        let build = || {
            Entities::from_entities([principal(subject), target.entity()], None)
                .ok()
                .map(Arc::new)
        };
        let Target::Route { method, pattern } = target else {
            return build();
        };
        let matches = |(tenant, user, roles, attributes, m, p): &EntityInputs| {
            (tenant.as_str(), user.as_str(), m.as_str(), p.as_str())
                == (subject.tenant_id, subject.user_id, *method, *pattern)
                && roles == subject.roles
                && attributes == subject.attributes
        };
        let entry = self.entities.get(
            (subject.tenant_id, subject.user_id, method, pattern),
            matches,
            || {
                let inputs = (
                    subject.tenant_id.to_owned(),
                    subject.user_id.to_owned(),
                    subject.roles.to_vec(),
                    subject.attributes.clone(),
                    (*method).to_owned(),
                    (*pattern).to_owned(),
                );
                Some((inputs, build()?))
            },
        )?;
        Some(entry.1.clone())
    }

    /// The context of a request at `now` from `client_ip` (see [`context_values`]).
    pub fn context(&self, now: DateTime<Utc>, client_ip: Option<&str>) -> Context {
        let minute = (now.weekday().num_days_from_monday() * 24 + now.hour()) * 60 + now.minute();
        let ip = client_ip.unwrap_or_default();
        let entry = self.contexts.get(
            (minute, ip),
            |(m, i)| (*m, i.as_str()) == (minute, ip),
            || {
                Some((
                    (minute, ip.to_owned()),
                    context(&context_values(now, client_ip)),
                ))
            },
        );
        // A context shares its contents: a clone is a reference count.
        entry.expect("a context is always built").1.clone()
    }
}
