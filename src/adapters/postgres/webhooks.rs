//! Webhook registrations and their recorded deliveries (deliveries are written by the
//! background writer's batches, see [`super::batch`]).

use kailash_actors::{
    TenantId,
    events::EventType,
    store::{StoreError, WebhookDeliveryRecord, WebhookRecord},
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Db, Scope, begin, scoped, sessions, store_error};

/// Records the registration, and its tenant the first time the tenant is seen.
pub async fn save(db: &Db, webhook: &WebhookRecord) -> Result<(), StoreError> {
    let tenant: &str = &webhook.tenant_id;
    let mut client = db.client().await?;
    let tx = begin(&mut client, Scope::Tenant(tenant))
        .await
        .map_err(store_error)?;
    let owner: &str = &webhook.owner;
    let headers = Value::Object(
        webhook
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect::<Map<_, _>>(),
    );
    sessions::add_tenant(&tx, tenant).await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO webhooks (tenant_id, webhook_id, owner, owner_sees_all_sessions, url, \
             secret, event_types, headers, session_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await
        .map_err(store_error)?;
    tx.execute(
        &insert,
        &scoped(
            &tenant,
            &[
                &webhook.webhook_id,
                &owner,
                &webhook.owner_sees_all_sessions,
                &webhook.url,
                &webhook.secret,
                &webhook.event_types,
                &headers,
                &webhook.session_id,
                &webhook.created_at,
            ],
        ),
    )
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)
}

pub async fn delete(db: &Db, tenant: &TenantId, webhook_id: Uuid) -> Result<bool, StoreError> {
    let tenant: &str = tenant;
    let mut client = db.client().await?;
    let tx = begin(&mut client, Scope::Tenant(tenant))
        .await
        .map_err(store_error)?;
    let deleted = tx
        .execute(
            "DELETE FROM webhooks WHERE tenant_id = $1 AND webhook_id = $2",
            &scoped(&tenant, &[&webhook_id]),
        )
        .await
        .map_err(store_error)?;
    tx.execute(
        "DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND webhook_id = $2",
        &scoped(&tenant, &[&webhook_id]),
    )
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(deleted > 0)
}

pub async fn list(db: &Db, tenant: &TenantId) -> Result<Vec<WebhookRecord>, StoreError> {
    let rows = db
        .query(
            "SELECT webhook_id, owner, owner_sees_all_sessions, url, secret, event_types, \
             headers, session_id, created_at FROM webhooks WHERE tenant_id = $1 \
             ORDER BY created_at, webhook_id",
            tenant,
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| WebhookRecord {
            tenant_id: tenant.clone(),
            webhook_id: row.get(0),
            owner: row.get::<_, &str>(1).into(),
            owner_sees_all_sessions: row.get(2),
            url: row.get(3),
            secret: row.get(4),
            event_types: row.get(5),
            headers: match row.get::<_, Value>(6) {
                Value::Object(headers) => headers
                    .into_iter()
                    .filter_map(|(name, value)| Some((name, value.as_str()?.to_owned())))
                    .collect(),
                _ => Vec::new(),
            },
            session_id: row.get(7),
            created_at: row.get(8),
        })
        .collect())
}

pub async fn deliveries(
    db: &Db,
    tenant: &TenantId,
    webhook_id: Uuid,
    limit: usize,
) -> Result<Vec<WebhookDeliveryRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = db
        .query(
            "SELECT delivery_id, event_type, event_seq, status, attempts, last_status_code, \
             last_error, finished_at FROM webhook_deliveries \
             WHERE tenant_id = $1 AND webhook_id = $2 \
             ORDER BY finished_at DESC, delivery_id DESC LIMIT $3",
            tenant,
            &[&webhook_id, &limit],
        )
        .await?;
    let mut records: Vec<_> = rows
        .iter()
        .map(|row| WebhookDeliveryRecord {
            tenant_id: tenant.clone(),
            webhook_id,
            delivery_id: row.get(0),
            event_type: row
                .get::<_, &str>(1)
                .parse::<EventType>()
                .map_or("unknown", |t| t.as_str()),
            event_seq: u64::try_from(row.get::<_, i64>(2)).unwrap_or_default(),
            status: if row.get::<_, &str>(3) == "delivered" {
                "delivered"
            } else {
                "given_up"
            },
            attempts: u32::try_from(row.get::<_, i32>(4)).unwrap_or_default(),
            last_status_code: row
                .get::<_, Option<i32>>(5)
                .and_then(|code| u16::try_from(code).ok()),
            last_error: row.get(6),
            finished_at: row.get(7),
        })
        .collect();
    records.reverse();
    Ok(records)
}
