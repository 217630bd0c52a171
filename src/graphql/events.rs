//! The event log over GraphQL: the `events` query (a Relay connection, oldest first)
//! and the `events` subscription (replay after a cursor, then live). Both read the
//! durable `events` table in `(tx, seq)` order, so a cursor from either resumes the
//! other with no gap and no duplicate.

use std::time::Duration;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Json, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::Stream;

use super::subscriptions::boxed_read;
use super::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, broker, principal};
use crate::broker::BrokerState;
use crate::error::{ApiError, ApiResult};
use crate::events::Topic;
use crate::models::events::{EventCursor, EventRow, EventScope};
use crate::payments::event_log::EventType;
use crate::payments::policy;

/// Rows read per catch-up query.
const BATCH: i64 = 100;
/// After a wake-up, look again this soon: an event whose transaction committed while
/// an older transaction was still running becomes readable only once that one ends.
const RECHECK: Duration = Duration::from_millis(200);
/// Idle streams look at the table this often even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Pause before retrying after the database failed a read.
const RETRY: Duration = Duration::from_secs(1);

/// An event row and the audience it is shown to.
pub struct Event {
    row: EventRow,
    scope: EventScope,
}

/// Something that happened to an object the viewer may see (a parking session, a
/// charge token, a link), as the viewer is allowed to see it. The same events are
/// delivered to the viewer's webhook endpoints.
#[Object]
impl Event {
    /// The event's id (`evt_…`): the same in the API and in webhook deliveries
    /// (`webhook-id`), unique forever.
    async fn id(&self) -> ID {
        ID(self.row.id.clone())
    }
    /// The event type, e.g. `session.charged` (see `eventTypes`).
    #[graphql(name = "type")]
    async fn type_(&self) -> &str {
        &self.row.type_
    }
    /// When the change happened.
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }
    /// The object the event is about, as the API shows it to the viewer (a charge
    /// token's value only to its operator).
    async fn data(&self) -> Json<serde_json::Value> {
        Json(self.row.data_for(self.scope).clone())
    }
}

/// One event of the `events` subscription.
#[derive(SimpleObject)]
pub struct EventNotification {
    /// Pass as `after` (to the subscription or the `events` query) to resume right
    /// after this event.
    pub cursor: String,
    /// The event itself.
    pub event: Event,
}

/// A log position as a cursor: `tx:seq`.
pub fn encode_cursor(cursor: EventCursor) -> String {
    format!("{}:{}", cursor.tx, cursor.seq)
}

/// Reads a cursor made by [`encode_cursor`]; anything else is BAD_USER_INPUT.
pub fn parse_cursor(raw: &str) -> ApiResult<EventCursor> {
    let bad = || ApiError::bad_input("after is not a cursor of the event log");
    let (tx, seq) = raw.trim().split_once(':').ok_or_else(bad)?;
    let cursor = EventCursor { tx: tx.parse().map_err(|_| bad())?, seq: seq.parse().map_err(|_| bad())? };
    if cursor.tx < 0 || cursor.seq < 0 {
        return Err(bad());
    }
    Ok(cursor)
}

/// Checks a `types` filter: every name must be an event type.
pub fn parse_types(types: Option<Vec<String>>) -> ApiResult<Option<Vec<String>>> {
    let Some(types) = types else { return Ok(None) };
    for name in &types {
        if EventType::parse(name).is_none() {
            return Err(ApiError::bad_input(format!("unknown event type {name:?}")));
        }
    }
    Ok(Some(types))
}

/// The event log queries, merged into `Query`.
#[derive(Default)]
pub struct EventsQuery;

