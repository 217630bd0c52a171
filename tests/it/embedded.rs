//! The zero-configuration default: `curbpay` with no DATABASE_URL starts its own
//! Postgres (as root too, as CI and our machines run), prints an admin token, serves,
//! and keeps its data across restarts.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Server {
    child: Child,
    base: String,
    token: String,
}

async fn start(data_dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_curbpay"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env_remove("CURBPAY_JWT_SECRET")
        .env("CURBPAY_DATA_DIR", data_dir)
        .env("CURBPAY_LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut base, mut token) = (None, None);
    while base.is_none() || token.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the server started within 60 s")
            .unwrap()
            .expect("the server printed its address and token");
        if let Some(url) = line.strip_prefix("curbpay is serving GraphQL at ") {
            base = Some(url.trim_end_matches("graphql").to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("{\"Authorization\": \"Bearer ") {
            token = Some(rest.trim_end_matches("\"}").to_owned());
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server { child, base: base.unwrap(), token: token.unwrap() }
}

async fn graphql(server: &Server, query: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}graphql", server.base))
        .bearer_auth(&server.token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn stop(mut server: Server) {
    let pid = server.child.id().unwrap() as i32;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(20), server.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

#[tokio::test]
async fn serves_with_an_embedded_postgres_and_keeps_data() {
    let data_dir = std::env::temp_dir().join(format!("cp-embedded-{}", uuid::Uuid::new_v4().simple()));
    let server = start(&data_dir).await;
    let health = reqwest::get(format!("{}health", server.base)).await.unwrap();
    assert_eq!(health.status(), 200);
    let data = graphql(&server, "{ viewer { role } }").await;
    assert_eq!(data["data"]["viewer"]["role"], "ADMIN", "{data}");
    let data = graphql(&server, "mutation { createApp(input: {name: \"Kept\"}) { app { id } } }").await;
    let app_id = data["data"]["createApp"]["app"]["id"].as_str().unwrap().to_owned();
    stop(server).await;

    // Restarted on the same folder: same data, and the development secret is reused,
    // so tokens minted by `curbpay token` keep working.
    let server = start(&data_dir).await;
    let data = graphql(&server, "{ apps { edges { node { id name } } } }").await;
    assert_eq!(data["data"]["apps"]["edges"][0]["node"]["id"], app_id.as_str(), "{data}");
    let minted = std::process::Command::new(env!("CARGO_BIN_EXE_curbpay"))
        .args(["token", "--role", "admin", "--ttl", "5m"])
        .env_remove("CURBPAY_JWT_SECRET")
        .env("CURBPAY_DATA_DIR", &data_dir)
        .output()
        .unwrap();
    assert!(minted.status.success());
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let data: Value = reqwest::Client::new()
        .post(format!("{}graphql", server.base))
        .bearer_auth(&token)
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(data["data"]["viewer"]["role"], "ADMIN");
    stop(server).await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
