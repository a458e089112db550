//! Tests that keep the documentation true.
//!
//! * Every configuration key the loader accepts has a heading in
//!   `docs/configuration.md`, and every key documented there is accepted
//!   (`schema_keys` / `schema_accepts`); every built-in parameter is in the
//!   rule's section of `docs/rules.md`, and every parameter there exists.
//! * Every fenced `toml` block in `docs/` and in every README loads with the
//!   real loader (`Config::from_toml_str`, then `check` without an error
//!   finding, then the `[serve]` table) — unless it is marked
//!   ```` ```toml fragment ````.
//! * Every command of a README's "Quick start" runs, and the CLI README's
//!   summary is the one the replay prints.
//! * Nothing in the repository refers to a file outside it.
//!
//! `schema_keys` reads the key lists of the current hand-written loaders
//! (and `schema_accepts` asks the loaders themselves): when the loader
//! becomes a declarative schema, point these two functions at it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{root, TempDir, BIN};
use regex::Regex;
use sec_audit_enforce::{Config, ConfigError};
use serde_json::{json, Map, Value};

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

// --- the configuration schema ---------------------------------------------

/// The error itself, without the location a file adds.
fn bare(e: &ConfigError) -> &ConfigError {
    match e {
        ConfigError::At { error, .. } => bare(error),
        e => e,
    }
}

/// Whether the loaders accept `key` (in the naming of configuration.md):
/// `enabled`, `rules[].plugin`, `rule_actions.<rule>.ttl`, `serve.listen`…
/// A wrong value is fine; only an unknown-key error means no.
fn schema_accepts(key: &str) -> bool {
    let unknown = |r: Result<Config, ConfigError>, name: &str| !matches!(r.as_ref().map_err(bare), Err(ConfigError::UnknownKey(k)) if k == name);
    if key == "rule_actions.<rule>" {
        return Config::from_toml_str("[rule_actions]\nr = \"alert\"").is_ok();
    }
    if key == "block_rules.<rule>" {
        return Config::from_toml_str("[block_rules]\nr = 60").is_ok();
    }
    if let Some(k) = key.strip_prefix("rule_actions.<rule>.") {
        let text = format!("[rule_actions]\nr = {{ {k} = 0 }}");
        return unknown(Config::from_toml_str(&text), &format!("rule_actions.r.{k}"));
    }
    if let Some(k) = key.strip_prefix("rules[].") {
        let text = if k == "plugin" {
            "[[rules]]\nplugin = 0".to_string()
        } else {
            format!("[[rules]]\nplugin = \"p.so\"\n{k} = 0")
        };
        return unknown(Config::from_toml_str(&text), &format!("rules[0].{k}"));
    }
    if let Some(k) = key.strip_prefix("serve.") {
        let config =
            Config::from_toml_str(&format!("[serve]\n{k} = 0")).expect("[serve] is kept raw");
        return !matches!(
            sec_audit_serve::ServeConfig::from_config(&config).as_ref().map_err(bare),
            Err(ConfigError::UnknownKey(name)) if name == key
        );
    }
    for table in ["safelist", "escalation"] {
        if let Some(k) = key.strip_prefix(&format!("{table}.")) {
            return unknown(Config::from_toml_str(&format!("[{table}]\n{k} = 0")), key);
        }
    }
    if key.contains(['.', '[', '<']) {
        return false;
    }
    unknown(Config::from_toml_str(&format!("{key} = 0")), key)
}

/// Every configuration key of the schema, in configuration.md's naming,
/// read from the serde types themselves (`sec_audit_enforce::config::
/// schema_keys`, `ServeConfig::keys`); each is checked with
/// `schema_accepts`, so a name built wrongly fails here rather than
/// passing quietly.
fn schema_keys() -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = sec_audit_enforce::config::schema_keys()
        .into_iter()
        .collect();
    for k in sec_audit_serve::ServeConfig::keys() {
        keys.insert(format!("serve.{k}"));
    }
    assert!(
        keys.len() > 40,
        "the schema's keys were not found: {keys:?}"
    );
    for k in &keys {
        assert!(
            schema_accepts(k),
            "`{k}` is a key of the schema but the loader refuses it"
        );
    }
    keys
}

/// The keys documented in configuration.md: its `### `key`` headings.
fn documented_keys() -> BTreeSet<String> {
    let text = read(&root().join("docs/configuration.md"));
    re(r"(?m)^### `([^`]+)`\s*$")
        .captures_iter(&text)
        .map(|c| c[1].to_string())
        .collect()
}

#[test]
fn every_configuration_key_is_documented() {
    let documented = documented_keys();
    let missing: Vec<String> = schema_keys().difference(&documented).cloned().collect();
    assert!(
        missing.is_empty(),
        "keys missing from docs/configuration.md: {missing:?}"
    );
}

