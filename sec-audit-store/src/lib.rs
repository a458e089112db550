//! Stores for sec-audit: the block-store contract and its implementations
//! (memory, Redis, Postgres, tiered), and Redis-backed detection state
//! (counters and history) shared by every worker.

pub mod block;
pub mod memory;

pub use block::{BlockEntry, BlockStore, NewBlock, StoreError};
pub use memory::MemoryBlockStore;
