//! Client-certificate verification: a verdict-cache lookup first, a chain build only on a miss.
//!
//! The order of checks for a presented certificate:
//! 1. verdict cache (per worker) keyed by the leaf's SHA-256 and the chain presented;
//! 2. on a miss, the chain is built with BoringSSL's verifier against the trust
//!    bundle (validity dates, clientAuth purpose, depth cap);
//! 3. the thumbprint allowlist, when one is configured.
//!
//! The same [`evaluate`] runs for full handshakes (inside BoringSSL's verify
//! callback) and after resumed ones, so an old ticket never skips the policy
//! in force now.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use boring::ssl::SslRef;
use boring::stack::StackRef;
use boring::x509::store::X509Store;
use boring::x509::verify::X509VerifyFlags;
use boring::x509::{X509Ref, X509StoreContext, X509VerifyError, X509};

use crate::admin::metrics::WorkerStats;
use crate::tls::certinfo::{digests, ClientCertInfo};
use crate::trust::{Allowlist, VerdictCache, VerdictKey};

/// Why a presented certificate was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The chain does not build to a trusted root.
    Untrusted,
    /// Past its not-after (or a chain certificate is).
    Expired,
    /// Before its not-before.
    NotYetValid,
    /// Self-signed and not in the trust bundle.
    SelfSigned,
    /// The leaf's extended key usage does not allow clientAuth.
    BadUsage,
    /// Longer than `CERTGATE_MAX_CHAIN_DEPTH`.
    ChainTooLong,
    /// Trusted, but its thumbprint is not in the allowlist.
    NotAllowlisted,
    /// On its issuer's CRL.
    Revoked,
    /// Its issuer's CRL was never obtained, or is stale past its grace
    /// period, and `CERTGATE_CRL_MISSING=deny`.
    RevocationUnknown,
    /// The policy lists identities and the certificate matches none of them.
    IdentityMismatch,
    /// Any other verification failure (bad signature, malformed certificate).
    Invalid,
}

impl Reason {
    /// Every reason, in metrics order.
    pub const ALL: [Reason; 11] = [
        Reason::Untrusted,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::SelfSigned,
        Reason::BadUsage,
        Reason::ChainTooLong,
        Reason::NotAllowlisted,
        Reason::Revoked,
        Reason::RevocationUnknown,
        Reason::IdentityMismatch,
        Reason::Invalid,
    ];

    /// The spelling in metrics and in `X-Client-Cert-Verify: FAILED:<reason>`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Untrusted => "untrusted",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::SelfSigned => "self_signed",
            Reason::BadUsage => "bad_usage",
            Reason::ChainTooLong => "chain_too_long",
            Reason::NotAllowlisted => "not_allowlisted",
            Reason::Revoked => "revoked",
            Reason::RevocationUnknown => "revocation_unknown",
            Reason::IdentityMismatch => "identity_mismatch",
            Reason::Invalid => "invalid",
        }
    }

    fn from_x509(e: X509VerifyError) -> Reason {
        match e {
            e if e == X509VerifyError::CERT_HAS_EXPIRED => Reason::Expired,
            e if e == X509VerifyError::CERT_NOT_YET_VALID => Reason::NotYetValid,
            e if e == X509VerifyError::DEPTH_ZERO_SELF_SIGNED_CERT
                || e == X509VerifyError::SELF_SIGNED_CERT_IN_CHAIN =>
            {
                Reason::SelfSigned
            }
            e if e == X509VerifyError::UNABLE_TO_GET_ISSUER_CERT
                || e == X509VerifyError::UNABLE_TO_GET_ISSUER_CERT_LOCALLY
                || e == X509VerifyError::UNABLE_TO_VERIFY_LEAF_SIGNATURE
                || e == X509VerifyError::CERT_UNTRUSTED =>
            {
                Reason::Untrusted
            }
            e if e == X509VerifyError::INVALID_PURPOSE => Reason::BadUsage,
            e if e == X509VerifyError::CERT_CHAIN_TOO_LONG => Reason::ChainTooLong,
            _ => Reason::Invalid,
        }
    }

    /// The TLS alert sent in `require` mode.
    pub fn alert(self) -> boring::ssl::SslAlert {
        use boring::ssl::SslAlert;
        match self {
            Reason::Expired | Reason::NotYetValid => SslAlert::CERTIFICATE_EXPIRED,
            Reason::Untrusted | Reason::SelfSigned | Reason::ChainTooLong => SslAlert::UNKNOWN_CA,
            Reason::BadUsage | Reason::NotAllowlisted | Reason::IdentityMismatch => {
                SslAlert::ACCESS_DENIED
            }
            Reason::Revoked => SslAlert::CERTIFICATE_REVOKED,
            Reason::RevocationUnknown => SslAlert::CERTIFICATE_UNKNOWN,
            Reason::Invalid => SslAlert::BAD_CERTIFICATE,
        }
    }
}

/// The outcome of checking a connection's client certificate.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Verified; the details go to the backend.
    Verified(Arc<ClientCertInfo>),
    /// Presented but rejected.
    Failed(Reason),
    /// No certificate presented.
    NoCertificate,
}

