//! Loaders batch: the SQL statements a list query costs do not grow with the page.

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
    // One for the links, one batch for their apps, one for their operators.
    assert_eq!(costs[0].1, 3, "{costs:?}");
}
