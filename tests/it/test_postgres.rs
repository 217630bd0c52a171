//! The harness's choice of Postgres (`util::postgres`): `TEST_DATABASE_URL` wins; a server at the default address
//! that does not let us in is passed over for the private cluster, which callers racing each other make exactly
//! once, later callers reuse, and a stopped cluster comes back with its data.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use curbpay::db::embedded::shared;

use crate::util::postgres::choose;

#[tokio::test]
async fn an_explicit_url_wins_without_probing() {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("never-made-{}", uuid::Uuid::new_v4().simple()));
    let explicit = "postgres://tester@127.0.0.1:1/elsewhere".to_owned();
    assert_eq!(choose(Some(explicit.clone()), "postgres://postgres@127.0.0.1:1/postgres", &home).await, explicit);
    assert!(!home.exists(), "no private cluster is made when TEST_DATABASE_URL is set");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_private_cluster_is_made_once_reused_and_restarted() {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("test-postgres-{}", uuid::Uuid::new_v4().simple()));
    let mut cleanup = Cleanup { home: home.clone(), data_dir: None };

    // Something at the default address that accepts connections but is no Postgres that lets us in (like a
    // fresh Debian cluster asking for a password).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let default = format!("postgres://postgres@{}/postgres", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });

    // Four callers at once, each on its own thread and runtime, as separate test binaries would be.
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (default, home) = (default.clone(), home.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(choose(None, &default, &home))
            })
        })
        .collect();
    let urls: Vec<String> =
        tokio::task::spawn_blocking(move || callers.into_iter().map(|c| c.join().unwrap()).collect()).await.unwrap();
    assert_ne!(urls[0], default);
    assert!(urls[0].starts_with("postgres://postgres@127.0.0.1:"), "a loopback TCP URL: {}", urls[0]);
    assert!(urls.iter().all(|url| *url == urls[0]), "one cluster for all callers: {urls:?}");

    let first = shared(&home).await.unwrap();
    cleanup.data_dir = Some(first.data_dir.clone());
    assert!(first.reused, "a running, healthy cluster is reused");
    assert_eq!(first.url, urls[0]);
    let recorded = std::fs::read_to_string(home.join("cluster.path")).unwrap();
    assert_eq!(Path::new(recorded.trim()), first.data_dir);
    assert!(first.data_dir.join("pgdata/PG_VERSION").is_file());
    assert!(!first.data_dir.join("pgdata.initdb").exists(), "no half-made cluster is left");
    execute(&first.url, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)").await;

    // Stopped (a reboot, say): the next caller starts it again on the same data.
    stop(first.pid, &first.data_dir).await;
    let second = shared(&home).await.unwrap();
    assert!(!second.reused);
    assert_ne!(second.pid, first.pid);
    assert_eq!(second.data_dir, first.data_dir);
    let (client, conn) = tokio_postgres::connect(&second.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let v: i32 = client.query_one("SELECT v FROM kept", &[]).await.unwrap().get(0);
    assert_eq!(v, 7);
}

async fn execute(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap();
}

/// Fast shutdown; returns once postgres has removed its `postmaster.pid`.
async fn stop(pid: u32, data_dir: &Path) {
    // SAFETY: signals the postmaster this test started (its pid read back from the cluster).
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while data_dir.join("pgdata/postmaster.pid").exists() {
        assert!(Instant::now() < deadline, "postgres {pid} did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops this test's cluster and removes its folders, also when an assertion failed.
struct Cleanup {
    home: PathBuf,
    data_dir: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let data_dir = (self.data_dir.take())
            .or_else(|| std::fs::read_to_string(self.home.join("cluster.path")).ok().map(|p| p.trim().into()));
        if let Some(data_dir) = data_dir {
            let pgdata = data_dir.join("pgdata");
            let pid_file = pgdata.join("postmaster.pid");
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse::<libc::pid_t>().ok());
            // Only a postmaster that still works in this cluster, never a recycled pid.
            if let Some(pid) =
                pid.filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|d| d == pgdata))
            {
                // SAFETY: signals this test's own postmaster.
                unsafe { libc::kill(pid, libc::SIGINT) };
                let deadline = Instant::now() + Duration::from_secs(30);
                while pid_file.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = std::fs::remove_dir_all(&data_dir);
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
