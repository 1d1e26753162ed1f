//! The floor under the gateway workload: what reading 100 holding registers every 100 ms costs a minimal tokio +
//! tokio-modbus program that does nothing with the values (no validation, alarms, store or sinks). `bench/ratios.sh`
//! runs it beside watchpost so the report can say how much of watchpost's cost per reading is the poll itself.
//!   cargo run --release --example poll_floor -- 127.0.0.1:PORT [REGS=100] [PERIOD_MS=100]
use std::time::Duration;
use tokio_modbus::client::Reader;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: std::net::SocketAddr = args
        .next()
        .ok_or("usage: poll_floor HOST:PORT [REGS] [PERIOD_MS]")?
        .parse()?;
    let regs: u16 = args.next().map_or(Ok(100), |s| s.parse())?;
    let period: u64 = args.next().map_or(Ok(100), |s| s.parse())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut ctx = tokio_modbus::client::tcp::connect(addr).await?;
        let mut tick = tokio::time::interval(Duration::from_millis(period));
        let mut sum = 0u64;
        loop {
            tick.tick().await;
            match tokio::time::timeout(Duration::from_secs(1), ctx.read_holding_registers(0, regs))
                .await
            {
                Ok(Ok(Ok(v))) => {
                    sum = sum.wrapping_add(v.iter().map(|&x| u64::from(x)).sum::<u64>())
                }
                other => eprintln!("poll failed: {other:?}"),
            }
            std::hint::black_box(sum);
        }
    })
}
