//! Where io_uring is blocked (as by Docker's default seccomp profile), `CERTGATE_IO=auto` says so once and serves on epoll, and `CERTGATE_IO=uring` is a start-up error naming the cause.

mod support;

use support::*;

#[test]
fn auto_falls_back_to_epoll_when_io_uring_is_blocked() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let mut vars = pki.tls_vars();
    vars.push(("CERTGATE_BACKEND", backend.url()));
    let engine = Engine::start_with(&vars, "auto", "epoll", block_io_uring);
    let logs = engine.logs();
    let notes: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("falling back to epoll"))
        .collect();
    assert_eq!(
        notes.len(),
        1,
        "expected exactly one fallback line:\n{logs}"
    );
    let c = client(&pki, Some(&pki.client_ok));
    assert_status(
        &must_get(&engine, &c, "/on-epoll"),
        200,
        "served on the epoll fallback",
    );
    let m = admin_get(&engine, "/metrics").1;
    assert!(
        m.contains("certgate_io_backend{backend=\"epoll\"} 1"),
        "{m}"
    );
}

#[test]
fn auto_uses_io_uring_where_it_is_allowed() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let mut vars = pki.tls_vars();
    vars.push(("CERTGATE_BACKEND", backend.url()));
    let engine = Engine::start_with(&vars, "auto", "uring", |_| {});
    let m = admin_get(&engine, "/metrics").1;
    assert!(
        m.contains("certgate_io_backend{backend=\"uring\"} 1"),
        "{m}"
    );
}

#[test]
fn forced_uring_where_blocked_is_a_start_up_error() {
    let pki = TestPki::new();
    let backend = Backend::start();
    let mut vars = pki.tls_vars();
    vars.push(("CERTGATE_BACKEND", backend.url()));
    let (status, stderr) = Engine::start_expect_failure_with(&vars, "uring", block_io_uring);
    assert!(!status.success(), "must exit non-zero: {status}");
    assert!(
        stderr.contains("CERTGATE_IO=uring"),
        "stderr must name the variable:\n{stderr}"
    );
    assert!(
        stderr.contains("io_uring"),
        "stderr must name the cause:\n{stderr}"
    );
}
