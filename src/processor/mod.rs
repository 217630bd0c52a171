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
    /// The processor's id for the account (Stripe: `acct_…`).
    pub account_id: String,
    /// The key the app's frontend makes card tokens with (Stripe: `pk_…`).
    pub publishable_key: String,
}

/// Credentials of a platform account that curbpay is handed rather than creates
/// (Stripe: the account's keys and its Connect settings). Secrets never print.
#[derive(Debug, Clone)]
pub struct PlatformCredentials {
    /// The account's secret key (`sk_…`, or a restricted `rk_…`).
    pub secret_key: SecretString,
    /// The account's publishable key (`pk_…`).
    pub publishable_key: String,
    /// The Connect platform's OAuth client id (`ca_…`).
    pub connect_client_id: String,
    /// The signing secret of the account's webhook endpoint (`whsec_…`).
    pub webhook_secret: SecretString,
}

/// What a processor needs to act for an app: its platform account and, where the
/// processor needs them, the account's credentials (decrypted for this call only).
#[derive(Debug, Clone)]
pub struct Platform {
    /// The platform account's id at the processor.
    pub account_id: String,
    /// The account's secret key; `None` for a processor that needs none (the sandbox).
    pub secret_key: Option<SecretString>,
    /// The Connect OAuth client id; Stripe needs it to connect and disconnect operators.
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
    /// The processor's id for the customer (Stripe: `cus_…`).
    pub customer_id: String,
    /// The facts of the customer's card that curbpay may keep (never its number).
    pub card: CardFacts,
}

/// Where a link's authorization should send the operator.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest<'a> {
    /// The app's platform the operator is asked to authorize.
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
    /// The link the authorization was started for.
    pub link_id: uuid::Uuid,
    /// The operator asked to authorize.
    pub operator_id: uuid::Uuid,
}

/// A single-use token on a connected account.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The token, valid on the connected account only (Stripe: `tok_…`).
    pub token: String,
    /// When curbpay stops honouring the token (the configured charge token lifetime).
    pub expires_at: DateTime<Utc>,
}

/// A charge request on an operator's connected account.
#[derive(Debug, Clone)]
pub struct ChargeRequest<'a> {
    /// The app's platform, whose key makes the call.
    pub platform: &'a Platform,
    /// The operator's account the charge is made on (Stripe: `Stripe-Account`).
    pub connected_account_id: &'a str,
    /// A token issued on that account by [`Processor::issue_charge_token`].
    pub token: &'a str,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: &'a str,
    /// The app's cut, in minor units, when it takes one.
    pub application_fee: Option<i64>,
    /// `charge:<charge token id>`: a repeat with the same key returns the first outcome,
    /// declines included, and never charges twice. Stripe also keeps it as the charge's
    /// metadata, which is how a charge whose outcome was lost is found again.
    pub idempotency_key: &'a str,
}

/// How a charge ended. A decline is an outcome, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The card was charged.
    Succeeded {
        /// The processor's reference for the charge, which refunds and disputes name.
        charge_id: String,
    },
    /// The card was declined; nothing was charged.
    Declined {
        /// Stripe's error `code` (`card_declined`, `expired_card`, …).
        code: String,
        /// Stripe's `decline_code` (`insufficient_funds`, `lost_card`, …), when given.
        decline_code: Option<String>,
        /// The processor's message, fit to show the driver.
        message: String,
    },
}

/// A hold (an authorization captured later) on the operator's connected account, paid
/// with a single-use token minted from the app's customer.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest<'a> {
    /// The app's platform, whose key makes the call.
    pub platform: &'a Platform,
    /// The operator's account the hold is placed on.
    pub connected_account_id: &'a str,
    /// A token issued on that account for this hold.
    pub token: &'a str,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: &'a str,
    /// The app's cut of what will be captured (minor units), when it takes one.
    pub application_fee: Option<i64>,
    /// curbpay's reference for the hold (the ledger row's id), kept as metadata.
    pub reference: &'a str,
    /// `authorization:<ledger row id>`: a repeat returns the hold (or the decline) the
    /// key made first.
    pub idempotency_key: &'a str,
}

