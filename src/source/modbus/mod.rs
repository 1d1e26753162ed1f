//! Modbus TCP and RTU sources (tokio-modbus).
//!
//! One task per `[[modbus]]` section: a TCP connection or an RTU line, so requests on a line are strictly serial
//! (with `frame_delay` between frames) and a dead device never has two requests in flight. Every request is wrapped
//! in `timeout` (tokio-modbus has none) and retried `retries` times.
//!
//! * **Coalescing:** sensors of the same unit, table and interval whose registers are at most `max_gap` apart are
//!   read with one request (≤ 125 registers, ≤ 2000 bits) and split back into readings.
//! * **A unit that times out is backed off** (polled at doubling intervals up to 60 s) so the others keep their
//!   rate; its sensors get no readings, go stale and raise `SENSOR_OFFLINE`; the first answer restores the rate.
//! * **Exceptions** (illegal address, busy, …) are logged with their Modbus name for the sensors of that request;
//!   the connection is kept. **Transport errors** (I/O, malformed or truncated frames, wrong transaction or unit
//!   id, CRC errors) are counted and logged, and the connection is rebuilt with jittered backoff.
//! * **Addresses** are 0-based protocol addresses by default (what goes on the wire: holding register 40001 in
//!   the old notation is address 0). With `one_based = true` the config uses 1-based register numbers and
//!   watchpost subtracts one.

pub mod decode;

use super::SourceError;
use crate::config::{ModbusConfig, SensorConfig};
use crate::config::{ModbusSource, SourceConfig};
use crate::metrics::SharedMetrics;
use crate::model::{Reading, Readings, Timestamp};
use crate::util::Backoff;
use decode::{decode, DataType, WordOrder};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;
use tokio_util::sync::CancellationToken;

pub use crate::config::Table;

pub use super::exception_name;

/// One sensor's register map, compiled.
#[derive(Debug, Clone)]
pub struct Point {
    /// Sensor id.
    pub id: Arc<str>,
    /// Unit id.
    pub unit: u8,
    /// Table.
    pub table: Table,
    /// 0-based address.
    pub address: u16,
    /// Data type.
    pub ty: DataType,
    /// Word order.
    pub order: WordOrder,
    /// Scale.
    pub scale: f64,
    /// Offset after scaling.
    pub add: f64,
    /// Poll interval.
    pub interval: Duration,
}

impl Point {
    /// Compile from a validated sensor config (`None` for a sensor that is not on Modbus).
    pub fn from_config(s: &SensorConfig, bus: &ModbusConfig) -> Option<Point> {
        let SourceConfig::Modbus(src) = &s.source else {
            return None;
        };
        let src: &ModbusSource = src;
        // `validate` refuses address 0 on a one-based bus.
        let address = if bus.one_based {
            src.address.checked_sub(1)?
        } else {
            src.address
        };
        Some(Point {
            id: Arc::from(s.id.as_str()),
            unit: src.unit,
            table: src.table,
            address,
            ty: src.data_type,
            order: src.word_order,
            scale: src.scale,
            add: src.add,
            interval: s.interval.0,
        })
    }
    fn count(&self) -> u16 {
        if self.table.is_bits() {
            1
        } else {
            self.ty.registers()
        }
    }
}

/// One coalesced request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Unit id.
    pub unit: u8,
    /// Table.
    pub table: Table,
    /// First address.
    pub start: u16,
    /// Registers or bits.
    pub count: u16,
    /// Interval.
    pub interval: Duration,
    /// Points served, with their offset from `start`.
    pub points: Vec<Point>,
}

