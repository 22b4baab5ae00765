//! Request bodies (64 KiB, 1 MiB, 32 MiB; Content-Length and chunked with varying chunk sizes) reach the backend byte-identical, and large responses (8 MiB, Content-Length and chunked) reach the client byte-identical.

mod support;

use support::backend::big_body;
use support::*;

const SIZES: [usize; 3] = [64 * 1024, 1 << 20, 32 << 20];

fn setup(io: &str) -> (TestPki, Backend, Engine) {
    let pki = TestPki::new();
    let backend = Backend::start();
    let engine = start_engine(
        io,
        &pki,
        &backend.url(),
        &[("CERTGATE_CLIENT_CERT", "request".into())],
    );
    (pki, backend, engine)
}

fn check_recorded(backend: &Backend, path: &str, data: &[u8]) {
    let rec = backend.last();
    assert_eq!(rec.path, path);
    assert_eq!(
        rec.body_len,
        data.len() as u64,
        "{path}: body length at the backend"
    );
    assert_eq!(
        rec.body_sha256,
        sha256_hex(data),
        "{path}: body differs at the backend"
    );
}

fn content_length_uploads(io: &str) {
    let (pki, backend, engine) = setup(io);
    let client = client(&pki, Some(&pki.client_ok));
    let mut c = client.connect(engine.addr(), None).expect("connect");
    for (i, &size) in SIZES.iter().enumerate() {
        let data = random_bytes(size, 100 + i as u64);
        let path = format!("/upload/cl/{size}");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
        );
        c.send(head.as_bytes()).unwrap();
        for chunk in data.chunks(64 * 1024) {
            c.send(chunk)
                .unwrap_or_else(|e| panic!("{path}: write failed: {e}"));
        }
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("{path}: no response: {e}"));
        assert_status(&r, 200, &path);
        check_recorded(&backend, &path, &data);
    }
}

fn chunked_uploads(io: &str) {
    let (pki, backend, engine) = setup(io);
    let client = client(&pki, Some(&pki.client_ok));
    let mut c = client.connect(engine.addr(), None).expect("connect");
    let sizes = [1usize, 17, 4096, 8191, 65_536, 100_000, 1, 300_001, 2 << 20];
    for (i, &size) in SIZES.iter().enumerate() {
        let data = random_bytes(size, 200 + i as u64);
        let path = format!("/upload/chunked/{size}");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        c.send(head.as_bytes()).unwrap();
        let mut off = 0;
        let mut k = 0;
        let mut out = Vec::with_capacity(256 * 1024);
        while off < data.len() {
            let n = sizes[k % sizes.len()].min(data.len() - off);
            k += 1;
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend_from_slice(&data[off..off + n]);
            out.extend_from_slice(b"\r\n");
            off += n;
            if out.len() >= 128 * 1024 {
                c.send(&out)
                    .unwrap_or_else(|e| panic!("{path}: write failed: {e}"));
                out.clear();
            }
        }
        out.extend_from_slice(b"0\r\n\r\n");
        c.send(&out).unwrap();
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("{path}: no response: {e}"));
        assert_status(&r, 200, &path);
        check_recorded(&backend, &path, &data);
    }
}

fn large_responses(io: &str) {
    let (pki, _backend, engine) = setup(io);
    let client = client(&pki, Some(&pki.client_ok));
    let n = 8 << 20;
    let want = big_body(n);
    let want_hash = sha256_hex(&want);
    let mut c = client.connect(engine.addr(), None).expect("connect");
    for path in [
        format!("/big/{n}"),
        format!("/bigchunked/{n}"),
        format!("/big/{n}"),
    ] {
        let r = c.get(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_status(&r, 200, &path);
        assert_eq!(r.body.len(), n, "{path}: response length");
        assert_eq!(
            sha256_hex(&r.body),
            want_hash,
            "{path}: response body differs"
        );
    }
    // the connection is still usable after the big responses
    let r = c.get("/small").expect("small after big");
    assert_status(&r, 200, "small request after large responses");
    assert_eq!(r.body, b"ok");
}

io_tests!(content_length_uploads, chunked_uploads, large_responses);