#[test]
fn every_documented_configuration_key_exists() {
    let unknown: Vec<String> = documented_keys()
        .into_iter()
        .filter(|k| !schema_accepts(k))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md documents keys the loader refuses: {unknown:?}"
    );
}

// --- built-in parameters ----------------------------------------------------

/// Whether built-in `rule` accepts parameter `key`.
fn builtin_accepts(rule: &str, key: &str) -> bool {
    let mut t = Map::new();
    t.insert("builtin".into(), json!(rule));
    if rule == "sensitive_field_change" && key != "fields" {
        t.insert("fields".into(), json!(["x"]));
    }
    if key != "builtin" {
        t.insert(key.into(), json!("?"));
    }
    !matches!(
        sec_audit_rules::builtin::build(&t),
        Err(sec_audit_rules::ConfigError::UnknownParameter { key: k, .. }) if k == key
    )
}

/// The parameters of built-in `rule`: what its source reads through
/// `Params` plus the common overrides, each confirmed by the rule itself.
fn builtin_parameters(rule: &str) -> BTreeSet<String> {
    let src = read(&root().join(format!("sec-audit-rules/src/builtin/{rule}.rs")));
    let mut keys: BTreeSet<String> = re(r#"\bp\.[a-z_]+\(\s*"([a-z0-9_]+)""#)
        .captures_iter(&src)
        .map(|c| c[1].to_string())
        .collect();
    for k in &keys {
        assert!(
            builtin_accepts(rule, k),
            "{rule}: `{k}` read from its source is refused"
        );
    }
    for k in ["builtin", "severity", "message", "tags", "decision"] {
        if builtin_accepts(rule, k) {
            keys.insert(k.to_string());
        }
    }
    keys
}

/// rules.md: the parameter tables of each `## `rule`` section, and of the
/// common section.
fn documented_parameters() -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let text = read(&root().join("docs/rules.md"));
    let row = re(r"(?m)^\| `([a-z0-9_]+)` \|");
    let mut common = BTreeSet::new();
    let mut per_rule = BTreeMap::new();
    for section in text.split("\n## ").skip(1) {
        let title = section.lines().next().unwrap_or("").trim();
        let params: BTreeSet<String> = row
            .captures_iter(section)
            .map(|c| c[1].to_string())
            .collect();
        if title == "Parameters every built-in accepts" {
            common = params;
        } else if let Some(name) = title.strip_prefix('`').and_then(|t| t.strip_suffix('`')) {
            per_rule.insert(name.to_string(), params);
        }
    }
    (common, per_rule)
}

#[test]
fn every_builtin_parameter_is_documented_and_exists() {
    let (common, per_rule) = documented_parameters();
    assert!(
        common.contains("severity"),
        "no common parameter table in docs/rules.md"
    );
    let names: BTreeSet<String> = sec_audit_rules::builtin::BUILTIN_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        per_rule.keys().cloned().collect::<BTreeSet<_>>(),
        names,
        "one section per built-in"
    );
    for rule in &names {
        let documented: BTreeSet<String> = per_rule[rule].union(&common).cloned().collect();
        let missing: Vec<String> = builtin_parameters(rule)
            .into_iter()
            .filter(|k| !documented.contains(k))
            .collect();
        assert!(
            missing.is_empty(),
            "{rule}: parameters missing from docs/rules.md: {missing:?}"
        );
        for k in &per_rule[rule] {
            assert!(
                builtin_accepts(rule, k),
                "docs/rules.md: {rule} has no parameter `{k}`"
            );
        }
        for k in &common {
            // The common table says so: every built-in but repeated_client_error suggests a decision.
            let expected = !(k == "decision" && rule == "repeated_client_error");
            assert_eq!(
                builtin_accepts(rule, k),
                expected,
                "{rule}: common parameter `{k}`"
            );
        }
    }
}

// --- TOML blocks --------------------------------------------------------------

/// The repository's text files under `dir` (no build output, no VCS).
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !matches!(
                name.as_str(),
                "target" | ".git" | "corpus" | "artifacts" | "node_modules"
            ) {
                files(&p, out);
            }
        } else {
            out.push(p);
        }
    }
}

fn markdown_files() -> Vec<PathBuf> {
    let mut all = Vec::new();
    files(&root(), &mut all);
    let docs = root().join("docs");
    let mut md: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| {
            p.file_name().is_some_and(|n| n == "README.md")
                || (p.starts_with(&docs) && p.extension().is_some_and(|x| x == "md"))
        })
        .collect();
    md.sort();
    md
}

