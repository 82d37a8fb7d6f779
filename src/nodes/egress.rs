//! The SSRF guard for network nodes: which hosts and addresses `HTTPRequestNode` and the SQL
//! nodes may reach.
//!
//! Public addresses are always allowed. Loopback, private (RFC 1918, CGNAT, IPv6 unique
//! local), link-local, unspecified, broadcast and multicast addresses — including their
//! IPv4-mapped IPv6 forms — are refused unless the operator's `egress_allow` lists the host
//! name, the address or a CIDR range containing it. A host name is judged by every address it
//! resolves to, and callers connect to exactly the addresses that were vetted, so a DNS answer
//! cannot change between the check and the connect (no rebinding).
//!
//! It also holds the two small helpers both network nodes share: the `timeout` parameter and
//! error-chain formatting.

use std::{
    error::Error as StdError,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use kailash_actors::engine::node::{NodeCall, NodeError};

use super::files::wrong_type;
use crate::cidr::Cidr;

/// What `egress_allow` lets through on top of the public internet.
#[derive(Debug, Default)]
pub(crate) struct EgressPolicy {
    /// Lower-case host names without a trailing dot, matched exactly.
    names: Vec<String>,
    /// Single addresses are stored as full-length ranges.
    ranges: Vec<Cidr>,
}

impl EgressPolicy {
    /// The policy for the operator's `egress_allow` items; an item that is neither a host
    /// name, an IP address nor a CIDR range is ignored with a warning, so a typo narrows
    /// rather than widens what is reachable.
    pub(crate) fn new(items: &[String]) -> Self {
        let mut policy = Self::default();
        for item in items
            .iter()
            .map(|item| item.trim())
            .filter(|item| !item.is_empty())
        {
            let bare = item.trim_start_matches('[').trim_end_matches(']');
            if let Some(range) = Cidr::parse(bare) {
                policy.ranges.push(range);
            } else if is_host_name(item) {
                policy.names.push(normalize_name(item));
            } else {
                tracing::warn!(
                    item,
                    "ignoring egress_allow item: not a host name, IP address or CIDR range"
                );
            }
        }
        policy
    }

    /// Resolves `host` and returns its addresses if every one of them may be reached;
    /// connect to exactly these. `host` may be a name or an IP literal (IPv6 with or without
    /// brackets); port 0 is fine when the caller only wants the addresses.
    pub(crate) async fn check_host(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, NodeError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| NodeError::new(format!("cannot resolve host {host}: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(NodeError::new(format!(
                "host {host} resolves to no address"
            )));
        }
        for addr in &addrs {
            self.check_ip(host, addr.ip())?;
        }
        Ok(addrs)
    }

    /// Whether `ip`, reached under the name `host`, may be contacted. Synchronous for the
    /// places that cannot await (redirect policies) and for IP literals, which need no lookup.
    pub(crate) fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), NodeError> {
        let ip = ip.to_canonical();
        let Some(kind) = restricted_kind(ip) else {
            return Ok(());
        };
        if self.names.contains(&normalize_name(host))
            || self.ranges.iter().any(|range| range.contains(ip))
        {
            return Ok(());
        }
        let target = if host.parse::<IpAddr>().is_ok() {
            ip.to_string()
        } else {
            format!("{host} ({ip})")
        };
        Err(NodeError::new(format!(
            "egress to {target} refused: {kind} address (the operator may allow it: egress_allow)"
        )))
    }
}

/// Why `ip` (already canonical: IPv4-mapped IPv6 folded to IPv4) is not public, if it isn't.
fn restricted_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    first_kind([
        // 0.0.0.0/8 is "this network"; Linux routes 0.0.0.0 to the local host.
        (a == 0, "unspecified"),
        (ip.is_loopback(), "loopback"),
        (ip.is_private(), "private"),
        (a == 100 && (64..128).contains(&b), "shared (CGNAT)"),
        (ip.is_link_local(), "link-local"),
        (ip.is_broadcast(), "broadcast"),
        (ip.is_multicast(), "multicast"),
    ])
}

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    first_kind([
        (ip.is_unspecified(), "unspecified"),
        (ip.is_loopback(), "loopback"),
        (first & 0xfe00 == 0xfc00, "private (unique local)"),
        (first & 0xffc0 == 0xfe80, "link-local"),
        (ip.is_multicast(), "multicast"),
    ])
}

