//! The PostgreSQL adapter of the accounts port: every record's round trip, tenant scoping
//! on each tenant-owned method, the two races the port names (failed-login counting and
//! refresh-token exchange) under real concurrency, the group-committed audit log, and
//! accounts, API keys and the audit log surviving a gateway restart, and what still works
//! while the database is down.

use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use futures_util::future::join_all;
use kailash_actors::accounts::{
    AccountError, AccountStore, ApiKeyRecord, AuditQuery, AuditRecord, Outcome, PolicyRecord,
    RefreshRecord, RefreshUse, RevokedId, RoleRecord, UserRecord,
};
use kailash_gateway::{adapters::postgres::accounts::PgAccounts, app::connect, config::Settings};
use reqwest::Method;
use serde_json::json;

use super::{PG_FAULT, faults::pg_ctl, fresh_database, spawn_on, stop};
use crate::{
    helpers::{TestApp, assert_error, eventually},
    identity::{admin_token, audit, login, tokens, user_with_roles},
};

async fn accounts() -> PgAccounts {
    let store = connect(&fresh_database().await, &Settings::default()).expect("pool builds");
    store.migrate().await.expect("migrations run");
    PgAccounts::new(Arc::new(store))
}

/// Now, at the database's precision (microseconds), so round trips compare equal.
fn now() -> DateTime<Utc> {
    Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .unwrap()
}

fn user(tenant: &str, name: &str) -> UserRecord {
    UserRecord {
        tenant_id: tenant.into(),
        username: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        roles: vec!["developer".into()],
        attributes: json!({"department": "finance", "clearance": 3})
            .as_object()
            .unwrap()
            .clone(),
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        totp_secret: None,
        totp_enabled: false,
        created_at: now(),
    }
}

#[actix_web::test]
async fn users_round_trip_and_stay_inside_their_tenant() {
    let _server_up = PG_FAULT.read().await;
    let store = accounts().await;
    let alice = user("acme", "alice");
    store.insert_user(alice.clone()).await.unwrap();
    assert_eq!(
        store.insert_user(alice.clone()).await,
        Err(AccountError::Conflict)
    );
    // The same name in another tenant is another user.
    store.insert_user(user("globex", "alice")).await.unwrap();

    assert_eq!(
        store.user("acme", "alice").await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.user("initech", "alice").await.unwrap(), None);
    let mut changed = alice.clone();
    changed.roles = vec!["viewer".into()];
    changed.totp_secret = Some("JBSWY3DPEHPK3PXP".into());
    changed.totp_enabled = true;
    store.update_user(changed.clone()).await.unwrap();
    assert_eq!(store.user("acme", "alice").await.unwrap(), Some(changed));
    assert_eq!(
        store.update_user(user("initech", "alice")).await,
        Err(AccountError::NotFound)
    );

    store.insert_user(user("acme", "bob")).await.unwrap();
    let names = |users: Vec<UserRecord>| users.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_users("acme").await.unwrap()),
        ["alice", "bob"]
    );
    assert_eq!(names(store.list_users("globex").await.unwrap()), ["alice"]);
    assert!(!store.delete_user("globex", "bob").await.unwrap());
    assert!(store.delete_user("acme", "bob").await.unwrap());
    assert_eq!(names(store.list_users("acme").await.unwrap()), ["alice"]);
}

#[actix_web::test]
async fn concurrent_failed_logins_lock_the_account_exactly_every_nth_time() {
    let _server_up = PG_FAULT.read().await;
    let store = accounts().await;
    store.insert_user(user("acme", "alice")).await.unwrap();
    let lock_until = now() + Duration::minutes(15);
    let failures =
        join_all((0..20).map(|_| store.record_failed_login("acme", "alice", 5, lock_until))).await;
    let locks = failures
        .into_iter()
        .map(Result::unwrap)
        .filter(Option::is_some)
        .count();
    assert_eq!(locks, 4, "20 failures with a limit of 5 lock four times");
    let stored = store.user("acme", "alice").await.unwrap().unwrap();
    assert_eq!(stored.locked_until, Some(lock_until));
    assert_eq!(stored.failed_logins, 0);
    // Another tenant's user of the same name is untouched; unknown users lock nothing.
    assert_eq!(
        store
            .record_failed_login("globex", "alice", 1, lock_until)
            .await,
        Ok(None)
    );
    store.clear_failed_logins("acme", "alice").await.unwrap();
    assert_eq!(
        store
            .user("acme", "alice")
            .await
            .unwrap()
            .unwrap()
            .locked_until,
        None
    );
}

