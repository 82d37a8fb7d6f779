//! The policy index: which of the policies of one (tenant, action) a decision evaluates, and
//! how the answers of the evaluated groups add up to Cedar's decision.
//!
//! Cedar evaluates every policy of the set it is given, and in a large set most policies
//! cannot apply to a given request: they name another principal or resource, or they are
//! guarded by a context value the request does not carry (an IP block list is one `forbid`
//! per address). [`Index`] files each policy under one [`Guard`] — a condition the policy
//! needs in order to be satisfied — and a decision evaluates only the groups whose guard the
//! request meets, the way rule engines index rules by the equalities they test.
//!
//! Why the answer is Cedar's own: a policy whose guard fails is not satisfied (its condition
//! is a conjunction containing the guard, so it evaluates to false or to an error, and Cedar
//! skips a policy in error). Over the groups that are evaluated, permits and forbids combine
//! as they do within one set: allowed iff some permit is satisfied and no forbid is.

use std::collections::HashMap;

use cedar_policy::{
    Authorizer, Decision, Entities, EntityTypeName, EntityUid, Policy, PolicySet,
    PrincipalConstraint, Request, ResourceConstraint,
};
use serde_json::Value;

/// A condition a policy needs in order to be satisfied, as filed in the index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Guard {
    /// Nothing the index can check: evaluated by every decision.
    Always,
    /// `principal == P`, `principal in P` or `principal is T in P`. The entities a decision
    /// sees have no parents, so `in` holds only for `P` itself.
    Principal(EntityUid),
    /// `principal is T`.
    PrincipalType(EntityTypeName),
    /// The resource twins of the two above.
    Resource(EntityUid),
    ResourceType(EntityTypeName),
    /// A conjunct `context.<name> == <literal>` of a `when` clause: the name, and the
    /// literal as JSON (a string, a number or a boolean).
    Context(String, String),
}

/// The policies of one (tenant, action), grouped by guard.
#[derive(Default)]
pub(super) struct Index {
    groups: HashMap<Guard, PolicySet>,
}

/// What a request offers the guards: its principal, resource and context values.
pub(super) struct Keys<'a> {
    pub principal: &'a EntityUid,
    pub resource: &'a EntityUid,
    pub context: &'a [(&'static str, Value)],
}

impl Index {
    pub fn new(policies: impl IntoIterator<Item = Policy>) -> Self {
        let mut groups: HashMap<Guard, PolicySet> = HashMap::new();
        for policy in policies {
            // Ids are unique within the tenant's policies, so the add cannot fail.
            let _ = groups.entry(guard(&policy)).or_default().add(policy);
        }
        Self { groups }
    }

    /// The groups whose guard `keys` meet.
    fn matching<'a>(&'a self, keys: &Keys<'_>) -> impl Iterator<Item = &'a PolicySet> {
        let scope = [
            Guard::Always,
            Guard::Principal(keys.principal.clone()),
            Guard::PrincipalType(keys.principal.type_name().clone()),
            Guard::Resource(keys.resource.clone()),
            Guard::ResourceType(keys.resource.type_name().clone()),
        ];
        let context = keys
            .context
            .iter()
            .map(|(name, value)| Guard::Context((*name).to_owned(), value.to_string()));
        scope
            .into_iter()
            .chain(context)
            .filter_map(|guard| self.groups.get(&guard))
    }

    /// Cedar's decision on `request` over every policy of the index. `keys` must name the
    /// request's principal, resource and context.
    pub fn allows(&self, request: &Request, entities: &Entities, keys: &Keys<'_>) -> bool {
        let authorizer = Authorizer::new();
        let mut permitted = false;
        for group in self.matching(keys) {
            let response = authorizer.is_authorized(request, group, entities);
            match response.decision() {
                Decision::Allow => permitted = true,
                // A denial names its reasons only when a forbid is satisfied, and a satisfied
                // forbid overrides every permit, in this group or another.
                Decision::Deny if response.diagnostics().reason().next().is_some() => {
                    return false;
                }
                // No permit of this group is satisfied, and no forbid.
                Decision::Deny => {}
            }
        }
        permitted
    }
}

