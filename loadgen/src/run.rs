//! The run: a plan resolved from the options, worker threads (a current-thread tokio runtime
//! each, one task per connection), the progress display and the merge of the results.

use std::cell::{Cell, RefCell};
use std::io::IsTerminal as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boring::ssl::SslSession;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{watch, Semaphore};

use crate::cli::{Mode, Opts};
use crate::http::{build_request, RecvBuf, ResponseInfo};
use crate::parse::{CpuSpec, Kind, Mix, Url};
use crate::report::{build_report, Report, Timings};
use crate::stats::{Live, Stats};
use crate::sys;
use crate::tls::{Failure, TlsClient, TlsOptions, TlsStream};

/// Default body size of `post` requests when --body-size is not given.
pub const DEFAULT_POST_BODY: u64 = 1024;

/// Everything a worker needs, resolved once from the options.
pub struct Plan {
    /// Mode.
    pub mode: Mode,
    /// Mix (mixed mode).
    pub mix: Option<Mix>,
    /// Target URL.
    pub url: Url,
    /// Address connected to.
    pub addr: SocketAddr,
    /// Host header value.
    pub host_header: String,
    /// TLS client.
    pub tls: TlsClient,
    /// Request on persistent connections (with a body if --body-size was given).
    pub req_plain: Vec<u8>,
    /// The same request with `Connection: close`, for one-request connections.
    pub req_close: Vec<u8>,
    /// Request with a body (post kind).
    pub req_post: Vec<u8>,
    /// Method of the plain request.
    pub method: String,
    /// Method of the post request.
    pub post_method: String,
    /// Body size of the plain request (0: none).
    pub plain_body: u64,
    /// Body size of the post request.
    pub post_body: u64,
    /// The plain request is HEAD (responses have no body).
    pub head_request: bool,
    /// Total connections.
    pub connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// Open-loop rate (requests/s in total).
    pub rate: Option<f64>,
    /// Measured duration bound.
    pub duration: Option<Duration>,
    /// Measured request-count bound.
    pub max_requests: Option<u64>,
    /// Warm-up.
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Expected status.
    pub expect_status: Option<u16>,
    /// Idle hold time.
    pub hold: Duration,
    /// Idle connect concurrency (total).
    pub connect_concurrency: usize,
    /// CPU of each worker thread, when pinned.
    pub pin: Option<Vec<usize>>,
    /// Show a progress bar.
    pub progress: bool,
}

/// Fills `n` bytes from a xorshift generator (the body is generated once).
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

