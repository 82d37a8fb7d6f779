//! Address ranges (`10.0.0.0/8`, `fd00::/8`, or a bare address): what the SSRF guard's
//! `egress_allow` and the trusted proxies of `trusted_proxies` are written in.

use std::net::IpAddr;

/// An address range such as `10.0.0.0/8` or `fd00::/8`; a bare address is a full-length range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = address.parse::<IpAddr>().ok()?.to_canonical();
        let max = bits(network).1;
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ((network, len), (candidate, candidate_len)) = (bits(self.network), bits(ip));
        // Shifting out the host bits leaves the network part; a /0 shifts everything out.
        len == candidate_len
            && (network ^ candidate)
                .checked_shr(u32::from(len - self.prefix))
                .unwrap_or(0)
                == 0
    }
}

/// The address as an integer and its width in bits.
fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_edges() {
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("10.0.0.1".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()), "families never mix");
        let net = Cidr::parse("172.16.0.0/12").unwrap();
        assert!(net.contains("172.31.0.1".parse().unwrap()));
        assert!(!net.contains("172.32.0.1".parse().unwrap()));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("fd00::/129"), None);
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains("fe80::1".parse().unwrap())
        );
    }
}
