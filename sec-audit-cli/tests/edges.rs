//! Edges of the command line: closed pipes, store outages, bad
//! configurations found without connecting.

mod common;

use std::process::{Output, Stdio};

use common::*;

/// Runs `sec-audit ARGS…` with standard output (or standard error) a pipe
/// whose reader is already closed: every write there fails with EPIPE, as
/// in `sec-audit … | true`.
fn run_closed(args: &[&str], close_stdout: bool) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut c = cmd();
    c.args(args);
    if close_stdout {
        c.stdout(writer).stderr(Stdio::piped());
    } else {
        c.stderr(writer).stdout(Stdio::piped());
    }
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

const MEMORY: &str = "enabled = true\n[[rules]]\nbuiltin = \"brute_force_login\"\nthreshold = 3\n";

#[test]
fn a_closed_standard_output_ends_quietly_with_141() {
    let config = example("quickstart.toml");
    let config = config.to_str().unwrap();
    let log = example("sample-audit.jsonl");
    let dir = TempDir::new("closed_stdout");
    let memory = dir.write("memory.toml", MEMORY);
    let memory = s(&memory);
    for args in [
        vec!["replay", "--config", config, log.to_str().unwrap()],
        vec!["check", "--config", config],
        vec!["blocks", "list", "--config", memory],
        vec!["blocks", "list", "--config", memory, "--json"],
    ] {
        let o = run_closed(&args, true);
        expect_code(&o, 141);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("ERROR"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

#[test]
fn a_closed_standard_error_drops_diagnostics_and_keeps_the_status() {
    let config = example("quickstart.toml");
    let config = config.to_str().unwrap();
    let log = example("sample-audit.jsonl");
    let o = run_closed(&["check", "--config", config], false);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("W001"), "{}", stdout(&o));
    let o = run_closed(
        &["-vvv", "replay", "--config", config, log.to_str().unwrap()],
        false,
    );
    expect_code(&o, 0);
    assert!(!records(&stdout(&o)).is_empty());
    let dir = TempDir::new("closed_stderr");
    let memory = dir.write("memory.toml", MEMORY);
    let o = run_closed(&["blocks", "list", "--config", s(&memory)], false);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "no active blocks\n");
    // A usage error with nowhere to say it still exits 2.
    let o = run_closed(&["replay"], false);
    expect_code(&o, 2);
}

/// A Redis stand-in on a free loopback port that answers exactly one
/// connection — the replay's preflight (`PING`, `CONFIG GET`) — and then
/// closes its port: every later connection of the replay is refused, an
/// outage from the first event on. Returns the URL and the server thread.
fn redis_that_goes_down_after_the_preflight() -> (String, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let handle = std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        // The port closes now: only the accepted connection is served.
        drop(listener);
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
        let mut out = match stream.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        };
        let mut reader = BufReader::new(stream);
        // RESP arrays of bulk strings: `*N`, then N × (`$len`, data).
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let Some(n) = line
                .trim()
                .strip_prefix('*')
                .and_then(|n| n.parse::<usize>().ok())
            else {
                return;
            };
            let mut args = Vec::new();
            for _ in 0..n {
                let mut len = String::new();
                let mut data = String::new();
                if reader.read_line(&mut len).unwrap_or(0) == 0
                    || reader.read_line(&mut data).unwrap_or(0) == 0
                {
                    return;
                }
                args.push(data.trim_end().to_ascii_uppercase());
            }
            let reply: &[u8] = match args.first().map(String::as_str) {
                Some("PING") => b"+PONG\r\n",
                Some("CONFIG") => b"*2\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n",
                _ => b"+OK\r\n",
            };
            if out.write_all(reply).is_err() {
                return;
            }
        }
    });
    (format!("redis://127.0.0.1:{port}"), handle)
}

