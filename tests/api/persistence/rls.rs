//! Row-level security (`V11__row_level_security.sql`): every tenant-owned table forces it,
//! the gateway's role does not bypass it, and a statement that forgets its `WHERE
//! tenant_id` — sent through the gateway's own pool — still sees and changes only the rows
//! of the tenant its transaction acts for, and nothing at all when it set no tenant.

use kailash_gateway::adapters::postgres::{GATEWAY_ROLE, Scope};
use tokio_postgres::error::SqlState;

use super::{PG_FAULT, migrated_store, store::fill};

/// Every table with a `tenant_id` column, from the catalog: a table added later without a
/// policy shows up here rather than being missed by a list kept by hand.
const TENANT_TABLES: &str = "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity \
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' \
    WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1";

#[actix_web::test]
async fn every_tenant_table_forces_row_level_security_and_the_gateway_role_cannot_bypass_it() {
    let _server_up = PG_FAULT.read().await;
    let store = migrated_store().await;
    let client = store.db().client().await.unwrap();

    let role = client
        .query_one(
            "SELECT current_user::text, r.rolbypassrls, r.rolsuper FROM pg_roles r \
             WHERE r.rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        role.get::<_, &str>(0),
        GATEWAY_ROLE,
        "the pool acts as the gateway role"
    );
    assert!(
        !role.get::<_, bool>(1),
        "the gateway role does not bypass RLS"
    );
    assert!(!role.get::<_, bool>(2), "the gateway role is no superuser");

    let tables = client.query(TENANT_TABLES, &[]).await.unwrap();
    assert!(tables.len() >= 15, "{} tenant tables", tables.len());
    for table in &tables {
        let name: &str = table.get(0);
        assert!(
            table.get::<_, bool>(1),
            "{name}: row-level security enabled"
        );
        assert!(table.get::<_, bool>(2), "{name}: row-level security forced");
    }
}

#[actix_web::test]
async fn an_unscoped_query_sees_and_changes_only_its_transactions_tenant() {
    let _server_up = PG_FAULT.read().await;
    let store = migrated_store().await;
    let (acme_session, _) = fill(&store, "acme").await;
    fill(&store, "globex").await;
    let db = store.db();
    let tables: Vec<String> = db
        .client()
        .await
        .unwrap()
        .query(TENANT_TABLES, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();

    for table in &tables {
        // Deliberately unscoped: no WHERE at all.
        let unscoped = format!("SELECT DISTINCT tenant_id FROM {table} ORDER BY 1");
        let seen = |rows: Vec<tokio_postgres::Row>| {
            rows.iter()
                .map(|row| row.get::<_, String>(0))
                .collect::<Vec<_>>()
        };
        let as_acme = seen(
            db.rows(Scope::Tenant("acme"), &unscoped, &[])
                .await
                .unwrap(),
        );
        assert!(
            as_acme.iter().all(|tenant| tenant == "acme"),
            "{table} as acme: {as_acme:?}"
        );
        let everything = seen(db.rows(Scope::AllTenants, &unscoped, &[]).await.unwrap());
        if ["sessions", "executions", "workflow_versions", "event_pages"].contains(&&**table) {
            assert_eq!(as_acme, ["acme"], "{table} holds acme's rows");
            assert_eq!(everything, ["acme", "globex"], "{table} across tenants");
        }
        // A pooled connection outside any scoped transaction: nothing.
        let client = db.client().await.unwrap();
        let bare = client.query(&unscoped, &[]).await.unwrap();
        assert!(
            bare.is_empty(),
            "{table} without a scope: {} rows",
            bare.len()
        );
    }

    // Changes: an unscoped UPDATE reaches acme's rows only; a row written for another
    // tenant is refused; without a scope nothing can be written at all.
    let updated = db
        .rows(
            Scope::Tenant("acme"),
            "UPDATE sessions SET metadata = '{\"touched\": true}' RETURNING tenant_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(updated.len(), 1);
    let untouched = db
        .rows(
            Scope::AllTenants,
            "SELECT count(*) FROM sessions WHERE tenant_id = 'globex' AND metadata ? 'touched'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(untouched[0].get::<_, i64>(0), 0);

    let cross_tenant_insert = "INSERT INTO workflow_versions \
        (tenant_id, session_id, workflow_id, version, definition, created_at) \
        VALUES ('globex', $1, 'planted', 1, '{}', now())";
    let refused = db
        .rows(
            Scope::Tenant("acme"),
            cross_tenant_insert,
            &[&acme_session.session_id],
        )
        .await;
    assert!(
        refused.is_err(),
        "a globex row written as acme: {refused:?}"
    );
    let client = db.client().await.unwrap();
    let bare = client
        .execute(cross_tenant_insert, &[&acme_session.session_id])
        .await
        .expect_err("a write without a scope");
    assert_eq!(bare.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
}
