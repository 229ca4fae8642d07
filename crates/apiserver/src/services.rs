//! Service address allocation: ClusterIPs from the service CIDR and NodePorts from
//! 30000-32767, never handed out twice, released when a Service goes away.
//!
//! The allocated sets are rebuilt from the stored Services at start, so they cannot
//! drift from what the store holds. (One API server per store for now: several servers
//! sharing etcd need the sets kept in the store itself.)

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use rand::Rng;
use serde_json::{json, Value};
use skiff_api::{ApiError, FieldError, Target};

pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// An IPv4 CIDR such as 10.43.0.0/16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{s:?}: bad IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=30).contains(p))
            .ok_or_else(|| format!("{s:?}: prefix must be 8..30"))?;
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr { base: u32::from(ip) & mask, prefix })
    }
}

impl Cidr {
    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & (u32::MAX << (32 - self.prefix)) == self.base
    }

    /// The first usable address: the `kubernetes` Service's.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }
}

/// What one write allocated, so a failed write can give it back.
#[derive(Debug, Default)]
pub struct Allocation {
    ips: Vec<Ipv4Addr>,
    ports: Vec<u16>,
}

pub struct ServiceAllocator {
    cidr: Cidr,
    ips: Mutex<HashSet<Ipv4Addr>>,
    ports: Mutex<HashSet<u16>>,
}

fn target(svc: &Value) -> Target {
    Target::new("", "Service", svc["metadata"]["name"].as_str().unwrap_or_default())
}

fn invalid(svc: &Value, error: FieldError) -> ApiError {
    ApiError::invalid_one(target(svc), error)
}

/// The ClusterIP a Service holds, if it holds one.
fn cluster_ip(svc: &Value) -> Option<Ipv4Addr> {
    svc["spec"]["clusterIP"].as_str().and_then(|s| s.parse().ok())
}

fn node_ports(svc: &Value) -> Vec<u16> {
    svc["spec"]["ports"]
        .as_array()
        .map(|ports| {
            ports.iter().filter_map(|p| p["nodePort"].as_u64()).filter_map(|p| u16::try_from(p).ok()).collect()
        })
        .unwrap_or_default()
}

