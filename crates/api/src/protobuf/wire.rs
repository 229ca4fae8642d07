//! The protobuf wire format: varints, keys and length-delimited fields.
//!
//! Small enough to hand-write, and a reader over untrusted bytes must never panic:
//! every read is bounds-checked and reports truncation as an error.

/// A field's raw value, as its wire type delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

impl<'a> WireValue<'a> {
    pub fn varint(self) -> Result<u64, String> {
        match self {
            WireValue::Varint(v) => Ok(v),
            other => Err(format!("expected a varint, found {}", other.describe())),
        }
    }

    pub fn bytes(self) -> Result<&'a [u8], String> {
        match self {
            WireValue::Bytes(b) => Ok(b),
            other => Err(format!("expected length-delimited bytes, found {}", other.describe())),
        }
    }

    pub fn fixed64(self) -> Result<u64, String> {
        match self {
            WireValue::Fixed64(v) => Ok(v),
            other => Err(format!("expected a 64-bit value, found {}", other.describe())),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            WireValue::Varint(_) => "a varint",
            WireValue::Fixed64(_) => "a 64-bit value",
            WireValue::Fixed32(_) => "a 32-bit value",
            WireValue::Bytes(_) => "length-delimited bytes",
        }
    }
}

/// Reads fields from one message's bytes.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next `(tag, value)`, or `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, String> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3)
            .ok()
            .filter(|&t| t != 0)
            .ok_or_else(|| format!("invalid field tag in key {key}"))?;
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(u64::from_le_bytes(self.take_array()?)),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length overflows".to_string())?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(self.take_array()?)),
            // Groups (3, 4) are long deprecated; Kubernetes never emits them.
            other => return Err(format!("field {tag}: unsupported wire type {other}")),
        };
        Ok(Some((tag, value)))
    }

    pub fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for (i, &byte) in self.rest.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(if self.rest.len() < 10 { "truncated varint" } else { "varint longer than 10 bytes" }.to_string())
    }

    pub fn fixed64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if len > self.rest.len() {
            return Err(format!("truncated: field needs {len} bytes, {} left", self.rest.len()));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
}

/// Appends fields to a message's bytes.
#[derive(Default)]
pub(super) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn varint_field(&mut self, tag: u32, value: u64) {
        self.key(tag, 0);
        self.varint(value);
    }

    pub fn fixed64_field(&mut self, tag: u32, value: u64) {
        self.key(tag, 1);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub fn bytes_field(&mut self, tag: u32, bytes: &[u8]) {
        self.key(tag, 2);
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    fn key(&mut self, tag: u32, wire_type: u8) {
        self.varint(u64::from(tag) << 3 | u64::from(wire_type));
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX, (-1i64) as u64] {
            let mut w = Writer::default();
            w.varint_field(1, value);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            assert_eq!(r.next_field().unwrap(), Some((1, WireValue::Varint(value))));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn rejects_truncated_and_oversized_input() {
        assert!(Reader::new(&[0x08]).next_field().is_err());
        assert!(Reader::new(&[0x08, 0x80]).next_field().is_err());
        assert!(Reader::new(&[0x0a, 0x05, 1, 2]).next_field().is_err());
        assert!(Reader::new(&[0x09, 1, 2, 3]).next_field().is_err());
        assert!(Reader::new(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
            .next_field()
            .is_err());
        // Tag 0 and group wire types are invalid.
        assert!(Reader::new(&[0x00, 0x00]).next_field().is_err());
        assert!(Reader::new(&[0x0b]).next_field().is_err());
        // A length that does not fit in memory.
        assert!(Reader::new(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).next_field().is_err());
    }
}
