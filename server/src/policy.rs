//! Admission policy as plain functions and small types: which origins may open a WebSocket,
//! how many connections one address and the whole server may hold, and when a client that
//! keeps hitting the rate limit is flooding.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether a WebSocket upgrade with this `Origin` header may proceed (cross-site WebSocket
/// hijacking protection). Allowed: no `Origin` at all (not a browser, so no ambient cookies
/// to abuse), the server's own origin (the `Origin` names the `Host` the request was sent to),
/// an entry of `allowed` (exact `scheme://host:port`), or anything if `allowed` holds `*`.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    if allowed.iter().any(|entry| entry == "*" || entry.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// Why an upgrade was refused before it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds its maximum number of connections (HTTP 503).
    ServerFull,
    /// This address holds its maximum number of connections (HTTP 429).
    TooManyFromAddress,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::ServerFull => "server_full",
            Refusal::TooManyFromAddress => "per_address_limit",
        }
    }
}

/// Counts open connections, in total and per source address.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_address: usize,
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_address,
            total: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a place for a connection from `address`; the place is given back when the
    /// returned [`Permit`] is dropped.
    pub fn acquire(self: &Arc<Self>, address: IpAddr) -> Result<Permit, Refusal> {
        let mut per_address = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(Refusal::ServerFull);
        }
        let held = per_address.entry(address).or_insert(0);
        if *held >= self.max_per_address {
            return Err(Refusal::TooManyFromAddress);
        }
        *held += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Permit { limits: self.clone(), address })
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// A connection's place under the [`ConnectionLimits`]; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    limits: Arc<ConnectionLimits>,
    address: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut per_address = self.limits.per_address.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = per_address.get_mut(&self.address) {
            *held -= 1;
            if *held == 0 {
                per_address.remove(&self.address);
            }
        }
        self.limits.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts frames refused by the rate limit within a window. A client that is a little too
/// fast is told to slow down; one that collects `limit` refusals within `window` is flooding.
#[derive(Debug)]
pub struct Strikes {
    window: Duration,
    limit: u32,
    since: Instant,
    count: u32,
}

impl Strikes {
    pub fn new(window: Duration, limit: u32, now: Instant) -> Self {
        Strikes { window, limit, since: now, count: 0 }
    }

    /// Records a refusal at `now`; returns whether the client is now flooding.
    pub fn strike(&mut self, now: Instant) -> bool {
        if now.duration_since(self.since) >= self.window {
            self.since = now;
            self.count = 0;
        }
        self.count += 1;
        self.count >= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["http://127.0.0.1:8081".into()]
    }

    /// Own origin, listed origins and non-browser clients pass; other sites are refused.
    #[test]
    fn origins() {
        let host = Some("chat.example.com");
        assert!(origin_allowed(None, host, &allowed()), "no Origin: not a browser");
        assert!(origin_allowed(Some("https://chat.example.com"), host, &allowed()));
        assert!(origin_allowed(Some("http://127.0.0.1:8081"), host, &allowed()));
        assert!(!origin_allowed(Some("https://evil.example"), host, &allowed()));
        assert!(!origin_allowed(Some("https://chat.example.com.evil.example"), host, &allowed()));
        assert!(!origin_allowed(Some("null"), host, &allowed()));
        assert!(!origin_allowed(Some("https://evil.example"), None, &allowed()));
        assert!(origin_allowed(Some("https://any.example"), host, &["*".to_owned()]));
    }

    /// Places are limited per address and in total, and come back when permits drop.
    #[test]
    fn connection_limits() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = limits.acquire(a).expect("first from a");
        let _second = limits.acquire(a).expect("second from a");
        assert_eq!(limits.acquire(a).err(), Some(Refusal::TooManyFromAddress));
        let _third = limits.acquire(b).expect("first from b");
        assert_eq!(limits.acquire(b).err(), Some(Refusal::ServerFull));
        drop(first);
        assert_eq!(limits.open(), 2);
        assert!(limits.acquire(a).is_ok(), "a place came back");
    }

    /// Refusals inside one window add up to flooding; a new window starts afresh.
    #[test]
    fn strikes_within_a_window() {
        let start = Instant::now();
        let mut strikes = Strikes::new(Duration::from_secs(10), 3, start);
        assert!(!strikes.strike(start));
        assert!(!strikes.strike(start + Duration::from_secs(1)));
        assert!(!strikes.strike(start + Duration::from_secs(11)), "new window");
        assert!(!strikes.strike(start + Duration::from_secs(12)));
        assert!(strikes.strike(start + Duration::from_secs(13)));
    }
}
