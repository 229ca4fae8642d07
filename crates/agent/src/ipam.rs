//! IPv4 CIDRs and a host-local style address allocator: each node owns one subnet of the
//! cluster CIDR and hands its addresses to sandboxes, as CNI's host-local plugin does for
//! a real node. A bitmap keeps it to a few dozen bytes per node, which matters with
//! thousands of simulated nodes in one process.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, e.g. `10.42.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    base: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, String> {
        if prefix > 32 {
            return Err(format!("prefix length {prefix} is more than 32"));
        }
        let mask = Self::mask_of(prefix);
        Ok(Ipv4Cidr { base: u32::from(addr) & mask, prefix })
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// How many addresses the network spans (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & Self::mask_of(self.prefix) == self.base
    }

    /// The `index`-th address of the network, if it has one.
    pub fn nth(&self, index: u64) -> Option<Ipv4Addr> {
        (index < self.size()).then(|| Ipv4Addr::from(self.base.wrapping_add(index as u32)))
    }

    /// The `index`-th subnet of prefix length `prefix` inside this network (node `index`'s
    /// pod CIDR), or None when there are not that many.
    pub fn subnet(&self, prefix: u8, index: u64) -> Option<Ipv4Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        if index >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        Some(Ipv4Cidr { base: self.base.wrapping_add((index * step) as u32), prefix })
    }

    /// How many subnets of length `prefix` fit.
    pub fn subnet_count(&self, prefix: u8) -> u64 {
        if prefix < self.prefix || prefix > 32 {
            0
        } else {
            1u64 << (prefix - self.prefix)
        }
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR (a.b.c.d/n)"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("{prefix:?} is not a prefix length"))?;
        Ipv4Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// Hands out the addresses of one subnet. The network address and the first host
/// address (the bridge's gateway on a real node) are never given out; nor is the
/// broadcast address.
#[derive(Debug)]
pub struct Allocator {
    cidr: Ipv4Cidr,
    used: Vec<u64>,
    /// Where the next search starts, so that a freed address is not reused at once
    /// (host-local does the same, to keep stale connections from reaching a new pod).
    next: u64,
}

impl Allocator {
    pub fn new(cidr: Ipv4Cidr) -> Self {
        let words = cidr.size().div_ceil(64).min(1 << 16) as usize;
        Allocator { cidr, used: vec![0; words], next: 2 }
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    fn usable(&self) -> u64 {
        // Never more than the bitmap covers.
        self.cidr.size().min(self.used.len() as u64 * 64)
    }

    fn is_used(&self, index: u64) -> bool {
        self.used[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    fn set(&mut self, index: u64, used: bool) {
        let word = &mut self.used[(index / 64) as usize];
        if used {
            *word |= 1 << (index % 64);
        } else {
            *word &= !(1 << (index % 64));
        }
    }

    /// The next free address, or None when the subnet is full.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let size = self.usable();
        // Network, gateway and broadcast are reserved; tiny subnets have no room.
        if size < 4 {
            return None;
        }
        let first = 2;
        let last = size - 2;
        let span = last - first + 1;
        for step in 0..span {
            let index = first + (self.next - first + step) % span;
            if !self.is_used(index) {
                self.set(index, true);
                self.next = if index == last { first } else { index + 1 };
                return self.cidr.nth(index);
            }
        }
        None
    }

    /// Marks `addr` as taken (an address found in use after a restart). False when it is
    /// outside the subnet or already taken.
    pub fn reserve(&mut self, addr: Ipv4Addr) -> bool {
        if !self.cidr.contains(addr) {
            return false;
        }
        let index = u64::from(u32::from(addr) - u32::from(self.cidr.network()));
        if index >= self.usable() || self.is_used(index) {
            return false;
        }
        self.set(index, true);
        true
    }

    pub fn release(&mut self, addr: Ipv4Addr) {
        if self.cidr.contains(addr) {
            let index = u64::from(u32::from(addr) - u32::from(self.cidr.network()));
            if index < self.usable() {
                self.set(index, false);
            }
        }
    }

    pub fn in_use(&self) -> u32 {
        self.used.iter().map(|w| w.count_ones()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let cidr: Ipv4Cidr = "10.42.7.9/16".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.42.0.0/16");
        assert_eq!(cidr.size(), 65536);
        assert!("10.42.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.42.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("::1/64".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn subnets_of_a_cluster_cidr() {
        let cluster: Ipv4Cidr = "10.42.0.0/16".parse().unwrap();
        assert_eq!(cluster.subnet_count(24), 256);
        assert_eq!(cluster.subnet(24, 0).unwrap().to_string(), "10.42.0.0/24");
        assert_eq!(cluster.subnet(24, 255).unwrap().to_string(), "10.42.255.0/24");
        assert_eq!(cluster.subnet(24, 256), None);
        assert_eq!(cluster.subnet(8, 0), None);
        let wide: Ipv4Cidr = "100.64.0.0/10".parse().unwrap();
        assert_eq!(wide.subnet(24, 4999).unwrap().to_string(), "100.83.135.0/24");
    }

    #[test]
    fn allocates_skipping_reserved_and_recently_freed() {
        let mut ipam = Allocator::new("10.42.3.0/29".parse().unwrap());
        let got: Vec<_> = std::iter::from_fn(|| ipam.allocate()).collect();
        // .0 network, .1 gateway, .7 broadcast are never handed out.
        assert_eq!(
            got.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["10.42.3.2", "10.42.3.3", "10.42.3.4", "10.42.3.5", "10.42.3.6"]
        );
        assert_eq!(ipam.in_use(), 5);
        ipam.release("10.42.3.3".parse().unwrap());
        ipam.release("10.42.3.5".parse().unwrap());
        assert_eq!(ipam.allocate().unwrap().to_string(), "10.42.3.3");
        assert_eq!(ipam.allocate().unwrap().to_string(), "10.42.3.5");
        assert_eq!(ipam.allocate(), None);
    }

    #[test]
    fn reserve_marks_addresses_found_in_use() {
        let mut ipam = Allocator::new("10.42.0.0/24".parse().unwrap());
        assert!(ipam.reserve("10.42.0.2".parse().unwrap()));
        assert!(!ipam.reserve("10.42.0.2".parse().unwrap()));
        assert!(!ipam.reserve("10.43.0.2".parse().unwrap()));
        assert_eq!(ipam.allocate().unwrap().to_string(), "10.42.0.3");
    }
}