fn first_kind<const N: usize>(checks: [(bool, &'static str); N]) -> Option<&'static str> {
    checks
        .into_iter()
        .find(|(hit, _)| *hit)
        .map(|(_, kind)| kind)
}

fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The `timeout` parameter of the network nodes: positive seconds, `default` when not given.
pub(crate) fn timeout_param(call: &NodeCall, default: Duration) -> Result<Duration, NodeError> {
    let Some(value) = call.param("timeout") else {
        return Ok(default);
    };
    value
        .as_f64()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|timeout| !timeout.is_zero())
        .ok_or_else(|| wrong_type("timeout", "a positive number of seconds", value))
}

/// An error and its causes, "outer: inner: root": the HTTP and database drivers put the
/// useful part (refused, reset, bad option) in the causes.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    std::iter::successors(Some(error), |&e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// What the HTTP and SQL node tests share: a registry whose policy allows `allow`, and runs
/// awaited inside the caller's runtime, where test servers and connection pools live on.
#[cfg(test)]
pub(crate) mod testing {
    use kailash_actors::engine::node::{NodeCall, NodeOutput, NodeRegistry};
    use serde_json::Value;

    use crate::nodes::NodeEnvironment;

    pub(crate) fn registry(
        register: fn(&mut NodeRegistry, &NodeEnvironment),
        allow: &[&str],
    ) -> NodeRegistry {
        let egress_allow = allow.iter().map(ToString::to_string).collect();
        let mut registry = NodeRegistry::new();
        register(
            &mut registry,
            &NodeEnvironment {
                egress_allow,
                ..NodeEnvironment::default()
            },
        );
        registry
    }

    pub(crate) async fn call(
        registry: &NodeRegistry,
        node_type: &str,
        params: Value,
    ) -> Result<NodeOutput, String> {
        let params = serde_json::from_value(params).expect("params as an object");
        let node = registry.get(node_type).expect("a registered node type");
        node.run(NodeCall {
            node_id: "test".into(),
            params,
        })
        .await
        .map_err(|error| error.message)
    }
}

#[cfg(test)]
mod tests {
    use super::{super::files::testing::run, *};

    fn policy(items: &[&str]) -> EgressPolicy {
        EgressPolicy::new(
            &items
                .iter()
                .map(|item| item.to_string())
                .collect::<Vec<_>>(),
        )
    }

    fn kind(ip: &str) -> Option<&'static str> {
        restricted_kind(ip.parse::<IpAddr>().unwrap().to_canonical())
    }

    #[test]
    fn non_public_addresses_are_classified() {
        for (ip, expected) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.254", "shared (CGNAT)"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "private (unique local)"),
            ("fd12:3456::1", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
        ] {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn allow_list_takes_names_addresses_and_ranges() {
        let allow = policy(&[
            "Internal.Example.",
            "127.0.0.1",
            "10.0.0.0/8",
            "fd00::/8",
            "[::1]",
            "bad/99",
            "*.x",
        ]);
        assert_eq!(allow.names, ["internal.example"]);
        assert_eq!(allow.ranges.len(), 4, "bad/99 and *.x are ignored");
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(allow.check_ip("127.0.0.1", loopback).is_ok());
        assert!(
            allow.check_ip("anything", mapped).is_ok(),
            "mapped form of an allowed address"
        );
        assert!(allow.check_ip("x", "127.0.0.2".parse().unwrap()).is_err());
        assert!(allow.check_ip("x", "10.200.3.4".parse().unwrap()).is_ok());
        assert!(allow.check_ip("x", "192.168.0.1".parse().unwrap()).is_err());
        assert!(allow.check_ip("x", "fd99::5".parse().unwrap()).is_ok());
        assert!(allow.check_ip("x", "fc00::5".parse().unwrap()).is_err());
        assert!(allow.check_ip("x", "::1".parse().unwrap()).is_ok());
        assert!(
            allow
                .check_ip("INTERNAL.example", "192.168.0.1".parse().unwrap())
                .is_ok()
        );
        assert!(
            allow.check_ip("x", "8.8.8.8".parse().unwrap()).is_ok(),
            "public needs no allow"
        );
    }

    #[test]
    fn host_check_resolves_and_refuses() {
        run(async {
            let message = policy(&[])
                .check_host("localhost", 80)
                .await
                .unwrap_err()
                .message;
            assert!(
                message.contains("localhost") && message.contains("loopback"),
                "{message}"
            );
            assert!(policy(&[]).check_host("[::1]", 80).await.is_err());
            let addrs = policy(&["localhost"])
                .check_host("localhost", 8080)
                .await
                .unwrap();
            assert!(
                addrs
                    .iter()
                    .all(|addr| addr.port() == 8080 && addr.ip().is_loopback())
            );
            let addrs = policy(&["127.0.0.0/8"])
                .check_host("127.0.0.1", 1)
                .await
                .unwrap();
            assert_eq!(addrs, ["127.0.0.1:1".parse::<SocketAddr>().unwrap()]);
        });
    }
}
