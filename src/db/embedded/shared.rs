//! One embedded cluster shared by the processes that ask for it, at once or one after another: the test suite's
//! private Postgres (several test binaries or threads may start together, and the next run reuses the cluster).
//!
//! `home` holds `lock` (an advisory file lock taken for the whole check-or-start, so concurrent callers make
//! exactly one cluster), the cluster itself in `cluster/` (or where [`cluster_dir`] puts it when the `postgres`
//! user cannot reach `home`), and `cluster.path`, naming where that is, for scripts that want to stop it. The
//! cluster listens on its socket and on a loopback TCP port, and outlives the process that started it: a later
//! caller finds it in `postmaster.pid` and reuses it when it answers there, and otherwise (stopped, crashed, or
//! serving another network namespace) starts it again on the same data. It never waits for the disk
//! ([`Options::no_sync`]): it holds throwaway databases, and creating those is most of what it does.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tracing::{info, warn};

use super::{EmbeddedPostgres, Options, cluster_dir, serves};

/// How long a reused cluster may take to answer before it counts as unhealthy.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Starts to try: a port picked as free can be taken by someone else before postgres binds it.
const ATTEMPTS: usize = 3;

/// A running shared cluster.
#[derive(Clone, Debug)]
pub struct SharedCluster {
    /// `postgres://postgres@127.0.0.1:<port>/postgres` (trust auth).
    pub url: String,
    /// The postmaster's process id.
    pub pid: u32,
    /// Where the cluster lives (`pgdata/`, `postgres.log`, the socket).
    pub data_dir: PathBuf,
    /// Whether it was already running, rather than started by this call.
    pub reused: bool,
}

/// Returns the cluster kept under `home`, reusing a healthy running one or else starting it (with `initdb` on
/// first use). The cluster is left running when this process exits.
pub async fn shared(home: &Path) -> Result<SharedCluster> {
    fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let lock_path = home.join("lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    // Held until `lock` is dropped at the end of this function. The lock belongs to this open file, so threads
    // of one process exclude each other as processes do; it is released when the holder dies, too.
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await?
        .with_context(|| format!("locking {}", lock_path.display()))?;

    let data_dir = cluster_dir(&home.join("cluster"));
    fs::write(home.join("cluster.path"), format!("{}\n", data_dir.display())).context("writing cluster.path")?;
    if let Some((pid, port)) = running(&data_dir) {
        let url = url(port);
        if accepts(&url, PROBE_TIMEOUT).await {
            info!(data_dir = %data_dir.display(), pid, port, "reusing the shared embedded postgres");
            drop(lock);
            return Ok(SharedCluster { url, pid, data_dir, reused: true });
        }
        warn!(data_dir = %data_dir.display(), pid, port, "the shared embedded postgres does not answer; restarting it");
    }

    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let port = free_port().context("finding a free loopback port")?;
        let options = Options { tcp_port: Some(port), outlive: true, no_sync: true };
        match EmbeddedPostgres::start_with(&data_dir, "postgres", options).await {
            Ok(pg) => {
                let url = pg.tcp_url().expect("started with a TCP port").to_owned();
                let cluster = SharedCluster { url, pid: pg.pid(), data_dir, reused: false };
                // Started with `outlive`: dropping the handle leaves postgres running for the next caller.
                drop(pg);
                drop(lock);
                return Ok(cluster);
            }
            Err(e) => {
                warn!(port, error = %format!("{e:#}"), "starting the shared embedded postgres failed");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.expect("at least one attempt"))
}

fn url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// The pid and TCP port of a postmaster that is up and serving `data_dir` on loopback, from its
/// `postmaster.pid`: line 1 the pid, 4 the port, 6 the listen address, 8 the status.
fn running(data_dir: &Path) -> Option<(u32, u16)> {
    let pgdata = data_dir.join("pgdata");
    let text = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let pid: i32 = lines.first()?.parse().ok()?;
    let port: u16 = lines.get(3)?.parse().ok()?;
    let up = *lines.get(5)? == "127.0.0.1" && *lines.get(7)? == "ready" && pid > 0 && serves(pid, &pgdata);
    up.then_some((pid as u32, port))
}

/// Whether the Postgres server at `url` lets us in and runs a query within `timeout`.
pub async fn accepts(url: &str, timeout: Duration) -> bool {
    let probe = async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.ok()?;
        let conn = tokio::spawn(conn);
        let ok = client.simple_query("SELECT 1").await.is_ok();
        drop(client);
        let _ = conn.await;
        ok.then_some(())
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(())))
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}
