//! The `dsm` binary: arguments in, exit code out.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = dsm::cli::Cli::parse();
    std::process::ExitCode::from(dsm::run(cli))
}