/// How an authorization ended. A decline is an outcome, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    /// The amount is held on the card.
    Authorized {
        /// The processor's hold (Stripe: a PaymentIntent in `requires_capture`).
        authorization_id: String,
        /// When the processor drops an uncaptured hold.
        expires_at: DateTime<Utc>,
        /// Whether the hold can be raised in place (incremental authorization).
        incremental: bool,
    },
    /// The issuer refused the hold; nothing is held.
    Declined {
        /// Stripe's error `code` (`card_declined`, `expired_card`, …).
        code: String,
        /// Stripe's `decline_code`, when given.
        decline_code: Option<String>,
        /// The processor's message, fit to show the driver.
        message: String,
    },
}

/// Raises a hold in place to a new total.
#[derive(Debug, Clone)]
pub struct IncrementRequest<'a> {
    /// The app's platform, whose key makes the call.
    pub platform: &'a Platform,
    /// The operator's account that holds the authorization.
    pub connected_account_id: &'a str,
    /// The hold to raise, as [`AuthorizeOutcome::Authorized`] named it.
    pub authorization_id: &'a str,
    /// The hold's new total, minor units.
    pub total: i64,
    /// The app's cut of the new total, when it takes one.
    pub application_fee: Option<i64>,
    /// `increment:<ledger row id>`: a repeat returns the first outcome and raises the
    /// hold once.
    pub idempotency_key: &'a str,
}

/// How an increment ended: a refusal leaves the hold as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncrementOutcome {
    /// The hold now covers the new total.
    Incremented,
    /// The issuer refused the increase; the hold keeps its former amount.
    Declined {
        /// Stripe's error `code`.
        code: String,
        /// Stripe's `decline_code`, when given.
        decline_code: Option<String>,
        /// The processor's message, fit to show the driver.
        message: String,
    },
}

/// Captures part or all of a hold; the processor releases the rest.
#[derive(Debug, Clone)]
pub struct CaptureRequest<'a> {
    /// The app's platform, whose key makes the call.
    pub platform: &'a Platform,
    /// The operator's account that holds the authorization.
    pub connected_account_id: &'a str,
    /// The hold to capture from.
    pub authorization_id: &'a str,
    /// Minor units to capture (at most the hold).
    pub amount: i64,
    /// The app's cut of the captured amount (minor units), when it takes one.
    pub application_fee: Option<i64>,
    /// `capture:<ledger row id>`: a repeat returns the first capture; a hold is captured
    /// once.
    pub idempotency_key: &'a str,
}

/// A captured hold: the reference refunds and disputes name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The processor's reference for the captured payment (Stripe: the charge).
    pub charge_id: String,
}

/// Releases a whole hold (nothing captured from it).
#[derive(Debug, Clone)]
pub struct ReleaseRequest<'a> {
    /// The app's platform, whose key makes the call.
    pub platform: &'a Platform,
    /// The operator's account that holds the authorization.
    pub connected_account_id: &'a str,
    /// The hold to release.
    pub authorization_id: &'a str,
    /// `release:<ledger row id>`: a repeat returns the first result.
    pub idempotency_key: &'a str,
}

/// Returns money of a capture or charge to the card; the app's fee goes back in
/// proportion.
#[derive(Debug, Clone)]
pub struct RefundRequest<'a> {
    /// The app's platform, whose key makes the call.
    pub platform: &'a Platform,
    /// The operator's account the payment was made on.
    pub connected_account_id: &'a str,
    /// The capture's or charge's processor reference.
    pub payment_reference: &'a str,
    /// Minor units to return (at most what is left unrefunded).
    pub amount: i64,
    /// Stripe's reason (`duplicate`, `requested_by_customer`, `fraudulent`), if any.
    pub reason: Option<&'a str>,
    /// `refund:<ledger row id>` (at Stripe also the refund's metadata): a repeat returns
    /// the refund the key made first, never a second one.
    pub idempotency_key: &'a str,
}

