//! `sec-audit`: replay an audit log through the rules, check a
//! configuration, manage blocks, run the Postgres migrations, serve
//! decisions and ingest over HTTP.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// mimalloc instead of the system allocator: replay allocates each event
/// on its parsing thread and frees it on the evaluating one, which glibc's
/// per-thread arenas make slow (measured in docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sec_audit_cli::{blocks, check_cmd, error, explain, migrate, replay};

use sec_audit_cli::blocks::{parse_contains, parse_since, Since};
use sec_audit_cli::error::{CliError, EXIT_OK};
use sec_audit_cli::out::Format;
use sec_audit_cli::util::{default_actor, load_config, parse_ttl, OutputTarget};

const EXIT_CODES: &str = "\
Exit status:
  0  the command completed (a replay that found attacks still exits 0)
  1  run-time failure: reading the log, writing the output, a store or
     server that did not answer, a live check that found a problem
  2  usage or configuration error: bad arguments, an unreadable or invalid
     configuration (the message names the key), a check with an error finding
  3  a replay that completed, but store failures decided some outcomes
     (counted in its summary)
  141  standard output was closed by its reader (`... | head`): stopped
     quietly, no message

Environment:
  SEC_AUDIT_REDIS_URL, DATABASE_URL  override the configuration's URLs
  RUST_LOG                           diagnostics filter (overrides -v)";

#[derive(Debug, Parser)]
#[command(
    name = "sec-audit",
    version,
    about = "Security-audit enforcement from the shell: replay an audit log through the rules, check a configuration, manage blocks, run migrations, serve decisions over HTTP",
    after_help = EXIT_CODES,
    propagate_version = true
)]
struct Cli {
    /// More diagnostics on standard error (-v warnings, -vv info, -vvv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Replay(ReplayArgs),
    Explain(ExplainArgs),
    Check(CheckArgs),
    #[command(subcommand)]
    Blocks(BlocksCommand),
    Migrate(MigrateArgs),
    Serve(ServeArgs),
}

/// Runs the whole pipeline over an audit log as if enforcement had been live
/// when it was written: what would have been blocked, whom, by which rule?
///
/// The log (JSONL: OTel log records or bare attribute objects, `timestamp` in
/// integer nanoseconds) is the clock. Each request's first event gets the
/// ingress pass (a block hit or a blocking ingress rule denies the request
/// and drops its events); every other event gets the egress pass.
///
/// Replay always enforces: it sets `enabled = true` on the loaded
/// configuration, whatever the file says, because its question is what the
/// rules would have done. Stores are the configuration's: memory by default,
/// or Redis/Postgres when named (blocks written there are real).
///
/// Enforcement events go to standard output (or --output, truncated) as OTel
/// JSONL, stamped with the replay clock; the same input and configuration
/// give byte-identical output. Rejected lines (not JSON, not an object, no
/// event_type, no integer timestamp, longer than --max-line-bytes) are
/// counted and reported, never fatal. The summary goes to standard error.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
struct ReplayArgs {
    /// The enforcement configuration (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// The audit log (JSONL), or `-` for standard input.
    #[arg(value_name = "LOG|-")]
    log: String,
    /// Write enforcement events to FILE (created or truncated) instead of
    /// standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Never show the progress line (it is shown only on a terminal, for runs
    /// longer than a second).
    #[arg(long)]
    no_progress: bool,
    /// How many recent distinct request ids are remembered (at least 100000).
    #[arg(long, value_name = "N", default_value_t = replay::MIN_REQUEST_WINDOW as u64,
          value_parser = clap::value_parser!(u64).range(replay::MIN_REQUEST_WINDOW as u64..))]
    request_window: u64,
    /// Lines longer than this are rejected without being buffered.
    #[arg(long, value_name = "BYTES", default_value_t = replay::DEFAULT_MAX_LINE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1024..=(1u64 << 30)))]
    max_line_bytes: u64,
}