#[actix_web::test]
async fn of_concurrent_refresh_exchanges_exactly_one_is_fresh() {
    let _server_up = PG_FAULT.read().await;
    let store = accounts().await;
    let token = RefreshRecord {
        jti: "jti-1".into(),
        family_id: "family-1".into(),
        tenant_id: "acme".into(),
        username: "alice".into(),
        expires_at: now() + Duration::days(7),
        used_at: None,
    };
    store.insert_refresh(token.clone()).await.unwrap();
    assert_eq!(
        store.insert_refresh(token.clone()).await,
        Err(AccountError::Conflict)
    );
    let at = now();
    let uses = join_all((0..10).map(|_| store.use_refresh("jti-1", at))).await;
    let fresh = uses
        .iter()
        .filter(|u| matches!(u, Ok(RefreshUse::Fresh(_))))
        .count();
    let reused = uses
        .iter()
        .filter(|u| matches!(u, Ok(RefreshUse::Reused(t)) if t.used_at == Some(at)))
        .count();
    assert_eq!((fresh, reused), (1, 9));
    assert_eq!(
        store.use_refresh("no-such-jti", at).await,
        Ok(RefreshUse::Unknown)
    );
}

#[actix_web::test]
async fn revocations_hold_until_their_tokens_expire() {
    let _server_up = PG_FAULT.read().await;
    let store = accounts().await;
    let soon = now() + Duration::minutes(5);
    store
        .revoke(RevokedId {
            id: "jti-1".into(),
            expires_at: soon,
        })
        .await
        .unwrap();
    // Revoking again (a logout after a reuse) is fine.
    store
        .revoke(RevokedId {
            id: "jti-1".into(),
            expires_at: soon,
        })
        .await
        .unwrap();
    assert!(store.any_revoked(&["other", "jti-1"]).await.unwrap());
    assert!(!store.any_revoked(&["other"]).await.unwrap());
    store.purge_revoked(now()).await.unwrap();
    assert!(store.any_revoked(&["jti-1"]).await.unwrap());
    store
        .purge_revoked(soon + Duration::seconds(1))
        .await
        .unwrap();
    assert!(!store.any_revoked(&["jti-1"]).await.unwrap());
}

