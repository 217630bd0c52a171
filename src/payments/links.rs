//! Links: connecting an operator's processor account to an app's platform (Connect
//! OAuth). An app (or an admin) asks for a link with `linkOperator`; only the link's
//! operator and admins see the authorization URL, whose signed, single-use `state`
//! names the link, the operator and a nonce. The processor redirects back to
//! `/connect/callback` (or the operator or an admin calls `completeLink`) with a code
//! that becomes the operator's connected account id.
//!
//! An operator is known by the first processor account it connects. An authorization
//! that yields another account (or one another operator is known by) leaves the link
//! PENDING with the account held, until an admin accepts it (`acceptLinkAccount`): no
//! code obtained by someone else can point an operator's money at another account.

use uuid::Uuid;

use super::policy;
use crate::auth::{Principal, StateClaims};
use crate::broker::Broker;
use crate::error::{ApiError, ApiResult};
use crate::events::Topic;
use crate::models::{self, ChargeToken, Link, LinkEvent, LinkStatus, Operator};
use crate::processor::{AuthorizationRequest, LinkAuthorization};
use diesel_async::{AsyncConnection, AsyncPgConnection};

fn invalid_state() -> ApiError {
    ApiError::bad_input("the authorization state is invalid or has expired")
}

/// The link a verified state names, as long as that authorization is the outstanding
/// one: the link is PENDING, the nonce current and the operator the link's.
async fn outstanding(conn: &mut AsyncPgConnection, claims: &StateClaims) -> ApiResult<Link> {
    let link = Link::find(conn, claims.link).await?.ok_or_else(invalid_state)?;
    if link.operator_id != claims.operator {
        return Err(invalid_state());
    }
    if link.status != LinkStatus::Pending || link.state_nonce != Some(claims.nonce) {
        return Err(ApiError::conflict("this authorization was already used"));
    }
    Ok(link)
}

/// The authorization URL of a pending link, for the link's operator or an admin (an
/// app asks for the link but does not authorize it).
pub fn authorization_url(
    broker: &Broker,
    principal: &Principal,
    link: &Link,
    platform: &models::App,
) -> ApiResult<Option<String>> {
    let (LinkStatus::Pending, Some(nonce)) = (link.status, link.state_nonce) else {
        return Ok(None);
    };
    if !policy::may_authorize_link(principal, link) {
        return Ok(None);
    }
    let state = broker.state_signer.sign(link.id, link.operator_id, nonce)?;
    let redirect_uri = callback_url(broker)?;
    let platform = super::parties::platform(broker, platform)?;
    let url = broker.processor.authorization_url(&AuthorizationRequest {
        platform: &platform,
        state: &state,
        redirect_uri: redirect_uri.as_str(),
    })?;
    Ok(Some(url.to_string()))
}

/// What a consent page may act on: the link and operator a code is bound to, and the
/// platform account of the link's app.
pub struct Consent {
    /// The link and operator, from the verified state.
    pub authorization: LinkAuthorization,
    /// The processor's id of the platform account of the link's app.
    pub platform_account_id: String,
}

/// A consent page (the sandbox's) checks the request before it issues anything: the
/// state must be genuine and the link's outstanding authorization. The link, operator
/// and platform come from the state only, never from anything else in the URL.
pub async fn consent(broker: &Broker, state: &str) -> ApiResult<Consent> {
    let claims = broker.state_signer.verify(state).ok_or_else(invalid_state)?;
    let mut conn = broker.db().await?;
    let link = outstanding(&mut conn, &claims).await?;
    let platform = models::App::find(&mut conn, link.app_id).await?.ok_or(ApiError::NotFound("app"))?;
    Ok(Consent {
        authorization: LinkAuthorization { link_id: link.id, operator_id: link.operator_id },
        platform_account_id: platform.processor_account_id,
    })
}

/// This server's OAuth redirect target.
pub fn callback_url(broker: &Broker) -> ApiResult<url::Url> {
    broker.config.public_url.join("connect/callback").map_err(|e| ApiError::internal_caused("bad public URL", e))
}

