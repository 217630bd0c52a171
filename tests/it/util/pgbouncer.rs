//! pgbouncer in front of a test's database: a child process per test (as the `postgres` user
//! when we are root, since pgbouncer refuses to run as root), on a free loopback port, with
//! its ini, log, pid file and socket in a private temporary folder; killed on drop.
//!
//! Which binary ([`supported`]), in order:
//! 1. `TEST_PGBOUNCER`, when set;
//! 2. `target/pgbouncer-*/bin/pgbouncer`, newest first (what `.ci/pgbouncer.sh` builds);
//! 3. `pgbouncer` on PATH or in /usr/sbin, when it is 1.21 or later;
//! 4. else `.ci/pgbouncer.sh` builds one into `target/` (once; it needs the network and,
//!    unless present, installs the build dependencies when run as root).
//!
//! [`system`] is the distribution's own (Debian bookworm: 1.18), whatever its version.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The first version that carries prepared statements across server connections.
const PREPARED_STATEMENTS_SINCE: (u32, u32) = (1, 21);

const BUILD_HINT: &str = "run .ci/pgbouncer.sh (it builds Debian's pgbouncer 1.24.1 into target/pgbouncer-1.24.1/), \
                          or set TEST_PGBOUNCER to a pgbouncer 1.21 or later";

/// `(major, minor)` from `pgbouncer --version` ("PgBouncer 1.18.0").
pub fn version(binary: &Path) -> Option<(u32, u32)> {
    let output = std::process::Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.lines().find_map(|l| l.strip_prefix("PgBouncer "))?;
    let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// The system's pgbouncer (PATH, then /usr/sbin, which is not on every PATH).
fn system_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("pgbouncer")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path.into_iter().chain([PathBuf::from("/usr/sbin/pgbouncer")]).find(|p| p.is_file())
}

/// A pgbouncer that keeps prepared statements across server connections (1.21+).
pub fn supported() -> PathBuf {
    if let Some(binary) = std::env::var_os("TEST_PGBOUNCER") {
        let binary = PathBuf::from(binary);
        let found = version(&binary).unwrap_or_else(|| panic!("TEST_PGBOUNCER={} does not run", binary.display()));
        assert!(found >= PREPARED_STATEMENTS_SINCE, "TEST_PGBOUNCER={} is {found:?}: {BUILD_HINT}", binary.display());
        return binary;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp);
    let mut built: Vec<(u32, u32, PathBuf)> = std::fs::read_dir(target)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("pgbouncer-"))
        .map(|entry| entry.path().join("bin/pgbouncer"))
        .filter_map(|binary| version(&binary).map(|(major, minor)| (major, minor, binary)))
        .filter(|(major, minor, _)| (*major, *minor) >= PREPARED_STATEMENTS_SINCE)
        .collect();
    built.sort();
    if let Some((_, _, binary)) = built.pop() {
        return binary;
    }
    match system_binary() {
        Some(binary) if version(&binary).is_some_and(|v| v >= PREPARED_STATEMENTS_SINCE) => binary,
        _ => build(target),
    }
}

/// Runs `.ci/pgbouncer.sh` (once per test run: the tests wait for one build) to build
/// pgbouncer 1.24.1 into `target`; returns the binary it prints.
fn build(target: &Path) -> PathBuf {
    static BUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(binary) = built.as_ref() {
        return binary.clone();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/pgbouncer.sh");
    let output = std::process::Command::new("bash")
        .arg(&script)
        .env("CARGO_TARGET_DIR", target)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let printed = String::from_utf8_lossy(&output.stdout);
    let binary = PathBuf::from(printed.lines().last().unwrap_or_default().trim());
    if !output.status.success() || version(&binary).is_none_or(|v| v < PREPARED_STATEMENTS_SINCE) {
        panic!("no pgbouncer 1.21 or later for the tests, and {} could not build one: {BUILD_HINT}", script.display());
    }
    *built = Some(binary.clone());
    binary
}

/// The distribution's pgbouncer, whatever its version.
pub fn system() -> PathBuf {
    system_binary().unwrap_or_else(|| panic!("no system pgbouncer: install it (Debian: apt-get install pgbouncer)"))
}

pub struct Options {
    /// `max_prepared_statements`; `None` leaves it out (pgbouncer before 1.21 has no such setting).
    pub max_prepared_statements: Option<u32>,
    /// `default_pool_size`: server connections for the database.
    pub pool_size: u32,
}

pub struct Pgbouncer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
    database: String,
    user: String,
}

