//! Admission policy as plain functions and small types: which origins and host names may open
//! a WebSocket, how many connections one address and the whole server may hold, how fast one
//! connection may send frames and switch rooms, and when a client that keeps hitting the rate
//! limit is flooding. The session asks; the rules live here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
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

/// Whether a request naming `host` (its `Host` header) may be served by a server bound to
/// `bound`. A server bound to a loopback address serves only loopback names (`localhost`,
/// `127.x.x.x`, `[::1]`) and the names in `allowed`: otherwise a page on any site could point
/// its own name at 127.0.0.1 (DNS rebinding) and then pass the origin check, since its
/// `Origin` would name the very host it asked for. A server bound elsewhere is reached through
/// names nobody can list in advance; the origin check guards it.
pub fn host_allowed(host: Option<&str>, bound: IpAddr, allowed: &[String]) -> bool {
    if !bound.is_loopback() {
        return true;
    }
    let Some(host) = host else { return false };
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback || allowed.iter().any(|entry| entry.eq_ignore_ascii_case(name))
}

/// The address connection limits count under: an IPv4 address, or an IPv6 address's /64
/// network, since one host or subscriber commonly holds a whole /64 and could otherwise open
/// connections from as many addresses as it likes. IPv4 addresses mapped into IPv6 count as
/// IPv4.
pub fn limit_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

/// Why an upgrade was refused before it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds its maximum number of connections (HTTP 503).
    ServerFull,
    /// This address holds its maximum number of connections (HTTP 429).
    TooManyFromAddress,
    /// The connection has no peer address to count it under (HTTP 400); the server listens on
    /// TCP only, so this should not happen.
    NoPeerAddress,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::ServerFull => "server_full",
            Refusal::TooManyFromAddress => "per_address_limit",
            Refusal::NoPeerAddress => "no_peer_address",
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

    /// Takes a place for a connection from `address` (counted under its [`limit_key`]); the
    /// place is given back when the returned [`Permit`] is dropped.
    pub fn acquire(self: &Arc<Self>, address: IpAddr) -> Result<Permit, Refusal> {
        let address = limit_key(address);
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

impl Permit {
    /// The address this connection counts under (see [`limit_key`]).
    pub fn address(&self) -> IpAddr {
        self.address
    }
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

/// What becomes of one frame under [`FrameRate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Pass,
    /// Refused: the next frame is accepted after this long.
    TooFast(Duration),
    /// Refused, and the client has collected enough refusals to be closed (1008).
    Flooding,
}

/// How fast one connection may send frames: a token bucket of `per_second` with bursts of
/// `burst` (governor), and the [`Strikes`] that turn a client that keeps going into a flood.
#[derive(Debug)]
pub struct FrameRate {
    limiter: DefaultDirectRateLimiter,
    strikes: Strikes,
}

impl FrameRate {
    pub fn new(per_second: u32, burst: u32, flood_limit: u32, now: Instant) -> Self {
        let at_least_one = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(at_least_one(per_second)).allow_burst(at_least_one(burst));
        FrameRate {
            limiter: RateLimiter::direct(quota),
            strikes: Strikes::new(crate::config::FLOOD_WINDOW, flood_limit.max(1), now),
        }
    }

    /// Takes one frame's token, if there is one.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let Err(not_until) = self.limiter.check() else { return Admission::Pass };
        if self.strikes.strike(now) {
            return Admission::Flooding;
        }
        Admission::TooFast(not_until.wait_time_from(self.limiter.clock().now()))
    }
}

/// How fast one connection may join rooms: bursts of `burst`, then one per `interval`, so that
/// hopping between rooms cannot flood them with presence notices.
#[derive(Debug)]
pub struct JoinRate {
    limiter: DefaultDirectRateLimiter,
}

impl JoinRate {
    pub fn new(interval: Duration, burst: NonZeroU32) -> Self {
        let quota = Quota::with_period(interval).unwrap_or(Quota::per_second(NonZeroU32::MAX));
        JoinRate { limiter: RateLimiter::direct(quota.allow_burst(burst)) }
    }

    /// Takes one join's token; `Err` says how long until the next.
    pub fn admit(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }
}

