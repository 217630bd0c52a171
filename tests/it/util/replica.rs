//! A private primary and its streaming replica, for the read-replica tests.
//!
//! Built once per test binary run, on first use: `initdb` of a primary on a free loopback port, `pg_basebackup -R
//! -X stream` of it, the copy started as a hot standby on another free port (both through
//! `curbpay::db::embedded`, as the `postgres` user when we are root). The tests that use it take turns
//! ([`pair`] hands out a lock), since some pause the standby's replay or stop it; each gets the pair healthy
//! (standby running, replay on). When the binary exits, both servers are stopped and their folders deleted;
//! should the binary be killed instead, the servers stop with it (they get a death signal) and the next run
//! deletes the folders.
//!
//! Each test creates its own database on the primary ([`Pair::database`]) and waits until the standby has
//! replayed it, migrations included.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use curbpay::db::embedded::{EmbeddedPostgres, Options, cluster_dir};
use tokio::sync::{Mutex, MutexGuard};

use super::TestDb;

/// Upper bound for the standby to catch up, or a server to stop (a hang guard, not a timing assumption).
const PATIENCE: Duration = Duration::from_secs(60);

pub struct Pair {
    primary: EmbeddedPostgres,
    /// `None` while a test has it stopped.
    standby: Option<EmbeddedPostgres>,
    standby_dir: PathBuf,
    standby_port: u16,
    /// What to delete at exit: this run's folder, and the clusters' folders if they had to live elsewhere.
    folders: Vec<PathBuf>,
}

/// A test's database on the pair.
pub struct ReplicaDb {
    pub db: std::sync::Arc<TestDb>,
    /// The same database on the standby (for `CURBPAY_READ_DATABASE_URL`).
    pub replica_url: String,
}

static PAIR: OnceLock<Mutex<Pair>> = OnceLock::new();

