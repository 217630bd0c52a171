//! The event log: what happened, appended in the same transaction as the change, with
//! the object as the API shows it to each audience. The `events` query and
//! subscription read it; webhook deliveries are fanned out from it by a trigger in that
//! same transaction (see the `events` migration), so an emitted event always reaches
//! every endpoint subscribed at that moment.
//!
//! Emitting is one call inside the transaction, `event_log::emit(conn, Event::session(
//! EventType::SessionRefunded, &session)).await?`, and one after commit,
//! `event_log::announce(app, &emitted)` (wakes subscribers and delivery workers at once;
//! without it they still find the event on their next poll).

use serde_json::{Value, json};
use uuid::Uuid;

use crate::broker::Broker;
use crate::events::Topic;
use crate::models::events::{EventRow, NewEvent};
use crate::models::{ChargeToken, Link, ParkingSession};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

macro_rules! event_types {
    ($($variant:ident = $text:literal: $doc:literal),+ $(,)?) => {
        /// The kinds of events (the `type` of an event and of a webhook body).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum EventType {
            $(#[doc = $doc] $variant),+
        }

        impl EventType {
            /// Every event type, in the order the API lists them.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),+];

            /// The type's name (`session.charged`, …).
            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $text),+ }
            }

            /// The type this name names, if any.
            pub fn parse(raw: &str) -> Option<EventType> {
                match raw { $($text => Some(EventType::$variant),)+ _ => None }
            }
        }
    };
}

event_types! {
    SessionStarted = "session.started": "A parking session started (its charge token follows).",
    SessionDeclined = "session.declined": "A session could not start: the card was declined.",
    SessionExtended = "session.extended": "A session's authorized amount or time was extended.",
    SessionEnded = "session.ended": "A session ended with the amount owed.",
    SessionCharged = "session.charged": "A session's charge succeeded.",
    SessionPaymentFailed = "session.payment_failed": "A session's charge failed (declined).",
    SessionCanceled = "session.canceled": "A session was canceled before it was charged.",
    SessionRefunded = "session.refunded": "A session's charge was refunded (in part or whole).",
    SessionDisputed = "session.disputed": "A session's charge was disputed by the cardholder.",
    ChargeTokenIssued = "charge_token.issued": "A charge token was issued to the session's operator.",
    LinkStatusChanged = "link.status_changed": "A link between an app and an operator changed status.",
}

/// An event about to be appended.
pub struct Event {
    /// The event's type.
    pub kind: EventType,
    /// The app it concerns (it sees the event), if any.
    pub app_id: Option<Uuid>,
    /// The operator it concerns (it sees the event), if any.
    pub operator_id: Option<Uuid>,
    /// The object as the app (and admins) see it.
    pub data: Value,
    /// The operator's copy, when it differs.
    pub operator_data: Option<Value>,
}

fn session_view(session: &ParkingSession) -> Value {
    let amount = match (session.amount, &session.currency) {
        (Some(amount), Some(currency)) => json!({ "amount": amount, "currency": currency }),
        _ => Value::Null,
    };
    let balance = session.money_currency().map(|currency| {
        let money = |amount: i64| json!({ "amount": amount, "currency": currency });
        json!({
            "held": money(session.held_amount),
            "captured": money(session.captured_amount),
            "refunded": money(session.refunded_amount),
            "capturable": money((session.held_amount - session.captured_amount - session.released_amount).max(0)),
        })
    });
    let failure = session.failure_code.as_ref().map(
        |code| json!({ "code": code, "declineCode": session.failure_decline_code, "message": session.failure_message }),
    );
    json!({
        "id": session.id,
        "appId": session.app_id,
        "operatorId": session.operator_id,
        "customerId": session.customer_id,
        "linkId": session.link_id,
        "status": session.status.as_str(),
        "zone": session.zone,
        "vehiclePlate": session.vehicle_plate,
        "startedAt": session.started_at,
        "endedAt": session.ended_at,
        "amount": amount,
        "chargedAt": session.charged_at,
        "processorChargeId": session.processor_charge_id,
        "failure": failure,
        "expectedEndAt": session.expected_end_at,
        "amountSetBy": session.amount_set_by.map(|a| a.as_str()),
        "cancelReason": session.cancel_reason.map(|r| r.as_str()),
        "balance": balance,
    })
}

fn charge_token_view(token: &ChargeToken, with_value: bool) -> Value {
    json!({
        "id": token.id,
        "sessionId": token.session_id,
        "operatorId": token.operator_id,
        "status": token.status.as_str(),
        "token": if with_value { json!(token.token) } else { Value::Null },
        "issuedAt": token.issued_at,
        "expiresAt": token.expires_at,
    })
}