#[actix_web::test]
async fn api_keys_are_found_by_hash_and_revoked_only_by_their_owner() {
    let _server_up = PG_FAULT.read().await;
    let store = accounts().await;
    let key = ApiKeyRecord {
        key_id: "key-1".into(),
        tenant_id: "acme".into(),
        username: "alice".into(),
        name: "ci".into(),
        key_hash: "ab".repeat(32),
        prefix: "kgw_abcd".into(),
        scopes: vec!["workflow:execute".into()],
        created_at: now(),
        expires_at: None,
        revoked_at: None,
    };
    store.insert_api_key(key.clone()).await.unwrap();
    assert_eq!(
        store.insert_api_key(key.clone()).await,
        Err(AccountError::Conflict)
    );
    assert_eq!(
        store.api_key_by_hash(&key.key_hash).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(
        store.list_api_keys("acme", "alice").await.unwrap(),
        std::slice::from_ref(&key)
    );
    assert!(
        store
            .list_api_keys("globex", "alice")
            .await
            .unwrap()
            .is_empty()
    );
    let at = now();
    assert!(
        !store
            .revoke_api_key("globex", "alice", "key-1", at)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_api_key("acme", "bob", "key-1", at)
            .await
            .unwrap()
    );
    assert!(
        store
            .revoke_api_key("acme", "alice", "key-1", at)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_api_key("acme", "alice", "key-1", at)
            .await
            .unwrap()
    );
    let stored = store.api_key_by_hash(&key.key_hash).await.unwrap().unwrap();
    assert_eq!(stored.revoked_at, Some(at));
}

#[actix_web::test]
async fn roles_and_policies_are_replaced_in_place_and_deleted_per_tenant() {
    let _server_up = PG_FAULT.read().await;
    let store = accounts().await;
    let role = RoleRecord {
        tenant_id: "acme".into(),
        name: "auditor".into(),
        permissions: vec!["audit:read".into()],
        denied_node_types: vec!["PythonCodeNode".into()],
        created_at: now(),
    };
    store.put_role(role.clone()).await.unwrap();
    let mut wider = role.clone();
    wider.permissions.push("workflow:read".into());
    store.put_role(wider.clone()).await.unwrap();
    assert_eq!(store.all_roles().await.unwrap(), [wider]);
    assert!(!store.delete_role("globex", "auditor").await.unwrap());
    assert!(store.delete_role("acme", "auditor").await.unwrap());
    assert!(store.all_roles().await.unwrap().is_empty());

    let policy = PolicyRecord {
        tenant_id: "acme".into(),
        policy_id: "business-hours".into(),
        text: "permit(principal, action, resource);".into(),
        created_at: now(),
    };
    store.put_policy(policy.clone()).await.unwrap();
    store
        .put_policy(PolicyRecord {
            tenant_id: "globex".into(),
            ..policy.clone()
        })
        .await
        .unwrap();
    assert_eq!(store.all_policies().await.unwrap().len(), 2);
    assert!(store.delete_policy("acme", "business-hours").await.unwrap());
    let left = store.all_policies().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].tenant_id, "globex");
}

fn entry(tenant: &str, n: usize, at: DateTime<Utc>) -> AuditRecord {
    AuditRecord {
        id: format!("entry-{n:04}"),
        tenant_id: tenant.into(),
        at,
        user_id: if n.is_multiple_of(2) { "alice" } else { "bob" }.into(),
        action: if n.is_multiple_of(3) {
            "auth.login"
        } else {
            "session:create"
        }
        .into(),
        outcome: if n.is_multiple_of(5) {
            Outcome::Denied
        } else {
            Outcome::Success
        },
        resource: Some("/api/sessions".into()),
        client_ip: Some("10.0.0.7".into()),
    }
}

