//! What a phase cost, read from outside the server: its CPU time and resident memory
//! (`/proc/<pid>/stat`, `/proc/<pid>/status`), the CPU time of the Postgres backends
//! serving the bench database (their pids from `pg_stat_activity`), and the server's
//! SQL statement counter (`curbpay_db_statements_total` on `/metrics`).

use std::collections::HashMap;
use std::time::Duration;

use diesel::sql_types::{Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// CPU time (user + system) of a process so far, or `None` once it is gone.
pub fn cpu_time(pid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields
    // after its closing one. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(ticks(utime + stime))
}

fn ticks(n: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(n * 1_000_000 / per_second)
}

/// Resident memory of a process (`VmRSS`), in bytes.
pub fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS in kB");
    kib * 1024
}

/// Raises this process's open-file limit to its hard limit (the servers it starts
/// inherit it); returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

#[derive(diesel::QueryableByName)]
struct Backend {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// The servers under test, and where to read what they spent.
pub struct Probe {
    /// The server processes (one, or two for the cross-process phase).
    pub pids: Vec<i32>,
    /// Their `/metrics` URLs.
    metrics: Vec<String>,
    /// A connection to another database of the Postgres server, to list backends.
    admin: AsyncPgConnection,
    database: String,
    http: reqwest::Client,
}

/// Readings at one instant.
pub struct Sample {
    server: Duration,
    postgres: HashMap<i32, Duration>,
    statements: u64,
}

/// Per-request costs over a phase.
#[derive(Clone, Copy, Default)]
pub struct Cost {
    pub server_us: f64,
    pub postgres_us: f64,
    pub statements: f64,
}

impl Probe {
    pub async fn new(server_url: &str, database: &str) -> Probe {
        let admin = AsyncPgConnection::establish(server_url).await.expect("connect to Postgres");
        let http = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
        Probe { pids: Vec::new(), metrics: Vec::new(), admin, database: database.to_owned(), http }
    }

    pub fn watch(&mut self, pid: i32, base: &str) {
        self.pids.push(pid);
        self.metrics.push(format!("{base}metrics"));
    }

    async fn backends(&mut self) -> Vec<i32> {
        diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind::<Text, _>(&self.database)
            .load::<Backend>(&mut self.admin)
            .await
            .expect("list backends")
            .into_iter()
            .map(|b| b.pid)
            .collect()
    }

    async fn statements(&self) -> u64 {
        let mut total = 0;
        for url in &self.metrics {
            let text = self.http.get(url).send().await.expect("GET /metrics").text().await.expect("metrics text");
            let line = text.lines().find(|l| l.starts_with("curbpay_db_statements_total "));
            total += line.and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()).unwrap_or(0.0) as u64;
        }
        total
    }

    pub async fn sample(&mut self) -> Sample {
        let statements = self.statements().await;
        let postgres =
            self.backends().await.into_iter().filter_map(|pid| Some((pid, cpu_time(pid)?))).collect::<HashMap<_, _>>();
        let server = self.pids.iter().filter_map(|&pid| cpu_time(pid)).sum();
        Sample { server, postgres, statements }
    }

    /// The cost per request of `requests` served since `before`. A backend that
    /// started meanwhile counts from zero; one that ended is lost (pools keep theirs).
    pub async fn cost_since(&mut self, before: &Sample, requests: usize) -> Cost {
        let after = self.sample().await;
        let n = requests.max(1) as f64;
        let postgres: Duration = after
            .postgres
            .iter()
            .map(|(pid, t)| t.saturating_sub(before.postgres.get(pid).copied().unwrap_or_default()))
            .sum();
        // The /metrics scrape between the samples is itself one request with no SQL.
        Cost {
            server_us: after.server.saturating_sub(before.server).as_secs_f64() * 1e6 / n,
            postgres_us: postgres.as_secs_f64() * 1e6 / n,
            statements: after.statements.saturating_sub(before.statements) as f64 / n,
        }
    }
}
