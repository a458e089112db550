//! Plugin rules through the runtime's configuration: loaded from the real
//! `.so` built by `cargo xtask plugins`, observing until `rule_actions` maps
//! them, then blocking; broken plugin entries fail the start.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{event, SharedBuf};
use sec_audit_enforce::{BuildError, Config, IngressDecision, RequestView, Runtime, Sink};
use serde_json::json;

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `target/plugins/lib<name>.so`, built by `cargo xtask plugins` when
/// missing.
fn plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let path = workspace().join(format!("target/plugins/lib{name}.so"));
    if !path.exists() {
        let built = BUILT.get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let out = Command::new(cargo)
                .current_dir(workspace())
                .args(["run", "--quiet", "--package", "xtask", "--", "plugins"])
                .output()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        });
        if let Err(e) = built {
            panic!("`cargo xtask plugins` failed: {e}");
        }
    }
    assert!(
        path.exists(),
        "{} missing after `cargo xtask plugins`",
        path.display()
    );
    path
}

fn runtime(toml: &str) -> (Runtime, SharedBuf) {
    let out = SharedBuf::default();
    let rt = Runtime::builder(Config::from_toml_str(toml).expect("config parses"))
        .sink(Sink::Writer(Box::new(out.clone())))
        .build()
        .expect("runtime builds");
    (rt, out)
}

fn not_found(ip: &str) -> serde_json::Value {
    json!({"event_type": "http.response.client_error", "source.address": ip,
           "http.response.status_code": 404, "url.path": "/wp-login.php"})
}

#[test]
fn unmapped_plugin_rule_only_observes_and_mapped_it_blocks() {
    let entry = format!(
        "enabled = true\n[[rules]]\nplugin = \"{}\"\n[rules.config]\nthreshold = 3\n",
        plugin("repeated_not_found").display()
    );
    let (rt, out) = runtime(&entry);
    assert!(rt.engine().rule_names().any(|n| n == "repeated_not_found"));
    for _ in 0..6 {
        assert_eq!(rt.handle_event(&event(not_found("203.0.113.40"))), 0);
    }
    assert!(out.records().is_empty(), "observe: no event, no block");
    assert!(rt
        .ingress_check(&RequestView::new("GET", "/", "203.0.113.40"))
        .is_allow());

    let mapped = format!("{entry}[rule_actions]\nrepeated_not_found = {{ action = \"temp_block\", scopes = [\"ip\"], ttl = 120 }}\n");
    let (rt, out) = runtime(&mapped);
    let blocks: usize = (0..3)
        .map(|_| rt.handle_event(&event(not_found("203.0.113.41"))))
        .sum();
    assert_eq!(blocks, 1);
    let applied = out.of("audit.enforcement.block_applied");
    assert_eq!(applied.len(), 1);
    assert_eq!(
        applied[0]["attributes"]["security_rule.name"],
        "repeated_not_found"
    );
    assert_eq!(applied[0]["attributes"]["enforcement.ttl"], 120);
    assert!(matches!(
        rt.ingress_check(&RequestView::new("GET", "/", "203.0.113.41")),
        IngressDecision::Deny { .. }
    ));
}

#[test]
fn plugin_paths_resolve_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let lib = plugin("credential_stuffing");
    std::fs::copy(&lib, dir.path().join("libcs.so")).unwrap();
    let cfg = dir.path().join("sec-audit.toml");
    std::fs::write(&cfg, "enabled = true\n[[rules]]\nplugin = \"libcs.so\"\n").unwrap();
    let rt = Runtime::builder(Config::from_file(&cfg).unwrap())
        .sink(Sink::Discard)
        .build()
        .unwrap();
    assert!(rt.engine().rule_names().any(|n| n == "credential_stuffing"));
}

#[test]
fn broken_plugin_entries_fail_the_start_naming_the_file() {
    let build = |toml: String| {
        Runtime::builder(Config::from_toml_str(&toml).unwrap())
            .sink(Sink::Discard)
            .build()
    };
    let missing = build("[[rules]]\nplugin = \"/nonexistent/libnope.so\"".into()).unwrap_err();
    assert!(matches!(missing, BuildError::Plugin(_)));
    assert!(
        missing.to_string().contains("/nonexistent/libnope.so"),
        "{missing}"
    );
    let lib = plugin("repeated_not_found");
    let digest = build(format!(
        "[[rules]]\nplugin = \"{}\"\nsha256 = \"{}\"",
        lib.display(),
        "0".repeat(64)
    ))
    .unwrap_err();
    assert!(
        digest.to_string().contains("sha256") || digest.to_string().contains("digest"),
        "{digest}"
    );
    let dup = build(format!(
        "[[rules]]\nplugin = \"{0}\"\n[[rules]]\nplugin = \"{0}\"",
        lib.display()
    ))
    .unwrap_err();
    assert!(dup.to_string().contains("twice"), "{dup}");
    // The configuration check reports the same as E001.
    let config = Config::from_toml_str("[[rules]]\nplugin = \"/nonexistent/libnope.so\"").unwrap();
    assert!(sec_audit_enforce::check(&config)
        .iter()
        .any(|f| f.id == "E001" && f.message.contains("libnope.so")));
}
