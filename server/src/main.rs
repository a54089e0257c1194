//! `loralab`: the whole product in one binary. See `loralab --help`.

fn main() -> std::process::ExitCode {
    server::cli::main()
}
