//! Environment variables → a validated [`Config`]: every `CERTGATE_*` name lives here.
//!
//! Parsing is two steps, as everywhere in certgate: [`Config::from_vars`] turns
//! strings into typed values (an error names the variable and the problem), and
//! [`Config::validate`] checks what only makes sense as a whole, before
//! anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::revocation::{CrlSettings, CrlSource, MissingPolicy};

/// One documented environment variable.
pub struct Var {
    /// The full name, `CERTGATE_…`.
    pub name: &'static str,
    /// The default as shown in `--help`.
    pub default: &'static str,
    /// One line saying what it does.
    pub help: &'static str,
}

macro_rules! vars {
    ($($ident:ident = $name:literal, $default:literal, $help:literal;)*) => {
        $(#[doc = $help] pub const $ident: &str = $name;)*
        /// Every variable certgate reads, in `--help` order.
        pub const VARS: &[Var] = &[$(Var { name: $name, default: $default, help: $help }),*];
    };
}

vars! {
    LISTEN = "CERTGATE_LISTEN", "0.0.0.0:8443", "TLS listener address (every worker binds it with SO_REUSEPORT)";
    ADMIN_LISTEN = "CERTGATE_ADMIN_LISTEN", "127.0.0.1:9901", "admin listener: /metrics, /healthz, /reload and the certificate store API (docs/admin-api.md)";
    BACKEND = "CERTGATE_BACKEND", "(built-in echo)", "backend base URL, http://host:port";
    TLS_CERT = "CERTGATE_TLS_CERT", "(dev PKI)", "server certificate chain, PEM (leaf first)";
    TLS_KEY = "CERTGATE_TLS_KEY", "(dev PKI)", "server private key, PEM (ECDSA or RSA)";
    CLIENT_CA = "CERTGATE_CLIENT_CA", "(none)", "PEM bundle of trusted client-certificate roots and intermediates";
    CLIENT_CERT = "CERTGATE_CLIENT_CERT", "request if CLIENT_CA set, else off", "client certificate mode: off | optional | request | require";
    THUMBPRINTS = "CERTGATE_THUMBPRINTS", "(none)", "allowlist file: one SHA-1/SHA-256 thumbprint per line (hex or base64url)";
    MAX_CHAIN_DEPTH = "CERTGATE_MAX_CHAIN_DEPTH", "5", "intermediates allowed between a client certificate and its root (0: issued by the root itself)";
    VERIFY_CACHE_TTL_SECS = "CERTGATE_VERIFY_CACHE_TTL_SECS", "300", "lifetime of a cached verification verdict";
    VERIFY_CACHE_SIZE = "CERTGATE_VERIFY_CACHE_SIZE", "65536", "verdicts cached per worker";
    TICKET_ROTATE_SECS = "CERTGATE_TICKET_ROTATE_SECS", "3600", "session ticket key rotation period (previous key accepted one more period)";
    BACKEND_POOL = "CERTGATE_BACKEND_POOL", "64", "idle keep-alive backend connections kept per worker";
    BACKEND_TIMEOUT_MS = "CERTGATE_BACKEND_TIMEOUT_MS", "30000", "connect and response-head timeout towards the backend (504 after it)";
    MAX_HEADER_BYTES = "CERTGATE_MAX_HEADER_BYTES", "32768", "largest request line + headers accepted (431 beyond)";
    HANDSHAKE_TIMEOUT_MS = "CERTGATE_HANDSHAKE_TIMEOUT_MS", "10000", "time allowed to complete the TLS handshake";
    IDLE_TIMEOUT_MS = "CERTGATE_IDLE_TIMEOUT_MS", "60000", "idle keep-alive connections are closed after this";
    MAX_CONNECTIONS = "CERTGATE_MAX_CONNECTIONS", "65536", "open client connections per worker; new ones past it are refused";
    DRAIN_TIMEOUT_MS = "CERTGATE_DRAIN_TIMEOUT_MS", "10000", "on SIGTERM/SIGINT, how long requests in flight may finish";
    WORKERS = "CERTGATE_WORKERS", "(CPUs available)", "number of per-core worker threads";
    CPU_PIN = "CERTGATE_CPU_PIN", "0", "1 pins worker N to the N-th available CPU";
    BACKLOG = "CERTGATE_BACKLOG", "4096", "listen(2) backlog of each worker's socket";
    IO = "CERTGATE_IO", "auto", "io backend: auto | uring | epoll (auto falls back to epoll when io_uring is blocked)";
    URING_ENTRIES = "CERTGATE_URING_ENTRIES", "256", "io_uring submission queue entries per worker";
    URING_SQPOLL = "CERTGATE_URING_SQPOLL", "0", "1 enables a kernel submission-polling thread per worker";
    URING_SQPOLL_IDLE_MS = "CERTGATE_URING_SQPOLL_IDLE_MS", "1000", "with SQPOLL: how long the kernel thread polls an idle queue before it sleeps";
    URING_SQPOLL_CPU = "CERTGATE_URING_SQPOLL_CPU", "(unpinned)", "with SQPOLL: the CPU the kernel polling threads are pinned to";
    URING_ACCEPT_MULTISHOT = "CERTGATE_URING_ACCEPT_MULTISHOT", "0", "1: one multishot accept per listener keeps producing connections (kernel 5.19+)";
    URING_BUF_RING = "CERTGATE_URING_BUF_RING", "1", "1: receives take buffers from a per-worker provided-buffer ring, so idle connections hold no receive buffer (5.19+)";
    URING_BUF_RING_ENTRIES = "CERTGATE_URING_BUF_RING_ENTRIES", "256", "buffers in each worker's ring (a power of two)";
    URING_BUF_SIZE = "CERTGATE_URING_BUF_SIZE", "16384", "size of each ring buffer in bytes";
    URING_RECV_MULTISHOT = "CERTGATE_URING_RECV_MULTISHOT", "0", "1: one multishot receive per connection instead of one receive per read (needs the buffer ring; 6.0+)";
    URING_FIXED_FILES = "CERTGATE_URING_FIXED_FILES", "0", "1: client and backend sockets are registered with the ring (fixed files)";
    URING_SEND_ZC_MIN = "CERTGATE_URING_SEND_ZC_MIN", "0", "writes of at least this many bytes use zero-copy send (SEND_ZC, 6.0+); 0 disables";
    URING_FIXED_BUFFERS = "CERTGATE_URING_FIXED_BUFFERS", "0", "registered 64 KiB write buffers per worker that TLS records are written into and sent from (WRITE_FIXED); 0 disables";
    URING_TASKRUN = "CERTGATE_URING_TASKRUN", "coop", "how completion work that another CPU starts reaches a worker: interrupt | coop (waits for its next system call; 5.19+) | defer (waits until it asks, in one batch; 6.1+); ignored with SQPOLL";
    KTLS = "CERTGATE_KTLS", "auto", "kernel TLS record layer after the handshake: auto | on | off (auto uses it where the kernel lists tls in /proc/sys/net/ipv4/tcp_available_ulp)";
    STATE_DIR = "CERTGATE_STATE_DIR", "$XDG_STATE_HOME/certgate or ~/.local/state/certgate", "where the development PKI (and later the certificate store) lives";
    LOG = "CERTGATE_LOG", "info", "log filter (tracing EnvFilter syntax, e.g. info,certgate=debug)";
    CONFIG = "CERTGATE_CONFIG", "(none)", "TOML file: [defaults] for these variables, hosts, routes, policies (a set variable overrides its default)";
    ADMIN_TOKEN = "CERTGATE_ADMIN_TOKEN", "(none)", "bearer token for the admin API (every endpoint but /healthz); required when CERTGATE_ADMIN_LISTEN is not loopback";
    CERT_DIR = "CERTGATE_CERT_DIR", "(none)", "watched directory of certificates (<id>.pem|.crt|.cer|.der [+ <id>.key], <id>.pfx|.p12 [+ <id>.password], <id>/tls.crt [+ tls.key])";
    CA_DIR = "CERTGATE_CA_DIR", "(none)", "watched directory of trusted CA certificates (same layout as CERTGATE_CERT_DIR)";
    CERT_DIR_POLL_SECS = "CERTGATE_CERT_DIR_POLL_SECS", "5", "rescan period of CERTGATE_CERT_DIR and CERTGATE_CA_DIR (inotify applies changes sooner; this is the fallback)";
    CERT_PASSWORD = "CERTGATE_CERT_PASSWORD", "(none)", "certgate cert add / thumbprint: the PKCS#12/PFX password (instead of --password); the engine ignores it";
    CRL = "CERTGATE_CRL", "(none)", "comma-separated CRL sources: files (PEM or DER) and http:// URLs";
    CRL_FOLLOW_CDP = "CERTGATE_CRL_FOLLOW_CDP", "0", "1 also fetches (in the background) the CRL distribution points named by verified client certificates";
    CRL_REFRESH_SECS = "CERTGATE_CRL_REFRESH_SECS", "3600", "longest time between two reads of a CRL source (sooner at the CRL's nextUpdate)";
    CRL_GRACE_SECS = "CERTGATE_CRL_GRACE_SECS", "86400", "how long a CRL past its nextUpdate stays in force";
    CRL_MISSING = "CERTGATE_CRL_MISSING", "deny", "verdict when the issuer's CRL is missing or stale: deny | allow";
    KTLS_SPLICE = "CERTGATE_KTLS_SPLICE", "1", "1: on kernel-offloaded (kTLS) connections, Content-Length bodies move between the client and backend sockets by splice, without a user-space copy; 0 copies them";
}

/// A configuration problem, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable's value does not parse.
    #[error("{var}={value:?}: {problem}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What it was set to.
        value: String,
        /// Why that is wrong.
        problem: String,
    },
    /// A `CERTGATE_*` variable that certgate does not know (a typo would otherwise go unnoticed).
    #[error("unknown variable {0} (see certgate --help)")]
    Unknown(String),
    /// A variable that must be set given the others.
    #[error("{var} must be set: {why}")]
    Missing {
        /// The variable.
        var: &'static str,
        /// Which other setting requires it.
        why: &'static str,
    },
    /// The `CERTGATE_CONFIG` file cannot be read or has problems (each names file, line and key).
    #[error("{0}")]
    File(#[from] crate::config_file::FileError),
}