/// Group points into as few requests as possible.
pub fn coalesce(points: &[Point], max_gap: u16) -> Vec<Request> {
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by_key(|p| (p.unit, p.table, p.interval, p.address));
    let mut out: Vec<Request> = Vec::new();
    for p in sorted {
        let end = u32::from(p.address) + u32::from(p.count());
        if let Some(r) = out.last_mut() {
            let r_end = u32::from(r.start) + u32::from(r.count);
            let same = r.unit == p.unit && r.table == p.table && r.interval == p.interval;
            let gap_ok = u32::from(p.address) <= r_end + u32::from(max_gap);
            let new_count = end.max(r_end) - u32::from(r.start);
            if same && gap_ok && new_count <= u32::from(p.table.max_count()) {
                r.count = new_count as u16;
                r.points.push(p.clone());
                continue;
            }
        }
        out.push(Request {
            unit: p.unit,
            table: p.table,
            start: p.address,
            count: p.count(),
            interval: p.interval,
            points: vec![p.clone()],
        });
    }
    out
}

/// Split a response into `(point, raw registers, value)` (commissioning: shows the raw words).
pub fn split<'a>(req: &'a Request, words: &[u16]) -> Vec<(&'a Point, Vec<u16>, Option<f64>)> {
    req.points
        .iter()
        .map(|p| {
            let raw = point_words(req, p, words);
            (p, raw.to_vec(), value(p, raw))
        })
        .collect()
}

/// Each point's value from a response, without copying its registers (the poll loop's path).
pub fn values<'a>(
    req: &'a Request,
    words: &'a [u16],
) -> impl Iterator<Item = (&'a Point, Option<f64>)> + 'a {
    req.points
        .iter()
        .map(move |p| (p, value(p, point_words(req, p, words))))
}

/// A point's registers in a response (empty when the response is short).
fn point_words<'w>(req: &Request, p: &Point, words: &'w [u16]) -> &'w [u16] {
    let off = usize::from(p.address - req.start);
    words.get(off..off + usize::from(p.count())).unwrap_or(&[])
}

fn value(p: &Point, raw: &[u16]) -> Option<f64> {
    let v = if p.table.is_bits() {
        raw.first().map(|b| f64::from(u8::from(*b != 0)))
    } else {
        decode(raw, p.ty, p.order)
    };
    v.map(|v| v * p.scale + p.add)
}

pub use super::SourceError as ReadError;

