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

use super::runner::{Policy, Poll, Sample, Source};
use super::SourceError;
use crate::config::{ModbusConfig, SensorConfig};
use crate::config::{ModbusSource, SourceConfig};
use crate::model::{Exact, SensorId};
use decode::{decode, DataType, WordOrder};
use std::time::Duration;
use tokio::time::Instant;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;

pub use crate::config::Table;

/// One sensor's register map, compiled.
#[derive(Debug, Clone)]
pub struct Point {
    /// Sensor id.
    pub id: SensorId,
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
            id: SensorId::new(&s.id),
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

/// Split a response into `(point, raw registers, value, exact value)` (commissioning: shows the raw words).
pub type Split<'a> = (&'a Point, Vec<u16>, Option<f64>, Option<Exact>);

/// Split a response into each point's raw registers and values.
pub fn split<'a>(req: &'a Request, words: &[u16]) -> Vec<Split<'a>> {
    req.points
        .iter()
        .map(|p| {
            let raw = point_words(req, p, words);
            (p, raw.to_vec(), value(p, raw), exact(p, raw))
        })
        .collect()
}

/// Each point's sample from a response, without copying its registers (the poll loop's path): an exact value
/// where its type asks for one.
pub fn samples<'a>(req: &'a Request, words: &'a [u16]) -> impl Iterator<Item = Sample> + 'a {
    req.points.iter().filter_map(move |p| {
        let raw = point_words(req, p, words);
        match exact(p, raw) {
            Some(e) => Some(Sample::exact(&p.id, e)),
            None => value(p, raw).map(|v| Sample::good(&p.id, v)),
        }
    })
}

/// A point's value where an f64 cannot hold it: a string's text; a 64-bit integer read as it is (unscaled).
pub fn exact(p: &Point, raw: &[u16]) -> Option<Exact> {
    let wants = matches!(p.ty, DataType::String(_))
        || (matches!(p.ty, DataType::U64 | DataType::I64) && p.scale == 1.0 && p.add == 0.0);
    if p.table.is_bits() || !wants {
        return None;
    }
    decode::decode_exact(raw, p.ty, p.order)
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
    tokio::time::timeout(timeout, read_untimed(ctx, req))
        .await
        .unwrap_or(Err(ReadError::Timeout))
}

/// Read one request; the caller owns the deadline (tokio-modbus has none).
async fn read_untimed(ctx: &mut Context, req: &Request) -> Result<Vec<u16>, ReadError> {
    ctx.set_slave(Slave(req.unit));
    let r = match req.table {
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
    };
    match r {
        Err(e) => Err(ReadError::Transport(transport_error(&e))),
        Ok(Err(code)) => Err(ReadError::Exception(exception(code))),
        Ok(Ok(words)) if words.len() < usize::from(req.count) => Err(ReadError::Transport(
            format!("short response: {} of {} values", words.len(), req.count),
        )),
        Ok(Ok(words)) => Ok(words),
    }
}

/// An exception response in words: tokio-modbus's names (the specification's), with the code.
pub fn exception(code: ExceptionCode) -> String {
    let n = u8::from(code);
    match code {
        ExceptionCode::Custom(_) => {
            format!("exception {n} (not defined by the Modbus specification)")
        }
        named => format!("exception {n} ({named})"),
    }
}

/// What went wrong on the wire, in words: tokio-modbus reports a peer that closed the connection with a stale
/// errno ("Operation now in progress (os error 115)"); a peer that closed before our request reached it answers
/// it with a reset (which of the two a closing device gives depends on timing).
fn transport_error(e: &tokio_modbus::Error) -> String {
    use std::io::ErrorKind;
    match e {
        tokio_modbus::Error::Transport(io)
            if io.kind() == ErrorKind::UnexpectedEof
                || io.raw_os_error() == Some(libc::EINPROGRESS) =>
        {
            "the device closed the connection".to_string()
        }
        tokio_modbus::Error::Transport(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) =>
        {
            "the device closed the connection (reset)".to_string()
        }
        other => other.to_string(),
    }
}

