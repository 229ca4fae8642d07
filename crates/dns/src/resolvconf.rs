//! Reading resolv.conf: the host's upstream resolvers (for forwarding) and its search
//! domains and options (for pods with dnsPolicy Default, and the host part of ClusterFirst).

use std::net::IpAddr;
use std::path::Path;

/// Where the host's resolver configuration is.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of the real upstreams, used when /etc/resolv.conf only names
/// its loopback stub (which pods cannot reach), as k3s does.
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text; unknown lines and malformed addresses are skipped, and
    /// the last `search`/`domain` line wins, as in the C library.
    pub fn parse(text: &str) -> Self {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => {
                    // IPv6 link-local addresses may carry a zone (`fe80::1%eth0`): not usable here.
                    if let Some(ip) = fields.next().and_then(|f| f.split('%').next()?.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    conf.searches =
                        fields.map(|s| s.trim_end_matches('.').to_string()).filter(|s| !s.is_empty()).collect()
                }
                Some("options") => conf.options.extend(fields.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// Reads and parses `path`; a missing file is an empty configuration.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// The host's configuration: /etc/resolv.conf, or systemd-resolved's upstream list
    /// when /etc/resolv.conf names only loopback resolvers.
    pub fn host() -> Self {
        let conf = Self::read(Path::new(HOST_RESOLV_CONF)).unwrap_or_default();
        if !conf.nameservers.is_empty() && conf.nameservers.iter().all(IpAddr::is_loopback) {
            if let Ok(upstream) = Self::read(Path::new(SYSTEMD_RESOLV_CONF)) {
                if !upstream.nameservers.is_empty() {
                    return upstream;
                }
            }
        }
        conf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nameservers_search_and_options() {
        let conf = ResolvConf::parse(
            "# comment\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver bogus\nsearch a.example. b.example\noptions ndots:2 edns0\n",
        );
        assert_eq!(conf.nameservers, vec!["10.0.0.2".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]);
        assert_eq!(conf.searches, vec!["a.example", "b.example"]);
        assert_eq!(conf.options, vec!["ndots:2", "edns0"]);
    }

    #[test]
    fn last_search_line_wins() {
        let conf = ResolvConf::parse("domain one.example\nsearch two.example\n");
        assert_eq!(conf.searches, vec!["two.example"]);
    }
}
