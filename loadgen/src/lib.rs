//! certgate-loadgen: a load generator for TLS and mutual-TLS HTTP/1.1 servers.
//!
//! The binary is a thin wrapper around [`cli_main`]; [`run`] runs a load from parsed
//! [`Opts`] and returns the [`Report`], which is how the integration tests drive it.

pub mod cli;
pub mod http;
pub mod parse;
pub mod report;
pub mod run;
pub mod stats;
pub mod sys;
pub mod tls;
#[doc(hidden)]
pub mod trivial_server;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

pub use cli::{Mode, Opts};
pub use report::Report;
pub use run::run;

/// Writes the JSON report to `dest` (`-` for stdout).
pub fn write_json(report: &Report, dest: &str) -> Result<(), String> {
    let mut text =
        serde_json::to_string_pretty(report).map_err(|e| format!("cannot encode JSON: {e}"))?;
    text.push('\n');
    if dest == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write JSON to stdout: {e}"))
    } else {
        std::fs::write(dest, text).map_err(|e| format!("cannot write {dest}: {e}"))
    }
}

/// The command-line program: parse, run, print the summary and the JSON.
///
/// Exit status: 0 when the run completed, 1 when it completed without a single successful
/// request, 2 for invalid options or a setup failure (unreadable certificate, ...).
pub fn cli_main() -> ExitCode {
    let opts = Opts::parse();
    sys::install_sigint();
    let report = match run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("certgate-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let json_to_stdout = opts.json.as_deref() == Some("-");
    if !opts.quiet {
        let text = report::summary(&report);
        if json_to_stdout {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    } else {
        for (name, count) in &report.errors {
            eprintln!("certgate-loadgen: {count} errors {name}");
        }
    }
    if let Some(dest) = &opts.json {
        if let Err(e) = write_json(&report, dest) {
            eprintln!("certgate-loadgen: {e}");
            return ExitCode::from(2);
        }
    }
    if report.ok == 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