impl Pgbouncer {
    /// Starts `binary` in transaction pooling mode in front of the database at `database_url`
    /// (clients are trusted; the server connection uses the URL's user and password).
    pub async fn start(binary: &Path, database_url: &str, options: Options) -> Pgbouncer {
        let url = url::Url::parse(database_url).expect("a database URL");
        let database = url.path().trim_start_matches('/').to_owned();
        let user = if url.username().is_empty() { "postgres".to_owned() } else { url.username().to_owned() };
        let socket_host = url.query_pairs().find(|(k, _)| k == "host").map(|(_, v)| v.into_owned());
        let host = socket_host.or_else(|| url.host_str().map(str::to_owned)).unwrap_or_else(|| "127.0.0.1".into());
        let mut server = format!("host={host} port={} dbname={database} user={user}", url.port().unwrap_or(5432));
        if let Some(password) = url.password() {
            server.push_str(&format!(" password={password}"));
        }

        let dir = std::env::temp_dir().join(format!("curbpay-pgbouncer-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let account = curbpay::db::embedded::postgres_user_ids().expect("the postgres user to run pgbouncer as");
        // A port picked as free can be taken before pgbouncer binds it: try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut ini = format!(
                "[databases]\n{database} = {server}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir = {dir}\nauth_type = trust\nauth_file = {dir}/users.txt\nadmin_users = {user}\n\
                 pool_mode = transaction\ndefault_pool_size = {pool}\nlogfile = {dir}/pgbouncer.log\n\
                 pidfile = {dir}/pgbouncer.pid\n",
                dir = dir.display(),
                pool = options.pool_size,
            );
            if let Some(n) = options.max_prepared_statements {
                ini.push_str(&format!("max_prepared_statements = {n}\n"));
            }
            std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
            std::fs::write(dir.join("users.txt"), format!("\"{user}\" \"\"\n")).unwrap();
            let _ = std::fs::remove_file(dir.join("pgbouncer.log"));
            if let Some((uid, gid)) = account {
                for path in [dir.clone(), dir.join("pgbouncer.ini"), dir.join("users.txt")] {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
                }
            }

            let mut command = Command::new(binary);
            command
                .arg(dir.join("pgbouncer.ini"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            if let Some((uid, gid)) = account {
                command.uid(uid).gid(gid);
            }
            // SAFETY: prctl only, between fork and exec (after the uid change, which would clear it). It stops
            // pgbouncer when the test's thread ends, even if the test binary is killed before any drop runs.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let mut child = command.spawn().unwrap_or_else(|e| panic!("spawning {}: {e}", binary.display()));
            let pgbouncer = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Err(status);
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    break Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            match pgbouncer {
                Ok(()) => return Pgbouncer { child, dir, port, database, user },
                Err(status) => {
                    let log = std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
                    if !log.contains("Address already in use") {
                        panic!("pgbouncer ({}) exited with {status}:\n{log}", binary.display());
                    }
                }
            }
        }
        panic!("pgbouncer found no free port in 5 tries");
    }

    /// Where clients connect: the test's database through pgbouncer.
    pub fn url(&self) -> String {
        format!("postgres://{}@127.0.0.1:{}/{}", self.user, self.port, self.database)
    }

    /// pgbouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// Runs a `SHOW` command on the admin console; each row as (column, value) pairs.
    pub async fn show(&self, what: &str) -> Vec<Vec<(String, String)>> {
        let url = format!("postgres://{}@127.0.0.1:{}/pgbouncer", self.user, self.port);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("admin console");
        tokio::spawn(connection);
        // The console speaks only the simple query protocol.
        let messages = client.simple_query(&format!("SHOW {what}")).await.expect("SHOW on the admin console");
        messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    row.columns()
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.name().to_owned(), row.get(i).unwrap_or("").to_owned()))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// The rows of `SHOW <what>` about this database.
    pub async fn show_for_database(&self, what: &str) -> Vec<Vec<(String, String)>> {
        let database = self.database.clone();
        self.show(what)
            .await
            .into_iter()
            .filter(|row| row.iter().any(|(k, v)| k == "database" && *v == database))
            .collect()
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
