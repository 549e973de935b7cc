//! `tap-csv`: a built-in Singer plugin of dsm (being written).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(2)
}
