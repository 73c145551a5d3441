//! `aveloxis-agent`: see `aveloxis-agent --help` and docs/agent.md.

use std::process::ExitCode;

use aveloxis_agent::cli;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AVELOXIS_LOG")
                .unwrap_or_else(|_| "warn,sqlx::postgres::notice=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
