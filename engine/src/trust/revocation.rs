//! The revocation index: "is (issuer, serial) revoked?" in one hash lookup, plus the
//! freshness of each issuer's CRL. Immutable once built; the CRL updater builds a new
//! one off the worker threads and the engine publishes it in its snapshot.
//!
//! # Keys
//!
//! An issuer is named by [`IssuerKey`], the SHA-256 of the DER of its X.509 Name (a
//! certificate's issuer field, its CA's subject field and the CRL's issuer field are the
//! same bytes). A serial number is compared as big-endian magnitude bytes with leading
//! zero bytes stripped ([`normalize_serial`]).
//!
//! The revoked set holds one 128-bit key per entry: a keyed hash of (issuer key ‖
//! serial) made of two SipHash-1-3 values under independent secret random keys
//! ([`SerialHasher`]), in a `HashSet<u128>` whose hasher passes the key through. A
//! lookup is one hash computation and one probe. Two different (issuer, serial) pairs
//! share a key with probability 2⁻¹²⁸, so with n revoked entries a lookup of a good
//! certificate is wrongly reported revoked with probability at most n·2⁻¹²⁸
//! (≈ 3·10⁻³³ for n = 1,000,000); the keys are secret, so a client cannot aim for a
//! collision.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// SHA-256 of the DER encoding of an issuer's X.509 Name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IssuerKey(pub [u8; 32]);

impl fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuerKey({})", hex::encode(&self.0[..8]))
    }
}

impl fmt::Display for IssuerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A serial number as compared by the index: the big-endian magnitude without leading
/// zero bytes (zero is the empty slice). This is what BoringSSL's
/// `serial_number().to_bn()?.to_vec()` gives, and what a CRL entry's positive DER INTEGER
/// content becomes once its sign byte is stripped (`tls::crl` converts CRL serials).
pub fn normalize_serial(serial: &[u8]) -> &[u8] {
    let start = serial.iter().position(|&b| b != 0).unwrap_or(serial.len());
    &serial[start..]
}

// === impl SerialHasher ===

/// The keyed 128-bit hash of (issuer, serial) behind the index. Each updater holds one
/// for its lifetime so per-CRL key lists can be merged into new indexes without
/// re-parsing; its keys are random per process.
#[derive(Clone)]
pub struct SerialHasher {
    high: RandomState,
    low: RandomState,
}

impl Default for SerialHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SerialHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SerialHasher(..)")
    }
}

impl SerialHasher {
    /// A hasher with fresh random keys.
    pub fn new() -> Self {
        SerialHasher {
            high: RandomState::new(),
            low: RandomState::new(),
        }
    }

    /// The index key of `serial` (any spelling [`normalize_serial`] accepts) under `issuer`.
    #[inline]
    pub fn key(&self, issuer: &IssuerKey, serial: &[u8]) -> u128 {
        let serial = normalize_serial(serial);
        let one = |state: &RandomState| {
            let mut h = state.build_hasher();
            h.write(&issuer.0);
            h.write(serial);
            // Length last, so (issuer, serial) boundaries cannot shift.
            h.write_usize(serial.len());
            h.finish()
        };
        (u128::from(one(&self.high)) << 64) | u128::from(one(&self.low))
    }
}

/// Passes a `u128` key's low 64 bits through as its hash (the key is already uniform).
#[derive(Default)]
pub struct KeyPassthrough(u64);

impl Hasher for KeyPassthrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if a non-u128 key were hashed; fold it in rather than drop it.
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }

    fn write_u128(&mut self, i: u128) {
        self.0 = i as u64;
    }
}

type KeySet = HashSet<u128, BuildHasherDefault<KeyPassthrough>>;
/// Issuer keys are SHA-256 outputs already: folded, not hashed again.
type IssuerMap = HashMap<IssuerKey, IssuerCrl, BuildHasherDefault<KeyPassthrough>>;

// === RevocationStatus ===

/// What the index says about a leaf certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationStatus {
    /// Its issuer's CRL is in force and does not list it.
    Good,
    /// Its issuer's CRL lists it.
    Revoked,
    /// Its issuer's CRL is past nextUpdate + grace (and does not list it).
    Stale,
    /// Sources are configured, but no CRL of its issuer is in force.
    Missing,
    /// No CRL source is configured: revocation is not checked.
    NotConfigured,
}

impl RevocationStatus {
    /// Lower-case name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Revoked => "revoked",
            Self::Stale => "stale",
            Self::Missing => "missing",
            Self::NotConfigured => "not_configured",
        }
    }
}

