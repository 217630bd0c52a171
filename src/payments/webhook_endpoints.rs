//! Webhook endpoints: created by an app or an operator for itself (admins for anyone),
//! with a Standard Webhooks secret shown once and stored sealed; rotation keeps the old
//! secret signing for 24 hours; `redeliverEvent` starts a delivery over.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use secrecy::SecretString;
use uuid::Uuid;

use super::event_log::EventType;
use super::policy;
use crate::auth::Principal;
use crate::broker::Broker;
use crate::db::ReadConn;
use crate::error::{ApiError, ApiResult};
use crate::events::Topic;
use crate::models::events::EventRow;
use crate::models::webhooks::{self, Endpoint, EndpointChanges, EndpointStatus, NewEndpoint};
use crate::models::{self, Page};
use crate::webhooks::{client, sign};

/// How long a rotated-out secret keeps signing.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);
const MAX_URL: usize = 2048;

/// Checks a webhook URL: https (http only with private targets allowed), a host, no
/// credentials, and an IP-literal host must be public. Hostnames are checked again at
/// every connection.
pub fn check_url(broker: &Broker, raw: &str) -> ApiResult<String> {
    let raw = raw.trim();
    if raw.len() > MAX_URL {
        return Err(ApiError::bad_input(format!("url must be at most {MAX_URL} characters")));
    }
    let url = url::Url::parse(raw).map_err(|_| ApiError::bad_input("url is not a URL"))?;
    let allow_private = broker.config.events.allow_private;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(ApiError::bad_input("url must use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::bad_input("url must not contain credentials"));
    }
    let ip = match url.host() {
        None => return Err(ApiError::bad_input("url has no host")),
        Some(url::Host::Ipv4(ip)) => Some(ip.into()),
        Some(url::Host::Ipv6(ip)) => Some(ip.into()),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = ip {
        client::check_ip(ip, allow_private).map_err(|_| ApiError::bad_input("url must point at a public address"))?;
    }
    Ok(url.to_string())
}

fn check_types(types: Option<Vec<String>>) -> ApiResult<Vec<String>> {
    let types = types.unwrap_or_default();
    for name in &types {
        if EventType::parse(name).is_none() {
            return Err(ApiError::bad_input(format!("unknown event type {name:?}")));
        }
    }
    Ok(types)
}

fn check_description(description: Option<String>) -> ApiResult<Option<String>> {
    match description.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()) {
        Some(d) if d.chars().count() > 500 => Err(ApiError::bad_input("description must be at most 500 characters")),
        other => Ok(other),
    }
}

/// What `createWebhookEndpoint` asks for.
pub struct CreateEndpoint {
    /// An `https` URL whose address must be public.
    pub url: String,
    /// Event types to deliver; omitted or empty: every type.
    pub event_types: Option<Vec<String>>,
    /// A note on the endpoint (at most 500 characters).
    pub description: Option<String>,
    /// Admins: the owner.
    pub app_id: Option<Uuid>,
    /// Admins: the owner.
    pub operator_id: Option<Uuid>,
}

/// `createWebhookEndpoint`: registers an endpoint for its owner (the caller, or for admins the owner named) and returns its signing secret, once.
pub async fn create(
    broker: &Broker,
    principal: &Principal,
    input: CreateEndpoint,
) -> ApiResult<(Endpoint, SecretString)> {
    let (app_id, operator_id) = policy::endpoint_owner(principal, input.app_id, input.operator_id)?;
    let url = check_url(broker, &input.url)?;
    let event_types = check_types(input.event_types)?;
    let description = check_description(input.description)?;
    let mut conn = broker.db().await?;
    if let Some(id) = app_id
        && models::App::find(&mut conn, id).await?.is_none()
    {
        return Err(ApiError::NotFound("app"));
    }
    if let Some(id) = operator_id
        && models::Operator::find(&mut conn, id).await?.is_none()
    {
        return Err(ApiError::NotFound("operator"));
    }
    let id = Uuid::now_v7();
    let secret = sign::new_secret();
    let sealed = broker.webhook_keyring.seal(&secret, &sign::secret_context(id));
    let endpoint = NewEndpoint {
        id,
        app_id,
        operator_id,
        url: &url,
        event_types,
        description: description.as_deref(),
        secret_ciphertext: sealed.ciphertext,
        secret_key_id: sealed.key_id,
    }
    .insert(&mut conn)
    .await?;
    tracing::info!(endpoint_id = %endpoint.id, ?app_id, ?operator_id, "webhook endpoint created");
    Ok((endpoint, secret))
}

/// The caller's endpoint, or NOT_FOUND (someone else's answers like a missing one). On
/// the primary: it guards the writes below.
pub async fn visible(broker: &Broker, principal: &Principal, id: Uuid) -> ApiResult<Endpoint> {
    find_visible(&mut *broker.db().await?, principal, id).await
}

async fn find_visible(conn: &mut AsyncPgConnection, principal: &Principal, id: Uuid) -> ApiResult<Endpoint> {
    Endpoint::find(conn, id)
        .await?
        .filter(|e| policy::may_manage_endpoint(principal, e))
        .ok_or(ApiError::NotFound("webhook endpoint"))
}

/// What `updateWebhookEndpoint` changes; `None` leaves a field as it is.
pub struct UpdateEndpoint {
    /// A new `https` URL whose address must be public.
    pub url: Option<String>,
    /// New event types (empty: every type).
    pub event_types: Option<Vec<String>>,
    /// A new note; `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// `Enabled` also clears the failure record; `Disabled` stops deliveries.
    pub status: Option<EndpointStatus>,
}

/// `updateWebhookEndpoint`: changes an endpoint the caller may manage.
pub async fn update(broker: &Broker, principal: &Principal, id: Uuid, input: UpdateEndpoint) -> ApiResult<Endpoint> {
    visible(broker, principal, id).await?;
    let mut changes = EndpointChanges {
        url: input.url.map(|u| check_url(broker, &u)).transpose()?,
        event_types: input.event_types.map(|t| check_types(Some(t))).transpose()?,
        description: input.description.map(check_description).transpose()?,
        status: input.status,
        ..Default::default()
    };
    if input.status == Some(EndpointStatus::Enabled) {
        // Enabling again starts with a clean record.
        changes.disabled_reason = Some(None);
        changes.failing_since = Some(None);
    }
    if input.status == Some(EndpointStatus::Disabled) {
        changes.disabled_reason = Some(Some("disabled by its owner".to_owned()));
    }
    let mut conn = broker.db().await?;
    let endpoint = Endpoint::update(&mut conn, id, &changes).await?;
    if endpoint.status == EndpointStatus::Enabled {
        broker.events.publish(Topic::Deliveries);
    }
    Ok(endpoint)
}

/// `deleteWebhookEndpoint`: deletes the endpoint with its pending deliveries and attempts; returns its id.
pub async fn delete(broker: &Broker, principal: &Principal, id: Uuid) -> ApiResult<Uuid> {
    visible(broker, principal, id).await?;
    let mut conn = broker.db().await?;
    Endpoint::delete(&mut conn, id).await?;
    tracing::info!(endpoint_id = %id, "webhook endpoint deleted");
    Ok(id)
}

/// A new secret; the current one keeps signing (beside the new) for 24 hours.
pub async fn rotate(broker: &Broker, principal: &Principal, id: Uuid) -> ApiResult<(Endpoint, SecretString)> {
    let current = visible(broker, principal, id).await?;
    let secret = sign::new_secret();
    let sealed = broker.webhook_keyring.seal(&secret, &sign::secret_context(id));
    let mut conn = broker.db().await?;
    let endpoint = Endpoint::rotate_secret(
        &mut conn,
        id,
        sealed.ciphertext,
        sealed.key_id,
        Some((current.secret_ciphertext, current.secret_key_id)),
        Utc::now() + ROTATION_OVERLAP,
    )
    .await?;
    tracing::info!(endpoint_id = %id, "webhook secret rotated");
    Ok((endpoint, secret))
}

/// The endpoints the caller may see, a page of them (may read a replica).
pub async fn list(conn: &mut ReadConn, principal: &Principal, page: Page) -> ApiResult<Vec<Endpoint>> {
    let scope = policy::endpoint_scope(principal);
    Ok(Endpoint::list(conn, scope, page).await?)
}

/// A page of an endpoint's delivery attempts, when the caller may see the endpoint (may read a replica).
pub async fn attempts(
    conn: &mut ReadConn,
    principal: &Principal,
    endpoint_id: Uuid,
    succeeded: Option<bool>,
    page: Page,
) -> ApiResult<Vec<webhooks::Attempt>> {
    find_visible(conn, principal, endpoint_id).await?;
    Ok(webhooks::Attempt::list(conn, endpoint_id, succeeded, page).await?)
}

/// `redeliverEvent`: sends the event to the endpoint again, with a fresh schedule. The
/// event must be one the endpoint's owner sees.
pub async fn redeliver(
    broker: &Broker,
    principal: &Principal,
    endpoint_id: Uuid,
    event_id: &str,
) -> ApiResult<Endpoint> {
    policy::require_write(principal)?;
    let endpoint = visible(broker, principal, endpoint_id).await?;
    let mut conn = broker.db().await?;
    let event = EventRow::find(&mut conn, event_id)
        .await?
        .filter(|e| {
            (endpoint.app_id.is_some() && e.app_id == endpoint.app_id)
                || (endpoint.operator_id.is_some() && e.operator_id == endpoint.operator_id)
        })
        .ok_or(ApiError::NotFound("event"))?;
    webhooks::redeliver(&mut conn, endpoint.id, event.seq).await?;
    broker.events.publish(Topic::Deliveries);
    Ok(endpoint)
}
