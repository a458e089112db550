//! The plugin side of the boundary: wraps the author's rules into FFI rule
//! objects and builds the root module. Every entry point catches panics, so
//! none unwinds into the host.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Once};

use abi_stable::library::{CheckTypeLayout, LibHeader, RootModuleResult};
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RNone, ROption, RResult, RSome, RStr, RString, RVec};
use serde_json::{Map, Value};

use crate::config::{ConfigError, PluginConfig};
use crate::context::Context;
use crate::event::{map_to_ffi, Event};
use crate::ffi::{
    FfiConfigError, FfiContext, FfiEntry, FfiErrorKind, FfiEventRef, FfiHistoryContext, FfiMatch,
    FfiRule, FfiRuleBox, FfiRuleError, FfiRuleInfo, FfiRule_TO, PluginMod, PluginModRef,
};
use crate::rule::{PluginMatch, PluginRule};

/// The author's factory, as the export macro wraps it.
pub trait RulesFactory: 'static {
    fn make(config: &PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError>;
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

thread_local! {
    /// Set while plugin code runs under [`guarded`].
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    /// Where the last guarded panic happened.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once per library, a panic hook that keeps panics inside
/// guarded rule calls off stderr (their message and location travel to the
/// host, which logs them) and hands every other panic to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) {
                let location = info.location().map(|l| l.to_string());
                LOCATION.with(|l| *l.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs plugin code, turning a panic into its message (with location).
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let was = GUARDED.with(|g| g.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    outcome.map_err(|payload| {
        let message = panic_message(&*payload);
        match LOCATION.with(|l| l.borrow_mut().take()) {
            Some(at) => format!("{message} (at {at})"),
            None => message,
        }
    })
}

fn panicked(message: String) -> FfiRuleError {
    FfiRuleError {
        kind: FfiErrorKind::Panicked,
        message: message.into(),
    }
}

fn rvec(items: &[String]) -> RVec<RString> {
    items.iter().map(|s| RString::from(s.as_str())).collect()
}

struct RuleShim {
    rule: Box<dyn PluginRule>,
    config: Arc<Map<String, Value>>,
}

impl RuleShim {
    fn info_inner(&self) -> FfiRuleInfo {
        let r = &self.rule;
        FfiRuleInfo {
            name: r.name().into(),
            severity: r.severity(),
            event_types: rvec(r.event_types()),
            safe_for_enforcement: r.safe_for_enforcement(),
            history: match r.history_context() {
                Some(h) => RSome(FfiHistoryContext {
                    scopes: h.scopes.iter().map(|s| RString::from(s.as_str())).collect(),
                    event_types: match &h.event_types {
                        Some(t) => RSome(rvec(t)),
                        None => RNone,
                    },
                    window_seconds: h.window_seconds,
                    max_events: h.max_events as u64,
                }),
                None => RNone,
            },
        }
    }
}

fn match_to_ffi(m: PluginMatch, own_name: &str) -> FfiMatch {
    FfiMatch {
        rule_name: if m.rule_name == own_name {
            RNone
        } else {
            RSome(m.rule_name.into())
        },
        severity: m.severity,
        message: m.message.into(),
        decision: match m.decision {
            Some(d) => RSome(d.to_ffi()),
            None => RNone,
        },
        subject: match m.subject {
            Some(s) => RSome(s.into()),
            None => RNone,
        },
        tags: m.tags.into_iter().map(RString::from).collect(),
        metadata: map_to_ffi(m.metadata),
        #[cfg(feature = "test-changed-layout")]
        layout_probe: 0,
    }
}

impl FfiRule for RuleShim {
    fn info(&self) -> RResult<FfiRuleInfo, FfiRuleError> {
        match guarded(|| self.info_inner()) {
            Ok(info) => RResult::ROk(info),
            Err(p) => RResult::RErr(panicked(p)),
        }
    }

    fn evaluate(
        &self,
        event: FfiEventRef<'_>,
        ctx: &FfiContext<'_>,
    ) -> RResult<ROption<FfiMatch>, FfiRuleError> {
        let outcome = guarded(|| {
            let event = Event::new(event);
            let ctx = Context::new(ctx, &self.config);
            self.rule.evaluate(&event, &ctx)
        });
        match outcome {
            Ok(Ok(Some(m))) => RResult::ROk(RSome(match_to_ffi(m, self.rule.name()))),
            Ok(Ok(None)) => RResult::ROk(RNone),
            Ok(Err(e)) => RResult::RErr(e.into_ffi()),
            Err(p) => RResult::RErr(panicked(p)),
        }
    }

    fn history_attributes(
        &self,
        event: FfiEventRef<'_>,
        ctx: &FfiContext<'_>,
    ) -> RResult<ROption<RVec<FfiEntry>>, FfiRuleError> {
        let outcome = guarded(|| {
            let event = Event::new(event);
            let ctx = Context::new(ctx, &self.config);
            self.rule
                .history_attributes(&event, &ctx)
                .map(|m| m.map(map_to_ffi))
        });
        match outcome {
            Ok(Ok(Some(entries))) => RResult::ROk(RSome(entries)),
            Ok(Ok(None)) => RResult::ROk(RNone),
            Ok(Err(e)) => RResult::RErr(e.into_ffi()),
            Err(p) => RResult::RErr(panicked(p)),
        }
    }
}

fn config_error(e: ConfigError) -> FfiConfigError {
    FfiConfigError {
        rule: match &e.rule {
            Some(r) => RSome(r.as_str().into()),
            None => RNone,
        },
        message: e.describe().into(),
        panicked: false,
    }
}

fn make_rules_inner<F: RulesFactory>(
    config_json: &str,
    selected: Option<&str>,
) -> Result<RVec<FfiRuleBox>, FfiConfigError> {
    let values: Map<String, Value> = if config_json.trim().is_empty() {
        Map::new()
    } else {
        serde_json::from_str(config_json).map_err(|e| {
            config_error(ConfigError {
                rule: selected.map(str::to_string),
                key: None,
                reason: format!("configuration is not a JSON object: {e}"),
            })
        })?
    };
    let config = PluginConfig::new(values, selected.map(str::to_string));
    let rules = F::make(&config).map_err(|mut e| {
        if e.rule.is_none() {
            e.rule = selected.map(str::to_string);
        }
        config_error(e)
    })?;
    let shared = Arc::new(config.values().clone());
    Ok(rules
        .into_iter()
        .map(|rule| {
            FfiRule_TO::from_ptr(
                RBox::new(RuleShim {
                    rule,
                    config: Arc::clone(&shared),
                }),
                TD_Opaque,
            )
        })
        .collect())
}

extern "C" fn make_rules<F: RulesFactory>(
    config_json: RStr<'_>,
    selected: ROption<RStr<'_>>,
) -> RResult<RVec<FfiRuleBox>, FfiConfigError> {
    let selected = selected.map(|s| s.as_str()).into_option();
    install_panic_hook();
    match guarded(|| make_rules_inner::<F>(config_json.as_str(), selected)) {
        Ok(r) => r.into(),
        Err(p) => RResult::RErr(FfiConfigError {
            rule: selected.map(RString::from).into(),
            message: format!("the plugin panicked while building its rules: {p}").into(),
            panicked: true,
        }),
    }
}

fn root_module<F: RulesFactory>() -> PluginModRef {
    PluginMod {
        sdk_abi_version: crate::SDK_ABI_VERSION,
        sdk_version: RStr::from_str(crate::SDK_VERSION),
        make_rules: make_rules::<F>,
    }
    .leak_into_prefix()
}

extern "C" fn constructor<F: RulesFactory>() -> RootModuleResult {
    abi_stable::library::__call_root_module_loader(root_module::<F>)
}

/// The header the export macro puts in the library under abi_stable's
/// well-known symbol name.
#[allow(unsafe_code)]
pub const fn lib_header<F: RulesFactory>() -> LibHeader {
    // SAFETY: `constructor::<F>` returns the `PrefixRef` of a `PluginModRef`
    // (built by `root_module::<F>` and erased by abi_stable's own
    // `__call_root_module_loader`), which is what `from_constructor::<PluginModRef>`
    // requires.
    unsafe { LibHeader::from_constructor::<PluginModRef>(constructor::<F>, CheckTypeLayout::Yes) }
}