/// How the client certificate is asked for and enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCertMode {
    /// Not requested.
    Off,
    /// Requested; never rejected; the verdict goes to the backend in `X-Client-Cert-Verify`.
    Optional,
    /// Requested; without a valid certificate every request gets 403.
    Request,
    /// Required in the handshake: a missing or invalid certificate fails it with an alert.
    Require,
}

impl ClientCertMode {
    /// Parses `off`, `optional`, `request` or `require`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => Self::Off,
            "optional" => Self::Optional,
            "request" => Self::Request,
            "require" => Self::Require,
            _ => return None,
        })
    }

    /// The spelling used in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Optional => "optional",
            Self::Request => "request",
            Self::Require => "require",
        }
    }
}

/// Which io backend the workers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoChoice {
    /// io_uring when it can be set up, else epoll.
    Auto,
    /// io_uring or a start-up error.
    Uring,
    /// tokio's epoll reactor.
    Epoll,
}

/// Whether the record layer is handed to the kernel (kTLS) after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KtlsChoice {
    /// Where the kernel offers the `tls` ULP; user space elsewhere.
    Auto,
    /// Required: a kernel without the `tls` ULP is a start-up error.
    On,
    /// Never: records stay in BoringSSL.
    Off,
}

/// Where requests are proxied to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A plain-HTTP backend.
    Http {
        /// Its socket address.
        addr: SocketAddr,
        /// The `host:port` as configured, for logs.
        authority: String,
    },
    /// The built-in echo backend of the development mode.
    Echo,
}

