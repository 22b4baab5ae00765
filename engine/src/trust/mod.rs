//! Trust decisions without I/O or FFI: thumbprints, names, policies, allowlist, verdict cache, revocation index.
//!
//! The only I/O is [`Allowlist::load`] reading the allowlist file.

pub mod allowlist;
pub mod names;
pub mod policy;
pub mod revocation;
pub mod thumbprint;
pub mod verdict_cache;

pub use allowlist::{Allowlist, AllowlistError};
pub use names::{DistinguishedName, NameError};
pub use policy::{CompiledPolicy, Decision, IdentitySpec, PolicyError, PolicySpec};
pub use revocation::{IssuerKey, RevocationIndex, RevocationStatus};
pub use thumbprint::{upper_hex, CertDigests, Thumbprint, ThumbprintError};
pub use verdict_cache::{VerdictCache, VerdictKey};
