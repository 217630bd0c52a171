//! The processor seam: Stripe Connect's flows as a small trait. Implementations keep
//! their wire types to themselves; the domain services only see these types.
//!
//! Every call that creates something takes an idempotency key derived from curbpay's
//! own durable state (a row id written before the call), so a retry after a timeout or
//! a crash replays the same object instead of making a second one.

pub mod observed;
pub mod sandbox;
pub mod stripe;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::domain::cards::CardFacts;

/// An app's platform account at the processor, as provisioned.
#[derive(Debug, Clone)]
pub struct PlatformAccount {
    pub account_id: String,
    pub publishable_key: String,
}

/// Credentials of a platform account that curbpay is handed rather than creates
/// (Stripe: the account's keys and its Connect settings). Secrets never print.
#[derive(Debug, Clone)]
pub struct PlatformCredentials {
    pub secret_key: SecretString,
    pub publishable_key: String,
    pub connect_client_id: String,
    pub webhook_secret: SecretString,
}

/// What a processor needs to act for an app: its platform account and, where the
/// processor needs them, the account's credentials (decrypted for this call only).
#[derive(Debug, Clone)]
pub struct Platform {
    pub account_id: String,
    pub secret_key: Option<SecretString>,
    pub connect_client_id: Option<String>,
}

impl Platform {
    /// A platform the processor knows by id alone (the sandbox).
    pub fn by_id(account_id: impl Into<String>) -> Platform {
        Platform { account_id: account_id.into(), secret_key: None, connect_client_id: None }
    }
}

/// A customer created on an app's platform account.
#[derive(Debug, Clone)]
pub struct CreatedCustomer {
    pub customer_id: String,
    pub card: CardFacts,
}

/// Where a link's authorization should send the operator.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest<'a> {
    pub platform: &'a Platform,
    /// Signed, single-use; comes back unchanged on the redirect.
    pub state: &'a str,
    /// This server's `/connect/callback`.
    pub redirect_uri: &'a str,
}

/// The link an authorization code is redeemed for. A processor that can tell which
/// operator and link a code was issued for (the sandbox, from the verified state)
/// refuses a code issued for another; Stripe's codes name only the account, which
/// curbpay then checks against the operator's known account.
#[derive(Debug, Clone, Copy)]
pub struct LinkAuthorization {
    pub link_id: uuid::Uuid,
    pub operator_id: uuid::Uuid,
}

/// A single-use token on a connected account.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// A charge request on an operator's connected account.
#[derive(Debug, Clone)]
pub struct ChargeRequest<'a> {
    pub platform: &'a Platform,
    pub connected_account_id: &'a str,
    pub token: &'a str,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: &'a str,
    /// The app's cut, in minor units, when it takes one.
    pub application_fee: Option<i64>,
    pub idempotency_key: &'a str,
}

/// How a charge ended. A decline is an outcome, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded { charge_id: String },
    Declined { code: String, decline_code: Option<String>, message: String },
}

/// A hold (an authorization captured later) on the operator's connected account, paid
/// with a single-use token minted from the app's customer.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest<'a> {
    pub platform: &'a Platform,
    pub connected_account_id: &'a str,
    pub token: &'a str,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: &'a str,
    /// The app's cut of what will be captured (minor units), when it takes one.
    pub application_fee: Option<i64>,
    /// curbpay's reference for the hold (the ledger row's id), kept as metadata.
    pub reference: &'a str,
    pub idempotency_key: &'a str,
}

/// How an authorization ended. A decline is an outcome, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    Authorized {
        /// The processor's hold (Stripe: a PaymentIntent in `requires_capture`).
        authorization_id: String,
        /// When the processor drops an uncaptured hold.
        expires_at: DateTime<Utc>,
        /// Whether the hold can be raised in place (incremental authorization).
        incremental: bool,
    },
    Declined {
        code: String,
        decline_code: Option<String>,
        message: String,
    },
}

/// Raises a hold in place to a new total.
#[derive(Debug, Clone)]
pub struct IncrementRequest<'a> {
    pub platform: &'a Platform,
    pub connected_account_id: &'a str,
    pub authorization_id: &'a str,
    /// The hold's new total, minor units.
    pub total: i64,
    /// The app's cut of the new total, when it takes one.
    pub application_fee: Option<i64>,
    pub idempotency_key: &'a str,
}

