//! A 256 MiB upload streams through the engine: it arrives complete at the backend and the engine's RSS grows by less than 64 MiB during it.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::engine::rss_of;
use support::*;

const TOTAL: u64 = 256 << 20;
const LIMIT: u64 = 64 << 20;

fn upload_256mib(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_CLIENT_CERT", "request".into())],
    );
    let client = client(&pki, Some(&pki.client_ok));

    // warm up (both workers, buffers, verify cache) before measuring
    for _ in 0..4 {
        assert_status(&must_get(&engine, &client, "/warmup"), 200, "warm-up");
    }
    std::thread::sleep(Duration::from_millis(100));
    let pid = engine.pid();
    let baseline = rss_of(pid).expect("read VmRSS");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut max = 0u64;
            let mut samples = 0u32;
            while !stop.load(Ordering::SeqCst) {
                if let Some(r) = rss_of(pid) {
                    max = max.max(r);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (max, samples)
        })
    };

    let mut c = client.connect(engine.addr(), None).expect("connect");
    c.send(
        format!("POST /discard HTTP/1.1\r\nHost: localhost\r\nContent-Length: {TOTAL}\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    // 1 MiB + 64 KiB of pseudo-random bytes, streamed from a rotating offset
    let pool = random_bytes((1 << 20) + (64 << 10), 42);
    let mut sent: u64 = 0;
    let mut i = 0usize;
    while sent < TOTAL {
        let n = ((TOTAL - sent) as usize).min(64 << 10);
        let off = (i * 4099) % (1 << 20);
        i += 1;
        if let Err(e) = c.send(&pool[off..off + n]) {
            stop.store(true, Ordering::SeqCst);
            panic!("upload failed after {sent} bytes: {e}");
        }
        sent += n as u64;
    }
    let r = c.read_response();
    stop.store(true, Ordering::SeqCst);
    let (max, samples) = sampler.join().unwrap();
    let r = r.expect("response to the 256 MiB upload");
    assert_status(&r, 200, "256 MiB upload");
    let rec = backend.last();
    assert_eq!(
        rec.body_len, TOTAL,
        "backend received {} of {TOTAL} bytes",
        rec.body_len
    );
    assert!(samples >= 2, "RSS sampled only {samples} times");
    let growth = max.saturating_sub(baseline);
    eprintln!(
        "io={io}: RSS baseline {baseline} B, max {max} B, growth {growth} B over {samples} samples"
    );
    assert!(
        growth < LIMIT,
        "engine RSS grew by {} MiB during a 256 MiB upload (baseline {} MiB, max {} MiB); limit 64 MiB",
        growth >> 20,
        baseline >> 20,
        max >> 20
    );
}

io_tests!(upload_256mib);
