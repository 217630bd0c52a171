//! The sandbox processor's SQL: its accounts, connections, authorization codes,
//! customers, tokens, charges, holds, refunds and stored replies (the `sandbox_*`
//! tables). Every function returns `QueryResult`; the flows decide what a result means.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::cards::{self, TestCard};
use crate::db::schema::{
    sandbox_accounts, sandbox_authorization_codes, sandbox_authorizations, sandbox_charges, sandbox_connections,
    sandbox_customers, sandbox_refunds, sandbox_replies, sandbox_tokens,
};

// Accounts and links.

/// Makes the app's platform account unless it has one.
pub async fn insert_platform_account(
    conn: &mut AsyncPgConnection,
    app_id: Uuid,
    publishable_key: &str,
) -> QueryResult<usize> {
    diesel::insert_into(sandbox_accounts::table)
        .values((
            sandbox_accounts::id.eq(format!("acct_sb_{}", app_id.simple())),
            sandbox_accounts::kind.eq("platform"),
            sandbox_accounts::owner_id.eq(app_id),
            sandbox_accounts::publishable_key.eq(publishable_key),
        ))
        .on_conflict((sandbox_accounts::kind, sandbox_accounts::owner_id))
        .do_nothing()
        .execute(conn)
        .await
}

/// The app's platform account: its id and publishable key.
pub async fn platform_account(conn: &mut AsyncPgConnection, app_id: Uuid) -> QueryResult<(String, Option<String>)> {
    sandbox_accounts::table
        .filter(sandbox_accounts::kind.eq("platform"))
        .filter(sandbox_accounts::owner_id.eq(app_id))
        .select((sandbox_accounts::id, sandbox_accounts::publishable_key))
        .first(conn)
        .await
}

pub async fn platform_exists(conn: &mut AsyncPgConnection, platform_account_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        sandbox_accounts::table
            .filter(sandbox_accounts::id.eq(platform_account_id))
            .filter(sandbox_accounts::kind.eq("platform")),
    ))
    .get_result(conn)
    .await
}

