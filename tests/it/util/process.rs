//! The real `curbpay` binary as a child process: started with a clean `CURBPAY_*` (and
//! `OTEL_*`) environment plus the settings a test gives, its output kept (to read the
//! address and the development token from, and to search for leaks), stopped by SIGTERM.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use curbpay::auth::{Claims, Role};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

const SERVING: &str = "curbpay is serving GraphQL at ";
const TOKEN: &str = "{\"Authorization\": \"Bearer ";

/// An app with an `ACTIVE` link to an operator (the operator consented) and a customer, made
/// over HTTP through one process ([`Curbpay::parties`]).
pub struct Parties {
    pub app_id: uuid::Uuid,
    pub operator_id: uuid::Uuid,
    pub customer_id: uuid::Uuid,
    pub app_token: String,
    pub operator_token: String,
    /// The link's consent URL, as the process gave it.
    pub authorization_url: String,
}

pub struct Curbpay {
    child: Child,
    pub addr: SocketAddr,
    /// `http://<addr>/`.
    pub base: String,
    output: Arc<Mutex<String>>,
}

impl Curbpay {
    /// `curbpay serve` with `env` (and no other `CURBPAY_*`, `OTEL_*` or `DATABASE_URL`
    /// of the test's environment).
    fn command(env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_curbpay"));
        let inherited =
            |name: &str| !(name.starts_with("CURBPAY_") || name.starts_with("OTEL_") || name == "DATABASE_URL");
        for (name, _) in std::env::vars().filter(|(name, _)| !inherited(name)) {
            command.env_remove(name);
        }
        command
            .arg("serve")
            .env("CURBPAY_LISTEN_ADDR", "127.0.0.1:0")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Runs `curbpay serve` with `env` where it must refuse to start: waits (up to a
    /// minute) for it to exit; returns its status and everything it printed. Fails at once
    /// if it starts serving instead.
    pub async fn refused(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
        let mut child = Self::command(env).spawn().expect("spawn curbpay");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let streams: [Box<dyn AsyncRead + Unpin + Send>; 2] =
            [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        for stream in streams {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let mut output = String::new();
        tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = rx.recv().await {
                output.push_str(&line);
                output.push('\n');
                assert!(!line.starts_with(SERVING), "curbpay started instead of refusing:\n{output}");
            }
            (child.wait().await.expect("wait for curbpay"), output)
        })
        .await
        .expect("curbpay exited within 60 s")
    }

    /// Runs `curbpay serve` with `env`; returns once it listens.
    pub async fn serve(env: &[(&str, &str)]) -> Curbpay {
        let mut child = Self::command(env).spawn().expect("spawn curbpay");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let streams: [Box<dyn AsyncRead + Unpin + Send>; 2] =
            [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
        for stream in streams {
            let (output, tx) = (output.clone(), tx.clone());
            // Keep draining, so the server never blocks on a full pipe.
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = rx.recv().await {
                if let Some(url) = line.strip_prefix(SERVING) {
                    return url.trim().to_owned();
                }
            }
            panic!("curbpay exited before serving");
        })
        .await
        .expect("curbpay started within 60 s");
        let url = url::Url::parse(&url).expect("a URL");
        let addr = url.socket_addrs(|| None).unwrap()[0];
        Curbpay { child, addr, base: format!("http://{addr}/"), output }
    }

    /// Everything the server printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The development admin token the server printed (it has none with a configured secret).
    pub async fn admin_token(&self) -> String {
        for _ in 0..500 {
            if let Some(token) = self
                .output()
                .lines()
                .find_map(|l| l.trim().strip_prefix(TOKEN).map(|t| t.trim_end_matches("\"}").to_owned()))
            {
                return token;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("curbpay printed no admin token:\n{}", self.output());
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql", self.addr)
    }

    /// POSTs a GraphQL request; returns the whole response.
    pub async fn graphql(&self, token: &str, query: &str, variables: Value) -> Value {
        reqwest::Client::new()
            .post(format!("{}graphql", self.base))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Runs an operation that must succeed; returns `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let response = self.graphql(token, query, variables).await;
        assert!(response.get("errors").is_none(), "unexpected errors: {response:#}");
        response["data"].clone()
    }

    /// Makes [`Parties`] through this process, with tokens signed by `jwt_secret`.
    pub async fn parties(&self, jwt_secret: &str) -> Parties {
        let mint = |role| {
            curbpay::auth::mint(jwt_secret.as_bytes(), &Claims::new(role, None, Duration::from_secs(600))).unwrap()
        };
        let id = |value: &Value| value.as_str().and_then(|s| s.parse().ok()).expect("an id");
        let admin = mint(Role::Admin);
        let data =
            self.ok(&admin, "mutation { createApp(input: {name: \"ParkNow\"}) { app { id } } }", json!({})).await;
        let app_id = id(&data["createApp"]["app"]["id"]);
        let create = "mutation { createOperator(input: {name: \"Garages\"}) { operator { id } } }";
        let operator_id = id(&self.ok(&admin, create, json!({})).await["createOperator"]["operator"]["id"]);
        let link = "mutation($a: ID!, $o: ID!) { linkOperator(input: {appId: $a, operatorId: $o}) { link { authorizationUrl } } }";
        let data = self.ok(&admin, link, json!({ "a": app_id, "o": operator_id })).await;
        let authorization_url = data["linkOperator"]["link"]["authorizationUrl"].as_str().unwrap().to_owned();
        let consent = reqwest::get(&authorization_url).await.unwrap();
        assert_eq!(consent.status(), reqwest::StatusCode::OK);
        assert!(consent.text().await.unwrap().contains("Link active"));
        let (app_token, operator_token) = (mint(Role::App(app_id)), mint(Role::Operator(operator_id)));
        let tokenize =
            "mutation { tokenizeCustomer(input: {externalRef: \"u1\", cardToken: \"tok_visa\"}) { customer { id } } }";
        let customer_id = id(&self.ok(&app_token, tokenize, json!({})).await["tokenizeCustomer"]["customer"]["id"]);
        Parties { app_id, operator_id, customer_id, app_token, operator_token, authorization_url }
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.child.id().expect("still running") as i32
    }

    /// Waits for the process to exit (after a signal the test sent); it must exit
    /// cleanly within `within`.
    pub async fn wait_exit(mut self, within: Duration) {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("curbpay did not exit within {within:?}:\n{}", self.output()))
            .unwrap();
        assert!(status.success(), "clean exit: {status}\n{}", self.output());
    }

    /// SIGTERM, then waits; the server must exit cleanly.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("still running") as i32;
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "clean exit on SIGTERM: {status}\n{}", self.output());
    }
}
