//! `sec-audit migrate`: applies the embedded Postgres migrations of the
//! permanent-block table and reports what it applied.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sec_audit_core::SystemClock;
use sec_audit_store::{PostgresBlockStore, PostgresConfig};

use crate::error::CliError;
use crate::util::{load_config, redact_url};

/// Statement timeout for migrations (DDL may take longer than a lookup).
const MIGRATION_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(config_path: &Path) -> Result<(), CliError> {
    let config = load_config(config_path)?;
    if config.database_url.trim().is_empty() {
        return Err(CliError::config(format!(
            "migrate: {} sets no database_url (set it, or the DATABASE_URL environment variable)",
            config_path.display()
        )));
    }
    let url = redact_url(&config.database_url);
    let pg = PostgresConfig::new(config.database_url.clone())
        .with_connect_timeout(Duration::from_millis(config.connect_timeout_ms.max(1)))
        .with_statement_timeout(MIGRATION_STATEMENT_TIMEOUT)
        .with_pool_size(1)
        .with_failure_backoff(Duration::ZERO);
    let store = PostgresBlockStore::new(&pg, Arc::new(SystemClock))
        .map_err(|e| CliError::config(format!("database_url: {e}")))?;
    let pending = store
        .pending_migrations()
        .map_err(|e| CliError::runtime(format!("migrate {url}: {e}")))?;
    let applied = store
        .run_migrations()
        .map_err(|e| CliError::runtime(format!("migrate {url}: {e}")))?;
    if applied.is_empty() {
        let total = store
            .applied_migrations()
            .map_err(|e| CliError::runtime(format!("migrate {url}: {e}")))?
            .len();
        crate::outln!("nothing to apply: {url} is up to date ({total} migrations applied)")?;
        return Ok(());
    }
    // Names when the pending list matches what was applied, else versions.
    let names = if pending.len() == applied.len() {
        pending
    } else {
        applied
    };
    for n in &names {
        crate::outln!("applied {n}")?;
    }
    crate::outln!(
        "{} migration{} applied to {url}",
        names.len(),
        if names.len() == 1 { "" } else { "s" }
    )?;
    Ok(())
}