impl Verdict {
    /// The `X-Client-Cert-Verify` value (optional mode).
    pub fn verify_header(&self) -> String {
        match self {
            Verdict::Verified(_) => "SUCCESS".into(),
            Verdict::NoCertificate => "NONE".into(),
            Verdict::Failed(r) => format!("FAILED:{}", r.as_str()),
        }
    }

    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Verified(_) => "success",
            Verdict::NoCertificate => "none",
            Verdict::Failed(r) => r.as_str(),
        }
    }
}

/// The trust inputs of one snapshot generation (immutable once built).
pub struct Trust {
    /// Snapshot generation; cached verdicts of older generations are ignored.
    pub generation: u64,
    /// Roots and intermediates (verify params: depth, clientAuth purpose).
    pub store: Option<X509Store>,
    /// SHA-256 of every certificate in the bundle: a leaf found here is its own
    /// trust anchor (a self-signed client certificate the operator uploaded).
    pub bundle: std::collections::HashSet<[u8; 32]>,
    /// Thumbprint allowlist, when configured.
    pub allowlist: Option<Allowlist>,
}

// === the per-worker cache ===

/// Per-worker verification state, installed by each worker thread at start.
pub struct WorkerVerifier {
    cache: RefCell<VerdictCache<Verdict>>,
    stats: Arc<WorkerStats>,
    chain_hasher: std::collections::hash_map::RandomState,
}

thread_local! {
    static VERIFIER: RefCell<Option<Rc<WorkerVerifier>>> = const { RefCell::new(None) };
}

impl WorkerVerifier {
    /// Install this thread's verifier (each worker does, at start).
    pub fn install(capacity: usize, ttl: Duration, stats: Arc<WorkerStats>) {
        let v = WorkerVerifier {
            cache: RefCell::new(VerdictCache::new(capacity, ttl)),
            stats,
            chain_hasher: Default::default(),
        };
        VERIFIER.with(|cell| *cell.borrow_mut() = Some(Rc::new(v)));
    }
}

fn chain_key(
    hasher: &std::collections::hash_map::RandomState,
    chain: Option<&StackRef<X509>>,
) -> u64 {
    let mut h = hasher.build_hasher();
    if let Some(chain) = chain {
        for cert in chain {
            match cert.to_der() {
                Ok(der) => h.write(&der),
                Err(_) => h.write_u8(0xff),
            }
        }
    }
    h.finish()
}

fn instant_of(t: SystemTime, now: Instant) -> Option<Instant> {
    match t.duration_since(SystemTime::now()) {
        Ok(ahead) => now.checked_add(ahead),
        Err(_) => Some(now),
    }
}

/// Verify a certificate against `trust`, uncached.
pub fn verify_uncached(trust: &Trust, leaf: &X509Ref, chain: Option<&StackRef<X509>>) -> Verdict {
    let Some(store) = &trust.store else {
        return Verdict::Failed(Reason::Untrusted);
    };
    let Ok(d) = digests(leaf) else {
        return Verdict::Failed(Reason::Invalid);
    };
    let anchored_leaf = trust.bundle.contains(&d.sha256);
    let result = (|| {
        let mut ctx = X509StoreContext::new()?;
        let empty;
        let chain = match chain {
            Some(c) => c,
            None => {
                empty = boring::stack::Stack::<X509>::new()?;
                &empty
            }
        };
        ctx.init(store, leaf, chain, |c| {
            if anchored_leaf {
                c.verify_param_mut()
                    .set_flags(X509VerifyFlags::PARTIAL_CHAIN);
            }
            c.verify_cert()?;
            Ok(c.verify_result())
        })
    })();
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Verdict::Failed(Reason::from_x509(e)),
        Err(_) => return Verdict::Failed(Reason::Invalid),
    }
    if let Some(allow) = &trust.allowlist {
        if !allow.contains(&d) {
            return Verdict::Failed(Reason::NotAllowlisted);
        }
    }
    match ClientCertInfo::from_cert(leaf, d) {
        Ok(info) => Verdict::Verified(Arc::new(info)),
        Err(_) => Verdict::Failed(Reason::Invalid),
    }
}

/// The verdict for the peer of `ssl` under `trust`, through this worker's cache.
pub fn evaluate(trust: &Trust, ssl: &SslRef) -> Verdict {
    let Some(leaf) = ssl.peer_certificate() else {
        return Verdict::NoCertificate;
    };
    let chain = ssl.peer_cert_chain();
    let verifier = VERIFIER.with(|c| c.borrow().clone());
    let Some(verifier) = verifier else {
        return verify_uncached(trust, &leaf, chain);
    };
    let v = &*verifier;
    let Ok(sha256) = leaf.digest(boring::hash::MessageDigest::sha256()) else {
        return Verdict::Failed(Reason::Invalid);
    };
    let mut key = VerdictKey {
        leaf_sha256: [0; 32],
        chain: chain_key(&v.chain_hasher, chain),
    };
    key.leaf_sha256.copy_from_slice(&sha256);
    let now = Instant::now();
    if let Some(hit) = v.cache.borrow_mut().get(&key, now, trust.generation) {
        v.stats.verify_cache_hits.inc();
        return hit;
    }
    v.stats.verify_cache_misses.inc();
    let verdict = verify_uncached(trust, &leaf, chain);
    let not_after = match &verdict {
        Verdict::Verified(info) => instant_of(info.not_after_time(), now),
        _ => None,
    };
    v.cache
        .borrow_mut()
        .insert(key, verdict.clone(), now, not_after, trust.generation);
    verdict
}
