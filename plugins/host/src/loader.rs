//! Checked loading of plugin libraries: every refusal happens before anything is served.
//!
//! Order of checks for one configuration entry: the file exists and is a
//! file; its sha256 digest matches the configured one (computed over the
//! file's bytes *before* the library is opened, so a tampered file never
//! runs any code); the library exports the SDK's root module; its SDK
//! interface version is this host's; abi_stable's layout check of every
//! boundary type passes; the factory accepts the configuration; every rule
//! has a non-empty, unique name, a severity of 1–10 and a valid history
//! context; the selected rule (if any) is among them. Any failure refuses
//! the whole entry.
//!
//! Lifetime: each library is opened once per process (cached by canonical
//! path) and never closed. abi_stable leaks loaded libraries by design, and
//! rules, vtables and strings handed out by a library point into its code,
//! so closing it under a running engine would be a use-after-free.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use abi_stable::sabi_types::VersionNumber;
use abi_stable::std_types::{ROption, RResult, RStr};
use parking_lot::Mutex;
use sec_audit_plugin_sdk::ffi::{FfiRuleInfo, PluginModRef};
use sec_audit_plugin_sdk::SDK_ABI_VERSION;
use sec_audit_rules::{HistoryContext, Rule};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::adapter::PluginRuleAdapter;
use crate::error::PluginError;

/// One `[[rules]]` entry naming a plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginSpec {
    /// The library's path, already resolved (see [`resolve_plugin_path`]).
    pub path: PathBuf,
    /// The expected sha256 of the file, hexadecimal (case-insensitive).
    pub sha256: Option<String>,
    /// Register only this rule of the library.
    pub rule: Option<String>,
    /// The `[rules.config]` table, handed to the plugin.
    pub config: Map<String, Value>,
}

impl PluginSpec {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PluginSpec {
            path: path.into(),
            ..Default::default()
        }
    }
    pub fn with_sha256(mut self, digest: impl Into<String>) -> Self {
        self.sha256 = Some(digest.into());
        self
    }
    pub fn with_rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }
    pub fn with_config(mut self, config: Map<String, Value>) -> Self {
        self.config = config;
        self
    }

    /// Reads a `[[rules]]` entry that has a `plugin` key (TOML converted to
    /// JSON values): `plugin` (path, relative to `base_dir` — the directory
    /// of the configuration file), optional `sha256`, `rule` and `config`
    /// (a table). Any other key is an error.
    pub fn from_entry(entry: &Map<String, Value>, base_dir: &Path) -> Result<Self, PluginError> {
        let raw = Value::Object(entry.clone());
        let e: EntryFile = serde_path_to_error::deserialize(&raw).map_err(|e| {
            let message = e.inner().to_string();
            let key = e.path().to_string();
            let reason = match message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split_once('`'))
            {
                Some((k, _)) => format!(
                    "unknown key `{k}` (a plugin entry takes `plugin`, `sha256`, `rule` and `config`)"
                ),
                None if message.starts_with("missing field") => {
                    "`plugin` must be a non-empty path".into()
                }
                None => format!("`{key}` {message}"),
            };
            PluginError::BadEntry {
                path: entry
                    .get("plugin")
                    .and_then(Value::as_str)
                    .map(|p| resolve_plugin_path(base_dir, Path::new(p)))
                    .unwrap_or_default(),
                reason,
            }
        })?;
        Ok(PluginSpec {
            path: resolve_plugin_path(base_dir, Path::new(&e.plugin.0)),
            sha256: e.sha256.map(|s| s.0),
            rule: e.rule.map(|s| s.0),
            config: e.config.map(|c| c.0).unwrap_or_default(),
        })
    }
}

/// The keys of a plugin entry; each type's error is the reason after the
/// key's name.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    plugin: NonEmptyPath,
    sha256: Option<Text>,
    rule: Option<Text>,
    config: Option<Table>,
}

struct NonEmptyPath(String);
struct Text(String);
struct Table(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for NonEmptyPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if !s.trim().is_empty() => Ok(NonEmptyPath(s)),
            _ => Err(serde::de::Error::custom("must be a non-empty path")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Text(s)),
            _ => Err(serde::de::Error::custom("must be a string")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Table {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(m) => Ok(Table(m)),
            _ => Err(serde::de::Error::custom("must be a table")),
        }
    }
}

