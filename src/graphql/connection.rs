//! Relay connections: `first`/`after` paging over time-ordered ids, capped at
//! `MAX_PAGE_SIZE`, with a `totalCount` that is only counted when asked for.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Object, OutputType};
use uuid::Uuid;

use super::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::error::{ApiError, ApiResult};
use crate::models::apps::AppScope;
use crate::models::customers::CustomerScope;
use crate::models::links::LinkFilter;
use crate::models::parking_sessions::SessionFilter;
use crate::models::{self, Page};

/// What `totalCount` counts.
#[derive(Clone, Copy)]
pub enum CountQuery {
    Apps(AppScope),
    Operators,
    Links(LinkFilter),
    Customers(CustomerScope),
    Sessions(SessionFilter),
    /// A list known to be empty (the caller may see nothing in it).
    Nothing,
}

/// Extra fields of every connection.
pub struct Counted(pub CountQuery);

#[Object]
impl Counted {
    /// The number of items in the whole list (all pages), for the same filters.
    #[graphql(complexity = "crate::graphql::STATEMENT_COST")]
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i32> {
        let mut conn = super::read_db(ctx).await?;
        let n = match self.0 {
            CountQuery::Apps(scope) => models::App::count(&mut conn, scope).await?,
            CountQuery::Operators => models::Operator::count(&mut conn).await?,
            CountQuery::Links(filter) => models::Link::count(&mut conn, filter).await?,
            CountQuery::Customers(scope) => models::Customer::count(&mut conn, scope).await?,
            CountQuery::Sessions(filter) => models::ParkingSession::count(&mut conn, filter).await?,
            CountQuery::Nothing => 0,
        };
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }
}

pub type Conn<N> = Connection<String, N, Counted>;

/// Checks `first` and `after`; fetches one row more than the page to learn whether
/// another page follows.
pub fn page(first: Option<i32>, after: Option<&str>) -> ApiResult<Page> {
    let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(0..=MAX_PAGE_SIZE).contains(&first) {
        return Err(ApiError::bad_input(format!("first must be between 0 and {MAX_PAGE_SIZE}")));
    }
    let after = after
        .map(|cursor| Uuid::parse_str(cursor).map_err(|_| ApiError::bad_input("after is not a cursor from this list")))
        .transpose()?;
    Ok(Page { after, limit: i64::from(first) + 1 })
}

/// Builds the connection from rows fetched with `page`.
pub fn build<R, N: OutputType>(
    mut rows: Vec<R>,
    page: Page,
    id: impl Fn(&R) -> Uuid,
    node: impl Fn(R) -> N,
    count: CountQuery,
) -> Conn<N> {
    let has_next = rows.len() as i64 >= page.limit;
    rows.truncate((page.limit - 1).max(0) as usize);
    let mut connection = Connection::with_additional_fields(page.after.is_some(), has_next, Counted(count));
    connection.edges.extend(rows.into_iter().map(|row| Edge::new(id(&row).to_string(), node(row))));
    connection
}

/// An empty connection (for a list the caller may not see into).
pub fn empty<N: OutputType>() -> Conn<N> {
    Connection::with_additional_fields(false, false, Counted(CountQuery::Nothing))
}
