//! A trivial TLS server for measuring certgate-loadgen's own ceiling.
//!
//! It generates a throw-away PKI (CA, server certificate for 127.0.0.1/localhost, client
//! certificate) under --pki-dir, answers every request with `200 ok` on keep-alive
//! connections, and exits by itself after --seconds.
//!
//! ```text
//! cargo run --release -p certgate-loadgen --example trivial_server -- \
//!     --listen 127.0.0.1:18443 --threads 1 --pin-cpus 1 --mtls --seconds 120
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use certgate::tls::pki::{self, CertSpec, Usage};
use certgate_loadgen::parse::{parse_duration, CpuSpec};
use certgate_loadgen::trivial_server::{self, ServerOptions};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Trivial TLS server answering 200 ok (for load-generator ceilings)")]
struct Args {
    /// Listen address (loopback only is sensible).
    #[arg(long, default_value = "127.0.0.1:18443")]
    listen: SocketAddr,
    /// Server threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Pin server threads to these CPUs (e.g. 1 or 0,1).
    #[arg(long, value_parser = CpuSpec::parse)]
    pin_cpus: Option<CpuSpec>,
    /// Where the generated PEM files go (ca.pem, server.pem, server-key.pem, client.pem, client-key.pem).
    #[arg(long, default_value = "/tmp/certgate-loadgen-pki")]
    pki_dir: PathBuf,
    /// Require and verify client certificates (mutual TLS).
    #[arg(long)]
    mtls: bool,
    /// Exit after this long (every run is bounded in time).
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    seconds: Duration,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let dir = &args.pki_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let root = pki::self_signed(&CertSpec::new("loadgen test root", Usage::Ca))
        .map_err(|e| e.to_string())?;
    let mut server_spec = CertSpec::new("localhost", Usage::Server);
    server_spec.dns_names = vec!["localhost".into()];
    server_spec.ip_addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let server = pki::issue(&server_spec, &root).map_err(|e| e.to_string())?;
    let client = pki::issue(&CertSpec::new("loadgen client", Usage::Client), &root)
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("ca.pem"), root.cert_pem()).map_err(|e| e.to_string())?;
    server
        .write_pem(&dir.join("server.pem"), &dir.join("server-key.pem"))
        .map_err(|e| e.to_string())?;
    client
        .write_pem(&dir.join("client.pem"), &dir.join("client-key.pem"))
        .map_err(|e| e.to_string())?;
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = ServerOptions {
        listen: args.listen,
        threads: args.threads,
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        client_ca: args.mtls.then(|| dir.join("ca.pem")),
        pin_cpus: args
            .pin_cpus
            .as_ref()
            .map(|s| (0..args.threads).map(|i| s.cpu_for(i, ncpu)).collect()),
    };
    let srv = trivial_server::start(&opts)?;
    let d = dir.display();
    println!(
        "trivial server on https://{} ({} thread(s), mTLS {}), exits in {:?}",
        srv.addr,
        args.threads,
        if args.mtls { "required" } else { "off" },
        args.seconds
    );
    println!(
        "try: certgate-loadgen https://{}/ --ca {d}/ca.pem --cert {d}/client.pem --key {d}/client-key.pem",
        srv.addr
    );
    let deadline = Instant::now() + args.seconds;
    let mut last = (0u64, Instant::now());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1).min(deadline - Instant::now()));
        let n = srv.requests.load(std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        let rate = (n - last.0) as f64 / now.duration_since(last.1).as_secs_f64();
        if n != last.0 {
            eprintln!("  {n} requests, {rate:.0}/s");
        }
        last = (n, now);
    }
    srv.stop();
    Ok(())
}
