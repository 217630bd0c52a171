//! Queries: every read, by every caller, of its own and the other world's objects.

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Cell, Expect::*, NOBODY, Who::*, Worlds, cell, list, run_concurrently, worlds};

const VIEWER: &str = "{ viewer { role appId operatorId } }";
const APP: &str = "query($id: ID!) { app(id: $id) { id name processorAccountId publishableKey } }";
const APPS: &str = "{ apps { totalCount nodes { id } } }";
const OPERATOR: &str = "query($id: ID!) { operator(id: $id) { id name } }";
const OPERATORS: &str = "{ operators { totalCount nodes { id } } }";
const LINK: &str = "query($id: ID!) { link(id: $id) { id status app { id } operator { id } connectedAccountId } }";
const LINK_URL: &str = "query($id: ID!) { link(id: $id) { status authorizationUrl } }";
const LINKS: &str = "query($a: ID, $o: ID) { links(appId: $a, operatorId: $o) { totalCount nodes { id } } }";
const CUSTOMER: &str = "query($id: ID!) { customer(id: $id) { id externalRef processorCustomerId card { last4 } } }";
const CUSTOMERS: &str = "{ customers { totalCount nodes { id } } }";
const SESSION: &str = "query($id: ID!) { parkingSession(id: $id) { id zone vehiclePlate app { id } operator { id } customer { id } link { id } } }";
const SESSIONS: &str = "{ parkingSessions { totalCount nodes { id } } }";
const TOKEN: &str = "query($id: ID!) { chargeToken(id: $id) { id token status session { id } operator { id } } }";
const SESSION_TOKENS: &str =
    "query($id: ID!) { parkingSession(id: $id) { chargeToken { id token } chargeTokens { id token } } }";
const SESSION_CUSTOMER: &str =
    "query($id: ID!) { parkingSession(id: $id) { customer { externalRef processorCustomerId card { brand last4 } } } }";
const SESSION_APP: &str = "query($id: ID!) { parkingSession(id: $id) { app { id processorAccountId } } }";
const APP_LINKS: &str = "query($id: ID!) { app(id: $id) { links { totalCount nodes { id } } } }";
const OPERATOR_LINKS: &str = "query($id: ID!) { operator(id: $id) { links { totalCount nodes { id } } } }";
const LINK_BOTH_SIDES: &str = "query($id: ID!) { link(id: $id) { app { links { totalCount nodes { id } } } operator { links { totalCount nodes { id } } } } }";