/// One `[[modbus]]` section (a TCP device or an RTU line) as a [`Source`]: its sensors coalesced into requests,
/// one connection, requests strictly serial with `frame_delay` of silence between RTU frames.
pub struct ModbusBus {
    bus: ModbusConfig,
    reqs: Vec<Request>,
    ctx: Option<Context>,
    rtu: bool,
    /// An RTU line is quiet until then (the frame delay after the last frame).
    quiet_until: Instant,
}

impl ModbusBus {
    /// The section and the sensors configured on it.
    pub fn new(bus: ModbusConfig, sensors: &[SensorConfig]) -> Self {
        let points: Vec<Point> = sensors
            .iter()
            .filter_map(|s| Point::from_config(s, &bus))
            .collect();
        let reqs = coalesce(&points, bus.max_gap);
        tracing::info!(bus = %bus.name, url = %bus.url, sensors = points.len(), requests = reqs.len(), "Modbus source started.");
        ModbusBus {
            rtu: bus.url.starts_with("rtu://"),
            bus,
            reqs,
            ctx: None,
            quiet_until: Instant::now(),
        }
    }
}

impl Source for ModbusBus {
    fn name(&self) -> &str {
        &self.bus.name
    }
    fn policy(&self) -> Policy {
        Policy {
            kind: "Modbus",
            timeout: self.bus.timeout.0,
            retries: self.bus.retries,
            // A refused TCP connection is cheap to retry: at most 2 s between attempts, so a returning device is
            // read again within seconds whatever the outage length. A serial port that cannot be opened backs
            // off up to 30 s.
            reconnect: (
                Duration::from_millis(200),
                Duration::from_secs(if self.rtu { 30 } else { 2 }),
            ),
            // A TCP device that does not answer may have a half-open connection; an RTU line stays open.
            timeout_reconnects: !self.rtu,
            fresh_after_reconnect: !self.rtu,
            timeout_hint: "",
        }
    }
    fn polls(&self) -> Vec<Poll> {
        self.reqs
            .iter()
            .map(|r| Poll {
                interval: r.interval,
                unit: Some(u32::from(r.unit)),
                what: format!("unit {} {:?} {}+{}", r.unit, r.table, r.start, r.count)
                    .to_lowercase(),
                sensors: r.points.iter().map(|p| p.id).collect(),
            })
            .collect()
    }
    async fn connect(&mut self) -> Result<(), SourceError> {
        self.ctx = Some(connect(&self.bus.url, self.bus.timeout.0).await?);
        Ok(())
    }
    async fn read(&mut self, poll: usize) -> Result<Vec<Sample>, SourceError> {
        let (Some(ctx), Some(req)) = (self.ctx.as_mut(), self.reqs.get(poll)) else {
            return Err(SourceError::Transport("not connected".into()));
        };
        if self.rtu {
            tokio::time::sleep_until(self.quiet_until).await;
        }
        let r = read_untimed(ctx, req).await;
        self.quiet_until = Instant::now() + self.bus.frame_delay.0;
        let words = r?;
        Ok(samples(req, &words).collect())
    }
    fn disconnect(&mut self) {
        self.ctx = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(id: &str, unit: u8, table: Table, address: u16, ty: DataType) -> Point {
        Point {
            id: SensorId::from(id),
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

    #[test]
    fn a_device_that_closes_is_named_so_whether_it_said_fin_or_reset() {
        use std::io::{Error, ErrorKind};
        let t = |e: Error| transport_error(&tokio_modbus::Error::Transport(e));
        assert_eq!(
            t(Error::from(ErrorKind::UnexpectedEof)),
            "the device closed the connection"
        );
        assert_eq!(
            t(Error::from_raw_os_error(libc::EINPROGRESS)),
            "the device closed the connection"
        );
        for reset in [libc::ECONNRESET, libc::EPIPE] {
            assert_eq!(
                t(Error::from_raw_os_error(reset)),
                "the device closed the connection (reset)"
            );
        }
        assert!(t(Error::from(ErrorKind::TimedOut)).contains("timed out"));
    }
}
