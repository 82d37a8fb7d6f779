//! In-process authorization decisions: verify an HS256 access token, resolve its roles and
//! take a hybrid decision (RBAC permission and Cedar policies) against 100 policies — the
//! work the gate does per request besides the store lookups. Prints decisions/s and the
//! per-decision latency p50/p99/max.
//!
//! `cargo bench --bench authz` (release build). Not a test: nothing fails on slow numbers.

use std::{hint::black_box, time::Instant};

use kailash_gateway::{
    access::{
        abac::{Policies, Subject, Target},
        rbac::Roles,
    },
    auth::token::{MintRequest, TokenKeys, TokenType},
};
use serde_json::json;

const DECISIONS: usize = 200_000;
const POLICIES: usize = 100;

/// The shipped examples, then generated rules of the same shapes up to [`POLICIES`].
fn policy_text() -> String {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/examples");
    let mut text = String::new();
    let mut count = 0;
    for file in [
        "00-base.cedar",
        "data-access.cedar",
        "business-hours.cedar",
        "allowed-countries.cedar",
    ] {
        text.push_str(&std::fs::read_to_string(format!("{examples}/{file}")).unwrap());
        count += 1;
    }
    for i in count..POLICIES {
        text.push_str(&match i % 3 {
            0 => format!("forbid(principal == User::\"blocked-{i}\", action, resource);\n"),
            1 => format!(
                "forbid(principal, action == Action::\"custom:{i}\", resource)\n\
                 unless {{ principal has department && principal.department == \"dept-{i}\" }};\n"
            ),
            _ => format!(
                "forbid(principal, action, resource)\n\
                 when {{ context.client_ip == \"192.0.2.{}\" }};\n",
                i % 250
            ),
        });
    }
    text
}

fn main() {
    let dir = std::env::temp_dir().join(format!("kailash-bench-authz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bench.cedar"), policy_text()).unwrap();
    let policies = Policies::load(Some(&dir)).expect("the bench policies parse");
    std::fs::remove_dir_all(&dir).unwrap();

    let keys = TokenKeys::hs256(&[7; 32]);
    let token = keys.mint(&MintRequest {
        subject: "alice".into(),
        tenant_id: Some("acme".into()),
        roles: vec!["developer".into()],
        permissions: vec![],
        lifetime: chrono::Duration::hours(1),
        token_type: TokenType::Access,
    });
    let roles = Roles::default();
    let attributes = json!({"department": "finance", "clearance": "secret",
                            "location": {"country": "US"}})
    .as_object()
    .unwrap()
    .clone();
    let target = Target::Route {
        method: "GET",
        pattern: "/api/sessions/{session_id}",
    };
    // A weekday at 10:00 UTC: every example policy lets the request through.
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-18T10:00:00Z")
        .unwrap()
        .to_utc();

    let decide = || {
        let verified = keys.verify_access(&token).expect("the token verifies");
        let tenant = verified.tenant_id.as_deref().unwrap_or("default");
        let grants = roles.grants(tenant, &verified.roles, "developer");
        let subject = Subject {
            user_id: &verified.user_id,
            tenant_id: tenant,
            roles: &grants.roles,
            attributes: &attributes,
        };
        grants.permissions.contains("session:read")
            && policies.allows(&subject, "session:read", &target, now, Some("10.0.0.1"))
    };
    assert!(decide(), "the bench request is allowed");
    for _ in 0..10_000 {
        black_box(decide());
    }
    let mut latencies = Vec::with_capacity(DECISIONS);
    let started = Instant::now();
    for _ in 0..DECISIONS {
        let t = Instant::now();
        black_box(decide());
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "authz.decision (HS256 verify + roles + hybrid, {POLICIES} Cedar policies): \
         {:.0} decisions/s on one thread; p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({DECISIONS} decisions)",
        DECISIONS as f64 / total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        latencies[latencies.len() - 1].as_secs_f64() * 1e6,
    );
}
