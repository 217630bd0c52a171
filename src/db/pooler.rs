//! What a connection pooler between curbpay and Postgres (pgbouncer in transaction pooling
//! mode) must keep, checked at start, with the fix named when it does not:
//!
//! - **Prepared statements.** diesel-async prepares every statement by name (`s<N>`) in one
//!   round trip and runs it in the next, cached or not. A transaction pooler may serve those
//!   round trips from different server connections: pgbouncer 1.21 or later with
//!   `max_prepared_statements` > 0 prepares the statement again where it is needed; older
//!   versions (Debian bookworm's 1.18), or 0, pass the name through, so the statement is
//!   missing there or, worse, another client's statement of the same name runs.
//! - **LISTEN.** Notifications reach only a session that keeps its server connection, so the
//!   LISTEN connection must bypass a transaction pooler (`CURBPAY_LISTEN_DATABASE_URL`).
//!
//! The same symptom at run time (a pooler misconfigured after start, or a check that could not
//! tell) is logged by [`report_lost_statement`], called for every failed statement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;

/// Where the README explains the setup; named in every message about it.
const README_SECTION: &str = "README, \"Behind pgbouncer\"";

/// How long a statement of the check may wait for a server connection before the check
/// gives up (a pooler with few server connections makes it wait for one the check holds).
const SERVER_WAIT: Duration = Duration::from_secs(2);

/// How many transactions the check opens at most to find the server connection its first
/// statement ran on (server connections a pooler opens meanwhile may be handed out first).
const HOLDERS: usize = 4;

/// How often, and how long each time, a notification is sent and waited for. A round trip
/// takes milliseconds; several tries keep a slow start from being mistaken for a pooler.
const LISTEN_TRIES: u32 = 4;
const LISTEN_WAIT: Duration = Duration::from_secs(1);

diesel::define_sql_function! {
    /// The Postgres backend process serving the statement.
    fn pg_backend_pid() -> diesel::sql_types::Integer;
}

/// A cacheable statement: the second run on a connection binds the statement prepared by the first.
async fn backend_pid(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i32> {
    diesel::select(pg_backend_pid()).get_result(conn).await
}

/// Whether a database error message shows a prepared statement missing, or another one under
/// its name, on the server connection a statement ran on: what a transaction pooler without
/// prepared-statement support causes (SQLSTATE 26000 "prepared statement "s3" does not
/// exist", 42P05 "... already exists", 08P01 "bind message supplies 2 parameters, but prepared
/// statement "s3" requires 1"). curbpay never uses SQL-level `PREPARE`, so these come from
/// something in between.
pub fn is_lost_statement(message: &str) -> bool {
    message.contains("prepared statement \"")
}

/// Logs, at most once a minute per process, what a lost prepared statement means and how to
/// fix it; every failed request still logs its own error.
pub fn report_lost_statement(message: &str) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // `AtomicU64::load`, not diesel's `RunQueryDsl::load` (implemented for every type).
    let last = AtomicU64::load(&LAST, Ordering::Relaxed);
    let recently = last != 0 && now < last + 60;
    if recently || LAST.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
        return;
    }
    tracing::error!(
        error = %message,
        "a prepared statement was lost between server connections: a connection pooler in transaction \
         pooling mode without prepared-statement support sits in front of Postgres. pgbouncer needs version \
         1.21 or later with max_prepared_statements > 0 (see {README_SECTION})"
    );
}

/// Runs both checks: prepared statements through `database_url`, then notifications sent
/// through it reaching a LISTEN connection to `listen_url`. `listen_configured` says whether
/// `CURBPAY_LISTEN_DATABASE_URL` was set (the advice differs).
pub async fn check(database_url: &str, listen_url: &str, listen_configured: bool) -> anyhow::Result<()> {
    check_prepared_statements(database_url).await?;
    check_listen(database_url, listen_url, listen_configured).await
}

/// The outcome of [`probe_prepared_statements`].
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Two connections have two sessions: Postgres itself, or session pooling.
    Sessions,
    /// Transaction pooling, and a statement prepared on one server connection ran on another
    /// under a name of the pooler's.
    Carried,
    /// Transaction pooling, and the server knows the statements by the names the driver gave
    /// them: a statement "carried" to another server connection ran only because an earlier
    /// client had prepared one of the same name there.
    NamesPassedThrough(String),
    /// Could not tell (the pooler had no second server connection to give, or other clients
    /// took the first one); the run-time log covers it.
    Inconclusive,
}

