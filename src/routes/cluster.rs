//! `GET /api/admin/nodes`: the live nodes of the cluster (full administrators only: the
//! route has no row in the permission table).

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde_json::json;

use crate::{
    adapters::redis::NodeInfo,
    app::AppState,
    http::{ApiError, ErrorCode},
};

/// With Redis, the nodes whose heartbeat has not lapsed; alone, this node.
pub async fn nodes(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let nodes = match &state.cluster {
        Some(cluster) => cluster.redis.nodes().await.map_err(|error| {
            ApiError::new(ErrorCode::Unavailable).with_detail(error.to_string())
        })?,
        None => {
            let now = Utc::now();
            vec![NodeInfo {
                node_id: state
                    .settings
                    .node_id
                    .clone()
                    .unwrap_or_else(|| "standalone".into()),
                address: state.settings.bind.clone(),
                started_at: now - state.lifecycle.uptime(),
                last_heartbeat: now,
            }]
        }
    };
    Ok(HttpResponse::Ok().json(json!({ "nodes": nodes })))
}
