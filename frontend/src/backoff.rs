//! Reconnection delays: exponential backoff with jitter, so a restarted server is not hit by
//! every client at the same instant.

use std::time::Duration;

/// The first retry waits about this long.
pub const BASE: Duration = Duration::from_millis(500);
/// No retry waits longer than this.
pub const MAX: Duration = Duration::from_secs(15);

/// The delay before attempt number `attempt` (1-based). `random` is uniform in `[0, 1)`; the
/// delay is drawn from the upper half of the exponential step ("equal jitter"), so it always
/// grows with failures yet two clients rarely retry together.
pub fn delay(attempt: u32, random: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let step = BASE.saturating_mul(1 << exponent).min(MAX);
    step.mul_f64(0.5 + random.clamp(0.0, 1.0) / 2.0)
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
        for attempt in 1..20 {
            let d = delay(attempt, 0.37);
            assert!(d >= delay(attempt, 0.0) && d <= delay(attempt, 1.0));
        }
    }
}