/// How an increment ended: a refusal leaves the hold as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncrementOutcome {
    Incremented,
    Declined { code: String, decline_code: Option<String>, message: String },
}

/// Captures part or all of a hold; the processor releases the rest.
#[derive(Debug, Clone)]
pub struct CaptureRequest<'a> {
    pub platform: &'a Platform,
    pub connected_account_id: &'a str,
    pub authorization_id: &'a str,
    /// Minor units to capture (at most the hold).
    pub amount: i64,
    pub application_fee: Option<i64>,
    pub idempotency_key: &'a str,
}

/// A captured hold: the reference refunds and disputes name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub charge_id: String,
}

/// Releases a whole hold (nothing captured from it).
#[derive(Debug, Clone)]
pub struct ReleaseRequest<'a> {
    pub platform: &'a Platform,
    pub connected_account_id: &'a str,
    pub authorization_id: &'a str,
    pub idempotency_key: &'a str,
}

/// Returns money of a capture or charge to the card; the app's fee goes back in
/// proportion.
#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    pub platform: &'a Platform,
    pub connected_account_id: &'a str,
    /// The capture's or charge's processor reference.
    pub payment_reference: &'a str,
    pub amount: i64,
    /// Stripe's reason (`duplicate`, `requested_by_customer`, `fraudulent`), if any.
    pub reason: Option<&'a str>,
    pub idempotency_key: &'a str,
}

/// Where a refund stands at the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundState {
    Pending,
    Succeeded,
    Failed { message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOutcome {
    pub refund_id: String,
    pub state: RefundState,
}

/// A dispute the processor reported on a capture or charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedDispute {
    pub dispute_id: String,
    /// The capture's or charge's processor reference.
    pub payment_reference: String,
    pub amount: i64,
    pub currency: String,
    pub reason: String,
}

/// A verified webhook event, reduced to what curbpay acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// The operator disconnected its account from the app's platform.
    AccountDeauthorized { event_id: String, connected_account_id: String },
    /// The connected account's capabilities changed.
    AccountUpdated { event_id: String, connected_account_id: String, charges_enabled: bool, payouts_enabled: bool },
    /// A refund changed state (`refund.updated`, and each refund of `charge.refunded`).
    RefundUpdated { event_id: String, refund_id: String, state: RefundState },
    /// A cardholder disputed a charge (`charge.dispute.created`).
    DisputeCreated { event_id: String, dispute: OpenedDispute },
    /// A dispute was decided (`charge.dispute.closed`); `lost` when the cardholder won.
    DisputeClosed { event_id: String, dispute_id: String, lost: bool },
    /// A hold was canceled at the processor (`payment_intent.canceled`), e.g. it lapsed.
    AuthorizationCanceled { event_id: String, authorization_id: String },
    /// Anything else, acknowledged and ignored.
    Other { event_id: String, kind: String },
}

/// Why a processor call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The request itself was wrong (an unknown card token, an invalid authorization
    /// code); retrying it unchanged will fail again. The message is safe to show.
    #[error("{0}")]
    InvalidRequest(String),
    /// The processor refused or failed for a reason on its side; safe to show.
    #[error("{0}")]
    Failed(String),
    /// Could not reach the processor, or its outcome is unknown; retry with the same
    /// idempotency key. Detail is for the log.
    #[error("processor unavailable: {0}")]
    Unavailable(String),
}

impl From<ProcessorError> for crate::error::ApiError {
    fn from(err: ProcessorError) -> Self {
        use crate::error::ApiError;
        match err {
            ProcessorError::InvalidRequest(msg) => ApiError::BadUserInput(msg),
            ProcessorError::Failed(msg) => ApiError::Processor(msg),
            ProcessorError::Unavailable(detail) => ApiError::unavailable(detail),
        }
    }
}

pub type ProcessorResult<T> = Result<T, ProcessorError>;

