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
use crate::tls::certinfo::{digests, sha1_of, sha256_of, ClientCertInfo};
use crate::tls::facts::CertFacts;
use crate::trust::policy::{CompiledPolicy, Decision};
use crate::trust::{Allowlist, CertDigests, VerdictCache, VerdictKey};
use crate::trust::{IssuerKey, RevocationIndex, RevocationStatus};

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

/// The outcome of checking a connection's client certificate under one policy.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Verified; the details go to the backend.
    Verified(Arc<ClientCertInfo>),
    /// Presented but rejected.
    Failed(Reason),
    /// Rejected, but the policy's `ignore-error` forwards the request with
    /// `X-Client-Cert-Verify: FAILED:<reason>` (and no certificate details).
    FailedIgnored(Reason),
    /// No certificate presented.
    NoCertificate,
}

impl Verdict {
    /// The `X-Client-Cert-Verify` value.
    pub fn verify_header(&self) -> String {
        match self {
            Verdict::Verified(_) => "SUCCESS".into(),
            Verdict::NoCertificate => "NONE".into(),
            Verdict::Failed(r) | Verdict::FailedIgnored(r) => format!("FAILED:{}", r.as_str()),
        }
    }

    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Verified(_) => "success",
            Verdict::NoCertificate => "none",
            Verdict::Failed(r) | Verdict::FailedIgnored(r) => r.as_str(),
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
    /// Every trusted CA certificate (file bundle and store), for CRL signature checks.
    pub cas: Vec<X509>,
    /// Revoked serials per issuer, and each issuer's CRL freshness.
    pub revocation: Arc<RevocationIndex>,
    /// `CERTGATE_CRL_MISSING=allow`: a missing or stale CRL does not refuse.
    pub crl_missing_allows: bool,
    /// With `CERTGATE_CRL_FOLLOW_CDP=1`: asks the CRL updater to fetch an issuer's distribution points.
    pub cdp: Option<CdpNotify>,
}

/// Hands an issuer's CRL distribution points to the background CRL updater (never blocks).
#[derive(Clone)]
pub struct CdpNotify(pub Arc<dyn Fn(IssuerKey, Vec<String>) + Send + Sync>);

impl std::fmt::Debug for CdpNotify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CdpNotify")
    }
}

/// The leaf's revocation verdict under `trust`: `None` when not revoked or
/// not checked. Runs on a verdict-cache miss only.
fn revocation_of(trust: &Trust, leaf: &X509Ref, stats: Option<&WorkerStats>) -> Option<Reason> {
    if !trust.revocation.is_configured() {
        return None;
    }
    let Ok((issuer, serial)) = crate::tls::crl::leaf_revocation_id(leaf) else {
        return Some(Reason::Invalid);
    };
    match trust.revocation.status(&issuer, &serial, SystemTime::now()) {
        RevocationStatus::Good | RevocationStatus::NotConfigured => None,
        RevocationStatus::Revoked => Some(Reason::Revoked),
        status @ (RevocationStatus::Stale | RevocationStatus::Missing) => {
            if let Some(notify) = &trust.cdp {
                let urls = crate::tls::crl::crl_distribution_points(leaf);
                if !urls.is_empty() {
                    (notify.0)(issuer, urls);
                }
            }
            trust.revocation.log_unknown_once(&issuer, status);
            if let Some(stats) = stats {
                match trust.crl_missing_allows {
                    true => stats.crl_unknown_allowed.inc(),
                    false => stats.crl_unknown_denied.inc(),
                }
            }
            (!trust.crl_missing_allows).then_some(Reason::RevocationUnknown)
        }
    }
}

/// What is known about one presented chain under one snapshot: computed on a
/// verdict-cache miss, then shared by every policy that looks at it.
#[derive(Debug)]
pub struct CertEval {
    /// What policies match on (chain-build result, validity window, names, digests).
    pub facts: CertFacts,
    /// Its details, with the forwarded header block pre-rendered.
    pub info: Arc<ClientCertInfo>,
    /// Revocation: `None` when not revoked (or not checked), else why not good.
    pub revocation: Option<Reason>,
    /// In the thumbprint allowlist (true when there is none).
    pub allowlisted: bool,
}

/// What a connection presented: the input to every policy decision.
#[derive(Clone, Debug)]
pub enum Presented {
    /// No certificate.
    Nothing,
    /// A certificate that cannot be read (malformed, unsupported).
    Unreadable,
    /// A certificate and what is known about it.
    Cert(Arc<CertEval>),
}

impl Presented {
    /// The verdict of `policy` at `now_unix`. O(1): every input is precomputed.
    pub fn decide(&self, policy: &CompiledPolicy, now_unix: i64) -> Verdict {
        let eval = match self {
            Presented::Nothing => return Verdict::NoCertificate,
            Presented::Unreadable if policy.ignores_errors() => {
                return Verdict::FailedIgnored(Reason::Invalid)
            }
            Presented::Unreadable => return Verdict::Failed(Reason::Invalid),
            Presented::Cert(eval) => eval,
        };
        let decision = match policy.evaluate(&eval.facts, eval.revocation, now_unix) {
            Decision::Allow if !eval.allowlisted => match policy.ignores_errors() {
                true => Decision::AllowFailed(Reason::NotAllowlisted),
                false => Decision::Deny(Reason::NotAllowlisted),
            },
            d => d,
        };
        match decision {
            Decision::Allow => Verdict::Verified(Arc::clone(&eval.info)),
            Decision::Deny(r) => Verdict::Failed(r),
            Decision::AllowFailed(r) => Verdict::FailedIgnored(r),
        }
    }

