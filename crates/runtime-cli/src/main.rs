//! berth-runtime: a thin runc-compatible command line over the berth-runtime library.

mod cli;
mod commands;
mod logging;
mod units;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let log = logging::Logger::new(cli.log.clone(), cli.log_format, cli.debug);
    let code = match commands::dispatch(cli, &log) {
        Ok(code) => code,
        Err(e) => {
            log.error(&format!("{e:#}"));
            1
        }
    };
    std::process::exit(code);
}
