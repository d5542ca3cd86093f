//! CRC-64/Jones, the checksum of RDB files and DUMP payloads (Redis's `crc64.c`:
//! polynomial 0xad93d23594c935a9, reflected, initial value and final xor 0).
//!
//! The `crc` crate's catalogue has exactly this variant (`CRC_64_REDIS`); it is
//! maintained, table-driven (16 tables, a few GB/s) and already in the workspace's
//! lock file.

use crc::{Crc, Digest, Table, CRC_64_REDIS};

static CRC: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// The checksum of `data`.
pub fn checksum(data: &[u8]) -> u64 {
    CRC.checksum(data)
}

/// A running checksum over data seen in pieces.
#[derive(Clone)]
pub struct Running(Digest<'static, u64, Table<16>>);

impl Default for Running {
    fn default() -> Self {
        Running(CRC.digest())
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Running({:016x})", self.value())
    }
}

impl Running {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The checksum of everything added so far.
    pub fn value(&self) -> u64 {
        self.0.clone().finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_check_value() {
        // crc64.c's own test: crc64(0, "123456789", 9) == 0xe9c6d914c4b8d9ca.
        assert_eq!(checksum(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        let mut r = Running::default();
        r.update(b"1234");
        r.update(b"56789");
        assert_eq!(r.value(), 0xe9c6_d914_c4b8_d9ca);
        assert_eq!(checksum(b""), 0);
    }
}
