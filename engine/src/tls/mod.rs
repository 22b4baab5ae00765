//! Everything that touches BoringSSL: contexts, the TLS-over-owned-buffers stream,
//! client-certificate verification, ticket keys, and the PKI factory.
//!
//! This folder is the only home of `unsafe` (each block carries a `SAFETY:` note).

pub mod certinfo;
pub mod context;
pub mod pki;
pub mod stream;
pub mod tickets;
pub mod verify;
