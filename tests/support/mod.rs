//! Shared helpers for the certgate integration tests: a test PKI, the engine
//! process, a TLS/HTTP client, a recording backend, the admin client and a few
//! small utilities. Every test file includes this with `mod support;`.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod admin;
pub mod backend;
pub mod client;
pub mod engine;
pub mod pki;
pub mod tools;

pub use admin::{admin_get, admin_post, admin_send, metric, metric_opt, wait_metric_above};
pub use backend::{unused_port, Backend, Recorded};
pub use client::{raw_connect, HttpConn, Identity, Response, TlsClient, TlsConn, TlsVersion};
pub use engine::{block_io_uring, Engine};
pub use pki::TestPki;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The io variants every engine-facing test runs on: io_uring with every fast
/// path on, io_uring with every fast path off, and epoll.
pub const IO_BACKENDS: [&str; 3] = ["uring", "uring-plain", "epoll"];

/// Generates one `#[test]` per io variant for each named function
/// `fn name(io: &str)`: `name::uring`, `name::uring_plain` and `name::epoll`,
/// so a failure names the variant.
macro_rules! io_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn uring() {
                    super::$name("uring")
                }
                #[test]
                fn uring_plain() {
                    super::$name("uring-plain")
                }
                #[test]
                fn epoll() {
                    super::$name("epoll")
                }
            }
        )+
    };
}
pub(crate) use io_tests;

/// Runs `f` once per io backend (for helpers that want a loop instead of the macro).
pub fn for_each_io(mut f: impl FnMut(&str)) {
    for io in IO_BACKENDS {
        f(io);
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory under the system temp dir, unique per process/counter/time,
/// removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "certgate-test-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes `contents` to `path` atomically (temp file + rename), so a reloading
/// engine never reads a half-written file.
pub fn write_atomic(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", COUNTER.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&tmp, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("cannot rename to {}: {e}", path.display()));
}

/// Fast deterministic pseudo-random bytes (xorshift64*).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let v = self.next_u64().to_le_bytes();
            let n = rest.len();
            rest.copy_from_slice(&v[..n]);
        }
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    XorShift::new(seed).fill(&mut v);
    v
}

/// SHA-256 as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(boring::hash::hash(boring::hash::MessageDigest::sha256(), data).unwrap())
}

/// Streaming SHA-256.
pub struct Sha256(boring::hash::Hasher);

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256(boring::hash::Hasher::new(boring::hash::MessageDigest::sha256()).unwrap())
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data).unwrap();
    }
    pub fn finish_hex(mut self) -> String {
        hex::encode(self.0.finish().unwrap())
    }
}

/// Polls `cond` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Decodes `%XX` escapes (and leaves everything else alone; `+` is kept as is).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let hexpair = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hexpair, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Parses an RFC 3339 UTC timestamp `YYYY-MM-DDTHH:MM:SS[.frac]Z` to Unix seconds.
pub fn parse_rfc3339_utc(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once(['T', 't'])?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let time = time.split('.').next()?;
    let mut t = time.split(':');
    let hh: i64 = t.next()?.parse().ok()?;
    let mm: i64 = t.next()?.parse().ok()?;
    let ss: i64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // days from civil (Howard Hinnant)
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Unix seconds of an ASN.1 time.
pub fn asn1_to_unix(t: &boring::asn1::Asn1TimeRef) -> i64 {
    let epoch = boring::asn1::Asn1Time::from_unix(0).unwrap();
    let d = epoch.diff(t).unwrap();
    d.days as i64 * 86_400 + d.secs as i64
}

/// Case-insensitive "contains".
pub fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack
        .to_ascii_lowercase()
        .contains(&needle.to_ascii_lowercase())
}

/// Starts the engine with the test PKI's server identity and client CA
/// bundle, `CERTGATE_BACKEND=backend_url`, plus `extra` (which may override).
pub fn start_engine(
    io: &str,
    pki: &TestPki,
    backend_url: &str,
    extra: &[(&str, String)],
) -> Engine {
    let mut vars = pki.tls_vars();
    vars.push(("CERTGATE_BACKEND", backend_url.to_string()));
    vars.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    Engine::start(&vars, io)
}

/// A TLS client trusting the test root, presenting `cert` (leaf + chain) if given.
pub fn client(pki: &TestPki, cert: Option<&pki::CertFiles>) -> TlsClient {
    let id = cert.map(|c| c.identity());
    TlsClient::new(&pki.root_x509(), id.as_ref(), None)
}

/// Connects, sends `GET path`, returns the response; panics with context on failure.
#[track_caller]
pub fn must_get(engine: &Engine, client: &TlsClient, path: &str) -> Response {
    let mut c = match client.connect(engine.addr(), None) {
        Ok(c) => c,
        Err(e) => panic!("GET {path}: connect to engine (io={}): {e}", engine.io()),
    };
    match c.get(path) {
        Ok(r) => r,
        Err(e) => panic!("GET {path} (io={}): no response: {e}", engine.io()),
    }
}

/// Asserts a response status, showing the body on mismatch.
#[track_caller]
pub fn assert_status(r: &Response, want: u16, what: &str) {
    assert_eq!(
        r.status,
        want,
        "{what}: expected {want}, got {} {}; headers {:?}; body {:?}",
        r.status,
        r.reason,
        r.headers,
        String::from_utf8_lossy(&r.body[..r.body.len().min(500)])
    );
}