/// Explains what the engine decided for chosen events of a log, and why:
/// for tuning a rule before arming it.
///
/// The log is replayed as `sec-audit replay` would (the log as the clock,
/// the same request window), always on memory stores: nothing is written to
/// the configured Redis or Postgres. For each chosen event, in order: the
/// ingress pass (a request's first event: the block it hit, the ingress-safe
/// rules), then the egress pass — each rule that ran or why it was skipped,
/// what it read (counters, history rows), whether it matched with its
/// evidence, the action the match resolved to and which configuration entry
/// decided it (rule_actions, block_rules, the built-in default) — and the
/// enforcement records the event produced.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
#[command(group(clap::ArgGroup::new("select").required(true).args(["line", "request_id", "subject"])))]
struct ExplainArgs {
    /// The enforcement configuration (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// The audit log (JSONL), or `-` for standard input.
    #[arg(value_name = "LOG|-")]
    log: String,
    /// Explain the event on line N (1-based); the log is read up to it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    line: Option<u64>,
    /// Explain every event of this request id.
    #[arg(long, value_name = "ID")]
    request_id: Option<String>,
    /// Explain every event of this subject (SCOPE:VALUE, e.g. ip:192.0.2.1
    /// or user:alice).
    #[arg(long, value_name = "SCOPE:VALUE")]
    subject: Option<String>,
    /// Explain at most N chosen events (the rest are counted).
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,
    /// Lines longer than this are rejected without being buffered.
    #[arg(long, value_name = "BYTES", default_value_t = replay::DEFAULT_MAX_LINE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1024..=(1u64 << 30)))]
    max_line_bytes: u64,
}

/// Checks a configuration and prints the findings, one per line
/// (W001-W006 warnings, E001-E002 errors). With --live, also connects to the
/// configured Redis (over TLS for rediss://) and Postgres and reports
/// reachability, migration state, the Redis version (E002 when older than
/// 6.2), Redis's maxmemory-policy (W004 when it evicts keys) and safelisted
/// subjects that are blocked in the store all the same (W006).
///
/// Exit status: 0 no errors, 2 an error finding, 1 a live problem
/// (unreachable server, pending migrations).
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
struct CheckArgs {
    /// The enforcement configuration (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Also connect to Redis and Postgres.
    #[arg(long)]
    live: bool,
    /// `table`: one finding per line; `json`: one JSON document (findings,
    /// live lines, counts, exit status).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Manages blocks in the stores the configuration names (memory, Redis,
/// Postgres): list, add, revoke, export, import.
#[derive(Debug, Subcommand)]
enum BlocksCommand {
    List(ListArgs),
    Add(AddArgs),
    Revoke(RevokeArgs),
    Export(ExportArgs),
    Import(ImportArgs),
}

/// Which blocks to select (list, export).
#[derive(Debug, Args)]
struct SelectArgs {
    /// The enforcement configuration (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Only this scope (ip, user, session, …).
    #[arg(long)]
    scope: Option<String>,
    /// Only this value's own entry (needs --scope; for ip an address or a
    /// CIDR range).
    #[arg(long, requires = "scope", conflicts_with = "contains")]
    value: Option<String>,
    /// Only blocks written by this rule (`manual`: the block API).
    #[arg(long, value_name = "RULE")]
    rule: Option<String>,
    /// Only blocks created since: a duration back from now (90s, 15m, 2h,
    /// 7d) or an RFC 3339 time (2026-05-28T20:00:00Z).
    #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
    since: Option<Since>,
    /// Only the block of this IP address and every range covering it,
    /// most specific first (what the ingress check would find first).
    #[arg(long, value_name = "IP", value_parser = parse_contains)]
    contains: Option<std::net::IpAddr>,
}

impl SelectArgs {
    fn query(&self) -> blocks::Query {
        blocks::Query {
            scope: self.scope.clone(),
            value: self.value.clone(),
            rule: self.rule.clone(),
            since: self.since,
            contains: self.contains,
        }
    }
}

/// Lists active blocks: permanent, then temporary (a SCAN on Redis), as a
/// table or a JSON array.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
struct ListArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// `table`, or `json`: one JSON array of block objects.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The same as `-o json`.
    #[arg(long, conflicts_with = "format")]
    json: bool,
}

/// Writes the selected active blocks (the `list` filters) as JSON lines on
/// standard output: one block per line, with everything `blocks import`
/// needs to recreate it (kind, expires_at and ttl_left, reason, rule,
/// status, message, metadata).
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
struct ExportArgs {
    #[command(flatten)]
    select: SelectArgs,
}

