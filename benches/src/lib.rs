//! Benchmark inputs and fixtures for the sec-audit workspace.
//!
//! - [`Generator`]: a deterministic, seeded stream of audit records modelled
//!   on the project's `gen-events` traffic model (ordinary users plus brute
//!   force, scanning, enumeration, proxy spoofing, insider changes and
//!   transfers, with optional noise). Same options, same records.
//! - [`QUICKSTART_BUILTINS`]: the built-in rules configured as in
//!   `examples/quickstart.toml`, without the plugin rule.
//! - [`NativeRepeatedNotFound`]: the example plugin rule `repeated_not_found`
//!   compiled natively, for the plugin-vs-native comparison.
//! - Server fixtures ([`BenchRedis`], [`BenchSchema`]): the real Redis and
//!   Postgres the tests use, isolated by a key prefix and a schema that are
//!   removed on drop.
//! - [`full_run`]: whether criterion runs the benchmarks for real (`--bench`)
//!   or in test mode (each benchmark once, under `cargo test`).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sec_audit_core::AuditEvent;
use sec_audit_rules::{Match, Rule, RuleContext, RuleError};
use serde_json::{json, Map, Value};

pub mod servers;

pub use servers::{BenchRedis, BenchSchema};

/// Whether criterion measures (`cargo bench` passes `--bench`) rather than
/// running each benchmark once in test mode (`cargo test --all-targets`).
pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The workspace root (the benches crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The workspace's target directory (`CARGO_TARGET_DIR` when set).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("target"),
    }
}

/// Nanoseconds since the epoch, for unique names.
pub fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// A small seeded PRNG (SplitMix64): deterministic, dependency-free.
// ---------------------------------------------------------------------------

/// SplitMix64: a tiny, fast, well-distributed PRNG; the stream depends only
/// on the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo + 1).max(1) as u64;
        lo + (self.next_u64() % span) as i64
    }

    /// Uniform in `lo..hi` (floats).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    pub fn index(&mut self, len: usize) -> usize {
        (self.next_u64() % len.max(1) as u64) as usize
    }

    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
}

// ---------------------------------------------------------------------------
// The traffic model.
// ---------------------------------------------------------------------------

/// Fixed start of the stream's clock (ns), as in `gen-events`.
pub const START_NS: i64 = 1_780_000_000 * 1_000_000_000;
pub const SCHEMA: &str = "1.0";

const ROUTES: [(&str, &str); 4] = [
    ("/api/accounts/{id}/", "account-detail"),
    ("/api/transactions/{id}/", "transaction-detail"),
    ("/api/profile/", "profile"),
    ("/dashboard/", "dashboard"),
];
const PROBES: [&str; 9] = [
    "/wp-login.php",
    "/.env",
    "/admin/config.php",
    "/phpmyadmin/",
    "/.git/config",
    "/cgi-bin/luci",
    "/vendor/phpunit/eval-stdin.php",
    "/api/v1/debug",
    "/server-status",
];

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    pub seed: u64,
    /// Records to produce.
    pub events: usize,
    pub users: usize,
    /// Attackers of each kind.
    pub attackers: usize,
    /// Share of odd or malformed records.
    pub noise: f64,
}

impl GenOptions {
    pub fn new(seed: u64, events: usize) -> Self {
        GenOptions {
            seed,
            events,
            users: 200,
            attackers: 12,
            noise: 0.0,
        }
    }
    pub fn noise(mut self, share: f64) -> Self {
        self.noise = share;
        self
    }
}

/// Severity of a generated record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
}

impl Level {
    fn text(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warning => "WARNING",
        }
    }
    fn number(self) -> u8 {
        match self {
            Level::Info => 9,
            Level::Warning => 13,
        }
    }
}

/// One audit log record as an application's audit middleware writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub timestamp_ns: i64,
    pub observed_ns: i64,
    pub level: Level,
    pub body: String,
    pub attributes: Map<String, Value>,
}

