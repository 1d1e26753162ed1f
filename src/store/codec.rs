//! Compact encoding of a batch of readings: columnar, delta-coded, zstd-compressed.
//!
//! Layout before compression (all integers LEB128 varints, signed ones zigzag):
//! `version | n | base_ts | sensor column | ts column | tag column | value column`; version 1, or 2 when the batch
//! holds exact values (a binary that knows only 1 refuses such a batch rather than misread it).
//! * sensor: global sensor index (table `sensors`), delta to the previous reading's index;
//! * ts: delta to the previous reading's timestamp (ms);
//! * tag: `quality << 4 | enc`; enc 0–6 = decimal with k digits, delta to this sensor's previous mantissa
//!   in the batch; 7–13 = decimal with k−7 digits, absolute; 14 = an exact value (version 2: a kind byte, then
//!   0 = i64 zigzag, 1 = u64 varint, 2 = UTF-8 text as length + bytes); 15 = raw f64 (8 bytes LE);
//! * value: per the tag.
//!
//! Most sensor values are decimals with few digits (ADC counts scaled by 10^-k), so a value usually costs one to
//! three bytes, and zstd squeezes the repetitive columns.

use crate::model::{Exact, Quality, Timestamp};
use crate::util::FastMap;

/// A reading as stored: sensor as a global index.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Index into the `sensors` table.
    pub sensor: u32,
    /// Sample time.
    pub ts: Timestamp,
    /// Value.
    pub value: f64,
    /// Quality.
    pub quality: Quality,
    /// The exact value, where an f64 cannot hold it.
    pub exact: Option<Exact>,
}

fn put_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_zz(out: &mut Vec<u8>, v: i64) {
    put_var(out, ((v << 1) ^ (v >> 63)) as u64);
}

struct Rd<'a> {
    b: &'a [u8],
    p: usize,
}

impl Rd<'_> {
    fn var(&mut self) -> Option<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = *self.b.get(self.p)?;
            self.p += 1;
            if shift >= 64 {
                return None;
            }
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
            shift += 7;
        }
    }
    fn zz(&mut self) -> Option<i64> {
        let v = self.var()?;
        Some(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
    fn byte(&mut self) -> Option<u8> {
        let b = *self.b.get(self.p)?;
        self.p += 1;
        Some(b)
    }
    fn f64(&mut self) -> Option<f64> {
        let s = self.b.get(self.p..self.p + 8)?;
        self.p += 8;
        Some(f64::from_le_bytes(s.try_into().ok()?))
    }
}

/// Each sensor's previous value in a batch, by the sensor's index: a vector when the batch's indices are dense
/// enough (they are the store's table of sensors: 0 up to the number of sensors ever seen), else a map (a damaged
/// batch's indices can be anything). A lookup per reading: hashing was most of the map's cost in encoding a batch.
enum Last<T> {
    Dense(Vec<Option<T>>),
    Sparse(FastMap<u32, T>),
}

impl<T: Copy> Last<T> {
    /// For a batch of `n` rows whose largest sensor index is `max`.
    fn for_indices(max: Option<u32>, n: usize) -> Last<T> {
        match max.map(|m| m as usize) {
            Some(m) if m < n.saturating_mul(4).saturating_add(4096) => {
                Last::Dense(vec![None; m + 1])
            }
            _ => Last::Sparse(FastMap::default()),
        }
    }

    fn get(&self, sensor: u32) -> Option<T> {
        match self {
            Last::Dense(v) => v.get(sensor as usize).copied().flatten(),
            Last::Sparse(m) => m.get(&sensor).copied(),
        }
    }

    /// Set `sensor`'s value, returning the one before.
    fn replace(&mut self, sensor: u32, value: T) -> Option<T> {
        match self {
            Last::Dense(v) => v.get_mut(sensor as usize).and_then(|s| s.replace(value)),
            Last::Sparse(m) => m.insert(sensor, value),
        }
    }
}

const POW10: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

fn decimal(v: f64) -> Option<(u8, i64)> {
    if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
        return None;
    }
    for (k, f) in POW10.iter().enumerate() {
        let m = (v * f).round();
        if m.abs() < 9.0e15 && m / f == v {
            return Some((k as u8, m as i64));
        }
    }
    None
}

