//! Admin endpoints: /healthz answers 200 and /metrics exposes the io backend, request statuses, handshakes by version, verify-cache hits/misses, verdicts, accepted connections and byte counters consistent with a known sequence of requests.

mod support;

use std::time::Duration;

use support::admin::metrics_text;
use support::*;

fn metrics_after_known_sequence(io: &str) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[
            ("CERTGATE_CLIENT_CERT", "request".into()),
            ("CERTGATE_WORKERS", "1".into()),
        ],
    );
    let (st, body) = admin_get(&engine, "/healthz");
    assert_eq!(st, 200, "/healthz: {body}");

    let ok = client(&pki, Some(&pki.client_ok));
    let none = client(&pki, None);
    assert_status(&must_get(&engine, &ok, "/m/ok"), 200, "valid cert");
    assert_status(&must_get(&engine, &none, "/m/none"), 403, "no cert");

    let text = metrics_text(&engine);
    let m = |q: &str| support::admin::metric_in(&text, q);
    let show = |q: &str| format!("{q} = {:?}\n--- /metrics ---\n{text}", m(q));

    let q = format!(
        "certgate_io_backend{{backend=\"{}\"}}",
        support::engine::backend_of(io)
    );
    assert_eq!(m(&q), Some(1.0), "{}", show(&q));

    // The io_uring backend says once which fast paths are in force: all of
    // them in the `uring` variant, none in `uring-plain`.
    if support::engine::backend_of(io) == "uring" {
        let logs = engine.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("io_uring fast paths:"))
            .unwrap_or_else(|| panic!("no fast-path line in the start-up log:\n{logs}"));
        let state = if io == "uring" { "on" } else { "off" };
        for path in [
            "multishot accept",
            "buffer ring",
            "multishot receive",
            "fixed files",
            "registered buffers",
            "zero-copy send",
        ] {
            assert!(
                line.contains(&format!("{path} {state}")),
                "{io}: expected `{path} {state}` in {line:?}"
            );
        }
    }
    for q in [
        "certgate_requests_total{status=\"200\"}",
        "certgate_requests_total{status=\"403\"}",
    ] {
        assert!(m(q).unwrap_or(0.0) >= 1.0, "{}", show(q));
    }
    let q = "certgate_handshakes_total{result=\"ok\",version=\"TLSv1.3\"}";
    assert!(m(q).unwrap_or(0.0) >= 2.0, "{}", show(q));
    let q = "certgate_client_cert_verdicts_total{verdict=\"success\"}";
    assert!(m(q).unwrap_or(0.0) >= 1.0, "{}", show(q));
    let q = "certgate_verify_cache_misses_total";
    assert!(m(q).unwrap_or(0.0) >= 1.0, "{}", show(q));
    let q = "certgate_connections_accepted_total";
    assert!(m(q).unwrap_or(0.0) >= 2.0, "{}", show(q));
    for q in ["certgate_bytes_received_total", "certgate_bytes_sent_total"] {
        assert!(m(q).unwrap_or(0.0) > 0.0, "{}", show(q));
    }
    let q = "certgate_verify_cache_hits_total";
    assert!(m(q).is_some(), "{}", show(q));

    // the same client reconnects (full handshake, no resumption): a cache hit
    let hits_before = m(q).unwrap();
    let accepted_before = m("certgate_connections_accepted_total").unwrap();
    let received_before = m("certgate_bytes_received_total").unwrap();
    assert_status(&must_get(&engine, &ok, "/m/again"), 200, "valid cert again");
    let hits_after = metric(&engine, q);
    assert!(
        hits_after > hits_before,
        "verify cache hits did not increase on reconnect ({hits_before} -> {hits_after})"
    );
    assert!(metric(&engine, "certgate_connections_accepted_total") > accepted_before);
    // Counted as the exchange completes, which may be just after the client
    // has read the response: poll briefly.
    let received = wait_metric_above(
        &engine,
        "certgate_bytes_received_total",
        received_before,
        Duration::from_secs(2),
    );
    assert!(received > received_before, "bytes received did not grow");
    assert!(metric(&engine, "certgate_requests_total{status=\"200\"}") >= 2.0);
}

io_tests!(metrics_after_known_sequence);
