//! Shared fixtures for the benchmarks: key material, certificate chains, a trust
//! snapshot built the way the engine builds it, typical requests, and the
//! per-handshake public-key operations measured by `benches/crypto_floor.rs` and
//! the `crypto_floor` binary.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boring::stack::Stack;
use boring::x509::X509;
use certgate::tls::pki::{issue, self_signed, CertSpec, Issued, KeyKind, Usage};
use certgate::tls::verify::{CertEval, Trust};
use certgate::trust::{VerdictCache, VerdictKey};

pub mod crypto;

/// Deterministic pseudo-random 64-bit values (splitmix64), so runs compare.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A random-looking 32-byte value (stands for a SHA-256 thumbprint).
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }

    /// A random-looking 20-byte value (stands for a SHA-1 thumbprint).
    pub fn bytes20(&mut self) -> [u8; 20] {
        let b = self.bytes32();
        let mut out = [0u8; 20];
        out.copy_from_slice(&b[..20]);
        out
    }
}

/// A client certificate chain root → intermediate → leaf, as a client presents it.
pub struct Chain {
    /// Self-signed root (the operator's uploaded trust anchor).
    pub root: Issued,
    /// Intermediate CA, signed by the root; sent by the client with its leaf.
    pub intermediate: Issued,
    /// Client leaf (clientAuth EKU, a DNS and a SPIFFE URI SAN, organisation).
    pub leaf: Issued,
    /// What the client sends after its leaf: the intermediate.
    pub presented: Stack<X509>,
}

impl Chain {
    /// Generates a fresh chain whose certificates all use `key`.
    ///
    /// # Panics
    /// If BoringSSL cannot generate keys or sign (never in practice).
    pub fn new(key: KeyKind) -> Chain {
        let mut root_spec = CertSpec::new("certgate bench root CA", Usage::Ca);
        root_spec.organization = Some("certgate bench".into());
        root_spec.key = key;
        let root = self_signed(&root_spec).expect("root");

        let mut int_spec = CertSpec::new("certgate bench issuing CA 1", Usage::Ca);
        int_spec.organization = Some("certgate bench".into());
        int_spec.key = key;
        let intermediate = issue(&int_spec, &root).expect("intermediate");

        let mut leaf_spec = CertSpec::new("payments-service.prod.example.com", Usage::Client);
        leaf_spec.organization = Some("Example Payments Ltd".into());
        leaf_spec.dns_names = vec!["payments-service.prod.example.com".into()];
        leaf_spec.uris = vec!["spiffe://prod.example.com/ns/payments/sa/api".into()];
        leaf_spec.key = key;
        let mut leaf = issue(&leaf_spec, &intermediate).expect("leaf");

        // Certificates as the server holds them: parsed from the DER received in
        // the handshake (BoringSSL keeps the received encoding; a freshly built
        // certificate would be re-encoded on every `to_der`/`digest`).
        let mut intermediate = intermediate;
        intermediate.cert = from_wire(&intermediate.cert);
        leaf.cert = from_wire(&leaf.cert);

        let mut presented = Stack::new().expect("stack");
        presented
            .push(intermediate.cert.clone())
            .expect("stack push");
        Chain {
            root,
            intermediate,
            leaf,
            presented,
        }
    }
}

/// `cert` re-parsed from its DER encoding, as a peer's certificate would be.
fn from_wire(cert: &X509) -> X509 {
    X509::from_der(&cert.to_der().expect("DER")).expect("parse DER")
}

/// A scratch directory removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// Creates a fresh directory under the system temp dir.
    ///
    /// # Panics
    /// If the directory cannot be created.
    pub fn new(tag: &str) -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "certgate-bench-{tag}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        ScratchDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The engine's trust snapshot for `chain` (its root as the client CA bundle, no
