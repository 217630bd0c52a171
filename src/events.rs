//! Live delivery plumbing. The tables (`charge_tokens`, `link_events`) are the source
//! of truth; this module only wakes the subscribers an event is for.
//!
//! After a transaction commits, the writer calls [`EventHub::publish`]. Local
//! subscribers of that topic wake at once, and the topic is sent (coalesced, outside any
//! payment transaction) through Postgres `NOTIFY`, so subscribers connected to other
//! server processes on the same database wake too. Each process keeps one `LISTEN`
//! connection; when it has to reconnect, every local subscriber is woken to catch up
//! from the tables, so nothing missed while it was away is lost.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::db::DbPool;

const CHANNEL: &str = "curbpay_events";

/// How many times the notifier tries to send one batch.
const SEND_ATTEMPTS: usize = 5;

/// The notifier's pauses between attempts: 50 ms, doubling.
fn send_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_factor(2.0)
        .with_max_times(SEND_ATTEMPTS - 1)
}

/// The listener's reconnects: 100 ms, doubling up to 5 s, for as long as it takes.
fn reconnect_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .without_max_times()
}

/// What a subscriber waits on. Events are routed by topic, so a delivery only wakes the
/// subscribers it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Charge tokens issued to this operator.
    OperatorTokens(Uuid),
    /// Link changes seen by this app or operator (one topic per party).
    PartyLinks(Uuid),
    /// Every link change (admins).
    AllLinks,
    /// Event log entries whose audience includes this app or operator.
    PartyEvents(Uuid),
    /// Every event log entry (admins).
    AllEvents,
    /// Webhook deliveries became due (delivery workers).
    Deliveries,
}

impl Topic {
    fn encode(self) -> String {
        match self {
            Topic::OperatorTokens(id) => format!("t:{id}"),
            Topic::PartyLinks(id) => format!("l:{id}"),
            Topic::AllLinks => "l:*".to_owned(),
            Topic::PartyEvents(id) => format!("e:{id}"),
            Topic::AllEvents => "e:*".to_owned(),
            Topic::Deliveries => "d:".to_owned(),
        }
    }

    fn decode(raw: &str) -> Option<Topic> {
        match raw.split_once(':')? {
            ("t", id) => id.parse().ok().map(Topic::OperatorTokens),
            ("l", "*") => Some(Topic::AllLinks),
            ("l", id) => id.parse().ok().map(Topic::PartyLinks),
            ("e", "*") => Some(Topic::AllEvents),
            ("e", id) => id.parse().ok().map(Topic::PartyEvents),
            ("d", "") => Some(Topic::Deliveries),
            _ => None,
        }
    }
}

/// The process's wake-up hub: a watch channel per topic with subscribers, the `NOTIFY`
/// sender and the `LISTEN` connection. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

struct Inner {
    topics: Mutex<HashMap<Topic, watch::Sender<()>>>,
    /// Whether the LISTEN connection is up (for `/ready`).
    listening: AtomicBool,
    outbox: mpsc::UnboundedSender<Outgoing>,
}

/// What the notifier is handed: a topic to announce, or a request to report once everything
/// queued before it has been sent.
enum Outgoing {
    Topic(Topic),
    Flush(oneshot::Sender<()>),
}

/// A subscriber's wake-up handle. Dropping it unregisters the topic when it was the
/// last one listening.
pub struct Subscription {
    topic: Topic,
    rx: watch::Receiver<()>,
    hub: EventHub,
}

impl Subscription {
    /// Marks everything so far as seen. Call before reading the table, so a wake that
    /// arrives during the read is not lost.
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }

    /// Waits for the next wake-up.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The hub dropped the sender (cannot happen while we hold the hub); wait forever
            // rather than spin.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut topics = self.hub.inner.topics.lock().expect("event hub lock");
        if let Some(tx) = topics.get(&self.topic) {
            // Our receiver is still alive while this runs, hence `<= 1`.
            if tx.receiver_count() <= 1 {
                topics.remove(&self.topic);
            }
        }
    }
}

impl EventHub {
    /// Starts the hub: a notifier task that sends `NOTIFY`s, and a listener task that
    /// receives them (from every server process on the database).
    /// `listen_url` is where the LISTEN connection goes (Postgres itself, never a
    /// transaction pooler); the listener stops once `stopping` turns true.
    pub fn start(pool: DbPool, listen_url: String, stopping: watch::Receiver<bool>) -> EventHub {
        let (outbox, rx) = mpsc::unbounded_channel();
        let hub = EventHub {
            inner: Arc::new(Inner { topics: Mutex::new(HashMap::new()), listening: AtomicBool::new(false), outbox }),
        };
        tokio::spawn(notifier(pool, rx));
        tokio::spawn(listen_until_stopped(hub.clone(), listen_url, stopping));
        hub
    }

    /// Whether the LISTEN connection is up: wake-ups from other processes arrive.
    pub fn is_listening(&self) -> bool {
        AtomicBool::load(&self.inner.listening, Ordering::Relaxed)
    }

    fn set_listening(&self, up: bool, reconnected: bool) {
        self.inner.listening.store(up, Ordering::Relaxed);
        crate::metrics::listen_state(up, reconnected);
    }

    /// Registers a subscriber of `topic`. Call [`Subscription::mark_seen`] before the
    /// first read of the table, then wait on [`Subscription::changed`].
    pub fn subscribe(&self, topic: Topic) -> Subscription {
        let mut topics = self.inner.topics.lock().expect("event hub lock");
        let rx = topics.entry(topic).or_insert_with(|| watch::channel(()).0).subscribe();
        Subscription { topic, rx, hub: self.clone() }
    }