impl Record {
    /// The OTel-shaped JSON log record.
    pub fn to_json(&self) -> Value {
        json!({
            "timestamp": self.timestamp_ns,
            "observed_timestamp": self.observed_ns,
            "severity_text": self.level.text(),
            "severity_number": self.level.number(),
            "body": self.body,
            "resource": {"service.name": "fintech-demo"},
            "instrumentation_scope": {"name": "sec_audit.django", "version": "0.1.0a6"},
            "attributes": self.attributes,
            "event_name": self.attributes.get("event_type").cloned().unwrap_or(Value::Null),
        })
    }

    /// The audit event the record carries (aliases filled).
    pub fn event(&self) -> Option<AuditEvent> {
        AuditEvent::from_attributes(self.attributes.clone()).ok()
    }
}

/// A generated line: a well-formed record, or a noise line (odd or
/// malformed) kept as the exact text to write.
#[derive(Debug, Clone, PartialEq)]
pub enum GenRecord {
    Record(Record),
    Noise(String),
}

impl GenRecord {
    /// The record as one JSONL line (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            GenRecord::Record(r) => r.to_json().to_string(),
            GenRecord::Noise(s) => s.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Who {
    ip: String,
    user: Option<String>,
    session: String,
    name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    BruteForce,
    Scanner,
    Enumerator,
    Spoofer,
    Insider,
    Transfer,
}

const KINDS: [Kind; 6] = [
    Kind::BruteForce,
    Kind::Scanner,
    Kind::Enumerator,
    Kind::Spoofer,
    Kind::Insider,
    Kind::Transfer,
];

/// The deterministic record stream: an iterator of [`GenRecord`], producing
/// records lazily (a million lines never sit in memory at once).
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    opts: GenOptions,
    t: i64,
    req: u64,
    produced: usize,
    queue: VecDeque<GenRecord>,
    users: Vec<Who>,
    attackers: Vec<(Kind, Who, u64)>,
}

fn ip(rng: &mut Rng, block: &str) -> String {
    let net = match block {
        "user" => "198.51.100.",
        "attack" => "203.0.113.",
        _ => "192.0.2.",
    };
    format!("{net}{}", rng.range(1, 254))
}

fn person(rng: &mut Rng, i: usize) -> Who {
    Who {
        ip: ip(rng, "user"),
        user: Some((1000 + i).to_string()),
        session: format!("sess-{:08x}", rng.next_u64() as u32),
        name: format!("user{i}"),
    }
}

fn put(attrs: &mut Map<String, Value>, k: &str, v: impl Into<Value>) {
    let v = v.into();
    let empty = matches!(&v, Value::Null) || matches!(&v, Value::String(s) if s.is_empty());
    if !empty {
        attrs.insert(k.to_string(), v);
    }
}

impl Generator {
    pub fn new(opts: GenOptions) -> Self {
        let mut rng = Rng::new(opts.seed);
        let mut users: Vec<Who> = (0..opts.users).map(|i| person(&mut rng, i)).collect();
        let nat = ip(&mut rng, "nat");
        for u in users.iter_mut().take(opts.users / 10) {
            u.ip = nat.clone(); // a tenth of users share one NAT address
        }
        let mut attackers = Vec::new();
        for kind in KINDS {
            for _ in 0..opts.attackers {
                let mut who = person(&mut rng, 5000 + attackers.len());
                who.ip = ip(&mut rng, "attack");
                if matches!(kind, Kind::BruteForce | Kind::Scanner | Kind::Spoofer) {
                    who.user = None; // these attackers never authenticate
                }
                attackers.push((kind, who, 0));
            }
        }
        Generator {
            rng,
            opts,
            t: START_NS,
            req: 0,
            produced: 0,
            queue: VecDeque::new(),
            users,
            attackers,
        }
    }

