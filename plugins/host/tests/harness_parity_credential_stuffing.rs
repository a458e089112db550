//! The SDK's test host against the real host with the history-based example
//! plugin over the whole sample audit log.

mod parity;
mod support;

#[allow(dead_code)]
#[path = "../../examples/credential_stuffing/src/lib.rs"]
mod credential_stuffing_source;

use parity::{assert_same, run_both, sample_steps, Outcome};
use sec_audit_plugin_sdk::__private::RulesFactory;
use serde_json::json;
use support::plugin;

#[test]
fn credential_stuffing_matches_alike_in_the_test_host_and_the_host() {
    let steps = sample_steps(usize::MAX);
    let (native, harness) = run_both(
        &plugin("credential_stuffing"),
        <credential_stuffing_source::__SecAuditPluginFactory as RulesFactory>::make,
        json!({"distinct_usernames": 3, "window_seconds": 600}),
        &steps,
    );
    let matched = native
        .iter()
        .filter(|o| matches!(o, Outcome::Matches(m) if !m.is_empty()))
        .count();
    assert!(
        matched > 0,
        "the sample has credential stuffing at 3 usernames"
    );
    assert_same(&native, &harness, &steps);
}