/// The server's TLS material and the client-certificate trust inputs.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Server chain PEM.
    pub cert: PathBuf,
    /// Server key PEM.
    pub key: PathBuf,
    /// Client CA bundle PEM.
    pub client_ca: Option<PathBuf>,
    /// Thumbprint allowlist.
    pub thumbprints: Option<PathBuf>,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// TLS listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Backend.
    pub backend: Backend,
    /// TLS files; `None` until the development PKI fills them in (see [`Config::dev_mode`]).
    pub tls: Option<TlsFiles>,
    /// Client certificate mode.
    pub client_cert: ClientCertMode,
    /// Maximum chain depth.
    pub max_chain_depth: u32,
    /// Verdict cache lifetime.
    pub verify_cache_ttl: Duration,
    /// Verdict cache capacity per worker.
    pub verify_cache_size: usize,
    /// Ticket key rotation period.
    pub ticket_rotate: Duration,
    /// Idle backend connections per worker.
    pub backend_pool: usize,
    /// Backend connect / response-head timeout.
    pub backend_timeout: Duration,
    /// Request head limit.
    pub max_header_bytes: usize,
    /// Handshake deadline.
    pub handshake_timeout: Duration,
    /// Keep-alive idle limit.
    pub idle_timeout: Duration,
    /// Connection cap per worker.
    pub max_connections: usize,
    /// Drain time on shutdown.
    pub drain_timeout: Duration,
    /// Worker threads.
    pub workers: usize,
    /// Pin workers to CPUs.
    pub cpu_pin: bool,
    /// listen(2) backlog.
    pub backlog: i32,
    /// io backend choice.
    pub io: IoChoice,
    /// io_uring ring size and fast paths.
    pub uring: crate::runtime::uring::UringSettings,
    /// kTLS choice.
    pub ktls: KtlsChoice,
    /// Whether the kernel offers the `tls` ULP: probed once at start-up
    /// (`serve`), false until then. Connections are offloaded when this is
    /// true and `ktls` is not `Off`.
    pub ktls_available: bool,
    /// State directory.
    pub state_dir: PathBuf,
    /// Log filter.
    pub log: String,
    /// True when nothing was configured: development PKI and echo backend.
    pub dev_mode: bool,
    /// The `CERTGATE_CONFIG` file (hosts, routes, policies), when one is given.
    pub file: Option<std::sync::Arc<crate::config_file::FileConfig>>,
    /// Admin API bearer token.
    pub admin_token: Option<AdminToken>,
    /// Watched certificate directory.
    pub cert_dir: Option<PathBuf>,
    /// Watched CA certificate directory.
    pub ca_dir: Option<PathBuf>,
    /// Rescan period of the watched directories.
    pub cert_dir_poll: Duration,
    /// Revocation: CRL sources, refresh, grace and the missing-CRL policy.
    pub crl: CrlSettings,
    /// Splice Content-Length bodies of kTLS connections socket to socket.
    pub ktls_splice: bool,
}

