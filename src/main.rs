//! The `letterpress` binary: parses the command line and hands over to the
//! library. Exit status: 0 done, 2 usage error (clap), 1 anything else.

use std::process::ExitCode;

use clap::Parser;
use letterpress::cli::Cli;

fn main() -> ExitCode {
    letterpress::memory::limit_allocator_arenas();
    let cli = Cli::parse();
    letterpress::logging::init();
    let mut builder = if cli.single_threaded() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(letterpress::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", letterpress::error_message(&e));
            ExitCode::FAILURE
        }
    }
}
