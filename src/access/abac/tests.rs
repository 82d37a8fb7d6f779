//! The indexed decision against Cedar's over the whole policy set, for permits, forbids,
//! scopes, conditions on attributes, time and client IP, and policies in error.

use cedar_policy::{Authorizer, Decision, Entities};
use chrono::TimeZone;
use serde_json::{Map, Value, json};

use super::{
    entities::{TYPES, context, context_values, principal, uid},
    *,
};

/// Every scope and guard shape the index knows, and some it does not.
const POLICIES: &str = r#"
permit(principal, action, resource) when { context.hour >= 9 };
permit(principal == User::"carol", action == Action::"session:close", resource);
forbid(principal == User::"bob", action, resource);
forbid(principal in User::"dave", action == Action::"session:read", resource);
forbid(principal, action, resource) when { context.client_ip == "192.0.2.7" };
forbid(principal, action, resource)
  when { principal.department == "ops" && "192.0.2.8" == context.client_ip };
permit(principal, action in [Action::"workflow:read", Action::"session:read"],
       resource == Route::"GET /api/x")
  when { context.weekday < 5 };
forbid(principal, action, resource is Workflow)
  when { resource has classification_level && resource.classification_level > 2 }
  unless { principal has clearance_level && principal.clearance_level >= 3 };
forbid(principal, action, resource) when { context.hour == 3 };
permit(principal is User, action == Action::"workflow:create", resource is Workflow);
forbid(principal is Admin, action, resource);
permit(principal, action, resource) when { context.minute == 30 && principal.roles.contains("admin") };
forbid(principal, action, resource == Workflow::"w-secret");
permit(principal, action, resource) when { principal.missing == 1 };
forbid(principal, action, resource) when { context.weekday == 5 || principal.department == "hr" };
"#;

fn policies() -> Policies {
    let policies = Policies::default();
    policies.put(PolicyRecord {
        tenant_id: "t".into(),
        policy_id: "mix".into(),
        text: POLICIES.into(),
        created_at: Utc::now(),
    });
    policies
}

/// Cedar's decision over every policy, none skipped.
fn unindexed(
    subject: &Subject<'_>,
    action: &str,
    target: &Target<'_>,
    now: DateTime<Utc>,
    ip: Option<&str>,
) -> bool {
    let set = PolicySet::from_str(POLICIES).unwrap();
    let principal = principal(subject);
    let resource = target.entity();
    let request = Request::new(
        principal.uid(),
        uid(&TYPES.action, action),
        resource.uid(),
        context(&context_values(now, ip)),
        None,
    )
    .unwrap();
    let entities = Entities::from_entities([principal, resource], None).unwrap();
    Authorizer::new()
        .is_authorized(&request, &set, &entities)
        .decision()
        == Decision::Allow
}

#[test]
fn the_indexed_decision_is_cedars_over_all_policies() {
    let policies = policies();
    let users = [
        (
            "alice",
            json!({"department": "finance", "clearance": "secret"}),
        ),
        ("bob", json!({})),
        ("carol", json!({"department": "hr"})),
        ("dave", json!({"clearance": "internal"})),
        ("eve", json!({"department": "ops"})),
    ];
    let role_sets: [&[String]; 2] = [&[], &["admin".to_owned()]];
    let actions = [
        "session:read",
        "session:close",
        "workflow:create",
        "workflow:read",
    ];
    let secret = json!({"classification": "secret"});
    let plain = json!({});
    let targets = [
        Target::Route {
            method: "GET",
            pattern: "/api/x",
        },
        Target::Route {
            method: "GET",
            pattern: "/api/y",
        },
        Target::Workflow {
            name: "w",
            metadata: &secret,
            node_types: vec!["CSVReaderNode"],
        },
        Target::Workflow {
            name: "w-secret",
            metadata: &plain,
            node_types: vec![],
        },
    ];
    // Wednesday 03:00, Wednesday 10:30, Saturday 10:00.
    let times = [(18, 3, 0), (18, 10, 30), (21, 10, 0)].map(|(day, hour, minute)| {
        Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
            .unwrap()
    });
    let ips = [None, Some("192.0.2.7"), Some("192.0.2.8"), Some("10.0.0.1")];
    let (mut allowed, mut denied) = (0, 0);
    for (user, attributes) in &users {
        for roles in role_sets {
            let subject = Subject {
                user_id: user,
                tenant_id: "t",
                roles,
                attributes: attributes.as_object().unwrap(),
            };
            for action in actions {
                for target in &targets {
                    for now in times {
                        for ip in ips {
                            let expected = unindexed(&subject, action, target, now, ip);
                            assert_eq!(
                                policies.allows(&subject, action, target, now, ip),
                                expected,
                                "{user} {roles:?} {action} {now} {ip:?}"
                            );
                            if expected { allowed += 1 } else { denied += 1 }
                        }
                    }
                }
            }
        }
    }
    assert!(
        allowed > 100 && denied > 100,
        "{allowed} allowed, {denied} denied"
    );
}

#[test]
fn a_change_of_policies_or_attributes_is_seen_by_the_next_decision() {
    let policies = policies();
    let mut attributes = Map::new();
    let target = Target::Route {
        method: "GET",
        pattern: "/api/x",
    };
    let now = Utc.with_ymd_and_hms(2026, 11, 18, 10, 0, 0).unwrap();
    let ip = Some("10.0.0.9");
    let allows = |attributes: &Map<String, Value>, ip| {
        let subject = Subject {
            user_id: "alice",
            tenant_id: "t",
            roles: &[],
            attributes,
        };
        policies.allows(&subject, "session:read", &target, now, ip)
    };
    assert!(allows(&attributes, ip));
    attributes.insert("department".into(), "hr".into());
    assert!(
        !allows(&attributes, ip),
        "the cached entities are not reused"
    );
    attributes.clear();
    assert!(allows(&attributes, ip));
    policies.put(PolicyRecord {
        tenant_id: "t".into(),
        policy_id: "block".into(),
        text: r#"forbid(principal, action, resource) when { context.client_ip == "10.0.0.9" };"#
            .into(),
        created_at: Utc::now(),
    });
    assert!(!allows(&attributes, ip));
    assert!(allows(&attributes, Some("10.0.0.8")));
    policies.remove("t", "block");
    assert!(allows(&attributes, ip));
}