impl Plan {
    /// Validates the options and resolves them.
    pub fn from_opts(o: &Opts) -> Result<Plan, String> {
        let url = Url::parse(&o.url)?;
        if o.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if o.timeout.is_zero() {
            return Err("--timeout must be positive".into());
        }
        if o.requests == Some(0) {
            return Err("--requests must be at least 1".into());
        }
        if o.duration.is_some_and(|d| d.is_zero()) {
            return Err("--duration must be positive".into());
        }
        let mix = match (o.mode, &o.mix) {
            (Mode::Mixed, Some(m)) => Some(m.clone()),
            (Mode::Mixed, None) => {
                return Err("--mode mixed needs --mix, e.g. handshake=1,keepalive=8,post=1".into())
            }
            (_, Some(_)) => return Err("--mix is only used with --mode mixed".into()),
            (_, None) => None,
        };
        if o.mode == Mode::Idle {
            if o.rate.is_some() {
                return Err("--rate does not apply to --mode idle".into());
            }
            if o.requests.is_some() {
                return Err("--requests does not apply to --mode idle (use --connections)".into());
            }
            if !o.warmup.is_zero() {
                return Err("--warmup does not apply to --mode idle".into());
            }
        } else if o.hold.is_some() {
            return Err("--hold only applies to --mode idle".into());
        }
        let addr = match &o.connect_to {
            Some(a) => a
                .parse::<SocketAddr>()
                .map_err(|_| format!("invalid --connect-to {a:?}: expected ip:port"))?,
            None => (url.host.as_str(), url.port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
                .next()
                .ok_or_else(|| format!("{} has no address", url.host))?,
        };
        let sessions =
            o.mode == Mode::Resume || mix.as_ref().is_some_and(|m| m.contains(Kind::Resume));
        let tls_opts = TlsOptions {
            cert: o.cert.clone(),
            key: o.key.clone(),
            cert_password: o.cert_password.clone(),
            ca: o.ca.clone(),
            insecure: o.insecure,
            version: o.tls_version,
            ciphers: o.ciphers.clone(),
            curves: o.curves.clone(),
            sessions,
        };
        let tls = TlsClient::new(&tls_opts, &url.host, o.sni.as_deref())?;
        let host_header = o.host.clone().unwrap_or_else(|| url.host_header());
        let plain_body = if o.mode == Mode::Post {
            0
        } else {
            o.body_size.unwrap_or(0)
        };
        let post_body = o.body_size.unwrap_or(DEFAULT_POST_BODY);
        let max_body = plain_body.max(post_body);
        if max_body > (1 << 30) {
            return Err("--body-size above 1 GiB is not supported".into());
        }
        let body = random_bytes(max_body as usize, 0x9e37_79b9_7f4a_7c15);
        let explicit_method = o.method.as_ref().map(|m| m.to_ascii_uppercase());
        if let Some(m) = &explicit_method {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
                return Err(format!("invalid method {m:?}"));
            }
        }
        let method = explicit_method
            .clone()
            .unwrap_or_else(|| if plain_body > 0 { "POST" } else { "GET" }.to_owned());
        let post_method = explicit_method.unwrap_or_else(|| "POST".to_owned());
        let plain_b =
            (plain_body > 0).then(|| (&body[..plain_body as usize], o.content_type.as_str()));
        let post_b = Some((&body[..post_body as usize], o.content_type.as_str()));
        let req_plain = build_request(&method, &url.path, &host_header, &o.headers, plain_b, false);
        let req_close = build_request(&method, &url.path, &host_header, &o.headers, plain_b, true);
        let req_post = build_request(
            &post_method,
            &url.path,
            &host_header,
            &o.headers,
            post_b,
            false,
        );
        let threads = o
            .threads
            .unwrap_or_else(sys::cpu_count)
            .clamp(1, o.connections);
        let ncpu = sys::cpu_count();
        let pin = o
            .pin_cpus
            .as_ref()
            .map(|spec: &CpuSpec| (0..threads).map(|i| spec.cpu_for(i, ncpu)).collect());
        let duration = match (o.duration, o.requests) {
            (None, None) => Some(Duration::from_secs(10)),
            (d, _) => d,
        };
        let hold = o.hold.or(o.duration).unwrap_or(Duration::from_secs(10));
        Ok(Plan {
            mode: o.mode,
            mix,
            head_request: method == "HEAD",
            url,
            addr,
            host_header,
            tls,
            req_plain,
            req_close,
            req_post,
            method,
            post_method,
            plain_body,
            post_body,
            connections: o.connections,
            threads,
            rate: o.rate,
            duration,
            max_requests: o.requests,
            warmup: o.warmup,
            timeout: o.timeout,
            expect_status: o.expect_status,
            hold,
            connect_concurrency: o.connect_concurrency.max(1),
            pin,
            progress: !o.quiet && !o.no_progress && std::io::stderr().is_terminal(),
        })
    }

    fn request_for(&self, kind: Kind) -> &[u8] {
        match kind {
            Kind::Handshake | Kind::Resume => &self.req_close,
            Kind::Keepalive => &self.req_plain,
            Kind::Post => &self.req_post,
        }
    }

    fn kind(&self, rng: &mut u64) -> Kind {
        match self.mode {
            Mode::Handshake => Kind::Handshake,
            Mode::Resume => Kind::Resume,
            Mode::Keepalive | Mode::Idle => Kind::Keepalive,
            Mode::Post => Kind::Post,
            Mode::Mixed => {
                let m = self.mix.as_ref().expect("mixed mode has a mix");
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                m.pick((*rng >> 32) as u32)
            }
        }
    }

    /// The number of threads and the connections each one runs.
    fn slots(&self, thread: usize) -> Range<usize> {
        let per = self.connections / self.threads;
        let extra = self.connections % self.threads;
        let start = thread * per + thread.min(extra);
        let len = per + usize::from(thread < extra);
        start..start + len
    }
}

