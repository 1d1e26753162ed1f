//! Modbus register decoding: data types, byte and word order, scale and offset. Pure, table-tested.
//!
//! The names ([`DataType`], [`WordOrder`]) are part of the config; this module turns registers into numbers.

pub use crate::config::{DataType, WordOrder};
use crate::model::Exact;

/// Big-endian bytes of `regs` (at most four registers) after undoing the word order; no allocation (called for
/// every reading).
fn ordered_bytes(regs: &[u16], order: WordOrder) -> [u8; 8] {
    let mut out = [0u8; 8];
    let n = regs.len().min(4);
    for i in 0..n {
        let r = if order.word_swap {
            regs[n - 1 - i]
        } else {
            regs[i]
        };
        let [hi, lo] = r.to_be_bytes();
        out[2 * i..2 * i + 2].copy_from_slice(&if order.byte_swap { [lo, hi] } else { [hi, lo] });
    }
    out
}

/// The value an f64 cannot hold: a 64-bit integer exactly, or a string's text (characters in register order, two
/// per register, the first in the high byte unless `badc`; cut at the first NUL, trailing spaces trimmed; bytes
/// that are not UTF-8 replaced). `None` for the other types.
pub fn decode_exact(regs: &[u16], ty: DataType, order: WordOrder) -> Option<Exact> {
    if regs.len() != ty.registers() as usize {
        return None;
    }
    match ty {
        DataType::U64 => Some(Exact::UInt(u64::from_be_bytes(ordered_bytes(regs, order)))),
        DataType::I64 => Some(Exact::Int(i64::from_be_bytes(ordered_bytes(regs, order)))),
        DataType::String(_) => {
            let mut bytes = Vec::with_capacity(regs.len() * 2);
            for r in regs {
                let [hi, lo] = r.to_be_bytes();
                bytes.extend_from_slice(&if order.byte_swap { [lo, hi] } else { [hi, lo] });
            }
            if let Some(nul) = bytes.iter().position(|b| *b == 0) {
                bytes.truncate(nul);
            }
            let text = String::from_utf8_lossy(&bytes);
            Some(Exact::Text(std::sync::Arc::from(
                text.trim_end_matches(' '),
            )))
        }
        _ => None,
    }
}

/// Decode registers into a number. `regs` must hold exactly `ty.registers()` values. A string is not a number
/// (`None`; see [`decode_exact`]).
pub fn decode(regs: &[u16], ty: DataType, order: WordOrder) -> Option<f64> {
    if regs.len() != ty.registers() as usize || matches!(ty, DataType::String(_)) {
        return None;
    }
    let b = ordered_bytes(regs, order);
    Some(match ty {
        DataType::Bool => f64::from(u8::from(regs[0] != 0)),
        DataType::Bit(n) => f64::from((regs[0] >> n) & 1),
        // The register's bytes after the configured byte order: [high, low].
        DataType::U8Low => f64::from(b[1]),
        DataType::U8High => f64::from(b[0]),
        DataType::I8Low => f64::from(b[1] as i8),
        DataType::I8High => f64::from(b[0] as i8),
        DataType::F16 => f64::from(half::f16::from_bits(u16::from_be_bytes([b[0], b[1]]))),
        DataType::U16 => f64::from(u16::from_be_bytes([b[0], b[1]])),
        DataType::I16 => f64::from(i16::from_be_bytes([b[0], b[1]])),
        DataType::U32 => f64::from(u32::from_be_bytes(b[..4].try_into().ok()?)),
        DataType::I32 => f64::from(i32::from_be_bytes(b[..4].try_into().ok()?)),
        DataType::F32 => f64::from(f32::from_be_bytes(b[..4].try_into().ok()?)),
        DataType::U64 => u64::from_be_bytes(b[..8].try_into().ok()?) as f64,
        DataType::I64 => i64::from_be_bytes(b[..8].try_into().ok()?) as f64,
        DataType::F64 => f64::from_be_bytes(b[..8].try_into().ok()?),
        DataType::String(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_in_every_order() {
        // 21.5f32 = 0x41AC0000
        let o = |s| WordOrder::parse(s).expect("order");
        assert_eq!(
            decode(&[0x41AC, 0x0000], DataType::F32, o("abcd")),
            Some(21.5)
        );
        assert_eq!(
            decode(&[0x0000, 0x41AC], DataType::F32, o("cdab")),
            Some(21.5)
        );
        assert_eq!(
            decode(&[0xAC41, 0x0000], DataType::F32, o("badc")),
            Some(21.5)
        );
        assert_eq!(
            decode(&[0x0000, 0xAC41], DataType::F32, o("dcba")),
            Some(21.5)
        );
    }

    /// Telegraf's test vectors for the 8-bit halves and FLOAT16 (plugins/inputs/modbus/modbus_test.go).
    #[test]
    fn bytes_and_half_floats() {
        let abcd = WordOrder::ABCD;
        let badc = WordOrder::parse("badc").expect("order");
        assert_eq!(decode(&[0x0102], DataType::U8Low, abcd), Some(2.0));
        assert_eq!(decode(&[0x0102], DataType::U8High, abcd), Some(1.0));
        assert_eq!(decode(&[0x0102], DataType::U8Low, badc), Some(1.0));
        assert_eq!(decode(&[0xFE80], DataType::I8High, abcd), Some(-2.0));
        assert_eq!(decode(&[0xFE80], DataType::I8Low, abcd), Some(-128.0));
        assert_eq!(decode(&[0xB814], DataType::F16, abcd), Some(-0.509765625));
        assert_eq!(decode(&[0x14B8], DataType::F16, badc), Some(-0.509765625));
        assert_eq!(decode(&[0x3C00], DataType::F16, abcd), Some(1.0));
        assert_eq!(decode(&[0x7BFF], DataType::F16, abcd), Some(65504.0));
        assert!(decode(&[0x7E00], DataType::F16, abcd).is_some_and(f64::is_nan));
    }

    #[test]
    fn integers_and_bits() {
        assert_eq!(
            decode(&[0xFFFF], DataType::I16, WordOrder::ABCD),
            Some(-1.0)
        );
        assert_eq!(
            decode(&[0xFFFF], DataType::U16, WordOrder::ABCD),
            Some(65535.0)
        );
        assert_eq!(
            decode(&[0x075B, 0xCD15], DataType::U32, WordOrder::ABCD),
            Some(123456789.0)
        );
        assert_eq!(
            decode(&[0b100], DataType::Bit(2), WordOrder::ABCD),
            Some(1.0)
        );
        let v = (-5i64).to_be_bytes();
        let regs: Vec<u16> = v
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(decode(&regs, DataType::I64, WordOrder::ABCD), Some(-5.0));
        let rev: Vec<u16> = regs.iter().rev().copied().collect();
        assert_eq!(
            decode(
                &rev,
                DataType::I64,
                WordOrder::parse("ghefcdab").expect("o")
            ),
            Some(-5.0)
        );
        assert_eq!(decode(&[1, 2], DataType::U16, WordOrder::ABCD), None);
    }
}
