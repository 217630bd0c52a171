//! The sandbox processor: Stripe Connect's flows, in process and deterministic, with its
//! state in Postgres (the `sandbox_*` tables) so a restart loses nothing. It accepts
//! Stripe's published test card tokens and behaves as their cards do; it is the default
//! when no Stripe settings are given, for development, demos and tests.
//!
//! One file per action: platform accounts and links (`links`), customers (`customers`),
//! charge tokens (`tokens`), charges (`charges`), holds and refunds (`holds`); the test
//! cards in `cards`, and all of its SQL in `store`. This file is the front: the processor
//! itself and the trait's delegation.

pub mod cards;
mod charges;
mod customers;
mod holds;
mod links;
mod store;
mod tokens;

use async_trait::async_trait;
use chrono::Duration;
use secrecy::SecretString;
use uuid::Uuid;

use super::{
    AuthorizationRequest, AuthorizeOutcome, AuthorizeRequest, CaptureRequest, Captured, ChargeOutcome, ChargeRequest,
    CreatedCustomer, IncrementOutcome, IncrementRequest, IssuedToken, LinkAuthorization, OpenedDispute, Platform,
    PlatformAccount, PlatformCredentials, Processor, ProcessorError, ProcessorResult, RefundOutcome, RefundRequest,
    ReleaseRequest, WebhookEvent,
};
use crate::db::DbPool;
use crate::domain::cards::CardFacts;

/// Stripe Connect's flows in process, its state in the `sandbox_*` tables.
pub struct SandboxProcessor {
    pool: DbPool,
    /// Base URL of this server: the sandbox's consent page is served here.
    public_url: url::Url,
    /// Lifetime of the charge tokens it issues.
    token_ttl: Duration,
}

impl From<diesel::result::Error> for ProcessorError {
    fn from(err: diesel::result::Error) -> Self {
        ProcessorError::Unavailable(format!("sandbox store: {err}"))
    }
}

impl From<crate::db::PoolError> for ProcessorError {
    fn from(err: crate::db::PoolError) -> Self {
        ProcessorError::Unavailable(format!("sandbox store: {err}"))
    }
}

fn object_id(prefix: &str) -> String {
    format!("{prefix}_sb_{}", Uuid::new_v4().simple())
}

impl SandboxProcessor {
    /// A sandbox keeping its state in `pool`'s database, serving its consent page under
    /// `public_url`, and issuing charge tokens that live `token_ttl` (15 minutes if that
    /// does not fit).
    pub fn new(pool: DbPool, public_url: url::Url, token_ttl: std::time::Duration) -> Self {
        let token_ttl = Duration::from_std(token_ttl).unwrap_or(Duration::minutes(15));
        SandboxProcessor { pool, public_url, token_ttl }
    }

    async fn conn(&self) -> ProcessorResult<crate::db::DbConn> {
        Ok(self.pool.get().await?)
    }
}

/// The sandbox serves its consent page from curbpay itself.
#[async_trait]
impl super::ConsentPage for SandboxProcessor {
    async fn approve(
        &self,
        platform_account_id: &str,
        client_id: &str,
        authorization: &LinkAuthorization,
    ) -> ProcessorResult<String> {
        SandboxProcessor::approve(self, platform_account_id, client_id, authorization).await
    }
}

#[async_trait]
impl Processor for SandboxProcessor {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn provision_platform(
        &self,
        app_id: Uuid,
        _app_name: &str,
        credentials: Option<&PlatformCredentials>,
    ) -> ProcessorResult<PlatformAccount> {
        self.sandbox_provision_platform(app_id, credentials).await
    }

    async fn create_customer(
        &self,
        platform: &Platform,
        card_token: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<CreatedCustomer> {
        self.sandbox_create_customer(platform, card_token, idempotency_key).await
    }

    async fn update_customer_card(
        &self,
        platform: &Platform,
        customer_id: &str,
        card_token: &str,
        _idempotency_key: &str,
    ) -> ProcessorResult<CardFacts> {
        self.sandbox_update_customer_card(platform, customer_id, card_token).await
    }

    fn consent_page(&self) -> Option<&dyn super::ConsentPage> {
        Some(self)
    }

    fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> ProcessorResult<url::Url> {
        self.sandbox_authorization_url(request)
    }

    async fn complete_link(
        &self,
        platform: &Platform,
        code: &str,
        authorization: &LinkAuthorization,
    ) -> ProcessorResult<String> {
        self.sandbox_complete_link(platform, code, authorization).await
    }

    async fn revoke_link(&self, platform: &Platform, connected_account_id: &str) -> ProcessorResult<()> {
        self.sandbox_revoke_link(platform, connected_account_id).await
    }

    async fn issue_charge_token(
        &self,
        platform: &Platform,
        customer_id: &str,
        connected_account_id: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<IssuedToken> {
        self.sandbox_issue_charge_token(platform, customer_id, connected_account_id, idempotency_key).await
    }

    async fn charge(&self, request: &ChargeRequest<'_>) -> ProcessorResult<ChargeOutcome> {
        self.sandbox_charge(request).await
    }

    fn supports_holds(&self) -> bool {
        true
    }

    async fn authorize(&self, request: &AuthorizeRequest<'_>) -> ProcessorResult<AuthorizeOutcome> {
        self.sandbox_authorize(request).await
    }

    async fn increment_authorization(&self, request: &IncrementRequest<'_>) -> ProcessorResult<IncrementOutcome> {
        self.sandbox_increment(request).await
    }

    async fn capture(&self, request: &CaptureRequest<'_>) -> ProcessorResult<Captured> {
        self.sandbox_capture(request).await
    }

    async fn release(&self, request: &ReleaseRequest<'_>) -> ProcessorResult<()> {
        self.sandbox_release(request).await
    }

    async fn refund(&self, request: &RefundRequest<'_>) -> ProcessorResult<RefundOutcome> {
        self.sandbox_refund(request).await
    }

    async fn disputes_for(&self, _platform: &Platform, payment_reference: &str) -> ProcessorResult<Vec<OpenedDispute>> {
        self.sandbox_disputes_for(payment_reference).await
    }

    fn verify_webhook(
        &self,
        _endpoint_secrets: &[SecretString],
        _payload: &[u8],
        _signature: &str,
    ) -> ProcessorResult<(usize, WebhookEvent)> {
        // The sandbox changes nothing behind curbpay's back, so it sends no webhooks;
        // anything claiming to come from it is not genuine.
        Err(ProcessorError::InvalidRequest("the sandbox processor sends no webhooks".to_owned()))
    }
}
