//! Who a request comes from behind the operator's reverse proxies (`--trusted-proxy`): the
//! address that limits, bans and mutes hold for, and whether the browser spoke HTTPS (for the
//! session cookie's `Secure`). Only a proxy the operator named is believed: from any other
//! peer, `X-Forwarded-For` and `X-Forwarded-Proto` are ignored (anyone can send them).
//!
//! `X-Forwarded-For` is read from its right end, the hops the trusted proxies appended, to
//! the first address that is not a trusted proxy: the client as the outermost trusted proxy
//! saw it. Entries left of that are the client's own claims and are never used.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// The reverse proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies(Vec<IpNet>);

impl Proxies {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Proxies(trusted)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = unmapped(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address: the TCP peer, or behind trusted proxies the address they say
    /// they forwarded for. `None` without a peer address (not over TCP).
    pub fn client(&self, request: &HttpRequest) -> Option<IpAddr> {
        let peer = request.peer_addr()?.ip();
        let forwarded = request.headers().get_all("x-forwarded-for");
        let forwarded: Vec<&str> = forwarded.filter_map(|value| value.to_str().ok()).collect();
        Some(self.client_of(peer, &forwarded.join(",")))
    }

    /// [`Proxies::client`] from the peer and the `X-Forwarded-For` values (joined by commas).
    pub fn client_of(&self, peer: IpAddr, forwarded_for: &str) -> IpAddr {
        let mut client = unmapped(peer);
        if !self.trusts(client) {
            return client;
        }
        for hop in forwarded_for.rsplit(',') {
            // A hop we cannot read ends what can be believed: the last proxy that forwarded
            // it is the best we know.
            let Some(address) = parse_hop(hop) else { return client };
            client = unmapped(address);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }

    /// Whether the browser spoke HTTPS to the outermost trusted proxy (`X-Forwarded-Proto`,
    /// as the proxy next to us set it: its last value).
    pub fn https(&self, request: &HttpRequest) -> bool {
        let Some(peer) = request.peer_addr() else { return false };
        if !self.trusts(peer.ip()) {
            return false;
        }
        // The last value of the last header: what the proxy next to us appended.
        let headers = request.headers().get_all("x-forwarded-proto");
        let proto = headers.filter_map(|value| value.to_str().ok()).last();
        proto
            .and_then(|proto| proto.rsplit(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`, as a dual-stack socket reports it)
/// as IPv4, so that `--trusted-proxy 10.0.0.0/8` matches it.
fn unmapped(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// One hop of `X-Forwarded-For`: an address, maybe with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:5678`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(address) = hop.parse() {
        return Some(address);
    }
    if let Some(bracketed) = hop.strip_prefix('[') {
        return bracketed.split(']').next()?.parse().ok();
    }
    let (address, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse().ok()
}

/// Parses `--trusted-proxy`: a network (`10.0.0.0/8`) or one address (`127.0.0.1`).
pub fn parse_trusted(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither an address nor a network (like 10.0.0.0/8)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str]) -> Proxies {
        Proxies::new(nets.iter().map(|net| parse_trusted(net).expect("a network")).collect())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    /// The client is the first untrusted hop from the right; what the client wrote itself
    /// (left of it) is never believed; an untrusted peer's headers are ignored.
    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let trusted = proxies(&["10.0.0.0/8", "127.0.0.1"]);
        let cases: &[(&str, &str, &str)] = &[
            // peer, X-Forwarded-For, client
            ("127.0.0.1", "203.0.113.5", "203.0.113.5"),
            ("127.0.0.1", "1.1.1.1, 203.0.113.5", "203.0.113.5"),
            ("127.0.0.1", "1.1.1.1, 203.0.113.5, 10.1.2.3", "203.0.113.5"),
            ("127.0.0.1", "", "127.0.0.1"),
            ("127.0.0.1", "10.0.0.9", "10.0.0.9"),
            ("127.0.0.1", "garbage, 10.0.0.9", "10.0.0.9"),
            ("127.0.0.1", "203.0.113.5:4711", "203.0.113.5"),
            ("127.0.0.1", "[2001:db8::7]:4711", "2001:db8::7"),
            ("::ffff:127.0.0.1", "203.0.113.5", "203.0.113.5"),
            ("198.51.100.1", "203.0.113.5", "198.51.100.1"),
        ];
        for (peer, forwarded, client) in cases {
            assert_eq!(trusted.client_of(ip(peer), forwarded), ip(client), "{peer} {forwarded}");
        }
        assert_eq!(Proxies::default().client_of(ip("127.0.0.1"), "203.0.113.5"), ip("127.0.0.1"));
    }

    /// HTTPS is what a trusted proxy says it was (its own, last, value), and nobody else.
    #[test]
    fn https_is_believed_from_trusted_proxies_only() {
        let trusted = proxies(&["127.0.0.1"]);
        let request = |peer: &str, proto: Option<&str>| {
            let mut request = actix_web::test::TestRequest::default()
                .peer_addr(std::net::SocketAddr::new(ip(peer), 4711));
            if let Some(proto) = proto {
                request = request.insert_header(("X-Forwarded-Proto", proto));
            }
            request.to_http_request()
        };
        assert!(trusted.https(&request("127.0.0.1", Some("https"))));
        assert!(trusted.https(&request("127.0.0.1", Some("http, HTTPS"))));
        assert!(!trusted.https(&request("127.0.0.1", Some("https, http"))));
        assert!(!trusted.https(&request("127.0.0.1", None)));
        assert!(!trusted.https(&request("198.51.100.1", Some("https"))), "not a proxy of ours");
        let appended = actix_web::test::TestRequest::default()
            .peer_addr("127.0.0.1:4711".parse().expect("address"))
            .insert_header(("X-Forwarded-Proto", "http"))
            .append_header(("X-Forwarded-Proto", "https"))
            .to_http_request();
        assert!(trusted.https(&appended), "the header the proxy appended");
        let forwarded = actix_web::test::TestRequest::default()
            .peer_addr("127.0.0.1:4711".parse().expect("address"))
            .insert_header(("X-Forwarded-For", "1.1.1.1"))
            .append_header(("X-Forwarded-For", "203.0.113.5"))
            .to_http_request();
        assert_eq!(trusted.client(&forwarded), Some(ip("203.0.113.5")), "several headers");
    }

    #[test]
    fn trusted_proxies_parse_as_networks_or_addresses() {
        assert_eq!(parse_trusted("10.0.0.0/8").map(|net| net.prefix_len()), Ok(8));
        assert_eq!(parse_trusted(" ::1 ").map(|net| net.prefix_len()), Ok(128));
        assert!(parse_trusted("10.0.0.0/33").is_err());
        assert!(parse_trusted("proxy.local").is_err());
    }
}
