//! Rows and queries, one file per table. Functions here return `QueryResult` and know
//! nothing of GraphQL or HTTP; every allowed change to a row is a named function.

pub mod apps;
pub mod charge_tokens;
pub mod customers;
pub mod events;
pub mod link_events;
pub mod links;
pub mod operators;
pub mod parking_sessions;
pub mod payments;
pub mod refunds;
pub mod webhook_events;
pub mod webhooks;

pub use apps::App;
pub use charge_tokens::{ChargeToken, ChargeTokenStatus};
pub use customers::Customer;
pub use link_events::LinkEvent;
pub use links::{Link, LinkStatus};
pub use operators::Operator;
pub use parking_sessions::{AmountSetBy, CancelReason, ParkingSession, SessionStatus};
pub use payments::{NewPayment, Payment, PaymentKind, PaymentStatus, Settlement};
pub use refunds::{Refund, RefundReason};

/// A page request: rows after `after` (by id, which is time-ordered), at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Only rows with an id greater than this (the cursor of the previous page).
    pub after: Option<uuid::Uuid>,
    /// At most this many rows (the page size plus one, to learn whether more follow).
    pub limit: i64,
}

/// `query LIMIT n`, with `n` written into the statement's text rather than bound.
/// Postgres plans a prepared statement with a bound `LIMIT` anew on every run (its
/// generic plan assumes a tenth of the rows, so it never wins); with the number in the
/// text, the statement (one per page size, cached by its text) is planned once per
/// connection. `query` must end where a `LIMIT` may follow (after its `ORDER BY`, with
/// no `LIMIT` or locking clause of its own).
#[derive(Debug, Clone)]
pub struct Limited<Q> {
    query: Q,
    limit: i64,
}

/// `query` limited to `limit` rows (see [`Limited`]).
pub fn limited<Q>(query: Q, limit: i64) -> Limited<Q> {
    Limited { query, limit }
}

// The text depends on `limit`: statements must be cached by their text, never by type.
impl<Q> diesel::query_builder::QueryId for Limited<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for Limited<Q> {
    type SqlType = Q::SqlType;
}

impl<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>> diesel::query_builder::QueryFragment<diesel::pg::Pg>
    for Limited<Q>
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        self.query.walk_ast(out.reborrow())?;
        out.push_sql(" LIMIT ");
        out.push_sql(&self.limit.to_string());
        Ok(())
    }
}

/// Defines a status enum stored as `text` (the values match the CHECK constraints in
/// the migrations), with conversions both ways.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
        #[diesel(sql_type = diesel::sql_types::Text)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The value as stored (and as the CHECK constraint spells it).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg>>::to_sql(self.as_str(), out)
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = <String as diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg>>::from_sql(bytes)?;
                text.parse().map_err(Into::into)
            }
        }
    };
}
pub(crate) use text_enum;
