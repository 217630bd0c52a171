//! The sandbox processor: Stripe Connect's flows, in process and deterministic, with its
//! state in Postgres (the `sandbox_*` tables) so a restart loses nothing. It accepts
//! Stripe's published test card tokens and behaves as their cards do; it is the default
//! when no Stripe settings are given, for development, demos and tests.

pub mod cards;
mod holds;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    AuthorizationRequest, AuthorizeOutcome, AuthorizeRequest, CaptureRequest, Captured, ChargeOutcome, ChargeRequest,
    CreatedCustomer, IncrementOutcome, IncrementRequest, IssuedToken, LinkAuthorization, OpenedDispute, Platform,
    PlatformAccount, PlatformCredentials, Processor, ProcessorError, ProcessorResult, RefundOutcome, RefundRequest,
    ReleaseRequest, WebhookEvent,
};
use crate::db::DbPool;
use crate::db::schema::{
    sandbox_accounts, sandbox_authorization_codes, sandbox_charges, sandbox_connections, sandbox_customers,
    sandbox_tokens,
};
use crate::models::customers::CardFacts;
use secrecy::SecretString;

/// How long an authorization code from the sandbox's consent page stays valid.
const CODE_TTL_SECONDS: i64 = 300;

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

fn unknown_card_token() -> ProcessorError {
    // Never echo the value: a caller might have sent a card number by mistake.
    ProcessorError::InvalidRequest(
        "cardToken is not a card token the sandbox accepts; use one of Stripe's test tokens \
         such as tok_visa, tok_mastercard or tok_chargeDeclined"
            .to_owned(),
    )
}

fn facts(card: &cards::TestCard) -> CardFacts {
    CardFacts {
        brand: card.brand.to_owned(),
        last4: card.last4.to_owned(),
        exp_month: cards::EXP_MONTH,
        exp_year: cards::EXP_YEAR,
    }
}

#[derive(Queryable)]
struct TokenRow {
    id: String,
    platform_account_id: String,
    customer_id: String,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
}

impl SandboxProcessor {
    pub fn new(pool: DbPool, public_url: url::Url, token_ttl: std::time::Duration) -> Self {
        let token_ttl = Duration::from_std(token_ttl).unwrap_or(Duration::minutes(15));
        SandboxProcessor { pool, public_url, token_ttl }
    }

    async fn conn(&self) -> ProcessorResult<crate::db::DbConn> {
        Ok(self.pool.get().await?)
    }