#[test]
fn a_replay_during_a_redis_outage_counts_the_failures_and_exits_3() {
    let (url, server) = redis_that_goes_down_after_the_preflight();
    let dir = TempDir::new("outage");
    let config = dir.write(
        "outage.toml",
        &format!(
            "redis_url = \"{url}\"\nkey_prefix = \"t_edges_outage\"\nconnect_timeout_ms = 2000\ncommand_timeout_ms = 2000\n\
             [[rules]]\nbuiltin = \"brute_force_login\"\nthreshold = 1\n"
        ),
    );
    // 2 000 requests over 20 s of log time, each a failed login from its
    // own address: every ingress lookup fails open, and every match's
    // block write fails.
    const N: i64 = 2_000;
    let t0: i64 = 1_780_000_000_000_000_000;
    let mut log = String::new();
    for i in 0..N {
        log.push_str(
            &serde_json::json!({"timestamp": t0 + i * 10_000_000, "attributes": {
                "event_type": "auth.login.failed", "request_id": format!("r{i}"),
                "source.address": format!("203.0.{}.{}", i / 250, i % 250 + 1)}})
            .to_string(),
        );
        log.push('\n');
    }
    let log = dir.write("outage.jsonl", &log);
    let o = cmd()
        .args(["-vv", "replay", "--config", s(&config), s(&log)])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    let _ = server.join();
    expect_code(&o, 3);
    let err = stderr(&o);
    // The summary counts what the outage decided.
    assert!(err.contains("decided by failures"), "{err}");
    assert_eq!(
        summary_count(&err, "decided by failures"),
        2 * N as u64,
        "{err}"
    );
    assert!(err.contains(&format!("{N} failed block writes")), "{err}");
    // Coalesced diagnostics: a bounded number of lines, not one per
    // request (2 000 lookups and 2 000 block writes failed).
    let lines = err.lines().count();
    assert!(lines < 60, "{lines} lines on standard error:\n{err}");
    // Coalesced records: at most one per (fail mode, kind) per second of
    // log time, plus the flush at the end; their counts add up to every
    // failure.
    let recs = records(&stdout(&o));
    let failed = of(&recs, "evaluation_failed");
    assert!(
        !failed.is_empty() && failed.len() <= 2 * 3 * 22,
        "{} evaluation_failed records",
        failed.len()
    );
    let total: u64 = failed
        .iter()
        .map(|r| {
            r["attributes"]["enforcement.failure_count"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(total, 2 * N as u64);
    assert!(of(&recs, "block_applied").is_empty());
}

#[test]
fn configurations_that_would_disarm_are_errors_found_without_connecting() {
    let dir = TempDir::new("disarm");
    for (text, key) in [
        (
            "enabled = true\n[[rules]]\nbuiltin = \"brute_force_login\"\n[rule_actions]\nbrute_force_login = { scopes = [\"usr\"] }\n",
            "rule_actions.brute_force_login.scopes",
        ),
        ("enabled = true\nblock_precedence = [\"usr\"]\n", "block_precedence"),
        // A password in a bad URL is never echoed; nothing is contacted
        // (these hosts would not answer).
        ("redis_url = \"http://:s3cret@203.0.113.1:6379\"\n", "redis_url"),
        ("redis_url = \"redis://:s3cret@127.0.0.1:99999\"\n", "redis_url"),
        (
            "redis_url = \"redis://127.0.0.1:1\"\ndatabase_url = \"mysql://app:s3cret@203.0.113.1/x\"\n",
            "database_url",
        ),
        (
            "enabled = true\n[[rules]]\nbuiltin = \"resource_enumeration\"\nthreshold = 5000\n",
            "threshold",
        ),
    ] {
        let config = dir.write("bad.toml", text);
        let log = example("sample-audit.jsonl");
        for args in [
            vec!["check", "--config", s(&config)],
            vec!["replay", "--config", s(&config), s(&log)],
            vec!["blocks", "list", "--config", s(&config)],
        ] {
            let started = std::time::Instant::now();
            let o = run(&args);
            expect_code(&o, 2);
            let all = stdout(&o) + &stderr(&o);
            assert!(all.contains(key), "{args:?} should name `{key}`: {all}");
            assert!(!all.contains("s3cret"), "{args:?} echoed a password: {all}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{args:?} took {:?}",
                started.elapsed()
            );
        }
    }
}

#[test]
fn a_configuration_that_never_ends_is_refused_quickly() {
    let started = std::time::Instant::now();
    let o = run(&["check", "--config", "/dev/zero"]);
    expect_code(&o, 2);
    assert!(stdout(&o).contains("larger than"), "{}", stdout(&o));
    let o = run(&["replay", "--config", "/dev/zero", "-"]);
    expect_code(&o, 2);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
