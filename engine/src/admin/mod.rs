//! The admin plane: metrics, health, reload, the certificate store API, and the development echo backend.

pub mod api;
pub mod echo;
pub mod metrics;
pub mod server;