/// Whether a server-side statement name is one the driver made (tokio-postgres: `s<N>`),
/// passed through unchanged; pgbouncer names its own `PGBOUNCER_<N>`.
fn is_driver_name(name: &str) -> bool {
    name.strip_prefix('s').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuses a transaction pooler that loses prepared statements. Best effort: under other
/// clients' load the check may not get hold of the server connection it needs, and then
/// start-up goes on (the run-time log covers it).
pub async fn check_prepared_statements(database_url: &str) -> anyhow::Result<()> {
    let what = match probe_prepared_statements(database_url).await {
        Ok(Probe::NamesPassedThrough(name)) => format!(
            "the server knows statements by the names the driver gave them, such as {name:?}, so one may meet \
             another client's statement of the same name"
        ),
        Ok(probe) => {
            tracing::debug!(?probe, "prepared-statement check");
            return Ok(());
        }
        Err(err) if is_lost_statement(&format!("{err:#}")) => format!("the database said: {}", err.root_cause()),
        Err(err) => return Err(err.context("checking prepared statements through DATABASE_URL")),
    };
    bail!(
        "prepared statements do not survive the connection pooler at DATABASE_URL ({what}). In transaction pooling \
         mode pgbouncer must be 1.21 or later with max_prepared_statements > 0 (Debian bookworm ships 1.18, which \
         cannot); or point DATABASE_URL at Postgres itself or at session pooling. See {README_SECTION}."
    )
}

/// Connection `a` prepares and runs a statement. Other connections then open transactions and
/// run it too, until one lands on `a`'s server connection: then the connections share server
/// connections through a transaction pooler, and `a` runs its cached statement again, which
/// the pooler must serve from another server connection (the first is busy in that
/// transaction), where that statement was never prepared. Last, the holder asks the server
/// what name its statements go by. With Postgres itself every connection has a backend of its
/// own, and no transaction lands on `a`'s.
async fn probe_prepared_statements(database_url: &str) -> anyhow::Result<Probe> {
    let mut a = AsyncPgConnection::establish(database_url).await.context("connecting")?;
    let first = backend_pid(&mut a).await?;
    let mut holders = Holders::default();
    let probe = match holders.reach(database_url, first).await {
        Ok(Reach::Held) => carried(&mut a, holders.last(), first).await,
        Ok(Reach::NotHandedOut) => Ok(Probe::Sessions),
        Ok(Reach::Waited) => Ok(Probe::Inconclusive),
        Err(err) => Err(err),
    };
    holders.release().await;
    probe
}

/// Connections each holding a transaction open, so that each keeps its server connection.
#[derive(Default)]
struct Holders(Vec<AsyncPgConnection>);

/// Whether another client was handed a given backend.
enum Reach {
    /// The last holder holds it: a pooler shares server connections between clients.
    Held,
    /// [`HOLDERS`] connections got other backends.
    NotHandedOut,
    /// A connection waited for a server connection (a pooler's pool is exhausted): cannot tell.
    Waited,
}

impl Holders {
    /// Opens connections to `url`, each in a transaction, until one runs on `backend`.
    async fn reach(&mut self, url: &str, backend: i32) -> anyhow::Result<Reach> {
        for _ in 0..HOLDERS {
            let mut b = AsyncPgConnection::establish(url).await.context("connecting")?;
            let held = tokio::time::timeout(SERVER_WAIT, async {
                b.batch_execute("BEGIN").await?;
                backend_pid(&mut b).await
            })
            .await;
            self.0.push(b);
            let Ok(held) = held else { return Ok(Reach::Waited) };
            if held? == backend {
                return Ok(Reach::Held);
            }
        }
        Ok(Reach::NotHandedOut)
    }

    fn last(&mut self) -> &mut AsyncPgConnection {
        self.0.last_mut().expect("a holder")
    }

    /// Ends the transactions. After a timeout a connection may be mid-statement; all of them
    /// are dropped (and closed) here.
    async fn release(mut self) {
        for holder in &mut self.0 {
            let _ = holder.batch_execute("ROLLBACK").await;
        }
    }
}

/// `a` runs its statement again while `holder` keeps the server connection it was prepared on.
async fn carried(a: &mut AsyncPgConnection, holder: &mut AsyncPgConnection, first: i32) -> anyhow::Result<Probe> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        name: String,
    }
    match tokio::time::timeout(SERVER_WAIT, backend_pid(a)).await {
        Ok(Ok(other)) if other != first => {}
        Ok(Ok(_)) | Err(_) => return Ok(Probe::Inconclusive),
        Ok(Err(err)) => return Err(err.into()),
    }
    // This very statement, as the server (still the holder's, inside its transaction) names it.
    let names: Vec<Name> =
        diesel::sql_query("SELECT name FROM pg_prepared_statements WHERE statement = current_query()")
            .load(holder)
            .await?;
    Ok(match names.into_iter().find(|n| is_driver_name(&n.name)) {
        Some(n) => Probe::NamesPassedThrough(n.name),
        None => Probe::Carried,
    })
}