/// Encode rows (zstd level `level`) with a fresh compression context.
pub fn encode(rows: &[Row], level: i32) -> std::io::Result<Vec<u8>> {
    compressor(level)?.compress(&encode_raw(rows))
}

/// A compression context that writes the content checksum (XXH64): a batch damaged on the card is recognised and
/// skipped.
fn compressor(level: i32) -> std::io::Result<zstd::bulk::Compressor<'static>> {
    let mut z = zstd::bulk::Compressor::new(level)?;
    z.include_checksum(true)?;
    Ok(z)
}

/// Encode rows with the store's reused contexts.
pub fn encode_with(z: &mut Zstd, rows: &[Row]) -> std::io::Result<Vec<u8>> {
    z.compress(&encode_raw(rows))
}

fn encode_raw(rows: &[Row]) -> Vec<u8> {
    let n = rows.len();
    let mut raw = Vec::with_capacity(n * 6 + 16);
    raw.push(if rows.iter().any(|r| r.exact.is_some()) {
        2u8
    } else {
        1u8
    });
    put_var(&mut raw, n as u64);
    let base = rows.first().map(|r| r.ts.0).unwrap_or(0);
    put_zz(&mut raw, base);
    let mut prev = 0i64;
    for r in rows {
        put_zz(&mut raw, i64::from(r.sensor) - prev);
        prev = i64::from(r.sensor);
    }
    let mut pt = base;
    for r in rows {
        put_zz(&mut raw, r.ts.0.wrapping_sub(pt));
        pt = r.ts.0;
    }
    let mut last = Last::<(u8, i64)>::for_indices(rows.iter().map(|r| r.sensor).max(), n);
    let mut vals = Vec::with_capacity(n * 3);
    for r in rows {
        let q = (r.quality as u8) << 4;
        if let Some(e) = &r.exact {
            raw.push(q | 14);
            match e {
                Exact::Int(i) => {
                    vals.push(0);
                    put_zz(&mut vals, *i);
                }
                Exact::UInt(u) => {
                    vals.push(1);
                    put_var(&mut vals, *u);
                }
                Exact::Text(t) => {
                    vals.push(2);
                    put_var(&mut vals, t.len() as u64);
                    vals.extend_from_slice(t.as_bytes());
                }
            }
            continue;
        }
        match decimal(r.value) {
            Some((k, m)) => match last.replace(r.sensor, (k, m)) {
                Some((pk, pm)) if pk == k => {
                    raw.push(q | k);
                    put_zz(&mut vals, m.wrapping_sub(pm));
                }
                _ => {
                    raw.push(q | (k + 7));
                    put_zz(&mut vals, m);
                }
            },
            None => {
                raw.push(q | 15);
                vals.extend_from_slice(&r.value.to_le_bytes());
            }
        }
    }
    raw.extend_from_slice(&vals);
    raw
}

/// zstd contexts kept for the life of a store connection. A context made per batch costs a CPU-feature probe (a
/// VM exit under a hypervisor) and a few hundred kB of freshly zeroed tables each time; at ten commits a second
/// that was a visible part of the daemon's CPU.
///
/// Level 1 for everything: measured with zstd 1.5.7, a level-3 context grows to ~550 kB for the 35 kB alarm
/// snapshot (level 1: ~190 kB) while level 3 saves only 1–7 % on reading batches (1.05 vs 1.09 B/reading for a
/// second of 100 analog sensors at 10 Hz). The decompression context is ~96 kB.
#[derive(Default)]
pub struct Zstd {
    c: Option<zstd::bulk::Compressor<'static>>,
    d: Option<zstd::bulk::Decompressor<'static>>,
}

impl Zstd {
    /// Compress at level 1 with the content checksum.
    pub fn compress(&mut self, raw: &[u8]) -> std::io::Result<Vec<u8>> {
        let c = match &mut self.c {
            Some(c) => c,
            empty => empty.insert(compressor(1)?),
        };
        c.compress(raw)
    }