    fn tick(&mut self, max_ms: i64) {
        self.t += self.rng.range(1, max_ms) * 1_000_000;
    }

    fn rid(&mut self) -> String {
        self.req += 1;
        format!("req-{}-{:06}", self.opts.seed, self.req)
    }

    fn emit(&mut self, body: &str, mut attrs: Map<String, Value>, level: Level) {
        attrs.insert("schema_version".into(), Value::from(SCHEMA));
        let observed_ns = self.t + self.rng.range(0, 900_000);
        self.queue.push_back(GenRecord::Record(Record {
            timestamp_ns: self.t,
            observed_ns,
            level,
            body: body.to_string(),
            attributes: attrs,
        }));
    }

    #[allow(clippy::too_many_arguments)]
    fn response(
        &mut self,
        who: &Who,
        method: &str,
        path: &str,
        route: Option<(&str, &str)>,
        status: i64,
        rid: Option<String>,
        extra: Map<String, Value>,
    ) {
        let kind = match status {
            s if s < 300 => "success",
            s if s < 400 => "redirect",
            s if s < 500 => "client_error",
            _ => "server_error",
        };
        let rid = rid.unwrap_or_else(|| self.rid());
        let mut a = Map::new();
        put(&mut a, "event_type", format!("http.response.{kind}"));
        put(&mut a, "request_id", rid);
        put(&mut a, "session.id", who.session.as_str());
        put(&mut a, "source.address", who.ip.as_str());
        put(&mut a, "user.id", who.user.clone());
        put(&mut a, "http.request.method", method);
        put(&mut a, "http.response.status_code", status);
        put(&mut a, "url.path", path);
        put(&mut a, "http.route", route.map(|r| r.0));
        put(&mut a, "http.route_name", route.map(|r| r.1));
        put(&mut a, "action.name", "response");
        put(
            &mut a,
            "outcome",
            if status < 400 { "success" } else { "failure" },
        );
        put(&mut a, "duration_ns", self.rng.range(2, 400) * 1_000_000);
        a.extend(extra);
        let level = if status < 400 {
            Level::Info
        } else {
            Level::Warning
        };
        self.emit("http.response", a, level);
    }

    fn login(&mut self, who: &Who, ok: bool, username: &str) {
        let rid = self.rid();
        let ty = if ok {
            "auth.login.success"
        } else {
            "auth.login.failed"
        };
        let mut a = Map::new();
        put(&mut a, "event_type", ty);
        put(&mut a, "request_id", rid.as_str());
        put(&mut a, "session.id", who.session.as_str());
        put(&mut a, "source.address", who.ip.as_str());
        put(&mut a, "user.id", if ok { who.user.clone() } else { None });
        put(&mut a, "user.name", username);
        put(&mut a, "action.name", "login");
        put(&mut a, "outcome", if ok { "success" } else { "failure" });
        self.emit(ty, a, if ok { Level::Info } else { Level::Warning });
        self.tick(20);
        let anon = if ok {
            who.clone()
        } else {
            Who {
                user: None,
                ..who.clone()
            }
        };
        self.response(
            &anon,
            "POST",
            "/accounts/login/",
            Some(("/accounts/login/", "login")),
            if ok { 302 } else { 401 },
            Some(rid),
            Map::new(),
        );
    }

    fn model_update(&mut self, who: &Who, label: &str, object_id: String, fields: &[&str]) {
        let (app, model) = label.split_once('.').unwrap_or((label, label));
        let rid = self.rid();
        let mut a = Map::new();
        put(&mut a, "event_type", "model.update");
        put(&mut a, "request_id", rid);
        put(&mut a, "session.id", who.session.as_str());
        put(&mut a, "source.address", who.ip.as_str());
        put(&mut a, "user.id", who.user.clone());
        put(&mut a, "model_label", label);
        put(&mut a, "app_label", app);
        put(&mut a, "model", model);
        put(&mut a, "object_id", object_id);
        put(&mut a, "crud_action", "update");
        put(&mut a, "changed_fields", json!(fields));
        self.emit("model.update", a, Level::Info);
    }