/// Where a refund stands at the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundState {
    /// Accepted, not yet settled; a `RefundUpdated` webhook event tells how it ends.
    Pending,
    /// The money is on its way back to the card.
    Succeeded,
    /// The refund failed or was canceled; nothing was returned.
    Failed {
        /// The processor's reason (Stripe's `failure_reason`), or a generic one.
        message: String,
    },
}

/// A refund as the processor accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOutcome {
    /// The processor's id for the refund (Stripe: `re_…`); webhook events name it.
    pub refund_id: String,
    /// Where the refund stands now.
    pub state: RefundState,
}

/// A dispute the processor reported on a capture or charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedDispute {
    /// The processor's id for the dispute (Stripe: `dp_…`).
    pub dispute_id: String,
    /// The capture's or charge's processor reference.
    pub payment_reference: String,
    /// The disputed amount, minor units.
    pub amount: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    /// Stripe's dispute reason (`fraudulent`, `product_not_received`, …).
    pub reason: String,
}

/// A verified webhook event, reduced to what curbpay acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// The operator disconnected its account from the app's platform.
    AccountDeauthorized {
        /// The processor's event id; deliveries are deduplicated by it.
        event_id: String,
        /// The account that was disconnected.
        connected_account_id: String,
    },
    /// The connected account's capabilities changed.
    AccountUpdated {
        /// The processor's event id; deliveries are deduplicated by it.
        event_id: String,
        /// The account whose capabilities changed.
        connected_account_id: String,
        /// Whether the account can now accept charges.
        charges_enabled: bool,
        /// Whether the account can now be paid out.
        payouts_enabled: bool,
    },
    /// A refund changed state (`refund.updated`, and each refund of `charge.refunded`).
    RefundUpdated {
        /// The processor's event id; deliveries are deduplicated by it.
        event_id: String,
        /// The refund, as [`RefundOutcome::refund_id`] named it.
        refund_id: String,
        /// Where the refund stands now.
        state: RefundState,
    },
    /// A cardholder disputed a charge (`charge.dispute.created`).
    DisputeCreated {
        /// The processor's event id; deliveries are deduplicated by it.
        event_id: String,
        /// The dispute and the payment it is about.
        dispute: OpenedDispute,
    },
    /// A dispute was decided (`charge.dispute.closed`); `lost` when the cardholder won.
    DisputeClosed {
        /// The processor's event id; deliveries are deduplicated by it.
        event_id: String,
        /// The dispute, as [`OpenedDispute::dispute_id`] named it.
        dispute_id: String,
        /// Stripe's `lost`: the cardholder keeps the disputed amount.
        lost: bool,
    },
    /// A hold was canceled at the processor (`payment_intent.canceled`), e.g. it lapsed.
    AuthorizationCanceled {
        /// The processor's event id; deliveries are deduplicated by it.
        event_id: String,
        /// The hold, as [`AuthorizeOutcome::Authorized`] named it.
        authorization_id: String,
    },
    /// Anything else, acknowledged and ignored.
    Other {
        /// The processor's event id.
        event_id: String,
        /// The processor's event type (Stripe: `type`, e.g. `customer.updated`).
        kind: String,
    },
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

/// The result of a processor call.
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
    /// app's frontend made with the platform's publishable key. Idempotent by key
    /// (`customer:<customer row id>`): a repeat returns the customer the key made, and
    /// the same key with another card token is refused.
    async fn create_customer(
        &self,
        platform: &Platform,
        card_token: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<CreatedCustomer>;

    /// Replaces the customer's card with the one behind a new card token. Idempotent by
    /// key (`customer-card:<customer row id>:<its updated_at>`).
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

    /// Disconnects the operator's account from the platform. Takes no key: an account
    /// already disconnected counts as done, so a retry is safe.
    async fn revoke_link(&self, platform: &Platform, connected_account_id: &str) -> ProcessorResult<()>;

    /// Mints a single-use token on the connected account from the platform's customer.
    /// Idempotent by key (`charge-token:<charge token row id>`): a repeat returns the
    /// token the key made.
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
