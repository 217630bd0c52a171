//! Embedded PostgreSQL: without `DATABASE_URL`, curbpay runs its own cluster from the server binaries installed
//! on the machine, so a local run needs no setup and no network.
//!
//! This module owns the cluster's whole life. `data_dir` holds `pgdata/` (made by `initdb` in a sibling
//! directory renamed into place, so a half-made cluster never exists), `postgres.log` and the Unix socket. By
//! default no TCP port is opened, so servers and tests can run side by side. As root, postgres runs as the
//! `postgres` user, since it refuses to run as root. By default it stops with us: SIGINT on `stop`/drop, and
//! `PR_SET_PDEATHSIG` even when curbpay is `kill -9`ed; what a crashed run leaves behind is cleared on the next
//! start.
//!
//! [`Options`] adds a loopback TCP port and lets the cluster outlive the process that started it; [`shared`]
//! builds on both a cluster that several processes use in turn (the test suite's private Postgres), and
//! [`EmbeddedPostgres::start_standby`] a streaming copy of a cluster (the tests' read replica).
//!
//! Auth is `trust`: other local users are kept out by the 0700 data dir and socket. A TCP port has no such
//! guard (any local user may connect to it), which is why only the tests' throwaway cluster opens one. The filesystem calls are
//! few, small and made once at startup, so they use `std::fs` directly.

use std::os::unix::fs::{MetadataExt, PermissionsExt, chown, lchown};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use std::{env, fs, io};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::oneshot;
use tracing::{info, warn};

mod shared;
mod standby;
pub use shared::{SharedCluster, accepts, shared};

/// How long postgres may take to come up, or to go down.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The port postgres names its socket after when no TCP port is asked for (the port itself is then not opened).
const DEFAULT_PORT: u16 = 5432;

/// How to run the cluster; the default suits `curbpay serve`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Also listen on `127.0.0.1:<port>`, for clients that only speak TCP. The socket is there either way.
    pub tcp_port: Option<u16>,
    /// Let postgres outlive this process: no death signal, and dropping the handle leaves it running. For a
    /// cluster that later processes reuse (see [`shared`]); [`EmbeddedPostgres::stop`] still stops it.
    pub outlive: bool,
    /// Never wait for the disk (`initdb --no-sync`, `fsync=off`): several times faster to create and to write,
    /// but a machine crash can corrupt the data. Only for clusters that hold nothing of value, such as the
    /// tests'.
    pub no_sync: bool,
}

/// A running cluster, ours to stop: call [`EmbeddedPostgres::stop`] on shutdown.
pub struct EmbeddedPostgres {
    url: String,
    tcp_url: Option<String>,
    dir: PathBuf,
    pid: i32,
    port: u16,
    outlive: bool,
    /// Reports the postmaster's exit; `None` once that has been dealt with.
    exit: Option<ExitReport>,
}

type ExitReport = oneshot::Receiver<io::Result<ExitStatus>>;

/// The `postgres` system user, which `initdb` and `postgres` run as when we are root.
#[derive(Clone, Copy)]
struct Account {
    uid: u32,
    gid: u32,
}

impl EmbeddedPostgres {
    /// Starts (initialising on first use) a cluster whose data lives in `data_dir` (e.g. `.curbpay/pg`), creates
    /// database `db_name` if missing, and waits until it accepts connections.
    pub async fn start(data_dir: &Path, db_name: &str) -> Result<EmbeddedPostgres> {
        Self::start_with(data_dir, db_name, Options::default()).await
    }