/// The operator's sandbox account, made on first use.
pub async fn connected_account(conn: &mut AsyncPgConnection, operator_id: Uuid) -> QueryResult<String> {
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

/// An authorization code, bound to the platform, link and operator it was issued for.
#[derive(Insertable)]
#[diesel(table_name = sandbox_authorization_codes)]
pub struct NewAuthorizationCode<'a> {
    pub code: &'a str,
    pub platform_account_id: &'a str,
    pub connected_account_id: &'a str,
    pub link_id: Uuid,
    pub operator_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_authorization_code(
    conn: &mut AsyncPgConnection,
    code: &NewAuthorizationCode<'_>,
) -> QueryResult<usize> {
    diesel::insert_into(sandbox_authorization_codes::table).values(code).execute(conn).await
}

/// Spends an unexpired, unspent code issued for this platform, link and operator;
/// returns the account it connects, or `None` when there is no such code.
pub async fn spend_authorization_code(
    conn: &mut AsyncPgConnection,
    code: &str,
    platform_account_id: &str,
    link_id: Uuid,
    operator_id: Uuid,
) -> QueryResult<Option<String>> {
    diesel::update(
        sandbox_authorization_codes::table
            .find(code)
            .filter(sandbox_authorization_codes::platform_account_id.eq(platform_account_id))
            // A code issued for another link or operator is as good as none, and stays
            // unspent.
            .filter(sandbox_authorization_codes::link_id.eq(link_id))
            .filter(sandbox_authorization_codes::operator_id.eq(operator_id))
            .filter(sandbox_authorization_codes::used_at.is_null())
            .filter(sandbox_authorization_codes::expires_at.gt(diesel::dsl::now)),
    )
    .set(sandbox_authorization_codes::used_at.eq(diesel::dsl::now))
    .returning(sandbox_authorization_codes::connected_account_id)
    .get_result(conn)
    .await
    .optional()
}

/// Connects the account to the platform, again if it was revoked.
pub async fn connect(
    conn: &mut AsyncPgConnection,
    platform_account_id: &str,
    connected_account_id: &str,
) -> QueryResult<usize> {
    diesel::insert_into(sandbox_connections::table)
        .values((
            sandbox_connections::platform_account_id.eq(platform_account_id),
            sandbox_connections::connected_account_id.eq(connected_account_id),
        ))
        .on_conflict((sandbox_connections::platform_account_id, sandbox_connections::connected_account_id))
        .do_update()
        .set((
            sandbox_connections::revoked_at.eq(None::<DateTime<Utc>>),
            sandbox_connections::connected_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
}

/// Revokes a live connection; one already revoked stays as it is.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    platform_account_id: &str,
    connected_account_id: &str,
) -> QueryResult<usize> {
    diesel::update(
        sandbox_connections::table
            .find((platform_account_id, connected_account_id))
            .filter(sandbox_connections::revoked_at.is_null()),
    )
    .set(sandbox_connections::revoked_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
}

// Customers.

/// Makes a customer with the test card, unless the key already made one.
pub async fn insert_customer(
    conn: &mut AsyncPgConnection,
    id: &str,
    platform_account_id: &str,
    idempotency_key: &str,
    card: &TestCard,
) -> QueryResult<usize> {
    diesel::insert_into(sandbox_customers::table)
        .values((
            sandbox_customers::id.eq(id),
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
        .execute(conn)
        .await
}

/// The customer a key made: its id and test token.
pub async fn customer_by_key(conn: &mut AsyncPgConnection, idempotency_key: &str) -> QueryResult<(String, String)> {
    sandbox_customers::table
        .filter(sandbox_customers::idempotency_key.eq(idempotency_key))
        .select((sandbox_customers::id, sandbox_customers::test_token))
        .first(conn)
        .await
}

/// Replaces the card of a customer on the platform account; 0 when there is no such one.
pub async fn update_customer_card(
    conn: &mut AsyncPgConnection,
    customer_id: &str,
    platform_account_id: &str,
    card: &TestCard,
) -> QueryResult<usize> {
    diesel::update(
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
    .execute(conn)
    .await
}

/// The test token behind a customer's card.
pub async fn customer_test_token(conn: &mut AsyncPgConnection, customer_id: &str) -> QueryResult<String> {
    sandbox_customers::table.find(customer_id).select(sandbox_customers::test_token).first(conn).await
}

// Tokens.

/// What issuing a token needs to know, read in one statement: the token a key already
/// made (id, expiry), whether the customer is the platform's, and whether the account is
/// connected to it.
pub type TokenChecks = (Option<String>, Option<DateTime<Utc>>, bool, bool);

pub async fn token_checks(
    conn: &mut AsyncPgConnection,
    idempotency_key: &str,
    platform_account_id: &str,
    customer_id: &str,
    connected_account_id: &str,
) -> QueryResult<TokenChecks> {
    let by_key = || sandbox_tokens::table.filter(sandbox_tokens::idempotency_key.eq(idempotency_key));
    diesel::select((
        by_key().select(sandbox_tokens::id).single_value(),
        by_key().select(sandbox_tokens::expires_at).single_value(),
        diesel::dsl::exists(
            sandbox_customers::table.find(customer_id).filter(sandbox_customers::account_id.eq(platform_account_id)),
        ),
        diesel::dsl::exists(
            sandbox_connections::table
                .find((platform_account_id, connected_account_id))
                .filter(sandbox_connections::revoked_at.is_null()),
        ),
    ))
    .get_result(conn)
    .await
}

#[derive(Insertable)]
#[diesel(table_name = sandbox_tokens)]
pub struct NewToken<'a> {
    pub id: &'a str,
    pub platform_account_id: &'a str,
    pub connected_account_id: &'a str,
    pub customer_id: &'a str,
    pub idempotency_key: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// Inserts the token unless its key already made one (`None`).
pub async fn insert_token(
    conn: &mut AsyncPgConnection,
    token: &NewToken<'_>,
) -> QueryResult<Option<(String, DateTime<Utc>)>> {
    diesel::insert_into(sandbox_tokens::table)
        .values(token)
        .on_conflict(sandbox_tokens::idempotency_key)
        .do_nothing()
        .returning((sandbox_tokens::id, sandbox_tokens::expires_at))
        .get_result(conn)
        .await
        .optional()
}

/// The token a key made: its id and expiry.
pub async fn token_by_key(conn: &mut AsyncPgConnection, idempotency_key: &str) -> QueryResult<(String, DateTime<Utc>)> {
    sandbox_tokens::table
        .filter(sandbox_tokens::idempotency_key.eq(idempotency_key))
        .select((sandbox_tokens::id, sandbox_tokens::expires_at))
        .first(conn)
        .await
}

/// A token as a charge or hold reads it.
#[derive(Queryable)]
pub struct TokenRow {
    pub id: String,
    pub platform_account_id: String,
    pub customer_id: String,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

type TokenColumns = (
    sandbox_tokens::id,
    sandbox_tokens::platform_account_id,
    sandbox_tokens::customer_id,
    sandbox_tokens::expires_at,
    sandbox_tokens::used_at,
);

const TOKEN_COLUMNS: TokenColumns = (
    sandbox_tokens::id,
    sandbox_tokens::platform_account_id,
    sandbox_tokens::customer_id,
    sandbox_tokens::expires_at,
    sandbox_tokens::used_at,
);

/// A token on the connected account.
pub async fn token(
    conn: &mut AsyncPgConnection,
    token: &str,
    connected_account_id: &str,
) -> QueryResult<Option<TokenRow>> {
    sandbox_tokens::table
        .find(token)
        .filter(sandbox_tokens::connected_account_id.eq(connected_account_id))
        .select(TOKEN_COLUMNS)
        .first(conn)
        .await
        .optional()
}

/// A token on the connected account minted from the platform's customer, locked.
pub async fn lock_token(
    conn: &mut AsyncPgConnection,
    token: &str,
    connected_account_id: &str,
    platform_account_id: &str,
) -> QueryResult<Option<TokenRow>> {
    sandbox_tokens::table
        .find(token)
        .filter(sandbox_tokens::connected_account_id.eq(connected_account_id))
        .filter(sandbox_tokens::platform_account_id.eq(platform_account_id))
        .select(TOKEN_COLUMNS)
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn spend_token(conn: &mut AsyncPgConnection, token_id: &str) -> QueryResult<usize> {
    diesel::update(sandbox_tokens::table.find(token_id))
        .set(sandbox_tokens::used_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
}

// Charges.

#[derive(Insertable)]
#[diesel(table_name = sandbox_charges)]
pub struct NewCharge<'a> {
    pub id: &'a str,
    pub connected_account_id: &'a str,
    pub token_id: &'a str,
    pub idempotency_key: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub status: &'a str,
    pub failure_code: Option<&'a str>,
    pub decline_code: Option<&'a str>,
    pub failure_message: Option<&'a str>,
}

/// Inserts the charge unless it conflicts with one already made (0).
pub async fn insert_charge(conn: &mut AsyncPgConnection, charge: &NewCharge<'_>) -> QueryResult<usize> {
    diesel::insert_into(sandbox_charges::table).values(charge).on_conflict_do_nothing().execute(conn).await
}

/// A stored charge: id, status, failure code, decline code, failure message.
pub type ChargeRow = (String, String, Option<String>, Option<String>, Option<String>);

pub async fn charge_by_key(conn: &mut AsyncPgConnection, idempotency_key: &str) -> QueryResult<Option<ChargeRow>> {
    sandbox_charges::table
        .filter(sandbox_charges::idempotency_key.eq(idempotency_key))
        .select((
            sandbox_charges::id,
            sandbox_charges::status,
            sandbox_charges::failure_code,
            sandbox_charges::decline_code,
            sandbox_charges::failure_message,
        ))
        .first(conn)
        .await
        .optional()
}

// Replies of keyed requests.

/// The reply stored for a key, if any (`Some(None)`: a row without one).
pub async fn reply(conn: &mut AsyncPgConnection, idempotency_key: &str) -> QueryResult<Option<Option<String>>> {
    sandbox_replies::table.find(idempotency_key).select(sandbox_replies::reply).first(conn).await.optional()
}

/// Stores a reply unless the key has one (0).
pub async fn insert_reply(
    conn: &mut AsyncPgConnection,
    idempotency_key: &str,
    operation: &str,
    reply: &str,
) -> QueryResult<usize> {
    diesel::insert_into(sandbox_replies::table)
        .values((
            sandbox_replies::idempotency_key.eq(idempotency_key),
            sandbox_replies::operation.eq(operation),
            sandbox_replies::reply.eq(reply),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

// Holds.

#[derive(Queryable)]
pub struct Hold {
    pub id: String,
    pub amount: i64,
    pub status: String,
    pub incremental: bool,
}

/// A hold on the connected account, locked.
pub async fn lock_hold(
    conn: &mut AsyncPgConnection,
    connected_account_id: &str,
    id: &str,
) -> QueryResult<Option<Hold>> {
    sandbox_authorizations::table
        .find(id)
        .filter(sandbox_authorizations::connected_account_id.eq(connected_account_id))
        .select((
            sandbox_authorizations::id,
            sandbox_authorizations::amount,
            sandbox_authorizations::status,
            sandbox_authorizations::incremental,
        ))
        .for_update()
        .first(conn)
        .await
        .optional()
}

#[derive(Insertable)]
#[diesel(table_name = sandbox_authorizations)]
pub struct NewHold<'a> {
    pub id: &'a str,
    pub connected_account_id: &'a str,
    pub token_id: &'a str,
    pub test_token: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub application_fee: Option<i64>,
    pub status: &'a str,
    pub incremental: bool,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_hold(conn: &mut AsyncPgConnection, hold: &NewHold<'_>) -> QueryResult<usize> {
    diesel::insert_into(sandbox_authorizations::table).values(hold).execute(conn).await
}

/// Raises a hold to a new total.
pub async fn increment_hold(
    conn: &mut AsyncPgConnection,
    id: &str,
    total: i64,
    application_fee: Option<i64>,
) -> QueryResult<usize> {
    diesel::update(sandbox_authorizations::table.find(id))
        .set((sandbox_authorizations::amount.eq(total), sandbox_authorizations::application_fee.eq(application_fee)))
        .execute(conn)
        .await
}

pub async fn capture_hold(
    conn: &mut AsyncPgConnection,
    id: &str,
    amount: i64,
    application_fee: Option<i64>,
) -> QueryResult<usize> {
    diesel::update(sandbox_authorizations::table.find(id))
        .set((
            sandbox_authorizations::status.eq("succeeded"),
            sandbox_authorizations::amount_captured.eq(amount),
            sandbox_authorizations::application_fee.eq(application_fee),
        ))
        .execute(conn)
        .await
}

pub async fn cancel_hold(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<usize> {
    diesel::update(sandbox_authorizations::table.find(id))
        .set(sandbox_authorizations::status.eq("canceled"))
        .execute(conn)
        .await
}

/// A captured hold's amount and the app's fee on it, locked.
pub async fn lock_captured_hold(
    conn: &mut AsyncPgConnection,
    connected_account_id: &str,
    id: &str,
) -> QueryResult<Option<(i64, Option<i64>)>> {
    sandbox_authorizations::table
        .find(id)
        .filter(sandbox_authorizations::connected_account_id.eq(connected_account_id))
        .filter(sandbox_authorizations::status.eq("succeeded"))
        .select((sandbox_authorizations::amount_captured, sandbox_authorizations::application_fee))
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// A succeeded charge's amount, locked.
pub async fn lock_succeeded_charge(
    conn: &mut AsyncPgConnection,
    connected_account_id: &str,
    id: &str,
) -> QueryResult<Option<i64>> {
    sandbox_charges::table
        .find(id)
        .filter(sandbox_charges::connected_account_id.eq(connected_account_id))
        .filter(sandbox_charges::status.eq("succeeded"))
        .select(sandbox_charges::amount)
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The card (test token), amount and currency of a captured hold or a succeeded charge.
pub async fn collected_payment(
    conn: &mut AsyncPgConnection,
    reference: &str,
) -> QueryResult<Option<(String, i64, String)>> {
    let from_hold = sandbox_authorizations::table
        .find(reference)
        .filter(sandbox_authorizations::status.eq("succeeded"))
        .select((
            sandbox_authorizations::test_token,
            sandbox_authorizations::amount_captured,
            sandbox_authorizations::currency,
        ))
        .first(conn)
        .await
        .optional()?;
    match from_hold {
        Some(found) => Ok(Some(found)),
        None => sandbox_charges::table
            .inner_join(sandbox_tokens::table.inner_join(sandbox_customers::table))
            .filter(sandbox_charges::id.eq(reference))
            .filter(sandbox_charges::status.eq("succeeded"))
            .select((sandbox_customers::test_token, sandbox_charges::amount, sandbox_charges::currency))
            .first(conn)
            .await
            .optional(),
    }
}

// Refunds.

/// The amounts refunded so far of a capture or charge.
pub async fn refunded(conn: &mut AsyncPgConnection, payment_ref: &str) -> QueryResult<Vec<i64>> {
    sandbox_refunds::table
        .filter(sandbox_refunds::payment_ref.eq(payment_ref))
        .select(sandbox_refunds::amount)
        .load(conn)
        .await
}

pub async fn insert_refund(
    conn: &mut AsyncPgConnection,
    id: &str,
    payment_ref: &str,
    amount: i64,
    application_fee_refunded: i64,
) -> QueryResult<usize> {
    diesel::insert_into(sandbox_refunds::table)
        .values((
            sandbox_refunds::id.eq(id),
            sandbox_refunds::payment_ref.eq(payment_ref),
            sandbox_refunds::amount.eq(amount),
            sandbox_refunds::application_fee_refunded.eq(application_fee_refunded),
        ))
        .execute(conn)
        .await
}