fn query_cells(w: &Worlds) -> Vec<Cell> {
    let (a, b, x, y, z) = (w.app_a, w.app_b, w.op_x, w.op_y, w.op_z);
    let (ax, by, az) = (w.link_ax, w.link_by, w.link_az);
    let (ca, cb, sa, sb, ta, tb) = (w.cust_a, w.cust_b, w.sess_a, w.sess_b, w.tok_a, w.tok_b);
    let none = json!({});
    let app_a_full =
        json!({ "app": { "id": a, "name": "App A", "processorAccountId": w.acct_a, "publishableKey": w.pk_a } });
    let app_a_public =
        json!({ "app": { "id": a, "name": "App A", "processorAccountId": null, "publishableKey": w.pk_a } });
    let op_x_data = json!({ "operator": { "id": x, "name": "Operator X" } });
    let link_ax_data = json!({ "link": { "id": ax, "status": "ACTIVE", "app": { "id": a }, "operator": { "id": x }, "connectedAccountId": w.conn_ax } });
    let cust_a_full = json!({ "customer": { "id": ca, "externalRef": "alice-of-a", "processorCustomerId": w.pcus_a, "card": { "last4": "4242" } } });
    let cust_a_op = json!({ "customer": { "id": ca, "externalRef": "alice-of-a", "processorCustomerId": null, "card": { "last4": "4242" } } });
    let sess_a_data = json!({ "parkingSession": { "id": sa, "zone": "ZONE-A", "vehiclePlate": "PLATE-A", "app": { "id": a }, "operator": { "id": x }, "customer": { "id": ca }, "link": { "id": ax } } });
    let token_a = |value: Value| json!({ "chargeToken": { "id": ta, "token": value, "status": "ISSUED", "session": { "id": sa }, "operator": { "id": x } } });
    let session_tokens_a = |value: Value| json!({ "parkingSession": { "chargeToken": { "id": ta, "token": value }, "chargeTokens": [{ "id": ta, "token": value }] } });
    let nothing = |field: &str| json!({ field: null });
    let id = |v: Uuid| json!({ "id": v });
    let links = |ids: &[Uuid]| list("links", ids);
    let no_links = links(&[]);

    let mut cells = vec![
        // viewer
        cell(
            "viewer",
            Admin,
            VIEWER,
            none.clone(),
            Data(json!({ "viewer": { "role": "ADMIN", "appId": null, "operatorId": null } })),
        ),
        cell(
            "viewer",
            AppA,
            VIEWER,
            none.clone(),
            Data(json!({ "viewer": { "role": "APP", "appId": a, "operatorId": null } })),
        ),
        cell(
            "viewer",
            OpX,
            VIEWER,
            none.clone(),
            Data(json!({ "viewer": { "role": "OPERATOR", "appId": null, "operatorId": x } })),
        ),
        // app(id)
        cell("app(A)", Admin, APP, id(a), Data(app_a_full.clone())),
        cell("app(A)", AppA, APP, id(a), Data(app_a_full.clone())),
        cell("app(A) linked operator: no processor account", OpX, APP, id(a), Data(app_a_public.clone())),
        cell("app(A) pending-linked operator", OpZ, APP, id(a), Data(app_a_public.clone())),
        cell("app(A)", AppB, APP, id(a), Data(nothing("app"))).same_as_missing("id"),
        cell("app(A)", OpY, APP, id(a), Data(nothing("app"))).same_as_missing("id"),
        cell("app(B)", AppA, APP, id(b), Data(nothing("app"))).same_as_missing("id"),
        cell("app(B)", OpX, APP, id(b), Data(nothing("app"))).same_as_missing("id"),
        cell("app(B)", OpZ, APP, id(b), Data(nothing("app"))).same_as_missing("id"),
        // apps
        cell("apps", Admin, APPS, none.clone(), Data(list("apps", &[a, b]))),
        cell("apps", AppA, APPS, none.clone(), Data(list("apps", &[a]))),
        cell("apps", AppB, APPS, none.clone(), Data(list("apps", &[b]))),
        cell("apps", OpX, APPS, none.clone(), Data(list("apps", &[a]))),
        cell("apps", OpY, APPS, none.clone(), Data(list("apps", &[b]))),
        cell("apps", OpZ, APPS, none.clone(), Data(list("apps", &[a]))),
        // operator(id), operators: a directory every role reads
        cell("operator(X)", Admin, OPERATOR, id(x), Data(op_x_data.clone())),
        cell("operator(X)", AppA, OPERATOR, id(x), Data(op_x_data.clone())),
        cell("operator(X) directory", AppB, OPERATOR, id(x), Data(op_x_data.clone())),
        cell("operator(X) directory", OpY, OPERATOR, id(x), Data(op_x_data.clone())),
        cell("operator(missing)", AppB, OPERATOR, id(Uuid::new_v4()), Data(nothing("operator"))),
        cell("operators", AppB, OPERATORS, none.clone(), Data(list("operators", &[x, y, z]))),
        cell("operators", OpY, OPERATORS, none.clone(), Data(list("operators", &[x, y, z]))),
        // link(id)
        cell("link(AX)", Admin, LINK, id(ax), Data(link_ax_data.clone())),
        cell("link(AX)", AppA, LINK, id(ax), Data(link_ax_data.clone())),
        cell("link(AX)", OpX, LINK, id(ax), Data(link_ax_data.clone())),
        cell("link(AX)", AppB, LINK, id(ax), Data(nothing("link"))).same_as_missing("id"),
        cell("link(AX)", OpY, LINK, id(ax), Data(nothing("link"))).same_as_missing("id"),
        cell("link(AX) other operator of A", OpZ, LINK, id(ax), Data(nothing("link"))).same_as_missing("id"),
        cell("link(BY)", AppA, LINK, id(by), Data(nothing("link"))).same_as_missing("id"),
        cell("link(BY)", OpX, LINK, id(by), Data(nothing("link"))).same_as_missing("id"),
        cell(
            "link(AZ).authorizationUrl not for the app that asked for the link",
            AppA,
            LINK_URL,
            id(az),
            Data(json!({ "link": { "status": "PENDING", "authorizationUrl": null } })),
        ),
        cell("link(AZ).authorizationUrl", Admin, LINK_URL, id(az), Present("/link/authorizationUrl")),
        cell("link(AZ).authorizationUrl for its operator", OpZ, LINK_URL, id(az), Present("/link/authorizationUrl")),
        cell(
            "link(AX).authorizationUrl once active",
            OpX,
            LINK_URL,
            id(ax),
            Data(json!({ "link": { "status": "ACTIVE", "authorizationUrl": null } })),
        ),
        cell("link(AZ)", AppB, LINK_URL, id(az), Data(nothing("link"))).same_as_missing("id"),
        // links, with and without filters
        cell("links", Admin, LINKS, none.clone(), Data(links(&[ax, by, az]))),
        cell("links", AppA, LINKS, none.clone(), Data(links(&[ax, az]))),
        cell("links", AppB, LINKS, none.clone(), Data(links(&[by]))),
        cell("links", OpX, LINKS, none.clone(), Data(links(&[ax]))),
        cell("links", OpY, LINKS, none.clone(), Data(links(&[by]))),
        cell("links", OpZ, LINKS, none.clone(), Data(links(&[az]))),
        cell("links(appId: B)", Admin, LINKS, json!({ "a": b }), Data(links(&[by]))),
        cell("links(operatorId: X)", Admin, LINKS, json!({ "o": x }), Data(links(&[ax]))),
        cell("links(appId: A)", AppA, LINKS, json!({ "a": a }), Data(links(&[ax, az]))),
        cell("links(operatorId: X)", AppA, LINKS, json!({ "o": x }), Data(links(&[ax]))),
        cell("links(appId: B)", AppA, LINKS, json!({ "a": b }), Data(no_links.clone())).same_as_missing("a"),
        cell("links(operatorId: Y)", AppA, LINKS, json!({ "o": y }), Data(no_links.clone())).same_as_missing("o"),
        cell("links(appId: A)", AppB, LINKS, json!({ "a": a }), Data(no_links.clone())).same_as_missing("a"),
        cell("links(operatorId: X)", AppB, LINKS, json!({ "o": x }), Data(no_links.clone())).same_as_missing("o"),
        cell("links(operatorId: Y)", OpX, LINKS, json!({ "o": y }), Data(no_links.clone())).same_as_missing("o"),
        cell("links(appId: B)", OpX, LINKS, json!({ "a": b }), Data(no_links.clone())).same_as_missing("a"),
        cell("links(appId: A)", OpY, LINKS, json!({ "a": a }), Data(no_links.clone())).same_as_missing("a"),
        cell("links(operatorId: X)", OpY, LINKS, json!({ "o": x }), Data(no_links.clone())).same_as_missing("o"),
        cell("links(appId: A, operatorId: X)", OpZ, LINKS, json!({ "a": a, "o": x }), Data(no_links.clone()))
            .same_as_missing("o"),
        // customer(id), customers
        cell("customer(a)", Admin, CUSTOMER, id(ca), Data(cust_a_full.clone())),
        cell("customer(a)", AppA, CUSTOMER, id(ca), Data(cust_a_full.clone())),
        cell("customer(a) via its session", OpX, CUSTOMER, id(ca), Data(cust_a_op.clone())),
        cell("customer(a)", AppB, CUSTOMER, id(ca), Data(nothing("customer"))).same_as_missing("id"),
        cell("customer(a)", OpY, CUSTOMER, id(ca), Data(nothing("customer"))).same_as_missing("id"),
        cell("customer(a) no session at Z", OpZ, CUSTOMER, id(ca), Data(nothing("customer"))).same_as_missing("id"),
        cell("customer(b)", AppA, CUSTOMER, id(cb), Data(nothing("customer"))).same_as_missing("id"),
        cell("customer(b)", OpX, CUSTOMER, id(cb), Data(nothing("customer"))).same_as_missing("id"),
        cell("customers", Admin, CUSTOMERS, none.clone(), Data(list("customers", &[ca, cb]))),
        cell("customers", AppA, CUSTOMERS, none.clone(), Data(list("customers", &[ca]))),
        cell("customers", AppB, CUSTOMERS, none.clone(), Data(list("customers", &[cb]))),
        cell("customers", OpX, CUSTOMERS, none.clone(), Data(list("customers", &[ca]))),
        cell("customers", OpY, CUSTOMERS, none.clone(), Data(list("customers", &[cb]))),
        cell("customers", OpZ, CUSTOMERS, none.clone(), Data(list("customers", &[]))),
        // parkingSession(id), parkingSessions
        cell("parkingSession(a)", Admin, SESSION, id(sa), Data(sess_a_data.clone())),
        cell("parkingSession(a)", AppA, SESSION, id(sa), Data(sess_a_data.clone())),
        cell("parkingSession(a)", OpX, SESSION, id(sa), Data(sess_a_data.clone())),
        cell("parkingSession(a)", AppB, SESSION, id(sa), Data(nothing("parkingSession"))).same_as_missing("id"),
        cell("parkingSession(a)", OpY, SESSION, id(sa), Data(nothing("parkingSession"))).same_as_missing("id"),
        cell("parkingSession(a)", OpZ, SESSION, id(sa), Data(nothing("parkingSession"))).same_as_missing("id"),
        cell("parkingSession(b)", AppA, SESSION, id(sb), Data(nothing("parkingSession"))).same_as_missing("id"),
        cell("parkingSession(b)", OpX, SESSION, id(sb), Data(nothing("parkingSession"))).same_as_missing("id"),
        cell("parkingSessions", Admin, SESSIONS, none.clone(), Data(list("parkingSessions", &[sa, sb]))),
        cell("parkingSessions", AppA, SESSIONS, none.clone(), Data(list("parkingSessions", &[sa]))),
        cell("parkingSessions", AppB, SESSIONS, none.clone(), Data(list("parkingSessions", &[sb]))),
        cell("parkingSessions", OpX, SESSIONS, none.clone(), Data(list("parkingSessions", &[sa]))),
        cell("parkingSessions", OpY, SESSIONS, none.clone(), Data(list("parkingSessions", &[sb]))),
        cell("parkingSessions", OpZ, SESSIONS, none.clone(), Data(list("parkingSessions", &[]))),
        // chargeToken(id): the value only for the operator it was issued to
        cell("chargeToken(a) with value", OpX, TOKEN, id(ta), Data(token_a(json!(w.tokval_a)))),
        cell("chargeToken(a) without value", AppA, TOKEN, id(ta), Data(token_a(Value::Null))),
        cell("chargeToken(a) without value", Admin, TOKEN, id(ta), Data(token_a(Value::Null))),
        cell("chargeToken(a)", AppB, TOKEN, id(ta), Data(nothing("chargeToken"))).same_as_missing("id"),
        cell("chargeToken(a)", OpY, TOKEN, id(ta), Data(nothing("chargeToken"))).same_as_missing("id"),
        cell("chargeToken(a)", OpZ, TOKEN, id(ta), Data(nothing("chargeToken"))).same_as_missing("id"),
        cell("chargeToken(b)", AppA, TOKEN, id(tb), Data(nothing("chargeToken"))).same_as_missing("id"),
        cell("chargeToken(b)", OpX, TOKEN, id(tb), Data(nothing("chargeToken"))).same_as_missing("id"),
        cell(
            "chargeToken(b) with value",
            OpY,
            "query($id: ID!) { chargeToken(id: $id) { token } }",
            id(tb),
            Data(json!({ "chargeToken": { "token": w.tokval_b } })),
        ),
        // nested edges
        cell("session.chargeToken(s).token", OpX, SESSION_TOKENS, id(sa), Data(session_tokens_a(json!(w.tokval_a)))),
        cell("session.chargeToken(s).token", AppA, SESSION_TOKENS, id(sa), Data(session_tokens_a(Value::Null))),
        cell("session.chargeToken(s).token", Admin, SESSION_TOKENS, id(sa), Data(session_tokens_a(Value::Null))),
        cell("session.chargeToken(s)", AppB, SESSION_TOKENS, id(sa), Data(nothing("parkingSession")))
            .same_as_missing("id"),
        cell("session.chargeToken(s)", OpY, SESSION_TOKENS, id(sa), Data(nothing("parkingSession")))
            .same_as_missing("id"),
        cell(
            "session.customer.card",
            OpX,
            SESSION_CUSTOMER,
            id(sa),
            Data(
                json!({ "parkingSession": { "customer": { "externalRef": "alice-of-a", "processorCustomerId": null, "card": { "brand": "Visa", "last4": "4242" } } } }),
            ),
        ),
        cell(
            "session.customer.card",
            AppA,
            SESSION_CUSTOMER,
            id(sa),
            Data(
                json!({ "parkingSession": { "customer": { "externalRef": "alice-of-a", "processorCustomerId": w.pcus_a, "card": { "brand": "Visa", "last4": "4242" } } } }),
            ),
        ),
        cell("session.customer.card", OpY, SESSION_CUSTOMER, id(sa), Data(nothing("parkingSession")))
            .same_as_missing("id"),
        cell(
            "session.app without processor account",
            OpX,
            SESSION_APP,
            id(sa),
            Data(json!({ "parkingSession": { "app": { "id": a, "processorAccountId": null } } })),
        ),
        cell("app(A).links", Admin, APP_LINKS, id(a), Data(json!({ "app": links(&[ax, az]) }))),
        cell("app(A).links", AppA, APP_LINKS, id(a), Data(json!({ "app": links(&[ax, az]) }))),
        cell("app(A).links only its own", OpX, APP_LINKS, id(a), Data(json!({ "app": links(&[ax]) }))),
        cell("app(A).links only its own", OpZ, APP_LINKS, id(a), Data(json!({ "app": links(&[az]) }))),
        cell("app(A).links", AppB, APP_LINKS, id(a), Data(nothing("app"))).same_as_missing("id"),
        cell("app(A).links", OpY, APP_LINKS, id(a), Data(nothing("app"))).same_as_missing("id"),
        cell("operator(X).links", Admin, OPERATOR_LINKS, id(x), Data(json!({ "operator": links(&[ax]) }))),
        cell("operator(X).links", OpX, OPERATOR_LINKS, id(x), Data(json!({ "operator": links(&[ax]) }))),
        cell("operator(X).links", AppA, OPERATOR_LINKS, id(x), Data(json!({ "operator": links(&[ax]) }))),
        cell(
            "operator(X).links none of B's",
            AppB,
            OPERATOR_LINKS,
            id(x),
            Data(json!({ "operator": no_links.clone() })),
        ),
        cell(
            "operator(X).links of another operator",
            OpY,
            OPERATOR_LINKS,
            id(x),
            Data(json!({ "operator": no_links.clone() })),
        ),
        cell(
            "operator(X).links of another operator",
            OpZ,
            OPERATOR_LINKS,
            id(x),
            Data(json!({ "operator": no_links.clone() })),
        ),
        cell("operator(Y).links", AppA, OPERATOR_LINKS, id(y), Data(json!({ "operator": no_links.clone() }))),
        cell(
            "link(AX).app.links / operator.links",
            OpX,
            LINK_BOTH_SIDES,
            id(ax),
            Data(json!({ "link": { "app": links(&[ax]), "operator": links(&[ax]) } })),
        ),
        cell(
            "link(AX).app.links / operator.links",
            AppA,
            LINK_BOTH_SIDES,
            id(ax),
            Data(json!({ "link": { "app": links(&[ax, az]), "operator": links(&[ax]) } })),
        ),
        cell(
            "token.session",
            AppA,
            "query($id: ID!) { chargeToken(id: $id) { session { id } } }",
            id(ta),
            Data(json!({ "chargeToken": { "session": { "id": sa } } })),
        ),
    ];

    // Without valid credentials every query is UNAUTHENTICATED, whatever it names.
    for who in NOBODY {
        cells.extend([
            cell("viewer", who, VIEWER, none.clone(), Code("UNAUTHENTICATED")),
            cell("app(A)", who, APP, id(a), Code("UNAUTHENTICATED")).same_as_missing("id"),
            cell("apps", who, APPS, none.clone(), Code("UNAUTHENTICATED")),
            cell("operator(X)", who, OPERATOR, id(x), Code("UNAUTHENTICATED")).same_as_missing("id"),
            cell("operators", who, OPERATORS, none.clone(), Code("UNAUTHENTICATED")),
            cell("link(AX)", who, LINK, id(ax), Code("UNAUTHENTICATED")).same_as_missing("id"),
            cell("links(appId: A)", who, LINKS, json!({ "a": a }), Code("UNAUTHENTICATED")).same_as_missing("a"),
            cell("customer(a)", who, CUSTOMER, id(ca), Code("UNAUTHENTICATED")).same_as_missing("id"),
            cell("customers", who, CUSTOMERS, none.clone(), Code("UNAUTHENTICATED")),
            cell("parkingSession(a)", who, SESSION, id(sa), Code("UNAUTHENTICATED")).same_as_missing("id"),
            cell("parkingSessions", who, SESSIONS, none.clone(), Code("UNAUTHENTICATED")),
            cell("chargeToken(a)", who, TOKEN, id(ta), Code("UNAUTHENTICATED")).same_as_missing("id"),
        ]);
    }
    cells
}

#[tokio::test]
async fn query_matrix() {
    let w = worlds().await;
    let cells = query_cells(&w);
    run_concurrently(&w, cells).await;
}

/// The read-only column: every query answers a `scope: "read"` token exactly as it
/// answers the full token of the same role.
#[tokio::test]
async fn query_matrix_read_only() {
    let w = worlds().await;
    let mut cells = query_cells(&w);
    cells.iter_mut().for_each(|cell| cell.read_only = true);
    run_concurrently(&w, cells).await;
    for (who, role) in [(Admin, "ADMIN"), (AppA, "APP"), (OpX, "OPERATOR")] {
        let response = w.ask_scoped(who, true, "{ viewer { role scopes } }", json!({})).await;
        assert_eq!(response["data"]["viewer"], json!({ "role": role, "scopes": ["read"] }), "{response}");
        let response = w.ask(who, "{ viewer { scopes } }", json!({})).await;
        assert_eq!(response["data"]["viewer"]["scopes"], json!(["read", "write"]), "{response}");
    }
}
