//! Request head parsing: the engine's `parse_request` (httparse, then framing,
//! smuggling and spoofing checks and owned headers) beside bare `httparse`.

use std::hint::black_box;
use std::time::Duration;

use certgate::http::{parse_request, Parsed};
use certgate_bench::{MAX_HEAD_BYTES, TWENTY_HEADERS, TYPICAL_GET};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn http_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_parse");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .sample_size(50);

    for (name, req) in [
        ("typical_get_400b", TYPICAL_GET),
        ("twenty_headers", TWENTY_HEADERS),
    ] {
        assert!(matches!(
            parse_request(req, MAX_HEAD_BYTES),
            Ok(Parsed::Complete { len, .. }) if len == req.len()
        ));
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_function(format!("parse_request/{name}"), |b| {
            b.iter(|| black_box(parse_request(black_box(req), MAX_HEAD_BYTES)));
        });
        g.bench_function(format!("httparse_only/{name}"), |b| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; certgate::http::MAX_HEADERS];
                let mut parsed = httparse::Request::new(&mut headers);
                black_box(parsed.parse(black_box(req)).map(|s| s.is_complete()))
            });
        });
    }
    g.finish();
}

criterion_group!(benches, http_parse);
criterion_main!(benches);
