//! Mutations: what each caller may and may not change, and that read-only tokens change nothing.

use serde_json::json;
use uuid::Uuid;

use super::{Cell, Expect::*, NOBODY, Who::*, Worlds, cell, run, run_concurrently, worlds};

const CREATE_APP: &str = "mutation { createApp(input: {name: \"Intruder\"}) { app { id } } }";
const CREATE_OPERATOR: &str = "mutation { createOperator(input: {name: \"Intruder\"}) { operator { id } } }";
const LINK_OPERATOR: &str =
    "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id status } } }";
const COMPLETE_LINK: &str =
    "mutation($l: ID!) { completeLink(input: {linkId: $l, authorizationCode: \"ac_guess\"}) { link { id status } } }";
const UNLINK: &str = "mutation($l: ID!) { unlinkOperator(input: {linkId: $l}) { link { id status } } }";
const ACCEPT_ACCOUNT: &str = "mutation($l: ID!) { acceptLinkAccount(input: {linkId: $l}) { link { id status } } }";
const TOKENIZE: &str = "mutation { tokenizeCustomer(input: {externalRef: \"new-user\", cardToken: \"tok_visa\"}) { created customer { externalRef } } }";
const START: &str = "mutation($c: ID!, $o: ID!) {
  startParkingSession(input: {customerId: $c, operatorId: $o, zone: \"Z-9\", vehiclePlate: \"NEW-1\", idempotencyKey: \"matrix\"}) { replayed session { status } }
}";
const END: &str = "mutation($s: ID!) { endParkingSession(input: {sessionId: $s, amount: {amount: 250, currency: \"usd\"}}) { session { id status amount { amount currency } } } }";
const CHARGE: &str = "mutation($s: ID!) { chargeSession(input: {sessionId: $s}) { succeeded session { id status } } }";
const REISSUE: &str = "mutation($s: ID!) { reissueChargeToken(input: {sessionId: $s}) { chargeToken { id token } } }";
const ACKNOWLEDGE: &str =
    "mutation($t: ID!) { acknowledgeChargeToken(input: {chargeTokenId: $t}) { chargeToken { id status } } }";

/// Everything a mutation could change, as the admin sees it.
const SNAPSHOT: &str = "{
  apps { totalCount } operators { totalCount }
  links { nodes { id status updatedAt failureReason } }
  customers { nodes { id updatedAt card { last4 } } }
  parkingSessions { nodes { id status endedAt amount { amount } chargeTokens { id status acknowledgedAt voidedAt } } }
}";

