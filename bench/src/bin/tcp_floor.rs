//! Measures what one short TCP connection costs the server's CPU on this
//! machine, with no TLS and no proxying: the part of a full-handshake
//! benchmark that no TLS terminator can avoid.
//!
//! ```text
//! tcp_floor [--json] [--connections N] [--seconds S] [--server-cpu C] [--client-cpu C]
//! ```
//!
//! A server thread pinned to one CPU accepts a connection, reads a small
//! request, writes a small response and closes, over 127.0.0.1, as a server
//! does in the load generator's `handshake` mode; a client thread pinned to
//! another CPU drives it one connection at a time. The server thread's CPU
//! time (`CLOCK_THREAD_CPUTIME_ID`: user and system, which on loopback also
//! holds part of the receive path of both ends) divided by the connections is
//! the floor. It stops after N connections or S seconds, whichever is first.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok";

struct Args {
    json: bool,
    connections: u64,
    seconds: f64,
    server_cpu: usize,
    client_cpu: usize,
}

const USAGE: &str =
    "usage: tcp_floor [--json] [--connections N] [--seconds S] [--server-cpu C] [--client-cpu C]\n\
  --json           print one JSON object instead of a sentence\n\
  --connections N  stop after N connections (default 20000)\n\
  --seconds S      stop after S seconds (default 5)\n\
  --server-cpu C   CPU of the server thread (default 1)\n\
  --client-cpu C   CPU of the client thread (default 0)\n";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        json: false,
        connections: 20_000,
        seconds: 5.0,
        server_cpu: 1,
        client_cpu: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--json" => args.json = true,
            "--connections" => {
                let v = value("--connections")?;
                args.connections = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--connections {v:?}: expected a positive integer"))?;
            }
            "--seconds" => {
                let v = value("--seconds")?;
                args.seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
                    .ok_or(format!("--seconds {v:?}: expected a number in (0, 600]"))?;
            }
            "--server-cpu" => {
                let v = value("--server-cpu")?;
                args.server_cpu = v.parse().map_err(|_| format!("--server-cpu {v:?}"))?;
            }
            "--client-cpu" => {
                let v = value("--client-cpu")?;
                args.client_cpu = v.parse().map_err(|_| format!("--client-cpu {v:?}"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn pin(cpu: usize) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it and
    // sched_setaffinity reads exactly size_of::<cpu_set_t>() bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn thread_cpu() -> Duration {
    // SAFETY: a valid clock id and a pointer to a timespec on our stack.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The client's last connection: the server stops instead of answering.
const STOP: &[u8] = b"STOP\r\n\r\n";

/// One connection, server side: read the request, answer, close.
/// `Ok(false)` for the client's stop message.
fn serve_one(listener: &TcpListener) -> std::io::Result<bool> {
    let (mut s, _) = listener.accept()?;
    s.set_nodelay(true)?;
    let mut buf = [0u8; 1024];
    let mut got = 0;
    while !buf[..got].ends_with(b"\r\n\r\n") {
        match s.read(&mut buf[got..])? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
        if got == buf.len() {
            return Err(std::io::Error::other("request too long"));
        }
    }
    if &buf[..got] == STOP {
        return Ok(false);
    }
    s.write_all(RESPONSE)?;
    Ok(true)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("tcp_floor: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tcp_floor: binding 127.0.0.1:0: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let (n, server_cpu) = (args.connections, args.server_cpu);

    let server = std::thread::spawn(move || -> std::io::Result<(u64, Duration, Duration)> {
        pin(server_cpu)?;
        let (cpu0, wall0) = (thread_cpu(), Instant::now());
        let mut done = 0;
        while serve_one(&listener)? {
            done += 1;
        }
        Ok((done, thread_cpu() - cpu0, wall0.elapsed()))
    });
    let client = std::thread::spawn(move || -> std::io::Result<u64> {
        pin(args.client_cpu)?;
        let mut done = 0;
        let mut buf = [0u8; 512];
        while done < n {
            let mut s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            s.write_all(REQUEST)?;
            while s.read(&mut buf)? > 0 {}
            done += 1;
            if Instant::now() > deadline {
                break;
            }
        }
        TcpStream::connect(addr)?.write_all(STOP)?;
        Ok(done)
    });
    let sent = match client.join() {
        Ok(Ok(sent)) => sent,
        Ok(Err(e)) => {
            eprintln!("tcp_floor: client: {e}");
            return ExitCode::FAILURE;
        }
        Err(_) => return ExitCode::FAILURE,
    };
    let (done, cpu, wall) = match server.join() {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("tcp_floor: server: {e}");
            return ExitCode::FAILURE;
        }
        Err(_) => return ExitCode::FAILURE,
    };
    if done != sent || done == 0 {
        eprintln!("tcp_floor: the client made {sent} connections, the server served {done}");
        return ExitCode::FAILURE;
    }
    let per_conn_us = cpu.as_secs_f64() * 1e6 / done as f64;
    if args.json {
        println!(
            "{{\"tool\": \"certgate tcp_floor\", \"connections\": {done}, \"wall_secs\": {:.3}, \
             \"server_cpu_secs\": {:.4}, \"us_per_connection\": {per_conn_us:.2}, \
             \"connections_per_cpu_second\": {:.1}}}",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            1e6 / per_conn_us
        );
    } else {
        println!(
            "{done} connections in {:.2} s; server thread CPU {:.3} s ({:.0}% of its core): \
             {per_conn_us:.1} µs per connection = {:.0} connections per server CPU-second",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
            1e6 / per_conn_us
        );
    }
    ExitCode::SUCCESS
}
