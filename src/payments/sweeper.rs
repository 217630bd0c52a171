//! The abandoned-session sweeper: a session still ACTIVE after
//! `CURBPAY_SESSION_MAX_DURATION` is canceled by curbpay (reason `EXPIRED`): tokens
//! voided, hold released. It runs in every server process; each pass locks the
//! sessions it takes with `FOR UPDATE SKIP LOCKED` and moves them out of ACTIVE in the
//! same transaction, so each session is canceled exactly once whichever process finds
//! it, with no leader to elect.

use std::sync::Weak;

use diesel_async::AsyncConnection;

use super::holds;
use crate::broker::{Broker, BrokerState};
use crate::error::ApiResult;
use crate::models::{CancelReason, ParkingSession};

/// Sessions one pass takes at most; the next pass continues.
const BATCH: i64 = 50;

/// Runs passes every `CURBPAY_SESSION_SWEEP_INTERVAL` until the broker is dropped.
pub fn spawn(broker: &BrokerState) {
    let weak: Weak<Broker> = std::sync::Arc::downgrade(broker);
    let interval = broker.config.session_sweep_interval;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(broker) = weak.upgrade() else { return };
            match sweep_once(&broker).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "abandoned sessions canceled"),
                Err(err) => {
                    tracing::warn!(error = %crate::error::ErrorChain(&err), "session sweep failed; retrying next interval")
                }
            }
        }
    });
}

/// One pass: cancels what is due now; returns how many sessions it canceled.
pub async fn sweep_once(broker: &Broker) -> ApiResult<usize> {
    let max = chrono::Duration::from_std(broker.config.session_max_duration).unwrap_or(chrono::Duration::hours(24));
    let cutoff = chrono::Utc::now() - max;
    let mut conn = broker.db().await?;
    let canceled = conn
        .transaction(async |conn| {
            let due = ParkingSession::lock_abandoned(conn, cutoff, BATCH).await?;
            let mut canceled = Vec::with_capacity(due.len());
            for session in &due {
                canceled.push(holds::cancel_locked(conn, session, CancelReason::Expired).await?);
            }
            Ok::<_, crate::error::ApiError>(canceled)
        })
        .await?;
    drop(conn);
    let count = canceled.len();
    for (session, releases) in canceled {
        let id = session.id;
        super::event_log::announce_audience(broker, Some(session.app_id), Some(session.operator_id));
        if let Err(err) = holds::release_all(broker, session, releases).await {
            // The RELEASE rows stay PENDING; canceling again (or the next pass) retries them.
            tracing::warn!(session_id = %id, error = %err, "releasing an expired session's hold failed");
        }
    }
    Ok(count)
}
