//! Platform and connected accounts, authorization codes and connections (`sandbox_accounts`, `sandbox_authorization_codes`, `sandbox_connections`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::{sandbox_accounts, sandbox_authorization_codes, sandbox_connections};

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