    /// Decompress one frame of at most `max` bytes (its checksum verified); `None` if it is corrupt or larger.
    pub fn decompress(&mut self, data: &[u8], max: usize) -> Option<Vec<u8>> {
        // Every frame written here records its size; anything else (several frames, no size) takes the streaming
        // path, which bounds what it reads the same way.
        if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(data) {
            if n > max as u64 {
                return None;
            }
            let d = match &mut self.d {
                Some(d) => d,
                empty => empty.insert(zstd::bulk::Decompressor::new().ok()?),
            };
            if let Ok(out) = d.decompress(data, n as usize) {
                if out.len() as u64 == n {
                    return Some(out);
                }
            }
        }
        decompress_stream(data, max)
    }
}

fn decompress_stream(data: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    let decoder = zstd::stream::read::Decoder::new(data).ok()?;
    std::io::Read::read_to_end(&mut std::io::Read::take(decoder, max as u64 + 1), &mut raw).ok()?;
    (raw.len() <= max).then_some(raw)
}

/// Largest decoded batch accepted (a damaged or hostile frame cannot make a reader allocate more).
const MAX_RAW: usize = 64 << 20;

/// Decode a batch; `None` if it is corrupt.
pub fn decode(data: &[u8]) -> Option<Vec<Row>> {
    decode_raw(&decompress_stream(data, MAX_RAW)?)
}

/// Decode a batch with the store's reused contexts; `None` if it is corrupt.
pub fn decode_with(z: &mut Zstd, data: &[u8]) -> Option<Vec<Row>> {
    decode_raw(&inflate(z, data)?)
}

/// A stored batch decompressed (bounded), for [`decode_map`]; `None` if it is corrupt.
pub fn inflate(z: &mut Zstd, data: &[u8]) -> Option<Vec<u8>> {
    z.decompress(data, MAX_RAW)
}

fn decode_raw(raw: &[u8]) -> Option<Vec<Row>> {
    decode_map(raw, Some).map(|(_, rows)| rows)
}

