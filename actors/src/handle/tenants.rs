//! What the handle does for a whole tenant rather than one caller: the shared tenant table
//! the tenant actors read their limits from, and ending the live work of a tenant that was
//! deactivated.

use std::sync::Arc;

use super::Gateway;
use crate::{
    accounts::TenantTable,
    caller::TenantId,
    error::GatewayError,
    execution::{ExecutionStatus, StopReason},
    tenant::CancelTenantRuns,
};

/// How a run cancelled by its tenant's deactivation ends.
const TENANT_DEACTIVATED: StopReason = StopReason {
    status: ExecutionStatus::Cancelled,
    error: "cancelled: the tenant was deactivated",
};

impl Gateway {
    /// The tenant records the tree enforces: the gateway crate keeps them current.
    pub fn tenant_table(&self) -> Arc<TenantTable> {
        self.config.tenants.clone()
    }

    /// Cancels every execution of `tenant_id` running on this node (status `cancelled`,
    /// the error of [`TENANT_DEACTIVATED`], each announced by `workflow.cancelled`); returns how
    /// many were cancelled. Its sessions stay: the tenant may be activated again.
    pub async fn cancel_tenant_runs(&self, tenant_id: TenantId) -> Result<usize, GatewayError> {
        self.ask(
            &self.registry,
            CancelTenantRuns {
                tenant_id,
                reason: TENANT_DEACTIVATED,
            },
        )
        .await?
    }
}
