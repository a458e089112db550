//! The runtime: everything enforcement needs, built from one
//! configuration, with the ingress check, egress and the block API.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use regex::Regex;
use sec_audit_core::{
    AttrKey, Attributes, AuditEvent, ClientIpResolver, Clock, Known, Scrubber, SystemClock,
};
use sec_audit_rules::engine::INGRESS_EVENT_TYPE;
use sec_audit_rules::{
    ActionPolicy, Engine, EngineOptions, Evaluation, EvaluationObserver, Rule, ScopeKey,
    ScopeRegistry,
};
use sec_audit_store::aio::{AsyncBlockStore, BlockingPool, LocalBlocks, OffloadedBlocks};
use sec_audit_store::{BlockEntry, BlockStore, NewBlock, StoreError, TrailRow};
use serde_json::{Map, Value};

use crate::config::{Config, ConfigError};
use crate::enforcer::Enforcer;
use crate::escalation::Escalation;
use crate::events::{keys, EnforcementEvent, EventEmitter, EventType, Sink};
use crate::failure_coalescer::{log_coalesced, FailureReporter, FailureStats, Level};
use crate::request::{seconds_left, DenyReason, IngressDecision, RequestView};
use crate::safelist::Safelist;
use crate::stores::{self, Stores};

/// Why the runtime could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("plugin: {0}")]
    Plugin(String),
    #[error("stores: {0}")]
    Store(String),
}

/// Errors of the block management API.
#[derive(Debug, thiserror::Error)]
pub enum BlockApiError {
    #[error("scope `{0}` is unknown or may not be blocked")]
    ScopeNotBlockable(String),
    #[error("`{0}` is not an IP address or CIDR range")]
    BadIp(String),
    /// A CIDR with host bits set (`10.0.0.5/24`): refused, never masked.
    #[error("`{value}` has host bits set: did you mean {network}?")]
    HostBits { value: String, network: String },
    #[error("scope value must not be empty")]
    EmptyValue,
    /// A block on a safelisted subject would never be enforced at ingress
    /// (and would read as a ban in every listing): refused.
    #[error("`{scope}` is safelisted ({entry}): ingress never enforces a block on it; remove it from [safelist] first")]
    Safelisted { scope: String, entry: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A block requested through the management API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManualBlock {
    pub scope_type: String,
    pub value: String,
    /// Seconds; `None`: permanent.
    pub ttl: Option<u64>,
    pub reason: String,
    pub status_code: Option<u16>,
    pub message: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    /// Who asked; recorded in the metadata as `actor`.
    pub actor: Option<String>,
    /// Defaults to `manual`.
    pub rule_name: Option<String>,
}

/// Builds a [`Runtime`] from a [`Config`].
pub struct RuntimeBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    sink: Option<Sink>,
    emitter: Option<EventEmitter>,
    stores: Option<Stores>,
    extra_rules: Vec<Arc<dyn Rule>>,
    scopes: Option<ScopeRegistry>,
    scrubber: Scrubber,
    async_blocks: Option<Arc<dyn AsyncBlockStore>>,
    blocking: Option<BlockingPool>,
    observer: Option<Arc<dyn EvaluationObserver>>,
}

/// Threads of the default blocking pool of the async ingress check.
pub const DEFAULT_BLOCKING_THREADS: usize = 16;

impl RuntimeBuilder {
    /// The clock for rules, stores and events (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Where enforcement records are written (default: standard output).
    pub fn sink(mut self, sink: Sink) -> Self {
        self.sink = Some(sink);
        self
    }
    /// A fully configured emitter (e.g. with an OTLP exporter); replaces the
    /// sink.
    pub fn emitter(mut self, emitter: EventEmitter) -> Self {
        self.emitter = Some(emitter);
        self
    }
    /// Explicit stores instead of the ones the configuration names.
    pub fn stores(mut self, stores: Stores) -> Self {
        self.stores = Some(stores);
        self
    }
    /// A rule registered in code, after the configured ones.
    pub fn rule(mut self, rule: Arc<dyn Rule>) -> Self {
        self.extra_rules.push(rule);
        self
    }
    /// A scope registry with custom scopes (`block_precedence` still
    /// applies).
    pub fn scopes(mut self, scopes: ScopeRegistry) -> Self {
        self.scopes = Some(scopes);
        self
    }
    pub fn scrubber(mut self, scrubber: Scrubber) -> Self {
        self.scrubber = scrubber;
        self
    }
    /// The async block lookup of [`Runtime::ingress_check_async`] (default:
    /// the async Redis or tiered lookup of the configured stores; with
    /// explicit [`Stores`], their block store called inline when it answers
    /// from memory, else on the blocking pool). Must see the same blocks as
    /// the sync store.
    pub fn async_blocks(mut self, blocks: Arc<dyn AsyncBlockStore>) -> Self {
        self.async_blocks = Some(blocks);
        self
    }
    /// The bounded pool the async ingress check runs synchronous work on
    /// (default: [`DEFAULT_BLOCKING_THREADS`] at a time, each caller waiting
    /// at most `command_timeout_ms` for a thread and the result).
    pub fn blocking_pool(mut self, pool: BlockingPool) -> Self {
        self.blocking = Some(pool);
        self
    }

