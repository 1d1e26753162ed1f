//! In-process benchmarks: validation + alarms, the store codec, and committing batches to the store.
//! `cargo bench --features bench` (live-server figures: `watchpost bench --mqtt|--influxdb|--modbus URL`).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use watchpost::bench::{sensors, workload};
use watchpost::model::{Alert, Timestamp};
use watchpost::pipeline::Engine;
use watchpost::store::{codec, Store};

const START: i64 = 1_790_000_000_000;

fn engine(c: &mut Criterion) {
    let cfg = sensors(100);
    let data = workload(100_000, START);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(data.len() as u64));
    g.bench_function("validate+alarms/100k readings", |b| {
        b.iter_batched(
            || {
                (
                    Engine::new("bench", "lab", &cfg, Timestamp(START)),
                    data.clone(),
                )
            },
            |(mut e, mut work)| {
                let mut alerts: Vec<Alert> = Vec::new();
                for r in work.iter_mut() {
                    e.evaluate(r, &mut alerts);
                }
                alerts.len()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn codec_bench(c: &mut Criterion) {
    let data = workload(10_000, START);
    let rows: Vec<codec::Row> = data
        .iter()
        .enumerate()
        .map(|(i, r)| codec::Row {
            sensor: (i % 100) as u32,
            ts: r.ts,
            value: r.value,
            quality: r.quality,
            exact: None,
        })
        .collect();
    let enc = codec::encode(&rows, 1).expect("encode");
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(rows.len() as u64));
    g.bench_function("encode/10k readings", |b| {
        b.iter(|| codec::encode(&rows, 1))
    });
    g.bench_function("decode/10k readings", |b| b.iter(|| codec::decode(&enc)));
    g.finish();
}

fn store_bench(c: &mut Criterion) {
    let data = workload(10_000, START);
    let dir = tempfile::tempdir().expect("tmp");
    let mut store = Store::open(dir.path()).expect("store");
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(data.len() as u64));
    g.sample_size(20);
    g.bench_function("append_readings/10k batch (fsync)", |b| {
        b.iter(|| store.append_readings(&data, Some("{}")))
    });
    g.finish();
}

criterion_group!(benches, engine, codec_bench, store_bench);
criterion_main!(benches);