/// Starts (or restarts) linking an operator to an app. An active link is returned as is.
pub async fn link_operator(broker: &Broker, principal: &Principal, app_id: Uuid, operator_id: Uuid) -> ApiResult<Link> {
    if !policy::may_act_for_app(principal, app_id) {
        return Err(match principal.app_id() {
            // Another app's id answers like a missing app.
            Some(_) => ApiError::NotFound("app"),
            None => ApiError::forbidden("linkOperator needs the admin role or the app itself"),
        });
    }
    let mut conn = broker.db().await?;
    if models::App::find(&mut conn, app_id).await?.is_none() {
        return Err(ApiError::NotFound("app"));
    }
    if models::Operator::find(&mut conn, operator_id).await?.is_none() {
        return Err(ApiError::NotFound("operator"));
    }
    let (link, changed) = conn
        .transaction(async |conn| {
            let (link, created) = Link::insert_pending(conn, Uuid::now_v7(), app_id, operator_id).await?;
            let (link, changed) = match link.status {
                LinkStatus::Revoked => (Link::restart(conn, link.id).await?, true),
                _ => (link, created),
            };
            if changed {
                LinkEvent::record(conn, &link).await?;
                super::event_log::emit(conn, super::event_log::Event::link_status_changed(&link)).await?;
            }
            Ok::<_, ApiError>((link, changed))
        })
        .await?;
    if changed {
        announce(broker, &link);
        tracing::info!(link_id = %link.id, %app_id, %operator_id, "link pending authorization");
    }
    Ok(link)
}

/// `completeLink`: the link's operator (or an admin) hands in the code.
pub async fn complete_link(broker: &Broker, principal: &Principal, link_id: Uuid, code: &str) -> ApiResult<Link> {
    let mut conn = broker.db().await?;
    let link = Link::find(&mut conn, link_id)
        .await?
        .filter(|link| policy::may_see_link(principal, link))
        .ok_or(ApiError::NotFound("link"))?;
    drop(conn);
    if !policy::may_authorize_link(principal, &link) {
        return Err(ApiError::forbidden("only the link's operator or an admin may authorize a link"));
    }
    activate(broker, link, None, code).await
}

/// `/connect/callback`: the processor's redirect, authenticated by the signed state.
/// The link comes back `ACTIVE`, or `PENDING` with a held account (see `activate`).
pub async fn complete_from_callback(broker: &Broker, state: &str, code: &str) -> ApiResult<Link> {
    let claims = broker.state_signer.verify(state).ok_or_else(invalid_state)?;
    let mut conn = broker.db().await?;
    let link = outstanding(&mut conn, &claims).await?;
    drop(conn);
    activate(broker, link, Some(claims.nonce), code).await
}

/// The operator declined (or the processor reported an error) on the consent page.
pub async fn fail_from_callback(broker: &Broker, state: &str, reason: &str) -> ApiResult<Link> {
    let claims = broker.state_signer.verify(state).ok_or_else(invalid_state)?;
    let mut conn = broker.db().await?;
    let reason: String = reason.chars().take(500).collect();
    conn.transaction(async |conn| {
        let link = Link::lock(conn, claims.link).await?.ok_or_else(invalid_state)?;
        if link.operator_id != claims.operator {
            return Err(invalid_state());
        }
        if link.status != LinkStatus::Pending || link.state_nonce != Some(claims.nonce) {
            return Err(ApiError::conflict("this authorization was already used"));
        }
        Ok(Link::record_failure(conn, link.id, &reason).await?)
    })
    .await
}

/// How an authorization's account relates to the operator.
enum Binding {
    /// The operator's known account.
    Known,
    /// The operator's first account; it becomes the known one.
    First,
    /// Not the operator's account as far as curbpay knows: held for an admin.
    Held(String),
}

