//! Which Postgres server the tests (and `bench/api.rs`, which includes this file) create their databases on:
//!
//! 1. `TEST_DATABASE_URL`, when set;
//! 2. else `postgres://postgres@127.0.0.1:5432/postgres`, when a server there lets us in (trust auth);
//! 3. else a private cluster under `target/test-postgres/`, started with the same code as `curbpay serve`'s
//!    embedded Postgres, once for every process of the run and left running for the next run to reuse
//!    (`curbpay::db::embedded::shared`).
//!
//! The choice is made once per process, on first use.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The conventional local server, used when it accepts us.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Nothing listening answers a loopback connect at once; a server that does not answer by then is not usable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Postgres server tests run against; each test gets its own database on it.
pub fn server_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let explicit = std::env::var("TEST_DATABASE_URL").ok();
        // Callers may be inside a runtime (and block_on cannot nest): choose on a thread of our own.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(choose(explicit, DEFAULT_URL, &private_cluster_home()))
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
    .clone()
}

/// `target/test-postgres` (of whatever target directory cargo builds into).
pub fn private_cluster_home() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-postgres")
}

/// The server URL: `explicit` if given, else `default` if it accepts a connection, else the private cluster
/// kept in `home`.
pub async fn choose(explicit: Option<String>, default: &str, home: &Path) -> String {
    if let Some(url) = explicit {
        return url;
    }
    if curbpay::db::embedded::accepts(default, PROBE_TIMEOUT).await {
        return default.to_owned();
    }
    match curbpay::db::embedded::shared(home).await {
        Ok(cluster) => cluster.url,
        Err(e) => panic!(
            "no Postgres for the tests: nothing usable at {default}, and the private cluster in {} did not \
             start: {e:#}\nInstall PostgreSQL's server binaries (Debian: postgresql), or set TEST_DATABASE_URL; a \
             damaged private cluster is made anew once its folder (see cluster.path there) is deleted.",
            home.display()
        ),
    }
}
