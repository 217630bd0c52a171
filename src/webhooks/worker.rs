//! The delivery worker, one per server process. It claims due deliveries with
//! `FOR UPDATE SKIP LOCKED` under a lease (so N processes deliver each once, and a
//! crashed process's claims lapse and are retried), sends them with at most
//! `endpoint_concurrency` in flight per endpoint and `concurrency` in all, and records
//! each attempt. It never runs inside an API request: emitters only append events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel_async::AsyncConnection;
use rand::Rng;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{client, sign};
use crate::broker::BrokerState;
use crate::events::Topic;
use crate::models::events::{EventRow, EventScope};
use crate::models::webhooks::{self, Attempt, Claimed, DeliveryStatus, Endpoint, EndpointStatus};

/// Response bytes read (and kept for the owner) per attempt.
const BODY_CAP: usize = 1024;
/// Longest idle wait between looks at the table.
const IDLE_POLL: Duration = Duration::from_secs(1);

struct InFlight {
    per_endpoint: Mutex<HashMap<Uuid, i32>>,
    done: Notify,
}

impl InFlight {
    fn total(&self) -> usize {
        self.per_endpoint.lock().expect("in-flight lock").values().map(|n| *n as usize).sum()
    }
    fn snapshot(&self) -> Vec<(Uuid, i32)> {
        self.per_endpoint.lock().expect("in-flight lock").iter().map(|(k, v)| (*k, *v)).collect()
    }
    fn add(&self, endpoint: Uuid) {
        *self.per_endpoint.lock().expect("in-flight lock").entry(endpoint).or_default() += 1;
    }
    fn remove(&self, endpoint: Uuid) {
        let mut map = self.per_endpoint.lock().expect("in-flight lock");
        if let Some(n) = map.get_mut(&endpoint) {
            *n -= 1;
            if *n <= 0 {
                map.remove(&endpoint);
            }
        }
        drop(map);
        self.done.notify_one();
    }
}

/// Starts the worker (when `CURBPAY_WEBHOOK_WORKER` is on).
pub fn start(broker: BrokerState) -> anyhow::Result<()> {
    if !broker.config.events.worker {
        return Ok(());
    }
    let http = client::build(broker.config.events.allow_private, broker.config.events.timeout)?;
    tokio::spawn(run(broker, http));
    Ok(())
}