/// Decode an inflated batch, making each row into a `T` as it is read (a backlog drain builds its readings in one
/// pass, without a vector of rows between); a row `f` refuses is left out. The number of rows and what they
/// became, or `None` if the batch is corrupt.
pub fn decode_map<T>(raw: &[u8], mut f: impl FnMut(Row) -> Option<T>) -> Option<(usize, Vec<T>)> {
    let mut r = Rd { b: raw, p: 0 };
    if !matches!(r.byte()?, 1 | 2) {
        return None;
    }
    let n = r.var()? as usize;
    if n > raw.len() {
        return None;
    }
    let base = r.zz()?;
    let mut sensors = Vec::with_capacity(n);
    let mut prev = 0i64;
    for _ in 0..n {
        prev = prev.wrapping_add(r.zz()?);
        sensors.push(u32::try_from(prev).ok()?);
    }
    let mut ts = Vec::with_capacity(n);
    let mut pt = base;
    for _ in 0..n {
        pt = pt.wrapping_add(r.zz()?);
        ts.push(pt);
    }
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        tags.push(r.byte()?);
    }
    let mut last = Last::<i64>::for_indices(sensors.iter().copied().max(), n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let tag = tags[i];
        let enc = tag & 0x0f;
        let mut exact = None;
        let value = match enc {
            0..=6 => {
                let m = last.get(sensors[i])?.wrapping_add(r.zz()?);
                last.replace(sensors[i], m);
                m as f64 / POW10[enc as usize]
            }
            7..=13 => {
                let m = r.zz()?;
                last.replace(sensors[i], m);
                m as f64 / POW10[(enc - 7) as usize]
            }
            14 => {
                let e = match r.byte()? {
                    0 => Exact::Int(r.zz()?),
                    1 => Exact::UInt(r.var()?),
                    2 => {
                        let len = usize::try_from(r.var()?).ok()?;
                        let b = r.b.get(r.p..r.p.checked_add(len)?)?;
                        r.p += len;
                        Exact::Text(std::sync::Arc::from(std::str::from_utf8(b).ok()?))
                    }
                    _ => return None,
                };
                let v = e.approx();
                exact = Some(e);
                v
            }
            15 => r.f64()?,
            _ => return None,
        };
        out.extend(f(Row {
            sensor: sensors[i],
            ts: Timestamp(ts[i]),
            value,
            quality: Quality::from_u8(tag >> 4),
            exact,
        }));
    }
    Some((n, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrip_mixed() {
        let rows = vec![
            Row {
                sensor: 3,
                ts: Timestamp(1_700_000_000_000),
                value: 21.53,
                quality: Quality::Good,
                exact: None,
            },
            Row {
                sensor: 3,
                ts: Timestamp(1_700_000_001_000),
                value: 21.55,
                quality: Quality::Good,
                exact: None,
            },
            Row {
                sensor: 0,
                ts: Timestamp(1_700_000_000_990),
                value: f64::NAN,
                quality: Quality::Invalid,
                exact: None,
            },
            Row {
                sensor: 1,
                ts: Timestamp(1_700_000_001_001),
                value: 1.0 / 3.0,
                quality: Quality::Good,
                exact: None,
            },
            Row {
                sensor: 3,
                ts: Timestamp(1_700_000_002_000),
                value: -7.0,
                quality: Quality::OutOfRange,
                exact: None,
            },
        ];
        let enc = encode(&rows, 3).expect("encode");
        let dec = decode(&enc).expect("decode");
        assert_eq!(dec.len(), rows.len());
        for (a, b) in rows.iter().zip(&dec) {
            assert_eq!(a.sensor, b.sensor);
            assert_eq!(a.ts, b.ts);
            assert_eq!(a.quality, b.quality);
            assert!(
                a.value.to_bits() == b.value.to_bits() || (a.value.is_nan() && b.value.is_nan())
            );
        }
    }

    #[test]
    fn far_apart_sensor_indices_take_the_map_and_still_delta_code() {
        // Indices far beyond the batch's size: the previous values are kept in a map, not a vector that large.
        let row = |sensor, value| Row {
            sensor,
            ts: Timestamp(1_700_000_000_000),
            value,
            quality: Quality::Good,
            exact: None,
        };
        let rows = vec![
            row(u32::MAX, 1000.5),
            row(7, 2000.5),
            row(u32::MAX, 1000.6),
            row(7, 2000.6),
        ];
        assert!(matches!(
            Last::<i64>::for_indices(Some(u32::MAX), rows.len()),
            Last::Sparse(_)
        ));
        assert!(matches!(
            Last::<i64>::for_indices(Some(100), rows.len()),
            Last::Dense(_)
        ));
        let raw = encode_raw(&rows);
        let (_, values) = decode_map(&raw, |r| Some(r.value)).expect("decodes");
        assert_eq!(values, [1000.5, 2000.5, 1000.6, 2000.6]);
        // The second reading of each sensor is a one-byte delta (an absolute 10006 takes three): the same codes
        // as with near indices, where only the four index deltas are shorter (one byte each, not five).
        let near = encode_raw(&[
            row(1, 1000.5),
            row(2, 2000.5),
            row(1, 1000.6),
            row(2, 2000.6),
        ]);
        assert_eq!(raw.len(), near.len() + 4 * 4);
        let absolute = encode_raw(&[
            row(1, 1000.5),
            row(2, 2000.5),
            row(3, 1000.6),
            row(4, 2000.6),
        ]);
        assert_eq!(
            absolute.len(),
            near.len() + 2 * 2,
            "a delta saves two bytes here"
        );
    }

    #[test]
    fn corrupt_input_is_rejected() {
        assert!(decode(b"not zstd").is_none());
        let enc = encode(
            &[Row {
                sensor: 1,
                ts: Timestamp(5),
                value: 1.5,
                quality: Quality::Good,
                exact: None,
            }],
            1,
        )
        .expect("e");
        assert!(decode(&enc[..enc.len() - 2]).is_none());
        // The reused contexts (bulk path with the frame's recorded size) behave the same, and stay usable.
        let mut z = Zstd::default();
        assert!(decode_with(&mut z, b"not zstd").is_none());
        assert!(decode_with(&mut z, &enc[..enc.len() - 2]).is_none());
        // Any single flipped bit is caught (the frame checksum), never decoded into wrong values.
        for i in 0..enc.len() {
            for bit in 0..8 {
                let mut bad = enc.clone();
                bad[i] ^= 1 << bit;
                for rows in [decode(&bad), decode_with(&mut z, &bad)]
                    .into_iter()
                    .flatten()
                {
                    assert_eq!(rows.len(), 1);
                    assert_eq!(
                        (rows[0].ts, rows[0].value),
                        (Timestamp(5), 1.5),
                        "byte {i} bit {bit}"
                    );
                }
            }
        }
        assert_eq!(decode_with(&mut z, &enc).map(|r| r.len()), Some(1));
        // A frame claiming more than the bound is refused before anything is allocated.
        let big = z.compress(&vec![0u8; 4096]).expect("compress");
        assert!(z.decompress(&big, 4095).is_none());
        assert_eq!(z.decompress(&big, 4096).map(|v| v.len()), Some(4096));
        // Two frames back to back (no single recorded size) take the streaming path.
        let two = [big.clone(), big].concat();
        assert_eq!(z.decompress(&two, 1 << 20).map(|v| v.len()), Some(8192));
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let rows: Vec<Row> = [i64::MIN, i64::MAX, 0, -1, i64::MAX]
            .iter()
            .map(|t| Row {
                sensor: 0,
                ts: Timestamp(*t),
                value: 1.0,
                quality: Quality::Good,
                exact: None,
            })
            .collect();
        let dec = decode(&encode(&rows, 1).expect("encode")).expect("decode");
        let ts: Vec<i64> = dec.iter().map(|r| r.ts.0).collect();
        assert_eq!(ts, vec![i64::MIN, i64::MAX, 0, -1, i64::MAX]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&data);
        }
    }

    proptest! {
        #[test]
        fn roundtrip_any(rows in proptest::collection::vec((0u32..50, -1_000_000i64..1_000_000, any::<f64>(), 0u8..5), 0..200)) {
            let rows: Vec<Row> = rows.into_iter().map(|(s, t, v, q)| Row { sensor: s, ts: Timestamp(1_700_000_000_000 + t), value: v, quality: Quality::from_u8(q), exact: None }).collect();
            let dec = decode(&encode(&rows, 1).expect("encode")).expect("decode");
            prop_assert_eq!(dec.len(), rows.len());
            for (a, b) in rows.iter().zip(&dec) {
                prop_assert_eq!(a.sensor, b.sensor);
                prop_assert_eq!(a.ts, b.ts);
                prop_assert!(a.value.to_bits() == b.value.to_bits() || (a.value.is_nan() && b.value.is_nan()));
            }
        }
    }
}

