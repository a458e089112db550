//! The `sec-audit` command as a library: the replay pipeline
//! ([`replay::Replayer`]), the configuration check, block management and
//! migrations. The binary (`src/main.rs`) is the argument parsing around it;
//! benchmarks drive the same replay pipeline through this crate.

pub mod blocks;
pub mod check_cmd;
pub mod error;
pub mod explain;
pub mod lines;
pub mod migrate;
pub mod out;
pub mod parse_ahead;
pub mod progress;
pub mod replay;
pub mod summary;
pub mod util;
pub mod window;
