//! The certgate process under test.

use super::TempDir;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Output {
    /// All lines, tagged with the stream they came from.
    lines: Vec<(Stream, String)>,
    /// Streams that reached EOF.
    closed: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

type SharedOutput = Arc<(Mutex<Output>, Condvar)>;

pub struct Engine {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    admin: SocketAddr,
    io: String,
    output: SharedOutput,
    exit: Option<ExitStatus>,
    _state: Option<TempDir>,
    state_dir: PathBuf,
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_certgate")
}

/// Removes ANSI escape sequences (in case the logger colours its output).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            if it.peek() == Some(&'[') {
                it.next();
                for c2 in it.by_ref() {
                    if c2.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn spawn_reader(r: impl Read + Send + 'static, stream: Stream, out: SharedOutput) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let s = String::from_utf8_lossy(&line);
                    let s = strip_ansi(s.trim_end_matches(['\n', '\r']));
                    let (m, cv) = &*out;
                    m.lock().unwrap().lines.push((stream, s));
                    cv.notify_all();
                }
            }
        }
        let (m, cv) = &*out;
        m.lock().unwrap().closed += 1;
        cv.notify_all();
    });
}

/// The value after `key=` up to whitespace, with quotes and trailing commas removed.
fn token_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut search = line;
    loop {
        let i = search.find(key)?;
        // must be at a word boundary
        let ok = i == 0 || {
            let b = search.as_bytes()[i - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let rest = &search[i + key.len()..];
        if ok {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            return Some(rest[..end].trim_matches(|c| c == '"' || c == ',' || c == '\''));
        }
        search = rest;
    }
}

/// The io backend an io variant runs on: `uring` is io_uring with every fast
/// path on, `uring-plain` io_uring with every fast path off (multishot,
/// buffer ring, fixed files, registered buffers, zero-copy send).
pub fn backend_of(io: &str) -> &str {
    io.strip_suffix("-plain").unwrap_or(io)
}

fn base_command(io: &str, state: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear();
    if let Ok(p) = std::env::var("PATH") {
        cmd.env("PATH", p);
    }
    if let Ok(h) = std::env::var("HOME") {
        cmd.env("HOME", h);
    }
    // `CERTGATE_KTLS=on|off cargo test` runs the whole suite with kernel TLS
    // forced on or off (the engine's default, auto, uses it where the kernel
    // has it). A test that sets the variable itself overrides this.
    if let Ok(k) = std::env::var("CERTGATE_KTLS") {
        cmd.env("CERTGATE_KTLS", k);
    }
    cmd.env("CERTGATE_LISTEN", "127.0.0.1:0")
        .env("CERTGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .env("CERTGATE_IO", backend_of(io))
        .env("CERTGATE_STATE_DIR", state);
    // `uring` runs with every io_uring fast path on (whatever the defaults),
    // completion work deferred to the worker's own calls (the eventfd loop);
    // `uring-plain` with every one off and the kernel's interrupting default.
    // Both settings are tested; the defaults lie between the two.
    let fast_paths = [
        ("CERTGATE_URING_ACCEPT_MULTISHOT", "1", "0"),
        ("CERTGATE_URING_BUF_RING", "1", "0"),
        ("CERTGATE_URING_RECV_MULTISHOT", "1", "0"),
        ("CERTGATE_URING_FIXED_FILES", "1", "0"),
        ("CERTGATE_URING_SEND_ZC_MIN", "65536", "0"),
        ("CERTGATE_URING_FIXED_BUFFERS", "64", "0"),
        ("CERTGATE_URING_TASKRUN", "defer", "interrupt"),
    ];
    if io == "uring" {
        for (var, on, _) in fast_paths {
            cmd.env(var, on);
        }
    } else if io.ends_with("-plain") {
        for (var, _, off) in fast_paths {
            cmd.env(var, off);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

impl Engine {
    /// Starts the engine with the default variables (2 workers, log info,
    /// ephemeral ports, a fresh state dir) plus `vars` (which override the
    /// defaults), and waits for `certgate ready`.
    pub fn start(vars: &[(&str, String)], io: &str) -> Engine {
        Engine::start_with(vars, io, io, |_| {})
    }

    /// Like [`Engine::start`] with `CERTGATE_IO=requested`, expecting the ready
    /// line to report `io=expected`, and `customize` applied to the command
    /// (e.g. [`block_io_uring`]).
    pub fn start_with(
        vars: &[(&str, String)],
        requested: &str,
        expected: &str,
        customize: impl FnOnce(&mut Command),
    ) -> Engine {
        let state = TempDir::new("state");
        let mut cmd = base_command(requested, state.path());
        cmd.env("CERTGATE_WORKERS", "2").env("CERTGATE_LOG", "info");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        customize(&mut cmd);
        let state_dir = state.path().to_path_buf();
        Engine::spawn_ready(cmd, expected, Some(state), state_dir, vars)
    }

    /// Starts the engine with only LISTEN, ADMIN_LISTEN, IO and STATE_DIR=`state`
    /// (plus PATH and HOME), for the zero-config start.
    pub fn start_bare(io: &str, state: &Path) -> Engine {
        let cmd = base_command(io, state);
        Engine::spawn_ready(cmd, io, None, state.to_path_buf(), &[])
    }

    fn spawn_ready(
        mut cmd: Command,
        io: &str,
        state: Option<TempDir>,
        state_dir: PathBuf,
        vars: &[(&str, String)],
    ) -> Engine {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin()));
        let pid = child.id();
        let output: SharedOutput = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        spawn_reader(child.stdout.take().unwrap(), Stream::Stdout, output.clone());
        spawn_reader(child.stderr.take().unwrap(), Stream::Stderr, output.clone());
        let mut engine = Engine {
            child,
            pid,
            addr: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
            io: io.to_string(),
            output,
            exit: None,
            _state: state,
            state_dir,
        };

        let deadline = Instant::now() + READY_TIMEOUT;
        let ready_line = loop {
            if let Some(l) =
                engine.find_line(|s, l| s == Stream::Stderr && l.contains("certgate ready"))
            {
                break l;
            }
            if let Ok(Some(st)) = engine.child.try_wait() {
                engine.exit = Some(st);
                // let the readers drain
                engine.wait_output_closed(Duration::from_secs(2));
                panic!(
                    "certgate (io={io}) exited with {st} before `certgate ready`; vars: {vars:?} (engine output printed below)"
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "certgate (io={io}) not ready within {READY_TIMEOUT:?} (no stderr line containing `certgate ready`; engine output printed below)"
                );
            }
            engine.wait_change(Duration::from_millis(50));
        };
        let listen = token_after(&ready_line, "listen=")
            .unwrap_or_else(|| panic!("no listen= in ready line: {ready_line}"));
        let admin = token_after(&ready_line, "admin=")
            .unwrap_or_else(|| panic!("no admin= in ready line: {ready_line}"));
        let got_io = token_after(&ready_line, "io=")
            .unwrap_or_else(|| panic!("no io= in ready line: {ready_line}"));
        engine.addr = listen
            .parse()
            .unwrap_or_else(|e| panic!("bad listen= {listen:?} in ready line ({e}): {ready_line}"));
        engine.admin = admin
            .parse()
            .unwrap_or_else(|e| panic!("bad admin= {admin:?} in ready line ({e}): {ready_line}"));
        assert_eq!(
            got_io,
            backend_of(io),
            "engine started with CERTGATE_IO={io} but reports io={got_io}: {ready_line}"
        );
        engine
    }

    /// Runs the engine with the default variables plus `vars`, expecting it to
    /// fail at start-up; returns its exit status and stderr. Panics if it is
    /// still running after 20 s or prints `certgate ready`.
    pub fn start_expect_failure(vars: &[(&str, String)], io: &str) -> (ExitStatus, String) {
        Engine::start_expect_failure_with(vars, io, |_| {})
    }

    /// [`Engine::start_expect_failure`] with `customize` applied to the command.
    pub fn start_expect_failure_with(
        vars: &[(&str, String)],
        io: &str,
        customize: impl FnOnce(&mut Command),
    ) -> (ExitStatus, String) {
        let state = TempDir::new("state");
        let mut cmd = base_command(io, state.path());
        cmd.env("CERTGATE_WORKERS", "2").env("CERTGATE_LOG", "info");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        customize(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin()));
        let pid = child.id();
        let output: SharedOutput = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        spawn_reader(child.stdout.take().unwrap(), Stream::Stdout, output.clone());
        spawn_reader(child.stderr.take().unwrap(), Stream::Stderr, output.clone());
        let deadline = Instant::now() + READY_TIMEOUT;
        let status = loop {
            if let Ok(Some(st)) = child.try_wait() {
                break st;
            }
            if Instant::now() >= deadline {
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
                let _ = child.wait();
                let all = render(&output);
                panic!("certgate (vars {vars:?}) was expected to fail at start-up but was still running after {READY_TIMEOUT:?}\n--- engine output ---\n{all}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // wait for both pipes to reach EOF
        {
            let (m, cv) = &*output;
            let mut g = m.lock().unwrap();
            let end = Instant::now() + Duration::from_secs(5);
            while g.closed < 2 && Instant::now() < end {
                g = cv.wait_timeout(g, Duration::from_millis(50)).unwrap().0;
            }
        }
        let g = output.0.lock().unwrap();
        let stderr: Vec<&str> = g
            .lines
            .iter()
            .filter(|(s, _)| *s == Stream::Stderr)
            .map(|(_, l)| l.as_str())
            .collect();
        (status, stderr.join("\n"))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }
    pub fn pid(&self) -> u32 {
        self.pid
    }
    pub fn io(&self) -> &str {
        &self.io
    }
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn signal(&self, sig: libc::c_int) {
        let rc = unsafe { libc::kill(self.pid as i32, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.pid);
    }

    /// All output so far (stdout and stderr interleaved, prefixed).
    pub fn logs(&self) -> String {
        render(&self.output)
    }

    /// Stdout lines so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        let g = self.output.0.lock().unwrap();
        g.lines
            .iter()
            .filter(|(s, _)| *s == Stream::Stdout)
            .map(|(_, l)| l.clone())
            .collect()
    }

    fn find_line(&self, pred: impl Fn(Stream, &str) -> bool) -> Option<String> {
        let g = self.output.0.lock().unwrap();
        g.lines
            .iter()
            .find(|(s, l)| pred(*s, l))
            .map(|(_, l)| l.clone())
    }

    fn wait_change(&self, t: Duration) {
        let (m, cv) = &*self.output;
        let g = m.lock().unwrap();
        let _ = cv.wait_timeout(g, t).unwrap();
    }

    fn wait_output_closed(&self, t: Duration) {
        let (m, cv) = &*self.output;
        let mut g = m.lock().unwrap();
        let end = Instant::now() + t;
        while g.closed < 2 && Instant::now() < end {
            g = cv.wait_timeout(g, Duration::from_millis(50)).unwrap().0;
        }
    }

    /// Waits up to `timeout` for an output line (either stream) satisfying `pred`.
    pub fn wait_for_line(
        &self,
        timeout: Duration,
        pred: impl Fn(Stream, &str) -> bool,
    ) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(l) = self.find_line(&pred) {
                return Some(l);
            }
            if Instant::now() >= end {
                return None;
            }
            self.wait_change(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exit {
            return Some(st);
        }
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exit = Some(st);
                self.wait_output_closed(Duration::from_secs(2));
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.wait_exit(Duration::ZERO).is_none()
    }

    /// Current resident set size in bytes (VmRSS from /proc/<pid>/status).
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_of(self.pid)
    }
}

pub fn rss_of(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn render(out: &SharedOutput) -> String {
    let g = out.0.lock().unwrap();
    let mut s = String::new();
    for (st, l) in &g.lines {
        s.push_str(match st {
            Stream::Stdout => "[out] ",
            Stream::Stderr => "[err] ",
        });
        s.push_str(l);
        s.push('\n');
    }
    s
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.exit.is_none() {
            unsafe {
                libc::kill(self.pid as i32, libc::SIGKILL);
            }
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- certgate (pid {}, io={}) output ---\n{}--- end of certgate output ---",
                self.pid,
                self.io,
                self.logs()
            );
        }
    }
}

/// Make the child's `io_uring_setup` fail with EPERM, as Docker's default
/// seccomp profile does, by installing a seccomp filter before exec.
pub fn block_io_uring(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    const RET_ERRNO_EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let nr = libc::SYS_io_uring_setup as u32;
    let insn = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let program = [
        insn(0x20, 0, 0, 0),               // ld  [nr]  (offset 0 of seccomp_data)
        insn(0x15, 0, 1, nr),              // jeq #io_uring_setup, deny, allow
        insn(0x06, 0, 0, RET_ERRNO_EPERM), // deny: ret ERRNO(EPERM)
        insn(0x06, 0, 0, RET_ALLOW),       // allow: ret ALLOW
    ];
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl, which is async-signal-safe; `program` is moved into the closure
    // and outlives the prctl call that copies it into the kernel.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