/// The most selective guard of `policy`: a named principal or resource, then a context
/// equality, then an entity type.
fn guard(policy: &Policy) -> Guard {
    let principal = policy.principal_constraint();
    let resource = policy.resource_constraint();
    match (principal, resource) {
        (
            PrincipalConstraint::Eq(uid)
            | PrincipalConstraint::In(uid)
            | PrincipalConstraint::IsIn(_, uid),
            _,
        ) => Guard::Principal(uid),
        (
            _,
            ResourceConstraint::Eq(uid)
            | ResourceConstraint::In(uid)
            | ResourceConstraint::IsIn(_, uid),
        ) => Guard::Resource(uid),
        (principal, resource) => context_guard(policy).unwrap_or(match (principal, resource) {
            (PrincipalConstraint::Is(kind), _) => Guard::PrincipalType(kind),
            (_, ResourceConstraint::Is(kind)) => Guard::ResourceType(kind),
            _ => Guard::Always,
        }),
    }
}

/// A `context.<name> == <literal>` (either way round) among the top-level conjuncts of the
/// policy's `when` clauses, read from its JSON form.
fn context_guard(policy: &Policy) -> Option<Guard> {
    let json = policy.to_json().ok()?;
    json.get("conditions")?
        .as_array()?
        .iter()
        .filter(|condition| condition.get("kind") == Some(&Value::from("when")))
        .filter_map(|condition| condition.get("body"))
        .find_map(conjunct_guard)
}

fn conjunct_guard(expr: &Value) -> Option<Guard> {
    if let Some(and) = expr.get("&&") {
        return conjunct_guard(and.get("left")?).or_else(|| conjunct_guard(and.get("right")?));
    }
    let eq = expr.get("==")?;
    let (left, right) = (eq.get("left")?, eq.get("right")?);
    let (name, literal) = context_attribute(left)
        .zip(literal(right))
        .or_else(|| context_attribute(right).zip(literal(left)))?;
    Some(Guard::Context(name.to_owned(), literal.to_string()))
}

/// `context.<name>`: the name.
fn context_attribute(expr: &Value) -> Option<&str> {
    let access = expr.get(".")?;
    (access.get("left")?.get("Var")? == "context")
        .then(|| access.get("attr")?.as_str())
        .flatten()
}

/// A string, number or boolean literal (entity and extension literals are not indexed).
fn literal(expr: &Value) -> Option<&Value> {
    expr.get("Value")
        .filter(|v| v.is_string() || v.is_i64() || v.is_boolean())
}

#[cfg(test)]
mod tests {
    use cedar_policy::EntityId;

    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::parse(None, text).unwrap()
    }

    #[test]
    fn policies_are_filed_under_their_most_selective_guard() {
        let user =
            |id: &str| EntityUid::from_type_name_and_id("User".parse().unwrap(), EntityId::new(id));
        let cases = [
            ("permit(principal, action, resource);", Guard::Always),
            (
                r#"forbid(principal in User::"bob", action, resource == Route::"GET /");"#,
                Guard::Principal(user("bob")),
            ),
            (
                r#"forbid(principal is User, action, resource == Route::"GET /");"#,
                Guard::Resource(EntityUid::from_type_name_and_id(
                    "Route".parse().unwrap(),
                    EntityId::new("GET /"),
                )),
            ),
            (
                r#"forbid(principal is User, action, resource)
                   when { principal has x && "192.0.2.1" == context.client_ip };"#,
                Guard::Context("client_ip".into(), r#""192.0.2.1""#.into()),
            ),
            (
                "forbid(principal, action, resource is Workflow) when { context.hour == 3 };",
                Guard::Context("hour".into(), "3".into()),
            ),
            (
                // Inside `unless`, or under `||`, an equality guards nothing.
                r#"forbid(principal, action, resource is Workflow)
                   unless { context.hour == 3 } when { context.hour == 4 || true };"#,
                Guard::ResourceType("Workflow".parse().unwrap()),
            ),
            (
                r#"permit(principal is Admin, action, resource);"#,
                Guard::PrincipalType("Admin".parse().unwrap()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(guard(&policy(text)), expected, "{text}");
        }
    }
}