fn link_view(link: &Link) -> Value {
    json!({
        "id": link.id,
        "appId": link.app_id,
        "operatorId": link.operator_id,
        "status": link.status.as_str(),
        "connectedAccountId": link.connected_account_id,
        "failureReason": link.failure_reason,
        "activatedAt": link.activated_at,
        "revokedAt": link.revoked_at,
    })
}

impl Event {
    /// A `session.*` event for the session's app and operator.
    pub fn session(kind: EventType, session: &ParkingSession) -> Event {
        Event {
            kind,
            app_id: Some(session.app_id),
            operator_id: Some(session.operator_id),
            data: json!({ "session": session_view(session) }),
            operator_data: None,
        }
    }

    /// A `session.*` event carrying one more object beside the session (the refund of a
    /// `session.refunded`, the dispute of a `session.disputed`).
    pub fn session_with(kind: EventType, session: &ParkingSession, name: &str, object: Value) -> Event {
        let mut event = Event::session(kind, session);
        event.data[name] = object;
        event
    }

    /// `charge_token.issued`: the token's value only in the operator's copy.
    pub fn charge_token_issued(token: &ChargeToken, app_id: Uuid) -> Event {
        Event {
            kind: EventType::ChargeTokenIssued,
            app_id: Some(app_id),
            operator_id: Some(token.operator_id),
            data: json!({ "chargeToken": charge_token_view(token, false) }),
            operator_data: Some(json!({ "chargeToken": charge_token_view(token, true) })),
        }
    }

    /// `link.status_changed` for both parties.
    pub fn link_status_changed(link: &Link) -> Event {
        Event {
            kind: EventType::LinkStatusChanged,
            app_id: Some(link.app_id),
            operator_id: Some(link.operator_id),
            data: json!({ "link": link_view(link) }),
            operator_data: None,
        }
    }
}

/// A new event id: `evt_` and a time-ordered UUID, unique forever.
pub fn new_event_id() -> String {
    format!("evt_{}", Uuid::now_v7().simple())
}

/// The row `event` is appended as, under a new id (for a statement that writes it along
/// with its change, as issuing a charge token does).
pub fn new_row(event: Event) -> NewEvent {
    NewEvent {
        id: new_event_id(),
        type_: event.kind.as_str().to_owned(),
        app_id: event.app_id,
        operator_id: event.operator_id,
        data: event.data,
        operator_data: event.operator_data,
    }
}

/// Appends `event`; call inside the transaction of the change it describes.
pub async fn emit(conn: &mut AsyncPgConnection, event: Event) -> QueryResult<EventRow> {
    new_row(event).insert(conn).await
}

/// Appends `event` under a caller-chosen id unless an event with that id exists: for an
/// outcome that more than one request can record (the id is derived from the row that
/// caused it), so the event is appended exactly once. `None` when it already was.
pub async fn emit_once(conn: &mut AsyncPgConnection, id: String, event: Event) -> QueryResult<Option<EventRow>> {
    NewEvent {
        id,
        type_: event.kind.as_str().to_owned(),
        app_id: event.app_id,
        operator_id: event.operator_id,
        data: event.data,
        operator_data: event.operator_data,
    }
    .insert_once(conn)
    .await
}

/// After commit: wakes the event streams of the event's audience and the delivery
/// workers (on every server process).
pub fn announce(broker: &Broker, emitted: &EventRow) {
    announce_audience(broker, emitted.app_id, emitted.operator_id);
}

/// After commit: wakes the event streams of these parties and the delivery workers.
pub fn announce_audience(broker: &Broker, app_id: Option<Uuid>, operator_id: Option<Uuid>) {
    for party in [app_id, operator_id].into_iter().flatten() {
        broker.events.publish(Topic::PartyEvents(party));
    }
    broker.events.publish(Topic::AllEvents);
    broker.events.publish(Topic::Deliveries);
}

/// Prunes events older than `retention` (and webhook attempts with them), every few
/// minutes, in small batches so no statement holds locks for long.
pub fn spawn_pruner(pool: crate::db::DbPool, retention: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            tick.tick().await;
            let Ok(retention) = chrono::Duration::from_std(retention) else { return };
            let before = chrono::Utc::now() - retention;
            match prune(&pool, before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "pruned old events"),
                Err(err) => tracing::warn!(error = %format_args!("{err:#}"), "pruning old events failed"),
            }
        }
    });
}

/// Deletes events created before `before`, their deliveries and attempts.
pub async fn prune(pool: &crate::db::DbPool, before: chrono::DateTime<chrono::Utc>) -> anyhow::Result<usize> {
    let mut conn = pool.get().await?;
    let mut total = 0;
    loop {
        let n = EventRow::prune(&mut conn, before, 1000).await?;
        total += n;
        if n < 1000 {
            break;
        }
    }
    crate::models::webhooks::Attempt::prune(&mut conn, before).await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(EventType::ALL.len(), 11);
        assert_eq!(EventType::parse("session.unknown"), None);
    }
}