    /// Watches every rule pass of the engine (what `sec-audit explain`
    /// uses; see [`EvaluationObserver`]).
    pub fn engine_observer(mut self, observer: Arc<dyn EvaluationObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn build(self) -> Result<Runtime, BuildError> {
        let config = self.config;
        config.validate_fields()?;
        let registry = self.scopes.unwrap_or_default();
        // Against the registry in use, custom scopes included.
        config.validate_scopes(&registry)?;
        let scopes = registry
            .with_block_precedence(&config.block_precedence)
            .map_err(|e| {
                config.source.locate(ConfigError::Invalid {
                    key: "block_precedence".into(),
                    reason: e.to_string(),
                })
            })?;

        let resolved = crate::rules::resolve_rules(&config)?;
        let blocking = self.blocking.unwrap_or_else(|| {
            BlockingPool::new(
                DEFAULT_BLOCKING_THREADS,
                Duration::from_millis(config.command_timeout_ms),
            )
        });
        // Whether the stores do I/O: then the async check runs the ingress
        // rule pass (counters, history) on the blocking pool. Inline only
        // when counters, history and blocks all answer locally.
        let (stores, built_async, offload_pass) = match self.stores {
            Some(s) => {
                let local = s.blocks.answers_locally();
                let pass_local =
                    local && s.counters.answers_locally() && s.history.answers_locally();
                let blocks: Arc<dyn AsyncBlockStore> = if local {
                    Arc::new(LocalBlocks(Arc::clone(&s.blocks)))
                } else {
                    Arc::new(OffloadedBlocks {
                        store: Arc::clone(&s.blocks),
                        pool: blocking.clone(),
                    })
                };
                (s, blocks, !pass_local)
            }
            None => {
                let built = stores::build(&config, Arc::clone(&self.clock), &blocking)
                    .map_err(BuildError::Store)?;
                (built.stores, built.async_blocks, built.remote)
            }
        };
        let async_blocks = self.async_blocks.unwrap_or(built_async);

        let mut builder = Engine::builder()
            .clock(Arc::clone(&self.clock))
            .scopes(scopes)
            .counters(Arc::clone(&stores.counters))
            .history(Arc::clone(&stores.history))
            .scrubber(self.scrubber.clone())
            .options(EngineOptions {
                fail_open: config.fail_open,
                ..EngineOptions::default()
            });
        for r in &resolved.rules {
            builder = builder.rule_with_config(Arc::clone(&r.rule), r.config.clone());
        }
        for r in self.extra_rules {
            builder = builder.rule(r);
        }
        if let Some(o) = self.observer {
            builder = builder.observer(o);
        }
        let engine = Arc::new(
            builder
                .build()
                .map_err(|e| ConfigError::Rule(format!("rules: {e}")))?,
        );

        let policy = ActionPolicy {
            rule_actions: config.rule_actions.clone(),
            block_rules: config.block_rules.clone(),
            block_severity: config.block_severity,
            default_temp_ttl: config.default_temp_ttl,
            builtin_rules: resolved.builtin_names(),
            plugin_rules: resolved.plugin_names(),
        };
        let emitter = Arc::new(match self.emitter {
            Some(e) => e,
            None => EventEmitter::new(
                self.sink.unwrap_or(Sink::Stdout),
                self.scrubber.clone(),
                &config.schema_version,
            ),
        });
        let failures = Arc::new(FailureReporter::new(
            Arc::clone(&emitter),
            Arc::clone(&self.clock),
        ));
        let safelist = Arc::new(Safelist::new(&config.safelist));
        // Offense counts live in the detection state, on the runtime's
        // clock (the log's, in a replay).
        let escalation = config
            .escalation
            .clone()
            .map(|e| Arc::new(Escalation::new(e, Arc::clone(&stores.counters))));
        let enforcer = Arc::new(
            Enforcer::new(
                Arc::clone(&stores.blocks),
                policy,
                Arc::clone(engine.scopes()),
                Arc::clone(&emitter),
                self.scrubber.clone(),
                Arc::clone(&self.clock),
                config.status_code,
                config.message.clone(),
            )
            .with_failures(Arc::clone(&failures))
            .with_safelist(Arc::clone(&safelist))
            .with_escalation(escalation.clone()),
        );
        let resolver =
            ClientIpResolver::new(&config.trusted_proxy_cidrs, config.trusted_proxy_count)
                .map_err(|e| ConfigError::Invalid {
                    key: "trusted_proxy_cidrs".into(),
                    reason: e.to_string(),
                })?;
        Ok(Runtime {
            fail_closed: config.fail_closed_path_regexes()?,
            resolver,
            enforcer,
            blocks: stores.blocks,
            async_blocks,
            blocking,
            offload_pass,
            engine,
            emitter,
            failures,
            clock: self.clock,
            safelist,
            escalation,
            config,
        })
    }
}

/// Per-thread buffers of the ingress check.
#[derive(Default)]
struct Scratch {
    ip: String,
    candidates: Vec<ScopeKey>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The enforcement runtime. Share it behind an `Arc`; every method takes
/// `&self` and none panics into the caller.
pub struct Runtime {
    config: Config,
    engine: Arc<Engine>,
    enforcer: Arc<Enforcer>,
    blocks: Arc<dyn BlockStore>,
    async_blocks: Arc<dyn AsyncBlockStore>,
    blocking: BlockingPool,
    /// The ingress rule pass may do I/O (Redis counters, history): the
    /// async check runs it on the blocking pool.
    offload_pass: bool,
    resolver: ClientIpResolver,
    fail_closed: Vec<Regex>,
    emitter: Arc<EventEmitter>,
    failures: Arc<FailureReporter>,
    clock: Arc<dyn Clock>,
    safelist: Arc<Safelist>,
    escalation: Option<Arc<Escalation>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("enabled", &self.config.enabled)
            .field("engine", &self.engine)
            .finish()
    }
}

impl Runtime {
    pub fn builder(config: Config) -> RuntimeBuilder {
        RuntimeBuilder {
            config,
            clock: Arc::new(SystemClock),
            sink: None,
            emitter: None,
            stores: None,
            extra_rules: Vec::new(),
            scopes: None,
            scrubber: Scrubber::default(),
            async_blocks: None,
            blocking: None,
            observer: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
    pub fn enforcer(&self) -> &Enforcer {
        &self.enforcer
    }
    pub fn emitter(&self) -> &Arc<EventEmitter> {
        &self.emitter
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    pub fn is_enabled(&self) -> bool {
        self.config.enabled
    }
    /// The compiled `[safelist]`.
    pub fn safelist(&self) -> &Safelist {
        &self.safelist
    }
    /// The `[escalation]` in force, if any.
    pub fn escalation(&self) -> Option<&Escalation> {
        self.escalation.as_deref()
    }
    /// The async block lookup of [`Runtime::ingress_check_async`].
    pub fn async_blocks(&self) -> &Arc<dyn AsyncBlockStore> {
        &self.async_blocks
    }
    /// The bounded pool the async ingress check runs synchronous work on.
    pub fn blocking_pool(&self) -> &BlockingPool {
        &self.blocking
    }
    /// Whether the block store answers an ingress lookup now (for
    /// readiness probes): one async lookup of a reserved candidate
    /// (`ip:0.0.0.0`), bounded like every ingress lookup. Memory stores
    /// always answer.
    pub async fn stores_ready_async(&self) -> Result<(), StoreError> {
        let probe = [ScopeKey::new("ip", "0.0.0.0")];
        self.async_blocks.first_active(&probe).await.map(|_| ())
    }

    /// An `evaluation_failed`, coalesced (`failure_coalescer`): at most one
    /// record per fail mode and kind per second, with the count of what it
    /// stands for.
    fn emit_failure(&self, fail_mode: &str, kind: &str) {
        self.failures.failed(fail_mode, kind);
    }

    /// How many outcomes failures decided so far (exact, whatever the
    /// records coalesced).
    pub fn failure_stats(&self) -> FailureStats {
        self.failures.stats()
    }

    /// Calls `observer(fail_mode, error_kind)` on every failure that decides
    /// an outcome, uncoalesced (the `evaluation_failed` records are
    /// coalesced): for exact metrics.
    pub fn on_failure(&self, observer: impl Fn(&str, &str) + Send + Sync + 'static) {
        self.failures.observe(Arc::new(observer));
    }

    fn default_deny(&self, reason: DenyReason) -> IngressDecision {
        IngressDecision::Deny {
            status_code: self.config.status_code,
            message: self.config.message.clone(),
            reason,
            retry_after: None,
        }
    }

    /// An unexpected failure of the check, by its fail mode (`fail_open`).
    fn unexpected_failure(&self, kind: &str) -> IngressDecision {
        if self.config.fail_open {
            self.emit_failure("open", kind);
            IngressDecision::Allow
        } else {
            self.emit_failure("closed", kind);
            self.default_deny(DenyReason::Error)
        }
    }

    /// The ingress check (`docs/operations.md`): one block-store
    /// call, then the ingress-safe rules. Never panics into the caller.
    pub fn ingress_check(&self, request: &RequestView<'_>) -> IngressDecision {
        if !self.config.enabled {
            return IngressDecision::Allow;
        }
        match catch_unwind(AssertUnwindSafe(|| self.ingress_inner(request))) {
            Ok(d) => d,
            Err(_) => {
                log_coalesced(Level::Error, "ingress check panicked", "panic");
                self.unexpected_failure("panic")
            }
        }
    }

    /// The ingress check for async servers: the same steps, decisions,
    /// events and fail modes as [`Runtime::ingress_check`] (the same code
    /// around the one lookup), but the block lookup is async I/O (one
    /// multiplexed Redis round trip) and whatever must stay synchronous —
    /// the ingress rule pass on Redis/Postgres state, a tiered store's
    /// Postgres read — runs on the bounded blocking pool with a timeout
    /// that covers the wait. Never blocks the executor thread; with memory
    /// stores it runs inline (no I/O). Never panics into the caller.
    pub async fn ingress_check_async(&self, request: &RequestView<'_>) -> IngressDecision {
        if !self.config.enabled {
            return IngressDecision::Allow;
        }
        let mut check = std::pin::pin!(self.ingress_async_inner(request));
        let caught = std::future::poll_fn(move |cx| {
            match catch_unwind(AssertUnwindSafe(|| check.as_mut().poll(cx))) {
                Ok(Poll::Ready(d)) => Poll::Ready(Some(d)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(_) => Poll::Ready(None),
            }
        })
        .await;
        caught.unwrap_or_else(|| {
            log_coalesced(Level::Error, "ingress check panicked", "panic");
            self.unexpected_failure("panic")
        })
    }

    async fn ingress_async_inner(&self, request: &RequestView<'_>) -> IngressDecision {
        // Fresh buffers: a task may move between threads across the await.
        let mut scratch = Scratch::default();
        let has_ip = self.prepare(request, &mut scratch);
        let Scratch { ip, candidates } = &scratch;
        let ip = has_ip.then_some(ip.as_str());
        if !candidates.is_empty() {
            let found = self.async_blocks.first_active(candidates).await;
            if let Some(d) = self.on_lookup(request, found) {
                return d;
            }
        }
        if !self.pass_needed(&request.path) {
            return IngressDecision::Allow;
        }
        let outcome = if self.offload_pass {
            let engine = Arc::clone(&self.engine);
            let enforcer = Arc::clone(&self.enforcer);
            let owned = request.clone().into_owned();
            let ip = ip.map(str::to_string);
            match self
                .blocking
                .run(move || ingress_pass(&engine, &enforcer, &owned, ip.as_deref()))
                .await
            {
                Ok(outcome) => outcome,
                Err(e) => {
                    log_coalesced(
                        Level::Warn,
                        "ingress rule pass did not finish on the blocking pool",
                        e.kind(),
                    );
                    PassOutcome::Failed(e.kind())
                }
            }
        } else {
            ingress_pass(&self.engine, &self.enforcer, request, ip)
        };
        self.finish_pass(outcome)
    }

    /// The request's client IP, resolved from the peer address and
    /// `X-Forwarded-For` with the trusted-proxy rules (ingress step 1).
    pub fn client_ip(&self, request: &RequestView<'_>) -> Option<std::net::IpAddr> {
        self.resolver
            .resolve(&request.peer_addr, request.forwarded_for.as_deref())
    }

    fn ingress_inner(&self, request: &RequestView<'_>) -> IngressDecision {
        // Reused buffers for the client IP and the candidate keys: a clean
        // request allocates nothing for them. A nested ingress check on
        // this thread (from a subscriber) gets fresh ones.
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.ingress_with(request, &mut scratch),
            Err(_) => self.ingress_with(request, &mut Scratch::default()),
        })
    }

    fn ingress_with(&self, request: &RequestView<'_>, scratch: &mut Scratch) -> IngressDecision {
        let has_ip = self.prepare(request, scratch);
        let Scratch { ip, candidates } = &*scratch;
        let ip = has_ip.then_some(ip.as_str());
        if !candidates.is_empty() {
            if let Some(d) = self.on_lookup(request, self.blocks.first_active(candidates)) {
                return d;
            }
        }
        if !self.pass_needed(&request.path) {
            return IngressDecision::Allow;
        }
        self.finish_pass(ingress_pass(&self.engine, &self.enforcer, request, ip))
    }

    /// Ingress steps 1-2: the client IP into `scratch.ip` (true when there
    /// is one) and the candidate scopes in precedence order, block-eligible
    /// only, into `scratch.candidates`.
    fn prepare(&self, request: &RequestView<'_>, scratch: &mut Scratch) -> bool {
        let Scratch { ip, candidates } = scratch;
        ip.clear();
        let resolved = self.client_ip(request);
        if let Some(addr) = resolved {
            push_ip(ip, addr);
        }
        // A safelisted scope is never a candidate: no block on it (an
        // older one included) denies. The others still do.
        let mut ip_key = resolved.map_or("", |_| ip.as_str());
        let mut user = request.user_id.as_deref().unwrap_or("");
        let mut session = request.session_id.as_deref().unwrap_or("");
        let sl = &*self.safelist;
        if !sl.is_empty() {
            if resolved.is_some_and(|addr| sl.contains_ip(addr)) {
                ip_key = "";
            }
            if sl.contains_user(user.trim()) {
                user = "";
            }
            if sl.contains_session(session.trim()) {
                session = "";
            }
        }
        self.engine.scopes().fill_block_candidates(
            &[("ip", ip_key), ("user", user), ("session", session)],
            candidates,
        );
        resolved.is_some()
    }

    /// Ingress step 3, after the one lookup: a deny for an active block,
    /// the fail mode of the path for a store failure, `None` to go on.
    fn on_lookup(
        &self,
        request: &RequestView<'_>,
        found: Result<Option<BlockEntry>, StoreError>,
    ) -> Option<IngressDecision> {
        match found {
            Ok(Some(entry)) => {
                self.emitter.emit(
                    EnforcementEvent::new(EventType::Blocked, self.clock.now_ns())
                        .attr(keys::SCOPE_TYPE, entry.scope_type.as_str())
                        .attr(keys::SCOPE_VALUE, entry.scope_value.as_str())
                        .attr(keys::RULE_NAME, entry.rule_name.as_str())
                        .attr(keys::ACTION, "blocked")
                        .attr(keys::STATUS_CODE, entry.status_code),
                );
                let retry_after = entry
                    .expires_at
                    .map(|at| seconds_left(at, self.clock.now()));
                let message = if entry.message.is_empty() {
                    self.config.message.clone()
                } else {
                    entry.message
                };
                Some(IngressDecision::Deny {
                    status_code: entry.status_code,
                    message,
                    reason: DenyReason::Blocked {
                        scope_type: entry.scope_type,
                        scope_value: entry.scope_value,
                        rule_name: entry.rule_name,
                    },
                    retry_after,
                })
            }
            Ok(None) => None,
            Err(e) => {
                log_coalesced(
                    Level::Warn,
                    "block store could not answer the ingress lookup",
                    e.kind(),
                );
                Some(
                    if self.fail_closed.iter().any(|r| r.is_match(&request.path)) {
                        self.emit_failure("closed", e.kind());
                        self.default_deny(DenyReason::FailClosed)
                    } else {
                        self.emit_failure("open", e.kind());
                        IngressDecision::Allow
                    },
                )
            }
        }
    }

    /// Whether the ingress rule pass can match anything on this path. The
    /// common case: no ingress-safe rule can apply to the path, so the pass
    /// would end with no match; it is skipped without building its event.
    fn pass_needed(&self, path: &str) -> bool {
        self.config.eval_safe_on_ingress
            && self.engine.has_ingress_rules()
            && !self.engine.ingress_pass_is_noop(path)
    }

    /// The decision of a finished rule pass (its failure by `fail_open`).
    fn finish_pass(&self, outcome: PassOutcome) -> IngressDecision {
        match outcome {
            PassOutcome::Allow => IngressDecision::Allow,
            PassOutcome::Deny(d) => d,
            PassOutcome::Failed(kind) => self.unexpected_failure(kind),
        }
    }

    /// Egress: evaluates every rule on a recorded event and applies the
    /// actions. Failures are logged and swallowed. Returns how many blocks
    /// were written.
    pub fn handle_event(&self, event: &AuditEvent) -> usize {
        if !self.config.enabled {
            return 0;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            // The subject is the scope keys the pass extracted.
            let Evaluation {
                matches,
                keys: subject,
            } = match self.engine.evaluate_scoped(event, false) {
                Ok(m) => m,
                Err(e) => {
                    log_coalesced(Level::Warn, "egress evaluation failed", e.kind());
                    self.emit_failure("open", e.kind());
                    return 0;
                }
            };
            if matches.is_empty() {
                return 0;
            }
            matches
                .iter()
                .map(|m| self.enforcer.apply(m, &subject).blocks.len())
                .sum()
        }));
        outcome.unwrap_or_else(|_| {
            log_coalesced(Level::Error, "egress handling panicked; swallowed", "panic");
            self.emit_failure("open", "panic");
            0
        })
    }

