//! Stripe Connect as the processor, through async-stripe's request builders (over our
//! own transport, `client`). Every app has its own Stripe platform account; operators
//! connect their accounts to it by OAuth; charge tokens are minted per connected account
//! from the platform's customer (`POST /v1/tokens` with `Stripe-Account`), or, for
//! customers with a PaymentMethod, by cloning it onto the connected account.
//!
//! This folder owns everything Stripe: the transport (`client`), Connect OAuth
//! (`oauth`), and one file per action — platform accounts and links (`accounts`),
//! customers and their cards (`customers`), charge tokens (`tokens`), charges
//! (`charges`), holds and refunds (`holds`), webhook verification (`webhooks`) — plus the
//! attempt numbers behind every idempotency key (`attempts`, over the SQL in `store`).
//! This file is the front: the processor itself and the trait's delegation.
//!
//! Idempotency keys come from curbpay's durable state (the caller's row ids) plus an
//! attempt number kept in `processor_attempts`. When Stripe saved a 500 for a key (it
//! will replay it for 24 h), the object is looked up by the curbpay reference in its
//! metadata; only when it truly does not exist is the attempt number bumped and the
//! request made anew (`attempts::keyed`).

mod accounts;
mod attempts;
mod charges;
pub mod client;
mod customers;
mod holds;
mod oauth;
mod store;
mod tokens;
mod webhooks;

use async_trait::async_trait;
use chrono::Utc;
use secrecy::SecretString;
use stripe_client_core::{IdempotencyKey, RequestStrategy};
use stripe_shared::AccountId;

use self::client::{CallError, KeyedClient, StripeHttp};
use super::{
    AuthorizationRequest, AuthorizeOutcome, AuthorizeRequest, CaptureRequest, Captured, ChargeOutcome, ChargeRequest,
    CreatedCustomer, IncrementOutcome, IncrementRequest, IssuedToken, LinkAuthorization, Platform, PlatformAccount,
    PlatformCredentials, Processor, ProcessorError, ProcessorResult, RefundOutcome, RefundRequest, ReleaseRequest,
    WebhookEvent,
};
use crate::db::DbPool;
use crate::domain::cards::CardFacts;

/// Metadata key carrying curbpay's own reference on every object it creates.
const REF_KEY: &str = "curbpay_ref";
/// How far back reconciliation lists objects, and how many pages of 100 it reads.
const RECONCILE_WINDOW_SECONDS: i64 = 15 * 60;
const RECONCILE_PAGES: usize = 10;

/// Objects created within the reconciliation window.
fn recent() -> stripe_types::RangeQueryTs {
    stripe_types::RangeQueryTs::gte(Utc::now().timestamp() - RECONCILE_WINDOW_SECONDS)
}

/// Stripe Connect as the processor: each app's own platform account, by its secret key.
pub struct StripeProcessor {
    http: StripeHttp,
    connect_base: url::Url,
    pool: DbPool,
    /// How long curbpay lets an operator hold a charge token.
    token_ttl: chrono::Duration,
}

impl From<CallError> for ProcessorError {
    fn from(err: CallError) -> Self {
        match &err {
            CallError::Api { status: 401, .. } => {
                ProcessorError::Failed("Stripe rejected the app's API key".to_owned())
            }
            CallError::Api { status: 400 | 404, code, .. } if code == "resource_missing" => {
                ProcessorError::InvalidRequest("Stripe has no such object (check the card token)".to_owned())
            }
            // Another request with the same key is still running at Stripe: retry later.
            CallError::Api { status: 409, .. } => ProcessorError::Unavailable(err.to_string()),
            CallError::Api { status: 400, code, .. } if code == "idempotency_error" => {
                ProcessorError::Failed("Stripe refused a repeated request with different parameters".to_owned())
            }
            CallError::Api { status, kind, .. } if *status < 500 && kind == "card_error" => {
                ProcessorError::InvalidRequest("the card was refused by its issuer".to_owned())
            }
            CallError::Api { status, .. } if *status < 500 && *status != 429 => {
                ProcessorError::Failed(format!("Stripe refused the request (HTTP {status})"))
            }
            _ => ProcessorError::Unavailable(err.to_string()),
        }
    }
}

fn secret(platform: &Platform) -> ProcessorResult<SecretString> {
    platform.secret_key.clone().ok_or_else(|| ProcessorError::Failed("the app has no Stripe credentials".to_owned()))
}

