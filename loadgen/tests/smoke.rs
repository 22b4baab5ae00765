//! End-to-end: the load generator against the in-process trivial TLS server on 127.0.0.1
//! (mutual TLS required), every mode for about a second, plus the error paths.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use certgate::tls::pki::{self, CertSpec, Issued, Usage};
use certgate_loadgen::trivial_server::{self, Server, ServerOptions};
use certgate_loadgen::{run, Opts, Report};
use clap::Parser as _;

struct Pki {
    dir: PathBuf,
    client: Issued,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn make_pki() -> Pki {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "certgate-loadgen-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let root = pki::self_signed(&CertSpec::new("root", Usage::Ca)).unwrap();
    let mut spec = CertSpec::new("localhost", Usage::Server);
    spec.dns_names = vec!["localhost".into()];
    spec.ip_addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let server = pki::issue(&spec, &root).unwrap();
    let client = pki::issue(&CertSpec::new("client", Usage::Client), &root).unwrap();
    std::fs::write(dir.join("ca.pem"), root.cert_pem()).unwrap();
    server
        .write_pem(&dir.join("server.pem"), &dir.join("server-key.pem"))
        .unwrap();
    client
        .write_pem(&dir.join("client.pem"), &dir.join("client-key.pem"))
        .unwrap();
    Pki { dir, client }
}

fn start_server(pki: &Pki, mtls: bool) -> Server {
    trivial_server::start(&ServerOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        threads: 1,
        cert: pki.dir.join("server.pem"),
        key: pki.dir.join("server-key.pem"),
        client_ca: mtls.then(|| pki.dir.join("ca.pem")),
        pin_cpus: None,
    })
    .unwrap()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Options for a short run against `addr` with the client certificate.
fn args(pki: &Pki, addr: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "certgate-loadgen".into(),
        format!("https://{addr}/"),
        "--ca".into(),
        p(&pki.dir.join("ca.pem")),
        "--cert".into(),
        p(&pki.dir.join("client.pem")),
        "--key".into(),
        p(&pki.dir.join("client-key.pem")),
        "--threads".into(),
        "1".into(),
        "--timeout".into(),
        "5s".into(),
        "--quiet".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn run_args(a: &[String]) -> Result<Report, String> {
    let opts = Opts::try_parse_from(a).map_err(|e| e.to_string())?;
    run(&opts)
}

fn assert_clean(r: &Report, what: &str) {
    assert!(r.ok > 0, "{what}: no successful request: {r:#?}");
    assert_eq!(r.errors_total, 0, "{what}: errors {:?}", r.error_samples);
    assert!(r.throughput_rps > 0.0, "{what}: zero throughput");
    assert_eq!(r.status.get("200").copied(), Some(r.ok), "{what}: statuses");
    assert!(r.latency_us.p50 > 0.0 && r.latency_us.max >= r.latency_us.p99_9);
    assert!(r.bytes.sent > 0 && r.bytes.received > 0);
    assert!(r.wire_bytes.sent > r.bytes.sent, "{what}: TLS adds bytes");
}

#[test]
fn every_mode_over_mutual_tls() {
    let pki = make_pki();
    let srv = start_server(&pki, true);
    let a = srv.addr;

    let r = run_args(&args(&pki, a, &["-m", "keepalive", "-c", "4", "-d", "1s"])).unwrap();
    assert_clean(&r, "keepalive");
    assert_eq!(
        r.handshakes.total, 4,
        "one handshake per persistent connection"
    );

    let r = run_args(&args(&pki, a, &["-m", "handshake", "-c", "2", "-d", "1s"])).unwrap();
    assert_clean(&r, "handshake");
    assert_eq!(r.handshakes.total, r.requests);
    assert_eq!(r.handshakes.resumed, 0);
    assert_eq!(r.handshakes.resume_attempts, 0);

    let r = run_args(&args(&pki, a, &["-m", "resume", "-c", "2", "-d", "1s"])).unwrap();
    assert_clean(&r, "resume");
    assert_eq!(r.handshakes.total, r.requests);
    assert!(
        r.handshakes.resumed > 0 && r.handshakes.resumed + 2 >= r.handshakes.total,
        "almost every connection after the first resumes: {:?}",
        r.handshakes
    );

    let r = run_args(&args(
        &pki,
        a,
        &["-m", "post", "-c", "2", "-d", "1s", "--body-size", "64k"],
    ))
    .unwrap();
    assert_clean(&r, "post");
    assert!(r.bytes.sent >= r.requests * 65536);
    assert_eq!(r.config.post_body_size, Some(65536));

    let r = run_args(&args(
        &pki,
        a,
        &[
            "-m",
            "mixed",
            "--mix",
            "handshake=1,resume=1,keepalive=4,post=1",
            "-c",
            "4",
            "-d",
            "1s",
        ],
    ))
    .unwrap();
    assert_clean(&r, "mixed");
    let mix = r.mix.as_ref().unwrap();
    for k in ["handshake", "resume", "keepalive", "post"] {
        assert!(mix[k] > 0, "mixed: no {k} request: {mix:?}");
    }
    assert_eq!(mix.values().sum::<u64>(), r.requests);

    let r = run_args(&args(&pki, a, &["-m", "idle", "-c", "40", "--hold", "1s"])).unwrap();
    let idle = r.idle.as_ref().unwrap();
    assert_eq!(
        (idle.opened, idle.stayed_up, idle.failed),
        (40, 40, 0),
        "{idle:?}"
    );
    assert_eq!(r.errors_total, 0, "{:?}", r.error_samples);
    assert!(idle.hold_secs >= 0.9, "{idle:?}");
    srv.stop();
}

#[test]
fn tls12_resumption_and_pinning() {
    let pki = make_pki();
    let srv = start_server(&pki, true);
    let r = run_args(&args(
        &pki,
        srv.addr,
        &[
            "-m",
            "resume",
            "-c",
            "2",
            "-d",
            "1s",
            "--tls",
            "1.2",
            "--pin-cpus",
            "0",
        ],
    ))
    .unwrap();
    assert_clean(&r, "resume tls1.2");
    assert!(r.handshakes.resumed > 0, "{:?}", r.handshakes);
    assert_eq!(r.config.pin_cpus, Some(vec![0]));
}

#[test]
fn open_loop_rate_and_request_bound() {
    let pki = make_pki();
    let srv = start_server(&pki, true);
    let r = run_args(&args(
        &pki,
        srv.addr,
        &["-c", "4", "-d", "1s", "--rate", "200", "--warmup", "200ms"],
    ))
    .unwrap();
    assert_clean(&r, "open loop");
    assert!(
        (180..=204).contains(&r.requests),
        "about 200 requests in 1 s at 200/s, got {}",
        r.requests
    );
    assert_eq!(r.warmup_secs, 0.2);

    let r = run_args(&args(&pki, srv.addr, &["-c", "3", "-n", "50"])).unwrap();
    assert_clean(&r, "request bound");
    assert_eq!(r.requests, 50);
    assert_eq!(r.config.duration_secs, None);

    // Request bound with an open-loop rate and a warm-up: the bound counts measured requests only.
    let r = run_args(&args(
        &pki,
        srv.addr,
        &["-c", "2", "-n", "20", "--rate", "100", "-w", "100ms"],
    ))
    .unwrap();
    assert_eq!(r.requests, 20);
}

#[test]
fn client_certificate_from_pkcs12() {
    let pki = make_pki();
    let srv = start_server(&pki, true);
    let p12 = boring::pkcs12::Pkcs12::builder()
        .build("s3cret", "client", &pki.client.key, &pki.client.cert)
        .unwrap();
    let pfx = pki.dir.join("client.pfx");
    std::fs::write(&pfx, p12.to_der().unwrap()).unwrap();
    let base = |extra: &[&str]| {
        let mut v: Vec<String> = vec![
            "certgate-loadgen".into(),
            format!("https://{}/", srv.addr),
            "--ca".into(),
            p(&pki.dir.join("ca.pem")),
            "--cert".into(),
            p(&pfx),
            "-t".into(),
            "1".into(),
            "-q".into(),
            "-c".into(),
            "2".into(),
            "-n".into(),
            "20".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let r = run_args(&base(&["--cert-password", "s3cret"])).unwrap();
    assert_clean(&r, "pfx");
    let e = run_args(&base(&["--cert-password", "wrong"])).unwrap_err();
    assert!(e.contains("wrong password"), "{e}");
}

#[test]
fn failures_are_classified() {
    let pki = make_pki();
    let srv = start_server(&pki, true);
    let a = srv.addr;

    // No client certificate against a server that requires one.
    let mut no_cert = args(&pki, a, &["-m", "handshake", "-c", "1", "-n", "5"]);
    no_cert.drain(4..8);
    let r = run_args(&no_cert).unwrap();
    assert_eq!(r.ok, 0);
    assert_eq!(
        r.errors.keys().collect::<Vec<_>>(),
        vec!["tls:certificate_required"],
        "{:?}",
        r.error_samples
    );
    let mut no_cert12 = no_cert.clone();
    no_cert12.extend(["--tls".to_string(), "1.2".to_string()]);
    let r = run_args(&no_cert12).unwrap();
    assert_eq!(r.ok, 0);
    assert!(
        r.errors.keys().all(|k| k.starts_with("tls:")),
        "{:?}",
        r.error_samples
    );

    // A server certificate from another CA.
    let other = make_pki();
    let mut wrong_ca = args(&pki, a, &["-c", "1", "-n", "3"]);
    wrong_ca[3] = p(&other.dir.join("ca.pem"));
    let r = run_args(&wrong_ca).unwrap();
    assert_eq!(r.ok, 0);
    let keys: Vec<_> = r.errors.keys().collect();
    assert_eq!(
        keys,
        vec!["tls:certificate_verify_failed"],
        "{:?}",
        r.error_samples
    );

    // Unexpected status.
    let r = run_args(&args(
        &pki,
        a,
        &["-c", "1", "-n", "10", "--expect-status", "204"],
    ))
    .unwrap();
    assert_eq!(r.ok, 0);
    assert_eq!(r.errors.get("http_status:200"), Some(&10));
    assert_eq!(r.status.get("200"), Some(&10));

    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let r = run_args(&args(&pki, dead, &["-c", "1", "-n", "3"])).unwrap();
    assert_eq!(r.errors.get("connect"), Some(&3));
    srv.stop();
}

#[test]
fn binary_writes_json() {
    let pki = make_pki();
    let srv = start_server(&pki, true);
    let mut a = args(&pki, srv.addr, &["-c", "2", "-d", "500ms", "--json", "-"]);
    a.remove(0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certgate-loadgen"))
        .args(&a)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "config",
        "duration_secs",
        "requests",
        "ok",
        "errors_total",
        "throughput_rps",
        "handshakes",
        "latency_us",
        "status",
        "errors",
        "bytes",
        "wire_bytes",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    for key in ["p50", "p90", "p99", "p99_9", "max"] {
        assert!(v["latency_us"][key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert_eq!(v["config"]["mode"], "keepalive");
    assert!(v["status"]["200"].as_u64().unwrap() > 0);
    assert_eq!(v["errors"], serde_json::json!({}));

    // Invalid options exit with status 2 and say why.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_certgate-loadgen"))
        .args(["https://127.0.0.1:1/", "--mode", "mixed"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mix"));
    srv.stop();
}

#[test]
fn idle_notices_connections_closed_during_the_hold() {
    let pki = make_pki();
    let srv = start_server(&pki, true);
    let a = args(&pki, srv.addr, &["-m", "idle", "-c", "10", "--hold", "3s"]);
    let runner = std::thread::spawn(move || run_args(&a));
    // The 10 connections open in well under a second; stopping the server closes them all.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    srv.stop();
    let r = runner.join().unwrap().unwrap();
    let idle = r.idle.as_ref().unwrap();
    assert_eq!(idle.opened, 10, "{idle:?}");
    assert_eq!(
        (idle.closed_during_hold, idle.stayed_up),
        (10, 0),
        "{idle:?}"
    );
}