/// The pair, for this test alone until the guard is dropped; healthy (standby up, replaying).
pub async fn pair() -> MutexGuard<'static, Pair> {
    let pair = PAIR.get_or_init(|| {
        // Callers are inside a runtime (block_on cannot nest): start on a thread of our own. The servers are
        // supervised by threads of their own, so they outlive this runtime.
        let pair = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(Pair::start())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // SAFETY: registers a plain function; it runs once, at exit.
        unsafe { libc::atexit(teardown) };
        Mutex::new(pair)
    });
    let mut guard = pair.lock().await;
    guard.heal().await;
    guard
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Pair {
    async fn start() -> Pair {
        let home = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("test-replica");
        remove_leftovers(&home);
        let run = home.join(std::process::id().to_string());
        let (primary_dir, standby_dir) = (cluster_dir(&run.join("primary")), cluster_dir(&run.join("standby")));
        let folders = vec![run, primary_dir.clone(), standby_dir.clone()];
        let primary =
            start_on_free_port(|port| EmbeddedPostgres::start_with(&primary_dir, "postgres", options(port))).await.0;
        // The primary only holds throwaway databases whose transactions the tests count: autovacuum's visits
        // would count too. Commits are written out before they return, as on a production primary (a role's
        // setting outranks the command line's `synchronous_commit=off`; `fsync` stays off), so its WAL position
        // covers every commit a test has seen.
        for sql in [
            "ALTER SYSTEM SET autovacuum = off",
            "SELECT pg_reload_conf()",
            "ALTER ROLE postgres SET synchronous_commit = on",
        ] {
            execute(primary.tcp_url().unwrap(), sql).await;
        }
        let (standby, standby_port) =
            start_on_free_port(|port| EmbeddedPostgres::start_standby(&primary, &standby_dir, options(port))).await;
        Pair { primary, standby: Some(standby), standby_dir, standby_port, folders }
    }

    pub fn primary_url(&self) -> &str {
        self.primary.tcp_url().unwrap()
    }

    fn standby_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.standby_port)
    }

    /// Undoes what an earlier test may have left (it failed while the standby was stopped or paused).
    async fn heal(&mut self) {
        if self.standby.is_none() {
            self.start_standby().await;
        }
        self.resume_replay().await;
    }

    /// A fresh migrated database on the primary, once the standby has it too.
    pub async fn database(&self) -> ReplicaDb {
        let db = TestDb::on_server(self.primary_url()).await;
        self.caught_up().await;
        let replica_url = super::database_url(&self.standby_url(), &db.name);
        ReplicaDb { db: std::sync::Arc::new(db), replica_url }
    }

    /// Waits until the standby has replayed everything the primary has written so far.
    pub async fn caught_up(&self) {
        let written = lsn(self.primary_url(), "pg_current_wal_lsn()").await;
        let deadline = Instant::now() + PATIENCE;
        while lsn(&self.standby_url(), "pg_last_wal_replay_lsn()").await < written {
            assert!(Instant::now() < deadline, "the standby did not catch up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops replaying on the standby (it keeps receiving); returns once it is paused.
    pub async fn pause_replay(&self) {
        let standby = self.standby_url();
        execute(&standby, "SELECT pg_wal_replay_pause()").await;
        let deadline = Instant::now() + PATIENCE;
        while query_text(&standby, "SELECT pg_get_wal_replay_pause_state()").await != "paused" {
            assert!(Instant::now() < deadline, "replay did not pause");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn resume_replay(&self) {
        execute(&self.standby_url(), "SELECT pg_wal_replay_resume()").await;
    }

    /// Stops the standby (fast shutdown) and waits until it is gone.
    pub async fn stop_standby(&mut self) {
        if let Some(standby) = self.standby.take() {
            standby.stop().await.expect("the standby stops");
        }
    }

    /// Starts the standby again, on its folder and port; it catches up from the primary.
    pub async fn start_standby(&mut self) {
        let standby = EmbeddedPostgres::start_standby(&self.primary, &self.standby_dir, options(self.standby_port))
            .await
            .expect("the standby starts again");
        self.standby = Some(standby);
    }

    /// Committed transactions in database `db`, on the primary and on the standby. Each server counts its own,
    /// so the standby's are the reads it served.
    pub async fn commits(&self, db: &str) -> (i64, i64) {
        let sql = format!("SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'");
        (query_i64(self.primary_url(), &sql).await, query_i64(&self.standby_url(), &sql).await)
    }

    /// Ends every session on database `db`, on both servers, and waits until their processes are gone: a
    /// backend reports its statistics when it exits, so `commits` is exact afterwards (a live one reports them
    /// up to a second late).
    pub async fn flush_statistics(&self, db: &str) {
        for server in [self.primary_url().to_owned(), self.standby_url()] {
            let (client, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let rows = client
                .query(
                    "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&db],
                )
                .await
                .unwrap();
            for row in rows {
                let pid: i32 = row.get(0);
                let deadline = Instant::now() + PATIENCE;
                while process_alive(pid) {
                    assert!(Instant::now() < deadline, "backend {pid} did not exit");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}

fn options(port: u16) -> Options {
    Options { tcp_port: Some(port), outlive: false, no_sync: true }
}

/// Starts a server on a free port, trying another should the port be taken in between.
async fn start_on_free_port<F, Fut>(start: F) -> (EmbeddedPostgres, u16)
where
    F: Fn(u16) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<EmbeddedPostgres>>,
{
    let mut last = None;
    for _ in 0..3 {
        let port = free_port();
        match start(port).await {
            Ok(pg) => return (pg, port),
            Err(e) => last = Some(e),
        }
    }
    panic!("the replica pair did not start: {:#}", last.unwrap());
}

/// Whether `pid` runs (a zombie has exited: it only waits to be reaped).
fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to the pair");
    tokio::spawn(conn);
    client
}

async fn execute(url: &str, sql: &str) {
    client(url).await.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn query_text(url: &str, sql: &str) -> String {
    client(url).await.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

async fn query_i64(url: &str, sql: &str) -> i64 {
    client(url).await.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

async fn lsn(url: &str, function: &str) -> i64 {
    query_i64(url, &format!("SELECT ({function} - '0/0'::pg_lsn)::bigint")).await
}

/// Deletes the folders of runs whose process is gone (killed before it could clean up).
fn remove_leftovers(home: &Path) {
    let Ok(entries) = std::fs::read_dir(home) else { return };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(cluster_dir(&entry.path().join("primary")));
            let _ = std::fs::remove_dir_all(cluster_dir(&entry.path().join("standby")));
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// At exit: stops both servers (fast shutdown), waits for them, and deletes their folders.
extern "C" fn teardown() {
    let Some(pair) = PAIR.get() else { return };
    // Held only by a test, and none runs any more; if one hangs on, the death signal still stops the servers.
    let Ok(pair) = pair.try_lock() else { return };
    let pids: Vec<i32> =
        [Some(&pair.primary), pair.standby.as_ref()].into_iter().flatten().map(|pg| pg.pid() as i32).collect();
    for pid in &pids {
        // SAFETY: signals the postmasters this binary started.
        unsafe { libc::kill(*pid, libc::SIGINT) };
    }
    let deadline = Instant::now() + PATIENCE;
    while pids.iter().any(|pid| process_alive(*pid)) {
        if Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for folder in &pair.folders {
        let _ = std::fs::remove_dir_all(folder);
    }
}
