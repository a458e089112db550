//! Checked loading: every refusal (`docs/plugins.md`, "Pin it and configure it") names the file, the rule
//! when known, and the reason.

mod support;

use std::path::{Path, PathBuf};

use sec_audit_plugin_host::{
    file_sha256, load, load_all, loaded_libraries, resolve_plugin_path, PluginError, PluginSpec,
};
use serde_json::json;
use support::{plugin, table};

fn refusal(spec: &PluginSpec) -> (PluginError, String) {
    let err = load(spec).expect_err("the plugin must be refused");
    let text = err.to_string();
    assert!(
        text.contains(&spec.path.display().to_string()),
        "the message names the file: {text}"
    );
    (err, text)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sec-audit-plugin-host-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_missing_file_is_refused() {
    let spec = PluginSpec::new("/nonexistent/dir/libnothing.so");
    let (err, text) = refusal(&spec);
    assert!(matches!(err, PluginError::NotFound { .. }));
    assert!(text.contains("file not found"), "{text}");
    assert_eq!(err.kind(), "not_found");
}

#[test]
fn a_file_that_is_not_a_shared_library_is_refused() {
    let path = scratch_dir("text").join("libfake.so");
    std::fs::write(&path, "this is not an ELF file\n").unwrap();
    let (err, text) = refusal(&PluginSpec::new(&path));
    assert!(matches!(err, PluginError::NotAPlugin { .. }), "{err:?}");
    assert!(text.contains("not a sec-audit plugin"), "{text}");
    assert!(
        text.contains("cannot be opened as a shared library"),
        "{text}"
    );

    let dir = scratch_dir("dir");
    let (err, text) = refusal(&PluginSpec::new(&dir));
    assert!(matches!(err, PluginError::NotAPlugin { .. }), "{err:?}");
    assert!(text.contains("not a regular file"), "{text}");
}

#[test]
fn a_shared_library_without_the_export_is_refused() {
    let (err, text) = refusal(&PluginSpec::new(plugin("not_a_plugin")));
    assert!(matches!(err, PluginError::NotAPlugin { .. }), "{err:?}");
    assert!(
        text.contains("does not export a sec-audit plugin"),
        "{text}"
    );
    assert!(text.contains("export_rules!"), "{text}");
}

#[test]
fn a_plugin_built_against_another_sdk_version_is_refused() {
    let (err, text) = refusal(&PluginSpec::new(plugin("other_sdk_version")));
    assert!(
        matches!(err, PluginError::IncompatibleVersion { .. }),
        "{err:?}"
    );
    assert!(text.contains("incompatible plugin SDK version"), "{text}");
    assert!(text.contains("interface version 2"), "{text}");
    assert!(
        text.contains(&format!(
            "this host requires {}",
            sec_audit_plugin_host::SDK_ABI_VERSION
        )),
        "{text}"
    );
}

#[test]
fn a_plugin_built_against_another_sdk_layout_is_refused() {
    let (err, text) = refusal(&PluginSpec::new(plugin("changed_layout")));
    assert!(
        matches!(err, PluginError::IncompatibleLayout { .. }),
        "{err:?}"
    );
    assert!(text.contains("incompatible type layout"), "{text}");
    assert!(
        text.contains("FfiMatch: too many fields"),
        "the detail names the type: {text}"
    );
    assert!(
        text.len() < 1500,
        "the layout detail is bounded: {} bytes",
        text.len()
    );
}

#[test]
fn the_digest_is_checked_before_loading() {
    let path = plugin("repeated_not_found");
    let actual = file_sha256(&path).unwrap();
    assert_eq!(actual.len(), 64);

    let wrong = "0".repeat(64);
    let (err, text) = refusal(&PluginSpec::new(&path).with_sha256(&wrong));
    assert!(matches!(err, PluginError::DigestMismatch { .. }), "{err:?}");
    assert!(text.contains("digest mismatch"), "{text}");
    assert!(text.contains(&wrong) && text.contains(&actual), "{text}");

    let (err, text) = refusal(&PluginSpec::new(&path).with_sha256("abc"));
    assert!(matches!(err, PluginError::BadDigest { .. }), "{err:?}");
    assert!(text.contains("64 hexadecimal"), "{text}");

    // Case-insensitive; the loaded rule reports the digest.
    let rules = load(&PluginSpec::new(&path).with_sha256(actual.to_uppercase())).unwrap();
    assert_eq!(rules[0].sha256, actual);

    // A mismatching file is never opened: a text file with a wrong digest is
    // refused for its digest, not for not being a library.
    let fake = scratch_dir("digest").join("libfake.so");
    std::fs::write(&fake, "not a library").unwrap();
    let (err, _) = refusal(&PluginSpec::new(&fake).with_sha256(&wrong));
    assert!(matches!(err, PluginError::DigestMismatch { .. }), "{err:?}");
}

#[test]
fn a_library_is_loaded_once_per_process() {
    let path = plugin("credential_stuffing");
    let canonical = std::fs::canonicalize(&path).unwrap();
    // The same file through another spelling of its path.
    let dir = path.parent().unwrap();
    let other = dir.join(".").join(path.file_name().unwrap());
    let a = load(&PluginSpec::new(&path)).unwrap();
    let b = load(&PluginSpec::new(&other)).unwrap();
    assert_eq!(a[0].plugin_path, canonical);
    assert_eq!(b[0].plugin_path, canonical);
    let count = loaded_libraries()
        .iter()
        .filter(|(p, _)| *p == canonical)
        .count();
    assert_eq!(count, 1);
    // Each entry still gets its own rule objects and configuration.
    assert!(!std::sync::Arc::ptr_eq(&a[0].rule, &b[0].rule));
}

#[test]
fn rule_selection_picks_one_rule_and_refuses_an_unknown_one() {
    let path = plugin("invalid_match");
    let all = load(&PluginSpec::new(&path)).unwrap();
    assert_eq!(all.len(), 3);
    let one = load(&PluginSpec::new(&path).with_rule("wrong_match_name")).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].name, "wrong_match_name");

    let (err, text) = refusal(&PluginSpec::new(&path).with_rule("nope"));
    assert!(
        matches!(err, PluginError::RuleNotExported { .. }),
        "{err:?}"
    );
    assert!(text.contains("rule `nope` is not exported"), "{text}");
    assert_eq!(err.rule(), Some("nope"));

    // A library that builds every rule lists what it exports.
    let (_, text) =
        refusal(&PluginSpec::new(plugin("repeated_not_found")).with_rule("credential_stuffing"));
    assert!(
        text.contains("rule `credential_stuffing` is not exported"),
        "{text}"
    );
    assert!(text.contains("it exports: repeated_not_found"), "{text}");
}