/// State shared by all threads.
pub struct Control {
    /// When the workers start.
    pub start: Instant,
    /// When the warm-up ends (measurement starts).
    pub warm_end: Instant,
    /// When the measurement ends, if bounded by time.
    pub end: Option<Instant>,
    /// Measured requests started (against --requests).
    pub taken: AtomicU64,
    /// Request bound.
    pub budget: Option<u64>,
    /// Stop early (Ctrl-C or budget exhausted).
    pub stop: AtomicBool,
    /// Per-thread live counters.
    pub live: Vec<Live>,
}

impl Control {
    fn take_budget(&self) -> bool {
        match self.budget {
            None => true,
            Some(n) => {
                if self.taken.load(Ordering::Relaxed) >= n {
                    return false;
                }
                self.taken.fetch_add(1, Ordering::Relaxed) < n
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// What one request did, filled as it goes (so a timeout keeps what was known).
#[derive(Default)]
struct Outcome {
    handshake: bool,
    resumed: bool,
    resume_attempt: bool,
    sent: u64,
    received: u64,
    wire_sent: u64,
    wire_received: u64,
}

struct Conn {
    tls: TlsStream,
    rb: RecvBuf,
}

struct SlotState {
    conn: Option<Conn>,
    session: Option<SslSession>,
    scratch: RecvBuf,
    rng: u64,
}

struct ThreadCtx {
    plan: Arc<Plan>,
    ctl: Arc<Control>,
    index: usize,
    stats: RefCell<Stats>,
    last_done: Cell<Option<Instant>>,
}

fn tokio_instant(t: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(t)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl ThreadCtx {
    fn live(&self) -> &Live {
        &self.ctl.live[self.index]
    }

    /// Records the end of one request.
    fn finish(
        &self,
        measured: bool,
        kind: Kind,
        start_ref: Instant,
        done: Instant,
        out: &Outcome,
        res: Result<ResponseInfo, Failure>,
    ) {
        let plan = &*self.plan;
        let mismatch = |status: u16| plan.expect_status.is_some_and(|e| e != status);
        if !measured {
            let failed = match &res {
                Ok(info) => mismatch(info.status),
                Err(_) => true,
            };
            self.live().add(failed);
            return;
        }
        let mut s = self.stats.borrow_mut();
        if plan.mode == Mode::Mixed {
            s.record_kind(kind);
        }
        s.bytes_sent += out.sent;
        s.bytes_received += out.received;
        s.wire_sent += out.wire_sent;
        s.wire_received += out.wire_received;
        if out.handshake {
            s.handshakes += 1;
            s.resumed += u64::from(out.resumed);
        }
        s.resume_attempts += u64::from(out.resume_attempt);
        let failed = match res {
            Ok(info) => {
                s.record_status(info.status);
                if mismatch(info.status) {
                    s.record_error(&Failure::Status(info.status));
                    true
                } else {
                    s.record_ok(nanos(done.saturating_duration_since(start_ref)));
                    false
                }
            }
            Err(f) => {
                s.record_error(&f);
                true
            }
        };
        drop(s);
        self.live().add(failed);
        if self.last_done.get().is_none_or(|t| t < done) {
            self.last_done.set(Some(done));
        }
    }
}

/// Writes one request and reads its response.
async fn exchange(
    tls: &mut TlsStream,
    rb: &mut RecvBuf,
    req: &[u8],
    head: bool,
    out: &mut Outcome,
) -> Result<ResponseInfo, Failure> {
    if let Err(e) = tls.write_all(req).await {
        // The server may have rejected the connection with an alert (e.g. TLS 1.3
        // certificate_required arrives after the client's handshake is done): report the
        // alert rather than the broken pipe it caused.
        if let Err(crate::http::ResponseError::Io(re)) = rb.read_response(tls, head).await {
            let alert = Failure::Io(re);
            if matches!(alert.key(), crate::tls::ErrKey::Tls(_)) {
                return Err(alert);
            }
        }
        return Err(Failure::Io(e));
    }
    out.sent += req.len() as u64;
    let info = rb.read_response(tls, head).await?;
    out.received += info.bytes;
    Ok(info)
}

fn take_wire(tls: &mut TlsStream, out: &mut Outcome) {
    let (s, r) = tls.get_mut().take_counts();
    out.wire_sent += s;
    out.wire_received += r;
}

/// One request of `kind` on the slot's state.
async fn one_request(
    plan: &Plan,
    kind: Kind,
    st: &mut SlotState,
    out: &mut Outcome,
) -> Result<ResponseInfo, Failure> {
    let req = plan.request_for(kind);
    let head = plan.head_request && kind != Kind::Post;
    if kind.new_connection() {
        let offer = if kind == Kind::Resume {
            st.session.as_ref()
        } else {
            None
        };
        out.resume_attempt = offer.is_some();
        let mut tls = plan.tls.connect(plan.addr, offer).await?;
        out.handshake = true;
        out.resumed = tls.ssl().session_reused();
        st.scratch.clear();
        let r = exchange(&mut tls, &mut st.scratch, req, head, out).await;
        if let Some(s) = plan.tls.take_session(&mut tls) {
            st.session = Some(s);
        }
        if r.is_ok() {
            // close_notify, then FIN; the server has been told `Connection: close` too.
            let _ = tls.shutdown().await;
        }
        take_wire(&mut tls, out);
        r
    } else {
        if st.conn.is_none() {
            let tls = plan.tls.connect(plan.addr, None).await?;
            out.handshake = true;
            st.conn = Some(Conn {
                tls,
                rb: RecvBuf::new(),
            });
        }
        let c = st.conn.as_mut().expect("connection just ensured");
        let r = exchange(&mut c.tls, &mut c.rb, req, head, out).await;
        take_wire(&mut c.tls, out);
        if !matches!(&r, Ok(info) if info.keep_alive) {
            st.conn = None;
        }
        r
    }
}

/// Sleeps until `t` in slices, returning false if the run was stopped meanwhile.
async fn sleep_until_or_stop(ctl: &Control, t: Instant) -> bool {
    loop {
        if ctl.stopped() {
            return false;
        }
        let now = Instant::now();
        if now >= t {
            return true;
        }
        let slice = (t - now).min(Duration::from_millis(100));
        tokio::time::sleep_until(tokio_instant(now + slice)).await;
    }
}

/// The request loop of one connection slot (all modes but idle).
async fn slot_loop(ctx: Rc<ThreadCtx>, slot: usize) {
    let plan = &*ctx.plan;
    let ctl = &*ctx.ctl;
    let mut st = SlotState {
        conn: None,
        session: None,
        scratch: RecvBuf::new(),
        rng: 0x2545_f491_4f6c_dd1d ^ ((slot as u64 + 1) * 0x9e37_79b9),
    };
    let interval = plan
        .rate
        .map(|r| Duration::from_secs_f64(plan.connections as f64 / r));
    let mut next = ctl.start
        + plan
            .rate
            .map_or(Duration::ZERO, |r| Duration::from_secs_f64(slot as f64 / r));
    let mut last_wake = ctl.start;
    loop {
        if ctl.stopped() {
            break;
        }
        let now = Instant::now();
        let start_ref = match interval {
            Some(iv) => {
                let t = next;
                next += iv;
                if ctl.end.is_some_and(|e| t >= e) {
                    break;
                }
                if t > now {
                    if !sleep_until_or_stop(ctl, t).await {
                        break;
                    }
                    last_wake = Instant::now();
                }
                // Latency counts from the intended send time; when this connection was idle
                // waiting for its slot, the timer's own lateness is not charged to the server.
                t.max(last_wake)
            }
            None => {
                if ctl.end.is_some_and(|e| now >= e) {
                    break;
                }
                now
            }
        };
        let measured = start_ref >= ctl.warm_end;
        if measured && !ctl.take_budget() {
            break;
        }
        let kind = plan.kind(&mut st.rng);
        let mut out = Outcome::default();
        let res =
            match tokio::time::timeout(plan.timeout, one_request(plan, kind, &mut st, &mut out))
                .await
            {
                Ok(r) => r,
                Err(_) => {
                    st.conn = None;
                    Err(Failure::Timeout)
                }
            };
        ctx.finish(measured, kind, start_ref, Instant::now(), &out, res);
    }
}

/// Idle mode: open one connection, one request, hold until the hold ends, probe it.
async fn idle_slot(
    ctx: Rc<ThreadCtx>,
    sem: Rc<Semaphore>,
    mut hold: watch::Receiver<Option<Instant>>,
) {
    let plan = &*ctx.plan;
    let ctl = &*ctx.ctl;
    let live = ctx.live();
    let mark_done = || {
        let v = live.opened.load(Ordering::Relaxed);
        live.opened.store(v + 1, Ordering::Relaxed);
    };
    let permit = sem.acquire().await.expect("semaphore never closed");
    if ctl.stopped() {
        mark_done();
        return;
    }
    let start = Instant::now();
    let mut out = Outcome::default();
    let mut rb = RecvBuf::with_capacity(4096);
    let opened = tokio::time::timeout(plan.timeout, async {
        let mut tls = plan.tls.connect(plan.addr, None).await?;
        out.handshake = true;
        let r = exchange(
            &mut tls,
            &mut rb,
            &plan.req_plain,
            plan.head_request,
            &mut out,
        )
        .await;
        take_wire(&mut tls, &mut out);
        r.map(|info| (tls, info))
    })
    .await
    .unwrap_or(Err(Failure::Timeout));
    drop(permit);
    let done = Instant::now();
    let opened = match opened {
        Ok((tls, info)) if !info.keep_alive => {
            drop(tls);
            Err((Some(info), Failure::Closed { partial: false }))
        }
        Ok((tls, info)) => Ok((tls, info)),
        Err(f) => Err((None, f)),
    };
    let mut tls = {
        let mut s = ctx.stats.borrow_mut();
        s.bytes_sent += out.sent;
        s.bytes_received += out.received;
        s.wire_sent += out.wire_sent;
        s.wire_received += out.wire_received;
        s.handshakes += u64::from(out.handshake);
        match opened {
            Ok((tls, info)) => {
                s.record_status(info.status);
                s.idle.opened += 1;
                if plan.expect_status.is_some_and(|e| e != info.status) {
                    s.record_error(&Failure::Status(info.status));
                    live.add(true);
                } else {
                    s.record_ok(nanos(done - start));
                    live.add(false);
                }
                tls
            }
            Err((info, f)) => {
                if let Some(info) = info {
                    s.record_status(info.status);
                }
                s.idle.failed += 1;
                s.record_error(&f);
                live.add(true);
                drop(s);
                mark_done();
                return;
            }
        }
    };
    mark_done();
    tls.get_mut().release();
    rb.release();
    // Wait for the hold to start (all connections opened) and end.
    let mut hold_end = loop {
        if let Some(t) = *hold.borrow_and_update() {
            break t;
        }
        if hold.changed().await.is_err() {
            return;
        }
    };
    let mut byte = [0u8; 1];
    let closed = loop {
        tokio::select! {
            // Wait on the socket rather than in SSL_read, so that no TLS read buffer is held
            // per idle connection.
            r = tls.get_ref().readable() => {
                if r.is_err() {
                    break true;
                }
                // Something arrived: close_notify, an alert, EOF, or (harmlessly) a late
                // post-handshake message, after which the hold goes on.
                match tokio::time::timeout(Duration::from_millis(200), tls.read(&mut byte)).await {
                    Ok(_) => break true,
                    Err(_) => tls.get_mut().release(),
                }
            }
            _ = tokio::time::sleep_until(tokio_instant(hold_end)) => break false,
            c = hold.changed() => {
                match c {
                    Ok(()) => if let Some(t) = *hold.borrow_and_update() { hold_end = t },
                    Err(_) => break false,
                }
            }
        }
    };
    if closed {
        ctx.stats.borrow_mut().idle.closed_during_hold += 1;
        return;
    }
    let mut out = Outcome::default();
    let probe = tokio::time::timeout(
        plan.timeout,
        exchange(
            &mut tls,
            &mut rb,
            &plan.req_plain,
            plan.head_request,
            &mut out,
        ),
    )
    .await
    .unwrap_or(Err(Failure::Timeout));
    take_wire(&mut tls, &mut out);
    let mut s = ctx.stats.borrow_mut();
    s.bytes_sent += out.sent;
    s.bytes_received += out.received;
    s.wire_sent += out.wire_sent;
    s.wire_received += out.wire_received;
    match probe {
        Ok(info) => {
            s.record_status(info.status);
            if plan.expect_status.is_some_and(|e| e != info.status) {
                s.record_error(&Failure::Status(info.status));
                s.idle.probe_failed += 1;
            } else {
                s.idle.probe_ok += 1;
            }
        }
        Err(f) => {
            s.record_error(&f);
            s.idle.probe_failed += 1;
        }
    }
}

struct ThreadResult {
    stats: Stats,
    last_done: Option<Instant>,
}

fn worker_thread(
    plan: Arc<Plan>,
    ctl: Arc<Control>,
    index: usize,
    hold: watch::Receiver<Option<Instant>>,
) -> ThreadResult {
    if let Some(cpus) = &plan.pin {
        if let Err(e) = sys::pin_current_thread(cpus[index]) {
            eprintln!(
                "certgate-loadgen: cannot pin thread {index} to CPU {}: {e}",
                cpus[index]
            );
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime");
    let local = tokio::task::LocalSet::new();
    let ctx = Rc::new(ThreadCtx {
        plan: plan.clone(),
        ctl: ctl.clone(),
        index,
        stats: RefCell::new(Stats::new()),
        last_done: Cell::new(None),
    });
    let slots = plan.slots(index);
    local.block_on(&rt, async {
        tokio::time::sleep_until(tokio_instant(ctl.start)).await;
        let mut handles = Vec::with_capacity(slots.len());
        if plan.mode == Mode::Idle {
            let share = (plan.connect_concurrency / plan.threads).max(1);
            let sem = Rc::new(Semaphore::new(share));
            for _ in slots {
                handles.push(tokio::task::spawn_local(idle_slot(
                    ctx.clone(),
                    sem.clone(),
                    hold.clone(),
                )));
            }
        } else {
            for slot in slots {
                handles.push(tokio::task::spawn_local(slot_loop(ctx.clone(), slot)));
            }
        }
        for h in handles {
            let _ = h.await;
        }
    });
    drop(local);
    drop(rt);
    let ctx = Rc::try_unwrap(ctx).unwrap_or_else(|_| panic!("worker context still shared"));
    ThreadResult {
        stats: ctx.stats.into_inner(),
        last_done: ctx.last_done.get(),
    }
}

fn fmt_count(n: u64) -> String {
    crate::report::thousands(n)
}

/// Runs the load as the options say and returns the report (without printing it).
pub fn run(opts: &Opts) -> Result<Report, String> {
    let plan = Arc::new(Plan::from_opts(opts)?);
    let want_fds = plan.connections as u64 + 256;
    let fds = sys::raise_nofile(want_fds);
    if fds < want_fds {
        eprintln!(
            "certgate-loadgen: warning: the open-file limit is {fds}, below the {want_fds} this run may need"
        );
    }
    // Start slightly in the future so every thread is ready at the same instant.
    let start = Instant::now() + Duration::from_millis(30);
    let warm_end = start + plan.warmup;
    let ctl = Arc::new(Control {
        start,
        warm_end,
        end: if plan.mode == Mode::Idle {
            None
        } else {
            plan.duration.map(|d| warm_end + d)
        },
        taken: AtomicU64::new(0),
        budget: plan.max_requests,
        stop: AtomicBool::new(false),
        live: (0..plan.threads).map(|_| Live::default()).collect(),
    });
    let (hold_tx, hold_rx) = watch::channel(None::<Instant>);
    let mut handles = Vec::with_capacity(plan.threads);
    for i in 0..plan.threads {
        let (p, c, h) = (plan.clone(), ctl.clone(), hold_rx.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{i}"))
                .spawn(move || worker_thread(p, c, i, h))
                .map_err(|e| format!("cannot start a worker thread: {e}"))?,
        );
    }
    drop(hold_rx);

    let bar = plan.progress.then(|| progress_bar(&plan));
    let mut hold_start: Option<Instant> = None;
    let mut hold_end: Option<Instant> = None;
    let mut open_done: Option<Instant> = None;
    let mut interrupted = false;
    let mut rate_window: std::collections::VecDeque<(Instant, u64)> = Default::default();
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        if sys::interrupted() && !interrupted {
            interrupted = true;
            ctl.stop.store(true, Ordering::Relaxed);
            if plan.mode == Mode::Idle {
                hold_tx.send_replace(Some(now));
                if hold_end.is_some_and(|e| e > now) {
                    hold_end = Some(now);
                }
            }
        }
        let requests: u64 = ctl
            .live
            .iter()
            .map(|l| l.requests.load(Ordering::Relaxed))
            .sum();
        let errors: u64 = ctl
            .live
            .iter()
            .map(|l| l.errors.load(Ordering::Relaxed))
            .sum();
        if plan.mode == Mode::Idle && hold_start.is_none() {
            let done: u64 = ctl
                .live
                .iter()
                .map(|l| l.opened.load(Ordering::Relaxed))
                .sum();
            if done >= plan.connections as u64 {
                open_done = Some(now);
                hold_start = Some(now);
                if interrupted {
                    hold_end = Some(now);
                } else {
                    hold_end = Some(now + plan.hold);
                    hold_tx.send_replace(hold_end);
                }
            }
            if let Some(b) = &bar {
                b.set_length(plan.connections as u64);
                b.set_position(done);
                b.set_message(format!(
                    "opening   {} ok   {} errors",
                    fmt_count(requests - errors),
                    fmt_count(errors)
                ));
            }
            continue;
        }
        rate_window.push_back((now, requests));
        while rate_window.len() > 2 && now.duration_since(rate_window[0].0) > Duration::from_secs(1)
        {
            rate_window.pop_front();
        }
        if let Some(b) = &bar {
            let (t0, r0) = rate_window[0];
            let dt = now.duration_since(t0).as_secs_f64();
            let rate = if dt > 0.0 {
                (requests - r0) as f64 / dt
            } else {
                0.0
            };
            if let Some(hs) = hold_start {
                let held = now.saturating_duration_since(hs);
                b.set_length(nanos(plan.hold) / 1_000_000);
                b.set_position((nanos(held) / 1_000_000).min(nanos(plan.hold) / 1_000_000));
                b.set_message(format!(
                    "holding {} connections   {} errors",
                    fmt_count(requests - errors),
                    fmt_count(errors)
                ));
            } else {
                let phase = if now < warm_end { "  (warm-up)" } else { "" };
                match ctl.end {
                    Some(end) => {
                        let total = nanos(end.saturating_duration_since(start)) / 1_000_000;
                        b.set_length(total);
                        b.set_position(
                            (nanos(now.saturating_duration_since(start)) / 1_000_000).min(total),
                        );
                    }
                    None => {
                        b.set_length(plan.max_requests.unwrap_or(0));
                        b.set_position(ctl.taken.load(Ordering::Relaxed));
                    }
                }
                b.set_message(format!(
                    "{:>10.1} req/s   {} errors{phase}",
                    rate,
                    fmt_count(errors)
                ));
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let finished = Instant::now();
    let mut merged = Stats::new();
    let mut last_done: Option<Instant> = None;
    for h in handles {
        let r = h
            .join()
            .map_err(|_| "a worker thread panicked".to_string())?;
        merged.merge(&r.stats);
        if let Some(t) = r.last_done {
            last_done = Some(last_done.map_or(t, |l: Instant| l.max(t)));
        }
    }
    let timings = if plan.mode == Mode::Idle {
        let open_end = open_done.unwrap_or(finished);
        let hs = hold_start.unwrap_or(finished);
        Timings {
            measured: open_end.saturating_duration_since(start),
            warmup: Duration::ZERO,
            idle_open: Some(open_end.saturating_duration_since(start)),
            idle_hold: Some(
                hold_end
                    .unwrap_or(finished)
                    .min(finished)
                    .saturating_duration_since(hs),
            ),
        }
    } else {
        let end = last_done.unwrap_or(finished).max(warm_end);
        Timings {
            measured: end.saturating_duration_since(warm_end),
            warmup: plan.warmup,
            idle_open: None,
            idle_hold: None,
        }
    };
    Ok(build_report(opts, &plan, &merged, &timings, interrupted))
}

fn progress_bar(plan: &Plan) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(1);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(5));
    let template = if plan.mode != Mode::Idle && plan.duration.is_none() {
        "{spinner} {pos}/{len} requests [{wide_bar}] {msg}"
    } else {
        "{spinner} [{elapsed_precise}] [{wide_bar}] {msg}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
