//! Subscription roots. Streams read the durable tables from a cursor and sleep until
//! the event hub wakes them (see `events`), so a subscriber that reconnects with its
//! last cursor misses nothing, and each event wakes only the subscribers it is for.
//! A subscription ends when the caller's JWT expires.
//!
//! Streams read from the primary (`App::db`), never from the read replica: a wake-up
//! follows a commit on the primary, which a replica may not have replayed yet, and a
//! catch-up read there would find nothing new and sleep past the event. The events'
//! fields resolve on the primary too (`graphql::freshness`).

use async_graphql::{Context, MergedSubscription, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use std::time::Duration;
use uuid::Uuid;

use super::types::{ChargeToken, Link, LinkStatus};
use super::{broker, principal};
use crate::broker::BrokerState;
use crate::error::{ApiError, ApiResult};
use crate::events::Topic;
use crate::models::link_events::LinkEventScope;
use crate::models::{self, LinkEvent, Operator};
use crate::payments::policy;

/// Rows read per catch-up query.
const BATCH: i64 = 100;
/// Pause before retrying after the database failed a read.
const RETRY: Duration = Duration::from_secs(1);

/// Live streams over a GraphQL WebSocket (`graphql-transport-ws`, or the older
/// `graphql-ws`). Each stream can resume: pass the `cursor` of the last event received
/// as `after` when reconnecting and nothing is missed. A stream ends when the token that opened it expires.
#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(TokenSubscription, LinkSubscription, super::events::EventsSubscription);

/// A charge token delivered to its operator.
#[derive(SimpleObject)]
pub struct ChargeTokenEvent {
    /// Pass as `after` when reconnecting to resume right after this event.
    pub cursor: String,
    /// The token, with its value.
    pub charge_token: ChargeToken,
}

/// A change of a link's status.
#[derive(SimpleObject)]
pub struct LinkStatusChange {
    /// Pass as `after` when reconnecting to resume right after this event.
    pub cursor: String,
    /// The status the link changed to.
    pub status: LinkStatus,
    /// When it changed.
    pub occurred_at: DateTime<Utc>,
    /// The link as it is now.
    pub link: Link,
}

/// Runs one database read in a future of its own on the heap. A stream holds its state
/// for as long as the subscription lives, and almost all of that time it waits for a
/// wake-up; a query's future awaited in place would size that state for the query
/// (kilobytes per subscriber). Boxed, the query's state exists only while it runs.
pub(crate) fn boxed_read<'a, T, F>(read: F) -> BoxFuture<'a, ApiResult<T>>
where
    F: Future<Output = ApiResult<T>> + Send + 'a,
{
    Box::pin(read)
}

fn parse_cursor(after: Option<String>) -> ApiResult<Option<i64>> {
    after
        .map(|raw| raw.trim().parse::<i64>().ok().filter(|c| *c >= 0))
        .map(|parsed| parsed.ok_or_else(|| ApiError::bad_input("after is not a cursor from this subscription")))
        .transpose()
}

/// Ends the stream when the token that opened it expires; a token already past its
/// expiry gets no events at all.
pub(crate) fn until_expiry<S>(stream: S, expires_at: DateTime<Utc>) -> impl Stream<Item = S::Item> + Send
where
    S: Stream + Send,
    S::Item: Send,
{
    use futures_util::future::Either;
    match (expires_at - Utc::now()).to_std().ok().filter(|d| !d.is_zero()) {
        Some(remaining) => Either::Left(stream.take_until(tokio::time::sleep(remaining))),
        None => Either::Right(futures_util::stream::empty()),
    }
}

/// The charge token stream, merged into `Subscription`.
#[derive(Default)]
pub struct TokenSubscription;

#[Subscription]
impl TokenSubscription {
    /// Charge tokens issued to the calling operator, in order. With `after` (a cursor
    /// from an earlier event), first replays every token issued after it, then streams
    /// new ones; without it, starts with the next token issued. Role operator.
    async fn charge_token_issued(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The `cursor` of the last event received: replay every token issued \
                          after it first; omitted: only tokens issued from now on.")]
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = ChargeTokenEvent>> {
        let viewer = principal(ctx)?;
        let operator_id = policy::require_operator(viewer)?;
        let broker: BrokerState = broker(ctx).clone();
        let mut cursor = match parse_cursor(after)? {
            Some(cursor) => cursor,
            None => {
                boxed_read(async {
                    let mut conn = broker.db().await?;
                    Operator::last_token_cursor(&mut conn, operator_id).await.map_err(ApiError::from)
                })
                .await?
            }
        };
        let mut wake = broker.events.subscribe(Topic::OperatorTokens(operator_id));
        let stream = async_stream::stream! {
            let _active = crate::metrics::GaugeGuard::subscription("chargeTokenIssued");
            loop {
                wake.mark_seen();
                match read_tokens(&broker, operator_id, cursor).await {
                    Ok(rows) => {
                        let full = rows.len() as i64 == BATCH;
                        for row in rows {
                            cursor = row.cursor.unwrap_or(cursor);
                            crate::metrics::charge_token_delivered(
                                row.issued_at.and_then(|at| (Utc::now() - at).to_std().ok()),
                            );
                            yield ChargeTokenEvent { cursor: cursor.to_string(), charge_token: ChargeToken(row) };
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%operator_id, error = %err, "charge token stream read failed; retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                }
                wake.changed().await;
            }
        };
        Ok(until_expiry(stream, viewer.expires_at))
    }
}

/// The operator's tokens after `cursor`, at most a batch.
fn read_tokens(
    broker: &BrokerState,
    operator_id: Uuid,
    cursor: i64,
) -> BoxFuture<'_, ApiResult<Vec<models::ChargeToken>>> {
    boxed_read(async move {
        let mut conn = broker.db().await?;
        models::ChargeToken::delivered_after(&mut conn, operator_id, cursor, BATCH).await.map_err(ApiError::from)
    })
}

/// The link status stream, merged into `Subscription`.
#[derive(Default)]
pub struct LinkSubscription;

#[Subscription]
impl LinkSubscription {
    /// Status changes of the caller's links (an app's or an operator's own; admins:
    /// all). With `after`, first replays the changes after that cursor.
    async fn link_status_changed(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The `cursor` of the last event received: replay every change after \
                          it first; omitted: only changes from now on.")]
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = LinkStatusChange>> {
        let viewer = principal(ctx)?;
        let scope = policy::link_event_scope(viewer);
        let topic = match scope {
            LinkEventScope::All => Topic::AllLinks,
            LinkEventScope::App(id) | LinkEventScope::Operator(id) => Topic::PartyLinks(id),
        };
        let broker: BrokerState = broker(ctx).clone();
        let mut cursor = match parse_cursor(after)? {
            Some(cursor) => cursor,
            None => {
                boxed_read(async {
                    let mut conn = broker.db().await?;
                    LinkEvent::last_seq(&mut conn).await.map_err(ApiError::from)
                })
                .await?
            }
        };
        let mut wake = broker.events.subscribe(topic);
        let stream = async_stream::stream! {
            let _active = crate::metrics::GaugeGuard::subscription("linkStatusChanged");
            loop {
                wake.mark_seen();
                let read = boxed_read(async {
                    let mut conn = broker.db().await?;
                    let events = LinkEvent::after(&mut conn, scope, cursor, BATCH).await?;
                    let ids: Vec<_> = events.iter().map(|e| e.link_id).collect();
                    let links = models::Link::find_many(&mut conn, &ids).await?;
                    Ok::<_, ApiError>((events, links))
                });
                match read.await {
                    Ok((events, links)) => {
                        let full = events.len() as i64 == BATCH;
                        for event in events {
                            cursor = event.seq;
                            let Some(link) = links.iter().find(|l| l.id == event.link_id).cloned() else { continue };
                            yield LinkStatusChange {
                                cursor: cursor.to_string(),
                                status: event.status.into(),
                                occurred_at: event.occurred_at,
                                link: Link::new(link),
                            };
                        }
                        if full {
                            continue;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "link status stream read failed; retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                }
                wake.changed().await;
            }
        };
        Ok(until_expiry(stream, viewer.expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cursor;

    #[test]
    fn cursors() {
        assert_eq!(parse_cursor(None).unwrap(), None);
        assert_eq!(parse_cursor(Some("42".into())).unwrap(), Some(42));
        assert!(parse_cursor(Some("-1".into())).is_err());
        assert!(parse_cursor(Some("abc".into())).is_err());
    }
}