/// The admin bearer token; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

struct Vars(BTreeMap<String, String>);

impl Vars {
    fn get(&self, var: &str) -> Option<&str> {
        self.0
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e: T::Err| invalid(var, v, e.to_string())),
        }
    }

    fn millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parse(var, default).map(Duration::from_millis)
    }

    fn secs(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parse(var, default).map(Duration::from_secs)
    }

    fn flag(&self, var: &'static str) -> Result<bool, ConfigError> {
        match self.get(var) {
            None | Some("0" | "false" | "off" | "no") => Ok(false),
            Some("1" | "true" | "on" | "yes") => Ok(true),
            Some(v) => Err(invalid(
                var,
                v,
                "expected 1 (or true, on, yes) or 0 (or false, off, no)".into(),
            )),
        }
    }

    /// A flag that is on unless set to 0.
    fn flag_on(&self, var: &'static str) -> Result<bool, ConfigError> {
        match self.get(var) {
            None => Ok(true),
            Some(_) => self.flag(var),
        }
    }

    fn path(&self, var: &'static str) -> Option<PathBuf> {
        self.get(var).map(PathBuf::from)
    }
}

fn invalid(var: &'static str, value: &str, problem: String) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_string(),
        problem,
    }
}

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Parse from any set of variables (tests pass their own).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut vars = Vars(
            vars.into_iter()
                .filter(|(k, _)| k.starts_with("CERTGATE_"))
                .collect(),
        );
        // The file's [defaults] fill in what the environment leaves unset (or empty).
        let file = match vars.path(CONFIG) {
            None => None,
            Some(path) => {
                let file = crate::config_file::FileConfig::load(&path)?;
                for (name, value) in &file.defaults {
                    if vars.get(name).is_none() {
                        vars.0.insert(name.clone(), value.value.clone());
                    }
                }
                Some(std::sync::Arc::new(file))
            }
        };
        if let Some(unknown) = vars
            .0
            .keys()
            .find(|k| !VARS.iter().any(|v| v.name == k.as_str()))
        {
            return Err(ConfigError::Unknown(unknown.clone()));
        }

        let dev_mode = [TLS_CERT, TLS_KEY, CLIENT_CA, BACKEND]
            .iter()
            .all(|v| vars.get(v).is_none());

        let backend = match vars.get(BACKEND) {
            None if dev_mode => Backend::Echo,
            None => {
                return Err(ConfigError::Missing {
                    var: BACKEND,
                    why: "TLS is configured (the built-in echo backend is only for the zero-configuration mode)",
                })
            }
            Some(url) => parse_backend(url)?,
        };

        let tls =
            match (vars.path(TLS_CERT), vars.path(TLS_KEY)) {
                (None, None) if dev_mode => None,
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert,
                    key,
                    client_ca: vars.path(CLIENT_CA),
                    thumbprints: vars.path(THUMBPRINTS),
                }),
                (None, _) => return Err(ConfigError::Missing {
                    var: TLS_CERT,
                    why: "outside the zero-configuration mode the server certificate must be given",
                }),
                (Some(_), None) => {
                    return Err(ConfigError::Missing {
                        var: TLS_KEY,
                        why: "CERTGATE_TLS_CERT is set",
                    })
                }
            };

        let client_cert = match vars.get(CLIENT_CERT) {
            Some(v) => ClientCertMode::parse(v).ok_or_else(|| {
                invalid(
                    CLIENT_CERT,
                    v,
                    "expected off, optional, request or require".into(),
                )
            })?,
            None if dev_mode || vars.get(CLIENT_CA).is_some() => ClientCertMode::Request,
            None => ClientCertMode::Off,
        };

        let io = match vars.get(IO) {
            None | Some("auto") => IoChoice::Auto,
            Some("uring") => IoChoice::Uring,
            Some("epoll") => IoChoice::Epoll,
            Some(v) => return Err(invalid(IO, v, "expected auto, uring or epoll".into())),
        };

        let ktls = match vars.get(KTLS) {
            None | Some("auto") => KtlsChoice::Auto,
            Some("on") => KtlsChoice::On,
            Some("off") => KtlsChoice::Off,
            Some(v) => return Err(invalid(KTLS, v, "expected auto, on or off".into())),
        };

        let workers = match vars.get(WORKERS) {
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(_) => vars.parse(WORKERS, 1usize)?,
        };

        let config = Config {
            listen: vars.parse(LISTEN, SocketAddr::from(([0, 0, 0, 0], 8443)))?,
            admin_listen: vars.parse(ADMIN_LISTEN, SocketAddr::from(([127, 0, 0, 1], 9901)))?,
            backend,
            tls,
            client_cert,
            max_chain_depth: vars.parse(MAX_CHAIN_DEPTH, 5)?,
            verify_cache_ttl: vars.secs(VERIFY_CACHE_TTL_SECS, 300)?,
            verify_cache_size: vars.parse(VERIFY_CACHE_SIZE, 65536)?,
            ticket_rotate: vars.secs(TICKET_ROTATE_SECS, 3600)?,
            backend_pool: vars.parse(BACKEND_POOL, 64)?,
            backend_timeout: vars.millis(BACKEND_TIMEOUT_MS, 30_000)?,
            max_header_bytes: vars.parse(MAX_HEADER_BYTES, 32 * 1024)?,
            handshake_timeout: vars.millis(HANDSHAKE_TIMEOUT_MS, 10_000)?,
            idle_timeout: vars.millis(IDLE_TIMEOUT_MS, 60_000)?,
            max_connections: vars.parse(MAX_CONNECTIONS, 65536)?,
            drain_timeout: vars.millis(DRAIN_TIMEOUT_MS, 10_000)?,
            workers,
            cpu_pin: vars.flag(CPU_PIN)?,
            backlog: vars.parse(BACKLOG, 4096)?,
            io,
            uring: crate::runtime::uring::UringSettings {
                entries: vars.parse(URING_ENTRIES, 256)?,
                sqpoll: vars.flag(URING_SQPOLL)?,
                sqpoll_idle: vars.millis(URING_SQPOLL_IDLE_MS, 1000)?,
                sqpoll_cpu: match vars.get(URING_SQPOLL_CPU) {
                    None => None,
                    Some(_) => Some(vars.parse(URING_SQPOLL_CPU, 0u32)?),
                },
                accept_multishot: vars.flag(URING_ACCEPT_MULTISHOT)?,
                buf_ring: vars.flag_on(URING_BUF_RING)?,
                buf_ring_entries: vars.parse(URING_BUF_RING_ENTRIES, 256)?,
                buf_size: vars.parse(URING_BUF_SIZE, 16384)?,
                recv_multishot: vars.flag(URING_RECV_MULTISHOT)?,
                fixed_files: vars.flag(URING_FIXED_FILES)?,
                send_zc_min: vars.parse(URING_SEND_ZC_MIN, 0)?,
                fixed_buffers: vars.parse(URING_FIXED_BUFFERS, 0)?,
                taskrun: match vars.get(URING_TASKRUN) {
                    None => crate::runtime::uring::TaskRun::Coop,
                    Some(v) => crate::runtime::uring::TaskRun::parse(v).ok_or_else(|| {
                        invalid(URING_TASKRUN, v, "expected interrupt, coop or defer".into())
                    })?,
                },
            },
            ktls,
            ktls_available: false,
            state_dir: vars.path(STATE_DIR).unwrap_or_else(default_state_dir),
            log: vars.get(LOG).unwrap_or("info").to_string(),
            dev_mode,
            file,
            admin_token: vars.get(ADMIN_TOKEN).map(|t| AdminToken(t.to_string())),
            cert_dir: vars.path(CERT_DIR),
            ca_dir: vars.path(CA_DIR),
            cert_dir_poll: vars.secs(CERT_DIR_POLL_SECS, 5)?,
            crl: parse_crl(&vars)?,
            ktls_splice: vars.flag_on(KTLS_SPLICE)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks across fields and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = |var: &'static str, value: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err(invalid(
                    var,
                    &value.to_string(),
                    format!("must be between {lo} and {hi}"),
                ))
            }
        };
        range(WORKERS, self.workers as u64, 1, 1024)?;
        range(MAX_CHAIN_DEPTH, self.max_chain_depth.into(), 0, 16)?;
        range(
            MAX_HEADER_BYTES,
            self.max_header_bytes as u64,
            1024,
            1 << 20,
        )?;
        range(URING_ENTRIES, self.uring.entries.into(), 8, 32768)?;
        range(
            URING_BUF_RING_ENTRIES,
            self.uring.buf_ring_entries.into(),
            1,
            32768,
        )?;
        if !self.uring.buf_ring_entries.is_power_of_two() {
            return Err(invalid(
                URING_BUF_RING_ENTRIES,
                &self.uring.buf_ring_entries.to_string(),
                "must be a power of two".into(),
            ));
        }
        range(URING_BUF_SIZE, self.uring.buf_size.into(), 1024, 1 << 20)?;
        range(
            URING_FIXED_BUFFERS,
            self.uring.fixed_buffers.into(),
            0,
            16384,
        )?;
        range(
            URING_SQPOLL_IDLE_MS,
            self.uring.sqpoll_idle.as_millis() as u64,
            1,
            60_000,
        )?;
        range(BACKLOG, self.backlog as u64, 1, 1 << 20)?;
        range(MAX_CONNECTIONS, self.max_connections as u64, 1, 1 << 24)?;
        range(VERIFY_CACHE_SIZE, self.verify_cache_size as u64, 1, 1 << 24)?;
        range(
            TICKET_ROTATE_SECS,
            self.ticket_rotate.as_secs(),
            1,
            7 * 86400,
        )?;
        range(
            HANDSHAKE_TIMEOUT_MS,
            self.handshake_timeout.as_millis() as u64,
            1,
            3_600_000,
        )?;
        range(
            IDLE_TIMEOUT_MS,
            self.idle_timeout.as_millis() as u64,
            1,
            86_400_000,
        )?;
        range(
            BACKEND_TIMEOUT_MS,
            self.backend_timeout.as_millis() as u64,
            1,
            3_600_000,
        )?;
        range(CERT_DIR_POLL_SECS, self.cert_dir_poll.as_secs(), 1, 86_400)?;
        match &self.admin_token {
            None if !self.admin_listen.ip().is_loopback() => {
                return Err(ConfigError::Missing {
                    var: ADMIN_TOKEN,
                    why: "CERTGATE_ADMIN_LISTEN is not a loopback address, and the admin API \
                          (certificate store, reload) must not be open to the network without a bearer token",
                })
            }
            Some(t) if t.0.len() < 16 || t.0.chars().any(|c| !c.is_ascii_graphic()) => {
                return Err(invalid(
                    ADMIN_TOKEN,
                    "(hidden)",
                    "must be at least 16 printable ASCII characters without spaces".into(),
                ))
            }
            _ => {}
        }
        range(CRL_REFRESH_SECS, self.crl.refresh.as_secs(), 1, 7 * 86400)?;
        range(CRL_GRACE_SECS, self.crl.grace.as_secs(), 0, 30 * 86400)?;
        if self.client_cert != ClientCertMode::Off {
            let has_ca = self.tls.as_ref().is_none_or(|t| t.client_ca.is_some());
            if !has_ca {
                return Err(ConfigError::Missing {
                    var: CLIENT_CA,
                    why: "CERTGATE_CLIENT_CERT asks for client certificates",
                });
            }
        }
        if self.client_cert == ClientCertMode::Off
            && self.tls.as_ref().is_some_and(|t| t.thumbprints.is_some())
        {
            return Err(invalid(
                CLIENT_CERT,
                "off",
                "CERTGATE_THUMBPRINTS is set but client certificates are off".into(),
            ));
        }
        Ok(())
    }
}

