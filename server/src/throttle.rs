//! Log lines at most every 10 s: failures that repeat for every connection, post or call
//! during an outage would flood the log one line each (the metrics count every one).

/// A log line's own slot of one line per 10 s, for failures that must not be hidden behind
/// another kind's (a Redis away must not silence a failing database).
#[derive(Default)]
pub struct Throttle(std::sync::atomic::AtomicU64);

impl Throttle {
    pub const fn new() -> Self {
        Throttle(std::sync::atomic::AtomicU64::new(0))
    }

    /// Runs `log` unless it ran less than 10 s ago.
    pub fn run(&self, log: impl FnOnce()) {
        use std::sync::atomic::Ordering;
        let now = crate::outbound::now_millis();
        let last = self.0.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000
            && self.0.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            log();
        }
    }
}