/// Fenced blocks of a Markdown text: (info string, first line number, body).
fn fenced_blocks(text: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        match &mut open {
            None => {
                if let Some(info) = t.strip_prefix("```") {
                    open = Some((info.trim().to_string(), i + 1, String::new()));
                }
            }
            Some((_, _, body)) => {
                if t.starts_with("```") {
                    if let Some(block) = open.take() {
                        out.push(block);
                    }
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    out
}

/// The loader a configuration file meets: parse, then `check` (rules built,
/// plugins loaded; plugin paths relative to the repository root), then the
/// `[serve]` table.
fn load(text: &str) -> Result<(), String> {
    let mut config = Config::from_toml_str(text).map_err(|e| e.to_string())?;
    config.base_dir = root();
    let errors: Vec<String> = sec_audit_enforce::check(&config)
        .into_iter()
        .filter(|f| f.level == sec_audit_enforce::Level::Error)
        .map(|f| f.to_string())
        .collect();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    sec_audit_serve::ServeConfig::from_config(&config)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn every_toml_block_loads_with_the_real_loader() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in markdown_files() {
        for (info, line, body) in fenced_blocks(&read(&file)) {
            let mut words = info.split_whitespace();
            if words.next() != Some("toml") || words.any(|w| w == "fragment") {
                continue;
            }
            checked += 1;
            if let Err(e) = load(&body) {
                failures.push(format!(
                    "{}:{line}: {e}",
                    file.strip_prefix(root()).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(checked > 50, "only {checked} toml blocks found");
    assert!(
        failures.is_empty(),
        "toml blocks that do not load:\n{}",
        failures.join("\n")
    );
}

// --- quick starts -------------------------------------------------------------

/// The shell commands of a README's "Quick start" section (comments and
/// line continuations resolved).
fn quick_start_commands(text: &str) -> Option<Vec<String>> {
    let start = text.find("\n## Quick start")?;
    let section = &text[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut commands = Vec::new();
    for (info, _, body) in fenced_blocks(section) {
        if info != "sh" {
            continue;
        }
        let mut pending = String::new();
        for line in body.lines() {
            let line = match line.find(" #") {
                Some(i) => &line[..i],
                None if line.trim_start().starts_with('#') => "",
                None => line,
            };
            let line = line.trim();
            if let Some(cont) = line.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            if !pending.trim().is_empty() {
                commands.push(pending.trim().to_string());
            }
            pending.clear();
        }
    }
    Some(commands)
}

/// What a quick-start command runs here: the `sec-audit` the tests built
/// stands for a release build of the same package (building the release
/// profile in a test would take minutes); `cargo xtask plugins` runs as it
/// is. Anything else must be taught to this function.
fn runnable(command: &str) -> Option<String> {
    let bin = BIN.to_string();
    for prefix in [
        "cargo run --release -p sec-audit-cli --",
        "./target/release/sec-audit",
    ] {
        if let Some(rest) = command.strip_prefix(prefix) {
            return Some(format!("'{bin}'{rest}"));
        }
    }
    if command == "cargo build --release -p sec-audit-cli" {
        return None;
    }
    if command == "cargo xtask plugins" {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        return Some(format!(
            "cd '{}' && '{cargo}' xtask plugins",
            root().display()
        ));
    }
    panic!("quick-start command `{command}` is not known to tests/docs.rs: teach `runnable` how to run it");
}

struct Ran {
    stderr: String,
}

/// Runs `commands` in a scratch directory holding links to the
/// repository's `examples/` and `target/`, so outputs land there.
fn run_quick_start(readme: &str, commands: &[String]) -> Vec<(String, Ran)> {
    let dir = TempDir::new("quick_start");
    for link in ["examples", "target"] {
        std::os::unix::fs::symlink(root().join(link), dir.path(link))
            .unwrap_or_else(|e| panic!("cannot link {link}: {e}"));
    }
    let mut out = Vec::new();
    for c in commands {
        let Some(shell) = runnable(c) else {
            assert!(
                Path::new(BIN).exists(),
                "{readme}: `{c}`: the sec-audit binary was not built"
            );
            continue;
        };
        let o = Command::new("sh")
            .arg("-c")
            .arg(&shell)
            .current_dir(&dir.0)
            .env_remove("SEC_AUDIT_REDIS_URL")
            .env_remove("DATABASE_URL")
            .env_remove("SEC_AUDIT_REDIS_CA_FILE")
            .env_remove("RUST_LOG")
            .output()
            .unwrap_or_else(|e| panic!("cannot run sh: {e}"));
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            o.status.success(),
            "{readme}: `{c}` failed ({:?}):\n{stderr}",
            o.status.code()
        );
        // A redirected replay wrote enforcement records.
        if let Some(file) = c.split('>').nth(1).map(str::trim) {
            let text = read(&dir.path(file));
            let first = text
                .lines()
                .next()
                .unwrap_or_else(|| panic!("{readme}: `{c}` wrote nothing"));
            let v: Value =
                serde_json::from_str(first).unwrap_or_else(|e| panic!("{readme}: `{c}`: {e}"));
            assert!(v["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("audit.enforcement.")));
        }
        out.push((c.clone(), Ran { stderr }));
    }
    out
}

#[test]
fn every_quick_start_command_runs() {
    let mut readmes = 0;
    for file in markdown_files() {
        let Some(commands) = quick_start_commands(&read(&file)) else {
            continue;
        };
        readmes += 1;
        let name = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        assert!(
            !commands.is_empty(),
            "{name}: a quick start without commands"
        );
        run_quick_start(&name, &commands);
    }
    assert!(readmes >= 2, "the root and CLI READMEs have quick starts");
}

#[test]
fn the_root_quick_start_is_one_command_that_needs_no_build_step() {
    let text = read(&root().join("README.md"));
    let commands = quick_start_commands(&text).expect("README.md has a quick start");
    let first = &commands[0];
    assert!(
        first.starts_with("cargo run --release -p sec-audit-cli -- replay"),
        "{first}"
    );
    // It runs on its own: no plugin (nothing built first) in its configuration.
    let config = first
        .split_whitespace()
        .skip_while(|w| *w != "--config")
        .nth(1)
        .expect("--config");
    let config = Config::from_file(&root().join(config)).unwrap_or_else(|e| panic!("{e}"));
    assert!(config
        .rules
        .iter()
        .all(|r| matches!(r, sec_audit_enforce::RuleEntry::Builtin(_))));
    run_quick_start("README.md", &commands[..1]);
}

#[test]
fn the_cli_readme_shows_the_summary_the_replay_prints() {
    let text = read(&root().join("sec-audit-cli/README.md"));
    let commands = quick_start_commands(&text).expect("sec-audit-cli/README.md has a quick start");
    let first_replay: Vec<String> = commands
        .iter()
        .take_while(|c| !c.contains(" replay "))
        .chain(commands.iter().find(|c| c.contains(" replay ")))
        .cloned()
        .collect();
    let ran = run_quick_start("sec-audit-cli/README.md", &first_replay);
    let (_, replay) = ran.last().expect("a replay ran");
    let section = &text[text.find("\n## Quick start").unwrap_or(0)..];
    let shown = fenced_blocks(section)
        .into_iter()
        .find(|(info, _, body)| info.is_empty() && body.starts_with("replay of "))
        .map(|(_, _, body)| body)
        .expect("the summary block");
    let without_time = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.trim_start().starts_with("time "))
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(
        without_time(&shown),
        without_time(&replay.stderr),
        "the README's summary is not what the replay prints"
    );
}

// --- references outside the repository ----------------------------------------

/// References in `text` (of the file at `path`) to files that are not in
/// the repository: `*.md` names that resolve neither from the file's
/// directory nor from the root, and paths into the original contract's
/// directory (the `shared` pattern below).
fn outside_references(path: &Path, text: &str) -> Vec<String> {
    let md = re(r"[A-Za-z0-9_./-]*\b[A-Za-z0-9_-]+\.md\b");
    let shared = re(r"\.\./shared|\bshared/(spec|tools)|the (project )?spec\b");
    let dir = root().join(path.parent().unwrap_or(Path::new("")));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for m in shared.find_iter(line) {
            out.push(format!("{}:{}: `{}`", path.display(), n + 1, m.as_str()));
        }
        for m in md.find_iter(line) {
            let name = m.as_str().trim_start_matches("./");
            // URLs, and files the build writes (`target/criterion/sec-audit-table.md`).
            if name.starts_with("http")
                || name.contains("target/")
                || name.ends_with("sec-audit-table.md")
            {
                continue;
            }
            let exists = dir.join(name).exists() || root().join(name).exists();
            if !exists {
                out.push(format!("{}:{}: `{}`", path.display(), n + 1, m.as_str()));
            }
        }
    }
    out
}

#[test]
fn nothing_refers_to_files_outside_the_repository() {
    let mut all = Vec::new();
    files(&root(), &mut all);
    let text_ext = [
        "rs", "md", "toml", "sh", "yml", "yaml", "xml", "txt", "template", "lua",
    ];
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in all {
        let rel = p.strip_prefix(root()).unwrap_or(&p).to_path_buf();
        let is_text = p
            .extension()
            .is_some_and(|x| text_ext.iter().any(|e| x == *e))
            || p.file_name().is_some_and(|n| n == "Caddyfile");
        // This file names the patterns it looks for.
        if !is_text || rel == Path::new("sec-audit-cli/tests/docs.rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        let refs = outside_references(&rel, &text);
        if !refs.is_empty() {
            found.insert(rel.display().to_string(), refs);
        }
    }
    let unexpected: Vec<&String> = found.values().flatten().collect();
    assert!(
        unexpected.is_empty(),
        "references to files outside the repository:\n{}",
        unexpected
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
