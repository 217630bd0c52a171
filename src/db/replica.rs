//! The read replica (`CURBPAY_READ_DATABASE_URL`): its pool, and whether reads that may
//! lag go to it right now.
//!
//! The replica *serves* until one of these, and then those reads go to the primary:
//!
//! - **Down**: a connection to it cannot be made. The read that finds out falls back
//!   at once, and so does every read after it; a probe each second puts the replica
//!   back once it answers.
//! - **Lagging**: it has not replayed what the primary had written more than
//!   `CURBPAY_READ_MAX_LAG` ago. Measured by sampling the primary's WAL position and
//!   the replica's replay position; it serves again once it has caught up.
//!
//! Only the changes of state are logged; each read that falls back is counted in
//! `curbpay_db_read_fallbacks_total{reason}`. A replica that is merely busy (its pool
//! exhausted) does not send reads to the primary: they fail with UNAVAILABLE, as they
//! would on a busy primary, so that load on the replica never spills onto the database
//! that takes the writes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use deadpool::managed::TimeoutType;
use diesel::sql_types::{BigInt, Nullable};
use tokio::sync::{Notify, watch};

use super::{DbConn, DbPool, PoolError};

/// How often a down replica is probed (and, without a lag bound, the longest a
/// recovered one waits to serve again).
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest interval between lag samples.
const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(50);

/// Whether reads that may lag go to the replica now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplicaState {
    /// Serves reads that may lag.
    Serving = 0,
    /// No connection could be made to it.
    Down = 1,
    /// Further behind the primary than the configured bound.
    Lagging = 2,
}

impl ReplicaState {
    /// Why a read passed this replica over, as `curbpay_db_read_fallbacks_total` labels it.
    pub fn fallback_reason(self) -> &'static str {
        match self {
            ReplicaState::Lagging => "lagging",
            ReplicaState::Serving | ReplicaState::Down => "down",
        }
    }

    fn from_u8(v: u8) -> ReplicaState {
        match v {
            0 => ReplicaState::Serving,
            1 => ReplicaState::Down,
            _ => ReplicaState::Lagging,
        }
    }
}

/// Why a read could not have a replica connection.
#[derive(Debug)]
pub enum Unusable {
    /// Down or lagging: the read goes to the primary.
    PassedOver(ReplicaState),
    /// Every replica connection is in use and none came back in time (UNAVAILABLE).
    Busy(PoolError),
}

/// The read replica: its pool and whether it serves now (kept up to date by its monitor).
pub struct Replica {
    pool: DbPool,
    state: AtomicU8,
    max_lag: Option<Duration>,
    /// Wakes the monitor when a read found the replica down.
    found_down: Notify,
}

impl Replica {
    /// A replica reached through `pool`; `max_lag` bounds how far behind it may serve.
    pub fn new(pool: DbPool, max_lag: Option<Duration>) -> Arc<Replica> {
        crate::metrics::replica_serving(true);
        Arc::new(Replica {
            pool,
            state: AtomicU8::new(ReplicaState::Serving as u8),
            max_lag,
            found_down: Notify::new(),
        })
    }

