//! Just enough protobuf and gRPC framing to call etcd's `KV/Txn` natively, as the
//! kube-apiserver does, without a code generator (field numbers from etcd's rpc.proto).

use anyhow::{bail, ensure, Context, Result};

/// `Compare.CompareTarget.CREATE`
const TARGET_CREATE: u64 = 1;

/// TxnRequest { compare: [create_revision(key) == 0], success: [put(key, value)] }.
pub fn put_if_absent(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut compare = Vec::new();
    // result = EQUAL is the default (0) and so not written.
    varint_field(&mut compare, 2, TARGET_CREATE);
    bytes_field(&mut compare, 3, key);
    varint_field(&mut compare, 5, 0); // create_revision: a oneof member, written even when 0
    let mut put = Vec::new();
    bytes_field(&mut put, 1, key);
    bytes_field(&mut put, 2, value);
    let mut request_op = Vec::new();
    bytes_field(&mut request_op, 2, &put); // RequestOp.request_put
    let mut txn = Vec::new();
    bytes_field(&mut txn, 1, &compare);
    bytes_field(&mut txn, 2, &request_op);
    txn
}

/// TxnResponse.succeeded (field 2; absent means false).
pub fn txn_succeeded(mut message: &[u8]) -> Result<bool> {
    let mut succeeded = false;
    while !message.is_empty() {
        let key = read_varint(&mut message)?;
        match key & 7 {
            0 => {
                let value = read_varint(&mut message)?;
                succeeded |= key >> 3 == 2 && value != 0;
            }
            2 => {
                let len = usize::try_from(read_varint(&mut message)?)?;
                ensure!(len <= message.len(), "truncated protobuf field");
                message = &message[len..];
            }
            wire => bail!("unexpected protobuf wire type {wire}"),
        }
    }
    Ok(succeeded)
}

/// A gRPC length-prefixed message: uncompressed flag, 4-byte big-endian length, bytes.
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let len = u32::try_from(message.len()).expect("message under 4 GiB");
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// The message inside one gRPC frame.
pub fn grpc_message(frame: &[u8]) -> Result<&[u8]> {
    ensure!(frame.len() >= 5, "gRPC response without a message ({} bytes)", frame.len());
    ensure!(frame[0] == 0, "compressed gRPC response");
    let len = u32::from_be_bytes(frame[1..5].try_into().context("frame header")?) as usize;
    ensure!(frame.len() == 5 + len, "gRPC frame of {len} bytes in {} bytes", frame.len());
    Ok(&frame[5..])
}

fn varint_field(buf: &mut Vec<u8>, field: u64, value: u64) {
    write_varint(buf, field << 3);
    write_varint(buf, value);
}

fn bytes_field(buf: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    write_varint(buf, (field << 3) | 2);
    write_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

fn write_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn read_varint(input: &mut &[u8]) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first().context("truncated varint")?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    bail!("varint longer than 10 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, 127, 128, 300, u64::MAX] {
            let mut buf = Vec::new();
            write_varint(&mut buf, value);
            assert_eq!(read_varint(&mut buf.as_slice()).unwrap(), value);
        }
    }

    #[test]
    fn reads_succeeded_past_the_header() {
        let mut response = Vec::new();
        bytes_field(&mut response, 1, &[8, 1, 16, 2]); // header { cluster_id: 1, member_id: 2 }
        assert!(!txn_succeeded(&response).unwrap());
        varint_field(&mut response, 2, 1);
        assert!(txn_succeeded(&response).unwrap());
    }

    #[test]
    fn frames_round_trip() {
        let frame = grpc_frame(b"abc");
        assert_eq!(grpc_message(&frame).unwrap(), b"abc");
    }
}
