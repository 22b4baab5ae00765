//! Per-certificate and per-request work around the forwarded certificate headers:
//! the two thumbprints of a leaf, rendering the header block (once per verdict-cache
//! miss), and writing a rewritten request head with that block (every request).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::BytesMut;
use certgate::http::{parse_request, write_upstream_head, ForwardContext, Parsed};
use certgate::tls::certinfo::{digests, ClientCertInfo};
use certgate::tls::pki::KeyKind;
use certgate_bench::{Chain, MAX_HEAD_BYTES, TYPICAL_GET};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn certificate_headers(c: &mut Criterion) {
    let chain = Chain::new(KeyKind::EcdsaP256);
    let leaf = &chain.leaf.cert;
    let der_len = leaf.to_der().unwrap().len() as u64;
    let d = digests(leaf).unwrap();
    let info = ClientCertInfo::from_cert(leaf, d).unwrap();

    let mut g = c.benchmark_group("cert_headers");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .sample_size(50);

    g.throughput(Throughput::Bytes(der_len));
    g.bench_function("digests_sha1_sha256_leaf", |b| {
        b.iter(|| black_box(digests(black_box(leaf)).unwrap()));
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("client_cert_info_from_cert", |b| {
        b.iter(|| black_box(ClientCertInfo::from_cert(black_box(leaf), d).unwrap()));
    });

    let Ok(Parsed::Complete { head: request, .. }) = parse_request(TYPICAL_GET, MAX_HEAD_BYTES)
    else {
        panic!("typical GET does not parse");
    };
    let ctx = ForwardContext {
        client_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 23)).into(),
        cert_headers: &info.header_block,
        verify: None,
    };
    let mut out = BytesMut::with_capacity(8 * 1024);
    g.bench_function("write_upstream_head_typical_get_with_cert_block", |b| {
        b.iter(|| {
            out.clear();
            write_upstream_head(black_box(&request), &ctx, &mut out);
            black_box(out.len())
        });
    });
    g.finish();
    eprintln!(
        "(leaf DER {der_len} bytes; certificate header block {} bytes; upstream head {} bytes)",
        info.header_block.len(),
        out.len()
    );
}

criterion_group!(benches, certificate_headers);
criterion_main!(benches);