/// Refuses a LISTEN connection that shares its server connection with other clients (a
/// transaction pooler at `listen_url`), or that does not receive what is sent through
/// `database_url` (another database): subscribers would silently miss other processes' events.
pub async fn check_listen(database_url: &str, listen_url: &str, listen_configured: bool) -> anyhow::Result<()> {
    let channel = format!("curbpay_check_{}", uuid::Uuid::new_v4().simple());
    let mut listener = AsyncPgConnection::establish(listen_url).await.context("connecting for LISTEN")?;
    // LISTEN and the backend's pid in one transaction, so both name the same server connection
    // even through a transaction pooler (LISTEN takes effect at commit).
    listener.batch_execute(&format!("BEGIN; LISTEN {channel}")).await.context("LISTEN")?;
    let listening = backend_pid(&mut listener).await.context("LISTEN")?;
    listener.batch_execute("COMMIT").await.context("LISTEN")?;
    // A round trip alone cannot tell: through a transaction pooler the notification may still
    // reach the listener when its next poll lands on the server connection holding it.
    if listen_shared(listen_url, listening).await? {
        return Err(listen_refusal(listen_configured));
    }
    let mut notifier = AsyncPgConnection::establish(database_url).await.context("connecting to DATABASE_URL")?;
    let mut notifications = std::pin::pin!(listener.notifications_stream());
    for _ in 0..LISTEN_TRIES {
        diesel::sql_query("SELECT pg_notify($1, '')")
            .bind::<Text, _>(&channel)
            .execute(&mut notifier)
            .await
            .context("sending a notification through DATABASE_URL")?;
        let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, notifications.next()).await {
                Ok(Some(Ok(note))) if note.channel == channel => return Ok(()),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(err))) => return Err(anyhow::Error::new(err).context("the LISTEN connection failed")),
                Ok(None) => bail!("the LISTEN connection closed"),
                Err(_) => break,
            }
        }
    }
    Err(listen_refusal(listen_configured))
}

/// Whether another client of `listen_url` gets the server connection (backend `listening`) the
/// LISTEN ran on while the listener stays connected: only a transaction (or statement) pooler
/// hands it out. Postgres itself gives each connection a backend of its own; pgbouncer hands
/// out the server connection released last, which is the listener's, first. When it cannot
/// tell, the notification's round trip decides.
async fn listen_shared(listen_url: &str, listening: i32) -> anyhow::Result<bool> {
    let mut holders = Holders::default();
    let reached = holders.reach(listen_url, listening).await;
    holders.release().await;
    Ok(matches!(reached.context("checking the LISTEN connection")?, Reach::Held))
}

/// Why the LISTEN connection cannot serve, with the fix.
fn listen_refusal(listen_configured: bool) -> anyhow::Error {
    if listen_configured {
        return anyhow::anyhow!(
            "notifications sent through DATABASE_URL do not reach a LISTEN connection to CURBPAY_LISTEN_DATABASE_URL: \
             it must point at Postgres itself (not at a transaction pooler), on the same database. See \
             {README_SECTION}."
        );
    }
    anyhow::anyhow!(
        "notifications sent through DATABASE_URL do not reach a LISTEN connection to it: a connection pooler in \
         transaction pooling mode (pgbouncer) is in between, and LISTEN does not work through it, so subscribers \
         would miss other processes' events. Set CURBPAY_LISTEN_DATABASE_URL to Postgres itself (same database). \
         See {README_SECTION}."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_statement_messages_are_recognised() {
        // What Postgres answered through pgbouncer 1.18 in transaction pooling mode.
        for message in [
            "prepared statement \"s18\" does not exist",
            "prepared statement \"s4\" already exists",
            "bind message supplies 3 parameters, but prepared statement \"s107\" requires 5",
        ] {
            assert!(is_lost_statement(message), "{message}");
        }
        for message in ["canceling statement due to statement timeout", "relation \"apps\" does not exist"] {
            assert!(!is_lost_statement(message), "{message}");
        }
    }

    #[test]
    fn driver_statement_names_are_told_from_a_poolers() {
        assert!(is_driver_name("s0") && is_driver_name("s107"));
        for name in ["PGBOUNCER_12", "s", "sx1", "stmt"] {
            assert!(!is_driver_name(name), "{name}");
        }
    }
}
