//! A `Processor` that measures another: each flow's count by outcome (`ok`,
//! `declined`, `refused`, `unavailable`) and its latency, retries included (the
//! retries themselves are counted where they happen, in the Stripe client). Also the
//! `processor` span each call runs in, a child of the GraphQL operation's span, with
//! the outcome recorded on it (exported as a trace span when traces are on).

use std::future::Future;
use std::time::Instant;

use async_trait::async_trait;
use secrecy::SecretString;
use tracing::Instrument;

use super::*;
use crate::domain::cards::CardFacts;

/// Counts, times and traces each call to the processor it wraps; the server always
/// runs its processor wrapped in one.
pub struct Observed<P: ?Sized>(pub Arc<P>);

use std::sync::Arc;

async fn measure<T>(
    processor: &'static str,
    flow: &'static str,
    call: impl Future<Output = ProcessorResult<T>>,
    declined: impl FnOnce(&T) -> bool,
) -> ProcessorResult<T> {
    let started = Instant::now();
    let span = tracing::info_span!(
        "processor",
        processor,
        flow,
        otel.kind = "client",
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let result = call.instrument(span.clone()).await;
    let outcome = match &result {
        Ok(value) if declined(value) => "declined",
        Ok(_) => "ok",
        Err(ProcessorError::InvalidRequest(_) | ProcessorError::Failed(_)) => "refused",
        Err(ProcessorError::Unavailable(_)) => "unavailable",
    };
    span.record("outcome", outcome);
    if matches!(outcome, "refused" | "unavailable") {
        span.record("otel.status_code", "ERROR");
    }
    crate::metrics::processor_call(processor, flow, outcome, started.elapsed());
    result
}

#[async_trait]
impl<P: Processor + ?Sized> Processor for Observed<P> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn provision_platform(
        &self,
        app_id: uuid::Uuid,
        app_name: &str,
        credentials: Option<&PlatformCredentials>,
    ) -> ProcessorResult<PlatformAccount> {
        measure(self.name(), "provision_platform", self.0.provision_platform(app_id, app_name, credentials), |_| false)
            .await
    }

    async fn create_customer(
        &self,
        platform: &Platform,
        card_token: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<CreatedCustomer> {
        measure(self.name(), "create_customer", self.0.create_customer(platform, card_token, idempotency_key), |_| {
            false
        })
        .await
    }

    async fn update_customer_card(
        &self,
        platform: &Platform,
        customer_id: &str,
        card_token: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<CardFacts> {
        let call = self.0.update_customer_card(platform, customer_id, card_token, idempotency_key);
        measure(self.name(), "update_customer_card", call, |_| false).await
    }

    fn supports_holds(&self) -> bool {
        self.0.supports_holds()
    }

    async fn authorize(&self, request: &AuthorizeRequest<'_>) -> ProcessorResult<AuthorizeOutcome> {
        measure(self.name(), "authorize", self.0.authorize(request), |o| matches!(o, AuthorizeOutcome::Declined { .. }))
            .await
    }

    async fn increment_authorization(&self, request: &IncrementRequest<'_>) -> ProcessorResult<IncrementOutcome> {
        let call = self.0.increment_authorization(request);
        measure(self.name(), "increment_authorization", call, |o| matches!(o, IncrementOutcome::Declined { .. })).await
    }

    async fn capture(&self, request: &CaptureRequest<'_>) -> ProcessorResult<Captured> {
        measure(self.name(), "capture", self.0.capture(request), |_| false).await
    }

    async fn release(&self, request: &ReleaseRequest<'_>) -> ProcessorResult<()> {
        measure(self.name(), "release", self.0.release(request), |_| false).await
    }

    async fn refund(&self, request: &RefundRequest<'_>) -> ProcessorResult<RefundOutcome> {
        measure(self.name(), "refund", self.0.refund(request), |_| false).await
    }

    async fn disputes_for(&self, platform: &Platform, payment_reference: &str) -> ProcessorResult<Vec<OpenedDispute>> {
        measure(self.name(), "disputes_for", self.0.disputes_for(platform, payment_reference), |_| false).await
    }

    fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> ProcessorResult<url::Url> {
        self.0.authorization_url(request)
    }

    fn consent_page(&self) -> Option<&dyn ConsentPage> {
        self.0.consent_page()
    }

    async fn complete_link(
        &self,
        platform: &Platform,
        code: &str,
        authorization: &LinkAuthorization,
    ) -> ProcessorResult<String> {
        measure(self.name(), "complete_link", self.0.complete_link(platform, code, authorization), |_| false).await
    }

    async fn revoke_link(&self, platform: &Platform, connected_account_id: &str) -> ProcessorResult<()> {
        measure(self.name(), "revoke_link", self.0.revoke_link(platform, connected_account_id), |_| false).await
    }

    async fn issue_charge_token(
        &self,
        platform: &Platform,
        customer_id: &str,
        connected_account_id: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<IssuedToken> {
        let call = self.0.issue_charge_token(platform, customer_id, connected_account_id, idempotency_key);
        measure(self.name(), "issue_charge_token", call, |_| false).await
    }

    async fn charge(&self, request: &ChargeRequest<'_>) -> ProcessorResult<ChargeOutcome> {
        measure(self.name(), "charge", self.0.charge(request), |outcome| {
            matches!(outcome, ChargeOutcome::Declined { .. })
        })
        .await
    }

    fn verify_webhook(
        &self,
        endpoint_secrets: &[SecretString],
        payload: &[u8],
        signature: &str,
    ) -> ProcessorResult<(usize, WebhookEvent)> {
        self.0.verify_webhook(endpoint_secrets, payload, signature)
    }
}
