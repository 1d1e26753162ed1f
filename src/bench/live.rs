//! `watchpost bench --mqtt|--email|--telemetry|--modbus|--influxdb`: the sinks and sources against live servers.

use super::*;
use crate::model::SensorId;

/// MQTT figures through the real sink (runner + alert feed) and a real broker at `url`: alert latency from
/// "append to the store" (fsync'd) to receipt by a QoS 1 subscriber, and the drain rate of a 100k-event backlog.
#[cfg(feature = "mqtt")]
pub fn run_mqtt(url: &str, backlog: usize) -> Result<(), Box<dyn std::error::Error>> {
    use rumqttc::{Event, MqttOptions, Packet, QoS};
    let SinkBench {
        _dir,
        cfg,
        store,
        signals,
        events_tx: ev_tx,
        _idle,
    } = SinkBench::new(&format!("[mqtt]\nurl = \"{url}\"\nmax_inflight = 200\n"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let metrics: crate::metrics::SharedMetrics = Arc::default();
    let ctl = crate::sink::SinkCtl::default();
    let (_, host, port) = crate::sink::mqtt::parse_url(url)?;
    let (rx_tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    // The writer's SQLite calls run on the blocking pool, as in the daemon.
    let writer = crate::store::SharedStore::new(store);
    rt.block_on(async {
        let mut o = MqttOptions::new("bench-sub", host, port);
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (sub, mut sub_ev) = crate::sink::mqtt::client(o, 100);
        sub.subscribe("watchpost/bench/events", QoS::AtLeastOnce).await?;
        tokio::spawn(async move {
            let _keep = sub;
            while let Ok(e) = sub_ev.poll().await {
                if let Event::Incoming(Packet::Publish(_)) = e {
                    let _ = rx_tx.send(Instant::now());
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tracker = tokio_util::task::TaskTracker::new();
        let reader = crate::store::SharedStore::open_existing(cfg.gateway.data_dir.clone()).await?;
        let _sinks = crate::sink::spawn_all(&cfg, &reader, &signals, &metrics, &ctl, &tracker);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let alert = |n: usize| raised_alert("bench", "s", n as u64);
        let mut lat = Vec::new();
        let mut commit = Vec::new();
        for i in 0..1000 {
            let t0 = Instant::now();
            let a = alert(i);
            let seqs = writer.call(move |s| s.append_alerts(&[a], None)).await?;
            commit.push(t0.elapsed());
            ev_tx.send_replace(*seqs.last().ok_or("no seq")?);
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await?.ok_or("subscriber closed")?;
            lat.push(got.duration_since(t0));
        }
        lat.sort();
        commit.sort();
        println!(
            "alert latency, store commit (fsync: p50 {} µs, p99 {} µs of it) → sink → mosquitto → QoS 1 subscriber: p50 {} µs, p99 {} µs, max {} µs",
            commit[commit.len() / 2].as_micros(),
            commit[commit.len() * 99 / 100].as_micros(),
            lat[lat.len() / 2].as_micros(),
            lat[lat.len() * 99 / 100].as_micros(),
            lat[lat.len() - 1].as_micros()
        );
        // Backlog drain.
        for chunk in (0..backlog).collect::<Vec<_>>().chunks(1000) {
            let batch: Vec<Alert> = chunk.iter().map(|i| alert(*i)).collect();
            writer.call(move |s| s.append_alerts(&batch, None)).await?;
        }
        let t0 = Instant::now();
        let (_, total) = writer.call(|s| s.counts()).await?;
        ev_tx.send_replace(total as i64 + 1);
        let mut n = 0;
        while n < backlog {
            tokio::time::timeout(Duration::from_secs(30), rx.recv()).await?.ok_or("subscriber closed")?;
            n += 1;
        }
        let el = t0.elapsed();
        println!(
            "backlog of {backlog} alert events: delivered in {:.2}s = {:.0} events/s (each is 2 QoS 1 publishes: retained state + event feed)",
            el.as_secs_f64(),
            backlog as f64 / el.as_secs_f64()
        );
        ctl.stop.cancel();
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

/// Email figures through the real sink (runner + email route) and a real SMTP server at `url` (plain): the time
/// from "append to the store" (fsync'd) to the server's 250, one alert at a time without a digest window; then a
/// storm of 1,000 alerts over 10 s with a 2 s digest window: how many mails, and when the last one was accepted.
#[cfg(feature = "email")]
pub fn run_email(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::atomic::Ordering;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let email = |window: &str| {
        format!("[email]\nurl = \"{url}\"\ntls = \"none\"\nfrom = \"bench@example.test\"\nto = [\"ops@example.test\"]\ndigest_window = \"{window}\"\nmax_per_hour = 1000\n")
    };
    rt.block_on(async {
        for (round, window) in [(0, "0s"), (1, "2s")] {
            let SinkBench { _dir, cfg, store, signals, events_tx: ev_tx, _idle } = SinkBench::new(&email(window))?;
            let metrics: crate::metrics::SharedMetrics = Arc::default();
            let m = metrics.sink("email");
            let ctl = crate::sink::SinkCtl::default();
            let writer = crate::store::SharedStore::new(store);
            let tracker = tokio_util::task::TaskTracker::new();
            let reader = crate::store::SharedStore::open_existing(cfg.gateway.data_dir.clone()).await?;
            let _sinks = crate::sink::spawn_all(&cfg, &reader, &signals, &metrics, &ctl, &tracker);
            let until = |n: u64, what: &'static str| {
                let m = Arc::clone(&m);
                async move {
                    let t = Instant::now();
                    while m.messages.load(Ordering::Relaxed) < n {
                        if t.elapsed() > Duration::from_secs(30) {
                            return Err(format!("no {what} within 30 s (is the SMTP server at {url} up?)"));
                        }
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    Ok(t)
                }
            };
            if round == 0 {
                let mut lat = Vec::new();
                for i in 0..200u64 {
                    let t0 = Instant::now();
                    let a = raised_alert("bench", "s", i);
                    let seqs = writer.call(move |s| s.append_alerts(&[a], None)).await?;
                    ev_tx.send_replace(*seqs.last().ok_or("no seq")?);
                    until(i + 1, "250").await?;
                    lat.push(t0.elapsed());
                }
                lat.sort();
                println!(
                    "email: store commit (fsync) → sink → SMTP 250, one alert per mail, no digest window: p50 {:.1} ms, p99 {:.1} ms ({} mails)",
                    lat[lat.len() / 2].as_secs_f64() * 1e3,
                    lat[lat.len() * 99 / 100].as_secs_f64() * 1e3,
                    lat.len()
                );
            } else {
                let t0 = Instant::now();
                for burst in 0..100u64 {
                    let batch: Vec<Alert> = (0..10).map(|i| raised_alert("bench", "s", burst * 10 + i)).collect();
                    let seqs = writer.call(move |s| s.append_alerts(&batch, None)).await?;
                    ev_tx.send_replace(*seqs.last().ok_or("no seq")?);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let stormed = t0.elapsed();
                let t = Instant::now();
                while m.delivered.load(Ordering::Relaxed) < 1000 {
                    if t.elapsed() > Duration::from_secs(30) {
                        return Err("the storm was not mailed within 30 s".into());
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                println!(
                    "email: storm of 1,000 CRITICAL alerts over {:.1} s, digest_window 2s: {} mails, the last accepted {:.2} s after the last alert",
                    stormed.as_secs_f64(),
                    m.messages.load(Ordering::Relaxed),
                    t.elapsed().as_secs_f64()
                );
            }
            ctl.stop.cancel();
            tracker.close();
            let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

/// Telemetry through the real sink and a real broker at `url`: a backlog of `n` readings (polls of 100 registers,
/// one sample time per poll, 10 polls/s of history) drained in `raw` and in `aggregate` (60 s windows) mode; the
/// rate counts readings whose messages the broker acknowledged (the cursor moved past them).
#[cfg(feature = "mqtt")]
pub fn run_telemetry(url: &str, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::atomic::Ordering;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for mode in ["raw", "aggregate"] {
        let SinkBench {
            _dir,
            cfg,
            mut store,
            signals,
            events_tx: _,
            _idle,
        } = SinkBench::new(&format!(
            "[mqtt]\nurl = \"{url}\"\n[mqtt.telemetry]\nmode = \"{mode}\"\nwindow = \"60s\"\n"
        ))?;
        let ids: Vec<SensorId> = (0..100).map(|i| SensorId::from(format!("r{i}"))).collect();
        let start = Timestamp::now().0 - (n as i64 / 100) * 100 - 120_000;
        let mut batch = Vec::with_capacity(10_000);
        for k in 0..n {
            let poll = (k / 100) as i64;
            batch.push(Reading::new(
                ids[k % 100],
                Timestamp(start + poll * 100),
                (k % 1000) as f64,
            ));
            if batch.len() == 10_000 {
                store.append_readings(&batch, None)?;
                batch.clear();
            }
        }
        store.append_readings(&batch, None)?;
        // One reading past the last window's end and grace, so every window closes.
        store.append_readings(&[Reading::new(ids[0], Timestamp::now(), 0.0)], None)?;
        _idle.0.send_replace(store.newest()?.0);
        let metrics: crate::metrics::SharedMetrics = Arc::default();
        let ctl = crate::sink::SinkCtl::default();
        let (t0, c0) = (Instant::now(), cpu_time());
        rt.block_on(async {
            let tracker = tokio_util::task::TaskTracker::new();
            let reader = crate::store::SharedStore::open_existing(cfg.gateway.data_dir.clone()).await?;
            let _sinks = crate::sink::spawn_all(&cfg, &reader, &signals, &metrics, &ctl, &tracker);
            let m = metrics.sink("telemetry");
            let want = if mode == "raw" { n as u64 + 1 } else { n as u64 };
            while m.delivered.load(Ordering::Relaxed) < want {
                if t0.elapsed() > Duration::from_secs(300) {
                    return Err::<(), Box<dyn std::error::Error>>("telemetry drain did not finish in 300 s".into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let el = t0.elapsed().as_secs_f64();
            let cpu = (cpu_time() - c0).as_secs_f64();
            println!(
                "telemetry {mode}: backlog of {n} readings (100 per poll) → mosquitto, acknowledged in {el:.2}s = {:.0} readings/s, {} messages, {:.2} µs CPU per reading",
                n as f64 / el,
                m.messages.load(Ordering::Relaxed),
                cpu / n as f64 * 1e6
            );
            ctl.stop.cancel();
            tracker.close();
            let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
            Ok(())
        })?;
    }
    Ok(())
}

/// Modbus figures against a device at `url`: 100 u16 sensors coalesced into one request, polled back to back
/// for 3 s; readings/s and CPU (this process only) per 1,000 readings.
#[cfg(feature = "modbus")]
pub fn run_modbus(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    use crate::source::modbus::{coalesce, connect, read, split, Point, Table};
    let points: Vec<Point> = (0..100)
        .map(|i| Point {
            id: SensorId::from(format!("r{i}")),
            unit: 1,
            table: Table::Holding,
            address: i,
            ty: crate::config::DataType::U16,
            order: crate::config::WordOrder::ABCD,
            scale: 0.1,
            add: 0.0,
            interval: Duration::from_secs(1),
        })
        .collect();
    let reqs = coalesce(&points, 10);
    println!(
        "modbus: 100 sensors coalesced into {} request(s)",
        reqs.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut ctx = connect(url, Duration::from_secs(2)).await?;
        let (t0, c0) = (Instant::now(), cpu_time());
        let mut n = 0u64;
        let mut polls = 0u64;
        while t0.elapsed() < Duration::from_secs(3) {
            for r in &reqs {
                let words = read(&mut ctx, r, Duration::from_secs(1)).await.map_err(|e| e.to_string())?;
                n += split(r, &words).iter().filter(|x| x.2.is_some()).count() as u64;
                polls += 1;
            }
        }
        let (el, cpu) = (t0.elapsed(), cpu_time() - c0);
        println!(
            "modbus TCP loopback: {polls} requests, {:.0} readings/s, {:.0} µs per request round trip, {:.1} ms CPU per 1,000 readings (watchpost side)",
            n as f64 / el.as_secs_f64(),
            el.as_micros() as f64 / polls as f64,
            cpu.as_secs_f64() * 1e3 / (n as f64 / 1000.0)
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}

/// InfluxDB figures against a server at `url`: drain a backlog of `n` readings (100 sensors) through the real
/// sink; readings/s, gzip bytes on the wire per reading, CPU per 1,000 readings.
#[cfg(feature = "influxdb")]
pub fn run_influx(url: &str, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let SinkBench {
        _dir,
        cfg,
        mut store,
        signals,
        events_tx: _,
        _idle,
    } = SinkBench::new(&format!(
        "[influxdb]\nurl = \"{url}\"\norg = \"o\"\nbucket = \"b\"\n"
    ))?;
    let start = Timestamp::now().0 - 86_400_000;
    let data = workload(n, start);
    for chunk in data.chunks(10_000) {
        store.append_readings(chunk, None)?;
    }
    // Tell the sink what is there, as the ingest thread does after each commit.
    _idle.0.send_replace(store.newest()?.0);
    // Wire size: encode + gzip the same way the sink does.
    let mut enc = crate::sink::lineproto::Encoder::new(
        "sensor",
        "ms",
        [("device".to_string(), "bench".to_string())]
            .into_iter()
            .collect(),
        Default::default(),
    );
    let mut body = String::new();
    for r in data.iter().take(100_000) {
        enc.line(&mut body, r);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, body.as_bytes())?;
    let gz_len = gz.finish()?.len();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let metrics: crate::metrics::SharedMetrics = Arc::default();
    let ctl = crate::sink::SinkCtl::default();
    let (t0, c0) = (Instant::now(), cpu_time());
    rt.block_on(async {
        let tracker = tokio_util::task::TaskTracker::new();
        let reader = crate::store::SharedStore::open_existing(cfg.gateway.data_dir.clone()).await?;
        let _sinks = crate::sink::spawn_all(&cfg, &reader, &signals, &metrics, &ctl, &tracker);
        while metrics
            .sink("influxdb")
            .delivered
            .load(std::sync::atomic::Ordering::Relaxed)
            < n as u64
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if t0.elapsed() > Duration::from_secs(120) {
                break;
            }
        }
        ctl.stop.cancel();
        tracker.close();
        tracker.wait().await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    let (el, cpu) = (t0.elapsed(), cpu_time() - c0);
    let sent = metrics
        .sink("influxdb")
        .delivered
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "influxdb backlog drain: {sent} readings in {:.2}s = {:.0} readings/s; {:.2} bytes/reading on the wire (gzip), {:.1} bytes/reading before gzip; {:.2} ms CPU per 1,000 readings (watchpost side)",
        el.as_secs_f64(),
        sent as f64 / el.as_secs_f64(),
        gz_len as f64 / 100_000.0,
        body.len() as f64 / 100_000.0,
        cpu.as_secs_f64() * 1e3 / (sent as f64 / 1000.0)
    );
    Ok(())
}
