//! Fresh databases on the tests' Postgres server (see `postgres.rs`), each dropped with
//! its value. Shared by the integration tests and `bench/api.rs`, which includes this
//! file (and `postgres.rs` beside it) with `#[path]`.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::postgres::server_url;

/// The URL of database `name` on the server that `server` (any database's URL) names.
pub fn database_url(server: &str, name: &str) -> String {
    let mut url = url::Url::parse(server).expect("the test server URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A fresh, migrated database, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    /// The superuser's URL of its server.
    server: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::on_server(&server_url()).await
    }

    /// On the server `server` names (a superuser's URL), rather than the tests' usual one.
    pub async fn on_server(server: &str) -> TestDb {
        let db = TestDb::empty_on(server).await;
        curbpay::db::migrate(&db.url).await.expect("migrate test database");
        db
    }

    /// A fresh database without the schema (for a server to migrate).
    pub async fn empty() -> TestDb {
        TestDb::empty_on(&server_url()).await
    }

    async fn empty_on(server: &str) -> TestDb {
        TestDb::empty_named(server, "curbpay_test").await
    }

    /// A fresh, migrated database named `<prefix>_<random>` on the usual server (the
    /// bench's are `curbpay_bench_…`, to tell them apart in `pg_stat_activity`).
    pub async fn with_prefix(prefix: &str) -> TestDb {
        let db = TestDb::empty_named(&server_url(), prefix).await;
        curbpay::db::migrate(&db.url).await.expect("migrate test database");
        db
    }

    async fn empty_named(server: &str, prefix: &str) -> TestDb {
        let name = format!("{prefix}_{}", Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(server).await.expect("connect to the test Postgres");
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create test database");
        let url = database_url(server, &name);
        TestDb { name, url, server: server.to_owned() }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, server) = (self.name.clone(), self.server.clone());
        // Drop runs outside async: use a short-lived runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut admin = AsyncPgConnection::establish(&server).await.ok()?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await.ok()
            })
        })
        .join();
    }
}
