//! The proxy: a client connection's life (handshake, verdict) and the HTTP exchange with the backend.
//!
//! Each worker keeps its own pool of idle keep-alive backend connections
//! (`Worker::pool`), so no lock is taken to find one.

pub mod connection;
pub mod forward;
pub mod splice;
#[cfg(test)]
mod splice_tests;
