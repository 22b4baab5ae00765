//! Everything that touches BoringSSL: contexts, the TLS-over-owned-buffers stream,
//! client-certificate verification, CRLs, ticket keys, the PKI factory, and the
//! kernel TLS (kTLS) handoff.
//!
//! Nearly all of certgate's `unsafe` is here, around BoringSSL calls the `boring`
//! crate does not wrap (the one other block pins worker threads to CPUs); each
//! block carries a `SAFETY:` note.

pub mod certfile;
pub mod certinfo;
pub mod context;
pub mod crl;
pub mod facts;
pub mod ktls;
pub mod pki;
pub mod stream;
pub mod tickets;
pub mod verify;
