//! Drives the real npm `graphql-ws` client (tests/it/js/subscribe.mjs) from Rust: it
//! runs as a child process and reports each protocol event as a JSON line.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Installs the client's npm packages (pinned by package-lock.json) once per test run,
/// so `cargo test` alone works on a fresh checkout.
fn ensure_installed(dir: &str) {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    let modules = std::path::Path::new(dir).join("node_modules");
    let present = ["graphql-ws", "graphql-http", "ws", "standardwebhooks"]
        .iter()
        .all(|p| modules.join(p).join("package.json").exists());
    if *installed || present {
        *installed = true;
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .expect("npm is installed (Node.js 20 or newer)");
    assert!(status.success(), "npm ci in tests/it/js failed");
    *installed = true;
}

/// Runs graphql-http's GraphQL-over-HTTP server audits (tests/it/js/audit.mjs) against
/// `url`; returns its summary `{ok, notice, warn, error, failures}`.
pub async fn graphql_http_audits(url: &str) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/js");
    ensure_installed(dir);
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("node").arg("audit.mjs").current_dir(dir).env("CURBPAY_URL", url).output(),
    )
    .await
    .expect("the audits finished within 60 s")
    .expect("node is installed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "audit.mjs failed: {stdout} {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}

/// Verifies deliveries with the official npm `standardwebhooks` package
/// (tests/it/js/verify.mjs): for each `(secret, received)`, the verified payload or the
/// verifier's error.
pub async fn verify_webhooks(deliveries: &[(String, super::receiver::Received)]) -> Vec<Result<Value, String>> {
    use tokio::io::AsyncWriteExt;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/js");
    ensure_installed(dir);
    let input: Vec<Value> = deliveries
        .iter()
        .map(|(secret, r)| {
            serde_json::json!({
                "secret": secret,
                "headers": { "webhook-id": r.id, "webhook-timestamp": r.timestamp, "webhook-signature": r.signature },
                "body": r.body,
            })
        })
        .collect();
    let mut child = Command::new("node")
        .arg("verify.mjs")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(serde_json::to_string(&input).unwrap().as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.unwrap().unwrap();
    assert!(output.status.success(), "verify.mjs failed");
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    results
        .into_iter()
        .map(|r| if r["ok"] == true { Ok(r["payload"].clone()) } else { Err(r["error"].to_string()) })
        .collect()
}

pub struct NodeSubscriber {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl NodeSubscriber {
    /// Starts `subscribe.mjs` against `ws_url`. `count` makes it stop after that many results.
    pub fn spawn(ws_url: &str, token: &str, query: &str, variables: Value, count: Option<usize>) -> NodeSubscriber {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/js");
        ensure_installed(dir);
        let mut command = Command::new("node");
        command
            .arg("subscribe.mjs")
            .current_dir(dir)
            .env("CURBPAY_WS_URL", ws_url)
            .env("CURBPAY_TOKEN", token)
            .env("QUERY", query)
            .env("VARIABLES", variables.to_string())
            .env("TIMEOUT_MS", "30000")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(count) = count {
            command.env("COUNT", count.to_string());
        }
        let mut child = command.spawn().expect("node is installed");
        let stdout = child.stdout.take().unwrap();
        NodeSubscriber { child, lines: BufReader::new(stdout).lines() }
    }

    /// The next event line, or `None` when the client exited.
    pub async fn next_event(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .expect("the subscriber reported nothing for 30 s")
            .expect("read subscriber output")?;
        Some(serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}")))
    }

    /// Waits for the next event of `kind` (skipping others such as `connected`).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let event = self.next_event().await.unwrap_or_else(|| panic!("client exited before a {kind} event"));
            if event["type"] == kind {
                return event;
            }
            assert_ne!(event["type"], "error", "subscription failed: {event}");
        }
    }

    /// The next `next` payload's data.
    pub async fn next_data(&mut self) -> Value {
        let event = self.next_of("next").await;
        assert!(event["payload"].get("errors").is_none(), "errors in payload: {event}");
        event["payload"]["data"].clone()
    }

    /// Waits for the client to exit; returns its exit code.
    pub async fn exit_code(mut self) -> i32 {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the subscriber did not exit")
            .unwrap();
        status.code().unwrap_or(-1)
    }
}