#[Object]
impl EventsQuery {
    /// The caller's events (an app's or an operator's own; admins: all), oldest first,
    /// after the cursor `after`; `types` keeps only those types. Events are kept for
    /// `CURBPAY_EVENT_RETENTION` (30 days by default).
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The page size: 0 to 100, 20 when omitted.")] first: Option<i32>,
        #[graphql(desc = "A cursor from this query (`endCursor`) or the `events` subscription; \
                          omitted: from the oldest event kept.")]
        after: Option<String>,
        #[graphql(desc = "Event types to keep (names from `eventTypes`); omitted: every type.")] types: Option<
            Vec<String>,
        >,
    ) -> async_graphql::Result<Connection<String, Event>> {
        let viewer = principal(ctx)?;
        let scope = policy::event_scope(viewer);
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(ApiError::bad_input(format!("first must be between 0 and {MAX_PAGE_SIZE}")).into());
        }
        let cursor = after.as_deref().map(parse_cursor).transpose()?;
        let types = parse_types(types)?;
        let mut conn = super::read_db(ctx).await?;
        let mut rows =
            EventRow::after(&mut conn, scope, types.as_deref(), cursor.unwrap_or_default(), i64::from(first) + 1)
                .await
                .map_err(ApiError::from)?;
        let has_next = rows.len() > first as usize;
        rows.truncate(first as usize);
        let mut connection = Connection::new(cursor.is_some(), has_next);
        connection
            .edges
            .extend(rows.into_iter().map(|row| Edge::new(encode_cursor(row.cursor()), Event { row, scope })));
        Ok(connection)
    }

    /// Every event type there is.
    async fn event_types(&self) -> Vec<&'static str> {
        EventType::ALL.iter().map(|t| t.as_str()).collect()
    }
}

/// The event log subscription, merged into `Subscription`.
#[derive(Default)]
pub struct EventsSubscription;

#[Subscription]
impl EventsSubscription {
    /// The caller's events, in log order (apps, operators and admins; each sees its
    /// own, admins all). With `after` (a cursor from this subscription or the `events`
    /// query) it first replays every event after it, then streams new ones; without it,
    /// starts with the next event. `types` keeps only those types.
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A cursor from this subscription or the `events` query: replay every \
                          event after it first; omitted: only events from now on.")]
        after: Option<String>,
        #[graphql(desc = "Event types to keep (names from `eventTypes`); omitted: every type.")] types: Option<
            Vec<String>,
        >,
    ) -> async_graphql::Result<impl Stream<Item = EventNotification>> {
        let viewer = principal(ctx)?;
        let scope = policy::event_scope(viewer);
        let topic = match scope {
            EventScope::All => Topic::AllEvents,
            EventScope::App(id) | EventScope::Operator(id) => Topic::PartyEvents(id),
        };
        let types = parse_types(types)?;
        let broker: BrokerState = broker(ctx).clone();
        // On the primary, as every subscription reads (see `subscriptions`).
        let mut cursor = match after.as_deref().map(parse_cursor).transpose()? {
            Some(cursor) => cursor,
            None => {
                boxed_read(async {
                    let mut conn = broker.db().await?;
                    EventRow::head(&mut conn).await.map_err(ApiError::from)
                })
                .await?
            }
        };
        let mut wake = broker.events.subscribe(topic);
        let stream = async_stream::stream! {
            // How many quick re-reads are left since the last wake-up.
            let mut rechecks = 0u32;
            loop {
                wake.mark_seen();
                let rows = boxed_read(async {
                    let mut conn = broker.db().await?;
                    EventRow::after(&mut conn, scope, types.as_deref(), cursor, BATCH).await.map_err(ApiError::from)
                });
                match rows.await {
                    Ok(rows) => {
                        let full = rows.len() as i64 == BATCH;
                        for row in rows {
                            cursor = row.cursor();
                            yield EventNotification { cursor: encode_cursor(cursor), event: Event { row, scope } };
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "event stream read failed; retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                }
                let wait = if rechecks > 0 {
                    rechecks -= 1;
                    RECHECK
                } else {
                    IDLE_POLL
                };
                if tokio::time::timeout(wait, wake.changed()).await.is_ok() {
                    rechecks = 3;
                }
            }
        };
        Ok(super::subscriptions::until_expiry(stream, viewer.expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let cursor = EventCursor { tx: 812, seq: 44 };
        assert_eq!(parse_cursor(&encode_cursor(cursor)).unwrap(), cursor);
        for bad in ["", "12", "a:b", "-1:2", "1:-2", "1:2:3"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn types_are_checked() {
        assert_eq!(parse_types(None).unwrap(), None);
        assert!(parse_types(Some(vec!["session.charged".into()])).is_ok());
        assert!(parse_types(Some(vec!["session.exploded".into()])).is_err());
    }
}