    fn act_user(&mut self, who: &Who) {
        let r = self.rng.f64();
        if r < 0.08 {
            let ok = self.rng.f64() > 0.15;
            let name = who.name.clone();
            self.login(who, ok, &name);
        } else if r < 0.80 {
            let route = *self.rng.choose(&ROUTES);
            let obj = self.rng.range(1, 60);
            let path = route.0.replace("{id}", &obj.to_string());
            self.response(who, "GET", &path, Some(route), 200, None, Map::new());
        } else if r < 0.90 {
            let path = format!("/api/accounts/{}/", self.rng.range(5000, 9000));
            self.response(who, "GET", &path, Some(ROUTES[0]), 404, None, Map::new());
        } else if r < 0.97 {
            let amount = format!("{:.2}", self.rng.uniform(5.0, 900.0));
            let mut extra = Map::new();
            extra.insert(
                "request.body".into(),
                json!({"amount": amount, "currency": "EUR"}),
            );
            self.response(
                who,
                "POST",
                "/api/transfer/",
                Some(("/api/transfer/", "transfer")),
                201,
                None,
                extra,
            );
        } else {
            let id = who.user.clone().unwrap_or_default();
            self.model_update(who, "accounts.profile", id, &["display_name"]);
        }
    }

    fn act_attacker(&mut self, kind: Kind, who: &Who, k: u64) {
        match kind {
            Kind::BruteForce => self.login(who, false, &format!("user{}", k % 40)),
            Kind::Scanner => {
                let probe = *self.rng.choose(&PROBES);
                let path = if k.is_multiple_of(3) {
                    format!("{probe}?x={k}")
                } else {
                    probe.to_string()
                };
                self.response(who, "GET", &path, None, 404, None, Map::new());
            }
            Kind::Enumerator => {
                let path = format!("/api/accounts/{}/", 100 + k);
                self.response(who, "GET", &path, Some(ROUTES[0]), 200, None, Map::new());
            }
            Kind::Spoofer => {
                let mut extra = Map::new();
                extra.insert(
                    "proxy_headers".into(),
                    json!({"X-Forwarded-For": format!("10.{}.0.1", k % 200)}),
                );
                extra.insert("trusted_route".into(), Value::Bool(false));
                self.response(who, "GET", "/dashboard/", Some(ROUTES[3]), 200, None, extra);
            }
            Kind::Insider => {
                const SETS: [&[&str]; 4] = [
                    &["password"],
                    &["is_superuser"],
                    &["email", "password"],
                    &["last_login"],
                ];
                let fields = *self.rng.choose(&SETS);
                let id = self.rng.range(1, 50).to_string();
                self.model_update(who, "auth.user", id, fields);
            }
            Kind::Transfer => {
                const AMOUNTS: [&str; 5] =
                    ["25000.00", "9999.99", "10000.01", "120.00", "not-a-number"];
                let amount = *self.rng.choose(&AMOUNTS);
                let mut extra = Map::new();
                extra.insert(
                    "request.body".into(),
                    json!({"amount": amount, "currency": "USD"}),
                );
                self.response(
                    who,
                    "POST",
                    "/api/transfer/",
                    Some(("/api/transfer/", "transfer")),
                    201,
                    None,
                    extra,
                );
            }
        }
    }

