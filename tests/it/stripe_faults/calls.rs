//! One test per Stripe call curbpay makes: the call, the mutation that makes it, and its rows.

use std::time::Duration;

use crate::util::stripe::Fault;

use super::{Endpoint, Keys, Mutation, Row, matrix, persistent, retried_once, row, saved_500};

/// Rows of a create reconciled by search (customers, charges, payment intents).
fn reconciled_by_search() -> Vec<Row> {
    let mut rows = retried_once("a1", 1);
    rows.push(row("drop after success", vec![Fault::DropAfterSuccess]).ok(&["0 a1", "200 a1 replayed"]));
    rows.push(row("saved 500 after success", vec![Fault::AfterSuccess500]).ok(&["500 a1"]).searches(Some(1)));
    rows.push(row("saved 500, nothing made", vec![saved_500()]).ok(&["500 a1", "200 a2"]).searches(Some(1)));
    // Faults the transport retries (a should-retry 500, a drop, a timeout) keep the
    // same key through every try: Stripe may still be running the first one, so only a
    // saved 500 (Should-Retry false or absent) is reconciled and moved to a new key.
    rows.extend(persistent("a1", 1));
    // Stripe's search lags behind writes, so reconciliation also reads the list of
    // recent objects, which is consistent: an object made a moment ago is found, never
    // made twice, and a charge's single-use token is never sent again.
    let mut lagging =
        row("saved 500 after success, search lagging 1 s", vec![Fault::AfterSuccess500]).ok(&["500 a1"]).searches(None);
    lagging.search_lag = Some(Duration::from_secs(1));
    rows.push(lagging);
    rows
}

/// Rows of a token request: a saved 500 is retried under a new key (README: "Tokens
/// carry no metadata; an unused one simply expires").
fn new_key_on_saved_500(made: usize) -> Vec<Row> {
    let mut rows = retried_once("a1", made);
    rows.push(row("drop after success", vec![Fault::DropAfterSuccess]).ok(&["0 a1", "200 a1 replayed"]).objects(made));
    // By design the first token stays at Stripe unused (it cannot be found again): two
    // objects, of which curbpay hands off only the second. (A token expires unused; a
    // cloned PaymentMethod does not: it stays on the operator's account.)
    rows.push(row("saved 500 after success", vec![Fault::AfterSuccess500]).ok(&["500 a1", "200 a2"]).objects(made + 1));
    rows.push(row("saved 500, nothing made", vec![saved_500()]).ok(&["500 a1", "200 a2"]).objects(made));
    rows.extend(persistent("a1", made));
    rows
}

/// Rows of a GET: no key, nothing saved at Stripe, a saved-style 500 is not retried.
fn get_rows(made: usize) -> Vec<Row> {
    let mut rows = retried_once("-", made);
    rows.push(row("drop after success", vec![Fault::DropAfterSuccess]).ok(&["0 -", "200 -"]).objects(made));
    for (label, fault) in
        [("500 Should-Retry false after success", Fault::AfterSuccess500), ("500 Should-Retry false", saved_500())]
    {
        rows.push(row(label, vec![fault]).fails("UNAVAILABLE", &["500 -"]).then_retry(&["200 -"]).objects(made));
    }
    rows.extend(persistent("-", made));
    rows
}

#[tokio::test]
async fn get_account_by_create_app() {
    let endpoint = Endpoint {
        name: "GET /v1/account",
        method: "GET",
        path: "/v1/account",
        mutation: Mutation::CreateApp,
        keys: Keys::None,
        kind: None,
        search: None,
    };
    matrix(endpoint, get_rows(0)).await;
}

#[tokio::test]
async fn post_customers_by_tokenize_customer_new() {
    let endpoint = Endpoint {
        name: "POST /v1/customers",
        method: "POST",
        path: "/v1/customers",
        mutation: Mutation::TokenizeNew,
        keys: Keys::Attempt("customer:"),
        kind: Some("customer"),
        search: Some("/v1/customers/search"),
    };
    let mut rows = reconciled_by_search();
    // The first try is still running at Stripe when it times out (2 s); the other tries
    // are dropped. All tries keep the key, so the mutation answers UNAVAILABLE, the
    // running request finishes, and a retry gets its saved answer: one customer.
    let mut timeout = row(
        "timeout while Stripe still runs, then drops",
        vec![Fault::Delay(Duration::from_millis(2500)), Fault::Drop, Fault::Drop, Fault::Drop],
    )
    .fails("UNAVAILABLE", &["0 a1", "0 a1", "0 a1", "200 a1"])
    .then_retry(&["200 a1 replayed"]);
    timeout.settle = Some(Duration::from_millis(2800));
    rows.push(timeout);
    matrix(endpoint, rows).await;
}

#[tokio::test]
async fn post_customer_by_tokenize_customer_again() {
    let endpoint = Endpoint {
        name: "POST /v1/customers/{id}",
        method: "POST",
        path: "/v1/customers/cus_",
        mutation: Mutation::TokenizeAgain,
        keys: Keys::Plain("customer-card:"),
        kind: Some("customer"),
        search: Some("/v1/customers/search"),
    };
    let mut rows = retried_once("a1", 0);
    rows.push(row("drop after success", vec![Fault::DropAfterSuccess]).ok(&["0 a1", "200 a1 replayed"]).objects(0));
    // A saved 500 on a card replacement: a card token Stripe marks as used was spent by
    // this update (the customer is read back); otherwise the update is sent again under
    // the next attempt's key, in the same mutation.
    rows.push(row("saved 500 after success", vec![Fault::AfterSuccess500]).ok(&["500 a1", "200 a2"]).objects(0));
    rows.push(row("saved 500, nothing made", vec![saved_500()]).ok(&["500 a1", "200 a2"]).objects(0));
    rows.extend(persistent("a1", 0));
    matrix(endpoint, rows).await;
}