fn service_type(svc: &Value) -> &str {
    svc["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

fn wants_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

impl ServiceAllocator {
    pub fn new(cidr: Cidr) -> Self {
        ServiceAllocator { cidr, ips: Mutex::default(), ports: Mutex::default() }
    }

    /// Marks what stored Services already hold.
    pub fn restore<'a>(&self, services: impl IntoIterator<Item = &'a Value>) {
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        for svc in services {
            ips.extend(cluster_ip(svc));
            ports.extend(node_ports(svc));
        }
    }

    fn take_ip(&self, svc: &Value, requested: Option<Ipv4Addr>, alloc: &mut Allocation) -> Result<Ipv4Addr, ApiError> {
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = requested {
            let field = "spec.clusterIPs";
            if !self.cidr.contains(ip) || u32::from(ip) == self.cidr.base {
                let detail = format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range");
                return Err(invalid(svc, FieldError::invalid(field, json!([ip.to_string()]), &detail)));
            }
            if !ips.insert(ip) {
                let detail = format!("failed to allocate IP {ip}: provided IP is already allocated");
                return Err(invalid(svc, FieldError::invalid(field, json!([ip.to_string()]), &detail)));
            }
            alloc.ips.push(ip);
            return Ok(ip);
        }
        // Usable: base+2 .. broadcast-1 (base+1 is the kubernetes Service's, asked for by name).
        let usable = self.cidr.size() - 3;
        if ips.len() as u32 >= usable {
            return Err(ApiError::Internal("failed to allocate a serviceIP: range is full".into()));
        }
        // As KEP-3070: addresses picked here come from above the first size/16 (16..256)
        // first, which stay for Services that ask for one by number (kube-dns' 10.43.0.10).
        let reserved = (self.cidr.size() / 16).clamp(16, 256).min(usable);
        for (from, len) in [(reserved, usable - reserved), (0, reserved)] {
            if len == 0 {
                continue;
            }
            let start = rand::rng().random_range(0..len);
            for offset in 0..len {
                let ip = Ipv4Addr::from(self.cidr.base + 2 + from + (start + offset) % len);
                if ips.insert(ip) {
                    alloc.ips.push(ip);
                    return Ok(ip);
                }
            }
        }
        Err(ApiError::Internal("failed to allocate a serviceIP: range is full".into()))
    }

    fn take_port(
        &self,
        svc: &Value,
        index: usize,
        requested: Option<u16>,
        alloc: &mut Allocation,
    ) -> Result<u16, ApiError> {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let field = format!("spec.ports[{index}].nodePort");
        if let Some(port) = requested {
            if !NODE_PORT_RANGE.contains(&port) {
                let detail = "provided port is not in the valid range. The range of valid ports is 30000-32767";
                return Err(invalid(svc, FieldError::invalid(field, port, detail)));
            }
            if !ports.insert(port) {
                return Err(invalid(svc, FieldError::invalid(field, port, "provided port is already allocated")));
            }
            alloc.ports.push(port);
            return Ok(port);
        }
        let span = u32::from(NODE_PORT_RANGE.end() - NODE_PORT_RANGE.start()) + 1;
        let start = rand::rng().random_range(0..span);
        for offset in 0..span {
            let port = NODE_PORT_RANGE.start() + ((start + offset) % span) as u16;
            if ports.insert(port) {
                alloc.ports.push(port);
                return Ok(port);
            }
        }
        Err(ApiError::Internal("failed to allocate a nodePort: range is full".into()))
    }

    /// Gives back what a failed write allocated, or what a deleted Service held.
    pub fn release(&self, alloc: Allocation) {
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        alloc.ips.iter().for_each(|ip| {
            ips.remove(ip);
        });
        drop(ips);
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        alloc.ports.iter().for_each(|p| {
            ports.remove(p);
        });
    }

    /// Everything a stored Service holds, to release when it is deleted.
    pub fn held_by(svc: &Value) -> Allocation {
        Allocation { ips: cluster_ip(svc).into_iter().collect(), ports: node_ports(svc) }
    }

    /// Fills in spec.clusterIP(s) and nodePorts of a Service being created or updated.
    /// On update, values the stored Service holds and the new one leaves unset are kept;
    /// values it no longer holds are returned as the second allocation (to release once
    /// the write succeeds).
    pub fn allocate(&self, svc: &mut Value, old: Option<&Value>) -> Result<(Allocation, Allocation), ApiError> {
        let mut alloc = Allocation::default();
        match self.allocate_into(svc, old, &mut alloc) {
            Ok(()) => {
                let freed = old.map(|old| {
                    let mut held = Self::held_by(old);
                    let now = Self::held_by(svc);
                    held.ips.retain(|ip| !now.ips.contains(ip));
                    held.ports.retain(|p| !now.ports.contains(p));
                    held
                });
                Ok((alloc, freed.unwrap_or_default()))
            }
            Err(error) => {
                self.release(alloc);
                Err(error)
            }
        }
    }

    fn allocate_into(&self, svc: &mut Value, old: Option<&Value>, alloc: &mut Allocation) -> Result<(), ApiError> {
        let snapshot = svc.clone();
        let is_external = service_type(svc) == "ExternalName";
        let spec = &mut svc["spec"];
        if is_external {
            return Ok(());
        }
        let old_ip = old.and_then(|o| o["spec"]["clusterIP"].as_str()).map(str::to_string);
        let requested = spec["clusterIP"].as_str().filter(|s| !s.is_empty()).map(str::to_string).or(old_ip.clone());
        let ip_value = match requested.as_deref() {
            Some("None") => "None".to_string(),
            Some(ip) if old_ip.as_deref() == Some(ip) => ip.to_string(),
            Some(ip) => {
                let parsed = ip.parse::<Ipv4Addr>().map_err(|_| {
                    invalid(
                        &snapshot,
                        FieldError::invalid(
                            "spec.clusterIPs[0]",
                            ip,
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        ),
                    )
                })?;
                self.take_ip(&snapshot, Some(parsed), alloc)?.to_string()
            }
            None => self.take_ip(&snapshot, None, alloc)?.to_string(),
        };
        spec["clusterIP"] = json!(ip_value);
        spec["clusterIPs"] = json!([ip_value]);

        let old_ports = old.map(node_ports).unwrap_or_default();
        let wants = wants_node_ports(&snapshot);
        if let Some(ports) = spec["ports"].as_array_mut() {
            for (index, port) in ports.iter_mut().enumerate() {
                if !wants {
                    if let Some(map) = port.as_object_mut() {
                        map.remove("nodePort");
                    }
                    continue;
                }
                let requested = port["nodePort"].as_u64().filter(|p| *p != 0);
                let kept = old.and_then(|o| o["spec"]["ports"].get(index)).and_then(|p| p["nodePort"].as_u64());
                let value = match requested.or(kept) {
                    Some(p) if old_ports.iter().any(|o| u64::from(*o) == p) => p as u16,
                    Some(p) => {
                        let p = u16::try_from(p).unwrap_or(0);
                        self.take_port(&snapshot, index, Some(p), alloc)?
                    }
                    None => self.take_port(&snapshot, index, None, alloc)?,
                };
                port["nodePort"] = json!(value);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator() -> ServiceAllocator {
        ServiceAllocator::new("10.43.0.0/16".parse().unwrap())
    }

    #[test]
    fn allocates_distinct_ips_and_ports() {
        let alloc = allocator();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let mut svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
            alloc.allocate(&mut svc, None).unwrap();
            assert!(seen.insert(svc["spec"]["clusterIP"].as_str().unwrap().to_string()));
            assert!(seen.insert(svc["spec"]["ports"][0]["nodePort"].to_string()));
        }
    }

    #[test]
    fn dynamic_addresses_spare_the_low_band_until_the_rest_is_full() {
        let alloc = allocator();
        for _ in 0..500 {
            let mut svc = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}});
            alloc.allocate(&mut svc, None).unwrap();
            let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
            assert!(ip >= Ipv4Addr::new(10, 43, 1, 2), "{ip} is in the band kept for requested addresses");
        }
        // A small range still hands out its low band once the rest is taken.
        let small = ServiceAllocator::new("10.96.0.0/28".parse().unwrap());
        let taken: HashSet<String> = (0..13)
            .map(|_| {
                let mut svc = json!({"metadata": {"name": "s"}, "spec": {}});
                small.allocate(&mut svc, None).unwrap();
                svc["spec"]["clusterIP"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(taken.len(), 13);
    }

    #[test]
    fn rejects_taken_and_out_of_range_requests() {
        let alloc = allocator();
        let mut a = json!({"metadata": {"name": "a"}, "spec": {"clusterIP": "10.43.0.10", "ports": [{"port": 80}]}});
        alloc.allocate(&mut a, None).unwrap();
        let mut b = a.clone();
        let err = alloc.allocate(&mut b, None).unwrap_err();
        assert_eq!(err.code(), 422);
        assert!(err.message().contains("already allocated"), "{}", err.message());
        let mut c = json!({"metadata": {"name": "c"}, "spec": {"clusterIP": "10.99.0.1"}});
        assert_eq!(alloc.allocate(&mut c, None).unwrap_err().code(), 422);
        let mut d =
            json!({"metadata": {"name": "d"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}});
        let err = alloc.allocate(&mut d, None).unwrap_err();
        assert_eq!(err.status()["details"]["causes"][0]["field"], "spec.ports[0].nodePort");
        // The failed request gave its ClusterIP back: the range holds only service a's.
        assert_eq!(alloc.ips.lock().unwrap().len(), 1);
    }

    #[test]
    fn update_keeps_held_values_and_frees_dropped_ports() {
        let alloc = allocator();
        let mut svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        alloc.allocate(&mut svc, None).unwrap();
        let mut update = json!({"metadata": {"name": "s"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
        let (_, freed) = alloc.allocate(&mut update, Some(&svc)).unwrap();
        assert_eq!(update["spec"]["clusterIP"], svc["spec"]["clusterIP"]);
        assert!(update["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(freed.ports.len(), 1);
    }
}