/// The CRL in force for one issuer, as the index needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerCrl {
    /// The issuer, readable (RFC 4514-like, for logs and `GET /crls`).
    pub issuer_name: String,
    /// Where the CRL in force came from (file path or URL).
    pub source: String,
    /// Its thisUpdate.
    pub this_update: SystemTime,
    /// Its nextUpdate (`None`: the CRL gave none; it never goes stale).
    pub next_update: Option<SystemTime>,
    /// Number of revoked entries.
    pub entries: usize,
}

// === impl RevocationIndex ===

/// The immutable revocation index published to the workers.
pub struct RevocationIndex {
    revoked: KeySet,
    hasher: SerialHasher,
    issuers: IssuerMap,
    configured: bool,
    grace: Duration,
    logged: Arc<Mutex<HashSet<IssuerKey>>>,
}

impl fmt::Debug for RevocationIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationIndex")
            .field("entries", &self.revoked.len())
            .field("issuers", &self.issuers.len())
            .field("configured", &self.configured)
            .field("grace", &self.grace)
            .finish()
    }
}

impl RevocationIndex {
    /// The index of a deployment without CRL sources: every status is `NotConfigured`.
    pub fn not_configured() -> Self {
        RevocationIndex {
            revoked: KeySet::default(),
            hasher: SerialHasher::new(),
            issuers: IssuerMap::default(),
            configured: false,
            grace: Duration::ZERO,
            logged: Arc::default(),
        }
    }

    /// Whether `serial` (see [`normalize_serial`]) is on `issuer`'s CRL in force: one hash
    /// lookup. False when no CRL of that issuer is in force.
    #[inline]
    pub fn is_revoked(&self, issuer: &IssuerKey, serial: &[u8]) -> bool {
        self.revoked.contains(&self.hasher.key(issuer, serial))
    }

    /// The revocation status of the certificate `serial` issued by `issuer` at `now`.
    ///
    /// `NotConfigured` without sources; `Missing` without a CRL in force for `issuer`;
    /// `Revoked` when listed (even by a stale CRL); `Stale` when `now` is past the CRL's
    /// nextUpdate + grace; otherwise `Good`.
    pub fn status(&self, issuer: &IssuerKey, serial: &[u8], now: SystemTime) -> RevocationStatus {
        if !self.configured {
            return RevocationStatus::NotConfigured;
        }
        let Some(crl) = self.issuers.get(issuer) else {
            return RevocationStatus::Missing;
        };
        if self.is_revoked(issuer, serial) {
            return RevocationStatus::Revoked;
        }
        match crl.next_update.and_then(|n| n.checked_add(self.grace)) {
            Some(limit) if now > limit => RevocationStatus::Stale,
            _ => RevocationStatus::Good,
        }
    }

    /// Whether any CRL source is configured.
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// Grace after nextUpdate during which a CRL stays in force.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Total revoked entries over all issuers.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// True when no entry is indexed.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// The CRL in force for `issuer`, if any.
    pub fn issuer(&self, issuer: &IssuerKey) -> Option<&IssuerCrl> {
        self.issuers.get(issuer)
    }

    /// Every issuer with a CRL in force.
    pub fn issuers(&self) -> impl Iterator<Item = (&IssuerKey, &IssuerCrl)> {
        self.issuers.iter()
    }

    /// Bytes held by the revoked set's table (an estimate from its capacity: 16-byte keys
    /// plus one control byte per bucket).
    pub fn memory_bytes(&self) -> usize {
        // hashbrown: buckets = next power of two ≥ capacity·8/7.
        let buckets = (self.revoked.capacity() * 8 / 7).next_power_of_two().max(1);
        buckets * (std::mem::size_of::<u128>() + 1)
    }

    /// Logs a `Stale` or `Missing` verdict for `issuer` the first time it happens (until
    /// that issuer's CRL is next brought in force); returns whether it logged. For the
    /// verification slow path only: it takes a lock.
    pub fn log_unknown_once(&self, issuer: &IssuerKey, status: RevocationStatus) -> bool {
        let first = match self.logged.lock() {
            Ok(mut set) => set.insert(*issuer),
            Err(poisoned) => poisoned.into_inner().insert(*issuer),
        };
        if first {
            match self.issuers.get(issuer) {
                Some(crl) => tracing::warn!(
                    issuer = %crl.issuer_name,
                    source = %crl.source,
                    status = status.as_str(),
                    next_update = ?crl.next_update.map(humantime::format_rfc3339_seconds),
                    "revocation status unknown for this issuer: its CRL is past nextUpdate + grace"
                ),
                None => tracing::warn!(
                    issuer_key = %issuer,
                    status = status.as_str(),
                    "revocation status unknown for this issuer: no CRL of it is in force"
                ),
            }
        }
        first
    }
}