    /// The scope key the block API uses for `(scope_type, value)`: the
    /// scope must be block-eligible; an `ip` value is an address or a CIDR
    /// range, in canonical form (`sec_audit_store::ranges`: a `/32` or
    /// `/128` is the address; host bits set are refused).
    pub fn scope_key(&self, scope_type: &str, value: &str) -> Result<ScopeKey, BlockApiError> {
        if !self.engine.scopes().is_block_eligible(scope_type) {
            return Err(BlockApiError::ScopeNotBlockable(scope_type.to_string()));
        }
        let value = value.trim();
        if value.is_empty() {
            return Err(BlockApiError::EmptyValue);
        }
        if scope_type == "ip" {
            let canonical = sec_audit_store::canonical_ip_value(
                value,
                sec_audit_core::client_ip::parse_ip_token,
            )
            .map_err(|e| match e {
                sec_audit_store::IpValueError::NotAnAddress(v) => BlockApiError::BadIp(v),
                sec_audit_store::IpValueError::HostBits { value, network } => {
                    BlockApiError::HostBits { value, network }
                }
            })?;
            return Ok(ScopeKey::new("ip", canonical));
        }
        Ok(ScopeKey::new(scope_type, value))
    }

    /// Blocks a scope (`ttl = None`: permanent); emits `block_applied`.
    /// A safelisted scope is refused ([`BlockApiError::Safelisted`]).
    pub fn block(&self, req: &ManualBlock) -> Result<BlockEntry, BlockApiError> {
        let scope = self.scope_key(&req.scope_type, &req.value)?;
        if let Some(entry) = self.safelist.entry_for(&scope) {
            return Err(BlockApiError::Safelisted {
                scope: scope.to_string(),
                entry,
            });
        }
        if req.ttl.is_none() && scope.scope() == "ip" {
            tracing::warn!(
                value = scope.value(),
                "permanent block on an ip: everyone behind that address is locked out"
            );
        }
        let mut metadata = req.metadata.clone().unwrap_or_default();
        if let Some(actor) = req.actor.as_ref().filter(|a| !a.is_empty()) {
            metadata.insert("actor".into(), Value::String(actor.clone()));
        }
        let new = NewBlock {
            scope,
            reason: req.reason.clone(),
            rule_name: req.rule_name.clone().unwrap_or_else(|| "manual".into()),
            status_code: req.status_code.unwrap_or(self.config.status_code),
            message: req
                .message
                .clone()
                .unwrap_or_else(|| self.config.message.clone()),
            ttl: req.ttl,
            metadata,
        };
        self.enforcer.write_block(&new).map_err(|e| {
            self.enforcer.failures().block_write_failed(e.kind());
            BlockApiError::Store(e)
        })
    }