    /// The end of the window in which the facts' time checks keep their
    /// result: a verified certificate's not-after.
    pub fn valid_until(&self) -> Option<SystemTime> {
        match self {
            Presented::Cert(eval) => Some(eval.info.not_after_time()),
            _ => None,
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// === the per-worker cache ===

/// Per-worker verification state, installed by each worker thread at start.
pub struct WorkerVerifier {
    cache: RefCell<VerdictCache<Arc<CertEval>>>,
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

/// Build the chain of `leaf` against `trust` (time checks left to the
/// policy) and gather what policies need, uncached.
pub fn evaluate_uncached(
    trust: &Trust,
    leaf: &X509Ref,
    chain: Option<&StackRef<X509>>,
) -> Presented {
    let Ok(d) = digests(leaf) else {
        return Presented::Unreadable;
    };
    evaluate_uncached_counted(trust, leaf, d, chain, None)
}

/// [`evaluate_uncached`] with the leaf's digests already computed: each is
/// computed once per verification, then keys the cache, feeds the policy's
/// facts and the allowlist, and goes into the forwarded headers.
fn evaluate_uncached_counted(
    trust: &Trust,
    leaf: &X509Ref,
    d: CertDigests,
    chain: Option<&StackRef<X509>>,
    stats: Option<&WorkerStats>,
) -> Presented {
    let anchored_leaf = trust.bundle.contains(&d.sha256);
    // The chain as built (leaf first), and the chain-build error if any.
    let built = trust.store.as_ref().map(|store| {
        (|| {
            let mut ctx = X509StoreContext::new()?;
            let empty;
            let presented = match chain {
                Some(c) => c,
                None => {
                    empty = boring::stack::Stack::<X509>::new()?;
                    &empty
                }
            };
            ctx.init(store, leaf, presented, |c| {
                // Dates are the policy's business (validate-not-before/-after).
                let mut flags =
                    X509VerifyFlags::from_bits_retain(boring_sys::X509_V_FLAG_NO_CHECK_TIME as _);
                if anchored_leaf {
                    flags |= X509VerifyFlags::PARTIAL_CHAIN;
                }
                c.verify_param_mut().set_flags(flags);
                c.verify_cert()?;
                let certs: Vec<X509> = c
                    .chain()
                    .map(|s| s.iter().map(|x| x.to_owned()).collect())
                    .unwrap_or_default();
                Ok((c.verify_result(), certs))
            })
        })()
    });
    let (trust_error, built) = match built {
        None => (Some(Reason::Untrusted), Vec::new()),
        Some(Ok((Ok(()), certs))) => (None, certs),
        Some(Ok((Err(e), certs))) => (Some(Reason::from_x509(e)), certs),
        Some(Err(_)) => (Some(Reason::Invalid), Vec::new()),
    };
    // The issuer: from the built chain, else (untrusted chain) nothing known.
    let issuer = built.get(1).filter(|_| built.len() > 1);
    let window: Vec<&X509Ref> = if trust_error.is_none() {
        built.iter().map(|c| c.as_ref()).collect()
    } else {
        vec![leaf]
    };
    let Ok(facts) =
        CertFacts::from_chain(leaf, d, issuer.map(|c| c.as_ref()), &window, trust_error)
    else {
        return Presented::Unreadable;
    };
    let allowlisted = match &trust.allowlist {
        Some(allow) => allow.contains(&d),
        None => true,
    };
    let Ok(info) = ClientCertInfo::from_cert(leaf, d) else {
        return Presented::Unreadable;
    };
    Presented::Cert(Arc::new(CertEval {
        facts,
        info: Arc::new(info),
        revocation: revocation_of(trust, leaf, stats),
        allowlisted,
    }))
}

/// What the peer of `ssl` presented, evaluated under `trust` through this worker's cache.
pub fn evaluate(trust: &Trust, ssl: &SslRef) -> Presented {
    let Some(leaf) = ssl.peer_certificate() else {
        return Presented::Nothing;
    };
    let chain = ssl.peer_cert_chain();
    let verifier = VERIFIER.with(|c| c.borrow().clone());
    let Some(verifier) = verifier else {
        return evaluate_uncached(trust, &leaf, chain);
    };
    let v = &*verifier;
    // A hit hashes the leaf once (SHA-256, the key); a miss adds the SHA-1
    // and hands both on, so nothing hashes the leaf again.
    let Ok(leaf_sha256) = sha256_of(&leaf) else {
        return Presented::Unreadable;
    };
    let key = VerdictKey {
        leaf_sha256,
        chain: chain_key(&v.chain_hasher, chain),
    };
    let now = Instant::now();
    if let Some(hit) = v.cache.borrow_mut().get(&key, now, trust.generation) {
        v.stats.verify_cache_hits.inc();
        return Presented::Cert(hit);
    }
    v.stats.verify_cache_misses.inc();
    let Ok(sha1) = sha1_of(&leaf) else {
        return Presented::Unreadable;
    };
    let d = CertDigests {
        sha1,
        sha256: leaf_sha256,
    };
    let presented = evaluate_uncached_counted(trust, &leaf, d, chain, Some(&v.stats));
    if let Presented::Cert(eval) = &presented {
        // Cached until the TTL, a reload (generation), or the certificate's
        // not-after, whichever comes first.
        let not_after = instant_of(eval.info.not_after_time(), now);
        v.cache
            .borrow_mut()
            .insert(key, Arc::clone(eval), now, not_after, trust.generation);
    }
    presented
}
