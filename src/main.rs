//! The `dsm` binary: arguments in, exit code out.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(dsm::main(std::env::args_os().collect()))
}