/// How often each key (a connection, an address) may do something: `per_minute` times a
/// minute, in bursts of as many. Keys that have been quiet long enough are forgotten by
/// [`KeyedRate::forget_quiet`], so the table does not grow with every key ever seen.
#[derive(Debug)]
pub struct KeyedRate<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: std::hash::Hash + Eq + Clone> KeyedRate<K> {
    /// `per_second` on average, in bursts of at most `burst`.
    pub fn per_second(per_second: u32, burst: u32) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        KeyedRate { limiter: RateLimiter::keyed(quota) }
    }

    pub fn per_minute(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        KeyedRate { limiter: RateLimiter::keyed(quota) }
    }

    /// Takes one token of `key`'s; `Err` says how long until the next.
    pub fn admit(&self, key: &K) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Forgets the keys whose bucket has refilled.
    pub fn forget_quiet(&self) {
        self.limiter.retain_recent();
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

    /// IPv6 addresses count per /64; IPv4 (mapped or not) per address.
    #[test]
    fn ipv6_counts_per_64() {
        let limits = ConnectionLimits::new(10, 2);
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        let _a = limits.acquire(ip("2001:db8:1:2::1")).expect("first of the /64");
        let _b = limits.acquire(ip("2001:db8:1:2:ffff::9")).expect("second of the /64");
        assert_eq!(
            limits.acquire(ip("2001:db8:1:2:abcd::1")).err(),
            Some(Refusal::TooManyFromAddress)
        );
        assert!(limits.acquire(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        let _c = limits.acquire(ip("10.0.0.1")).expect("v4");
        let _d = limits.acquire(ip("::ffff:10.0.0.1")).expect("the same v4, mapped");
        assert_eq!(limits.acquire(ip("10.0.0.1")).err(), Some(Refusal::TooManyFromAddress));
        assert_eq!(limit_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    /// Bound to loopback, only loopback host names (and listed ones) are served; bound
    /// elsewhere, any.
    #[test]
    fn hosts_of_a_loopback_server() {
        let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
        let listed = vec!["chat.internal".to_owned()];
        for host in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "127.0.0.2"] {
            assert!(host_allowed(Some(host), loopback, &[]), "{host}");
        }
        for host in
            ["evil.example:8080", "evil.example", "127.0.0.1.evil.example", "[2001:db8::1]:80"]
        {
            assert!(!host_allowed(Some(host), loopback, &[]), "{host}");
        }
        assert!(!host_allowed(None, loopback, &[]), "no Host at all");
        assert!(host_allowed(Some("chat.internal:8080"), loopback, &listed));
        let public: IpAddr = "0.0.0.0".parse().expect("ip");
        assert!(host_allowed(Some("chat.example.com"), public, &[]));
    }

    /// Past the burst, frames are refused with a wait of about one token; enough refusals
    /// within the window make a flood.
    #[test]
    fn frames_past_the_burst_are_refused_then_flooding() {
        let start = Instant::now();
        // One token a second: the test has a second before the bucket refills.
        let mut rate = FrameRate::new(1, 3, 2, start);
        for _ in 0..3 {
            assert_eq!(rate.admit(start), Admission::Pass);
        }
        match rate.admit(start) {
            Admission::TooFast(wait) => assert!(wait <= Duration::from_secs(1), "{wait:?}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(rate.admit(start), Admission::Flooding, "the second refusal in the window");
    }

    /// Joins pass in a burst, then one per interval.
    #[test]
    fn joins_come_in_bursts_then_spaced() {
        let rate = JoinRate::new(Duration::from_secs(2), NonZeroU32::new(2).expect("two"));
        assert!(rate.admit().is_ok() && rate.admit().is_ok());
        let wait = rate.admit().expect_err("third at once");
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(2), "{wait:?}");
    }

    /// Each key has a bucket of its own.
    #[test]
    fn keyed_rates_are_per_key() {
        let rate = KeyedRate::per_minute(2);
        assert!(rate.admit(&1).is_ok() && rate.admit(&1).is_ok());
        let wait = rate.admit(&1).expect_err("a third at once");
        assert!(wait > Duration::from_secs(20) && wait <= Duration::from_secs(30), "{wait:?}");
        assert!(rate.admit(&2).is_ok(), "another key");
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
