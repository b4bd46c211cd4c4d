//! The capacity search: raise the fan-out load step by step until a step fails, then narrow
//! the gap between the last passing and the first failing rate by halving it, down to a
//! resolution. A step passes when p99 stays within the limit, at least 95% of the offered
//! deliveries arrive and nothing is lost.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::fanout::{self, Fanout};

/// How to search.
#[derive(Debug, Clone, clap::Args)]
pub struct Search {
    /// Each step adds this many messages per second per sender.
    #[arg(long, default_value_t = 100)]
    pub step: u32,
    /// The highest rate per sender tried.
    #[arg(long, default_value_t = 800)]
    pub max_rate: u32,
    /// After the first failing step, halve the gap to the last passing one until it is at
    /// most this many messages per second per sender (0: no narrowing).
    #[arg(long, default_value_t = 5)]
    pub resolution: u32,
    /// A step fails when its p99 latency passes this many milliseconds...
    #[arg(long, default_value_t = 100.0)]
    pub p99_limit_ms: f64,
    /// Search once with each of these numbers of generator processes (e.g. `1,2`) and keep
    /// each server's best: how the generator shares the cores with a server changes what the
    /// server can show. Default: `--processes`.
    #[arg(long, value_delimiter = ',')]
    pub try_processes: Vec<usize>,
}

/// The highest load a server sustained.
#[derive(Debug, Clone, Copy)]
pub struct Best {
    pub offered: u64,
    pub delivered: f64,
    /// Generator processes the load came from.
    pub processes: usize,
}

/// What one search found: the best passing load and every measured (offered, p99 ms) point.
#[derive(Debug, Default)]
pub struct Found {
    pub best: Option<Best>,
    pub steps: Vec<(u64, f64)>,
}

/// Searches the server at `address` (named `name` in the progress lines) with `load`'s shape.
pub async fn search(name: &str, address: &str, load: &Fanout, search: &Search) -> Result<Found> {
    // A warm-up at the first step, not counted: Node's JIT makes its first seconds slow, and a
    // capacity search must not stop on that.
    let warm_up =
        Fanout { rate: search.step, duration: Duration::from_secs(2).into(), ..load.clone() };
    fanout::run(address, &warm_up).await.context("warm-up")?;

    let mut found = Found::default();
    let mut passed = 0;
    let mut failed = None;
    let mut rate = search.step.max(1);
    while rate <= search.max_rate {
        if !measure(name, address, &Fanout { rate, ..load.clone() }, search, &mut found).await? {
            failed = Some(rate);
            break;
        }
        passed = rate;
        rate += search.step.max(1);
    }
    if let (Some(mut failed), true) = (failed, search.resolution > 0) {
        while failed - passed > search.resolution {
            let rate = passed + (failed - passed) / 2;
            if measure(name, address, &Fanout { rate, ..load.clone() }, search, &mut found).await? {
                passed = rate;
            } else {
                failed = rate;
            }
        }
    }
    found.steps.sort_by_key(|&(offered, _)| offered);
    Ok(found)
}

/// Runs one step; records it, and as the best if it passed and beats the best so far.
async fn measure(
    name: &str,
    address: &str,
    load: &Fanout,
    search: &Search,
    found: &mut Found,
) -> Result<bool> {
    let outcome = fanout::run(address, load).await?;
    let (got, p99) = (outcome.delivered_per_second(), outcome.percentile_ms(0.99));
    found.steps.push((load.offered(), p99));
    let kept_up = got >= 0.95 * load.offered() as f64 && outcome.lost() == 0 && outcome.closed == 0;
    let passed = kept_up && p99 <= search.p99_limit_ms;
    eprintln!(
        "{name} ({} generator process(es)): offered {:>7}/s delivered {got:>9.0}/s p99 {p99:>8.2} ms lost {:>6} closed {:>3} {}",
        load.processes,
        load.offered(),
        outcome.lost(),
        outcome.closed,
        if passed { "ok" } else { "over the limit" }
    );
    if passed && found.best.is_none_or(|best| got > best.delivered) {
        found.best =
            Some(Best { offered: load.offered(), delivered: got, processes: load.processes });
    }
    Ok(passed)
}
