//! `apps`: the demand side. Each app has a platform account at the processor.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::Page;
use crate::db::schema::{apps, links};

/// An `apps` row: a parking app and its platform account at the processor.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = apps)]
pub struct App {
    /// The app's id (UUIDv7, so ids sort by creation).
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// The processor holding the platform account (`sandbox` or `stripe`).
    pub processor: String,
    /// The platform account's id at the processor.
    pub processor_account_id: String,
    /// The platform account's publishable key (public by design).
    pub publishable_key: String,
    /// When the app was created.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// The Connect OAuth client id of the platform (Stripe: `ca_…`), when it has one.
    pub connect_client_id: Option<String>,
    /// The platform's secret API key, encrypted with the keyring (`crypto`).
    pub secret_key_ciphertext: Option<Vec<u8>>,
    /// The keyring key that encrypted `secret_key_ciphertext`.
    pub secret_key_key_id: Option<String>,
    /// The processor's webhook signing secret for the platform, encrypted with the keyring.
    pub webhook_secret_ciphertext: Option<Vec<u8>>,
    /// The keyring key that encrypted `webhook_secret_ciphertext`.
    pub webhook_secret_key_id: Option<String>,
    /// The app's cut of each charge, in basis points of the amount.
    pub platform_fee_bps: Option<i32>,
}

/// A new app; secrets arrive already encrypted.
#[derive(Debug, Insertable)]
#[diesel(table_name = apps)]
pub struct NewApp<'a> {
    /// The new app's id (UUIDv7).
    pub id: Uuid,
    /// Display name.
    pub name: &'a str,
    /// The processor holding the platform account.
    pub processor: &'a str,
    /// The platform account's id at the processor.
    pub processor_account_id: &'a str,
    /// The platform account's publishable key.
    pub publishable_key: &'a str,
    /// The Connect OAuth client id, when the platform has one.
    pub connect_client_id: Option<&'a str>,
    /// The secret API key, encrypted.
    pub secret_key_ciphertext: Option<&'a [u8]>,
    /// The keyring key of `secret_key_ciphertext`.
    pub secret_key_key_id: Option<&'a str>,
    /// The webhook signing secret, encrypted.
    pub webhook_secret_ciphertext: Option<&'a [u8]>,
    /// The keyring key of `webhook_secret_ciphertext`.
    pub webhook_secret_key_id: Option<&'a str>,
    /// The app's cut of each charge, in basis points.
    pub platform_fee_bps: Option<i32>,
}

/// Which apps a query may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppScope {
    /// Every app (admins).
    All,
    /// This app only (the app itself).
    Only(Uuid),
    /// Apps with a link (in any state) to this operator.
    LinkedTo(Uuid),
}

impl NewApp<'_> {
    /// Inserts the app.
    pub async fn insert(&self, conn: &mut AsyncPgConnection) -> QueryResult<App> {
        diesel::insert_into(apps::table).values(self).returning(App::as_returning()).get_result(conn).await
    }
}

fn scoped(scope: AppScope) -> apps::BoxedQuery<'static, diesel::pg::Pg> {
    let query = apps::table.into_boxed();
    match scope {
        AppScope::All => query,
        AppScope::Only(id) => query.filter(apps::id.eq(id)),
        AppScope::LinkedTo(operator_id) => {
            query.filter(apps::id.eq_any(links::table.filter(links::operator_id.eq(operator_id)).select(links::app_id)))
        }
    }
}

impl App {
    /// Whether an app with this id exists.
    pub async fn exists(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(apps::table.find(id))).get_result(conn).await
    }

    /// The app with this id, if any.
    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<App>> {
        apps::table.find(id).select(App::as_select()).first(conn).await.optional()
    }

    /// The apps with these ids (for the loaders), in no particular order.
    pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<App>> {
        apps::table.filter(apps::id.eq_any(ids)).select(App::as_select()).load(conn).await
    }

    /// A page of apps in `scope`, by id.
    pub async fn list(conn: &mut AsyncPgConnection, scope: AppScope, page: Page) -> QueryResult<Vec<App>> {
        let mut query = scoped(scope).select(App::as_select()).order(apps::id.asc());
        if let Some(after) = page.after {
            query = query.filter(apps::id.gt(after));
        }
        super::limited(query, page.limit).load(conn).await
    }

    /// How many apps `scope` holds.
    pub async fn count(conn: &mut AsyncPgConnection, scope: AppScope) -> QueryResult<i64> {
        scoped(scope).count().get_result(conn).await
    }

    /// Apps with a webhook secret (candidates for verifying a Stripe webhook).
    pub async fn with_webhook_secrets(conn: &mut AsyncPgConnection) -> QueryResult<Vec<App>> {
        apps::table
            .filter(apps::webhook_secret_ciphertext.is_not_null())
            .select(App::as_select())
            .order(apps::id.asc())
            .load(conn)
            .await
    }

    /// Apps whose secrets were sealed with another key than `current_key_id`.
    pub async fn sealed_with_other_keys(conn: &mut AsyncPgConnection, current_key_id: &str) -> QueryResult<Vec<App>> {
        apps::table
            .filter(apps::secret_key_key_id.ne(current_key_id).or(apps::webhook_secret_key_id.ne(current_key_id)))
            .select(App::as_select())
            .load(conn)
            .await
    }

    /// Replaces the sealed secrets (key rotation).
    pub async fn reseal(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        secret_key: (&[u8], &str),
        webhook_secret: (&[u8], &str),
    ) -> QueryResult<usize> {
        diesel::update(apps::table.find(id))
            .set((
                apps::secret_key_ciphertext.eq(secret_key.0),
                apps::secret_key_key_id.eq(secret_key.1),
                apps::webhook_secret_ciphertext.eq(webhook_secret.0),
                apps::webhook_secret_key_id.eq(webhook_secret.1),
                apps::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await
    }
}
