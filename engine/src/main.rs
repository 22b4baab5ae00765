//! The `certgate` command: read the configuration, start the engine; nothing else.

use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("cert" | "thumbprint") => return certgate::cli::run(&args),
        Some("-h" | "--help" | "help") => {
            print!("{}", certgate::config::help_text());
            return ExitCode::SUCCESS;
        }
        Some("check-config") => {
            let file = std::env::args().nth(2);
            return ExitCode::from(certgate::config_file::check::run(file));
        }
        Some("-V" | "--version") => {
            println!("certgate {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("certgate: unknown argument {other:?} (see certgate --help)");
            return ExitCode::from(2);
        }
    }
    let config = match certgate::config::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("certgate: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log);
    match certgate::serve::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("certgate: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}
