//! Writing to standard output and standard error without panicking.
//!
//! `println!` panics when standard output is a closed pipe (`sec-audit
//! check | true`): the command then died with exit 101 and a backtrace.
//! Here a closed standard output ends the command quietly with
//! [`crate::error::EXIT_CLOSED`] (what a shell reports for a tool stopped
//! by `SIGPIPE`), and a closed standard error drops the diagnostics: the
//! command goes on and exits with its own status.

use std::fmt;
use std::io::{self, Write};

use crate::error::CliError;

/// How `blocks list` and `check` print their result (`-o table|json`):
/// a table (lines) for people, or one JSON document for scripts (field
/// names in the CLI README).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Whether an I/O error means the reader went away (a closed pipe).
pub fn is_closed(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Writes to standard output: a closed pipe is [`CliError::Closed`], any
/// other failure a run-time error.
pub fn stdout(args: fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_fmt(args).and_then(|()| out.flush()).map_err(|e| {
        if is_closed(&e) {
            CliError::Closed
        } else {
            CliError::runtime(format!("writing to standard output failed: {e}"))
        }
    })
}

/// Writes to standard error; a failure (closed, full) is dropped: there is
/// nowhere left to report it.
pub fn stderr(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.flush());
}

/// `println!` to standard output, returning `Result<(), CliError>`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` to standard output, returning `Result<(), CliError>`.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that never panics.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::out::stderr(format_args!($($arg)*))
    };
}