/// A consent page the processor serves from curbpay itself (the sandbox's stand-in for
/// Stripe's OAuth page). The HTTP layer checks the request (the redirect target, the
/// signed state) and asks the processor for the code to send back.
#[async_trait]
pub trait ConsentPage: Send + Sync {
    /// The operator approved: issues a code bound to the platform, link and operator of
    /// the verified authorization. `client_id` must be the platform's.
    async fn approve(
        &self,
        platform_account_id: &str,
        client_id: &str,
        authorization: &LinkAuthorization,
    ) -> ProcessorResult<String>;
}

/// Stripe Connect's flows, as curbpay uses them.
#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// A short name for logs and the `apps.processor` column.
    fn name(&self) -> &'static str;

    /// Creates (or, for the same `app_id`, returns) the app's platform account; a
    /// processor whose accounts are made outside curbpay checks the given credentials.
    async fn provision_platform(
        &self,
        app_id: uuid::Uuid,
        app_name: &str,
        credentials: Option<&PlatformCredentials>,
    ) -> ProcessorResult<PlatformAccount>;

    /// Creates a customer on the app's platform account from a card token that the
    /// app's frontend made with the platform's publishable key.
    async fn create_customer(
        &self,
        platform: &Platform,
        card_token: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<CreatedCustomer>;

    /// Replaces the customer's card with the one behind a new card token.
    async fn update_customer_card(
        &self,
        platform: &Platform,
        customer_id: &str,
        card_token: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<CardFacts>;

    /// The URL where the operator authorizes the app's platform (Connect OAuth).
    fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> ProcessorResult<url::Url>;

    /// The consent page this processor serves itself; `None` (Stripe) when the operator
    /// authorizes at the processor.
    fn consent_page(&self) -> Option<&dyn ConsentPage> {
        None
    }

    /// Exchanges the authorization code from the redirect for the operator's connected
    /// account id.
    async fn complete_link(
        &self,
        platform: &Platform,
        code: &str,
        authorization: &LinkAuthorization,
    ) -> ProcessorResult<String>;

    /// Disconnects the operator's account from the platform.
    async fn revoke_link(&self, platform: &Platform, connected_account_id: &str) -> ProcessorResult<()>;

    /// Mints a single-use token on the connected account from the platform's customer.
    async fn issue_charge_token(
        &self,
        platform: &Platform,
        customer_id: &str,
        connected_account_id: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<IssuedToken>;

    /// Charges a token on the connected account.
    async fn charge(&self, request: &ChargeRequest<'_>) -> ProcessorResult<ChargeOutcome>;

    /// Whether this processor implements holds, captures and refunds; flows that need
    /// them are refused up front with processors that do not.
    fn supports_holds(&self) -> bool {
        false
    }

    /// Places a hold of the amount with a freshly minted token.
    async fn authorize(&self, request: &AuthorizeRequest<'_>) -> ProcessorResult<AuthorizeOutcome>;

    /// Raises a hold in place; `Err(InvalidRequest)` when the hold does not allow it.
    async fn increment_authorization(&self, request: &IncrementRequest<'_>) -> ProcessorResult<IncrementOutcome>;

    /// Captures part or all of a hold, releasing the rest.
    async fn capture(&self, request: &CaptureRequest<'_>) -> ProcessorResult<Captured>;

    /// Releases a hold nothing was captured from.
    async fn release(&self, request: &ReleaseRequest<'_>) -> ProcessorResult<()>;

    /// Refunds part or all of a capture or charge.
    async fn refund(&self, request: &RefundRequest<'_>) -> ProcessorResult<RefundOutcome>;

    /// Disputes opened on a capture or charge that the processor reports synchronously
    /// (the sandbox's `tok_createDispute`); processors that report disputes by webhook
    /// return none.
    async fn disputes_for(
        &self,
        _platform: &Platform,
        _payment_reference: &str,
    ) -> ProcessorResult<Vec<OpenedDispute>> {
        Ok(Vec::new())
    }

    /// Verifies a webhook's signature over the raw body against each candidate
    /// endpoint secret and parses it; returns which secret matched.
    fn verify_webhook(
        &self,
        endpoint_secrets: &[SecretString],
        payload: &[u8],
        signature: &str,
    ) -> ProcessorResult<(usize, WebhookEvent)>;
}