#[test]
fn a_configuration_the_plugin_rejects_is_refused_naming_the_rule() {
    let path = plugin("repeated_not_found");
    let (err, text) = refusal(&PluginSpec::new(&path).with_config(table(json!({"threshold": 0}))));
    assert!(matches!(err, PluginError::ConfigRejected { .. }), "{err:?}");
    assert!(text.contains("rule `repeated_not_found`"), "{text}");
    assert!(text.contains("configuration rejected"), "{text}");
    assert!(
        text.contains("`threshold`") && text.contains("at least 1"),
        "{text}"
    );
    assert_eq!(err.rule(), Some("repeated_not_found"));

    let (_, text) = refusal(&PluginSpec::new(&path).with_config(table(json!({"treshold": 3}))));
    assert!(text.contains("unknown parameter `treshold`"), "{text}");

    let (_, text) = refusal(
        &PluginSpec::new(plugin("credential_stuffing"))
            .with_config(table(json!({"distinct_usernames": 50, "max_events": 20}))),
    );
    assert!(
        text.contains("rule `credential_stuffing`") && text.contains("`max_events`"),
        "{text}"
    );

    let (_, text) = refusal(
        &PluginSpec::new(plugin("credential_stuffing"))
            .with_config(table(json!({"window_seconds": "soon"}))),
    );
    assert!(
        text.contains("`window_seconds`: expected a number"),
        "{text}"
    );
}

#[test]
fn a_factory_panic_is_a_refusal_not_a_crash() {
    let spec =
        PluginSpec::new(plugin("panicking")).with_config(table(json!({"panic_in_factory": true})));
    let (err, text) = refusal(&spec);
    assert!(matches!(err, PluginError::ConfigRejected { .. }), "{err:?}");
    assert!(text.contains("panicked while building its rules"), "{text}");
    assert!(text.contains("deliberate panic in the factory"), "{text}");
}

#[test]
fn an_empty_rule_name_is_refused_and_nothing_half_loads() {
    let spec = PluginSpec::new(plugin("invalid_match"))
        .with_config(table(json!({"export_empty_name": true})));
    let (err, text) = refusal(&spec);
    assert!(matches!(err, PluginError::EmptyRuleName { .. }), "{err:?}");
    assert!(text.contains("empty name"), "{text}");

    // One bad entry refuses the whole set.
    let good = PluginSpec::new(plugin("repeated_not_found"));
    let bad = PluginSpec::new("/nonexistent/libx.so");
    assert!(matches!(
        load_all([&good, &bad]),
        Err(PluginError::NotFound { .. })
    ));
    assert_eq!(load_all([&good]).unwrap().len(), 1);
}

#[test]
fn configuration_entries_are_parsed_and_resolved_relative_to_the_config_file() {
    let base = Path::new("/etc/sec-audit");
    let entry = table(json!({
        "plugin": "plugins/libcredential_stuffing.so",
        "sha256": "ab".repeat(32),
        "rule": "credential_stuffing",
        "config": {"distinct_usernames": 10, "window_seconds": 600}
    }));
    let spec = PluginSpec::from_entry(&entry, base).unwrap();
    assert_eq!(
        spec.path,
        PathBuf::from("/etc/sec-audit/plugins/libcredential_stuffing.so")
    );
    assert_eq!(spec.sha256.as_deref(), Some("ab".repeat(32).as_str()));
    assert_eq!(spec.rule.as_deref(), Some("credential_stuffing"));
    assert_eq!(spec.config["window_seconds"], json!(600));

    let abs = table(json!({"plugin": "/opt/p/libx.so"}));
    assert_eq!(
        PluginSpec::from_entry(&abs, base).unwrap().path,
        PathBuf::from("/opt/p/libx.so")
    );
    assert_eq!(
        resolve_plugin_path(base, Path::new("a.so")),
        PathBuf::from("/etc/sec-audit/a.so")
    );

    let err =
        PluginSpec::from_entry(&table(json!({"plugin": "x.so", "cfg": {}})), base).unwrap_err();
    assert!(err.to_string().contains("unknown key `cfg`"), "{err}");
    let err =
        PluginSpec::from_entry(&table(json!({"plugin": "x.so", "config": 3})), base).unwrap_err();
    assert!(
        err.to_string().contains("`config` must be a table"),
        "{err}"
    );
    let err = PluginSpec::from_entry(&table(json!({"plugin": ""})), base).unwrap_err();
    assert!(
        err.to_string()
            .contains("`plugin` must be a non-empty path"),
        "{err}"
    );
}
