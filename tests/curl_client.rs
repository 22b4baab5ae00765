//! curl works as a client: with --cert/--key it gets 200 from the backend, without a certificate (request mode) it gets 403.

mod support;

use std::process::Command;
use std::time::Duration;
use support::pki::path_str;
use support::tools::{require_tool, run_with_timeout};
use support::*;

fn curl(engine: &Engine, pki: &TestPki, with_cert: bool) -> (String, String) {
    let port = engine.port();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(["--max-time", "15"])
        .args(["--cacert", &path_str(&pki.root.cert)])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")]);
    if with_cert {
        cmd.args(["--cert", &path_str(&pki.client_ok.chain)])
            .args(["--key", &path_str(&pki.client_ok.key)]);
    }
    cmd.arg(format!("https://localhost:{port}/x"));
    let out = run_with_timeout(cmd, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "curl failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
    (code.trim().to_string(), body.to_string())
}

fn curl_with_and_without_cert(io: &str) {
    require_tool("curl");
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_CLIENT_CERT", "request".into())],
    );

    let (code, body) = curl(&engine, &pki, true);
    assert_eq!(code, "200", "curl with a client certificate: body {body:?}");
    assert_eq!(body, "ok");
    assert_eq!(backend.count(), 1);
    assert_eq!(
        backend.last().header("X-Client-Cert-Thumbprint"),
        Some(pki.client_ok.sha1_upper().as_str())
    );

    let (code, body) = curl(&engine, &pki, false);
    assert_eq!(
        code, "403",
        "curl without a client certificate: body {body:?}"
    );
    assert!(body.contains("Invalid client certificate"), "{body:?}");
    assert_eq!(backend.count(), 1);
}

io_tests!(curl_with_and_without_cert);
