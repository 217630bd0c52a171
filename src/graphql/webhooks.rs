//! Webhook endpoints over GraphQL: CRUD, secret rotation, the attempts log and
//! redelivery. Secrets appear only in the payloads of `createWebhookEndpoint` and
//! `rotateWebhookSecret`.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;

use super::{broker, connection, parse_id, principal};
use crate::models::webhooks::{self as rows, EndpointStatus};
use crate::payments::webhook_endpoints::{self as service, CreateEndpoint, UpdateEndpoint};

/// Whether an endpoint receives deliveries.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "WebhookEndpointStatus")]
pub enum WebhookEndpointStatus {
    /// Events are delivered to the endpoint.
    Enabled,
    /// Nothing is delivered: its owner disabled it, it answered 410 Gone, or every
    /// attempt failed for 5 days. Setting it `ENABLED` again resumes deliveries.
    Disabled,
}

impl From<EndpointStatus> for WebhookEndpointStatus {
    fn from(s: EndpointStatus) -> Self {
        match s {
            EndpointStatus::Enabled => WebhookEndpointStatus::Enabled,
            EndpointStatus::Disabled => WebhookEndpointStatus::Disabled,
        }
    }
}

impl From<WebhookEndpointStatus> for EndpointStatus {
    fn from(s: WebhookEndpointStatus) -> Self {
        match s {
            WebhookEndpointStatus::Enabled => EndpointStatus::Enabled,
            WebhookEndpointStatus::Disabled => EndpointStatus::Disabled,
        }
    }
}

/// An endpoint row as the API shows it (the signing secrets never leave the row).
pub struct WebhookEndpoint(rows::Endpoint);

/// An HTTPS endpoint that receives its owner's events as signed Standard Webhooks. Its
/// owner is one app or one operator; only the owner and admins see it. The signing
/// secret is not a field: it is returned once, by `createWebhookEndpoint` and
/// `rotateWebhookSecret`.
#[Object]
impl WebhookEndpoint {
    /// The endpoint's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Where deliveries are POSTed.
    async fn url(&self) -> &str {
        &self.0.url
    }
    /// The event types delivered; empty: every type.
    async fn event_types(&self) -> &[String] {
        &self.0.event_types
    }
    /// `DISABLED` by its owner, by a 410 Gone answer, or after 5 days of failures.
    async fn status(&self) -> WebhookEndpointStatus {
        self.0.status.into()
    }
    /// Why the endpoint is disabled.
    async fn disabled_reason(&self) -> Option<&str> {
        self.0.disabled_reason.as_deref()
    }
    /// Since when every attempt has failed (null while deliveries succeed).
    async fn failing_since(&self) -> Option<DateTime<Utc>> {
        self.0.failing_since
    }
    /// The owner's note on what the endpoint is for (null when none was given).
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// The owning app's id (null for an operator's endpoint).
    async fn app_id(&self) -> Option<ID> {
        self.0.app_id.map(|id| ID(id.to_string()))
    }
    /// The owning operator's id (null for an app's endpoint).
    async fn operator_id(&self) -> Option<ID> {
        self.0.operator_id.map(|id| ID(id.to_string()))
    }
    /// Until when the previous secret still signs deliveries (after a rotation).
    async fn previous_secret_expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.previous_secret_expires_at.filter(|t| *t > Utc::now())
    }
    /// When the endpoint was registered.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// The outcome of one delivery attempt.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum WebhookAttemptStatus {
    /// A 2xx answer within the timeout.
    Succeeded,
    /// Any other outcome: a non-2xx answer, a timeout, a refused address or a
    /// connection error. The event is tried again later, unless the endpoint answered
    /// 410 Gone or the retry schedule is spent.
    Failed,
}

/// A delivery attempt row as the API shows it.
pub struct WebhookDeliveryAttempt(rows::Attempt);