#[actix_web::test]
async fn concurrent_audit_entries_are_all_committed_and_filtered_per_tenant() {
    let _server_up = PG_FAULT.read().await;
    let store = accounts().await;
    let start = now();
    let appends = join_all((0..600).map(|n| {
        let tenant = if n < 500 { "acme" } else { "globex" };
        store.append_audit(entry(tenant, n, start + Duration::milliseconds(n as i64)))
    }))
    .await;
    assert!(
        appends.iter().all(Result::is_ok),
        "every append acknowledged"
    );
    let query = |tenant: &str| AuditQuery {
        tenant_id: tenant.into(),
        limit: 10_000,
        ..Default::default()
    };
    let acme = store.query_audit(query("acme")).await.unwrap();
    assert_eq!(acme.len(), 500, "acknowledged means stored");
    assert!(acme.windows(2).all(|w| w[0].at >= w[1].at), "newest first");
    assert_eq!(acme.last().unwrap(), &entry("acme", 0, start));
    assert_eq!(store.query_audit(query("globex")).await.unwrap().len(), 100);

    let denied_logins_of_bob = store
        .query_audit(AuditQuery {
            user_id: Some("bob".into()),
            action: Some("auth.login".into()),
            outcome: Some(Outcome::Denied),
            ..query("acme")
        })
        .await
        .unwrap();
    let expected = (0..500)
        .filter(|n: &usize| !n.is_multiple_of(2) && n.is_multiple_of(15))
        .count();
    assert_eq!(denied_logins_of_bob.len(), expected);
    let window = store
        .query_audit(AuditQuery {
            since: Some(start + Duration::milliseconds(100)),
            until: Some(start + Duration::milliseconds(199)),
            limit: 30,
            ..query("acme")
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 30);
    assert_eq!(window[0].id, "entry-0199");
}

/// A user's key, by `POST /api/auth/api-keys`: (key, key_id).
async fn create_api_key(app: &TestApp, token: &str, name: &str) -> (String, String) {
    let created = app
        .request(Method::POST, "/api/auth/api-keys")
        .bearer_auth(token)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created = crate::helpers::json(created).await;
    (
        created["api_key"].as_str().unwrap().to_owned(),
        created["key_id"].as_str().unwrap().to_owned(),
    )
}

async fn sessions_with_key(app: &TestApp, key: &str) -> u16 {
    app.request(Method::GET, "/api/sessions")
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn accounts_keys_and_audit_survive_a_gateway_restart() {
    let _server_up = PG_FAULT.read().await;
    let url = fresh_database().await;
    let first = spawn_on(&url, |_| {}).await;
    let token = user_with_roles(&first, "carol", &["developer"]).await;
    let (kept, _) = create_api_key(&first, &token, "kept").await;
    let (revoked, revoked_id) = create_api_key(&first, &token, "revoked").await;
    let revoke = first
        .request(Method::DELETE, &format!("/api/auth/api-keys/{revoked_id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(revoke.status().is_success(), "{}", revoke.status());
    assert_eq!(sessions_with_key(&first, &kept).await, 200);
    stop(&first).await;

    // Same database, new process state: the bootstrap finds its admin and creates no other.
    let second = spawn_on(&url, |_| {}).await;
    tokens(&second, "carol", "carol-password").await;
    assert_eq!(sessions_with_key(&second, &kept).await, 200);
    assert_eq!(sessions_with_key(&second, &revoked).await, 401);
    let logins = audit(&second, "action=auth.login&user=carol").await;
    assert!(
        logins.len() >= 2,
        "the first run's login is still in the audit log: {logins:?}"
    );
    let users = second
        .request(Method::GET, "/api/admin/users")
        .bearer_auth(admin_token(&second).await)
        .send()
        .await
        .unwrap();
    let users = crate::helpers::json(users).await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "carol"]);
}

#[actix_web::test]
async fn with_the_database_down_tokens_still_work_revoked_ones_stay_refused_and_logins_get_503() {
    let url = fresh_database().await;
    let _server_mine = PG_FAULT.write().await;
    let app = spawn_on(&url, |s| s.database_timeout_ms = 1000).await;
    let live = user_with_roles(&app, "dana", &["developer"]).await;
    // A second login of the same user, logged out: its family is revoked.
    let revoked = tokens(&app, "dana", "dana-password").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = app
        .request(Method::POST, "/api/auth/logout")
        .bearer_auth(&revoked)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);

    pg_ctl(&["stop", "-m", "immediate"]);
    let sessions = async |token: &str| {
        app.request(Method::GET, "/api/sessions")
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(sessions(&live).await, 200, "a live token is still served");
    assert_eq!(
        sessions(&revoked).await,
        401,
        "a revoked one is still refused"
    );
    let refused = login(&app, "dana", "dana-password").await;
    assert_eq!(refused.headers().get("retry-after").unwrap(), "2");
    assert_error(
        refused,
        503,
        "store_unavailable",
        "The database is unavailable; nothing was changed, retry later",
    )
    .await;

    pg_ctl(&["start", "-w"]);
    assert!(
        eventually(std::time::Duration::from_secs(20), async || {
            login(&app, "dana", "dana-password").await.status() == 200
        })
        .await,
        "logins work again once the database is back"
    );
}