/// Connect to a `[[modbus]]` endpoint.
pub async fn connect(url: &str, timeout: Duration) -> Result<Context, SourceError> {
    if let Some(rest) = url.strip_prefix("tcp://") {
        let addr =
            tokio::time::timeout(timeout, tokio::net::lookup_host(rest.trim_end_matches('/')))
                .await
                .map_err(|_| SourceError::Timeout)?
                .map_err(|e| SourceError::Transport(format!("{url}: {e}")))?
                .next()
                .ok_or_else(|| SourceError::Transport(format!("{url}: no address")))?;
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| SourceError::Timeout)?
            .map_err(|e| SourceError::Transport(format!("{url}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(tokio_modbus::client::tcp::attach(stream))
    } else if let Some(rest) = url.strip_prefix("rtu://") {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut baud = 9600u32;
        let mut parity = tokio_serial::Parity::None;
        let mut data_bits = tokio_serial::DataBits::Eight;
        let mut stop_bits = tokio_serial::StopBits::One;
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match k {
                "baud" => {
                    baud = v
                        .parse()
                        .map_err(|_| SourceError::Config(format!("{url}: bad baud {v:?}")))?
                }
                "parity" => {
                    parity = match v {
                        "N" | "n" | "none" => tokio_serial::Parity::None,
                        "E" | "e" | "even" => tokio_serial::Parity::Even,
                        "O" | "o" | "odd" => tokio_serial::Parity::Odd,
                        _ => {
                            return Err(SourceError::Config(format!(
                                "{url}: parity must be N, E or O"
                            )))
                        }
                    }
                }
                "data_bits" => {
                    data_bits = match v {
                        "7" => tokio_serial::DataBits::Seven,
                        "8" => tokio_serial::DataBits::Eight,
                        _ => {
                            return Err(SourceError::Config(format!(
                                "{url}: data_bits must be 7 or 8"
                            )))
                        }
                    }
                }
                "stop_bits" => {
                    stop_bits = match v {
                        "1" => tokio_serial::StopBits::One,
                        "2" => tokio_serial::StopBits::Two,
                        _ => {
                            return Err(SourceError::Config(format!(
                                "{url}: stop_bits must be 1 or 2"
                            )))
                        }
                    }
                }
                _ => {
                    return Err(SourceError::Config(format!(
                        "{url}: unknown option {k:?} (baud, parity, data_bits, stop_bits)"
                    )))
                }
            }
        }
        let port = tokio_serial::SerialStream::open(
            &tokio_serial::new(path, baud)
                .parity(parity)
                .data_bits(data_bits)
                .stop_bits(stop_bits),
        )
        .map_err(|e| SourceError::Transport(format!("{path}: {e}")))?;
        Ok(tokio_modbus::client::rtu::attach(port))
    } else {
        Err(SourceError::Config(format!(
            "{url}: expected tcp://HOST:PORT or rtu:///dev/ttyX?baud=…"
        )))
    }
}

/// Read one request (with timeout), returning registers (bits as 0/1).
pub async fn read(
    ctx: &mut Context,
    req: &Request,
    timeout: Duration,
) -> Result<Vec<u16>, ReadError> {
    ctx.set_slave(Slave(req.unit));
    let fut = async {
        match req.table {
            Table::Holding => ctx.read_holding_registers(req.start, req.count).await,
            Table::Input => ctx.read_input_registers(req.start, req.count).await,
            Table::Coil => ctx
                .read_coils(req.start, req.count)
                .await
                .map(|r| r.map(|b| b.into_iter().map(u16::from).collect())),
            Table::Discrete => ctx
                .read_discrete_inputs(req.start, req.count)
                .await
                .map(|r| r.map(|b| b.into_iter().map(u16::from).collect())),
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(ReadError::Timeout),
        Ok(Err(e)) => Err(ReadError::Transport(transport_error(&e))),
        Ok(Ok(Err(code))) => Err(ReadError::Exception(u8::from(code))),
        Ok(Ok(Ok(words))) if words.len() < usize::from(req.count) => Err(ReadError::Transport(
            format!("short response: {} of {} values", words.len(), req.count),
        )),
        Ok(Ok(Ok(words))) => Ok(words),
    }
}

/// What went wrong on the wire, in words: tokio-modbus reports a peer that closed the connection with a stale
/// errno ("Operation now in progress (os error 115)").
fn transport_error(e: &tokio_modbus::Error) -> String {
    match e {
        tokio_modbus::Error::Transport(io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof
                || io.raw_os_error() == Some(libc::EINPROGRESS) =>
        {
            "the device closed the connection".to_string()
        }
        other => other.to_string(),
    }
}

struct Slot {
    req: Request,
    due: Instant,
    failures: u32,
    last_error: Option<String>,
}

/// Poll all sensors of one bus until cancelled.
pub async fn run(
    bus: ModbusConfig,
    sensors: Vec<SensorConfig>,
    tx: mpsc::Sender<Readings>,
    token: CancellationToken,
    metrics: SharedMetrics,
) {
    let points: Vec<Point> = sensors
        .iter()
        .filter_map(|s| Point::from_config(s, &bus))
        .collect();
    let reqs = coalesce(&points, bus.max_gap);
    let rtu = bus.url.starts_with("rtu://");
    tracing::info!(bus = %bus.name, url = %bus.url, sensors = points.len(), requests = reqs.len(), "Modbus source started.");
    let now = Instant::now();
    let mut slots: Vec<Slot> = reqs
        .into_iter()
        .map(|req| Slot {
            req,
            due: now,
            failures: 0,
            last_error: None,
        })
        .collect();
    // Per-unit backoff: a silent unit is polled less often.
    let mut unit_backoff: HashMap<u8, (u32, Instant)> = HashMap::new();
    // A refused TCP connection is cheap to retry: at most 2 s between attempts, so a returning device is read again
    // within seconds whatever the outage length. A serial port that cannot be opened backs off up to 30 s.
    let conn_cap = if rtu {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(2)
    };
    let mut conn_backoff = Backoff::new(Duration::from_millis(200), conn_cap);
    let mut ctx: Option<Context> = None;
    // The connection was lost (refused, reset): timeouts seen before say nothing about the units.
    let mut lost = false;
    // After a transport error on an open connection: not before this. A peer that accepts connections and then
    // closes them or answers garbage would otherwise be reconnected to in a tight loop.
    let mut reconnect_at: Option<Instant> = None;
    loop {
        if token.is_cancelled() {
            break;
        }
        if ctx.is_none() {
            if let Some(at) = reconnect_at.take() {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            match connect(&bus.url, bus.timeout.0).await {
                Ok(c) => {
                    // The backoff is reset by an answer, not by the connection: accepting is not answering.
                    ctx = Some(c);
                    if lost && !rtu {
                        unit_backoff.clear();
                        for s in &mut slots {
                            s.due = s.due.min(Instant::now());
                        }
                    }
                    lost = false;
                }
                Err(e) => {
                    metrics.source_errors.fetch_add(1, Ordering::Relaxed);
                    lost = true;
                    let wait = conn_backoff.next_delay();
                    if matches!(e, SourceError::Config(_)) {
                        tracing::error!(bus = %bus.name, error = %e, retry_in_ms = wait.as_millis() as u64, "Modbus connection cannot work with this configuration.");
                    } else {
                        tracing::warn!(bus = %bus.name, error = %e, retry_in_ms = wait.as_millis() as u64, "Modbus connection failed.");
                    }
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            }
        }
        // Next due request, respecting unit backoff.
        let Some(i) = (0..slots.len()).min_by_key(|&i| {
            let s = &slots[i];
            let gate = unit_backoff
                .get(&s.req.unit)
                .map(|(_, t)| *t)
                .unwrap_or(s.due);
            s.due.max(gate)
        }) else {
            token.cancelled().await;
            break;
        };
        let gate = unit_backoff
            .get(&slots[i].req.unit)
            .map(|(_, t)| *t)
            .unwrap_or(slots[i].due);
        let at = slots[i].due.max(gate);
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep_until(at) => {}
        }
        let Some(c) = ctx.as_mut() else { continue };
        let started = Instant::now();
        // A reading is stamped when it was measured: the middle of the attempt that got the answer (a retry's,
        // not the first timed-out one's; the device samples between request and response).
        let mut sent_at = (Timestamp::now(), Instant::now());
        let mut result = read(c, &slots[i].req, bus.timeout.0).await;
        let mut tries = 0;
        while matches!(result, Err(ReadError::Timeout)) && tries < bus.retries {
            tries += 1;
            if rtu {
                tokio::time::sleep(bus.frame_delay.0).await;
            }
            sent_at = (Timestamp::now(), Instant::now());
            result = read(c, &slots[i].req, bus.timeout.0).await;
        }
        metrics.polls.fetch_add(1, Ordering::Relaxed);
        metrics
            .poll_latency_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let slot = &mut slots[i];
        slot.due += slot.req.interval;
        if slot.due < Instant::now() {
            slot.due = Instant::now() + slot.req.interval;
        }
        let unit = slot.req.unit;
        match result {
            Ok(words) => {
                conn_backoff.reset();
                if slot.failures > 0 || unit_backoff.contains_key(&unit) {
                    tracing::info!(bus = %bus.name, unit, "Modbus unit answers again.");
                }
                slot.failures = 0;
                slot.last_error = None;
                unit_backoff.remove(&unit);
                let rtt = i64::try_from(sent_at.1.elapsed().as_millis()).unwrap_or(0);
                let ts = Timestamp(sent_at.0 .0.saturating_add(rtt / 2));
                let batch: Readings = values(&slot.req, &words)
                    .filter_map(|(p, v)| Some(Reading::new(Arc::clone(&p.id), ts, v?)))
                    .collect();
                if !batch.is_empty() && tx.send(batch).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                metrics.source_errors.fetch_add(1, Ordering::Relaxed);
                slot.failures += 1;
                let msg = e.to_string();
                let ids: Vec<&str> = slot.req.points.iter().map(|p| &*p.id).collect();
                if slot.last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(bus = %bus.name, unit, table = ?slot.req.table, address = slot.req.start, count = slot.req.count,
                        sensors = ?ids, error = %msg, "Modbus read failed.");
                    slot.last_error = Some(msg);
                }
                match e {
                    // A well-formed answer: the device is there.
                    ReadError::Exception(_) => conn_backoff.reset(),
                    ReadError::Timeout => {
                        let (n, _) = unit_backoff
                            .get(&unit)
                            .copied()
                            .unwrap_or((0, Instant::now()));
                        let wait = (slot.req.interval * 2u32.saturating_pow(n.min(6)))
                            .min(Duration::from_secs(60));
                        unit_backoff.insert(unit, (n + 1, Instant::now() + wait));
                        if !rtu {
                            // A TCP device that does not answer may have a half-open connection.
                            ctx = None;
                        }
                    }
                    ReadError::Transport(_) | ReadError::Config(_) => {
                        ctx = None;
                        lost = true;
                        reconnect_at = Some(Instant::now() + conn_backoff.next_delay());
                    }
                }
            }
        }
        if rtu {
            tokio::time::sleep(bus.frame_delay.0).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(id: &str, unit: u8, table: Table, address: u16, ty: DataType) -> Point {
        Point {
            id: Arc::from(id),
            unit,
            table,
            address,
            ty,
            order: WordOrder::ABCD,
            scale: 1.0,
            add: 0.0,
            interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn coalescing_respects_gap_unit_table_and_limit() {
        let points = vec![
            pt("a", 1, Table::Holding, 0, DataType::U16),
            pt("b", 1, Table::Holding, 2, DataType::F32),
            pt("c", 1, Table::Holding, 30, DataType::U16),
            pt("d", 2, Table::Holding, 1, DataType::U16),
            pt("e", 1, Table::Input, 0, DataType::U16),
            pt("f", 1, Table::Holding, 150, DataType::U16),
            pt("g", 1, Table::Holding, 20, DataType::U16),
        ];
        let r = coalesce(&points, 10);
        let shape: Vec<(u8, Table, u16, u16, usize)> = r
            .iter()
            .map(|r| (r.unit, r.table, r.start, r.count, r.points.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (1, Table::Input, 0, 1, 1),
                // a@0 and b@2..4 share a request; g@20 is 16 registers further (> max_gap 10): a new one with c@30.
                (1, Table::Holding, 0, 4, 2),
                (1, Table::Holding, 20, 11, 2),
                (1, Table::Holding, 150, 1, 1),
                (2, Table::Holding, 1, 1, 1),
            ]
        );
        let vals = split(&r[1], &[10, 11, 12, 13]);
        assert_eq!(vals[0].2, Some(10.0));
        assert_eq!(vals[1].1, vec![12, 13]);
        let words: Vec<u16> = (20..31).collect();
        let vals = split(&r[2], &words);
        assert_eq!(vals[0].2, Some(20.0));
        assert_eq!(vals[1].2, Some(30.0));
        // Never more than 125 registers in one request.
        let many: Vec<Point> = (0..300)
            .map(|i| pt("x", 1, Table::Holding, i, DataType::U16))
            .collect();
        assert!(coalesce(&many, 10).iter().all(|r| r.count <= 125));
    }

    #[test]
    fn scale_and_offset() {
        let mut p = pt("t", 1, Table::Input, 0, DataType::I16);
        p.scale = 0.1;
        p.add = -40.0;
        let r = coalesce(&[p], 0);
        assert_eq!(split(&r[0], &[0xFF9C])[0].2, Some(-100.0 * 0.1 - 40.0));
    }
}
