//! The bench's figures: latencies of a phase, rows of the per-operation table with
//! their ratios to a baseline, and the summary table README quotes.

use std::time::Duration;

use crate::fanout;
use crate::probe::Cost;

/// Latencies of one phase and its wall time.
pub struct Stats {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Stats {
    pub fn new(mut latencies: Vec<Duration>, wall: Duration) -> Stats {
        latencies.sort();
        Stats { latencies, wall }
    }

    pub fn count(&self) -> usize {
        self.latencies.len()
    }

    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[index].as_secs_f64() * 1e3
    }
}

pub struct Row {
    pub name: String,
    pub stats: Stats,
    pub cost: Option<Cost>,
    /// Index of the row this one is compared with.
    pub baseline: usize,
}

pub fn row(name: &str, (stats, cost): (Stats, Cost), baseline: usize) -> Row {
    Row { name: name.to_owned(), stats, cost: Some(cost), baseline }
}

fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 && value.is_finite() { format!("{:.1}x", value / base) } else { "—".to_owned() }
}

pub fn print_table(rows: &[Row]) {
    println!(
        "\n{:<58} {:>7} {:>7} {:>7} {:>8} {:>7} {:>5}  ratios to baseline: {:>6} {:>6} {:>6} {:>6}",
        "operation", "req/s", "p50 ms", "p99 ms", "srv µs", "pg µs", "SQL", "req/s", "p50", "srv", "pg"
    );
    for row in rows {
        let base = &rows[row.baseline];
        let (rate, p50, p99) = (row.stats.per_second(), row.stats.percentile_ms(0.5), row.stats.percentile_ms(0.99));
        let cost = row.cost.unwrap_or_default();
        let base_cost = base.cost.unwrap_or_default();
        let costs = match row.cost {
            Some(c) => format!("{:>8.0} {:>7.0} {:>5.1}", c.server_us, c.postgres_us, c.statements),
            None => format!("{:>8} {:>7} {:>5}", "", "", ""),
        };
        println!(
            "{:<58} {rate:>7.0} {p50:>7.2} {p99:>7.2} {costs}  {:>26} {:>6} {:>6} {:>6}",
            format!("{} (n={})", row.name, row.stats.count()),
            ratio(rate, base.stats.per_second()),
            ratio(p50, base.stats.percentile_ms(0.5)),
            ratio(cost.server_us, base_cost.server_us),
            ratio(cost.postgres_us, base_cost.postgres_us),
        );
    }
}

pub fn summary(
    rows: &[Row],
    statements: &[(u32, f64)],
    idle: &Cost,
    fan: Option<&fanout::Figures>,
    cross: Option<&fanout::Cross>,
) {
    println!("\nSummary (quoted in README):\n");
    println!("| operation | req/s | p50 ms | p99 ms | server µs/req | Postgres µs/req | SQL/req |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let (rate, p50, p99) = (row.stats.per_second(), row.stats.percentile_ms(0.5), row.stats.percentile_ms(0.99));
        let costs = row.cost.map_or("— | — | —".to_owned(), |c| {
            format!("{:.0} | {:.0} | {:.1}", c.server_us, c.postgres_us, c.statements)
        });
        let rate = if row.cost.is_some() { format!("{rate:.0}") } else { "—".to_owned() };
        println!("| {} | {rate} | {p50:.2} | {p99:.2} | {costs} |", row.name);
    }
    let pages: Vec<String> = statements.iter().map(|(page, n)| format!("{page}: {n:.1}")).collect();
    println!("\nSQL statements per `links(first: n)` with names, one at a time (n: statements): {}", pages.join(", "));
    println!("At rest, per second: {:.1} SQL statements (background work)", idle.statements);
    if let Some(fan) = fan {
        fan.print();
    }
    if let Some(cross) = cross {
        cross.print();
    }
}