/// Recreates blocks from JSON lines (as `blocks export` writes them) through
/// the block API. Every line is validated first: with any bad line (named
/// by its number) nothing is imported. Blocks already as the line says are
/// skipped, so importing a file again changes nothing; temporary blocks
/// already expired are skipped. Emits `block_applied` for each block written.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
struct ImportArgs {
    /// The enforcement configuration (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// The JSON lines, or `-` for standard input.
    #[arg(value_name = "FILE|-", default_value = "-")]
    input: String,
    /// Who imports (default: cli:$USER); the block's previous actor is kept
    /// as `original_actor` in its metadata.
    #[arg(long)]
    actor: Option<String>,
    /// Append enforcement events to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Blocks a scope value: temporary with --ttl, permanent without. Emits
/// `audit.enforcement.block_applied` (rule name `manual`).
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
struct AddArgs {
    /// The enforcement configuration (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// The scope to block: ip, user, session (or a custom block-eligible one).
    #[arg(long)]
    scope: String,
    /// The value: an IP address or a CIDR range (10.0.0.0/24, 2001:db8::/48;
    /// host bits must be zero), a user id, a session id.
    #[arg(long)]
    value: String,
    /// Lifetime: seconds, or with a unit (90s, 15m, 2h, 7d). Absent: permanent.
    #[arg(long, value_parser = parse_ttl)]
    ttl: Option<u64>,
    /// Why (kept with the block).
    #[arg(long)]
    reason: String,
    /// Who blocks (default: cli:$USER).
    #[arg(long)]
    actor: Option<String>,
    /// Response status for denied requests (default: the configuration's).
    #[arg(long, value_parser = clap::value_parser!(u16).range(100..=599))]
    status_code: Option<u16>,
    /// Response message for denied requests (default: the configuration's).
    #[arg(long)]
    message: Option<String>,
    /// Append enforcement events to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Revokes a scope value's blocks in every tier. Emits
/// `audit.enforcement.block_revoked` when something was removed; revoking
/// nothing is not an error.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
struct RevokeArgs {
    /// The enforcement configuration (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    #[arg(long)]
    scope: String,
    #[arg(long)]
    value: String,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: String,
    /// Who revokes (default: cli:$USER).
    #[arg(long)]
    revoked_by: Option<String>,
    /// Append enforcement events to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Applies the embedded Postgres migrations (the permanent_blocks table) to
/// the configuration's database_url and reports what it applied.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
struct MigrateArgs {
    /// The enforcement configuration (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

/// Runs the enforcement runtime as an HTTP service for any stack: forward-auth
/// decisions for a reverse proxy (GET /v1/decide), audit-event ingest
/// (POST /v1/events as JSONL, POST /v1/logs as OTLP/HTTP), the block API
/// (/v1/blocks, bearer tokens), /metrics, /healthz and /readyz. Settings come
/// from the configuration's [serve] table (listen, default 127.0.0.1:8787).
///
/// Prints `listening on ADDR` on standard error once it accepts connections.
/// SIGTERM or SIGINT stops accepting, finishes open requests, drains the
/// egress queue and flushes the enforcement records; exit status 1 if events
/// were still queued at the shutdown deadline.
#[derive(Debug, Args)]
#[command(after_help = SERVE_HELP)]
struct ServeArgs {
    /// The enforcement configuration (TOML), with an optional [serve] table.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Append enforcement records to FILE (overrides [serve] output;
    /// default: standard output).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

const SERVE_HELP: &str = "\
Environment:
  SEC_AUDIT_ADMIN_TOKEN   bearer token for reading and changing blocks
  SEC_AUDIT_READ_TOKEN    bearer token for reading blocks
                          (neither set: the block API is off)
  SEC_AUDIT_INGEST_TOKEN  when set, required on /v1/events and /v1/logs
  SEC_AUDIT_REDIS_URL, DATABASE_URL  override the configuration's URLs
  RUST_LOG                diagnostics filter (overrides -v)

Exit status: 0 clean shutdown, 1 run-time failure or events lost at
shutdown, 2 configuration error.";

fn serve(a: ServeArgs) -> Result<u8, CliError> {
    let config = load_config(&a.config)?;
    match sec_audit_serve::run(config, a.output) {
        Ok(report) if report.lost > 0 => Err(CliError::runtime(format!(
            "shutdown deadline passed with {} events still queued",
            report.lost
        ))),
        Ok(_) => Ok(EXIT_OK),
        Err(sec_audit_serve::ServeError::Build(e)) => Err(CliError::from_build(&a.config, &e)),
        Err(sec_audit_serve::ServeError::Config(e)) => Err(CliError::from_config(&a.config, &e)),
        Err(e) if e.is_config() => Err(CliError::config(e.to_string())),
        Err(e) => Err(CliError::runtime(e.to_string())),
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "error",
        1 => "warn",
        2 => "info",
        3 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        // A closed standard error must not turn a diagnostic into a panic.
        .log_internal_errors(false)
        .try_init();
}

fn append_output(output: Option<PathBuf>) -> OutputTarget {
    output.map_or(OutputTarget::Stdout, |path| OutputTarget::File {
        path,
        append: true,
    })
}

fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Replay(a) => replay::run(&replay::ReplayOptions {
            config: a.config,
            log: a.log,
            output: a
                .output
                .map_or(OutputTarget::Stdout, |path| OutputTarget::File {
                    path,
                    append: false,
                }),
            progress: !a.no_progress,
            request_window: usize::try_from(a.request_window).unwrap_or(usize::MAX),
            max_line_bytes: usize::try_from(a.max_line_bytes)
                .unwrap_or(replay::DEFAULT_MAX_LINE_BYTES),
        }),
        Command::Explain(a) => {
            let select = match (a.line, a.request_id, a.subject) {
                (Some(n), _, _) => explain::Selector::Line(n),
                (_, Some(id), _) => explain::Selector::RequestId(id),
                (_, _, Some(s)) => explain::Selector::subject(&s).map_err(CliError::config)?,
                (None, None, None) => {
                    return Err(CliError::config(
                        "explain needs one of --line, --request-id, --subject",
                    ))
                }
            };
            explain::run(&explain::ExplainOptions {
                config: a.config,
                log: a.log,
                select,
                limit: a.limit,
                max_line_bytes: usize::try_from(a.max_line_bytes)
                    .unwrap_or(replay::DEFAULT_MAX_LINE_BYTES),
            })
        }
        Command::Check(a) => check_cmd::run(&a.config, a.live, a.format),
        Command::Blocks(BlocksCommand::List(a)) => {
            let format = if a.json { Format::Json } else { a.format };
            blocks::list(&a.select.config, &a.select.query(), format)?;
            Ok(EXIT_OK)
        }
        Command::Blocks(BlocksCommand::Export(a)) => {
            blocks::export(&a.select.config, &a.select.query())?;
            Ok(EXIT_OK)
        }
        Command::Blocks(BlocksCommand::Import(a)) => {
            blocks::import(
                &a.config,
                &a.input,
                &append_output(a.output),
                &a.actor.unwrap_or_else(default_actor),
            )?;
            Ok(EXIT_OK)
        }
        Command::Blocks(BlocksCommand::Add(a)) => {
            blocks::add(
                &a.config,
                &append_output(a.output),
                &blocks::AddRequest {
                    scope: a.scope,
                    value: a.value,
                    ttl: a.ttl,
                    reason: a.reason,
                    actor: a.actor.unwrap_or_else(default_actor),
                    status_code: a.status_code,
                    message: a.message,
                },
            )?;
            Ok(EXIT_OK)
        }
        Command::Blocks(BlocksCommand::Revoke(a)) => {
            blocks::revoke(
                &a.config,
                &append_output(a.output),
                &a.scope,
                &a.value,
                &a.reason,
                &a.revoked_by.unwrap_or_else(default_actor),
            )?;
            Ok(EXIT_OK)
        }
        Command::Migrate(a) => {
            migrate::run(&a.config)?;
            Ok(EXIT_OK)
        }
        Command::Serve(a) => serve(a),
    }
}

/// Parses the command line; a usage error becomes one line (exit 2), help
/// and version print as usual.
fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                let text = e.render().to_string();
                let body = text.split("\nUsage:").next().unwrap_or("");
                let body = body.trim().trim_start_matches("error:").trim();
                let mut msg = String::new();
                for line in body
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                {
                    if !msg.is_empty() {
                        msg.push_str(if msg.ends_with(':') { " " } else { "; " });
                    }
                    msg.push_str(line);
                }
                sec_audit_cli::errln!("sec-audit: {msg} (see --help)");
                Err(ExitCode::from(error::EXIT_CONFIG))
            }
        },
    }
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        // A closed standard output ends the command quietly.
        Err(CliError::Closed) => ExitCode::from(error::EXIT_CLOSED),
        Err(e) => {
            sec_audit_cli::errln!("sec-audit: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
