//! certgate: TLS termination with up-front client-certificate authentication.
//!
//! # The path of a request
//!
//! ```text
//!  client ──TCP──▶ worker N (one per core, own SO_REUSEPORT listener, own runtime)
//!                    │ runtime::io        owned-buffer reads/writes (io_uring or epoll)
//!                    │ tls::stream        BoringSSL over in-memory ciphertext buffers
//!                    │ handshake          client certificate asked for here, never later
//!                    │ tls::verify        verdict cache hit ─┐  miss: chain build + allowlist
//!                    │                                      ◀─┘  (snapshot read without locks)
//!                    │ proxy::forward     http:: parse, 403 unless the verdict allows,
//!                    │                    strip client cert headers, add ours
//!                    ▼
//!                 backend (per-worker keep-alive pool), response streamed back
//! ```
//!
//! * [`config`] turns `CERTGATE_*` variables into a validated [`config::Config`];
//!   [`config_file`] reads the optional `CERTGATE_CONFIG` file (hosts, routes, policies).
//! * [`serve::run`] builds the first snapshot, starts the workers and the admin
//!   listener, and handles SIGHUP (reload) and SIGTERM/SIGINT (drain).
//! * [`trust`] and [`http`] are pure: no I/O, no FFI, unit-tested on their own.
//! * [`tls`] is the only module that touches BoringSSL.
//! * [`store`] holds uploaded and directory-sourced certificates; [`admin`]
//!   serves it over the admin API, and [`cli`] is its command-line client.
//! * [`revocation`] keeps CRLs fresh on a background thread and publishes the
//!   [`trust::RevocationIndex`] the verifier reads.
//!
//! See `docs/architecture.md` for the design and `docs/security.md` for the checks.

pub mod admin;
pub mod atomic_file;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod control;
pub mod http;
pub mod listener;
pub mod proxy;
pub mod revocation;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod tls;
pub mod trust;
