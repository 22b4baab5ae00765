//! Zero-config start: with only a state dir the engine generates a dev PKI under <state>/dev-pki/, prints a ready-to-paste `curl ` command that succeeds against its echo backend, and reuses the same dev CA on the next start.

mod support;

use std::process::Command;
use std::time::Duration;
use support::tools::{require_tool, run_with_timeout};
use support::*;

fn curl_line(engine: &Engine) -> String {
    engine
        .wait_for_line(Duration::from_secs(5), |s, l| {
            s == support::engine::Stream::Stdout && l.trim_start().starts_with("curl ")
        })
        .unwrap_or_else(|| {
            panic!("no stdout line starting with `curl ` (engine output printed below)")
        })
        .trim()
        .to_string()
}

fn run_curl_line(line: &str) {
    let out = run_with_timeout(
        {
            let mut c = Command::new("sh");
            c.arg("-c").arg(line);
            c
        },
        Duration::from_secs(20),
    );
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        out.status.success(),
        "the printed command failed ({}): {line}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    assert!(
        all.contains("GET /"),
        "echo backend answer lacks `GET /`: {line}\n{all}"
    );
    assert!(
        contains_ci(&all, "X-Client-Cert-Thumbprint"),
        "echo backend answer lacks an X-Client-Cert-Thumbprint line: {line}\n{all}"
    );
}

fn zero_config_start(io: &str) {
    require_tool("curl");
    let state = TempDir::new("zero-config");
    let ca = state.path().join("dev-pki").join("ca.pem");

    let first_ca = {
        let engine = Engine::start_bare(io, state.path());
        let dev = state.path().join("dev-pki");
        let files: Vec<_> = std::fs::read_dir(&dev)
            .unwrap_or_else(|e| panic!("{} not created: {e}", dev.display()))
            .filter_map(|e| e.ok())
            .collect();
        assert!(!files.is_empty(), "{} is empty", dev.display());
        let line = curl_line(&engine);
        run_curl_line(&line);
        std::fs::read(&ca).unwrap_or_else(|e| panic!("dev CA {} missing: {e}", ca.display()))
    };

    let engine = Engine::start_bare(io, state.path());
    let second_ca = std::fs::read(&ca).expect("dev CA after restart");
    assert_eq!(
        first_ca, second_ca,
        "the dev CA was regenerated instead of reused"
    );
    let line = curl_line(&engine);
    run_curl_line(&line);
}

io_tests!(zero_config_start);