fn parse_crl(vars: &Vars) -> Result<CrlSettings, ConfigError> {
    let sources = match vars.get(CRL) {
        None => Vec::new(),
        Some(list) => CrlSource::parse_list(list).map_err(|problem| invalid(CRL, list, problem))?,
    };
    let missing = match vars.get(CRL_MISSING) {
        None => MissingPolicy::Deny,
        Some(v) => MissingPolicy::parse(v.trim())
            .ok_or_else(|| invalid(CRL_MISSING, v, "expected deny or allow".into()))?,
    };
    Ok(CrlSettings {
        sources,
        follow_cdp: vars.flag(CRL_FOLLOW_CDP)?,
        refresh: vars.secs(CRL_REFRESH_SECS, 3600)?,
        grace: vars.secs(CRL_GRACE_SECS, 86_400)?,
        missing,
        ..CrlSettings::default()
    })
}

/// Parses `http://host:port` (resolving the host); errors name `CERTGATE_BACKEND`.
pub(crate) fn parse_backend(url: &str) -> Result<Backend, ConfigError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        invalid(
            BACKEND,
            url,
            "expected http://host:port (https backends are not supported yet)".into(),
        )
    })?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(invalid(
            BACKEND,
            url,
            "a path prefix is not supported".into(),
        ));
    }
    use std::net::ToSocketAddrs;
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| invalid(BACKEND, url, format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| invalid(BACKEND, url, "resolves to no address".into()))?;
    Ok(Backend::Http {
        addr,
        authority: with_port,
    })
}