#[tokio::test]
async fn get_customer_by_start_parking_session() {
    let endpoint = Endpoint {
        name: "GET /v1/customers/{id}",
        method: "GET",
        path: "/v1/customers/cus_",
        mutation: Mutation::Start { card: "tok_visa" },
        keys: Keys::None,
        kind: Some("token"),
        search: None,
    };
    matrix(endpoint, get_rows(1)).await;
}

#[tokio::test]
async fn get_customer_by_reissue_charge_token() {
    let endpoint = Endpoint {
        name: "GET /v1/customers/{id} (reissue)",
        method: "GET",
        path: "/v1/customers/cus_",
        mutation: Mutation::Reissue,
        keys: Keys::None,
        kind: Some("token"),
        search: None,
    };
    matrix(endpoint, get_rows(1)).await;
}

#[tokio::test]
async fn post_tokens_by_start_parking_session() {
    let endpoint = Endpoint {
        name: "POST /v1/tokens",
        method: "POST",
        path: "/v1/tokens",
        mutation: Mutation::Start { card: "tok_visa" },
        keys: Keys::Attempt("charge-token:"),
        kind: Some("token"),
        search: None,
    };
    matrix(endpoint, new_key_on_saved_500(1)).await;
}

#[tokio::test]
async fn post_tokens_by_reissue_charge_token() {
    let endpoint = Endpoint {
        name: "POST /v1/tokens (reissue)",
        method: "POST",
        path: "/v1/tokens",
        mutation: Mutation::Reissue,
        keys: Keys::Attempt("charge-token:"),
        kind: Some("token"),
        search: None,
    };
    matrix(endpoint, new_key_on_saved_500(1)).await;
}

#[tokio::test]
async fn post_payment_methods_by_start_parking_session() {
    let endpoint = Endpoint {
        name: "POST /v1/payment_methods",
        method: "POST",
        path: "/v1/payment_methods",
        mutation: Mutation::Start { card: "pm_card_visa" },
        keys: Keys::Attempt("charge-token:"),
        kind: Some("payment_method"),
        search: None,
    };
    matrix(endpoint, new_key_on_saved_500(1)).await;
}

#[tokio::test]
async fn post_charges_by_charge_session() {
    let endpoint = Endpoint {
        name: "POST /v1/charges",
        method: "POST",
        path: "/v1/charges",
        mutation: Mutation::Charge { card: "tok_visa" },
        keys: Keys::Attempt("charge:"),
        kind: Some("charge"),
        search: Some("/v1/charges/search"),
    };
    matrix(endpoint, reconciled_by_search()).await;
}

#[tokio::test]
async fn post_payment_intents_by_charge_session() {
    let endpoint = Endpoint {
        name: "POST /v1/payment_intents",
        method: "POST",
        path: "/v1/payment_intents",
        mutation: Mutation::Charge { card: "pm_card_visa" },
        keys: Keys::Attempt("charge:"),
        kind: Some("payment_intent"),
        // Payment intents are looked up by listing the recent ones (a consistent read).
        search: Some("/v1/payment_intents"),
    };
    matrix(endpoint, reconciled_by_search()).await;
}

// Connect OAuth (src/processor/stripe/oauth.rs `post`) carries no Idempotency-Key: every
// failure, 5xx included whatever its Should-Retry, is retried up to MAX_ATTEMPTS times.
// That is safe for both calls: a code can be exchanged only once (a retry after a lost
// exchange is refused and curbpay asks for a new authorization: UNAVAILABLE), and
// deauthorizing an account that is already disconnected answers `invalid_client`, which
// `deauthorize` counts as done.

#[tokio::test]
async fn post_oauth_token_by_connect_callback() {
    let endpoint = Endpoint {
        name: "POST /oauth/token",
        method: "POST",
        path: "/oauth/token",
        mutation: Mutation::Callback,
        keys: Keys::None,
        kind: None,
        search: None,
    };
    let mut rows = retried_once("-", 0);
    // The code is spent but the answer lost: the retry is refused (`invalid_grant`), the
    // link stays PENDING, and the operator consents again (the retry here): linked.
    rows.push(
        row("drop after success", vec![Fault::DropAfterSuccess])
            .fails("UNAVAILABLE", &["0 -", "400 -"])
            .then_retry(&["200 -"]),
    );
    rows.push(
        row("500 Should-Retry false after success", vec![Fault::AfterSuccess500])
            .fails("UNAVAILABLE", &["500 -", "400 -"])
            .then_retry(&["200 -"]),
    );
    rows.push(row("500 Should-Retry false", vec![saved_500()]).ok(&["500 -", "200 -"]));
    rows.extend(persistent("-", 0));
    matrix(endpoint, rows).await;
}

#[tokio::test]
async fn post_oauth_deauthorize_by_unlink_operator() {
    let endpoint = Endpoint {
        name: "POST /oauth/deauthorize",
        method: "POST",
        path: "/oauth/deauthorize",
        mutation: Mutation::Unlink,
        keys: Keys::None,
        kind: None,
        search: None,
    };
    let mut rows = retried_once("-", 0);
    // The account is disconnected but the answer lost: the retry finds it disconnected
    // (`invalid_client`), which counts as done.
    rows.push(row("drop after success", vec![Fault::DropAfterSuccess]).ok(&["0 -", "400 -"]));
    rows.push(row("500 Should-Retry false after success", vec![Fault::AfterSuccess500]).ok(&["500 -", "400 -"]));
    rows.push(row("500 Should-Retry false", vec![saved_500()]).ok(&["500 -", "200 -"]));
    rows.extend(persistent("-", 0));
    matrix(endpoint, rows).await;
}
