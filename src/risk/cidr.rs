//! Allowed source addresses: IPv4 and IPv6 networks in CIDR notation
//! (`198.18.0.0/15`, `10.1.2.3`, `::1/128`).

use std::fmt;
use std::net::IpAddr;

/// One network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parse `ADDR` or `ADDR/BITS`. The address's bits past the prefix must
    /// be zero (a typo such as `10.1.2.3/8` is refused, not silently widened).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().map_err(|_| format!("{s:?}: not an IP address or network"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&b| b <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        let c = Cidr { net, bits };
        if !c.contains(net) || c.masked(net) != net {
            return Err(format!("{s:?}: the address has bits set past the /{bits} prefix"));
        }
        Ok(c)
    }

    fn masked(&self, a: IpAddr) -> IpAddr {
        match a {
            IpAddr::V4(v) => {
                let m = if self.bits == 0 { 0 } else { u32::MAX << (32 - u32::from(self.bits)) };
                IpAddr::V4((u32::from(v) & m).into())
            }
            IpAddr::V6(v) => {
                let m = if self.bits == 0 { 0 } else { u128::MAX << (128 - u32::from(self.bits)) };
                IpAddr::V6((u128::from(v) & m).into())
            }
        }
    }

    /// Is `a` in this network? An IPv4-mapped IPv6 address counts as its
    /// IPv4 address.
    pub fn contains(&self, a: IpAddr) -> bool {
        let a = match a {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        a.is_ipv4() == self.net.is_ipv4() && self.masked(a) == self.net
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_and_nothing_else() {
        let c = Cidr::parse("198.18.0.0/15").unwrap();
        assert!(c.contains(ip("198.18.0.1")));
        assert!(c.contains(ip("198.19.255.255")));
        assert!(!c.contains(ip("198.20.0.0")));
        assert!(!c.contains(ip("198.17.255.255")));
        assert!(c.contains(ip("::ffff:198.18.0.9")), "an IPv4-mapped address is its IPv4 address");
        let one = Cidr::parse("10.1.2.3").unwrap();
        assert!(one.contains(ip("10.1.2.3")) && !one.contains(ip("10.1.2.4")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.7")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("::1/128").unwrap().contains(ip("::1")));
        assert_eq!(c.to_string(), "198.18.0.0/15");
    }

    #[test]
    fn malformed_networks_are_refused() {
        for bad in ["10.1.2.3/8", "10.0.0.0/33", "10.0.0/8", "host", "::1/129", "10.0.0.0/-1", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
