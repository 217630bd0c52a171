//! Apps and operators: the two sides of the marketplace.

use uuid::Uuid;

use super::{policy, required_text};
use crate::app::App;
use crate::auth::Principal;
use crate::error::ApiResult;
use crate::models::apps::NewApp;
use crate::models::operators::NewOperator;
use crate::models::{self, Operator};
use crate::processor::Platform;

/// Creates an app with its own platform account at the processor.
pub async fn create_app(app: &App, principal: &Principal, name: &str) -> ApiResult<models::App> {
    policy::require_admin(principal)?;
    let name = required_text("name", name, 200)?;
    // The id comes first: the processor account is provisioned for it (and provisioning
    // the same id again returns the same account).
    let id = Uuid::now_v7();
    let account = app.processor.provision_platform(id, name, None).await?;
    let mut conn = app.db().await?;
    let created = NewApp {
        id,
        name,
        processor: app.processor.name(),
        processor_account_id: &account.account_id,
        publishable_key: &account.publishable_key,
    }
    .insert(&mut conn)
    .await?;
    tracing::info!(app_id = %created.id, "app created");
    Ok(created)
}

pub async fn create_operator(app: &App, principal: &Principal, name: &str) -> ApiResult<Operator> {
    policy::require_admin(principal)?;
    let name = required_text("name", name, 200)?;
    let mut conn = app.db().await?;
    let created = NewOperator { id: Uuid::now_v7(), name }.insert(&mut conn).await?;
    tracing::info!(operator_id = %created.id, "operator created");
    Ok(created)
}

/// What the processor needs to act for the app.
pub fn platform(_app: &App, row: &models::App) -> ApiResult<Platform> {
    Ok(Platform::by_id(row.processor_account_id.clone()))
}

/// Whether the caller may see this app: admin, the app itself, or an operator linked to it.
pub async fn may_see_app(app: &App, principal: &Principal, app_id: Uuid) -> ApiResult<bool> {
    if policy::may_act_for_app(principal, app_id) {
        return Ok(true);
    }
    match principal.operator_id() {
        Some(operator_id) => {
            let mut conn = app.db().await?;
            Ok(models::Link::find_pair(&mut conn, app_id, operator_id).await?.is_some())
        }
        None => Ok(false),
    }
}
