//! Measures BoringSSL's per-handshake public-key operations on this machine and
//! prints the handshakes-per-CPU-second floor they imply.
//!
//! ```text
//! crypto_floor [--json] [--seconds S]
//! ```
//!
//! Each operation runs on one thread for about S seconds (default 1). The floor is
//! 1 / (sum of the operation times of one handshake): the most full handshakes one
//! core could complete if it did nothing but their public-key work.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use certgate_bench::crypto::{Crypto, Floors, Op, RECORD};

struct Args {
    json: bool,
    seconds: f64,
}

const USAGE: &str = "usage: crypto_floor [--json] [--seconds S]\n\
  --json       print one JSON object instead of a table\n\
  --seconds S  time spent on each operation (default 1)\n";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        json: false,
        seconds: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => args.json = true,
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                args.seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
                    .ok_or_else(|| format!("--seconds {v:?}: expected a number in (0, 600]"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// Seconds per operation: a short warm-up, then batches until `budget` is spent.
fn measure(c: &mut Crypto, op: Op, budget: Duration) -> (f64, u64) {
    let warm = Instant::now();
    while warm.elapsed() < budget / 10 {
        black_box(c.run(op));
    }
    let mut n: u64 = 0;
    let start = Instant::now();
    loop {
        for _ in 0..8 {
            black_box(c.run(op));
        }
        n += 8;
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return (elapsed.as_secs_f64() / n as f64, n);
        }
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("crypto_floor: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let budget = Duration::from_secs_f64(args.seconds);
    let mut crypto = Crypto::new();
    let results: Vec<(Op, f64, u64)> = Op::ALL
        .iter()
        .map(|&op| {
            let (secs, n) = measure(&mut crypto, op, budget);
            (op, secs, n)
        })
        .collect();
    let secs = |op: Op| results.iter().find(|r| r.0 == op).map_or(f64::NAN, |r| r.1);
    let floors = Floors::from_costs(secs);
    let aes_mib_s = RECORD as f64 / secs(Op::Aes128GcmSeal16k) / (1024.0 * 1024.0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = cpu_model();

    if args.json {
        let ops: Vec<String> = results
            .iter()
            .map(|(op, s, n)| {
                format!(
                    "    {}: {{\"ns_per_op\": {:.1}, \"per_sec\": {:.1}, \"iterations\": {n}}}",
                    json_string(op.name()),
                    s * 1e9,
                    1.0 / s
                )
            })
            .collect();
        println!("{{");
        println!("  \"tool\": \"certgate crypto_floor\",");
        println!(
            "  \"library\": {},",
            json_string(boring::version::version())
        );
        println!("  \"cpu_model\": {},", json_string(&model));
        println!("  \"cpus\": {cpus},");
        println!("  \"seconds_per_op\": {},", args.seconds);
        println!("  \"ops\": {{\n{}\n  }},", ops.join(",\n"));
        println!("  \"aes128gcm_mib_per_sec\": {aes_mib_s:.1},");
        println!("  \"handshakes_per_cpu_second\": {{");
        println!("    \"ecdsa_p256\": {:.1},", floors.ecdsa);
        println!(
            "    \"ecdsa_p256_first_time\": {:.1},",
            floors.ecdsa_first_time
        );
        println!("    \"rsa2048\": {:.1},", floors.rsa);
        println!("    \"rsa2048_first_time\": {:.1}", floors.rsa_first_time);
        println!("  }}");
        println!("}}");
    } else {
        println!(
            "{} on {model} ({cpus} CPUs), {:.1} s per operation",
            boring::version::version(),
            args.seconds
        );
        println!("{:<22} {:>12} {:>14}", "operation", "µs/op", "ops/s");
        for (op, s, _) in &results {
            println!("{:<22} {:>12.2} {:>14.0}", op.name(), s * 1e6, 1.0 / s);
        }
        println!("AES-128-GCM seal: {aes_mib_s:.0} MiB/s");
        println!("handshakes per CPU-second (public-key work only):");
        println!(
            "  ECDSA P-256, returning client (x25519 + sign + verify):       {:>8.0}",
            floors.ecdsa
        );
        println!(
            "  ECDSA P-256, first-time client (+1 verify of its certificate): {:>8.0}",
            floors.ecdsa_first_time
        );
        println!(
            "  RSA-2048,    returning client (x25519 + sign + verify):       {:>8.0}",
            floors.rsa
        );
        println!(
            "  RSA-2048,    first-time client (+1 verify of its certificate): {:>8.0}",
            floors.rsa_first_time
        );
    }
    ExitCode::SUCCESS
}
