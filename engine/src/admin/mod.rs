//! The admin plane: metrics, health, reload, and the development echo backend.

pub mod echo;
pub mod metrics;
pub mod server;
