//! Subscriptions at scale and across processes.
//!
//! - Goal 4: thousands of operator WebSockets, one idle `chargeTokenIssued` subscription
//!   each: the server's RSS growth per connection, then sessions at a fixed rate for the
//!   authorized operators among them, and how long each token takes to reach its one
//!   operator.
//! - Goal 5: a second server process on the same database; tokens issued through the
//!   first reach a subscriber on the second, against a subscriber on the first in the
//!   same run (the two interleaved).

use std::time::{Duration, Instant};

use curbpay::auth::Role;
use futures_util::{StreamExt, stream};
use uuid::Uuid;

use crate::probe::{Cost, Probe, rss_bytes};
use crate::process::Curbpay;
use crate::report::Stats;
use crate::sockets::{self, Arrivals};
use crate::{Client, Scale, World, create, start, token};

/// Handshakes in flight while opening the sockets.
const OPENING: usize = 64;

pub struct Figures {
    sockets: usize,
    rss_growth: u64,
    /// Sessions asked for per second, and what was served.
    rate: u32,
    /// From the session's scheduled send to the token's arrival (coordinated omission
    /// corrected: a late send counts from when it was due).
    due_to_next: Stats,
    /// From the response to the token's arrival.
    response_to_next: Stats,
    lost: usize,
    cost: Cost,
}

impl Figures {
    pub fn print(&self) {
        let per = self.rss_growth as f64 / self.sockets as f64;
        println!(
            "\n{} idle operator subscriptions: server RSS +{:.1} MB, {:.1} KB per connection",
            self.sockets,
            self.rss_growth as f64 / 1e6,
            per / 1e3
        );
        println!(
            "  sessions asked at {}/s among them, served at {:.0}/s (n={}, {} tokens not delivered): due → `next` p50 {:.2} ms p99 {:.2} ms; \
             response → `next` p50 {:.2} ms p99 {:.2} ms; server {:.0} µs, Postgres {:.0} µs, SQL {:.1} per session",
            self.rate,
            self.due_to_next.per_second(),
            self.due_to_next.count(),
            self.lost,
            self.due_to_next.percentile_ms(0.5),
            self.due_to_next.percentile_ms(0.99),
            self.response_to_next.percentile_ms(0.5),
            self.response_to_next.percentile_ms(0.99),
            self.cost.server_us,
            self.cost.postgres_us,
            self.cost.statements,
        );
    }
}

/// Goal 4. The world's operators (all authorized by app 0) subscribe first; the rest
/// are new operators with no sessions, whose subscriptions stay idle.
pub async fn idle_sockets(
    probe: &mut Probe,
    scale: &Scale,
    client: &Client,
    world: &World,
    server: &Curbpay,
) -> Figures {
    let admin = token(Role::Admin);
    let idle = scale.sockets.saturating_sub(world.operators.len());
    let created: Vec<Uuid> = stream::iter(0..idle)
        .map(|i| {
            let admin = admin.as_str();
            async move { create(client, admin, "Operator", &format!("idle operator {i}")).await }
        })
        .buffered(crate::CONCURRENCY)
        .collect()
        .await;
    let tokens: Vec<String> = world
        .operators
        .iter()
        .map(|(_, token)| token.clone())
        .chain(created.iter().map(|&o| token(Role::Operator(o))))
        .collect();
    let metrics = format!("{}metrics", server.base);
    let running = sockets::subscriptions(&client.http, &metrics).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_bytes(server.pid());
    let ws_url = server.ws_url();
    let opened: Vec<sockets::Socket> =
        stream::iter(&tokens).map(|token| sockets::subscribe(&ws_url, token)).buffered(OPENING).collect().await;
    let all = running + opened.len() as u64;
    sockets::wait_subscriptions(&client.http, &metrics, |n| n >= all).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_growth = rss_bytes(server.pid()).saturating_sub(rss_before);

    let arrivals = Arrivals::default();
    let mut opened = opened.into_iter();
    let readers: Vec<_> = opened.by_ref().take(world.operators.len()).map(|s| arrivals.read(s)).collect();
    let idle_sockets: Vec<sockets::Socket> = opened.collect();

    // Sessions at a fixed rate, round robin over the subscribed operators that can
    // receive them.
    let interval = Duration::from_secs(1) / scale.rate;
    let count = (scale.rate_for.as_secs_f64() * scale.rate as f64) as usize;
    let before = probe.sample().await;
    let began = Instant::now();
    let sessions = (0..count).map(|i| {
        let (client, arrivals) = (client.clone(), arrivals.clone());
        let operator = world.operators[i % world.operators.len()].0;
        let due = began + interval * i as u32;
        async move {
            tokio::time::sleep_until(due.into()).await;
            let (_, token) = start(&client, world, operator, format!("fan-{i}")).await;
            let responded = Instant::now();
            let arrived = arrivals.wait(token).await;
            arrived.map(|at| (at - due, at.saturating_duration_since(responded)))
        }
    });
    let results: Vec<_> = futures_util::future::join_all(sessions).await;
    let wall = began.elapsed();
    let cost = probe.cost_since(&before, count).await;
    for reader in readers {
        reader.abort();
    }
    drop(idle_sockets);
    // The next phase counts subscriptions from here: let the server end these first.
    sockets::wait_subscriptions(&client.http, &metrics, |n| n <= running).await;
    let lost = results.iter().filter(|r| r.is_none()).count();
    let (due, response): (Vec<_>, Vec<_>) = results.into_iter().flatten().unzip();
    Figures {
        sockets: tokens.len(),
        rss_growth,
        rate: scale.rate,
        due_to_next: Stats::new(due, wall),
        response_to_next: Stats::new(response, wall),
        lost,
        cost,
    }
}