    /// The consent page approved: the operator's sandbox account is connected once the
    /// code is exchanged. The platform, link and operator come from the verified
    /// authorization state; the code is bound to them and redeems only for them.
    /// `client_id` must be the platform's. Returns the code for the redirect back.
    pub async fn approve(
        &self,
        platform_account_id: &str,
        client_id: &str,
        authorization: &LinkAuthorization,
    ) -> ProcessorResult<String> {
        if client_id != connect_client_id(platform_account_id) {
            return Err(ProcessorError::InvalidRequest("unknown client_id".to_owned()));
        }
        let mut conn = self.conn().await?;
        let known: bool = diesel::select(diesel::dsl::exists(
            sandbox_accounts::table
                .filter(sandbox_accounts::id.eq(platform_account_id))
                .filter(sandbox_accounts::kind.eq("platform")),
        ))
        .get_result(&mut conn)
        .await?;
        if !known {
            return Err(ProcessorError::InvalidRequest("unknown client_id".to_owned()));
        }
        let connected = connected_account(&mut conn, authorization.operator_id).await?;
        let code = object_id("ac");
        diesel::insert_into(sandbox_authorization_codes::table)
            .values((
                sandbox_authorization_codes::code.eq(&code),
                sandbox_authorization_codes::platform_account_id.eq(platform_account_id),
                sandbox_authorization_codes::connected_account_id.eq(&connected),
                sandbox_authorization_codes::link_id.eq(authorization.link_id),
                sandbox_authorization_codes::operator_id.eq(authorization.operator_id),
                sandbox_authorization_codes::expires_at.eq(Utc::now() + Duration::seconds(CODE_TTL_SECONDS)),
            ))
            .execute(&mut conn)
            .await?;
        Ok(code)
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

/// The sandbox's Connect client id of a platform account (as Stripe's `ca_…` is public
/// while the platform's account id is not shown to operators).
fn connect_client_id(platform_account_id: &str) -> String {
    format!("ca_{}", platform_account_id.strip_prefix("acct_").unwrap_or(platform_account_id))
}

/// The operator's sandbox account, made on first use.
async fn connected_account(conn: &mut AsyncPgConnection, operator_id: Uuid) -> QueryResult<String> {
    diesel::insert_into(sandbox_accounts::table)
        .values((
            sandbox_accounts::id.eq(format!("acct_sb_{}", operator_id.simple())),
            sandbox_accounts::kind.eq("connected"),
            sandbox_accounts::owner_id.eq(operator_id),
        ))
        .on_conflict((sandbox_accounts::kind, sandbox_accounts::owner_id))
        .do_nothing()
        .execute(conn)
        .await?;
    sandbox_accounts::table
        .filter(sandbox_accounts::kind.eq("connected"))
        .filter(sandbox_accounts::owner_id.eq(operator_id))
        .select(sandbox_accounts::id)
        .first(conn)
        .await
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
        if credentials.is_some() {
            return Err(ProcessorError::InvalidRequest(
                "the sandbox processor makes its own accounts; omit the stripe credentials".to_owned(),
            ));
        }
        let mut conn = self.conn().await?;
        diesel::insert_into(sandbox_accounts::table)
            .values((
                sandbox_accounts::id.eq(format!("acct_sb_{}", app_id.simple())),
                sandbox_accounts::kind.eq("platform"),
                sandbox_accounts::owner_id.eq(app_id),
                sandbox_accounts::publishable_key.eq(format!("pk_test_sb_{}", Uuid::new_v4().simple())),
            ))
            .on_conflict((sandbox_accounts::kind, sandbox_accounts::owner_id))
            .do_nothing()
            .execute(&mut conn)
            .await?;
        let (account_id, publishable_key): (String, Option<String>) = sandbox_accounts::table
            .filter(sandbox_accounts::kind.eq("platform"))
            .filter(sandbox_accounts::owner_id.eq(app_id))
            .select((sandbox_accounts::id, sandbox_accounts::publishable_key))
            .first(&mut conn)
            .await?;
        Ok(PlatformAccount { account_id, publishable_key: publishable_key.unwrap_or_default() })
    }

    async fn create_customer(
        &self,
        platform: &Platform,
        card_token: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<CreatedCustomer> {
        let platform_account_id = platform.account_id.as_str();
        let card = cards::lookup(card_token).ok_or_else(unknown_card_token)?;
        let mut conn = self.conn().await?;
        let inserted = diesel::insert_into(sandbox_customers::table)
            .values((
                sandbox_customers::id.eq(object_id("cus")),
                sandbox_customers::account_id.eq(platform_account_id),
                sandbox_customers::idempotency_key.eq(idempotency_key),
                sandbox_customers::test_token.eq(card.token),
                sandbox_customers::brand.eq(card.brand),
                sandbox_customers::last4.eq(card.last4),
                sandbox_customers::exp_month.eq(cards::EXP_MONTH),
                sandbox_customers::exp_year.eq(cards::EXP_YEAR),
            ))
            .on_conflict(sandbox_customers::idempotency_key)
            .do_nothing()
            .execute(&mut conn)
            .await;
        match inserted {
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _)) => {
                return Err(ProcessorError::InvalidRequest("no such platform account".to_owned()));
            }
            other => other?,
        };
        // A replay returns the customer the key made first, as Stripe's idempotency does;
        // the same key with another card is an error there too.
        let (customer_id, test_token): (String, String) = sandbox_customers::table
            .filter(sandbox_customers::idempotency_key.eq(idempotency_key))
            .select((sandbox_customers::id, sandbox_customers::test_token))
            .first(&mut conn)
            .await?;
        if test_token != card.token {
            return Err(ProcessorError::InvalidRequest(
                "this request's idempotency key was already used with another card token".to_owned(),
            ));
        }
        Ok(CreatedCustomer { customer_id, card: facts(card) })
    }