    /// Announces a committed change. Never call inside a transaction.
    pub fn publish(&self, topic: Topic) {
        self.wake(topic);
        // The notifier only stops when the runtime does; nothing to do then.
        let _ = self.inner.outbox.send(Outgoing::Topic(topic));
    }

    /// Waits until every topic published so far has been sent to the other processes (or
    /// given up on after the notifier's retries). A stopping process calls it once its
    /// requests have drained: a change committed just before exit must still wake the
    /// subscribers on the other processes, who would otherwise see it only with the next
    /// event for them.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.inner.outbox.send(Outgoing::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }

    fn wake(&self, topic: Topic) {
        let topics = self.inner.topics.lock().expect("event hub lock");
        if let Some(tx) = topics.get(&topic) {
            tx.send_replace(());
        }
    }

    fn wake_all(&self) {
        let topics = self.inner.topics.lock().expect("event hub lock");
        for tx in topics.values() {
            tx.send_replace(());
        }
    }

    /// Number of topics with live GraphQL subscribers (for tests and metrics); the
    /// delivery worker's own topic is not counted.
    pub fn active_topics(&self) -> usize {
        self.inner.topics.lock().expect("event hub lock").keys().filter(|t| **t != Topic::Deliveries).count()
    }
}

/// Sends queued topics as `NOTIFY`s, one statement per batch with duplicates merged; answers
/// a flush once the batch it arrived with is sent.
async fn notifier(pool: DbPool, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(first) = rx.recv().await {
        let (mut batch, mut flushes) = (HashSet::new(), Vec::new());
        let mut next = Some(first);
        while let Some(outgoing) = next {
            match outgoing {
                Outgoing::Topic(topic) => drop(batch.insert(topic.encode())),
                Outgoing::Flush(done) => flushes.push(done),
            }
            next = rx.try_recv().ok();
        }
        send(&pool, batch).await;
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// One `NOTIFY` per payload in one statement, retried a few times.
async fn send(pool: &DbPool, batch: HashSet<String>) {
    if batch.is_empty() {
        return;
    }
    let payloads: Vec<String> = batch.into_iter().collect();
    let payloads = &payloads;
    let send_once = move || async move {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        diesel::sql_query(format!("SELECT pg_notify('{CHANNEL}', t) FROM unnest($1::text[]) AS t"))
            .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(payloads)
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    let sent = send_once
        .retry(send_backoff())
        // Subscribers on this process were already woken; others catch up when their
        // listener reconnects or the next event for them arrives.
        .notify({
            let mut attempt = 0;
            move |err: &String, _| {
                attempt += 1;
                tracing::warn!(attempt, error = %err, "could not send event notifications");
            }
        })
        .await;
    if let Err(err) = sent {
        tracing::warn!(attempt = SEND_ATTEMPTS, error = %err, "could not send event notifications");
    }
}

/// Runs the listener until the process stops; the connection closes at a safe point
/// (between notifications: everything is in the tables anyway).
async fn listen_until_stopped(hub: EventHub, database_url: String, mut stopping: watch::Receiver<bool>) {
    tokio::select! {
        () = listener(hub.clone(), database_url) => {}
        _ = stopping.wait_for(|stop| *stop) => tracing::debug!("event listener stopped"),
    }
    hub.set_listening(false, false);
}

/// Keeps a `LISTEN` connection and wakes local subscribers for every notification.
async fn listener(hub: EventHub, database_url: String) {
    let mut backoff = reconnect_backoff().build();
    let mut first = true;
    loop {
        match AsyncPgConnection::establish(&database_url).await {
            Ok(mut conn) => match diesel::sql_query(format!("LISTEN {CHANNEL}")).execute(&mut conn).await {
                Ok(_) => {
                    hub.set_listening(true, !first);
                    if !first {
                        tracing::info!("event listener reconnected; waking subscribers to catch up");
                        hub.wake_all();
                    }
                    // A good connection starts the next reconnect from the shortest delay.
                    backoff = reconnect_backoff().build();
                    let mut notifications = std::pin::pin!(conn.notifications_stream());
                    while let Some(next) = notifications.next().await {
                        match next {
                            Ok(note) => match Topic::decode(&note.payload) {
                                Some(topic) => hub.wake(topic),
                                None => tracing::warn!(payload = %note.payload, "ignoring unknown event topic"),
                            },
                            Err(err) => {
                                tracing::warn!(error = %err, "event listener connection failed");
                                break;
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "LISTEN failed"),
            },
            Err(err) => tracing::warn!(error = %err, "event listener cannot connect"),
        }
        // The stream ended: the connection is gone. Everything committed meanwhile is in
        // the tables; subscribers are woken once we are back.
        hub.set_listening(false, false);
        first = false;
        // Unbounded retries: the iterator never ends.
        tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(5))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let id = Uuid::now_v7();
        for topic in [
            Topic::OperatorTokens(id),
            Topic::PartyLinks(id),
            Topic::AllLinks,
            Topic::PartyEvents(id),
            Topic::AllEvents,
            Topic::Deliveries,
        ] {
            assert_eq!(Topic::decode(&topic.encode()), Some(topic));
        }
        assert_eq!(Topic::decode("x:1"), None);
        assert_eq!(Topic::decode("t:not-a-uuid"), None);
    }

    #[test]
    fn backoff_delays() {
        let ms = |delays: Vec<Duration>| delays.into_iter().map(|d| d.as_millis()).collect::<Vec<_>>();
        assert_eq!(ms(send_backoff().build().collect()), [50, 100, 200, 400]);
        assert_eq!(
            ms(reconnect_backoff().build().take(9).collect()),
            [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
        );
    }
}