/// allowlist), built by the engine's own `build_snapshot` from PEM files, so the
/// verifier has the production settings (clientAuth purpose, depth limit).
///
/// # Panics
/// If the files cannot be written or the engine rejects them.
pub fn engine_trust(chain: &Chain) -> Arc<Trust> {
    let dir = ScratchDir::new("trust");
    let server_spec = CertSpec::new("localhost", Usage::Server);
    let server = issue(&server_spec, &chain.root).expect("server cert");
    let (cert, key, ca) = (
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
        dir.path().join("client-ca.pem"),
    );
    server.write_pem(&cert, &key).expect("write server PEM");
    std::fs::write(&ca, chain.root.cert_pem()).expect("write CA PEM");

    let vars = [
        ("CERTGATE_TLS_CERT", cert.display().to_string()),
        ("CERTGATE_TLS_KEY", key.display().to_string()),
        ("CERTGATE_CLIENT_CA", ca.display().to_string()),
        ("CERTGATE_CLIENT_CERT", "require".to_owned()),
        ("CERTGATE_BACKEND", "http://127.0.0.1:9".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let config = certgate::config::Config::from_vars(vars).expect("bench config");
    let files = config.tls.clone().expect("TLS files configured");
    let sources = certgate::tls::context::SnapshotSources::single_host(
        &files,
        config.client_cert,
        "127.0.0.1:9".parse().expect("address"),
    );
    let tickets = certgate::tls::tickets::TicketKeys::new();
    let snapshot =
        certgate::tls::context::build_snapshot(&config, &sources, 1, &tickets).expect("snapshot");
    snapshot.trust
}

/// The state a worker keeps for the verdict-cache path (mirrors the engine's
/// private `WorkerVerifier`: the cache and the keyed hasher of presented chains).
pub struct ReturningClient {
    /// The per-worker verdict cache.
    pub cache: VerdictCache<Arc<CertEval>>,
    /// Keyed hasher for the presented intermediates.
    pub chain_hasher: std::collections::hash_map::RandomState,
}

impl ReturningClient {
    /// An empty cache with the engine's defaults (65 536 entries, 300 s).
    pub fn new() -> ReturningClient {
        ReturningClient {
            cache: VerdictCache::new(65_536, Duration::from_secs(300)),
            chain_hasher: Default::default(),
        }
    }

    /// The cache key of a presented leaf + chain, computed as the engine's
    /// `tls::verify::evaluate` does: SHA-256 of the leaf DER, and a keyed hash
    /// of the DER of each presented chain certificate.
    ///
    /// # Panics
    /// If BoringSSL cannot hash (never in practice).
    pub fn key(&self, leaf: &boring::x509::X509Ref, chain: Option<&Stack<X509>>) -> VerdictKey {
        let sha256 = leaf
            .digest(boring::hash::MessageDigest::sha256())
            .expect("sha256");
        let mut h = self.chain_hasher.build_hasher();
        if let Some(chain) = chain {
            for cert in chain {
                match cert.to_der() {
                    Ok(der) => h.write(&der),
                    Err(_) => h.write_u8(0xff),
                }
            }
        }
        let mut key = VerdictKey {
            leaf_sha256: [0; 32],
            chain: h.finish(),
        };
        key.leaf_sha256.copy_from_slice(&sha256);
        key
    }

    /// The hit path of `evaluate`: key, clock read, cache lookup (the policy's
    /// decision comes after, see the `policy` bench).
    pub fn check(
        &mut self,
        leaf: &boring::x509::X509Ref,
        chain: Option<&Stack<X509>>,
        generation: u64,
    ) -> Option<Arc<CertEval>> {
        let key = self.key(leaf, chain);
        self.cache.get(&key, Instant::now(), generation)
    }
}

impl Default for ReturningClient {
    fn default() -> Self {
        ReturningClient::new()
    }
}

/// A typical API GET of about 400 bytes, as a browser-less client (SDK) sends it.
pub const TYPICAL_GET: &[u8] = b"GET /v1/accounts/8c1f2a7e-4b1d-4c55-9a7e-0f3b6d2c9e11/transactions?limit=50&cursor=eyJvZmZzZXQiOjUwfQ HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: example-sdk-go/2.14.1 (linux; amd64)\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip\r\n\
Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJwYXltZW50cyJ9.c2lnbmF0dXJl\r\n\
X-Request-Id: 3f0c9a1e-77b2-4e8a-bb0c-5d1e2f3a4b5c\r\n\
Connection: keep-alive\r\n\
\r\n";

/// A request with 20 header fields (a browser behind a CDN, plus tracing headers).
pub const TWENTY_HEADERS: &[u8] = b"POST /v2/orders HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Content-Type: application/json\r\n\
Content-Length: 128\r\n\
Origin: https://app.example.com\r\n\
Referer: https://app.example.com/checkout\r\n\
Cookie: session=4f1c2d3e5a6b7c8d9e0f; theme=dark; consent=1\r\n\
Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjaGVja291dCJ9.c2lnbmF0dXJl\r\n\
X-Request-Id: 9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4\r\n\
Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
Tracestate: vendor=t61rcWkgMzE\r\n\
X-Forwarded-For: 198.51.100.23\r\n\
X-Forwarded-Proto: https\r\n\
Cache-Control: no-cache\r\n\
Pragma: no-cache\r\n\
Sec-Fetch-Mode: cors\r\n\
Connection: keep-alive\r\n\
\r\n";

/// The engine's default `CERTGATE_MAX_HEADER_BYTES`.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_advertised_shape() {
        assert!(
            (380..=420).contains(&TYPICAL_GET.len()),
            "{}",
            TYPICAL_GET.len()
        );
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(TWENTY_HEADERS).unwrap().is_complete());
        assert_eq!(req.headers.len(), 20);
    }

    #[test]
    fn returning_client_hits_after_insert() {
        let chain = Chain::new(KeyKind::EcdsaP256);
        let trust = engine_trust(&chain);
        let verdict = match certgate::tls::verify::evaluate_uncached(
            &trust,
            &chain.leaf.cert,
            Some(&chain.presented),
        ) {
            certgate::tls::verify::Presented::Cert(eval) if eval.facts.trust_error.is_none() => {
                eval
            }
            other => panic!("not trusted: {other:?}"),
        };
        let mut rc = ReturningClient::new();
        let key = rc.key(&chain.leaf.cert, Some(&chain.presented));
        let now = Instant::now();
        rc.cache.insert(key, verdict, now, None, trust.generation);
        assert!(rc
            .check(&chain.leaf.cert, Some(&chain.presented), trust.generation)
            .is_some());
    }
}