fn denied_mutation_cells(w: &Worlds) -> Vec<Cell> {
    let (a, b, x, y) = (w.app_a, w.app_b, w.op_x, w.op_y);
    let (ax, by, az) = (w.link_ax, w.link_by, w.link_az);
    let (ca, cb, sa, sb, ta, tb) = (w.cust_a, w.cust_b, w.sess_a, w.sess_b, w.tok_a, w.tok_b);
    let none = json!({});
    let l = |v: Uuid| json!({ "l": v });
    let s = |v: Uuid| json!({ "s": v });
    let t = |v: Uuid| json!({ "t": v });
    let mut cells = vec![
        // createApp / createOperator: admin only
        cell("createApp", AppA, CREATE_APP, none.clone(), Code("FORBIDDEN")),
        cell("createApp", OpX, CREATE_APP, none.clone(), Code("FORBIDDEN")),
        cell("createOperator", AppB, CREATE_OPERATOR, none.clone(), Code("FORBIDDEN")),
        cell("createOperator", OpY, CREATE_OPERATOR, none.clone(), Code("FORBIDDEN")),
        // linkOperator: admin or the app itself; another app's id answers like a missing one
        cell("linkOperator(A, X)", AppB, LINK_OPERATOR, json!({ "a": a, "o": x }), Code("NOT_FOUND"))
            .same_as_missing("a"),
        cell("linkOperator(A, Y)", AppB, LINK_OPERATOR, json!({ "a": a, "o": y }), Code("NOT_FOUND"))
            .same_as_missing("a"),
        cell("linkOperator(B, X)", AppA, LINK_OPERATOR, json!({ "a": b, "o": x }), Code("NOT_FOUND"))
            .same_as_missing("a"),
        cell("linkOperator(A, X)", OpX, LINK_OPERATOR, json!({ "a": a, "o": x }), Code("FORBIDDEN"))
            .same_as_missing("a"),
        cell("linkOperator(B, Y)", OpX, LINK_OPERATOR, json!({ "a": b, "o": y }), Code("FORBIDDEN"))
            .same_as_missing("a"),
        cell(
            "linkOperator(A, missing)",
            Admin,
            LINK_OPERATOR,
            json!({ "a": a, "o": Uuid::new_v4() }),
            Code("NOT_FOUND"),
        ),
        cell(
            "linkOperator(missing, X)",
            Admin,
            LINK_OPERATOR,
            json!({ "a": Uuid::new_v4(), "o": x }),
            Code("NOT_FOUND"),
        ),
        // completeLink / unlinkOperator on someone else's link
        cell("completeLink(AX)", AppB, COMPLETE_LINK, l(ax), Code("NOT_FOUND")).same_as_missing("l"),
        cell("completeLink(AX)", OpY, COMPLETE_LINK, l(ax), Code("NOT_FOUND")).same_as_missing("l"),
        cell("completeLink(AZ)", OpX, COMPLETE_LINK, l(az), Code("NOT_FOUND")).same_as_missing("l"),
        cell("completeLink(BY)", AppA, COMPLETE_LINK, l(by), Code("NOT_FOUND")).same_as_missing("l"),
        // Only the link's operator (or an admin) authorizes: never the app that asked.
        cell("completeLink(AZ) by the app", AppA, COMPLETE_LINK, l(az), Code("FORBIDDEN")),
        cell("completeLink(AX) already active, by the app", AppA, COMPLETE_LINK, l(ax), Code("FORBIDDEN")),
        // acceptLinkAccount: admin only; a link without a held account is a conflict.
        cell("acceptLinkAccount(AZ)", AppA, ACCEPT_ACCOUNT, l(az), Code("FORBIDDEN")).same_as_missing("l"),
        cell("acceptLinkAccount(AZ)", OpZ, ACCEPT_ACCOUNT, l(az), Code("FORBIDDEN")).same_as_missing("l"),
        cell("acceptLinkAccount(AZ) holds no account", Admin, ACCEPT_ACCOUNT, l(az), Code("CONFLICT")),
        cell("acceptLinkAccount(AX) active", Admin, ACCEPT_ACCOUNT, l(ax), Code("CONFLICT")),
        cell("acceptLinkAccount(missing)", Admin, ACCEPT_ACCOUNT, l(Uuid::new_v4()), Code("NOT_FOUND")),
        cell("unlinkOperator(AX)", AppB, UNLINK, l(ax), Code("NOT_FOUND")).same_as_missing("l"),
        cell("unlinkOperator(AX)", OpY, UNLINK, l(ax), Code("NOT_FOUND")).same_as_missing("l"),
        cell("unlinkOperator(AX)", OpZ, UNLINK, l(ax), Code("NOT_FOUND")).same_as_missing("l"),
        cell("unlinkOperator(BY)", AppA, UNLINK, l(by), Code("NOT_FOUND")).same_as_missing("l"),
        cell("unlinkOperator(BY)", OpX, UNLINK, l(by), Code("NOT_FOUND")).same_as_missing("l"),
        // tokenizeCustomer: role app only
        cell("tokenizeCustomer", Admin, TOKENIZE, none.clone(), Code("FORBIDDEN")),
        cell("tokenizeCustomer", OpX, TOKENIZE, none.clone(), Code("FORBIDDEN")),
        // startParkingSession: role app, its own customer
        cell("startParkingSession(cust b @ X)", AppA, START, json!({ "c": cb, "o": x }), Code("NOT_FOUND"))
            .same_as_missing("c"),
        cell("startParkingSession(cust a @ Y)", AppB, START, json!({ "c": ca, "o": y }), Code("NOT_FOUND"))
            .same_as_missing("c"),
        cell("startParkingSession(cust a @ X)", AppB, START, json!({ "c": ca, "o": x }), Code("NOT_FOUND"))
            .same_as_missing("c"),
        cell("startParkingSession(cust a @ X)", Admin, START, json!({ "c": ca, "o": x }), Code("FORBIDDEN"))
            .same_as_missing("c"),
        cell("startParkingSession(cust a @ X)", OpX, START, json!({ "c": ca, "o": x }), Code("FORBIDDEN"))
            .same_as_missing("c"),
        cell("startParkingSession(own cust @ unlinked Y)", AppA, START, json!({ "c": ca, "o": y }), Code("CONFLICT")),
        // endParkingSession / chargeSession / reissueChargeToken on another tenant's session
        cell("endParkingSession(a)", AppB, END, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("endParkingSession(a)", OpY, END, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("endParkingSession(a)", OpZ, END, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("endParkingSession(b)", AppA, END, s(sb), Code("NOT_FOUND")).same_as_missing("s"),
        cell("endParkingSession(b)", OpX, END, s(sb), Code("NOT_FOUND")).same_as_missing("s"),
        cell("chargeSession(a)", AppB, CHARGE, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("chargeSession(a)", OpY, CHARGE, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("chargeSession(a)", OpZ, CHARGE, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("chargeSession(b)", OpX, CHARGE, s(sb), Code("NOT_FOUND")).same_as_missing("s"),
        cell("chargeSession(a) by its own app", AppA, CHARGE, s(sa), Code("FORBIDDEN")),
        cell("chargeSession(b) by its own app", AppB, CHARGE, s(sb), Code("FORBIDDEN")),
        cell("reissueChargeToken(a)", AppB, REISSUE, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("reissueChargeToken(a)", OpY, REISSUE, s(sa), Code("NOT_FOUND")).same_as_missing("s"),
        cell("reissueChargeToken(b)", AppA, REISSUE, s(sb), Code("NOT_FOUND")).same_as_missing("s"),
        cell("reissueChargeToken(b)", OpX, REISSUE, s(sb), Code("NOT_FOUND")).same_as_missing("s"),
        // acknowledgeChargeToken: role operator, its own token
        cell("acknowledgeChargeToken(a)", OpY, ACKNOWLEDGE, t(ta), Code("NOT_FOUND")).same_as_missing("t"),
        cell("acknowledgeChargeToken(a)", OpZ, ACKNOWLEDGE, t(ta), Code("NOT_FOUND")).same_as_missing("t"),
        cell("acknowledgeChargeToken(b)", OpX, ACKNOWLEDGE, t(tb), Code("NOT_FOUND")).same_as_missing("t"),
        cell("acknowledgeChargeToken(a) by its app", AppA, ACKNOWLEDGE, t(ta), Code("FORBIDDEN")).same_as_missing("t"),
        cell("acknowledgeChargeToken(a)", AppB, ACKNOWLEDGE, t(ta), Code("FORBIDDEN")).same_as_missing("t"),
        cell("acknowledgeChargeToken(a)", Admin, ACKNOWLEDGE, t(ta), Code("FORBIDDEN")).same_as_missing("t"),
    ];
    for who in NOBODY {
        cells.extend([
            cell("createApp", who, CREATE_APP, none.clone(), Code("UNAUTHENTICATED")),
            cell("createOperator", who, CREATE_OPERATOR, none.clone(), Code("UNAUTHENTICATED")),
            cell("linkOperator(A, X)", who, LINK_OPERATOR, json!({ "a": a, "o": x }), Code("UNAUTHENTICATED"))
                .same_as_missing("a"),
            cell("completeLink(AX)", who, COMPLETE_LINK, l(ax), Code("UNAUTHENTICATED")).same_as_missing("l"),
            cell("unlinkOperator(AX)", who, UNLINK, l(ax), Code("UNAUTHENTICATED")).same_as_missing("l"),
            cell("acceptLinkAccount(AZ)", who, ACCEPT_ACCOUNT, l(az), Code("UNAUTHENTICATED")).same_as_missing("l"),
            cell("tokenizeCustomer", who, TOKENIZE, none.clone(), Code("UNAUTHENTICATED")),
            cell("startParkingSession", who, START, json!({ "c": ca, "o": x }), Code("UNAUTHENTICATED"))
                .same_as_missing("c"),
            cell("endParkingSession(a)", who, END, s(sa), Code("UNAUTHENTICATED")).same_as_missing("s"),
            cell("chargeSession(a)", who, CHARGE, s(sa), Code("UNAUTHENTICATED")).same_as_missing("s"),
            cell("reissueChargeToken(a)", who, REISSUE, s(sa), Code("UNAUTHENTICATED")).same_as_missing("s"),
            cell("acknowledgeChargeToken(a)", who, ACKNOWLEDGE, t(ta), Code("UNAUTHENTICATED")).same_as_missing("t"),
        ]);
    }
    cells
}

/// The parties that may act do (in this order: later cells depend on earlier ones).
fn allowed_mutation_cells(w: &Worlds) -> Vec<Cell> {
    let (a, b, x, y) = (w.app_a, w.app_b, w.op_x, w.op_y);
    let (ax, by, az) = (w.link_ax, w.link_by, w.link_az);
    let (ca, sa, sb, ta) = (w.cust_a, w.sess_a, w.sess_b, w.tok_a);
    let none = json!({});
    let link = |field: &str, id: Uuid, status: &str| json!({ field: { "link": { "id": id, "status": status } } });
    let ended = |s: Uuid| json!({ "endParkingSession": { "session": { "id": s, "status": "ENDED", "amount": { "amount": 250, "currency": "USD" } } } });
    let charged =
        |s: Uuid| json!({ "chargeSession": { "succeeded": true, "session": { "id": s, "status": "CHARGED" } } });
    vec![
        cell("createApp", Admin, CREATE_APP, none.clone(), Present("/createApp/app/id")),
        cell("createOperator", Admin, CREATE_OPERATOR, none.clone(), Present("/createOperator/operator/id")),
        cell(
            "linkOperator(A, X) already active",
            AppA,
            LINK_OPERATOR,
            json!({ "a": a, "o": x }),
            Data(link("linkOperator", ax, "ACTIVE")),
        ),
        cell(
            "linkOperator(B, Y) already active",
            Admin,
            LINK_OPERATOR,
            json!({ "a": b, "o": y }),
            Data(link("linkOperator", by, "ACTIVE")),
        ),
        cell(
            "completeLink(AX) already active",
            OpX,
            COMPLETE_LINK,
            json!({ "l": ax }),
            Data(link("completeLink", ax, "ACTIVE")),
        ),
        cell(
            "tokenizeCustomer",
            AppA,
            TOKENIZE,
            none.clone(),
            Data(json!({ "tokenizeCustomer": { "created": true, "customer": { "externalRef": "new-user" } } })),
        ),
        cell(
            "startParkingSession",
            AppA,
            START,
            json!({ "c": ca, "o": x }),
            Data(json!({ "startParkingSession": { "replayed": false, "session": { "status": "ACTIVE" } } })),
        ),
        // Authorized, then stopped by the state: the token is still valid / the session active.
        cell("reissueChargeToken(a) passes authorization", AppA, REISSUE, json!({ "s": sa }), Code("CONFLICT")),
        cell("reissueChargeToken(a) passes authorization", OpX, REISSUE, json!({ "s": sa }), Code("CONFLICT")),
        cell("chargeSession(a) passes authorization", OpX, CHARGE, json!({ "s": sa }), Code("CONFLICT")),
        cell(
            "acknowledgeChargeToken(a)",
            OpX,
            ACKNOWLEDGE,
            json!({ "t": ta }),
            Data(json!({ "acknowledgeChargeToken": { "chargeToken": { "id": ta, "status": "ACKNOWLEDGED" } } })),
        ),
        cell("endParkingSession(a) by its operator", OpX, END, json!({ "s": sa }), Data(ended(sa))),
        cell("endParkingSession(a) again by its app", AppA, END, json!({ "s": sa }), Data(ended(sa))),
        cell("endParkingSession(b) by admin", Admin, END, json!({ "s": sb }), Data(ended(sb))),
        cell("chargeSession(a) by its operator", OpX, CHARGE, json!({ "s": sa }), Data(charged(sa))),
        cell("chargeSession(b) by admin", Admin, CHARGE, json!({ "s": sb }), Data(charged(sb))),
        cell(
            "unlinkOperator(AZ) by its operator",
            OpZ,
            UNLINK,
            json!({ "l": az }),
            Data(link("unlinkOperator", az, "REVOKED")),
        ),
        cell(
            "unlinkOperator(BY) by its app",
            AppB,
            UNLINK,
            json!({ "l": by }),
            Data(link("unlinkOperator", by, "REVOKED")),
        ),
    ]
}

#[tokio::test]
async fn mutation_matrix() {
    let w = worlds().await;
    let admin = w.t.admin();
    let before = w.t.ok(&admin, SNAPSHOT, json!({})).await;
    // Concurrently: a refusal that wrongly changed something shows in the snapshot.
    run_concurrently(&w, denied_mutation_cells(&w)).await;
    // No refused mutation changed anything.
    let after = w.t.ok(&admin, SNAPSHOT, json!({})).await;
    assert_eq!(before, after, "a refused mutation changed state");
    run(&w, allowed_mutation_cells(&w)).await;
}

/// The read-only column: every mutation, allowed or not for the role, is FORBIDDEN to a
/// `scope: "read"` token (callers without a valid token stay UNAUTHENTICATED), the
/// message names the missing scope, and nothing is written.
#[tokio::test]
async fn mutation_matrix_read_only() {
    let w = worlds().await;
    let admin = w.t.admin();
    let before = w.t.ok(&admin, SNAPSHOT, json!({})).await;
    let mut cells = denied_mutation_cells(&w);
    cells.extend(allowed_mutation_cells(&w));
    for cell in cells.iter_mut().filter(|cell| !NOBODY.contains(&cell.who)) {
        cell.read_only = true;
        cell.expect = Code("FORBIDDEN");
        cell.as_missing = None;
    }
    run_concurrently(&w, cells).await;
    let response = w.ask_scoped(AppA, true, CREATE_OPERATOR, json!({})).await;
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("write scope"), "{message}");
    assert_eq!(w.t.ok(&admin, SNAPSHOT, json!({})).await, before, "a read-only token changed state");
}