    fn noise(&mut self) {
        let t = self.t;
        let line = match self.rng.index(6) {
            0 => r#"{"timestamp": 1, "attributes": "#.to_string(),
            1 => json!({"timestamp": t, "attributes": {"event_type": ""}}).to_string(),
            2 => json!({"timestamp": t, "attributes": {"event_type": "http.response.success",
                        "source.address": "not-an-ip", "url.path": format!("/{}", "a".repeat(5000))}})
            .to_string(),
            3 => json!({"timestamp": t, "attributes": {"event_type": "auth.login.failed",
                        "source.address": "2001:db8::1", "user.name": "\u{fc}ser\u{2603}"}})
            .to_string(),
            4 => json!({"timestamp": t, "attributes": {"event_type": "http.response.client_error",
                        "source.address": "203.0.113.9", "http.response.status_code": "404",
                        "nested": {"a": {"b": {"c": {"d": [1, 2, {"e": null}]}}}}}})
            .to_string(),
            _ => "[1,2,3]".to_string(),
        };
        self.queue.push_back(GenRecord::Noise(line));
    }

    /// Produces the next step's records into the queue.
    fn step(&mut self) {
        self.tick(120);
        if self.opts.noise > 0.0 && self.rng.f64() < self.opts.noise {
            self.noise();
            return;
        }
        if self.rng.f64() < 0.7 {
            let i = self.rng.index(self.users.len());
            let who = self.users[i].clone();
            self.act_user(&who);
        } else {
            let i = self.rng.index(self.attackers.len());
            let (kind, who, k) = self.attackers[i].clone();
            self.act_attacker(kind, &who, k);
            self.attackers[i].2 += 1;
        }
    }
}

impl Iterator for Generator {
    type Item = GenRecord;

    fn next(&mut self) -> Option<GenRecord> {
        if self.produced >= self.opts.events || (self.users.is_empty() && self.opts.noise <= 0.0) {
            return None;
        }
        while self.queue.is_empty() {
            if self.users.is_empty() || self.attackers.is_empty() {
                return None;
            }
            self.step();
        }
        self.produced += 1;
        self.queue.pop_front()
    }
}

/// A generated event with the time it was recorded.
#[derive(Debug, Clone)]
pub struct TimedEvent {
    pub timestamp_ns: i64,
    pub event: AuditEvent,
}

/// The mixed stream (no noise) as events with their timestamps.
pub fn timed_events(seed: u64, n: usize) -> Vec<TimedEvent> {
    Generator::new(GenOptions::new(seed, n))
        .filter_map(|r| match r {
            GenRecord::Record(r) => r.event().map(|event| TimedEvent {
                timestamp_ns: r.timestamp_ns,
                event,
            }),
            GenRecord::Noise(_) => None,
        })
        .collect()
}

/// The mixed stream (no noise) as events.
pub fn mixed_events(seed: u64, n: usize) -> Vec<AuditEvent> {
    timed_events(seed, n).into_iter().map(|t| t.event).collect()
}

/// The stream as JSONL lines (without newlines).
pub fn jsonl_lines(opts: GenOptions) -> Vec<String> {
    Generator::new(opts).map(|r| r.to_line()).collect()
}

