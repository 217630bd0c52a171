//! `customers`: an app's end user at the processor. Only the processor's customer id and
//! non-sensitive card facts are kept, never a card number.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{App, Page};
use crate::db::schema::{apps, customers, parking_sessions};
use crate::domain::cards::CardFacts;

/// A `customers` row: an app's end user and the card on file.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = customers)]
pub struct Customer {
    /// The customer's id (UUIDv7).
    pub id: Uuid,
    /// The app the customer belongs to.
    pub app_id: Uuid,
    /// The app's own reference for the user (unique per app).
    pub external_ref: String,
    /// The customer's id on the app's platform account; null until the processor made it.
    pub processor_customer_id: Option<String>,
    /// The card's brand, as the processor names it.
    pub card_brand: Option<String>,
    /// The card's last four digits.
    pub card_last4: Option<String>,
    /// The card's expiry month, 1–12.
    pub card_exp_month: Option<i16>,
    /// The card's expiry year, four digits.
    pub card_exp_year: Option<i16>,
    /// When the customer was created.
    pub created_at: DateTime<Utc>,
    /// When the customer (or its card) last changed.
    pub updated_at: DateTime<Utc>,
}

/// Which customers a query may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerScope {
    /// Every customer (admins).
    All,
    /// This app's customers.
    App(Uuid),
    /// Customers with a parking session at this operator.
    SessionsAt(Uuid),
}

fn scoped(scope: CustomerScope) -> customers::BoxedQuery<'static, diesel::pg::Pg> {
    // Customers whose processor record is not made yet are not shown anywhere.
    let query = customers::table.filter(customers::processor_customer_id.is_not_null()).into_boxed();
    match scope {
        CustomerScope::All => query,
        CustomerScope::App(id) => query.filter(customers::app_id.eq(id)),
        CustomerScope::SessionsAt(operator_id) => query.filter(
            customers::id.eq_any(
                parking_sessions::table
                    .filter(parking_sessions::operator_id.eq(operator_id))
                    .select(parking_sessions::customer_id),
            ),
        ),
    }
}

impl Customer {
    /// The card facts, when the row has all of them.
    pub fn card(&self) -> Option<CardFacts> {
        Some(CardFacts {
            brand: self.card_brand.clone()?,
            last4: self.card_last4.clone()?,
            exp_month: self.card_exp_month?,
            exp_year: self.card_exp_year?,
        })
    }

    /// The customer with this id, if any.
    pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Customer>> {
        customers::table.find(id).select(Customer::as_select()).first(conn).await.optional()
    }

    /// The customer with this id and its app, in one statement, if the customer exists.
    pub async fn find_with_app(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<(Customer, App)>> {
        customers::table
            .inner_join(apps::table)
            .filter(customers::id.eq(id))
            .select((Customer::as_select(), App::as_select()))
            .first(conn)
            .await
            .optional()
    }

    /// The customers with these ids (for the loaders), in no particular order.
    pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Customer>> {
        customers::table.filter(customers::id.eq_any(ids)).select(Customer::as_select()).load(conn).await
    }

    /// A page of customers in `scope`, by id (customers without a processor record are left out).
    pub async fn list(conn: &mut AsyncPgConnection, scope: CustomerScope, page: Page) -> QueryResult<Vec<Customer>> {
        let mut query = scoped(scope).select(Customer::as_select()).order(customers::id.asc());
        if let Some(after) = page.after {
            query = query.filter(customers::id.gt(after));
        }
        super::limited(query, page.limit).load(conn).await
    }

    /// How many customers `scope` holds.
    pub async fn count(conn: &mut AsyncPgConnection, scope: CustomerScope) -> QueryResult<i64> {
        scoped(scope).count().get_result(conn).await
    }

    /// Whether the operator has a session with this customer (what lets it see the
    /// customer's card facts).
    pub async fn has_session_at(conn: &mut AsyncPgConnection, id: Uuid, operator_id: Uuid) -> QueryResult<bool> {
        diesel::select(diesel::dsl::exists(
            parking_sessions::table
                .filter(parking_sessions::customer_id.eq(id))
                .filter(parking_sessions::operator_id.eq(operator_id)),
        ))
        .get_result(conn)
        .await
    }

    /// The app's customer for `external_ref`, created (without processor facts yet) if
    /// it is new. The row comes first so its id can name the processor request.
    pub async fn upsert_ref(
        conn: &mut AsyncPgConnection,
        app_id: Uuid,
        external_ref: &str,
    ) -> QueryResult<(Customer, bool)> {
        let inserted = diesel::insert_into(customers::table)
            .values((
                customers::id.eq(Uuid::now_v7()),
                customers::app_id.eq(app_id),
                customers::external_ref.eq(external_ref),
            ))
            .on_conflict((customers::app_id, customers::external_ref))
            .do_nothing()
            .execute(conn)
            .await?;
        let customer = customers::table
            .filter(customers::app_id.eq(app_id))
            .filter(customers::external_ref.eq(external_ref))
            .select(Customer::as_select())
            .first(conn)
            .await?;
        Ok((customer, inserted == 1))
    }

    /// Records the processor's customer and card facts.
    pub async fn set_processor_card(
        conn: &mut AsyncPgConnection,
        id: Uuid,
        processor_customer_id: &str,
        card: &CardFacts,
    ) -> QueryResult<Customer> {
        diesel::update(customers::table.find(id))
            .set((
                customers::processor_customer_id.eq(processor_customer_id),
                customers::card_brand.eq(&card.brand),
                customers::card_last4.eq(&card.last4),
                customers::card_exp_month.eq(card.exp_month),
                customers::card_exp_year.eq(card.exp_year),
                customers::updated_at.eq(diesel::dsl::now),
            ))
            .returning(Customer::as_returning())
            .get_result(conn)
            .await
    }
}
