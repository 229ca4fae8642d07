#!/usr/bin/env bash
# Installs the Debian packages a node needs (containerd, runc, CNI plugins, nftables for the
# agent's masquerade table and the service proxy), the busybox that test images are built
# from, protoc (the k8s-cri crate's build needs it), and the registry the image-pull test
# pushes to and pulls from with credentials (docker-registry, htpasswd from apache2-utils),
# and iperf3 for the pod network benchmark (`skiff-bench pod-network`).
# Runs `apt-get update` once, and only when something is missing.
set -euo pipefail

missing=()
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v iptables >/dev/null || missing+=(iptables)
command -v nft >/dev/null || missing+=(nftables)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
command -v iperf3 >/dev/null || missing+=(iperf3)

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
