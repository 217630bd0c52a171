//! The mutation (or OAuth callback) that makes each Stripe call: its setup, its run, and
//! whether curbpay recorded it as done.

use axum::http::StatusCode;
use curbpay::auth::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::stripe::{CREATE_APP, Stripe, consent, credentials, stripe_mode};
use crate::util::{CHARGE_SESSION, END_SESSION, START_SESSION, code_of, id};

use super::{LINK_OPERATOR, REISSUE, TOKENIZE, UNLINK, count, execute};

/// The mutation that makes a Stripe call, with the state it needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Mutation {
    /// `createApp` with Stripe credentials.
    CreateApp,
    /// `tokenizeCustomer` for a new `externalRef`, `tok_visa`.
    TokenizeNew,
    /// `tokenizeCustomer` again for `user-1` (made with `tok_visa`): `tok_mastercard`.
    TokenizeAgain,
    /// `startParkingSession` for a customer tokenized with `card`.
    Start { card: &'static str },
    /// `reissueChargeToken` after the session's token expired.
    Reissue,
    /// `chargeSession` of an ended session of a customer tokenized with `card`.
    Charge { card: &'static str },
    /// `GET /connect/callback` after the consent page; retried by consenting again.
    Callback,
    /// `unlinkOperator` of an active link.
    Unlink,
}

/// One cell's state: the server, the double, and the ids the mutation needs.
pub(super) struct Scene {
    pub(super) s: Stripe,
    app_id: Uuid,
    app_token: String,
    operator_id: Uuid,
    operator_token: String,
    customer_id: Uuid,
    link_id: Uuid,
    /// The operator's Stripe account.
    account: String,
    authorization_url: String,
    /// Where the consent page redirected: our `/connect/callback` with state and code.
    callback: String,
    session_id: Uuid,
}

/// `ok`, or the error's code; `ok, but …` when the data is not what it should be.
fn outcome(response: &Value, check: impl FnOnce(&Value) -> Result<(), String>) -> String {
    if response.get("errors").is_some() {
        return code_of(response).unwrap_or_else(|| format!("an error without a code: {response}"));
    }
    match check(&response["data"]) {
        Ok(()) => "ok".to_owned(),
        Err(wrong) => format!("ok, but {wrong}"),
    }
}

fn expect(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// The code behind a `/connect/callback` page's status (`http.rs` `status_of`).
fn page_outcome(status: StatusCode, body: &str) -> String {
    match status.as_u16() {
        200 => "ok",
        400 => "BAD_USER_INPUT",
        401 => "UNAUTHENTICATED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        409 => "CONFLICT",
        502 => "PROCESSOR_ERROR",
        503 => "UNAVAILABLE",
        500 => "INTERNAL",
        other => return format!("HTTP {other}: {body}"),
    }
    .to_owned()
}

impl Scene {
    async fn create_app(&mut self) {
        let t = &self.s.t;
        let data = t.ok(&t.admin(), CREATE_APP, json!({ "s": credentials(&self.s.platform), "fee": 250 })).await;
        self.app_id = id(&data["createApp"]["app"]["id"]);
        self.app_token = t.token(Role::App(self.app_id));
    }

    async fn create_operator_and_link(&mut self) {
        let t = &self.s.t;
        self.operator_id = t.create_operator("Garages").await;
        self.operator_token = t.token(Role::Operator(self.operator_id));
        let data = t.ok(&t.admin(), LINK_OPERATOR, json!({ "a": self.app_id, "o": self.operator_id })).await;
        self.link_id = id(&data["linkOperator"]["link"]["id"]);
        self.authorization_url = data["linkOperator"]["link"]["authorizationUrl"].as_str().unwrap().to_owned();
        self.account = format!("acct_op{}", &Uuid::new_v4().simple().to_string()[..12]);
        self.s.double.next_authorization(&self.account);
        self.callback = consent(&self.authorization_url).await;
    }

    async fn complete_link(&self) {
        let (status, body, _) = self.s.t.follow(&self.callback).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn tokenize(&mut self, card: &str) {
        let data = self.s.t.ok(&self.app_token, TOKENIZE, json!({ "r": "user-1", "t": card })).await;
        self.customer_id = id(&data["tokenizeCustomer"]["customer"]["id"]);
    }

    async fn start_session(&mut self) {
        let variables =
            json!({ "c": self.customer_id, "o": self.operator_id, "k": "fault-cell", "z": "Z-1", "p": "PLATE" });
        let data = self.s.t.ok(&self.app_token, START_SESSION, variables).await;
        self.session_id = id(&data["startParkingSession"]["session"]["id"]);
    }
}

impl Mutation {
    /// Fresh state, up to the mutation.
    pub(super) async fn setup(self) -> Scene {
        let mut scene = Scene {
            s: stripe_mode().await,
            app_id: Uuid::nil(),
            app_token: String::new(),
            operator_id: Uuid::nil(),
            operator_token: String::new(),
            customer_id: Uuid::nil(),
            link_id: Uuid::nil(),
            account: String::new(),
            authorization_url: String::new(),
            callback: String::new(),
            session_id: Uuid::nil(),
        };
        if self == Mutation::CreateApp {
            return scene;
        }
        scene.create_app().await;
        match self {
            Mutation::CreateApp | Mutation::TokenizeNew => {}
            Mutation::TokenizeAgain => scene.tokenize("tok_visa").await,
            Mutation::Callback => scene.create_operator_and_link().await,
            Mutation::Unlink | Mutation::Start { .. } | Mutation::Reissue | Mutation::Charge { .. } => {
                scene.create_operator_and_link().await;
                scene.complete_link().await;
                let card = match self {
                    Mutation::Start { card } | Mutation::Charge { card } => card,
                    _ => "tok_visa",
                };
                scene.tokenize(card).await;
                match self {
                    Mutation::Reissue => {
                        scene.start_session().await;
                        execute(&scene.s.t, "UPDATE charge_tokens SET expires_at = now() - interval '1 second'").await;
                    }
                    Mutation::Charge { .. } => {
                        scene.start_session().await;
                        let end = json!({ "s": scene.session_id, "a": 700, "c": "usd" });
                        scene.s.t.ok(&scene.app_token, END_SESSION, end).await;
                    }
                    _ => {}
                }
            }
        }
        scene
    }

    /// Runs the mutation (`retry`: again, after a failure); `ok` or the code.
    pub(super) async fn run(self, scene: &mut Scene, retry: bool) -> String {
        let t = &scene.s.t;
        match self {
            Mutation::CreateApp => {
                let response = t
                    .post(Some(&t.admin()), CREATE_APP, json!({ "s": credentials(&scene.s.platform), "fee": 250 }))
                    .await;
                outcome(&response, |data| {
                    let account = &data["createApp"]["app"]["processorAccountId"];
                    expect(*account == json!(scene.s.platform.account_id), || format!("processorAccountId {account}"))
                })
            }
            Mutation::TokenizeNew | Mutation::TokenizeAgain => {
                let (card, created, last4) = match self {
                    Mutation::TokenizeNew => ("tok_visa", true, "4242"),
                    _ => ("tok_mastercard", false, "4444"),
                };
                let response = t.post(Some(&scene.app_token), TOKENIZE, json!({ "r": "user-1", "t": card })).await;
                outcome(&response, |data| {
                    let payload = &data["tokenizeCustomer"];
                    expect(payload["created"] == created && payload["customer"]["card"]["last4"] == last4, || {
                        format!("{payload} (expected created {created}, last4 {last4})")
                    })
                })
            }
            Mutation::Start { .. } => {
                let variables = json!({ "c": scene.customer_id, "o": scene.operator_id, "k": "fault-cell", "z": "Z-1", "p": "PLATE" });
                let response = t.post(Some(&scene.app_token), START_SESSION, variables).await;
                outcome(&response, |data| {
                    let payload = &data["startParkingSession"];
                    let ok = payload["replayed"] == retry && payload["session"]["chargeToken"]["status"] == "ISSUED";
                    expect(ok, || format!("{payload} (expected replayed {retry}, token ISSUED)"))
                })
            }
            Mutation::Reissue => {
                let response = t.post(Some(&scene.app_token), REISSUE, json!({ "s": scene.session_id })).await;
                outcome(&response, |data| {
                    let status = &data["reissueChargeToken"]["chargeToken"]["status"];
                    expect(*status == "ISSUED", || format!("token {status}"))
                })
            }
            Mutation::Charge { .. } => {
                let response =
                    t.post(Some(&scene.operator_token), CHARGE_SESSION, json!({ "s": scene.session_id })).await;
                outcome(&response, |data| {
                    let payload = &data["chargeSession"];
                    let ok = payload["succeeded"] == true && payload["session"]["status"] == "CHARGED";
                    expect(ok, || format!("{payload}"))
                })
            }
            Mutation::Callback => {
                if retry {
                    // The operator goes through the consent page again: a fresh code.
                    scene.s.double.next_authorization(&scene.account);
                    scene.callback = consent(&scene.authorization_url).await;
                }
                let (status, body, _) = scene.s.t.follow(&scene.callback).await;
                page_outcome(status, &body)
            }
            Mutation::Unlink => {
                let response = t.post(Some(&scene.app_token), UNLINK, json!({ "l": scene.link_id })).await;
                outcome(&response, |data| {
                    let status = &data["unlinkOperator"]["link"]["status"];
                    expect(*status == "REVOKED", || format!("link {status}"))
                })
            }
        }
    }

    /// 1 once curbpay has recorded the mutation as done, 0 before.
    pub(super) async fn done(self, scene: &Scene) -> i64 {
        let query = match self {
            Mutation::CreateApp => "SELECT count(*) AS n FROM apps",
            Mutation::TokenizeNew => "SELECT count(*) AS n FROM customers WHERE processor_customer_id IS NOT NULL",
            Mutation::TokenizeAgain => "SELECT count(*) AS n FROM customers WHERE card_last4 = '4444'",
            Mutation::Start { .. } | Mutation::Reissue => {
                "SELECT count(*) AS n FROM charge_tokens WHERE status = 'ISSUED'"
            }
            Mutation::Charge { .. } => "SELECT count(*) AS n FROM parking_sessions WHERE status = 'CHARGED'",
            Mutation::Callback => "SELECT count(*) AS n FROM links WHERE status = 'ACTIVE'",
            Mutation::Unlink => "SELECT count(*) AS n FROM links WHERE status = 'REVOKED'",
        };
        count(&scene.s.t, query).await
    }

    /// What Stripe must hold in the end, beyond object counts.
    pub(super) fn stripe_state(self, scene: &Scene) -> Result<(), String> {
        let connected = scene.s.double.is_connected(&scene.s.platform.account_id, &scene.account);
        match self {
            Mutation::Callback => expect(connected, || "the operator's account is not connected at Stripe".to_owned()),
            Mutation::Unlink => expect(!connected, || "the operator's account is still connected at Stripe".to_owned()),
            _ => Ok(()),
        }
    }
}