    /// Removes a scope's blocks from every tier; emits `block_revoked` when
    /// something was removed. Forgets the scope's offense count
    /// (`[escalation]`): revoked is forgiven.
    pub fn unblock(
        &self,
        scope_type: &str,
        value: &str,
        reason: &str,
        revoked_by: &str,
    ) -> Result<usize, BlockApiError> {
        let scope = self.scope_key(scope_type, value)?;
        let removed = self.blocks.unblock(&scope, reason, revoked_by)?;
        if let Some(esc) = &self.escalation {
            esc.forgive(&scope);
        }
        if removed > 0 {
            self.emitter.emit(
                EnforcementEvent::new(EventType::BlockRevoked, self.clock.now_ns())
                    .attr(keys::SCOPE_TYPE, scope.scope())
                    .attr(keys::SCOPE_VALUE, scope.value())
                    .attr(keys::REVOKED_BY, revoked_by)
                    .attr(keys::REASON, reason),
            );
        }
        Ok(removed)
    }

    /// The active entry of a scope, if any.
    pub fn is_blocked(
        &self,
        scope_type: &str,
        value: &str,
    ) -> Result<Option<BlockEntry>, BlockApiError> {
        let scope = self.scope_key(scope_type, value)?;
        Ok(self.blocks.get_active(&scope)?)
    }

