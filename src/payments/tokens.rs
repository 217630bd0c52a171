//! Charge tokens: minted per session on the operator's connected account and delivered
//! to the operator in cursor order.

use uuid::Uuid;

use super::event_log::{self, Event};
use super::policy;
use crate::auth::Principal;
use crate::broker::Broker;
use crate::error::{ApiError, ApiResult};
use crate::events::Topic;
use crate::models::charge_tokens::IssuedValue;
use crate::models::{self, ChargeToken, ChargeTokenStatus, Customer, Link, LinkStatus, ParkingSession, SessionStatus};
use chrono::{SubsecRound, Utc};
use diesel_async::AsyncConnection;

/// Issues a PENDING token at the processor and records it ISSUED with the operator's
/// next delivery cursor. The processor request is keyed by the token row's id, so a
/// retry (after a timeout, a crash, or by a concurrent duplicate request) gets the same
/// processor token and the row is issued exactly once.
pub async fn issue(broker: &Broker, pending: &ChargeToken) -> ApiResult<ChargeToken> {
    let mut conn = broker.db().await?;
    let session = ParkingSession::find(&mut conn, pending.session_id).await?.ok_or(ApiError::NotFound("session"))?;
    let customer = Customer::find(&mut conn, session.customer_id).await?.ok_or(ApiError::NotFound("customer"))?;
    let platform = models::App::find(&mut conn, session.app_id).await?.ok_or(ApiError::NotFound("app"))?;
    let link = Link::find(&mut conn, pending.link_id).await?.ok_or(ApiError::NotFound("link"))?;
    drop(conn);
    issue_with(broker, pending, Parties { session: &session, customer: &customer, link: &link, platform: &platform })
        .await
}

/// The rows a token is issued with: its session, the session's customer, link and app.
pub struct Parties<'a> {
    /// The session the token pays for.
    pub session: &'a ParkingSession,
    /// The paying customer.
    pub customer: &'a Customer,
    /// The session's link (its connected account receives the token).
    pub link: &'a Link,
    /// The session's app (its platform account makes the token).
    pub platform: &'a models::App,
}

/// `issue` with the rows already at hand (a session just started read or wrote them).
pub async fn issue_with(broker: &Broker, pending: &ChargeToken, parties: Parties<'_>) -> ApiResult<ChargeToken> {
    let Parties { session, customer, link, platform } = parties;
    let (Some(customer_ref), Some(account)) = (&customer.processor_customer_id, &link.connected_account_id) else {
        return Err(ApiError::conflict("the session's link or customer is not ready for charging"));
    };
    let key = format!("charge-token:{}", pending.id);
    let issued = broker
        .processor
        .issue_charge_token(&super::parties::platform(broker, platform)?, customer_ref, account, &key)
        .await?;
    // Stored at microsecond precision: the event written with the row shows it exactly.
    let value = IssuedValue {
        token: &issued.token,
        issued_at: Utc::now().trunc_subsecs(6),
        expires_at: issued.expires_at.trunc_subsecs(6),
    };
    let shown = ChargeToken {
        status: ChargeTokenStatus::Issued,
        token: Some(issued.token.clone()),
        issued_at: Some(value.issued_at),
        expires_at: Some(value.expires_at),
        ..pending.clone()
    };
    let event = event_log::new_row(Event::charge_token_issued(&shown, session.app_id));
    let mut conn = broker.db().await?;
    let (token, newly) = match ChargeToken::issue(&mut conn, pending.id, value, &event).await? {
        Some(token) => (token, true),
        // A concurrent request issued it (or the link was revoked meanwhile).
        None => (ChargeToken::find(&mut conn, pending.id).await?.ok_or(ApiError::NotFound("charge token"))?, false),
    };
    drop(conn);
    if newly {
        crate::metrics::charge_token_issued();
        broker.events.publish(Topic::OperatorTokens(token.operator_id));
        event_log::announce_audience(broker, Some(session.app_id), Some(token.operator_id));
        tracing::info!(charge_token_id = %token.id, session_id = %token.session_id, operator_id = %token.operator_id, cursor = ?token.cursor, "charge token issued");
    }
    if token.status == ChargeTokenStatus::Voided {
        return Err(ApiError::conflict("the link was revoked; the charge token is void"));
    }
    Ok(token)
}

/// `reissueChargeToken`: a fresh token when the last one expired or was voided (or was
/// never issued). A still-valid token is a CONFLICT: the operator should use it.
pub async fn reissue(broker: &Broker, principal: &Principal, session_id: Uuid) -> ApiResult<ChargeToken> {
    let mut conn = broker.db().await?;
    let pending = conn
        .transaction(async |conn| {
            let session = ParkingSession::lock(conn, session_id)
                .await?
                .filter(|s| policy::may_see_session(principal, s))
                .ok_or(ApiError::NotFound("parking session"))?;
            if !matches!(session.status, SessionStatus::Active | SessionStatus::Ended) {
                return Err(ApiError::conflict("the session has been charged or closed; it needs no new token"));
            }
            if session.has_hold() {
                return Err(ApiError::conflict("a held session's token was spent on its hold; it needs no new token"));
            }
            if ChargeToken::consumed_for_session(conn, session.id).await?.is_some() {
                return Err(ApiError::conflict(
                    "a charge with this session's token is in progress; retry chargeSession",
                ));
            }
            let link = Link::find(conn, session.link_id).await?.ok_or(ApiError::NotFound("link"))?;
            if link.status != LinkStatus::Active {
                return Err(ApiError::conflict("the link between the app and the operator is not active"));
            }
            if let Some(current) = ChargeToken::outstanding_for_session(conn, session.id).await? {
                if current.status == ChargeTokenStatus::Pending {
                    return Ok(current);
                }
                if current.is_usable(chrono::Utc::now()) {
                    return Err(ApiError::conflict("the session's charge token is still valid; use it"));
                }
                ChargeToken::expire(conn, current.id).await?;
            }
            Ok(ChargeToken::insert_pending(conn, session.id, session.operator_id, session.link_id).await?)
        })
        .await?;
    drop(conn);
    issue(broker, &pending).await
}

/// `acknowledgeChargeToken`: the operator confirms it received the token.
pub async fn acknowledge(broker: &Broker, principal: &Principal, token_id: Uuid) -> ApiResult<ChargeToken> {
    let operator_id = policy::require_operator(principal)?;
    let mut conn = broker.db().await?;
    let token = ChargeToken::find(&mut conn, token_id)
        .await?
        .filter(|t| t.operator_id == operator_id && t.status != ChargeTokenStatus::Pending)
        .ok_or(ApiError::NotFound("charge token"))?;
    Ok(ChargeToken::acknowledge(&mut conn, token.id).await?)
}