pub struct Cross {
    /// Send → `next` for a subscriber on the issuing process, and on the other one.
    same: Stats,
    other: Stats,
}

impl Cross {
    pub fn print(&self) {
        let (same, other) = (&self.same, &self.other);
        println!(
            "\nTwo server processes, one database (n={} each, 1 in flight): send → `next` on the same process \
             p50 {:.2} ms p99 {:.2} ms; on the other process p50 {:.2} ms p99 {:.2} ms (p50 +{:.2} ms)",
            same.count(),
            same.percentile_ms(0.5),
            same.percentile_ms(0.99),
            other.percentile_ms(0.5),
            other.percentile_ms(0.99),
            other.percentile_ms(0.5) - same.percentile_ms(0.5),
        );
    }
}

/// Goal 5: sessions through `first` for operator 1 (subscribed on `first`) and operator
/// 2 (subscribed on `second`), alternately, one at a time.
pub async fn two_processes(
    scale: &Scale,
    client: &Client,
    second_client: &Client,
    world: &World,
    first: &Curbpay,
    second: &Curbpay,
) -> Cross {
    let (near, far) = (&world.operators[1], &world.operators[2]);
    let arrivals = Arrivals::default();
    let near_running = sockets::subscriptions(&client.http, &format!("{}metrics", first.base)).await;
    let readers = [
        arrivals.read(sockets::subscribe(&first.ws_url(), &near.1).await),
        arrivals.read(sockets::subscribe(&second.ws_url(), &far.1).await),
    ];
    sockets::wait_subscriptions(&client.http, &format!("{}metrics", first.base), |n| n > near_running).await;
    sockets::wait_subscriptions(&second_client.http, &format!("{}metrics", second.base), |n| n >= 1).await;
    let (mut same, mut other) = (Vec::new(), Vec::new());
    let began = Instant::now();
    for i in 0..scale.cross {
        if began.elapsed() > scale.budget * 2 {
            break;
        }
        for (operator, into, path) in [(near.0, &mut same, "near"), (far.0, &mut other, "far")] {
            let sent = Instant::now();
            let (_, token) = start(client, world, operator, format!("cross-{path}-{i}")).await;
            let arrived = arrivals.wait(token).await.expect("charge token delivered within the timeout");
            into.push(arrived - sent);
        }
    }
    for reader in readers {
        reader.abort();
    }
    let wall = began.elapsed();
    Cross { same: Stats::new(same, wall), other: Stats::new(other, wall) }
}
