//! Reconnection delays: exponential backoff with jitter, so a restarted server is not hit by
//! every client at the same instant.
//!
//! The web client reconnects on this schedule (`frontend/src/connection.rs`), and so does
//! `bench storm`'s load, so that what the benchmark measures after a restart is what the page
//! would see. Plain `std`: the wasm build uses it as well.

use std::time::Duration;

/// The first retry waits about this long.
pub const BASE: Duration = Duration::from_millis(500);
/// No retry waits longer than this.
pub const MAX: Duration = Duration::from_secs(15);
/// A connection that stayed online this long after its welcome (ms) was healthy: the next
/// failure starts the backoff over. A server that accepts and then closes at once is retried
/// ever more slowly instead of every half second.
pub const HEALTHY_MS: f64 = 10_000.0;

/// The attempt number after a connection ended: back to the first after a healthy connection,
/// else one more than `previous`.
pub fn next_attempt(previous: u32, healthy: bool) -> u32 {
    if healthy { 1 } else { previous.saturating_add(1) }
}

/// The delay before attempt number `attempt` (1-based). `random` is uniform in `[0, 1)`; the
/// delay is drawn from the upper half of the exponential step ("equal jitter"), so it always
/// grows with failures yet two clients rarely retry together.
pub fn delay(attempt: u32, random: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let step = BASE.saturating_mul(1 << exponent).min(MAX);
    // NaN (a broken random source) counts as 0: `mul_f64` would panic on it.
    let random = if random.is_nan() { 0.0 } else { random.clamp(0.0, 1.0) };
    step.mul_f64(0.5 + random / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delays double per attempt up to the cap and stay within the jitter band.
    #[test]
    fn grows_exponentially_within_bounds() {
        assert_eq!(delay(1, 0.0), Duration::from_millis(250));
        assert_eq!(delay(1, 1.0), Duration::from_millis(500));
        assert_eq!(delay(2, 1.0), Duration::from_millis(1000));
        assert_eq!(delay(4, 1.0), Duration::from_millis(4000));
        assert_eq!(delay(40, 1.0), MAX);
        assert_eq!(delay(40, 0.0), MAX / 2);
        assert_eq!(delay(1, f64::NAN), delay(1, 0.0), "a broken random source does not panic");
        assert_eq!(delay(1, f64::INFINITY), delay(1, 1.0));
        for attempt in 1..20 {
            let d = delay(attempt, 0.37);
            assert!(d >= delay(attempt, 0.0) && d <= delay(attempt, 1.0));
        }
    }

    /// Connections that are welcomed and then closed at once keep backing off; only one that
    /// stayed healthy starts the backoff over.
    #[test]
    fn only_a_healthy_connection_resets_the_backoff() {
        let mut attempt = 0;
        for _ in 0..6 {
            attempt = next_attempt(attempt, false);
        }
        assert_eq!(attempt, 6);
        assert!(delay(attempt, 0.0) >= Duration::from_secs(7), "no longer every half second");
        assert_eq!(next_attempt(attempt, true), 1);
    }
}