fn strategy(key: &str) -> ProcessorResult<RequestStrategy> {
    IdempotencyKey::new(key)
        .map(RequestStrategy::Idempotent)
        .map_err(|e| ProcessorError::Failed(format!("bad idempotency key: {e}")))
}

/// `strategy` for a request builder's own error type.
fn call_strategy(key: &str) -> Result<RequestStrategy, CallError> {
    strategy(key).map_err(|e| CallError::Decode(e.to_string()))
}

fn account_id(id: &str) -> AccountId {
    AccountId::from(id.to_owned())
}

impl StripeProcessor {
    /// A processor calling Stripe through `http` and Connect OAuth at `connect_base`,
    /// keeping its attempt numbers in `pool`'s database, and letting operators hold a
    /// charge token for `token_ttl` (15 minutes if that does not fit).
    pub fn new(http: StripeHttp, connect_base: url::Url, pool: DbPool, token_ttl: std::time::Duration) -> Self {
        StripeProcessor {
            http,
            connect_base,
            pool,
            token_ttl: chrono::Duration::from_std(token_ttl).unwrap_or(chrono::Duration::minutes(15)),
        }
    }

    fn client(&self, platform: &Platform) -> ProcessorResult<KeyedClient> {
        Ok(self.http.with_key(secret(platform)?))
    }
}

#[async_trait]
impl Processor for StripeProcessor {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn provision_platform(
        &self,
        _app_id: uuid::Uuid,
        _app_name: &str,
        credentials: Option<&PlatformCredentials>,
    ) -> ProcessorResult<PlatformAccount> {
        self.stripe_provision_platform(credentials).await
    }

    async fn create_customer(
        &self,
        platform: &Platform,
        card_token: &str,
        reference: &str,
    ) -> ProcessorResult<CreatedCustomer> {
        self.stripe_create_customer(platform, card_token, reference).await
    }

    async fn update_customer_card(
        &self,
        platform: &Platform,
        customer_id: &str,
        card_token: &str,
        reference: &str,
    ) -> ProcessorResult<CardFacts> {
        self.stripe_update_customer_card(platform, customer_id, card_token, reference).await
    }

    fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> ProcessorResult<url::Url> {
        oauth::authorize_url(&self.connect_base, request)
    }

    async fn complete_link(
        &self,
        platform: &Platform,
        code: &str,
        _authorization: &LinkAuthorization,
    ) -> ProcessorResult<String> {
        self.stripe_complete_link(platform, code).await
    }

    async fn revoke_link(&self, platform: &Platform, connected_account_id: &str) -> ProcessorResult<()> {
        self.stripe_revoke_link(platform, connected_account_id).await
    }

    async fn issue_charge_token(
        &self,
        platform: &Platform,
        customer_id: &str,
        connected_account_id: &str,
        reference: &str,
    ) -> ProcessorResult<IssuedToken> {
        self.stripe_issue_charge_token(platform, customer_id, connected_account_id, reference).await
    }

    async fn charge(&self, request: &ChargeRequest<'_>) -> ProcessorResult<ChargeOutcome> {
        self.stripe_charge(request).await
    }

    fn supports_holds(&self) -> bool {
        true
    }

    async fn authorize(&self, request: &AuthorizeRequest<'_>) -> ProcessorResult<AuthorizeOutcome> {
        self.stripe_authorize(request).await
    }

    async fn increment_authorization(&self, request: &IncrementRequest<'_>) -> ProcessorResult<IncrementOutcome> {
        self.stripe_increment(request).await
    }

    async fn capture(&self, request: &CaptureRequest<'_>) -> ProcessorResult<Captured> {
        self.stripe_capture(request).await
    }

    async fn release(&self, request: &ReleaseRequest<'_>) -> ProcessorResult<()> {
        self.stripe_release(request).await
    }

    async fn refund(&self, request: &RefundRequest<'_>) -> ProcessorResult<RefundOutcome> {
        self.stripe_refund(request).await
    }

    fn verify_webhook(
        &self,
        endpoint_secrets: &[SecretString],
        payload: &[u8],
        signature: &str,
    ) -> ProcessorResult<(usize, WebhookEvent)> {
        webhooks::verify(endpoint_secrets, payload, signature)
    }
}
