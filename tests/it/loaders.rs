//! The SQL statements a list query costs do not grow with the page: a links page reads
//! its apps and operators with the links, and loaders batch the other edges.

use serde_json::json;

use crate::util::TestApp;

const QUERY: &str = "query($n: Int!) { links(first: $n) { edges { node { app { name } operator { name } } } } }";

#[tokio::test]
async fn statements_per_links_page_stay_constant() {
    let t = TestApp::new().await;
    let admin = t.admin();
    // Links between 10 apps and 5 operators: 50 links, 10 distinct apps and 5 operators
    // on a full page.
    let mut apps = Vec::new();
    for i in 0..10 {
        apps.push(t.create_app(&format!("app {i}")).await);
    }
    let link = "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { id } } }";
    for i in 0..5 {
        let operator = t.create_operator(&format!("operator {i}")).await;
        for app in &apps {
            t.ok(&admin, link, json!({ "a": app, "o": operator })).await;
        }
    }
    // Let the event notifier's writes (which share the pool) finish first.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let mut costs = Vec::new();
    for page in [1, 5, 50] {
        let before = t.statements();
        let data = t.ok(&admin, QUERY, json!({ "n": page })).await;
        let cost = t.statements() - before;
        assert_eq!(data["links"]["edges"].as_array().unwrap().len(), page as usize);
        costs.push((page, cost));
    }
    println!("SQL statements per links page (page size, statements): {costs:?}");
    assert!(costs.iter().all(|(_, cost)| *cost == costs[0].1), "statements grew with the page: {costs:?}");
    // The links with their apps and operators, in one statement.
    assert_eq!(costs[0].1, 1, "{costs:?}");

    // A page that does not select the parties: what needs them goes through the loaders,
    // one batch for the whole page (each pending link's authorization URL names its app).
    let urls = "query($n: Int!) { links(first: $n) { edges { node { authorizationUrl } } } }";
    let mut costs = Vec::new();
    for page in [1, 50] {
        let before = t.statements();
        let data = t.ok(&admin, urls, json!({ "n": page })).await;
        costs.push((page, t.statements() - before));
        let edges = data["links"]["edges"].as_array().unwrap();
        assert!(edges.iter().all(|e| e["node"]["authorizationUrl"].is_string()), "{data}");
    }
    // The links, and one batch of their apps.
    assert_eq!(costs, [(1, 2), (50, 2)]);
}
