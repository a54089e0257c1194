//! This machine's addresses on the network, for the URLs `loralab serve
//! --lan` prints.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

/// Addresses teammates can reach when the server listens on `bind`: that
/// address itself, or for 0.0.0.0 / :: every non-loopback IPv4 address.
pub fn reachable_addresses(bind: IpAddr) -> Vec<IpAddr> {
    if !bind.is_unspecified() {
        return vec![bind];
    }
    let mut found = std::fs::read_to_string("/proc/net/fib_trie")
        .map(|text| local_ipv4s(&text))
        .unwrap_or_default();
    if found.is_empty() {
        found.extend(default_route_address());
    }
    found
}

/// The addresses the kernel's routing table marks `/32 host LOCAL`, each
/// under the `|-- ADDRESS` line before it (Linux's /proc/net/fib_trie).
fn local_ipv4s(fib_trie: &str) -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(address) = line.strip_prefix("|-- ") {
            last = address.parse().ok();
        } else if line.starts_with("/32 host LOCAL") {
            if let Some(ip) = last.filter(|ip| !ip.is_loopback()).map(IpAddr::V4) {
                if !found.contains(&ip) {
                    found.push(ip);
                }
            }
        }
    }
    found
}

/// The source address of the default route. Connecting a UDP socket sends
/// nothing; it only asks the kernel which address it would use.
fn default_route_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_come_from_the_routing_table() {
        let fib_trie = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     +-- 192.168.1.0/24 2 0 2
        |-- 192.168.1.0
           /24 link UNICAST
        |-- 192.168.1.37
           /32 host LOCAL
     |-- 10.200.0.1
        /32 host LOCAL
Local:
        |-- 192.168.1.37
           /32 host LOCAL
";
        let found: Vec<String> = local_ipv4s(fib_trie)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, ["192.168.1.37", "10.200.0.1"]);
    }

    #[test]
    fn a_named_address_is_used_as_is() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(reachable_addresses(ip), vec![ip]);
    }
}
