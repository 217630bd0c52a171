//! The zero-configuration default: `curbpay` with no DATABASE_URL starts its own
//! Postgres (as root too, as CI and our machines run), prints an admin token, serves,
//! and keeps its data across restarts.

use serde_json::json;

use crate::util::process::Curbpay;

async fn start(data_dir: &std::path::Path) -> Curbpay {
    Curbpay::serve(&[("CURBPAY_DATA_DIR", data_dir.to_str().unwrap()), ("RUST_LOG", "warn")]).await
}

#[tokio::test]
async fn serves_with_an_embedded_postgres_and_keeps_data() {
    let data_dir = std::env::temp_dir().join(format!("cp-embedded-{}", uuid::Uuid::new_v4().simple()));
    let server = start(&data_dir).await;
    let health = reqwest::get(format!("{}health", server.base)).await.unwrap();
    assert_eq!(health.status(), 200);
    let token = server.admin_token().await;
    let data = server.ok(&token, "{ viewer { role } }", json!({})).await;
    assert_eq!(data["viewer"]["role"], "ADMIN");
    let data = server.ok(&token, "mutation { createApp(input: {name: \"Kept\"}) { app { id } } }", json!({})).await;
    let app_id = data["createApp"]["app"]["id"].as_str().unwrap().to_owned();
    server.stop().await;

    // Restarted on the same folder: same data, and the development secret is reused,
    // so tokens minted by `curbpay token` keep working.
    let server = start(&data_dir).await;
    let token = server.admin_token().await;
    let data = server.ok(&token, "{ apps { edges { node { id name } } } }", json!({})).await;
    assert_eq!(data["apps"]["edges"][0]["node"]["id"], app_id.as_str());
    let minted = std::process::Command::new(env!("CARGO_BIN_EXE_curbpay"))
        .args(["token", "--role", "admin", "--ttl", "5m"])
        .env_remove("CURBPAY_JWT_SECRET")
        .env("CURBPAY_DATA_DIR", &data_dir)
        .output()
        .unwrap();
    assert!(minted.status.success());
    let minted = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let data = server.ok(&minted, "{ viewer { role } }", json!({})).await;
    assert_eq!(data["viewer"]["role"], "ADMIN");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