    /// The replica's pool.
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// Whether the replica serves reads now.
    pub fn state(&self) -> ReplicaState {
        ReplicaState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// A replica connection, or why the read must go elsewhere.
    pub async fn get(&self) -> Result<DbConn, Unusable> {
        let state = self.state();
        if state != ReplicaState::Serving {
            return Err(Unusable::PassedOver(state));
        }
        let started = Instant::now();
        let conn = self.pool.get().await;
        crate::metrics::pool_wait("replica", started.elapsed());
        match conn {
            Ok(conn) => Ok(conn),
            Err(err @ PoolError::Timeout(TimeoutType::Wait)) => Err(Unusable::Busy(err)),
            Err(err) => {
                self.set_state(ReplicaState::Down, &err.to_string());
                self.found_down.notify_one();
                Err(Unusable::PassedOver(ReplicaState::Down))
            }
        }
    }

    fn set_state(&self, state: ReplicaState, why: &str) {
        let before = ReplicaState::from_u8(self.state.swap(state as u8, Ordering::Relaxed));
        if before == state {
            return;
        }
        crate::metrics::replica_serving(state == ReplicaState::Serving);
        match state {
            ReplicaState::Serving => tracing::info!(was = ?before, "the read replica serves reads again"),
            ReplicaState::Down => {
                // Its idle connections are most likely dead too; new ones are made when it is back.
                self.pool.retain(|_, _| false);
                tracing::warn!(error = %why, "the read replica is unreachable; reads go to the primary until it answers")
            }
            ReplicaState::Lagging => tracing::warn!(
                lag = %why,
                "the read replica is further behind than CURBPAY_READ_MAX_LAG; reads go to the primary until it catches up"
            ),
        }
    }

    /// Starts the task that probes a down replica and measures the lag; it ends when the
    /// replica is dropped or the process stops.
    pub fn spawn_monitor(self: &Arc<Self>, primary: DbPool, mut stopping: watch::Receiver<bool>) {
        let replica: Weak<Replica> = Arc::downgrade(self);
        let interval = self.max_lag.map_or(PROBE_INTERVAL, sample_interval);
        tokio::spawn(async move {
            let mut lag = LagEstimate::default();
            loop {
                let Some(this) = replica.upgrade() else { return };
                // A serving replica without a lag bound needs no watching until a read finds it down.
                let idle = this.max_lag.is_none() && this.state() == ReplicaState::Serving;
                tokio::select! {
                    _ = this.found_down.notified(), if idle => {}
                    _ = tokio::time::sleep(interval), if !idle => {}
                    _ = stopping.changed() => return,
                }
                let (state, why) = this.check(&primary, &mut lag).await;
                this.set_state(state, &why);
            }
        });
    }

    /// Probes the replica and, with a lag bound, measures how far behind it is.
    async fn check(&self, primary: &DbPool, lag: &mut LagEstimate) -> (ReplicaState, String) {
        // The primary's position first: the replica's is then compared with a position the
        // primary had already reached.
        let written = match self.max_lag {
            Some(_) => wal_position(primary, "pg_current_wal_lsn()").await.ok().flatten(),
            None => None,
        };
        let replayed = match wal_position(&self.pool, "pg_last_wal_replay_lsn()").await {
            Ok(replayed) => replayed,
            Err(err) => return (ReplicaState::Down, err),
        };
        let (Some(max_lag), Some(written)) = (self.max_lag, written) else {
            // Without a bound, answering is all it takes. With one, a primary that did not
            // answer leaves the lag as it was last known (the primary's trouble is not the
            // replica's).
            let state = match self.state() {
                ReplicaState::Lagging if self.max_lag.is_some() => ReplicaState::Lagging,
                _ => ReplicaState::Serving,
            };
            return (state, String::new());
        };
        let now = Instant::now();
        lag.sample(now, written, max_lag + 2 * sample_interval(max_lag));
        // Not a standby (no replay position): nothing to lag behind.
        let behind = replayed.map_or(Duration::ZERO, |replayed| lag.behind(now, replayed));
        crate::metrics::replica_lag(behind);
        if behind > max_lag {
            (ReplicaState::Lagging, format!("at least {} ms", behind.as_millis()))
        } else {
            (ReplicaState::Serving, String::new())
        }
    }
}

/// How often the lag is sampled: often enough that the estimate is within a quarter of
/// the bound, at most once a second.
fn sample_interval(max_lag: Duration) -> Duration {
    (max_lag / 4).clamp(MIN_SAMPLE_INTERVAL, PROBE_INTERVAL)
}

/// A WAL position in bytes (`None` where the function is NULL: no replay position on a
/// server that is not a standby).
async fn wal_position(pool: &DbPool, function: &str) -> Result<Option<i64>, String> {
    #[derive(diesel::QueryableByName)]
    struct Position {
        #[diesel(sql_type = Nullable<BigInt>)]
        lsn: Option<i64>,
    }
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let query = diesel::sql_query(format!("SELECT ({function} - '0/0'::pg_lsn)::bigint AS lsn"));
    let row: Position = diesel_async::RunQueryDsl::get_result(query, &mut conn).await.map_err(|e| e.to_string())?;
    Ok(row.lsn)
}

/// Recent samples of the primary's WAL position, to tell how long ago it was where the
/// replica is now.
#[derive(Default)]
struct LagEstimate {
    samples: VecDeque<(Instant, i64)>,
}

impl LagEstimate {
    /// Records the primary's position; forgets samples older than `keep`.
    fn sample(&mut self, at: Instant, written: i64, keep: Duration) {
        self.samples.push_back((at, written));
        while self.samples.front().is_some_and(|(t, _)| at.duration_since(*t) > keep) {
            self.samples.pop_front();
        }
    }

    /// How long the primary has had something the replica (at `replayed`) has not: since
    /// the oldest sample beyond `replayed`. A lower bound, off by at most one sampling
    /// interval; when even the oldest kept sample is beyond it, at least that old.
    fn behind(&self, now: Instant, replayed: i64) -> Duration {
        self.samples.iter().find(|(_, written)| *written > replayed).map_or(Duration::ZERO, |(t, _)| now - *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_position_not_yet_replayed() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let keep = Duration::from_secs(10);
        let mut lag = LagEstimate::default();
        // An idle primary: the replica at its position is not behind, however long it idled.
        for ms in [0, 1000, 2000] {
            lag.sample(at(ms), 500, keep);
        }
        assert_eq!(lag.behind(at(2000), 500), Duration::ZERO);
        // A write between 2 s and 3 s, not replayed: behind since the 3 s sample.
        lag.sample(at(3000), 900, keep);
        lag.sample(at(4000), 900, keep);
        assert_eq!(lag.behind(at(4500), 500), Duration::from_millis(1500));
        assert_eq!(lag.behind(at(4500), 900), Duration::ZERO);
        // Samples older than `keep` are forgotten; a replica behind all that remain is at
        // least as old as the oldest.
        lag.sample(at(20_000), 1200, keep);
        assert_eq!(lag.samples.len(), 1);
        assert_eq!(lag.behind(at(21_000), 100), Duration::from_secs(1));
    }

    #[test]
    fn sampling_keeps_up_with_the_bound() {
        assert_eq!(sample_interval(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(sample_interval(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(sample_interval(Duration::from_millis(10)), MIN_SAMPLE_INTERVAL);
    }
}