#[cfg(test)]
mod exact_tests {
    use super::*;

    #[test]
    fn exact_values_round_trip_and_mark_the_batch_version_2() {
        let row = |sensor: u32, e: Option<Exact>, value: f64| Row {
            sensor,
            ts: Timestamp(1_700_000_000_000 + i64::from(sensor)),
            value,
            quality: Quality::Good,
            exact: e,
        };
        let big = 9_007_199_254_740_993u64; // 2^53 + 1: no f64 holds it
        let rows = vec![
            row(0, Some(Exact::UInt(big)), big as f64),
            row(1, Some(Exact::Int(i64::MIN)), i64::MIN as f64),
            row(2, Some(Exact::Text("PUMP-07 ok".into())), f64::NAN),
            row(3, None, 21.5),
        ];
        let raw = encode_raw(&rows);
        assert_eq!(raw[0], 2);
        let back = decode_raw(&raw).expect("decode");
        assert_eq!(back[0].exact, Some(Exact::UInt(big)));
        assert_eq!(back[1].exact, Some(Exact::Int(i64::MIN)));
        assert_eq!(back[2].exact, Some(Exact::Text("PUMP-07 ok".into())));
        assert!(back[2].value.is_nan());
        assert_eq!((back[3].value, back[3].exact.clone()), (21.5, None));
        // Without exact values the batch stays version 1 (readable by the previous release).
        assert_eq!(encode_raw(&rows[3..])[0], 1);
        // A text that claims more bytes than there are is a corrupt batch, not a panic.
        let mut cut = raw.clone();
        cut.truncate(raw.len() - 12);
        assert!(decode_raw(&cut).is_none());
    }
}