async fn run(broker: BrokerState, http: reqwest::Client) {
    let settings = broker.config.events.clone();
    let lease = settings.timeout * 2 + Duration::from_secs(5);
    let in_flight = Arc::new(InFlight { per_endpoint: Mutex::new(HashMap::new()), done: Notify::new() });
    let mut wake = broker.events.subscribe(Topic::Deliveries);
    loop {
        wake.mark_seen();
        let room = settings.concurrency.saturating_sub(in_flight.total());
        let mut claimed = Vec::new();
        if room > 0 {
            let busy = in_flight.snapshot();
            let result = async {
                let mut conn = broker.db().await?;
                // Every event wakes the worker, most of them with nothing to deliver.
                if !webhooks::any_due(&mut conn).await? {
                    return Ok(Vec::new());
                }
                Ok::<_, crate::error::ApiError>(
                    webhooks::claim_due(&mut conn, &busy, settings.endpoint_concurrency as i32, room as i64, lease)
                        .await?,
                )
            }
            .await;
            match result {
                Ok(rows) => claimed = rows,
                Err(err) => {
                    tracing::warn!(error = %crate::error::ErrorChain(&err), "claiming webhook deliveries failed; retrying");
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
            }
        }
        let full = !claimed.is_empty() && claimed.len() == room;
        for delivery in claimed {
            in_flight.add(delivery.endpoint_id);
            let (app, http, in_flight) = (broker.clone(), http.clone(), in_flight.clone());
            tokio::spawn(async move {
                let endpoint_id = delivery.endpoint_id;
                if let Err(err) = deliver(&app, &http, delivery).await {
                    tracing::warn!(%endpoint_id, error = %err, "recording a webhook attempt failed; its lease will lapse and it is retried");
                }
                in_flight.remove(endpoint_id);
            });
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = wake.changed() => {}
            _ = in_flight.done.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

/// The delay before attempt `next` (1-based), with up to 10% jitter.
pub fn delay_before(schedule: &[Duration], next: usize) -> Option<Duration> {
    let base = *schedule.get(next.checked_sub(1)?)?;
    let jitter = rand::rng().random_range(0.0..0.1);
    Some(base.mul_f64(1.0 + jitter))
}

struct Outcome {
    succeeded: bool,
    http_status: Option<u16>,
    error: Option<String>,
}

async fn deliver(broker: &BrokerState, http: &reqwest::Client, delivery: Claimed) -> anyhow::Result<()> {
    let mut conn = broker.db().await?;
    let endpoint = Endpoint::find(&mut conn, delivery.endpoint_id).await?;
    let event = EventRow::find_seq(&mut conn, delivery.event_seq).await?;
    drop(conn);
    let (Some(endpoint), Some(event)) = (endpoint, event) else {
        // Deleted meanwhile; the cascade removed the delivery too.
        return Ok(());
    };
    let started = Instant::now();
    let outcome = if endpoint.status != EndpointStatus::Enabled {
        Outcome { succeeded: false, http_status: None, error: Some("the endpoint is disabled".into()) }
    } else {
        send(broker, http, &endpoint, &event).await
    };
    let duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let settings = &broker.config.events;
    let attempt = delivery.attempts;
    let gone = outcome.http_status == Some(410);
    let next =
        if outcome.succeeded || gone { None } else { delay_before(&settings.retry_schedule, attempt as usize + 1) };
    let status = match (outcome.succeeded, next) {
        (true, _) => DeliveryStatus::Delivered,
        (false, Some(_)) => DeliveryStatus::Pending,
        (false, None) => DeliveryStatus::Failed,
    };
    let next_at = next.and_then(|d| chrono::Duration::from_std(d).ok()).map(|d| Utc::now() + d);
    let disable_after = chrono::Duration::from_std(settings.disable_after).unwrap_or(chrono::Duration::days(5));
    let mut conn = broker.db().await?;
    let recorded = conn
        .transaction(async |conn| {
            if !webhooks::finish(conn, delivery.id, attempt, status, next_at).await? {
                return Ok::<_, diesel::result::Error>(false);
            }
            Attempt {
                id: Uuid::now_v7(),
                delivery_id: delivery.id,
                endpoint_id: endpoint.id,
                event_id: event.id.clone(),
                attempt,
                succeeded: outcome.succeeded,
                http_status: outcome.http_status.map(i32::from),
                duration_ms,
                error: outcome.error.clone(),
                created_at: Utc::now(),
            }
            .insert(conn)
            .await?;
            if outcome.succeeded {
                Endpoint::mark_healthy(conn, endpoint.id).await?;
            } else if gone {
                Endpoint::disable(conn, endpoint.id, "the endpoint answered 410 Gone").await?;
            } else if let Some(since) = Endpoint::mark_failing(conn, endpoint.id).await?
                && Utc::now() - since >= disable_after
            {
                Endpoint::disable(conn, endpoint.id, &format!("every delivery failed since {}", since.to_rfc3339()))
                    .await?;
            }
            Ok(true)
        })
        .await?;
    if recorded {
        tracing::debug!(endpoint_id = %endpoint.id, event_id = %event.id, attempt, status = status.as_str(), "webhook attempt");
        if status == DeliveryStatus::Pending {
            // A retry is due later; the worker's poll picks it up.
            broker.events.publish(Topic::Deliveries);
        }
    }
    Ok(())
}

async fn send(broker: &BrokerState, http: &reqwest::Client, endpoint: &Endpoint, event: &EventRow) -> Outcome {
    let failed = |error: String| Outcome { succeeded: false, http_status: None, error: Some(error) };
    let url = match url::Url::parse(&endpoint.url) {
        Ok(url) => url,
        Err(_) => return failed("the URL does not parse".into()),
    };
    let allow_private = broker.config.events.allow_private;
    // IP-literal hosts never reach the resolver: check them here.
    match url.host() {
        Some(url::Host::Ipv4(ip)) => {
            if let Err(why) = client::check_ip(ip.into(), allow_private) {
                return failed(why);
            }
        }
        Some(url::Host::Ipv6(ip)) => {
            if let Err(why) = client::check_ip(ip.into(), allow_private) {
                return failed(why);
            }
        }
        _ => {}
    }
    if url.scheme() != "https" && !allow_private {
        return failed("refused: only https URLs are delivered to".into());
    }
    let secrets = match sign::signing_secrets(&broker.webhook_keyring, endpoint) {
        Ok(secrets) => secrets,
        Err(err) => {
            tracing::error!(endpoint_id = %endpoint.id, error = %err, "cannot open the endpoint's signing secret");
            return failed("the signing secret could not be opened".into());
        }
    };
    let scope = match (endpoint.app_id, endpoint.operator_id) {
        (_, Some(operator)) => EventScope::Operator(operator),
        (Some(app_id), None) => EventScope::App(app_id),
        (None, None) => EventScope::All,
    };
    let body = serde_json::json!({
        "type": event.type_,
        "timestamp": event.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": event.data_for(scope),
    })
    .to_string();
    let timestamp = Utc::now().timestamp();
    let signature = sign::signature_header(&secrets, &event.id, timestamp, &body);
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match response {
        Ok(mut response) => {
            let status = response.status();
            // Read a little of the body (for the owner's view), never more.
            let mut kept = Vec::new();
            while kept.len() < BODY_CAP {
                match response.chunk().await {
                    Ok(Some(chunk)) => kept.extend_from_slice(&chunk[..chunk.len().min(BODY_CAP - kept.len())]),
                    _ => break,
                }
            }
            let error = (!status.is_success()).then(|| {
                let text = String::from_utf8_lossy(&kept);
                format!("HTTP {}: {}", status.as_u16(), text.chars().take(200).collect::<String>())
            });
            Outcome { succeeded: status.is_success(), http_status: Some(status.as_u16()), error }
        }
        Err(err) => {
            let why = if err.is_timeout() {
                "timed out".to_owned()
            } else {
                // The resolver's refusal is in the source chain.
                let mut text = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(inner) = source {
                    text = format!("{text}: {inner}");
                    source = inner.source();
                }
                text
            };
            failed(why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_follow_the_schedule_with_jitter() {
        let schedule = crate::config::EventsConfig::default().retry_schedule;
        assert_eq!(schedule.len(), 8);
        assert_eq!(delay_before(&schedule, 1).unwrap().as_secs(), 0);
        let second = delay_before(&schedule, 2).unwrap();
        assert!(second >= Duration::from_secs(5) && second < Duration::from_millis(5500), "{second:?}");
        let last = delay_before(&schedule, 8).unwrap();
        assert!(last >= Duration::from_secs(36_000) && last < Duration::from_secs(39_600));
        assert_eq!(delay_before(&schedule, 9), None, "then the delivery fails");
        let total: Duration = schedule.iter().sum();
        assert_eq!(total.as_secs(), 5 + 300 + 1800 + 7200 + 18_000 + 36_000 + 36_000);
    }
}
