//! A plain loop over one benchmark's workload, for profilers (`perf record`,
//! `valgrind --tool=callgrind`), which read a simple loop more easily than
//! criterion's harness.
//!
//! ```text
//! cargo build --profile bench -p sec-audit-benches --example profile
//! valgrind --tool=callgrind target/release/examples/profile egress 20000
//! ```
//!
//! Workloads: `egress` (all quickstart built-ins, `Engine::evaluate`),
//! `rule:NAME` (one quickstart built-in alone, `Engine::evaluate`),
//! `handle` (`Runtime::handle_event`), `ingress` (memory store, clean
//! request; `ingress_safelist` the same with a safelist of 1 000 networks
//! and 100 users and sessions), `replay` (the replay pipeline), `plugin` / `native` (the
//! example plugin rule `repeated_not_found`, or its native twin, alone in
//! an engine), `emit` / `emit_buffered` / `emit_otel` (one enforcement
//! record per iteration, written straight from the event through, or
//! buffered, or through the OTel logs API and `JsonlProcessor`, to a
//! discarding writer).

use std::borrow::Cow;
use std::sync::Arc;

use sec_audit_benches::{
    jsonl_lines, quickstart_rules, timed_events, GenOptions, QUICKSTART_BUILTINS,
};
use sec_audit_core::ManualClock;
use sec_audit_enforce::{Config, RequestView, Runtime, Sink};
use sec_audit_rules::Engine;

/// Evaluates `stream` `passes` times, each pass a day after the one before
/// (so windows never reach back into the previous pass).
fn evaluate_passes(
    engine: &Engine,
    stream: &[sec_audit_benches::TimedEvent],
    clock: &ManualClock,
    passes: usize,
) {
    for pass in 0..passes as i64 {
        for e in stream {
            clock.set_ns(e.timestamp_ns + pass * 86_400_000_000_000);
            std::hint::black_box(engine.evaluate(&e.event, false).ok());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map_or("egress", String::as_str);
    let n: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let passes: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(1);
    let stream = if what.starts_with("ingress") || what.starts_with("emit") {
        Vec::new()
    } else {
        timed_events(42, n)
    };
    let start = stream.first().map_or(0, |e| e.timestamp_ns);
    let clock = Arc::new(ManualClock::new(start));
    match what {
        "egress" => {
            let mut b = Engine::builder().clock(clock.clone());
            for (_, rule, table) in quickstart_rules() {
                b = b.rule_with_config(rule, table);
            }
            let engine = b.build().expect("engine");
            evaluate_passes(&engine, &stream, &clock, passes);
        }
        "handle" => {
            let config = Config::from_toml_str(QUICKSTART_BUILTINS).expect("config");
            let rt = Runtime::builder(config)
                .clock(clock.clone())
                .sink(Sink::Writer(Box::new(std::io::sink())))
                .build()
                .expect("runtime");
            for pass in 0..passes as i64 {
                for e in &stream {
                    clock.set_ns(e.timestamp_ns + pass * 86_400_000_000_000);
                    std::hint::black_box(rt.handle_event(&e.event));
                }
            }
        }
        "ingress" | "ingress_safelist" => {
            let text = QUICKSTART_BUILTINS.replace(
                "builtin = \"repeated_route\"\n",
                "builtin = \"repeated_route\"\npaths = [\"^/api/export\"]\n",
            );
            let mut config = Config::from_toml_str(&text).expect("config");
            if what == "ingress_safelist" {
                config.safelist = sec_audit_benches::safelist_1k();
            }
            let rt = Runtime::builder(config)
                .sink(Sink::Writer(Box::new(std::io::sink())))
                .build()
                .expect("runtime");
            let req = RequestView {
                method: Cow::Borrowed("GET"),
                path: Cow::Borrowed("/api/accounts/42/"),
                peer_addr: Cow::Borrowed("198.51.100.7"),
                forwarded_for: None,
                user_id: Some(Cow::Borrowed("1042")),
                session_id: Some(Cow::Borrowed("sess-5f3a9c21")),
                request_id: Some(Cow::Borrowed("req-1-000001")),
                body: None,
            };
            for _ in 0..n * passes {
                std::hint::black_box(rt.ingress_check(&req));
            }
        }
        w if w.starts_with("rule:") => {
            // One quickstart built-in alone (as the egress bench's per-rule rows).
            let name = &w["rule:".len()..];
            let (_, rule, table) = quickstart_rules()
                .into_iter()
                .find(|(n, _, _)| n == name)
                .expect("a quickstart built-in of that name");
            let engine = Engine::builder()
                .clock(clock.clone())
                .rule_with_config(rule, table)
                .build()
                .expect("engine");
            evaluate_passes(&engine, &stream, &clock, passes);
        }
        "replay" => {
            let lines = jsonl_lines(GenOptions::new(42, n));
            let config = Config::from_toml_str(QUICKSTART_BUILTINS).expect("config");
            for _ in 0..passes {
                let mut r = sec_audit_cli::replay::Replayer::new(
                    config.clone(),
                    Sink::Writer(Box::new(std::io::sink())),
                    sec_audit_cli::replay::MIN_REQUEST_WINDOW,
                )
                .expect("replayer");
                for (i, l) in lines.iter().enumerate() {
                    r.line(i as u64 + 1, sec_audit_cli::lines::Line::Text(l.as_bytes()));
                }
            }
        }
        "plugin" | "native" => {
            let rule: Arc<dyn sec_audit_rules::Rule> = if what == "plugin" {
                let spec = sec_audit_plugin_host::PluginSpec::new(
                    sec_audit_benches::plugin_library("repeated_not_found"),
                );
                sec_audit_plugin_host::load(&spec)
                    .expect("plugin loads")
                    .remove(0)
                    .rule
            } else {
                Arc::new(sec_audit_benches::NativeRepeatedNotFound::new(10, 60))
            };
            let engine = Engine::builder()
                .clock(clock.clone())
                .rule(rule)
                .build()
                .expect("engine");
            evaluate_passes(&engine, &stream, &clock, passes);
        }
        "emit" | "emit_buffered" | "emit_otel" => {
            use sec_audit_core::Scrubber;
            use sec_audit_enforce::events::{EventEmitter, JsonlProcessor};
            let discard = || Box::new(std::io::sink());
            let emitter = match what {
                "emit" => EventEmitter::new(Sink::Writer(discard()), Scrubber::default(), "1.0"),
                "emit_buffered" => {
                    EventEmitter::new(Sink::Buffered(discard()), Scrubber::default(), "1.0")
                }
                _ => EventEmitter::with_provider(
                    opentelemetry_sdk::logs::SdkLoggerProvider::builder()
                        .with_log_processor(JsonlProcessor::new(discard(), Scrubber::default()))
                        .build(),
                    "1.0",
                ),
            };
            for i in 0..(n * passes) as i64 {
                emitter.emit(sec_audit_benches::record_event(i));
            }
        }
        other => panic!("unknown workload `{other}`"),
    }
}