    /// Active permanent blocks.
    pub fn list_active_blocks(
        &self,
        scope_type: Option<&str>,
    ) -> Result<Vec<BlockEntry>, BlockApiError> {
        Ok(self.blocks.active_blocks(scope_type)?)
    }

    /// Active temporary blocks with their expiry (a SCAN on Redis: for
    /// operator tooling, never the request path).
    pub fn list_temp_blocks(
        &self,
        scope_type: Option<&str>,
    ) -> Result<Vec<BlockEntry>, BlockApiError> {
        Ok(self.blocks.active_temp_blocks(scope_type)?)
    }

    /// The scope's rows in the permanent tier (revoked ones with who, when
    /// and why), newest first, at most `limit`; `None` when the store keeps
    /// no trail (memory, Redis-only).
    pub fn block_trail(
        &self,
        scope_type: &str,
        value: &str,
        limit: usize,
    ) -> Result<Option<Vec<TrailRow>>, BlockApiError> {
        let scope = self.scope_key(scope_type, value)?;
        Ok(self.blocks.trail(&scope, limit)?)
    }

    /// Emits the failure counts still held by the coalescer, then flushes
    /// the event sink.
    pub fn flush(&self) {
        self.failures.flush();
        self.emitter.flush();
    }
}

impl Drop for Runtime {
    /// Nothing is lost: suppressed failure counts are emitted on the way
    /// out.
    fn drop(&mut self) {
        self.failures.flush();
    }
}

/// How the ingress rule pass ended, before the fail mode applies.
enum PassOutcome {
    Allow,
    Deny(IngressDecision),
    /// An unexpected error of this kind (`fail_open` decides).
    Failed(&'static str),
}

/// Ingress step 4: the ingress-safe rules on the synthetic event, and the
/// actions of their matches. Shared by the sync and the async check (the
/// latter may run it on the blocking pool, hence no `&Runtime`).
fn ingress_pass(
    engine: &Engine,
    enforcer: &Enforcer,
    request: &RequestView<'_>,
    ip: Option<&str>,
) -> PassOutcome {
    let event = match synthetic_event(request, ip) {
        Ok(e) => e,
        Err(_) => {
            log_coalesced(
                Level::Warn,
                "could not build the synthetic ingress event",
                "event_error",
            );
            return PassOutcome::Allow;
        }
    };
    // The subject is the scope keys the pass extracted (a custom extractor
    // runs once; its failure is the pass's, decided by `fail_open`).
    let Evaluation {
        matches,
        keys: subject,
    } = match engine.evaluate_scoped(&event, true) {
        Ok(m) => m,
        Err(e) => {
            log_coalesced(Level::Warn, "ingress rule evaluation failed", e.kind());
            return PassOutcome::Failed(e.kind());
        }
    };
    if matches.is_empty() {
        return PassOutcome::Allow;
    }
    let mut deny: Option<IngressDecision> = None;
    for m in &matches {
        let applied = enforcer.apply(m, &subject);
        if applied.is_blocking() && deny.is_none() {
            let retry_after = applied.retry_after(engine.clock().now());
            deny = Some(IngressDecision::Deny {
                status_code: applied.status_code,
                message: applied.message,
                reason: DenyReason::RuleMatched {
                    rule_name: m.rule_name.clone(),
                },
                retry_after,
            });
        }
    }
    deny.map_or(PassOutcome::Allow, PassOutcome::Deny)
}

/// Appends `ip` as its `Display` form does (IPv4 written directly, without
/// the formatting machinery).
fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + (octet / 10) % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        // Writing into a String cannot fail.
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// The synthetic `audit.http.request.pre` event of a request, built
/// straight into the event's compact attributes (known keys, in key order:
/// no map, no key allocated).
pub fn synthetic_event(
    request: &RequestView<'_>,
    ip: Option<&str>,
) -> Result<AuditEvent, sec_audit_core::EventError> {
    fn put(entries: &mut Vec<(AttrKey, Value)>, k: Known, v: Option<&str>) {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            entries.push((AttrKey::Known(k), Value::String(v.to_string())));
        }
    }
    let mut entries: Vec<(AttrKey, Value)> = Vec::with_capacity(8);
    put(&mut entries, Known::EventType, Some(INGRESS_EVENT_TYPE));
    put(
        &mut entries,
        Known::HttpRequestMethod,
        Some(&request.method),
    );
    if let Some(body) = &request.body {
        entries.push((
            AttrKey::Known(Known::RequestBody),
            Value::Object(body.clone().into_owned()),
        ));
    }
    put(
        &mut entries,
        Known::RequestId,
        request.request_id.as_deref(),
    );
    put(
        &mut entries,
        Known::SessionDotId,
        request.session_id.as_deref(),
    );
    put(&mut entries, Known::SourceAddress, ip);
    put(&mut entries, Known::UrlPath, Some(&request.path));
    put(&mut entries, Known::UserDotId, request.user_id.as_deref());
    AuditEvent::from_compact(Attributes::from_entries(entries))
}

#[cfg(test)]
mod tests {
    use super::push_ip;