/// `path` resolved against `base_dir` (the directory of the configuration
/// file) unless it is absolute.
pub fn resolve_plugin_path(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

/// A rule loaded from a plugin, ready to register with the engine.
#[derive(Clone)]
pub struct LoadedRule {
    pub rule: Arc<dyn Rule>,
    /// The rule's name (as registered).
    pub name: String,
    /// The canonical path of the library it came from.
    pub plugin_path: PathBuf,
    /// The sha256 of the library file as loaded, lowercase hexadecimal.
    pub sha256: String,
}

impl std::fmt::Debug for LoadedRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedRule")
            .field("name", &self.name)
            .field("plugin_path", &self.plugin_path)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// The names of `rules`: what the runtime puts in
/// `ActionPolicy::plugin_rules`, so that plugin rules only observe until
/// `rule_actions` maps them.
pub fn plugin_rule_names(rules: &[LoadedRule]) -> BTreeSet<String> {
    rules.iter().map(|r| r.name.clone()).collect()
}

/// A library opened once and kept for the life of the process.
struct Library {
    path: Arc<Path>,
    sha256: String,
    module: PluginModRef,
}

fn cache() -> &'static Mutex<HashMap<PathBuf, &'static Library>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, &'static Library>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The libraries opened so far in this process (canonical path, sha256),
/// for diagnostics. They stay loaded until the process exits.
pub fn loaded_libraries() -> Vec<(PathBuf, String)> {
    let mut libs: Vec<(PathBuf, String)> = cache()
        .lock()
        .values()
        .map(|l| (l.path.to_path_buf(), l.sha256.clone()))
        .collect();
    libs.sort();
    libs
}

fn sha256_file(path: &Path) -> Result<String, PluginError> {
    let io = |source| PluginError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The sha256 of a file, lowercase hexadecimal (what `sha256 = "..."` pins).
pub fn file_sha256(path: &Path) -> Result<String, PluginError> {
    sha256_file(path)
}

fn expected_digest(spec_path: &Path, value: &str) -> Result<String, PluginError> {
    let v = value.trim().to_ascii_lowercase();
    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PluginError::BadDigest {
            path: spec_path.to_path_buf(),
            value: value.to_string(),
        });
    }
    Ok(v)
}