/// Writes the stream as JSONL to `out`.
pub fn write_jsonl(opts: GenOptions, out: &mut impl Write) -> io::Result<usize> {
    let mut n = 0;
    for r in Generator::new(opts) {
        match &r {
            GenRecord::Record(rec) => serde_json::to_writer(&mut *out, &rec.to_json())?,
            GenRecord::Noise(s) => out.write_all(s.as_bytes())?,
        }
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------
// Configurations.
// ---------------------------------------------------------------------------

/// The eight built-ins configured as in `examples/quickstart.toml`, without
/// the plugin rule (and its `rule_actions` entry):
/// `benches/quickstart-builtins.toml`.
pub const QUICKSTART_BUILTINS: &str = include_str!("../quickstart-builtins.toml");

/// The `[[rules]]` tables of [`QUICKSTART_BUILTINS`], one per built-in, in
/// order, as rule configuration tables.
pub fn quickstart_rule_tables() -> Vec<Map<String, Value>> {
    let parsed: toml::Table = match QUICKSTART_BUILTINS.parse() {
        Ok(t) => t,
        Err(e) => panic!("QUICKSTART_BUILTINS is not TOML: {e}"),
    };
    let rules = parsed
        .get("rules")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    rules
        .iter()
        .filter_map(|r| match sec_audit_enforce::config::toml_to_json(r) {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// A built rule: its name, the rule, and its configuration table.
pub type BuiltRule = (String, Arc<dyn Rule>, Map<String, Value>);

/// The built-ins of [`QUICKSTART_BUILTINS`], built.
pub fn quickstart_rules() -> Vec<BuiltRule> {
    quickstart_rule_tables()
        .into_iter()
        .map(|table| {
            let rule = sec_audit_rules::builtin::build(&table)
                .unwrap_or_else(|e| panic!("quickstart built-in does not build: {e}"));
            (rule.name().to_string(), rule, table)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The example plugin rule, natively.
// ---------------------------------------------------------------------------

/// `repeated_not_found` (plugins/examples/repeated_not_found) compiled as a
/// native rule: the same logic, the same counter key, the same match.
#[derive(Debug, Clone)]
pub struct NativeRepeatedNotFound {
    pub threshold: i64,
    pub window_seconds: u64,
    pub severity: u8,
    pub message: String,
    pub tags: Vec<String>,
    event_types: Vec<String>,
}

impl NativeRepeatedNotFound {
    pub const NAME: &'static str = "repeated_not_found";

    pub fn new(threshold: i64, window_seconds: u64) -> Self {
        NativeRepeatedNotFound {
            threshold,
            window_seconds,
            severity: 5,
            message: "Repeated 404 responses from one source IP".into(),
            tags: vec!["http".into(), "scan".into()],
            event_types: vec!["http.response.client_error".into()],
        }
    }
}

impl Rule for NativeRepeatedNotFound {
    fn name(&self) -> &str {
        Self::NAME
    }
    fn severity(&self) -> u8 {
        self.severity
    }
    fn event_types(&self) -> &[String] {
        &self.event_types
    }
    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError> {
        if event.status_code() != 404 {
            return Ok(None);
        }
        let ip = event.srcip();
        let ip = ip.trim();
        if ip.is_empty() {
            return Ok(None);
        }
        let mut key = String::with_capacity(Self::NAME.len() + 1 + ip.len());
        key.push_str(Self::NAME);
        key.push(':');
        key.push_str(ip);
        let count = ctx.counters.incr(&key, 1, Some(self.window_seconds));
        if count < self.threshold {
            return Ok(None);
        }
        let mut meta = Map::new();
        meta.insert("not_found_count".into(), Value::from(count));
        meta.insert("window_seconds".into(), Value::from(self.window_seconds));
        let path = event.path();
        if !path.is_empty() {
            meta.insert("last_path".into(), Value::String(path.into_owned()));
        }
        Ok(Some(
            Match::new(self, event, ctx.now, self.message.clone())
                .with_tags(&self.tags)
                .with_metadata(meta),
        ))
    }
}

/// The example plugin library `name` in `target/plugins/` (built by `cargo
/// xtask plugins`); panics naming the command when it is missing.
pub fn plugin_library(name: &str) -> PathBuf {
    let file = format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let path = target_dir().join("plugins").join(file);
    assert!(
        path.is_file(),
        "plugin library {} is missing: build it with `cargo xtask plugins`",
        path.display()
    );
    path
}

/// For criterion's `iter_custom`: runs `iters` calls of `measured` in
/// batches of `batch`, each batch followed by as many untimed calls of
/// `other`, and returns the time of the `measured` calls only. Two
/// benchmarks that time the two sides of the same alternation share the
/// machine's state from moment to moment, so their ratio holds on a noisy
/// machine where sequential runs drift apart.
pub fn alternating(
    iters: u64,
    batch: u64,
    mut measured: impl FnMut(),
    mut other: impl FnMut(),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(batch.max(1));
        let t = std::time::Instant::now();
        for _ in 0..n {
            measured();
        }
        total += t.elapsed();
        for _ in 0..n {
            other();
        }
        left -= n;
    }
    total
}

/// A duration in a human unit, for log lines.
pub fn human(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

/// A safelist of 1 000 networks (750 IPv4 /24s in `10.0.0.0/14`, 250 IPv6
/// /48s in `2001:db8::/32`) and 100 users and sessions: none of them the
/// clean request's (`198.51.100.7`, user `1042`, `sess-5f3a9c21`).
pub fn safelist_1k() -> sec_audit_enforce::SafelistConfig {
    let mut ips: Vec<ipnet::IpNet> = (0..750u32)
        .filter_map(|i| format!("10.{}.{}.0/24", i / 250, i % 250).parse().ok())
        .collect();
    ips.extend(
        (0..250u32).filter_map(|i| format!("2001:db8:{i:x}::/48").parse::<ipnet::IpNet>().ok()),
    );
    sec_audit_enforce::SafelistConfig {
        ips,
        users: (0..100).map(|i| format!("ops-{i}")).collect(),
        sessions: (0..100).map(|i| format!("sess-monitor-{i}")).collect(),
    }
}

/// A typical `block_applied` record.
pub fn record_event(i: i64) -> sec_audit_enforce::events::EnforcementEvent {
    use sec_audit_enforce::events::{keys, EnforcementEvent, EventType};
    EnforcementEvent::new(EventType::BlockApplied, 1_780_000_000_000_000_000 + i)
        .attr(keys::RULE_NAME, "brute_force_login")
        .attr(keys::RULE_SEVERITY, "high")
        .attr(keys::SCOPE_TYPE, "ip")
        .attr(keys::SCOPE_VALUE, "203.0.113.9")
        .attr(keys::ACTION, "temp_block")
        .attr(keys::TTL, 300)
        .attr(keys::EXPIRES_AT, "2026-05-28T20:31:40.000Z")
        .attr(keys::REASON, "5 failed logins in 60 s")
        .attr(keys::SOURCE_ADDRESS, "203.0.113.9")
        .attr(keys::USER_ID, "alice")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_every_family_is_present() {
        let a = jsonl_lines(GenOptions::new(7, 3000));
        let b = jsonl_lines(GenOptions::new(7, 3000));
        assert_eq!(a, b);
        assert_eq!(a.len(), 3000);
        assert_ne!(a, jsonl_lines(GenOptions::new(8, 3000)));
        let events = mixed_events(7, 3000);
        assert_eq!(events.len(), 3000);
        let has = |f: &dyn Fn(&AuditEvent) -> bool| events.iter().any(f);
        assert!(has(&|e| e.event_type() == "auth.login.failed"));
        assert!(has(&|e| e.event_type() == "auth.login.success"));
        assert!(has(
            &|e| e.status_code() == 404 && e.path().starts_with("/.env")
        ));
        assert!(has(&|e| e.field("proxy_headers").is_some()));
        assert!(has(&|e| e.text("model_label") == "auth.user"));
        assert!(has(&|e| e.body().is_some()));
        // Every line parses back into the same event.
        for (line, e) in a.iter().zip(&events) {
            let parsed = sec_audit_core::parse_line(line).expect("line parses");
            assert_eq!(&parsed.event, e);
        }
    }

    #[test]
    fn noise_lines_are_odd_but_present() {
        let lines = jsonl_lines(GenOptions::new(1, 2000).noise(0.05));
        let bad = lines
            .iter()
            .filter(|l| sec_audit_core::parse_line(l).is_err())
            .count();
        assert!(bad > 10, "{bad}");
    }

    #[test]
    fn quickstart_builtins_build() {
        let rules = quickstart_rules();
        assert_eq!(rules.len(), 8);
        let cfg = sec_audit_enforce::Config::from_toml_str(QUICKSTART_BUILTINS).expect("config");
        assert_eq!(cfg.rules.len(), 8);
    }
}
