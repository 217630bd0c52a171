//! Processor webhooks: verified over the raw body against each app's signing secret,
//! deduplicated by event id, then acted on in one transaction with the dedupe record,
//! so an event is applied exactly once even when the processor redelivers it.
//!
//! Scope: an app holds its own signing secret, so an event verified with it is that
//! app's word only. It acts on that app's link to the account and nothing else: it can
//! revoke that link or record the account's capabilities on it, never touch another
//! app's link or anything operator-wide (what an operator shows is computed from the
//! links a viewer can see; see `graphql::loaders::CapabilitiesLoader`).

use diesel_async::AsyncConnection;

use super::{links, parties};
use crate::broker::Broker;
use crate::error::{ApiError, ApiResult};
use crate::models::webhook_events::NewWebhookEvent;
use crate::models::{self, Link};
use crate::processor::WebhookEvent;

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Applied now.
    Applied,
    /// Seen before: acknowledged, nothing done.
    Duplicate,
    /// Not an event curbpay acts on.
    Ignored,
}

/// Verifies and applies one delivery. A bad or stale signature is BAD_USER_INPUT.
pub async fn receive(broker: &Broker, payload: &[u8], signature: &str) -> ApiResult<Received> {
    let mut conn = broker.db().await?;
    let candidates = models::App::with_webhook_secrets(&mut conn).await?;
    let mut rows = Vec::with_capacity(candidates.len());
    let mut secrets = Vec::with_capacity(candidates.len());
    for row in candidates {
        if let Some(secret) = parties::webhook_secret(broker, &row)? {
            secrets.push(secret);
            rows.push(row);
        }
    }
    let (index, event) = broker.processor.verify_webhook(&secrets, payload, signature)?;
    let platform = &rows[index];
    let (event_id, kind) = match &event {
        WebhookEvent::AccountDeauthorized { event_id, .. } => (event_id.clone(), "account.application.deauthorized"),
        WebhookEvent::AccountUpdated { event_id, .. } => (event_id.clone(), "account.updated"),
        WebhookEvent::RefundUpdated { event_id, .. } => (event_id.clone(), "refund.updated"),
        WebhookEvent::DisputeCreated { event_id, .. } => (event_id.clone(), "charge.dispute.created"),
        WebhookEvent::DisputeClosed { event_id, .. } => (event_id.clone(), "charge.dispute.closed"),
        WebhookEvent::AuthorizationCanceled { event_id, .. } => (event_id.clone(), "payment_intent.canceled"),
        WebhookEvent::Other { event_id, .. } => (event_id.clone(), "other"),
    };
    let mut releases = None;
    let mut touched = None;
    let app_id = platform.id;
    let (received, revoked) = conn
        .transaction(async |conn| {
            let fresh = NewWebhookEvent { id: &event_id, app_id, kind }.insert_if_new(conn).await?;
            if !fresh {
                return Ok::<_, ApiError>((Received::Duplicate, None));
            }
            match &event {
                WebhookEvent::AccountDeauthorized { connected_account_id, .. } => {
                    let Some(link) = Link::find_by_account(conn, app_id, connected_account_id).await? else {
                        return Ok((Received::Ignored, None));
                    };
                    let (link, Some(voided)) = links::revoke_in(conn, link.id).await? else {
                        return Ok((Received::Applied, None));
                    };
                    tracing::info!(link_id = %link.id, voided_tokens = voided, "link revoked by the operator at the processor");
                    Ok((Received::Applied, Some(link)))
                }
                WebhookEvent::AccountUpdated { connected_account_id, charges_enabled, payouts_enabled, .. } => {
                    let Some(link) = Link::find_by_account(conn, app_id, connected_account_id).await? else {
                        return Ok((Received::Ignored, None));
                    };
                    Link::set_capabilities(conn, link.id, *charges_enabled, *payouts_enabled).await?;
                    Ok((Received::Applied, None))
                }
                WebhookEvent::RefundUpdated { refund_id, state, .. } => {
                    touched = super::refunds::settle_from_processor(conn, refund_id, state).await?;
                    Ok((if touched.is_some() { Received::Applied } else { Received::Ignored }, None))
                }
                WebhookEvent::DisputeCreated { dispute, .. } => {
                    touched = super::disputes::open_in(conn, dispute).await?;
                    Ok((if touched.is_some() { Received::Applied } else { Received::Ignored }, None))
                }
                WebhookEvent::DisputeClosed { dispute_id, lost, .. } => {
                    let known = super::disputes::close_in(conn, dispute_id, *lost).await?.is_some();
                    Ok((if known { Received::Applied } else { Received::Ignored }, None))
                }
                WebhookEvent::AuthorizationCanceled { authorization_id, .. } => {
                    releases = super::holds::hold_canceled_in(conn, authorization_id).await?;
                    touched = releases.as_ref().map(|(session, _)| session.clone());
                    Ok((if releases.is_some() { Received::Applied } else { Received::Ignored }, None))
                }
                WebhookEvent::Other { .. } => Ok((Received::Ignored, None)),
            }
        })
        .await?;
    drop(conn);
    if let Some(session) = &touched {
        // Refunds, disputes and lapsed holds append session events in the transaction above.
        super::event_log::announce_audience(broker, Some(session.app_id), Some(session.operator_id));
    }
    if let Some((session, pending)) = releases {
        super::holds::release_all(broker, session, pending).await?;
    }
    if let Some(link) = revoked {
        links::announce(broker, &link);
    }
    tracing::info!(event_id, kind, %app_id, ?received, "webhook received");
    Ok(received)
}
