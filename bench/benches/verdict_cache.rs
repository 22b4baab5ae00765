//! The verdict cache: a bare hit, a returning client's whole check (leaf SHA-256,
//! chain key, clock read, hit), and a first-time client's chain build
//! (`evaluate_uncached`: root → intermediate → leaf, ECDSA P-256).

use std::hint::black_box;
use std::time::{Duration, Instant};

use certgate::tls::pki::KeyKind;
use certgate::tls::verify::{evaluate_uncached, Presented};
use certgate::trust::VerdictKey;
use certgate_bench::{engine_trust, Chain, ReturningClient, SplitMix64};
use criterion::{criterion_group, criterion_main, Criterion};

/// Distinct clients already in the cache.
const WARM_ENTRIES: usize = 10_000;

fn verdict_cache(c: &mut Criterion) {
    let chain = Chain::new(KeyKind::EcdsaP256);
    let trust = engine_trust(&chain);
    let generation = trust.generation;
    let verdict = match evaluate_uncached(&trust, &chain.leaf.cert, Some(&chain.presented)) {
        Presented::Cert(eval) if eval.facts.trust_error.is_none() => eval,
        other => panic!("not trusted: {other:?}"),
    };

    // A warm per-worker cache: 10k other clients plus ours, all sharing one verdict
    // (the value is an `Arc`; a hit clones it).
    let mut rc = ReturningClient::new();
    let now = Instant::now();
    let mut rng = SplitMix64(10);
    let mut other_keys = Vec::with_capacity(WARM_ENTRIES);
    for _ in 0..WARM_ENTRIES {
        let key = VerdictKey {
            leaf_sha256: rng.bytes32(),
            chain: rng.next_u64(),
        };
        other_keys.push(key);
        rc.cache.insert(key, verdict.clone(), now, None, generation);
    }
    let ours = rc.key(&chain.leaf.cert, Some(&chain.presented));
    rc.cache
        .insert(ours, verdict.clone(), now, None, generation);

    let mut g = c.benchmark_group("verdict_cache");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(50);

    g.bench_function("hit_get_warm_10k", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % WARM_ENTRIES;
            black_box(rc.cache.get(black_box(&other_keys[i]), now, generation))
        });
    });

    g.bench_function("returning_client_leaf_sha256_plus_hit", |b| {
        b.iter(|| {
            let sha256 = black_box(&chain.leaf.cert)
                .digest(boring::hash::MessageDigest::sha256())
                .unwrap();
            let mut key = VerdictKey {
                leaf_sha256: [0; 32],
                chain: ours.chain,
            };
            key.leaf_sha256.copy_from_slice(&sha256);
            black_box(rc.cache.get(&key, Instant::now(), generation))
        });
    });

    g.bench_function("returning_client_full_key_plus_hit", |b| {
        b.iter(|| {
            black_box(rc.check(
                black_box(&chain.leaf.cert),
                Some(&chain.presented),
                generation,
            ))
        });
    });

    g.bench_function("miss_verify_uncached_chain_ecdsa", |b| {
        b.iter(|| {
            black_box(evaluate_uncached(
                &trust,
                black_box(&chain.leaf.cert),
                Some(&chain.presented),
            ))
        });
    });
    g.finish();
}

criterion_group!(benches, verdict_cache);
criterion_main!(benches);