    /// The synthetic event as it was built before the compact attributes:
    /// a map, then `AuditEvent::new`.
    fn synthetic_via_map(
        request: &super::RequestView<'_>,
        ip: Option<&str>,
    ) -> Result<super::AuditEvent, sec_audit_core::EventError> {
        use serde_json::{Map, Value};
        let mut attrs = Map::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                attrs.insert(k.to_string(), Value::String(v.to_string()));
            }
        };
        put("url.path", Some(&request.path));
        put("http.request.method", Some(&request.method));
        put("source.address", ip);
        put("user.id", request.user_id.as_deref());
        put("session.id", request.session_id.as_deref());
        put("request_id", request.request_id.as_deref());
        if let Some(body) = &request.body {
            attrs.insert(
                "request.body".into(),
                Value::Object(body.clone().into_owned()),
            );
        }
        super::AuditEvent::new(super::INGRESS_EVENT_TYPE, attrs)
    }

    #[test]
    fn the_synthetic_event_is_the_one_the_map_built() {
        use std::borrow::Cow;
        let body = serde_json::json!({"amount": 5, "to": "x"});
        let mut views = vec![
            super::RequestView::new("GET", "/a", "10.0.0.1:5"),
            super::RequestView::new("", "", ""),
        ];
        let mut full = super::RequestView::new("POST", "/transfer/1", "[::1]:9");
        full.user_id = Some(Cow::Borrowed("u7"));
        full.session_id = Some(Cow::Borrowed("s1"));
        full.request_id = Some(Cow::Borrowed(""));
        full.body = body.as_object().map(|m| Cow::Owned(m.clone()));
        views.push(full);
        for v in &views {
            for ip in [None, Some(""), Some("203.0.113.9"), Some("::1")] {
                let a = super::synthetic_event(v, ip).map_err(|e| e.to_string());
                let b = synthetic_via_map(v, ip).map_err(|e| e.to_string());
                assert_eq!(a, b, "{v:?} {ip:?}");
            }
        }
    }

    #[test]
    fn ip_text_is_the_display_form() {
        for text in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.99.100",
            "255.255.255.255",
            "198.51.100.7",
            "2001:db8::1",
            "::1",
        ] {
            let ip: std::net::IpAddr = text.parse().unwrap();
            let mut out = String::from("stale");
            out.clear();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }
}
