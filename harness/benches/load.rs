//! Hot paths of the measurement engine: recording a sample (twice per request, via
//! dispatch and completion) and closing a window (percentiles + histogram recycling).

use std::hint::black_box;

use chrono::DateTime;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use stormdrill::measure::window::{Class, Recorder, Sample};

const S: u64 = 1_000_000;

fn recorder() -> Recorder {
    let mut r = Recorder::new(S, 10 * S, DateTime::UNIX_EPOCH);
    r.mark_phase(0, "before");
    r
}

fn record(c: &mut Criterion) {
    let mut r = recorder();
    let mut i = 0u64;
    c.bench_function("record a sample (dispatch + completion)", |b| {
        b.iter(|| {
            // 10k req/s spread over a window; latencies 1-64 ms.
            i = (i + 1) % 10_000;
            let start_us = i * 100;
            r.dispatched(start_us);
            r.record(black_box(&Sample {
                start_us,
                latency_us: 1000 + (i % 64) * 1000,
                lag_us: i % 200,
                class: if i.is_multiple_of(97) {
                    Class::Http(503)
                } else {
                    Class::Ok
                },
            }));
        })
    });
}

fn close(c: &mut Criterion) {
    c.bench_function("close a window of 10k samples", |b| {
        b.iter_batched(
            || {
                let mut r = recorder();
                for i in 0..10_000u64 {
                    let start_us = i * 100;
                    r.dispatched(start_us);
                    r.record(&Sample {
                        start_us,
                        latency_us: 1000 + (i % 500) * 37,
                        lag_us: i % 300,
                        class: Class::Ok,
                    });
                }
                // The next window's dispatch seals this one.
                r.dispatched(S + 1);
                r
            },
            |mut r| black_box(r.close_ready(S)),
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, record, close);
criterion_main!(benches);
