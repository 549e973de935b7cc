//! The `dsm` binary: arguments in, exit code out.

/// Records in flight are many short-lived small allocations; see the reason in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(dsm::main(std::env::args_os().collect()))
}