/// Decides whether `account` may become the operator's link account on its own.
async fn binding(conn: &mut AsyncPgConnection, operator: &Operator, account: &str) -> ApiResult<Binding> {
    let must_accept = "an admin must accept it (acceptLinkAccount) before the link becomes active";
    Ok(match operator.processor_account_id.as_deref() {
        Some(known) if known == account => Binding::Known,
        Some(_) => Binding::Held(format!(
            "the authorization connected processor account {account}, which is not the account this operator is \
             known by; {must_accept}"
        )),
        None => match Operator::other_with_account(conn, operator.id, account).await? {
            Some(_) => Binding::Held(format!(
                "the authorization connected processor account {account}, which another operator is known by; \
                 {must_accept}"
            )),
            None => Binding::First,
        },
    })
}

/// Redeems the code at the processor and binds the account it names to the link: the
/// link becomes ACTIVE when the account is the operator's (its known one, or its first
/// ever), and otherwise stays PENDING with the account held and the reason in
/// `failureReason`.
async fn activate(broker: &Broker, link: Link, nonce: Option<Uuid>, code: &str) -> ApiResult<Link> {
    let code = code.trim();
    if code.is_empty() {
        return Err(ApiError::bad_input("authorizationCode must not be empty"));
    }
    match link.status {
        LinkStatus::Active if nonce.is_none() => return Ok(link),
        LinkStatus::Pending => {}
        _ => return Err(ApiError::conflict("this link is not waiting for authorization")),
    }
    if let Some(nonce) = nonce
        && link.state_nonce != Some(nonce)
    {
        return Err(ApiError::conflict("this authorization was already used"));
    }
    let mut conn = broker.db().await?;
    let platform = models::App::find(&mut conn, link.app_id).await?.ok_or(ApiError::NotFound("app"))?;
    drop(conn);
    let authorization = LinkAuthorization { link_id: link.id, operator_id: link.operator_id };
    let account =
        broker.processor.complete_link(&super::parties::platform(broker, &platform)?, code, &authorization).await?;
    let mut conn = broker.db().await?;
    let link = conn
        .transaction(async |conn| {
            let current = Link::lock(conn, link.id).await?.ok_or(ApiError::NotFound("link"))?;
            if current.status != LinkStatus::Pending || (nonce.is_some() && current.state_nonce != nonce) {
                return Err(ApiError::conflict("this link is not waiting for authorization"));
            }
            // The operator's row lock orders concurrent first authorizations.
            let operator = Operator::lock(conn, link.operator_id).await?.ok_or(ApiError::NotFound("operator"))?;
            match binding(conn, &operator, &account).await? {
                Binding::Held(reason) => {
                    tracing::warn!(link_id = %link.id, operator_id = %operator.id, "authorization held: the account is not the operator's known account");
                    return Ok(Link::hold(conn, link.id, &account, &reason).await?);
                }
                Binding::First => {
                    Operator::set_processor_account(conn, operator.id, &account).await?;
                }
                Binding::Known => {}
            }
            let link = Link::activate(conn, link.id, &account).await?;
            LinkEvent::record(conn, &link).await?;
                super::event_log::emit(conn, super::event_log::Event::link_status_changed(&link)).await?;
            Ok(link)
        })
        .await?;
    if link.status == LinkStatus::Active {
        announce(broker, &link);
        tracing::info!(link_id = %link.id, "link active");
    }
    Ok(link)
}

/// `acceptLinkAccount` (admin): activates a link on the account its last authorization
/// yielded and curbpay held because it is not the operator's known account. The
/// operator keeps its known account (or, having none, gets this one).
pub async fn accept_held_account(broker: &Broker, principal: &Principal, link_id: Uuid) -> ApiResult<Link> {
    policy::require_admin(principal)?;
    let mut conn = broker.db().await?;
    let link = conn
        .transaction(async |conn| {
            let current = Link::lock(conn, link_id).await?.ok_or(ApiError::NotFound("link"))?;
            let (LinkStatus::Pending, Some(account)) = (current.status, current.held_account_id.as_deref()) else {
                return Err(ApiError::conflict("this link has no processor account waiting for acceptance"));
            };
            let operator = Operator::lock(conn, current.operator_id).await?.ok_or(ApiError::NotFound("operator"))?;
            if operator.processor_account_id.is_none() {
                Operator::set_processor_account(conn, operator.id, account).await?;
            }
            let link = Link::activate(conn, current.id, account).await?;
            LinkEvent::record(conn, &link).await?;
            super::event_log::emit(conn, super::event_log::Event::link_status_changed(&link)).await?;
            Ok(link)
        })
        .await?;
    announce(broker, &link);
    tracing::info!(link_id = %link.id, "held link account accepted; link active");
    Ok(link)
}