    async fn update_customer_card(
        &self,
        platform: &Platform,
        customer_id: &str,
        card_token: &str,
        _idempotency_key: &str,
    ) -> ProcessorResult<CardFacts> {
        let platform_account_id = platform.account_id.as_str();
        // Setting a customer's card is naturally idempotent: no key bookkeeping needed.
        let card = cards::lookup(card_token).ok_or_else(unknown_card_token)?;
        let mut conn = self.conn().await?;
        let updated = diesel::update(
            sandbox_customers::table.find(customer_id).filter(sandbox_customers::account_id.eq(platform_account_id)),
        )
        .set((
            sandbox_customers::test_token.eq(card.token),
            sandbox_customers::brand.eq(card.brand),
            sandbox_customers::last4.eq(card.last4),
            sandbox_customers::exp_month.eq(cards::EXP_MONTH),
            sandbox_customers::exp_year.eq(cards::EXP_YEAR),
            sandbox_customers::updated_at.eq(diesel::dsl::now),
        ))
        .execute(&mut conn)
        .await?;
        if updated == 0 {
            return Err(ProcessorError::Failed("no such customer on the app's platform account".to_owned()));
        }
        Ok(facts(card))
    }

    fn consent_page(&self) -> Option<&dyn super::ConsentPage> {
        Some(self)
    }

    fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> ProcessorResult<url::Url> {
        let mut url = self
            .public_url
            .join("sandbox/connect/oauth/authorize")
            .map_err(|e| ProcessorError::Failed(format!("bad public URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &connect_client_id(&request.platform.account_id))
            .append_pair("scope", "read_write")
            .append_pair("state", request.state)
            .append_pair("redirect_uri", request.redirect_uri);
        Ok(url)
    }

    async fn complete_link(
        &self,
        platform: &Platform,
        code: &str,
        authorization: &LinkAuthorization,
    ) -> ProcessorResult<String> {
        let mut conn = self.conn().await?;
        let platform = platform.account_id.clone();
        let code = code.to_owned();
        let authorization = *authorization;
        conn.transaction(async move |conn| {
            let connected: Option<String> = diesel::update(
                sandbox_authorization_codes::table
                    .find(&code)
                    .filter(sandbox_authorization_codes::platform_account_id.eq(&platform))
                    // A code issued for another link or operator is as good as none, and
                    // stays unspent.
                    .filter(sandbox_authorization_codes::link_id.eq(authorization.link_id))
                    .filter(sandbox_authorization_codes::operator_id.eq(authorization.operator_id))
                    .filter(sandbox_authorization_codes::used_at.is_null())
                    .filter(sandbox_authorization_codes::expires_at.gt(diesel::dsl::now)),
            )
            .set(sandbox_authorization_codes::used_at.eq(diesel::dsl::now))
            .returning(sandbox_authorization_codes::connected_account_id)
            .get_result(conn)
            .await
            .optional()?;
            let Some(connected) = connected else {
                return Err(ProcessorError::InvalidRequest(
                    "authorization code does not exist, has expired, was already used or was issued for \
                     another link"
                        .to_owned(),
                ));
            };
            diesel::insert_into(sandbox_connections::table)
                .values((
                    sandbox_connections::platform_account_id.eq(&platform),
                    sandbox_connections::connected_account_id.eq(&connected),
                ))
                .on_conflict((sandbox_connections::platform_account_id, sandbox_connections::connected_account_id))
                .do_update()
                .set((
                    sandbox_connections::revoked_at.eq(None::<DateTime<Utc>>),
                    sandbox_connections::connected_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            Ok::<_, ProcessorError>(connected)
        })
        .await
    }

    async fn revoke_link(&self, platform: &Platform, connected_account_id: &str) -> ProcessorResult<()> {
        let platform_account_id = platform.account_id.as_str();
        let mut conn = self.conn().await?;
        // Revoking twice is fine (Stripe answers the second deauthorize with an error
        // that callers treat as done; here it is simply a no-op).
        diesel::update(
            sandbox_connections::table
                .find((platform_account_id, connected_account_id))
                .filter(sandbox_connections::revoked_at.is_null()),
        )
        .set(sandbox_connections::revoked_at.eq(diesel::dsl::now))
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    async fn issue_charge_token(
        &self,
        platform: &Platform,
        customer_id: &str,
        connected_account_id: &str,
        idempotency_key: &str,
    ) -> ProcessorResult<IssuedToken> {
        let platform_account_id = platform.account_id.as_str();
        let mut conn = self.conn().await?;
        // The replay and both checks in one statement: a replayed key answers with its
        // token, as Stripe's idempotency does, whatever the checks say now.
        let by_key = || sandbox_tokens::table.filter(sandbox_tokens::idempotency_key.eq(idempotency_key));
        let (replay_token, replay_expires_at, customer_known, connected): (
            Option<String>,
            Option<DateTime<Utc>>,
            bool,
            bool,
        ) = diesel::select((
            by_key().select(sandbox_tokens::id).single_value(),
            by_key().select(sandbox_tokens::expires_at).single_value(),
            diesel::dsl::exists(
                sandbox_customers::table
                    .find(customer_id)
                    .filter(sandbox_customers::account_id.eq(platform_account_id)),
            ),
            diesel::dsl::exists(
                sandbox_connections::table
                    .find((platform_account_id, connected_account_id))
                    .filter(sandbox_connections::revoked_at.is_null()),
            ),
        ))
        .get_result(&mut conn)
        .await?;
        if let (Some(token), Some(expires_at)) = (replay_token, replay_expires_at) {
            return Ok(IssuedToken { token, expires_at });
        }
        if !customer_known {
            return Err(ProcessorError::Failed("no such customer on the app's platform account".to_owned()));
        }
        if !connected {
            return Err(ProcessorError::Failed(
                "the operator's account is not connected to the app's platform".to_owned(),
            ));
        }
        let expires_at = Utc::now() + self.token_ttl;
        let inserted: Option<(String, DateTime<Utc>)> = diesel::insert_into(sandbox_tokens::table)
            .values((
                sandbox_tokens::id.eq(object_id("tok")),
                sandbox_tokens::platform_account_id.eq(platform_account_id),
                sandbox_tokens::connected_account_id.eq(connected_account_id),
                sandbox_tokens::customer_id.eq(customer_id),
                sandbox_tokens::idempotency_key.eq(idempotency_key),
                sandbox_tokens::expires_at.eq(expires_at),
            ))
            .on_conflict(sandbox_tokens::idempotency_key)
            .do_nothing()
            .returning((sandbox_tokens::id, sandbox_tokens::expires_at))
            .get_result(&mut conn)
            .await
            .optional()?;
        // None: a concurrent request with the same key inserted first; its token stands.
        let (token, expires_at) = match inserted {
            Some(row) => row,
            None => by_key().select((sandbox_tokens::id, sandbox_tokens::expires_at)).first(&mut conn).await?,
        };
        Ok(IssuedToken { token, expires_at })
    }

    async fn charge(&self, request: &ChargeRequest<'_>) -> ProcessorResult<ChargeOutcome> {
        let mut conn = self.conn().await?;
        if let Some(outcome) = charge_by_key(&mut conn, request.idempotency_key).await? {
            return Ok(outcome);
        }
        let token: Option<TokenRow> = sandbox_tokens::table
            .find(request.token)
            .filter(sandbox_tokens::connected_account_id.eq(request.connected_account_id))
            .select((
                sandbox_tokens::id,
                sandbox_tokens::platform_account_id,
                sandbox_tokens::customer_id,
                sandbox_tokens::expires_at,
                sandbox_tokens::used_at,
            ))
            .first(&mut conn)
            .await
            .optional()?;
        let Some(token) = token else {
            return Err(ProcessorError::InvalidRequest("no such token on the operator's account".to_owned()));
        };
        if token.platform_account_id != request.platform.account_id {
            return Err(ProcessorError::InvalidRequest("no such token on the operator's account".to_owned()));
        }
        if token.used_at.is_some() {
            // Spent: by a concurrent request with this key that has just committed (its
            // outcome is the answer), or by another charge.
            return match charge_by_key(&mut conn, request.idempotency_key).await? {
                Some(outcome) => Ok(outcome),
                None => Err(ProcessorError::InvalidRequest("a token can be used only once".to_owned())),
            };
        }
        if token.expires_at <= Utc::now() {
            return Err(ProcessorError::InvalidRequest("the token has expired".to_owned()));
        }
        let test_token: String = sandbox_customers::table
            .find(&token.customer_id)
            .select(sandbox_customers::test_token)
            .first(&mut conn)
            .await?;
        let decline = cards::decline_of(&test_token);
        let request = request.clone();
        let key = request.idempotency_key.to_owned();
        let recorded = conn
            .transaction(async move |conn| {
                let inserted = diesel::insert_into(sandbox_charges::table)
                    .values((
                        sandbox_charges::id.eq(object_id("ch")),
                        sandbox_charges::connected_account_id.eq(request.connected_account_id),
                        sandbox_charges::token_id.eq(&token.id),
                        sandbox_charges::idempotency_key.eq(request.idempotency_key),
                        sandbox_charges::amount.eq(request.amount),
                        sandbox_charges::currency.eq(request.currency.to_ascii_lowercase()),
                        sandbox_charges::status.eq(if decline.is_some() { "failed" } else { "succeeded" }),
                        sandbox_charges::failure_code.eq(decline.map(|d| d.code)),
                        sandbox_charges::decline_code.eq(decline.and_then(|d| d.decline_code)),
                        sandbox_charges::failure_message.eq(decline.map(|d| d.message)),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                if inserted == 1 {
                    diesel::update(sandbox_tokens::table.find(&token.id))
                        .set(sandbox_tokens::used_at.eq(diesel::dsl::now))
                        .execute(conn)
                        .await?;
                }
                Ok::<_, diesel::result::Error>(inserted == 1)
            })
            .await?;
        // Lost a race: a concurrent request with the same key charged first (replay its
        // outcome), or another key already spent the token.
        match charge_by_key(&mut conn, &key).await? {
            Some(outcome) => Ok(outcome),
            None if !recorded => Err(ProcessorError::InvalidRequest("a token can be used only once".to_owned())),
            None => Err(ProcessorError::Unavailable("sandbox charge vanished after commit".to_owned())),
        }
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

/// A stored charge: id, status, failure code, decline code, failure message.
type ChargeRow = (String, String, Option<String>, Option<String>, Option<String>);

async fn charge_by_key(conn: &mut AsyncPgConnection, key: &str) -> ProcessorResult<Option<ChargeOutcome>> {
    let row: Option<ChargeRow> = sandbox_charges::table
        .filter(sandbox_charges::idempotency_key.eq(key))
        .select((
            sandbox_charges::id,
            sandbox_charges::status,
            sandbox_charges::failure_code,
            sandbox_charges::decline_code,
            sandbox_charges::failure_message,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(charge_id, status, code, decline_code, message)| {
        if status == "succeeded" {
            ChargeOutcome::Succeeded { charge_id }
        } else {
            ChargeOutcome::Declined {
                code: code.unwrap_or_else(|| "card_declined".to_owned()),
                decline_code,
                message: message.unwrap_or_else(|| "Your card was declined.".to_owned()),
            }
        }
    }))
}