fn check_digest(path: &Path, expected: Option<&str>, actual: &str) -> Result<(), PluginError> {
    match expected {
        Some(e) if e != actual => Err(PluginError::DigestMismatch {
            path: path.to_path_buf(),
            expected: e.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 800;
    let t = text.trim();
    if t.len() <= MAX {
        return t.to_string();
    }
    let mut end = MAX;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &t[..end])
}

/// The gist of abi_stable's (very long) layout report: each distinct
/// `Error:` with its expected/found values and the type it is about,
/// innermost last.
fn layout_summary(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let mut errors: Vec<String> = Vec::new();
    let mut current_type: Option<&str> = None;
    for (i, line) in lines.iter().enumerate() {
        if *line == "Layout of expected type:" {
            current_type = lines
                .iter()
                .skip(i + 1)
                .take(3)
                .find_map(|l| l.strip_prefix("type:"));
        }
        if let Some(e) = line.strip_prefix("Error:") {
            let mut s = e.trim().to_string();
            if lines.get(i + 1) == Some(&"Expected:") && lines.get(i + 3) == Some(&"Found:") {
                if let (Some(exp), Some(found)) = (lines.get(i + 2), lines.get(i + 4)) {
                    s = format!("{s} (expected {exp}, found {found})");
                }
            }
            if let Some(t) = current_type {
                s = format!("{t}: {s}");
            }
            if !errors.contains(&s) {
                errors.push(s);
            }
        }
    }
    if errors.is_empty() {
        return shorten(report);
    }
    let skip = errors.len().saturating_sub(4);
    shorten(&errors[skip..].join("; "))
}

fn library_error(path: &Path, e: LibraryError) -> PluginError {
    let path = path.to_path_buf();
    match e {
        LibraryError::OpenError { err, .. } => PluginError::NotAPlugin {
            path,
            reason: format!("cannot be opened as a shared library: {err}"),
        },
        LibraryError::GetSymbolError { .. } => PluginError::NotAPlugin {
            path,
            reason: "the library does not export a sec-audit plugin root module (was it built with `sec_audit_plugin_sdk::export_rules!`?)".into(),
        },
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => PluginError::IncompatibleVersion {
            path,
            found: actual_version.to_string(),
            expected: expected_version.to_string(),
        },
        LibraryError::ParseVersionError(v) => PluginError::IncompatibleVersion {
            path,
            found: format!("unreadable ({v})"),
            expected: SDK_ABI_VERSION.to_string(),
        },
        LibraryError::AbiInstability(detail) => PluginError::IncompatibleLayout {
            path,
            detail: layout_summary(&detail.to_string()),
        },
        LibraryError::InvalidAbiHeader(h) => PluginError::IncompatibleLayout {
            path,
            detail: format!(
                "built with abi_stable ABI {}.{}, incompatible with this host's",
                h.abi_major, h.abi_minor
            ),
        },
        LibraryError::InvalidCAbi { .. } => PluginError::IncompatibleLayout {
            path,
            detail: "the library's C ABI differs from the host's (another compiler or target?)".into(),
        },
        LibraryError::RootModule { err, .. } => PluginError::InitFailed {
            path,
            reason: shorten(&err.to_string()),
        },
        other => PluginError::NotAPlugin {
            path,
            reason: shorten(&other.to_string()),
        },
    }
}

/// Opens (once) and checks the library at `canonical`.
fn open_library(
    canonical: &Path,
    display_path: &Path,
    expected: Option<&str>,
) -> Result<&'static Library, PluginError> {
    let mut libs = cache().lock();
    if let Some(lib) = libs.get(canonical) {
        check_digest(display_path, expected, &lib.sha256)?;
        return Ok(lib);
    }
    // Digest first: a file that does not match never gets opened.
    let sha256 = sha256_file(canonical)?;
    check_digest(display_path, expected, &sha256)?;

    let header = lib_header_from_path(canonical).map_err(|e| library_error(display_path, e))?;
    // Our own version check first, for a message in the SDK's terms.
    let host_version = VersionNumber::new(<PluginModRef as RootModule>::VERSION_STRINGS);
    let plugin_version = VersionNumber::new(header.version_strings());
    if let (Ok(host), Ok(plugin)) = (host_version, plugin_version) {
        if host.major != plugin.major {
            return Err(PluginError::IncompatibleVersion {
                path: display_path.to_path_buf(),
                found: plugin.major.to_string(),
                expected: host.major.to_string(),
            });
        }
    }
    let module: PluginModRef = header
        .init_root_module::<PluginModRef>()
        .map_err(|e| library_error(display_path, e))?;
    let found = module.sdk_abi_version();
    if found != SDK_ABI_VERSION {
        return Err(PluginError::IncompatibleVersion {
            path: display_path.to_path_buf(),
            found: found.to_string(),
            expected: SDK_ABI_VERSION.to_string(),
        });
    }
    tracing::info!(
        plugin = %canonical.display(),
        sha256 = %sha256,
        sdk_version = %module.sdk_version(),
        "plugin library loaded"
    );
    // Kept for the life of the process (see the module docs).
    let lib: &'static Library = Box::leak(Box::new(Library {
        path: Arc::from(canonical),
        sha256,
        module,
    }));
    libs.insert(canonical.to_path_buf(), lib);
    Ok(lib)
}

fn history_context(info: &FfiRuleInfo) -> Option<HistoryContext> {
    let h = info.history.as_ref().into_option()?;
    let mut ctx = HistoryContext::new(h.scopes.iter().map(|s| s.as_str().to_string()))
        .window_seconds(h.window_seconds)
        .max_events(usize::try_from(h.max_events).unwrap_or(usize::MAX));
    if let ROption::RSome(types) = &h.event_types {
        ctx = ctx.event_types(types.iter().map(|s| s.as_str().to_string()));
    }
    Some(ctx)
}

