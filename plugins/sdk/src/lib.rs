//! The sec-audit plugin SDK: what a rule author depends on to ship custom
//! rules as a shared library (`cdylib`) that the host loads at run time.
//!
//! An author implements [`PluginRule`] — the same shape as a native rule:
//! name, severity, event types, `safe_for_enforcement`, history context,
//! [`PluginRule::evaluate`] and optionally
//! [`PluginRule::history_attributes`] — and exports a factory with one
//! declaration, [`export_rules!`]. No `unsafe`, `extern "C"` or layout
//! annotation is needed: the SDK generates the checked, versioned interface
//! (`abi_stable`) and catches every panic on the plugin side.
//!
//! ```
//! use sec_audit_plugin_sdk::{
//!     export_rules, ConfigError, Context, Event, PluginConfig, PluginMatch, PluginRule, RuleError,
//! };
//!
//! struct Teapot { threshold: i64 }
//!
//! impl PluginRule for Teapot {
//!     fn name(&self) -> &str { "teapot" }
//!     fn severity(&self) -> u8 { 3 }
//!     fn evaluate(&self, event: &Event<'_>, ctx: &Context<'_>) -> Result<Option<PluginMatch>, RuleError> {
//!         if event.status_code() != 418 { return Ok(None); }
//!         let n = ctx.counters.incr(&format!("teapot:{}", event.srcip()), 1, Some(60));
//!         Ok((n >= self.threshold).then(|| PluginMatch::new(self, "Too many teapots")))
//!     }
//! }
//!
//! fn make_rules(config: &PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError> {
//!     let p = config.params("teapot");
//!     let threshold = p.integer("threshold", 5, 1)? as i64;
//!     p.finish()?;
//!     Ok(vec![Box::new(Teapot { threshold })])
//! }
//!
//! export_rules!(make_rules);
//! ```
//!
//! The crate must be built with `crate-type = ["cdylib"]` and with
//! unwinding panics (the default; `panic = "abort"` would turn a rule panic
//! into a process abort).

mod config;
mod context;
mod event;
#[doc(hidden)]
pub mod ffi;
mod rule;
#[doc(hidden)]
pub mod shim;

pub use config::{number, ConfigError, Params, PluginConfig};
pub use context::{Context, Counters, History, HistoryQuery};
#[doc(hidden)]
pub use event::{map_from_ffi, map_to_ffi, value_to_ffi};
pub use event::{Event, HistoryRows, Row};
pub use rule::{Decision, HistoryContext, PluginMatch, PluginRule, RuleError};
pub use serde_json;

/// The version of the interface between plugins and the host. The host
/// refuses a plugin built with a different one. Bumped on every
/// incompatible change of the boundary types.
#[cfg(not(feature = "test-bumped-abi-version"))]
pub const SDK_ABI_VERSION: u32 = 1;
#[cfg(not(feature = "test-bumped-abi-version"))]
#[doc(hidden)]
pub const SDK_ABI_VERSION_STRING: &str = "1.0.0";

/// Test-only: a build of the SDK that claims another interface version.
#[cfg(feature = "test-bumped-abi-version")]
pub const SDK_ABI_VERSION: u32 = 2;
#[cfg(feature = "test-bumped-abi-version")]
#[doc(hidden)]
pub const SDK_ABI_VERSION_STRING: &str = "2.0.0";

/// The version of this SDK crate (informational; compatibility is decided
/// by [`SDK_ABI_VERSION`] and the layout check).
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

#[doc(hidden)]
pub mod __private {
    pub use crate::shim::{lib_header, RulesFactory};
    pub use abi_stable::library::LibHeader;

    const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// The export macro names abi_stable's root-module symbol literally;
    /// this fails the build if abi_stable ever changes it.
    const _: () = assert!(str_eq(
        abi_stable::library::ROOT_MODULE_LOADER_NAME,
        "_1as_0lib_1header_0root_bmodule_bloader"
    ));
}

/// Exports a library's rules. Give it the path of a factory function
/// `fn(&PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError>`;
/// use it once per library, at the crate root.
///
/// The host calls the factory once per configuration entry naming the
/// library, with that entry's `[rules.config]` table and its `rule = "..."`
/// selection (see [`PluginConfig::wants`]). An error refuses startup and is
/// reported with the file, the rule and the reason.
#[macro_export]
macro_rules! export_rules {
    ($factory:path) => {
        #[doc(hidden)]
        pub struct __SecAuditPluginFactory;

        impl $crate::__private::RulesFactory for __SecAuditPluginFactory {
            fn make(
                config: &$crate::PluginConfig,
            ) -> ::std::result::Result<
                ::std::vec::Vec<::std::boxed::Box<dyn $crate::PluginRule>>,
                $crate::ConfigError,
            > {
                $factory(config)
            }
        }

        /// The library header the host looks up (abi_stable's root module
        /// loader symbol).
        #[doc(hidden)]
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader =
            $crate::__private::lib_header::<__SecAuditPluginFactory>();
    };
}