/// Revokes a link at the processor and here; its outstanding charge tokens are voided.
pub async fn unlink(broker: &Broker, principal: &Principal, link_id: Uuid) -> ApiResult<Link> {
    let mut conn = broker.db().await?;
    let link = Link::find(&mut conn, link_id)
        .await?
        .filter(|link| policy::may_see_link(principal, link))
        .ok_or(ApiError::NotFound("link"))?;
    if link.status == LinkStatus::Revoked {
        return Ok(link);
    }
    if let Some(account) = &link.connected_account_id {
        let platform = models::App::find(&mut conn, link.app_id).await?.ok_or(ApiError::NotFound("app"))?;
        drop(conn);
        broker.processor.revoke_link(&super::parties::platform(broker, &platform)?, account).await?;
        conn = broker.db().await?;
    }
    let (link, voided) = conn.transaction(async |conn| revoke_in(conn, link_id).await).await?;
    announce(broker, &link);
    tracing::info!(link_id = %link.id, voided_tokens = voided.unwrap_or(0), "link revoked");
    Ok(link)
}

/// Revokes a link within the caller's transaction (`unlinkOperator`, and the processor's
/// word that the operator disconnected): locks it and, unless it is revoked already,
/// revokes it, voids its outstanding charge tokens and records the change (the link
/// event and the event log). Returns the link and how many tokens were voided, `None`
/// when it was revoked before and nothing changed. The caller announces the change
/// after commit (`announce`).
pub(crate) async fn revoke_in(conn: &mut AsyncPgConnection, link_id: Uuid) -> ApiResult<(Link, Option<usize>)> {
    let current = Link::lock(conn, link_id).await?.ok_or(ApiError::NotFound("link"))?;
    if current.status == LinkStatus::Revoked {
        return Ok((current, None));
    }
    let link = Link::revoke(conn, link_id).await?;
    let voided = ChargeToken::void_for_link(conn, link_id).await?;
    LinkEvent::record(conn, &link).await?;
    super::event_log::emit(conn, super::event_log::Event::link_status_changed(&link)).await?;
    Ok((link, Some(voided)))
}

pub(crate) fn announce(broker: &Broker, link: &Link) {
    broker.events.publish(Topic::PartyLinks(link.app_id));
    broker.events.publish(Topic::PartyLinks(link.operator_id));
    broker.events.publish(Topic::AllLinks);
    super::event_log::announce_audience(broker, Some(link.app_id), Some(link.operator_id));
}

/// `updateLink`: settings of a link only its operator (or an admin) changes, such as
/// whether the app may refund the link's sessions.
pub async fn update_link(
    broker: &Broker,
    principal: &Principal,
    link_id: Uuid,
    app_may_refund: Option<bool>,
) -> ApiResult<Link> {
    let mut conn = broker.db().await?;
    let link = Link::find(&mut conn, link_id)
        .await?
        .filter(|l| policy::may_see_link(principal, l))
        .ok_or(ApiError::NotFound("link"))?;
    if !policy::may_authorize_link(principal, &link) {
        return Err(ApiError::forbidden("only the link's operator or an admin may change the link"));
    }
    let link = match app_may_refund {
        Some(allowed) if allowed != link.app_may_refund => {
            Link::set_app_may_refund(&mut conn, link.id, allowed).await?
        }
        _ => link,
    };
    tracing::info!(link_id = %link.id, app_may_refund = link.app_may_refund, "link updated");
    Ok(link)
}
