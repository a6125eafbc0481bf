//! The `ldm` binary: parse, run, print the error, exit with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match ldm::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors are user errors (1), not clap's default 2,
            // which ldm reserves for store damage.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // A reader that goes away (`ldm up | head -1`) neither stops the
    // command half way nor decides its exit code (output.rs).
    let mut stdout = ldm::output::Stdout::new(std::io::stdout().lock());
    match ldm::run(cli, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        // The command already spoke for itself; only pass its code on.
        Err(ldm::Error::Exit(code)) => ExitCode::from(code.clamp(1, 255) as u8),
        Err(e) => {
            // Messages quote names and values from files: shown escaped.
            eprintln!(
                "error: {}",
                ldm::commands::text::escape_lines(&e.to_string())
            );
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