/// One HTTP attempt to deliver an event to an endpoint, as logged for the endpoint's
/// owner (and admins).
#[Object]
impl WebhookDeliveryAttempt {
    /// The attempt's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The event delivered (`webhook-id`).
    async fn event_id(&self) -> &str {
        &self.0.event_id
    }
    /// 1 for the first attempt; retries count up.
    async fn attempt(&self) -> i32 {
        self.0.attempt
    }
    /// Whether the endpoint accepted the delivery.
    async fn status(&self) -> WebhookAttemptStatus {
        if self.0.succeeded { WebhookAttemptStatus::Succeeded } else { WebhookAttemptStatus::Failed }
    }
    /// The HTTP status answered (null when there was no answer).
    async fn http_status(&self) -> Option<i32> {
        self.0.http_status
    }
    /// How long the attempt took, in milliseconds.
    async fn duration_ms(&self) -> i32 {
        self.0.duration_ms
    }
    /// What went wrong (a refused address, a timeout, the start of an error answer).
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    /// When the attempt was made.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// The webhook queries, merged into `Query`.
#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// The caller's webhook endpoints (admins: all), oldest first.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The page size: 0 to 100, 20 when omitted.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page; omitted: the first page.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, WebhookEndpoint>> {
        let viewer = principal(ctx)?;
        let page = connection::page(first, after.as_deref())?;
        let mut rows = service::list(&mut super::read_db(ctx).await?, viewer, page).await?;
        let has_next = rows.len() as i64 >= page.limit;
        rows.truncate((page.limit - 1).max(0) as usize);
        let mut out = Connection::new(page.after.is_some(), has_next);
        out.edges.extend(rows.into_iter().map(|r| Edge::new(r.id.to_string(), WebhookEndpoint(r))));
        Ok(out)
    }

    /// Delivery attempts to one of the caller's endpoints, oldest first.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint whose attempts to list; it must be the caller's (admins: any).")]
        endpoint_id: ID,
        #[graphql(desc = "The page size: 0 to 100, 20 when omitted.")] first: Option<i32>,
        #[graphql(desc = "The `endCursor` of the previous page; omitted: the first page.")] after: Option<String>,
        #[graphql(desc = "Only the attempts with this outcome; omitted: all of them.")] status: Option<
            WebhookAttemptStatus,
        >,
    ) -> async_graphql::Result<Connection<String, WebhookDeliveryAttempt>> {
        let viewer = principal(ctx)?;
        let endpoint_id = parse_id("endpointId", &endpoint_id)?;
        let page = connection::page(first, after.as_deref())?;
        let succeeded = status.map(|s| s == WebhookAttemptStatus::Succeeded);
        let mut conn = super::read_db(ctx).await?;
        let mut rows = service::attempts(&mut conn, viewer, endpoint_id, succeeded, page).await?;
        let has_next = rows.len() as i64 >= page.limit;
        rows.truncate((page.limit - 1).max(0) as usize);
        let mut out = Connection::new(page.after.is_some(), has_next);
        out.edges.extend(rows.into_iter().map(|r| Edge::new(r.id.to_string(), WebhookDeliveryAttempt(r))));
        Ok(out)
    }
}

/// Input of `createWebhookEndpoint`.
#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// An `https` URL (the address it resolves to must be public).
    pub url: String,
    /// Event types to deliver; omitted or empty: every type.
    pub event_types: Option<Vec<String>>,
    /// A note on what the endpoint is for, shown back to its owner.
    pub description: Option<String>,
    /// Admins only: the app to create it for.
    pub app_id: Option<ID>,
    /// Admins only: the operator to create it for.
    pub operator_id: Option<ID>,
}

/// A new endpoint and its signing secret.
#[derive(SimpleObject)]
pub struct WebhookEndpointWithSecret {
    /// The endpoint created or rotated.
    pub endpoint: WebhookEndpoint,
    /// The Standard Webhooks signing secret (`whsec_…`). Shown only now: store it.
    pub secret: String,
}

/// Input of `updateWebhookEndpoint`; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    /// The endpoint to change; it must be the caller's (admins: any).
    pub id: ID,
    /// A new `https` URL (the address it resolves to must be public).
    pub url: Option<String>,
    /// The event types to deliver from now on; empty: every type.
    pub event_types: Option<Vec<String>>,
    /// null clears it.
    pub description: MaybeUndefined<String>,
    /// `ENABLED` also clears the failure record; `DISABLED` stops deliveries.
    pub status: Option<WebhookEndpointStatus>,
}

/// Result of `updateWebhookEndpoint`.
#[derive(SimpleObject)]
pub struct UpdateWebhookEndpointPayload {
    /// The endpoint as it is after the change.
    pub endpoint: WebhookEndpoint,
}

/// Input of `deleteWebhookEndpoint`.
#[derive(InputObject)]
pub struct DeleteWebhookEndpointInput {
    /// The endpoint to delete; it must be the caller's (admins: any).
    pub id: ID,
}