fn validate(path: &Path, info: &FfiRuleInfo) -> Result<(), PluginError> {
    let invalid = |reason: String| PluginError::InvalidRule {
        path: path.to_path_buf(),
        rule: info.name.to_string(),
        reason,
    };
    if info.name.trim().is_empty() {
        return Err(PluginError::EmptyRuleName {
            path: path.to_path_buf(),
        });
    }
    if !(1..=10).contains(&info.severity) {
        return Err(invalid(format!("severity {} outside 1-10", info.severity)));
    }
    if let ROption::RSome(h) = &info.history {
        if !(h.window_seconds.is_finite() && h.window_seconds > 0.0) {
            return Err(invalid(
                "history context: window_seconds must be > 0".into(),
            ));
        }
        if h.max_events == 0 {
            return Err(invalid("history context: max_events must be > 0".into()));
        }
        if h.scopes.is_empty() {
            return Err(invalid("history context: no scope declared".into()));
        }
    }
    Ok(())
}

/// Loads the rules of one plugin entry (see the module docs for every
/// check). The library is opened at most once per process.
pub fn load(spec: &PluginSpec) -> Result<Vec<LoadedRule>, PluginError> {
    let path = spec.path.as_path();
    let expected = spec
        .sha256
        .as_deref()
        .map(|d| expected_digest(path, d))
        .transpose()?;
    let canonical = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PluginError::NotFound {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(PluginError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !canonical.is_file() {
        return Err(PluginError::NotAPlugin {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    let lib = open_library(&canonical, path, expected.as_deref())?;

    let config_json = serde_json::to_string(&spec.config).unwrap_or_else(|_| "{}".into());
    let selected = spec.rule.as_deref();
    let make_rules = lib.module.make_rules();
    let rules = match make_rules(
        RStr::from_str(&config_json),
        selected.map(RStr::from_str).into(),
    ) {
        RResult::ROk(rules) => rules,
        RResult::RErr(e) => {
            return Err(PluginError::ConfigRejected {
                path: path.to_path_buf(),
                rule: e
                    .rule
                    .into_option()
                    .map(|r| r.into_string())
                    .or_else(|| selected.map(str::to_string)),
                reason: e.message.into_string(),
            })
        }
    };

    let mut loaded = Vec::with_capacity(rules.len());
    let mut names = BTreeSet::new();
    for ffi in rules {
        let info = match ffi.info() {
            RResult::ROk(info) => info,
            RResult::RErr(e) => {
                return Err(PluginError::InitFailed {
                    path: path.to_path_buf(),
                    reason: format!("a rule failed to describe itself: {}", e.message),
                })
            }
        };
        validate(path, &info)?;
        let name = info.name.to_string();
        if !names.insert(name.clone()) {
            return Err(PluginError::InvalidRule {
                path: path.to_path_buf(),
                rule: name,
                reason: "exported twice by the library".into(),
            });
        }
        loaded.push((info, ffi));
    }
    let available: Vec<String> = names.iter().cloned().collect();
    if let Some(sel) = selected {
        loaded.retain(|(info, _)| info.name.as_str() == sel);
        if loaded.is_empty() {
            return Err(PluginError::RuleNotExported {
                path: path.to_path_buf(),
                rule: sel.to_string(),
                available,
            });
        }
    }
    if loaded.is_empty() {
        return Err(PluginError::NoRules {
            path: path.to_path_buf(),
        });
    }

    Ok(loaded
        .into_iter()
        .map(|(info, ffi)| {
            let name = info.name.to_string();
            let adapter = PluginRuleAdapter {
                history: history_context(&info),
                name: name.clone(),
                severity: info.severity,
                event_types: info
                    .event_types
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect(),
                safe_for_enforcement: info.safe_for_enforcement,
                ffi,
                path: Arc::clone(&lib.path),
            };
            LoadedRule {
                rule: Arc::new(adapter),
                name,
                plugin_path: lib.path.to_path_buf(),
                sha256: lib.sha256.clone(),
            }
        })
        .collect())
}

/// [`load`], returning just the rules.
pub fn load_plugin_rules(spec: &PluginSpec) -> Result<Vec<Arc<dyn Rule>>, PluginError> {
    load(spec).map(|rules| rules.into_iter().map(|r| r.rule).collect())
}

/// Loads every entry; the first failure refuses them all (nothing
/// half-loads).
pub fn load_all<'s>(
    specs: impl IntoIterator<Item = &'s PluginSpec>,
) -> Result<Vec<LoadedRule>, PluginError> {
    let mut out = Vec::new();
    for spec in specs {
        out.extend(load(spec)?);
    }
    Ok(out)
}