    /// [`EmbeddedPostgres::start`] with [`Options`].
    pub async fn start_with(data_dir: &Path, db_name: &str, options: Options) -> Result<EmbeddedPostgres> {
        // Keeps the name safe to splice into SQL and the URL.
        if db_name.is_empty() || !db_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("embedded postgres: bad database name {db_name:?} (use letters, digits, _)");
        }
        let account = postgres_account()?;
        fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let dir = fs::canonicalize(data_dir)?;
        let dir_str = dir.to_str().context("embedded postgres: data dir is not UTF-8")?;
        let port = options.tcp_port.unwrap_or(DEFAULT_PORT);
        // 107 = sizeof(sockaddr_un.sun_path) minus its NUL.
        if dir_str.len() + 1 + socket_name(port).len() > 107 {
            bail!("embedded postgres: {dir_str} is too long for a socket path; use a shorter one or set DATABASE_URL");
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        if let Some(account) = account {
            chown(&dir, Some(account.uid), Some(account.gid))?;
        }

        let pgdata = dir.join("pgdata");
        let version = fs::read_to_string(pgdata.join("PG_VERSION")).ok();
        let bin = find_bin_dir(version.as_deref().map(str::trim)).await?;
        match (&version, account) {
            (None, _) => init_cluster(&bin, &dir, account, options.no_sync).await?,
            // A cluster made by another user (say, before curbpay ran as root) would be refused by postgres.
            (Some(_), Some(account)) if fs::metadata(&pgdata)?.uid() != account.uid => {
                chown_tree(&pgdata, account).context("handing the cluster to the postgres user")?
            }
            _ => {}
        }
        clear_leftovers(&pgdata, &dir).await?;

        let (pid, exit) = spawn_postgres(&bin, &dir, account, options).await?;
        let host: String = (dir_str.bytes())
            .map(|b| match b {
                b'/' | b'-' | b'.' | b'_' | b'~' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let port_param = if port == DEFAULT_PORT { String::new() } else { format!("&port={port}") };
        let url = format!("postgres://postgres@/{db_name}?host={host}{port_param}");
        let tcp_url = options.tcp_port.map(|port| format!("postgres://postgres@127.0.0.1:{port}/{db_name}"));
        let outlive = options.outlive;
        // From here on, an early return drops `pg`, which asks postgres to stop (even with `outlive`: a cluster
        // that never became ready is no use to anyone).
        let mut pg = EmbeddedPostgres { url, tcp_url, dir, pid, port, outlive: false, exit: Some(exit) };
        pg.wait_ready().await?;
        pg.create_database(db_name).await?;
        pg.outlive = outlive;
        info!(data_dir = %pg.dir.display(), pid, bin_dir = %bin.display(), "embedded postgres started");
        Ok(pg)
    }

    /// URL for diesel-async/tokio-postgres: `postgres://postgres@/<db>?host=<absolute socket dir>`. There is
    /// deliberately no `localhost`: tokio-postgres would try TCP to it first, and could reach another server.
    pub fn database_url(&self) -> &str {
        &self.url
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>` when [`Options::tcp_port`] was given.
    pub fn tcp_url(&self) -> Option<&str> {
        self.tcp_url.as_deref()
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Fast shutdown (SIGINT) and wait for exit.
    pub async fn stop(mut self) -> Result<()> {
        let Some(exit) = self.exit.take() else { return Ok(()) };
        signal(self.pid, Signal::SIGINT);
        match tokio::time::timeout(TIMEOUT, exit).await {
            Ok(Ok(Ok(status))) if !status.success() => {
                warn!(data_dir = %self.dir.display(), %status, "embedded postgres exited abnormally")
            }
            Ok(Ok(Err(e))) => return Err(e).context("waiting for embedded postgres to exit"),
            // Exited cleanly, or the supervisor thread is gone: nothing left to wait for.
            Ok(_) => {}
            Err(_) => bail!("embedded postgres (pid {}) did not stop within {TIMEOUT:?}", self.pid),
        }
        info!(data_dir = %self.dir.display(), "embedded postgres stopped");
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let pid_file = self.dir.join("pgdata/postmaster.pid");
        let (pid, deadline) = (self.pid.to_string(), Instant::now() + TIMEOUT);
        loop {
            // Line 1 is the postmaster's pid, line 8 its status (PostgreSQL 10+): `ready`, or `standby` for a
            // standby that accepts read-only connections.
            let text = fs::read_to_string(&pid_file).unwrap_or_default();
            let mut lines = text.lines();
            if lines.next() == Some(&pid) && matches!(lines.nth(6).map(str::trim), Some("ready" | "standby")) {
                return Ok(());
            }
            if let Some(exit) = &mut self.exit
                && let Ok(status) = exit.try_recv()
            {
                self.exit = None;
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                bail!("embedded postgres exited while starting ({status}); {}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("embedded postgres not ready after {TIMEOUT:?}; {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Also proves that the server accepts connections, which "ready" alone does not.
    async fn create_database(&self, db_name: &str) -> Result<()> {
        let (client, conn) = tokio_postgres::Config::new()
            .host_path(&self.dir)
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connecting to embedded postgres; {}", self.log_tail()))?;
        let conn = tokio::spawn(conn);
        if client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db_name]).await?.is_none() {
            client.batch_execute(&format!("CREATE DATABASE \"{db_name}\"")).await?;
            info!(db = db_name, "created database in embedded postgres");
        }
        drop(client);
        let _ = conn.await;
        Ok(())
    }

    fn log_tail(&self) -> String {
        let path = self.dir.join("postgres.log");
        let log = fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!("end of {}:\n{}", path.display(), lines[lines.len().saturating_sub(15)..].join("\n"))
    }
}

impl Drop for EmbeddedPostgres {
    /// Best effort, without waiting: `stop` is the orderly way. Should even this be missed, the death signal
    /// stops postgres when our process exits. A cluster started to outlive us is left running.
    fn drop(&mut self) {
        if !self.outlive
            && let Some(exit) = &mut self.exit
            && matches!(exit.try_recv(), Err(oneshot::error::TryRecvError::Empty))
        {
            signal(self.pid, Signal::SIGINT);
        }
    }
}

/// `pid` is our unreaped child or a postmaster we just identified, never 0 or -1 (which would
/// signal whole groups). One that has exited meanwhile is no error.
fn signal(pid: i32, sig: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
}

/// Where to keep the cluster asked for at `requested`. Running as root, postgres runs as
/// the `postgres` user, which must be able to enter every folder above the cluster; a
/// checkout under a private home (such as /root) is not, so the cluster then lives in
/// `/var/lib/curbpay/<name derived from the requested path>` instead (the same place on
/// every start, so data is kept).
pub fn cluster_dir(requested: &Path) -> PathBuf {
    let absolute = match std::path::absolute(requested) {
        Ok(path) => path,
        Err(_) => return requested.to_owned(),
    };
    let Ok(Some(account)) = postgres_account() else {
        return absolute;
    };
    let enterable = |dir: &Path| match fs::metadata(dir) {
        Ok(meta) => meta.mode() & 0o001 != 0 || meta.uid() == account.uid,
        // Not made yet: create_dir_all will make it with the default (enterable) mode.
        Err(_) => true,
    };
    if absolute.ancestors().skip(1).all(enterable) {
        return absolute;
    }
    let name = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, absolute.to_string_lossy().as_bytes());
    let fallback = Path::new("/var/lib/curbpay").join(format!("pg-{}", &name.simple().to_string()[..12]));
    info!(
        requested = %absolute.display(),
        cluster = %fallback.display(),
        "the postgres user cannot reach the data folder; keeping the embedded cluster elsewhere"
    );
    fallback
}

/// The uid and gid of the `postgres` system user when we are root (`None` otherwise): other
/// PostgreSQL tools that refuse root (pgbouncer, in the tests) run as it too.
pub fn postgres_user_ids() -> Result<Option<(u32, u32)>> {
    Ok(postgres_account()?.map(|a| (a.uid, a.gid)))
}

/// `None` when we are not root: then postgres simply runs as us.
fn postgres_account() -> Result<Option<Account>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    // getpwnam_r underneath: thread-safe.
    let user = nix::unistd::User::from_name("postgres").context("looking up the postgres system user")?;
    let Some(user) = user else {
        bail!(
            "curbpay runs as root, which PostgreSQL refuses, and there is no `postgres` system user to run it as; \
             set DATABASE_URL or run curbpay as a non-root user"
        );
    };
    Ok(Some(Account { uid: user.uid.as_raw(), gid: user.gid.as_raw() }))
}

/// Spawning fails with a bare "Permission denied" when the `postgres` user cannot enter the data dir, typically
/// because it sits in a 0700 home such as /root; say so.
fn unreachable_hint(what: &str, dir: &Path, account: Option<Account>) -> String {
    let hint = " (the `postgres` user must be able to enter it and every folder above it)";
    format!("{what} in {}{}", dir.display(), if account.is_some() { hint } else { "" })
}

fn chown_tree(path: &Path, account: Account) -> io::Result<()> {
    lchown(path, Some(account.uid), Some(account.gid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), account)?;
        }
    }
    Ok(())
}

/// Finds the directory holding `initdb` and `postgres`, of major version `want` if a cluster exists already (a
/// cluster only runs under its own major version).
async fn find_bin_dir(want: Option<&str>) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = env::var_os("POSTGRES_BIN_DIR").map(PathBuf::from).into_iter().collect();
    // Canonicalised: PATH often holds symlinks into the real bin dir (/usr/local/bin does here).
    let path = env::var_os("PATH").unwrap_or_default();
    let on_path = env::split_paths(&path).filter_map(|dir| fs::canonicalize(dir.join("initdb")).ok());
    candidates.extend(on_path.filter_map(|initdb| Some(initdb.parent()?.to_owned())));
    // libpq-dev ships pg_config too, so its --bindir may lack the server; the loop below checks.
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output().await
        && out.status.success()
    {
        candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
    }
    // Debian/Ubuntu layout, newest major first.
    let mut versioned: Vec<(u32, PathBuf)> = (fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten())
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .collect();
    versioned.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    candidates.extend(versioned.into_iter().map(|(_, dir)| dir));

    for dir in candidates {
        if !dir.join("initdb").is_file() || !dir.join("postgres").is_file() {
            continue;
        }
        let Some(want) = want else { return Ok(dir) };
        // "postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
        let Ok(out) = Command::new(dir.join("postgres")).arg("-V").output().await else { continue };
        let version = String::from_utf8_lossy(&out.stdout);
        if version.split_whitespace().nth(2).and_then(|v| v.split('.').next()) == Some(want) {
            return Ok(dir);
        }
    }
    let which = want.map(|v| format!("{v} ")).unwrap_or_default();
    bail!(
        "no PostgreSQL {which}server binaries (initdb, postgres) in $POSTGRES_BIN_DIR, PATH, `pg_config --bindir` \
         or /usr/lib/postgresql/*/bin; install them (Debian/Ubuntu: package postgresql) or set DATABASE_URL"
    )
}

async fn init_cluster(bin: &Path, dir: &Path, account: Option<Account>, no_sync: bool) -> Result<()> {
    let tmp = dir.join("pgdata.initdb");
    // Left by an interrupted initdb; it never became the cluster.
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    info!(data_dir = %dir.display(), "initialising embedded postgres cluster");
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]);
    if no_sync {
        cmd.arg("--no-sync");
    }
    cmd.arg("-D").arg(&tmp);
    cmd.current_dir(dir).stdin(Stdio::null()).kill_on_drop(true);
    if let Some(account) = account {
        cmd.uid(account.uid).gid(account.gid);
    }
    let out = cmd.output().await.with_context(|| unreachable_hint("running initdb", dir, account))?;
    if !out.status.success() {
        bail!("initdb failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    fs::rename(&tmp, dir.join("pgdata")).context("moving the new cluster into place")
}

/// Clears what a crashed run may have left. A postmaster still serving `pgdata` is stopped, so that the new one
/// is a child we supervise. Lock files naming a dead pid are removed, since a recycled pid could make postgres
/// believe the cluster is in use.
async fn clear_leftovers(pgdata: &Path, dir: &Path) -> Result<()> {
    let pid_file = pgdata.join("postmaster.pid");
    let Ok(text) = fs::read_to_string(&pid_file) else { return Ok(()) };
    let pid = text.lines().next().and_then(|line| line.trim().parse::<i32>().ok());
    if let Some(pid) = pid.filter(|&pid| pid > 0 && serves(pid, pgdata)) {
        warn!(data_dir = %dir.display(), pid, "a postgres from an earlier run still serves this data dir; stopping it");
        signal(pid, Signal::SIGINT);
        let deadline = Instant::now() + TIMEOUT;
        while serves(pid, pgdata) {
            if Instant::now() > deadline {
                bail!("postgres pid {pid}, left by an earlier run, does not stop; stop it by hand");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    } else {
        info!(data_dir = %dir.display(), "removing the stale postmaster.pid of a crashed run");
    }
    // The socket's lock file is named after the port, which may differ from run to run.
    let socket_locks = (fs::read_dir(dir)?.flatten().map(|entry| entry.path()))
        .filter(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(is_socket_lock));
    for stale in std::iter::once(pid_file).chain(socket_locks) {
        if let Err(e) = fs::remove_file(&stale)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(e).with_context(|| format!("removing {}", stale.display()));
        }
    }
    Ok(())
}

/// Postgres names its Unix socket after the port, even when the port itself is not opened.
fn socket_name(port: u16) -> String {
    format!(".s.PGSQL.{port}")
}

fn is_socket_lock(name: &str) -> bool {
    name.strip_prefix(".s.PGSQL.").and_then(|rest| rest.strip_suffix(".lock")).is_some_and(|p| p.parse::<u16>().is_ok())
}

/// Whether `pid` is a live process working in `pgdata` (postgres chdirs into its data dir). A zombie or a
/// recycled pid does not count.
fn serves(pid: i32, pgdata: &Path) -> bool {
    fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == pgdata)
}

/// Spawns the postmaster from a dedicated thread that then waits for it. The thread matters: `PR_SET_PDEATHSIG`
/// fires when the *thread* that forked the child exits, so forking from a tokio worker or `spawn_blocking` (both
/// retired when idle) would stop postgres at a random moment. This thread lives exactly as long as postgres.
async fn spawn_postgres(
    bin: &Path,
    dir: &Path,
    account: Option<Account>,
    options: Options,
) -> Result<(i32, ExitReport)> {
    // Truncated per start, so that the tail quoted in errors is about this run.
    let log = fs::File::create(dir.join("postgres.log")).context("creating postgres.log")?;
    // A std Command, as it is spawned and waited for outside tokio.
    let mut cmd = std::process::Command::new(bin.join("postgres"));
    cmd.arg("-D").arg(dir.join("pgdata"));
    // Quoted, as the value is a comma-separated list and a path may hold commas or spaces.
    let socket_dir = format!("unix_socket_directories=\"{}\"", dir.display());
    let (listen, port) = match options.tcp_port {
        Some(port) => ("listen_addresses=127.0.0.1", port),
        None => ("listen_addresses=", DEFAULT_PORT),
    };
    let port = format!("port={port}");
    for setting in [listen, &port, &socket_dir, "unix_socket_permissions=0700", "max_connections=50"] {
        cmd.arg("-c").arg(setting);
    }
    cmd.args(["-c", "shared_buffers=32MB", "-c", "max_wal_size=256MB"]);
    if options.no_sync {
        cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
    }
    // Own process group: a Ctrl-C in the terminal reaches only curbpay, which then stops postgres in order.
    cmd.current_dir(dir).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
    if let Some(account) = account {
        cmd.uid(account.uid).gid(account.gid);
    }
    let parent = nix::unistd::getpid();
    // A cluster meant to outlive us must not get the death signal.
    if !options.outlive {
        // SAFETY: runs between fork and exec, making only async-signal-safe calls and no allocation. std runs it
        // after setuid, which matters: changing credentials clears the death signal.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGINT)?;
                // Had we died before prctl, the signal would never come.
                if nix::unistd::getppid() != parent {
                    return Err(nix::errno::Errno::ESRCH.into());
                }
                Ok(())
            });
        }
    }
    let (pid_tx, pid_rx) = oneshot::channel();
    let (exit_tx, exit_rx) = oneshot::channel();
    let thread = std::thread::Builder::new().name("embedded-postgres".into());
    thread.spawn(move || match cmd.spawn() {
        Ok(mut child) => {
            let _ = pid_tx.send(Ok(child.id()));
            let _ = exit_tx.send(child.wait());
        }
        Err(e) => drop(pid_tx.send(Err(e))),
    })?;
    let pid = pid_rx.await.context("embedded postgres thread died")?;
    let pid = pid.with_context(|| unreachable_hint("starting postgres", dir, account))?;
    Ok((pid as i32, exit_rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn client(pg: &EmbeddedPostgres) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(pg.database_url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    #[tokio::test]
    async fn restarts_keep_data_and_survive_crashes() {
        let dir = env::temp_dir().join(format!("curbpay-pg-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let pg = EmbeddedPostgres::start(&dir, "curbpay_test").await.unwrap();
        assert!(pg.database_url().starts_with("postgres://postgres@/curbpay_test?host=/"));
        client(&pg).await.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (42)").await.unwrap();
        pg.stop().await.unwrap();

        // A server that vanished without stopping postgres: the postmaster lives on.
        std::mem::forget(EmbeddedPostgres::start(&dir, "curbpay_test").await.unwrap());
        EmbeddedPostgres::start(&dir, "curbpay_test").await.unwrap().stop().await.unwrap();

        // Postgres died too, leaving a postmaster.pid that names a dead process.
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        dead.wait().unwrap();
        fs::write(dir.join("pgdata/postmaster.pid"), format!("{}\n", dead.id())).unwrap();
        let pg = EmbeddedPostgres::start(&dir, "curbpay_test").await.unwrap();
        let v: i32 = client(&pg).await.query_one("SELECT v FROM t", &[]).await.unwrap().get(0);
        assert_eq!(v, 42);
        pg.stop().await.unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
