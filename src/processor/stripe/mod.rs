//! Stripe Connect as the processor, through async-stripe's request builders (over our
//! own transport, `client`). Every app has its own Stripe platform account; operators
//! connect their accounts to it by OAuth; charge tokens are minted per connected account
//! from the platform's customer (`POST /v1/tokens` with `Stripe-Account`), or, for
//! customers with a PaymentMethod, by cloning it onto the connected account.
//!
//! Idempotency keys come from curbpay's durable state (the caller's row ids) plus an
//! attempt number kept in `processor_attempts`. When Stripe saved a 500 for a key (it
//! will replay it for 24 h), the object is looked up by the curbpay reference in its
//! metadata; only when it truly does not exist is the attempt number bumped and the
//! request made anew.

pub mod client;
mod holds;
mod oauth;

use async_trait::async_trait;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use secrecy::{ExposeSecret, SecretString};
use stripe_client_core::{IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_shared::{AccountId, PaymentSource};
use stripe_types::Expandable;

use self::client::{CallError, KeyedClient, StripeHttp};
use super::{
    AuthorizationRequest, AuthorizeOutcome, AuthorizeRequest, CaptureRequest, Captured, ChargeOutcome, ChargeRequest,
    CreatedCustomer, IncrementOutcome, IncrementRequest, IssuedToken, LinkAuthorization, Platform, PlatformAccount,
    PlatformCredentials, Processor, ProcessorError, ProcessorResult, RefundOutcome, RefundRequest, ReleaseRequest,
    WebhookEvent,
};
use crate::db::DbPool;
use crate::db::schema::processor_attempts;
use crate::models::customers::CardFacts;

/// Metadata key carrying curbpay's own reference on every object it creates.
const REF_KEY: &str = "curbpay_ref";
/// How far back reconciliation lists objects, and how many pages of 100 it reads.
const RECONCILE_WINDOW_SECONDS: i64 = 15 * 60;
const RECONCILE_PAGES: usize = 10;

/// Objects created within the reconciliation window.
fn recent() -> stripe_types::RangeQueryTs {
    stripe_types::RangeQueryTs::gte(Utc::now().timestamp() - RECONCILE_WINDOW_SECONDS)
}

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

fn card_facts(brand: &str, last4: &str, exp_month: i64, exp_year: i64) -> CardFacts {
    CardFacts {
        brand: brand.to_owned(),
        last4: last4.to_owned(),
        exp_month: exp_month as i16,
        exp_year: exp_year as i16,
    }
}

/// The card behind a customer's default source, or its default PaymentMethod.
fn customer_card(customer: &stripe_shared::Customer) -> Option<CardFacts> {
    let from_source = |source: &PaymentSource| match source {
        PaymentSource::Card(card) => Some(card_facts(&card.brand, &card.last4, card.exp_month, card.exp_year)),
        _ => None,
    };
    if let Some(Expandable::Object(source)) = &customer.default_source {
        return from_source(source);
    }
    if let Some(sources) = &customer.sources
        && let Some(card) = sources.data.iter().find_map(from_source)
    {
        return Some(card);
    }
    let pm = customer.invoice_settings.as_ref()?.default_payment_method.as_ref()?;
    match pm {
        Expandable::Object(pm) => {
            let card = pm.card.as_ref()?;
            Some(card_facts(&card.brand, &card.last4, card.exp_month, card.exp_year))
        }
        Expandable::Id(_) => None,
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

fn account_id(id: &str) -> AccountId {
    AccountId::from(id.to_owned())
}

impl StripeProcessor {
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

    /// The Idempotency-Key for `base`'s current attempt.
    async fn key(&self, base: &str) -> ProcessorResult<String> {
        let mut conn = self.pool.get().await.map_err(|e| ProcessorError::Unavailable(e.to_string()))?;
        let attempt: Option<i32> = processor_attempts::table
            .find(base)
            .select(processor_attempts::attempt)
            .first(&mut conn)
            .await
            .optional()
            .map_err(|e| ProcessorError::Unavailable(e.to_string()))?;
        Ok(format!("{base}:a{}", attempt.unwrap_or(1)))
    }

    /// Stripe saved an unknown outcome for the current key and the object does not
    /// exist: the next request for `base` uses a new key.
    async fn next_attempt(&self, base: &str) -> ProcessorResult<String> {
        let mut conn = self.pool.get().await.map_err(|e| ProcessorError::Unavailable(e.to_string()))?;
        let attempt: i32 = diesel::insert_into(processor_attempts::table)
            .values((processor_attempts::scope.eq(base), processor_attempts::attempt.eq(2)))
            .on_conflict(processor_attempts::scope)
            .do_update()
            .set((
                processor_attempts::attempt.eq(processor_attempts::attempt + 1),
                processor_attempts::updated_at.eq(diesel::dsl::now),
            ))
            .returning(processor_attempts::attempt)
            .get_result(&mut conn)
            .await
            .map_err(|e| ProcessorError::Unavailable(e.to_string()))?;
        tracing::warn!(scope = base, attempt, "stripe outcome unknown and nothing found; retrying under a new key");
        Ok(format!("{base}:a{attempt}"))
    }

    /// Finds the customer curbpay made for `reference`. Search first (cheap, but it lags
    /// behind writes), then the list of recent customers, which reads what was just
    /// written: a saved 500 is reconciled moments after the request.
    async fn find_customer(
        &self,
        client: &KeyedClient,
        reference: &str,
    ) -> ProcessorResult<Option<stripe_shared::Customer>> {
        let expand = || vec!["data.sources".to_owned(), "data.invoice_settings.default_payment_method".to_owned()];
        let query = format!("metadata['{REF_KEY}']:'{reference}'");
        let found = stripe_core::customer::SearchCustomer::new(query).expand(expand()).send(client).await?;
        if let Some(customer) = found.data.into_iter().next() {
            return Ok(Some(customer));
        }
        let mut after: Option<String> = None;
        for _ in 0..RECONCILE_PAGES {
            let mut list = stripe_core::customer::ListCustomer::new().created(recent()).limit(100).expand(expand());
            if let Some(after) = &after {
                list = list.starting_after(after.clone());
            }
            let page = list.send(client).await?;
            if let Some(customer) = page
                .data
                .iter()
                .find(|c| c.metadata.as_ref().and_then(|m| m.get(REF_KEY)).map(String::as_str) == Some(reference))
            {
                return Ok(Some(customer.clone()));
            }
            match (page.has_more, page.data.last()) {
                (true, Some(last)) => after = Some(last.id.to_string()),
                _ => break,
            }
        }
        Ok(None)
    }

    /// Finds the charge (or PaymentIntent) curbpay made for `reference` on the connected
    /// account, the same way as `find_customer`.
    async fn find_charge(
        &self,
        client: &KeyedClient,
        request: &ChargeRequest<'_>,
    ) -> ProcessorResult<Option<ChargeOutcome>> {
        let reference = request.idempotency_key;
        let account = || account_id(request.connected_account_id);
        if request.token.starts_with("pm_") {
            let page = stripe_core::payment_intent::ListPaymentIntent::new()
                .created(recent())
                .limit(100)
                .customize()
                .account_id(account())
                .send(client)
                .await?;
            let found =
                page.data.into_iter().find(|pi| pi.metadata.get(REF_KEY).map(String::as_str) == Some(reference));
            return Ok(found.map(|pi| match pi.status {
                stripe_shared::PaymentIntentStatus::Succeeded => {
                    ChargeOutcome::Succeeded { charge_id: pi.id.to_string() }
                }
                _ => {
                    let error = pi.last_payment_error.as_deref();
                    ChargeOutcome::Declined {
                        code: error
                            .and_then(|e| e.code.as_ref())
                            .map(|c| c.as_str().to_owned())
                            .unwrap_or_else(|| "card_declined".to_owned()),
                        decline_code: error.and_then(|e| e.decline_code.clone()),
                        message: error
                            .and_then(|e| e.message.clone())
                            .unwrap_or_else(|| "Your card was declined.".to_owned()),
                    }
                }
            }));
        }
        let query = format!("metadata['{REF_KEY}']:'{reference}'");
        let found =
            stripe_core::charge::SearchCharge::new(query).customize().account_id(account()).send(client).await?;
        let mut charge = found.data.into_iter().next();
        if charge.is_none() {
            let page = stripe_core::charge::ListCharge::new()
                .created(recent())
                .limit(100)
                .customize()
                .account_id(account())
                .send(client)
                .await?;
            charge = page.data.into_iter().find(|c| c.metadata.get(REF_KEY).map(String::as_str) == Some(reference));
        }
        Ok(charge.map(|charge| {
            if charge.paid {
                ChargeOutcome::Succeeded { charge_id: charge.id.to_string() }
            } else {
                ChargeOutcome::Declined {
                    code: charge.failure_code.clone().unwrap_or_else(|| "card_declined".to_owned()),
                    decline_code: None,
                    message: charge.failure_message.clone().unwrap_or_else(|| "Your card was declined.".to_owned()),
                }
            }
        }))
    }

    async fn create_customer_once(
        &self,
        client: &KeyedClient,
        card_token: &str,
        reference: &str,
        key: &str,
    ) -> Result<stripe_shared::Customer, CallError> {
        let metadata = std::collections::HashMap::from([(REF_KEY.to_owned(), reference.to_owned())]);
        let mut request = stripe_core::customer::CreateCustomer::new()
            .metadata(metadata)
            .expand(vec!["sources".to_owned(), "invoice_settings.default_payment_method".to_owned()]);
        request = if card_token.starts_with("pm_") {
            request.payment_method(card_token).invoice_settings(stripe_core::customer::CreateCustomerInvoiceSettings {
                default_payment_method: Some(card_token.to_owned()),
                ..Default::default()
            })
        } else {
            request.source(card_token)
        };
        let strategy = strategy(key).map_err(|e| CallError::Decode(e.to_string()))?;
        request.customize().request_strategy(strategy).send(client).await
    }

    /// Replaces the customer's card (a `pm_…` is attached first).
    async fn update_card_once(
        &self,
        client: &KeyedClient,
        customer_id: &str,
        card_token: &str,
        key: &str,
    ) -> Result<stripe_shared::Customer, CallError> {
        let request = stripe_core::customer::UpdateCustomer::new(customer_id.to_owned())
            .expand(vec!["sources".to_owned(), "invoice_settings.default_payment_method".to_owned()]);
        let request = if card_token.starts_with("pm_") {
            // A PaymentMethod must be attached to the customer before it can be its
            // default. (Attaching a test PaymentMethod such as pm_card_visa makes a new one.)
            let attached = stripe_payment::payment_method::AttachPaymentMethod::new(card_token.to_owned())
                .customer(customer_id.to_owned())
                .customize()
                .request_strategy(strategy(&format!("{key}:attach")).map_err(|e| CallError::Decode(e.to_string()))?)
                .send(client)
                .await?;
            request.invoice_settings(stripe_core::customer::UpdateCustomerInvoiceSettings {
                default_payment_method: Some(attached.id.to_string()),
                ..Default::default()
            })
        } else {
            request.source(card_token)
        };
        let strategy = strategy(key).map_err(|e| CallError::Decode(e.to_string()))?;
        request.customize().request_strategy(strategy).send(client).await
    }

    /// Whether Stripe marks a card token as used (false when it cannot tell).
    async fn token_spent(&self, client: &KeyedClient, card_token: &str) -> bool {
        if !card_token.starts_with("tok_") {
            return false;
        }
        match stripe_core::token::RetrieveToken::new(card_token.to_owned()).send(client).await {
            Ok(token) => token.used,
            Err(_) => false,
        }
    }

    async fn retrieve_customer(
        &self,
        client: &KeyedClient,
        customer_id: &str,
    ) -> ProcessorResult<stripe_shared::Customer> {
        let found = stripe_core::customer::RetrieveCustomer::new(customer_id.to_owned())
            .expand(vec!["sources".to_owned(), "invoice_settings.default_payment_method".to_owned()])
            .send(client)
            .await?;
        match found {
            stripe_core::customer::RetrieveCustomerReturned::Customer(customer) => Ok(customer),
            stripe_core::customer::RetrieveCustomerReturned::DeletedCustomer(_) => {
                Err(ProcessorError::Failed("the customer was deleted at Stripe".to_owned()))
            }
        }
    }

    /// A single-use token on the connected account: `POST /v1/tokens` from the
    /// customer's card, or a clone of its PaymentMethod.
    async fn token_once(
        &self,
        client: &KeyedClient,
        customer_id: &str,
        connected_account_id: &str,
        clone_pm: Option<&str>,
        key: &str,
    ) -> Result<String, CallError> {
        let strategy = strategy(key).map_err(|e| CallError::Decode(e.to_string()))?;
        match clone_pm {
            Some(pm) => stripe_payment::payment_method::CreatePaymentMethod::new()
                .customer(customer_id.to_owned())
                .payment_method(pm.to_owned())
                .customize()
                .account_id(account_id(connected_account_id))
                .request_strategy(strategy)
                .send(client)
                .await
                .map(|pm| pm.id.to_string()),
            None => stripe_core::token::CreateToken::new()
                .customer(customer_id.to_owned())
                .customize()
                .account_id(account_id(connected_account_id))
                .request_strategy(strategy)
                .send(client)
                .await
                .map(|token| token.id.to_string()),
        }
    }

    async fn charge_once(
        &self,
        client: &KeyedClient,
        request: &ChargeRequest<'_>,
        key: &str,
    ) -> Result<ChargeOutcome, CallError> {
        let metadata = std::collections::HashMap::from([(REF_KEY.to_owned(), request.idempotency_key.to_owned())]);
        let currency = request
            .currency
            .to_ascii_lowercase()
            .parse::<stripe_types::Currency>()
            .map_err(|_| CallError::Decode("unsupported currency".to_owned()))?;
        let strategy = strategy(key).map_err(|e| CallError::Decode(e.to_string()))?;
        let result = if request.token.starts_with("pm_") {
            let mut pi = stripe_core::payment_intent::CreatePaymentIntent::new(request.amount, currency)
                .payment_method(request.token)
                .confirm(true)
                .off_session(stripe_core::payment_intent::CreatePaymentIntentOffSession::Bool(true))
                .metadata(metadata);
            if let Some(fee) = request.application_fee {
                pi = pi.application_fee_amount(fee);
            }
            pi.customize()
                .account_id(account_id(request.connected_account_id))
                .request_strategy(strategy)
                .send(client)
                .await
                .map(|pi| pi.id.to_string())
        } else {
            let mut charge = stripe_core::charge::CreateCharge::new()
                .source(request.token)
                .amount(request.amount)
                .currency(currency)
                .metadata(metadata);
            if let Some(fee) = request.application_fee {
                charge = charge.application_fee_amount(fee);
            }
            charge
                .customize()
                .account_id(account_id(request.connected_account_id))
                .request_strategy(strategy)
                .send(client)
                .await
                .map(|charge| charge.id.to_string())
        };
        match result {
            Ok(charge_id) => Ok(ChargeOutcome::Succeeded { charge_id }),
            Err(CallError::Api { kind, code, decline_code, message, .. }) if kind == "card_error" => {
                Ok(ChargeOutcome::Declined { code, decline_code, message })
            }
            Err(err) => Err(err),
        }
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
        let credentials = credentials.ok_or_else(|| {
            ProcessorError::InvalidRequest("in Stripe mode createApp needs the app's stripe credentials".to_owned())
        })?;
        // Checks the key and learns the platform's account id.
        let client = self.http.with_key(credentials.secret_key.clone());
        let account = stripe_connect::account::RetrieveForMyAccountAccount::new().send(&client).await?;
        Ok(PlatformAccount { account_id: account.id.to_string(), publishable_key: credentials.publishable_key.clone() })
    }

    async fn create_customer(
        &self,
        platform: &Platform,
        card_token: &str,
        reference: &str,
    ) -> ProcessorResult<CreatedCustomer> {
        let client = self.client(platform)?;
        let key = self.key(reference).await?;
        let customer = match self.create_customer_once(&client, card_token, reference, &key).await {
            Ok(customer) => customer,
            Err(err) if err.saved_failure() => match self.find_customer(&client, reference).await? {
                Some(customer) => customer,
                None => {
                    let key = self.next_attempt(reference).await?;
                    self.create_customer_once(&client, card_token, reference, &key).await?
                }
            },
            Err(err) => return Err(err.into()),
        };
        let card = customer_card(&customer)
            .ok_or_else(|| ProcessorError::Failed("Stripe returned a customer without a card".to_owned()))?;
        Ok(CreatedCustomer { customer_id: customer.id.to_string(), card })
    }

    async fn update_customer_card(
        &self,
        platform: &Platform,
        customer_id: &str,
        card_token: &str,
        reference: &str,
    ) -> ProcessorResult<CardFacts> {
        let client = self.client(platform)?;
        let key = self.key(reference).await?;
        let customer = match self.update_card_once(&client, customer_id, card_token, &key).await {
            Ok(customer) => customer,
            Err(err) if err.saved_failure() => {
                // A card token is single-use and only curbpay holds it: spent means this
                // update took effect.
                if self.token_spent(&client, card_token).await {
                    self.retrieve_customer(&client, customer_id).await?
                } else {
                    let key = self.next_attempt(reference).await?;
                    self.update_card_once(&client, customer_id, card_token, &key).await?
                }
            }
            Err(err) => return Err(err.into()),
        };
        customer_card(&customer)
            .ok_or_else(|| ProcessorError::Failed("Stripe returned a customer without a card".to_owned()))
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
        // Stripe's code names the account only; `payments::links` checks it against the
        // operator's known account.
        oauth::exchange_code(&self.http, &self.connect_base, &secret(platform)?, code).await
    }

    async fn revoke_link(&self, platform: &Platform, connected_account_id: &str) -> ProcessorResult<()> {
        let client_id = platform
            .connect_client_id
            .as_deref()
            .ok_or_else(|| ProcessorError::Failed("the app has no Connect client id".to_owned()))?;
        oauth::deauthorize(&self.http, &self.connect_base, &secret(platform)?, client_id, connected_account_id).await
    }

    async fn issue_charge_token(
        &self,
        platform: &Platform,
        customer_id: &str,
        connected_account_id: &str,
        reference: &str,
    ) -> ProcessorResult<IssuedToken> {
        let client = self.client(platform)?;
        let customer = self.retrieve_customer(&client, customer_id).await?;
        let key = self.key(reference).await?;
        let default_pm =
            customer.invoice_settings.as_ref().and_then(|s| s.default_payment_method.as_ref()).map(|pm| match pm {
                Expandable::Id(id) => id.to_string(),
                Expandable::Object(pm) => pm.id.to_string(),
            });
        // Tokens carry no metadata to reconcile by, and an unused one simply expires: a
        // saved 500 is answered by a new attempt.
        let clone_pm = if customer.default_source.is_none() { default_pm } else { None };
        let token = match self.token_once(&client, customer_id, connected_account_id, clone_pm.as_deref(), &key).await {
            Ok(token) => token,
            Err(err) if err.saved_failure() => {
                let key = self.next_attempt(reference).await?;
                self.token_once(&client, customer_id, connected_account_id, clone_pm.as_deref(), &key).await?
            }
            Err(err) => return Err(err.into()),
        };
        Ok(IssuedToken { token, expires_at: Utc::now() + self.token_ttl })
    }

    async fn charge(&self, request: &ChargeRequest<'_>) -> ProcessorResult<ChargeOutcome> {
        let client = self.client(request.platform)?;
        let key = self.key(request.idempotency_key).await?;
        match self.charge_once(&client, request, &key).await {
            Ok(outcome) => Ok(outcome),
            Err(err) if err.saved_failure() => {
                if let Some(outcome) = self.find_charge(&client, request).await? {
                    return Ok(outcome);
                }
                let key = self.next_attempt(request.idempotency_key).await?;
                match self.charge_once(&client, request, &key).await {
                    // Only curbpay holds the token: if it is spent, the first attempt
                    // charged it after all; find that charge.
                    Err(CallError::Api { code, .. }) if code == "token_already_used" => {
                        self.find_charge(&client, request).await?.ok_or_else(|| {
                            ProcessorError::Unavailable("the charge's outcome is not visible yet; retry".to_owned())
                        })
                    }
                    other => Ok(other?),
                }
            }
            Err(err) => Err(err.into()),
        }
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
        use stripe_webhook::{EventObject, Webhook, WebhookError};
        let payload = std::str::from_utf8(payload)
            .map_err(|_| ProcessorError::InvalidRequest("webhook body is not UTF-8".to_owned()))?;
        for (index, secret) in endpoint_secrets.iter().enumerate() {
            let event = match Webhook::construct_event(payload, signature, secret.expose_secret()) {
                Ok(event) => event,
                Err(WebhookError::BadSignature) => continue,
                Err(WebhookError::BadTimestamp(_)) => {
                    return Err(ProcessorError::InvalidRequest("webhook signature is too old".to_owned()));
                }
                // The signature matched (it is checked first) but async-stripe could not
                // type the object: money events are read from the JSON itself.
                Err(WebhookError::BadParse(_)) => match holds::untyped_money_event(payload) {
                    Some(event) => return Ok((index, event)),
                    None => {
                        return Err(ProcessorError::InvalidRequest("webhook signature or body is invalid".to_owned()));
                    }
                },
                Err(_) => {
                    return Err(ProcessorError::InvalidRequest("webhook signature or body is invalid".to_owned()));
                }
            };
            let event_id = event.id.to_string();
            let parsed = match (&event.data.object, event.account.clone()) {
                (EventObject::AccountApplicationDeauthorized(_), Some(account)) => {
                    WebhookEvent::AccountDeauthorized { event_id, connected_account_id: account }
                }
                (EventObject::AccountUpdated(account), _) => WebhookEvent::AccountUpdated {
                    event_id,
                    connected_account_id: account.id.to_string(),
                    charges_enabled: account.charges_enabled.unwrap_or(false),
                    payouts_enabled: account.payouts_enabled.unwrap_or(false),
                },
                _ => holds::money_event(event_id, event.type_.as_str(), payload),
            };
            return Ok((index, parsed));
        }
        Err(ProcessorError::InvalidRequest("webhook signature does not match any app".to_owned()))
    }
}