/// Result of `deleteWebhookEndpoint`.
#[derive(SimpleObject)]
pub struct DeleteWebhookEndpointPayload {
    /// The id of the endpoint deleted.
    pub deleted_endpoint_id: ID,
}

/// Input of `rotateWebhookSecret`.
#[derive(InputObject)]
pub struct RotateWebhookSecretInput {
    /// The endpoint whose secret to replace; it must be the caller's (admins: any).
    pub id: ID,
}

/// Input of `redeliverEvent`.
#[derive(InputObject)]
pub struct RedeliverEventInput {
    /// The endpoint to deliver to; it must be the caller's (admins: any).
    pub endpoint_id: ID,
    /// The event to deliver again (its `Event.id`, the `webhook-id` of its deliveries).
    pub event_id: ID,
}

/// Result of `redeliverEvent`.
#[derive(SimpleObject)]
pub struct RedeliverEventPayload {
    /// The endpoint the event is queued for.
    pub endpoint: WebhookEndpoint,
    /// The event queued for delivery.
    pub event_id: ID,
}

/// The webhook mutations, merged into `Mutation`.
#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Registers an endpoint for the caller (an app or operator for itself; admins for
    /// the `appId` or `operatorId` given). Returns the secret, once.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint to register.")] input: CreateWebhookEndpointInput,
    ) -> async_graphql::Result<WebhookEndpointWithSecret> {
        let viewer = principal(ctx)?;
        let (endpoint, secret) = service::create(
            broker(ctx),
            viewer,
            CreateEndpoint {
                url: input.url,
                event_types: input.event_types,
                description: input.description,
                app_id: input.app_id.as_ref().map(|id| parse_id("appId", id)).transpose()?,
                operator_id: input.operator_id.as_ref().map(|id| parse_id("operatorId", id)).transpose()?,
            },
        )
        .await?;
        Ok(WebhookEndpointWithSecret { endpoint: WebhookEndpoint(endpoint), secret: secret.expose_secret().to_owned() })
    }

    /// Changes an endpoint's URL, event types, description or status.
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint and the changes to make.")] input: UpdateWebhookEndpointInput,
    ) -> async_graphql::Result<UpdateWebhookEndpointPayload> {
        let viewer = principal(ctx)?;
        let id = parse_id("id", &input.id)?;
        let description = match input.description {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(v) => Some(Some(v)),
        };
        let endpoint = service::update(
            broker(ctx),
            viewer,
            id,
            UpdateEndpoint {
                url: input.url,
                event_types: input.event_types,
                description,
                status: input.status.map(Into::into),
            },
        )
        .await?;
        Ok(UpdateWebhookEndpointPayload { endpoint: WebhookEndpoint(endpoint) })
    }

    /// Deletes an endpoint and its pending deliveries.
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint to delete.")] input: DeleteWebhookEndpointInput,
    ) -> async_graphql::Result<DeleteWebhookEndpointPayload> {
        let viewer = principal(ctx)?;
        let id = service::delete(broker(ctx), viewer, parse_id("id", &input.id)?).await?;
        Ok(DeleteWebhookEndpointPayload { deleted_endpoint_id: ID(id.to_string()) })
    }

    /// A new signing secret, returned once. For 24 hours deliveries carry signatures
    /// with both the old and the new secret.
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint whose secret to rotate.")] input: RotateWebhookSecretInput,
    ) -> async_graphql::Result<WebhookEndpointWithSecret> {
        let viewer = principal(ctx)?;
        let (endpoint, secret) = service::rotate(broker(ctx), viewer, parse_id("id", &input.id)?).await?;
        Ok(WebhookEndpointWithSecret { endpoint: WebhookEndpoint(endpoint), secret: secret.expose_secret().to_owned() })
    }

    /// Delivers an event to an endpoint again, on a fresh retry schedule.
    async fn redeliver_event(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The endpoint and the event to deliver again.")] input: RedeliverEventInput,
    ) -> async_graphql::Result<RedeliverEventPayload> {
        let viewer = principal(ctx)?;
        let endpoint_id = parse_id("endpointId", &input.endpoint_id)?;
        let endpoint = service::redeliver(broker(ctx), viewer, endpoint_id, input.event_id.as_str()).await?;
        Ok(RedeliverEventPayload { endpoint: WebhookEndpoint(endpoint), event_id: input.event_id })
    }
}
