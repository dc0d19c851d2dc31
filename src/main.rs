//! The `tact` binary: parses the command line, dispatches, prints the whole cause chain of
//! an error once, and turns the outcome into the contract's exit code (DESIGN §5).

mod cli;
mod globals;
mod tui;
mod viewer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => ExitCode::from(code),
        // `tact check … | head` closing the pipe early is not an error.
        Err(err)
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("tact: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(cli::exit_code_for(&err))
        }
    }
}
