//! The `watchpost` binary: parse the command line and hand over to [`watchpost::cli`].

fn main() -> std::process::ExitCode {
    watchpost::cli::main()
}
