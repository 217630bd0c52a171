//! Ledger checks: every session's totals (its `balance`) equal the sums of its ledger
//! rows, and the ledger is the only thing that moves them. Tests of money call
//! [`assert_ledger_balanced`] when they are done.

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::TestApp;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Sessions whose stored totals differ from their ledger's sums.
const MISMATCHES: &str = "
SELECT count(*) AS n
FROM parking_sessions s
CROSS JOIN LATERAL (
    SELECT
        coalesce(sum(amount) FILTER (WHERE status = 'SUCCEEDED' AND kind IN ('AUTHORIZATION', 'INCREMENT')), 0) AS held,
        coalesce(sum(amount) FILTER (WHERE status = 'SUCCEEDED' AND kind IN ('CAPTURE', 'CHARGE')), 0) AS captured,
        coalesce(sum(amount) FILTER (WHERE status = 'SUCCEEDED' AND kind = 'RELEASE'), 0) AS released,
        coalesce(sum(amount) FILTER (WHERE status = 'SUCCEEDED' AND kind = 'REFUND'), 0) AS refunded,
        coalesce(sum(amount) FILTER (WHERE status = 'PENDING' AND kind = 'REFUND'), 0) AS refund_pending
    FROM payments p WHERE p.session_id = s.id
) l
WHERE s.held_amount <> l.held OR s.captured_amount <> l.captured OR s.released_amount <> l.released
   OR s.refunded_amount <> l.refunded OR s.refund_pending_amount <> l.refund_pending
   OR s.refunded_amount > s.captured_amount
   OR (s.hold_currency IS NOT NULL AND s.captured_amount + s.released_amount > s.held_amount)";

/// Asserts that the ledger and the balance agree for every session of the test's
/// database, and that no row is left PENDING unless `pending_ok`.
pub async fn assert_ledger_balanced(t: &TestApp) {
    let mut conn = AsyncPgConnection::establish(&t.db.url).await.expect("connect to the test database");
    let mismatched: Vec<Count> = diesel::sql_query(MISMATCHES).load(&mut conn).await.expect("ledger check query");
    assert_eq!(mismatched[0].n, 0, "sessions whose balance differs from their ledger");
    let pending: Vec<Count> =
        diesel::sql_query("SELECT count(*) AS n FROM payments WHERE status = 'PENDING' AND kind NOT IN ('DISPUTE')")
            .load(&mut conn)
            .await
            .expect("pending rows query");
    assert_eq!(pending[0].n, 0, "ledger rows left PENDING after the test's requests finished");
}

/// Runs a statement against the test database directly (to prove what the database
/// itself refuses); returns the error text, if any.
pub async fn sql(t: &TestApp, statement: &str) -> Result<usize, String> {
    let mut conn = AsyncPgConnection::establish(&t.db.url).await.expect("connect to the test database");
    diesel::sql_query(statement).execute(&mut conn).await.map_err(|e| e.to_string())
}

/// A single number from the test database.
pub async fn count(t: &TestApp, query: &str) -> i64 {
    let mut conn = AsyncPgConnection::establish(&t.db.url).await.expect("connect to the test database");
    let rows: Vec<Count> = diesel::sql_query(query).load(&mut conn).await.expect("count query");
    rows[0].n
}