// === impl IndexBuilder ===

/// Collects per-issuer key lists into a [`RevocationIndex`].
pub struct IndexBuilder {
    hasher: SerialHasher,
    grace: Duration,
    logged: Arc<Mutex<HashSet<IssuerKey>>>,
    parts: Vec<(IssuerKey, IssuerCrl, Arc<[u128]>)>,
}

impl IndexBuilder {
    /// A builder for indexes whose keys come from `hasher`. `logged` is the
    /// "already logged" set shared by successive indexes (see
    /// [`RevocationIndex::log_unknown_once`]).
    pub fn new(
        hasher: SerialHasher,
        grace: Duration,
        logged: Arc<Mutex<HashSet<IssuerKey>>>,
    ) -> Self {
        IndexBuilder {
            hasher,
            grace,
            logged,
            parts: Vec::new(),
        }
    }

    /// Adds `issuer`'s CRL in force with its entries' keys (made by the same hasher).
    /// A second CRL for the same issuer replaces the first.
    pub fn add(&mut self, issuer: IssuerKey, info: IssuerCrl, keys: Arc<[u128]>) {
        self.parts.retain(|(k, _, _)| *k != issuer);
        self.parts.push((issuer, info, keys));
    }

    /// The index (sources configured).
    pub fn build(self) -> RevocationIndex {
        let total = self.parts.iter().map(|(_, _, keys)| keys.len()).sum();
        let mut revoked = KeySet::with_capacity_and_hasher(total, Default::default());
        let mut issuers = IssuerMap::with_capacity_and_hasher(self.parts.len(), Default::default());
        for (issuer, info, keys) in self.parts {
            revoked.extend(keys.iter().copied());
            issuers.insert(issuer, info);
        }
        RevocationIndex {
            revoked,
            hasher: self.hasher,
            issuers,
            configured: true,
            grace: self.grace,
            logged: self.logged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn issuer(b: u8) -> IssuerKey {
        IssuerKey([b; 32])
    }

    fn info(next_update: Option<SystemTime>, entries: usize) -> IssuerCrl {
        IssuerCrl {
            issuer_name: "CN=Test CA".into(),
            source: "/tmp/test.crl".into(),
            this_update: SystemTime::UNIX_EPOCH,
            next_update,
            entries,
        }
    }

    fn index_with(
        grace: Duration,
        next_update: Option<SystemTime>,
        serials: &[&[u8]],
    ) -> RevocationIndex {
        let hasher = SerialHasher::new();
        let keys: Arc<[u128]> = serials.iter().map(|s| hasher.key(&issuer(1), s)).collect();
        let mut b = IndexBuilder::new(hasher, grace, Arc::default());
        b.add(issuer(1), info(next_update, serials.len()), keys);
        b.build()
    }

    #[test]
    fn serial_normalisation() {
        assert_eq!(normalize_serial(&[0, 0, 1, 2]), &[1, 2]);
        assert_eq!(normalize_serial(&[0x00, 0x80]), &[0x80]);
        assert_eq!(normalize_serial(&[0x80, 0x00]), &[0x80, 0x00]);
        assert_eq!(normalize_serial(&[0x7f]), &[0x7f]);
        assert_eq!(normalize_serial(&[0]), &[] as &[u8]);
        assert_eq!(normalize_serial(&[]), &[] as &[u8]);
        let h = SerialHasher::new();
        let i = issuer(7);
        assert_eq!(h.key(&i, &[0, 0x80, 1]), h.key(&i, &[0x80, 1]));
        assert_ne!(h.key(&i, &[0x80, 1]), h.key(&i, &[0x80, 2]));
        assert_ne!(h.key(&i, &[1]), h.key(&issuer(8), &[1]));
    }

    #[test]
    fn revoked_listed_and_others_good() {
        let now = SystemTime::now();
        let idx = index_with(HOUR, Some(now + HOUR), &[&[1, 2, 3], &[0x00, 0x99]]);
        assert!(idx.is_revoked(&issuer(1), &[1, 2, 3]));
        assert!(idx.is_revoked(&issuer(1), &[0x99]), "leading zero stripped");
        assert!(!idx.is_revoked(&issuer(1), &[1, 2, 4]));
        assert!(!idx.is_revoked(&issuer(2), &[1, 2, 3]), "other issuer");
        assert_eq!(
            idx.status(&issuer(1), &[1, 2, 3], now),
            RevocationStatus::Revoked
        );
        assert_eq!(idx.status(&issuer(1), &[5], now), RevocationStatus::Good);
        assert_eq!(idx.status(&issuer(2), &[5], now), RevocationStatus::Missing);
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn stale_after_next_update_plus_grace_only() {
        let next = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let idx = index_with(HOUR, Some(next), &[&[9]]);
        let status = |t| idx.status(&issuer(1), &[1], t);
        assert_eq!(
            status(next - Duration::from_secs(1)),
            RevocationStatus::Good
        );
        assert_eq!(
            status(next + HOUR),
            RevocationStatus::Good,
            "at the boundary"
        );
        assert_eq!(
            status(next + HOUR + Duration::from_secs(1)),
            RevocationStatus::Stale
        );
        // A revoked serial stays revoked on a stale CRL.
        assert_eq!(
            idx.status(&issuer(1), &[9], next + 10 * HOUR),
            RevocationStatus::Revoked
        );
        // Without nextUpdate a CRL never goes stale.
        let forever = index_with(Duration::ZERO, None, &[]);
        assert_eq!(
            forever.status(&issuer(1), &[1], SystemTime::now() + 1000 * HOUR),
            RevocationStatus::Good
        );
    }

    #[test]
    fn not_configured_says_so_for_everyone() {
        let idx = RevocationIndex::not_configured();
        assert!(!idx.is_configured());
        assert_eq!(
            idx.status(&issuer(1), &[1], SystemTime::now()),
            RevocationStatus::NotConfigured
        );
        // Configured but empty: Missing.
        let empty = IndexBuilder::new(SerialHasher::new(), HOUR, Arc::default()).build();
        assert_eq!(
            empty.status(&issuer(1), &[1], SystemTime::now()),
            RevocationStatus::Missing
        );
    }

    #[test]
    fn later_add_for_same_issuer_replaces() {
        let hasher = SerialHasher::new();
        let mut b = IndexBuilder::new(hasher.clone(), HOUR, Arc::default());
        b.add(
            issuer(1),
            info(None, 1),
            Arc::from([hasher.key(&issuer(1), &[1])]),
        );
        b.add(
            issuer(1),
            info(None, 1),
            Arc::from([hasher.key(&issuer(1), &[2])]),
        );
        let idx = b.build();
        assert!(!idx.is_revoked(&issuer(1), &[1]));
        assert!(idx.is_revoked(&issuer(1), &[2]));
    }

    #[test]
    fn unknown_logged_once_per_issuer_across_indexes() {
        let logged: Arc<Mutex<HashSet<IssuerKey>>> = Arc::default();
        let a = IndexBuilder::new(SerialHasher::new(), HOUR, Arc::clone(&logged)).build();
        assert!(a.log_unknown_once(&issuer(1), RevocationStatus::Missing));
        assert!(!a.log_unknown_once(&issuer(1), RevocationStatus::Missing));
        assert!(a.log_unknown_once(&issuer(2), RevocationStatus::Missing));
        let b = IndexBuilder::new(SerialHasher::new(), HOUR, Arc::clone(&logged)).build();
        assert!(!b.log_unknown_once(&issuer(1), RevocationStatus::Stale));
        logged.lock().unwrap().remove(&issuer(1));
        assert!(b.log_unknown_once(&issuer(1), RevocationStatus::Stale));
    }

    #[test]
    fn memory_estimate_is_about_17_bytes_per_bucket() {
        let hasher = SerialHasher::new();
        let keys: Arc<[u128]> = (0u32..100_000)
            .map(|i| hasher.key(&issuer(1), &i.to_be_bytes()))
            .collect();
        let mut b = IndexBuilder::new(hasher, HOUR, Arc::default());
        b.add(issuer(1), info(None, keys.len()), keys);
        let idx = b.build();
        assert_eq!(idx.len(), 100_000);
        // 100k → 131072 buckets (load ≤ 7/8) × 17 bytes.
        assert_eq!(idx.memory_bytes(), 131_072 * 17);
        assert!(idx.is_revoked(&issuer(1), &99_999u32.to_be_bytes()));
        assert!(!idx.is_revoked(&issuer(1), &100_000u32.to_be_bytes()));
    }
}
