//! Client-initiated TLS 1.2 renegotiation (`openssl s_client`, command `R`) is refused: no second handshake, no response to a request sent after it, and the worker keeps serving new connections.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::pki::path_str;
use support::tools::require_tool;
use support::*;

fn wait_output(out: &Arc<Mutex<String>>, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
    wait_until(timeout, || pred(&out.lock().unwrap()))
}

fn renegotiation_refused(io: &str) {
    require_tool("openssl");
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

    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &engine.addr().to_string(),
            "-tls1_2",
        ])
        .args(["-servername", "localhost", "-crlf"])
        .args(["-cert", &path_str(&pki.client_ok.cert)])
        .args(["-key", &path_str(&pki.client_ok.key)])
        .args(["-cert_chain", &path_str(&pki.inter.cert)])
        .args(["-CAfile", &path_str(&pki.root.cert)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl s_client");
    let pid = child.id();
    let out = Arc::new(Mutex::new(String::new()));
    for r in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut r = r;
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
    }
    let mut stdin = child.stdin.take().unwrap();
    let kill = |child: &mut std::process::Child| {
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        let _ = child.wait();
    };

    let handshake_done = wait_output(&out, Duration::from_secs(10), |s| {
        s.contains("Verify return code")
    });
    if !handshake_done {
        kill(&mut child);
        panic!(
            "s_client handshake did not complete:\n{}",
            out.lock().unwrap()
        );
    }

    // a request before renegotiating works
    stdin
        .write_all(b"GET /before HTTP/1.1\nHost: localhost\n\n")
        .unwrap();
    stdin.flush().unwrap();
    if !wait_output(&out, Duration::from_secs(10), |s| {
        s.contains("HTTP/1.1 200")
    }) {
        kill(&mut child);
        panic!("no 200 before renegotiation:\n{}", out.lock().unwrap());
    }
    let depth0_before = out.lock().unwrap().matches("depth=0").count();

    // ask for renegotiation, then send another request on the same connection
    let _ = stdin.write_all(b"R\n");
    let _ = stdin.flush();
    std::thread::sleep(Duration::from_millis(500));
    let _ = stdin.write_all(b"GET /after HTTP/1.1\nHost: localhost\n\n");
    let _ = stdin.flush();

    // give it time to (not) answer; s_client normally exits when the engine
    // aborts the connection
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(&mut child);
    std::thread::sleep(Duration::from_millis(100));
    let output = out.lock().unwrap().clone();
    eprintln!("--- openssl s_client output ---\n{output}\n--- end ---");

    assert!(
        output.contains("RENEGOTIATING"),
        "s_client did not try to renegotiate:\n{output}"
    );
    assert_eq!(
        output.matches("HTTP/1.1 200").count(),
        1,
        "a request after the renegotiation attempt was answered:\n{output}"
    );
    assert_eq!(
        output.matches("depth=0").count(),
        depth0_before,
        "a second handshake (server certificate verified again) took place:\n{output}"
    );
    let paths: Vec<String> = backend.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        vec!["/before".to_string()],
        "backend requests after renegotiation attempt"
    );

    // the (single) worker still serves
    let c = client(&pki, Some(&pki.client_ok));
    let r = must_get(&engine, &c, "/fresh");
    assert_status(&r, 200, "fresh connection after the renegotiation attempt");
}

io_tests!(renegotiation_refused);
