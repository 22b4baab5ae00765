//! The server's public-key work per mutual-TLS handshake through BoringSSL, and
//! AES-128-GCM on a full record. `src/bin/crypto_floor.rs` turns the same
//! operations into a handshakes-per-CPU-second floor.

use std::hint::black_box;
use std::time::Duration;

use certgate_bench::crypto::{Crypto, Op, RECORD};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn crypto_floor(c: &mut Criterion) {
    let mut crypto = Crypto::new();
    let mut g = c.benchmark_group("crypto_floor");
    for op in Op::ALL {
        let slow = matches!(op, Op::RsaSign);
        g.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(if slow { 2500 } else { 1200 }))
            .sample_size(if slow { 20 } else { 40 });
        g.throughput(match op {
            Op::Aes128GcmSeal16k => Throughput::Bytes(RECORD as u64),
            _ => Throughput::Elements(1),
        });
        g.bench_function(op.name(), |b| b.iter(|| black_box(crypto.run(op))));
    }
    g.finish();
}

criterion_group!(benches, crypto_floor);
criterion_main!(benches);