fn default_state_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("certgate");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/certgate"),
        None => PathBuf::from("/var/lib/certgate"),
    }
}

/// The `--help` text: usage and every variable with its default.
pub fn help_text() -> String {
    let mut s = String::from(
        "certgate: TLS termination with client-certificate authentication\n\n\
         USAGE:\n    certgate            run (configured by CERTGATE_* environment variables)\n    \
         certgate --help     this text\n    certgate --version\n    \
         certgate check-config [FILE]   validate a CERTGATE_CONFIG file, print the effective configuration\n    \
         certgate cert add|list|delete ...   manage the certificate store through the admin API\n    \
         certgate thumbprint FILE            SHA-1/SHA-256 thumbprints (hex, x5t, x5t#S256)\n\n\
         With no configuration at all, certgate generates a development PKI in the state\n\
         directory and proxies to a built-in echo backend.\n\nENVIRONMENT:\n",
    );
    for v in VARS {
        s.push_str(&format!(
            "    {:<32} {}\n    {:<32}   default: {}\n",
            v.name, v.help, "", v.default
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn empty_environment_is_dev_mode() {
        let c = cfg(&[]).unwrap();
        assert!(c.dev_mode);
        assert_eq!(c.backend, Backend::Echo);
        assert_eq!(c.client_cert, ClientCertMode::Request);
        assert_eq!(c.listen.port(), 8443);
    }

    #[test]
    fn unknown_variable_is_named() {
        let e = cfg(&[("CERTGATE_LISTN", "1")]).unwrap_err().to_string();
        assert!(e.contains("CERTGATE_LISTN"), "{e}");
    }

    #[test]
    fn ktls_choice_defaults_to_auto_and_is_not_probed_here() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.ktls, KtlsChoice::Auto);
        assert!(
            !c.ktls_available,
            "the kernel is probed at start-up, not while parsing"
        );
        for (v, want) in [
            ("auto", KtlsChoice::Auto),
            ("on", KtlsChoice::On),
            ("off", KtlsChoice::Off),
        ] {
            assert_eq!(cfg(&[(KTLS, v)]).unwrap().ktls, want, "{v}");
        }
        let e = cfg(&[(KTLS, "yes")]).unwrap_err().to_string();
        assert!(e.contains("expected auto, on or off"), "{e}");
    }

    #[test]
    fn uring_task_runs_default_to_coop() {
        use crate::runtime::uring::TaskRun;
        assert_eq!(cfg(&[]).unwrap().uring.taskrun, TaskRun::Coop);
        for (v, want) in [
            ("interrupt", TaskRun::Interrupt),
            ("coop", TaskRun::Coop),
            ("defer", TaskRun::Defer),
        ] {
            assert_eq!(
                cfg(&[(URING_TASKRUN, v)]).unwrap().uring.taskrun,
                want,
                "{v}"
            );
        }
        let e = cfg(&[(URING_TASKRUN, "1")]).unwrap_err().to_string();
        assert!(e.contains("CERTGATE_URING_TASKRUN"), "{e}");
        assert!(e.contains("expected interrupt, coop or defer"), "{e}");
    }

    #[test]
    fn ktls_splice_is_on_unless_turned_off() {
        assert!(cfg(&[]).unwrap().ktls_splice);
        assert!(!cfg(&[(KTLS_SPLICE, "0")]).unwrap().ktls_splice);
        assert!(cfg(&[(KTLS_SPLICE, "1")]).unwrap().ktls_splice);
        let e = cfg(&[(KTLS_SPLICE, "2")]).unwrap_err().to_string();
        assert!(e.contains(KTLS_SPLICE), "{e}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, val) in [
            (LISTEN, "nope"),
            (WORKERS, "0"),
            (CLIENT_CERT, "maybe"),
            (IO, "kqueue"),
            (KTLS, "maybe"),
            (CPU_PIN, "2"),
        ] {
            let e = cfg(&[(var, val)]).unwrap_err().to_string();
            assert!(e.contains(var), "{var}: {e}");
        }
    }

    #[test]
    fn production_needs_backend_and_key() {
        let e = cfg(&[(TLS_CERT, "/c.pem"), (TLS_KEY, "/k.pem")]).unwrap_err();
        assert!(e.to_string().contains(BACKEND));
        let e = cfg(&[(TLS_CERT, "/c.pem"), (BACKEND, "http://127.0.0.1:1")]).unwrap_err();
        assert!(e.to_string().contains(TLS_KEY));
        let c = cfg(&[
            (TLS_CERT, "/c.pem"),
            (TLS_KEY, "/k.pem"),
            (BACKEND, "http://127.0.0.1:8080"),
        ])
        .unwrap();
        assert_eq!(c.client_cert, ClientCertMode::Off);
        assert!(!c.dev_mode);
    }

    #[test]
    fn client_ca_defaults_to_request_and_mode_needs_ca() {
        let base = [
            (TLS_CERT, "/c.pem"),
            (TLS_KEY, "/k.pem"),
            (BACKEND, "http://127.0.0.1:8080"),
        ];
        let mut with_ca = base.to_vec();
        with_ca.push((CLIENT_CA, "/ca.pem"));
        assert_eq!(cfg(&with_ca).unwrap().client_cert, ClientCertMode::Request);
        let mut no_ca = base.to_vec();
        no_ca.push((CLIENT_CERT, "require"));
        assert!(cfg(&no_ca).unwrap_err().to_string().contains(CLIENT_CA));
    }

    #[test]
    fn backend_url_forms() {
        assert!(
            matches!(parse_backend("http://127.0.0.1:9000"), Ok(Backend::Http { addr, .. }) if addr.port() == 9000)
        );
        assert!(
            matches!(parse_backend("http://127.0.0.1/"), Ok(Backend::Http { addr, .. }) if addr.port() == 80)
        );
        assert!(parse_backend("https://127.0.0.1:1").is_err());
        assert!(parse_backend("http://127.0.0.1:1/api").is_err());
    }

    #[test]
    fn non_loopback_admin_needs_a_token() {
        let e = cfg(&[(ADMIN_LISTEN, "0.0.0.0:9901")])
            .unwrap_err()
            .to_string();
        assert!(e.contains(ADMIN_TOKEN) && e.contains("loopback"), "{e}");
        let e = cfg(&[(ADMIN_LISTEN, "0.0.0.0:9901"), (ADMIN_TOKEN, "short")])
            .unwrap_err()
            .to_string();
        assert!(e.contains(ADMIN_TOKEN) && !e.contains("short"), "{e}");
        let c = cfg(&[
            (ADMIN_LISTEN, "0.0.0.0:9901"),
            (ADMIN_TOKEN, "0123456789abcdef0123"),
        ])
        .unwrap();
        assert_eq!(c.admin_token.as_ref().map(|t| t.0.len()), Some(20));
        assert!(!format!("{c:?}").contains("0123456789abcdef0123"));
        assert!(cfg(&[(ADMIN_LISTEN, "[::1]:9901")]).is_ok());
        assert_eq!(cfg(&[]).unwrap().cert_dir_poll, Duration::from_secs(5));
        let e = cfg(&[(CERT_DIR_POLL_SECS, "0")]).unwrap_err().to_string();
        assert!(e.contains(CERT_DIR_POLL_SECS), "{e}");
    }

    #[test]
    fn crl_variables() {
        let c = cfg(&[]).unwrap();
        assert!(!c.crl.is_configured());
        assert_eq!(c.crl.refresh, Duration::from_secs(3600));
        assert_eq!(c.crl.grace, Duration::from_secs(86_400));
        assert_eq!(c.crl.missing, MissingPolicy::Deny);
        let c = cfg(&[
            (CRL, "/etc/certgate/a.crl, http://127.0.0.1:8080/b.crl"),
            (CRL_FOLLOW_CDP, "1"),
            (CRL_REFRESH_SECS, "600"),
            (CRL_GRACE_SECS, "0"),
            (CRL_MISSING, "allow"),
        ])
        .unwrap();
        assert_eq!(
            c.crl.sources,
            [
                CrlSource::File("/etc/certgate/a.crl".into()),
                CrlSource::Url("http://127.0.0.1:8080/b.crl".into())
            ]
        );
        assert!(c.crl.follow_cdp && c.crl.is_configured());
        assert_eq!(c.crl.refresh, Duration::from_secs(600));
        assert_eq!(c.crl.grace, Duration::ZERO);
        assert_eq!(c.crl.missing, MissingPolicy::Allow);
        for (var, val) in [
            (CRL, "https://crl.example/a.crl"),
            (CRL_MISSING, "maybe"),
            (CRL_REFRESH_SECS, "0"),
            (CRL_GRACE_SECS, "-1"),
            (CRL_FOLLOW_CDP, "2"),
        ] {
            let e = cfg(&[(var, val)]).unwrap_err().to_string();
            assert!(e.contains(var), "{var}: {e}");
        }
    }

    #[test]
    fn help_lists_every_variable() {
        let h = help_text();
        for v in VARS {
            assert!(h.contains(v.name));
        }
    }
}
