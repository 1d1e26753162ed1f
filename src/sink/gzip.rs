//! gzip (RFC 1952) with a deflate state that can encode many bodies.
//!
//! `flate2::write::GzEncoder` builds a fresh deflate state (~235 kB with miniz_oxide, zeroed) per body. Telemetry
//! compresses every message of a chunk with one `Gzip` (reset between messages); the InfluxDB sink makes one per
//! request and drops it, so the memory is not held between writes. The gzip framing (10-byte header, CRC-32 and
//! length trailer) is written around the raw deflate stream.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// A reusable gzip encoder (fast level: line protocol and JSON compress well even so).
pub struct Gzip {
    z: Compress,
}

impl Default for Gzip {
    fn default() -> Self {
        Gzip {
            z: Compress::new(Compression::fast(), false),
        }
    }
}

impl Gzip {
    /// One gzip member holding `data`.
    pub fn encode(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.z.reset();
        // Header: magic, deflate, no flags, no mtime, fastest, OS unknown.
        let mut out = Vec::with_capacity(data.len() / 4 + 64);
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255]);
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.len().max(256));
            }
            let (before, wrote) = (self.z.total_in(), out.len());
            let status = self
                .z
                .compress_vec(input, &mut out, FlushCompress::Finish)
                .map_err(std::io::Error::other)?;
            let used = (self.z.total_in() - before) as usize;
            input = &input[used.min(input.len())..];
            match status {
                Status::StreamEnd => break,
                // No progress with room to write would loop for ever: report it instead.
                _ if used == 0 && out.len() == wrote => {
                    return Err(std::io::Error::other("deflate made no progress"))
                }
                Status::Ok | Status::BufError => continue,
            }
        }
        let mut crc = Crc::new();
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn round_trips_and_reuses_its_state() {
        let mut g = Gzip::default();
        let big: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("m,sensor=r{} value={}i {}\n", i % 100, i % 997, i).into_bytes())
            .take(2_000_000)
            .collect();
        for data in [&b""[..], b"a", b"cpu value=1 1\n", &big, b"again, smaller"] {
            let z = g.encode(data).expect("encode");
            assert_eq!(&z[..3], &[0x1f, 0x8b, 8]);
            assert_eq!(gunzip(&z), data, "{} bytes", data.len());
        }
        assert!(g.encode(&big).expect("encode").len() < big.len() / 4);
    }
}
