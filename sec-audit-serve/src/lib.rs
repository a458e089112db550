pub mod auth;
pub mod config;
pub mod ingest;
pub mod metrics;
