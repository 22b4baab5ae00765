//! certgate-loadgen: load generator for TLS and mutual-TLS HTTP/1.1 servers.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    certgate_loadgen::cli_main()
}
