//! A bounded queue in front of egress: request handlers hand recorded
//! events over without waiting, std worker threads run
//! [`Runtime::handle_event`] on them.
//!
//! - [`EgressQueue::try_submit`] never blocks and never holds more than
//!   `capacity` queued events: a full (or shut down) queue refuses the event
//!   with [`QueueFull`] and counts it as dropped.
//! - Workers are plain threads named `sec-audit-egress-N`, so egress on
//!   Redis/Postgres state never runs on an async executor.
//! - [`EgressQueue::shutdown`] stops accepting, lets the workers drain what
//!   is queued, joins them and flushes the runtime's emitter; it reports how
//!   many events were still queued at its deadline (0 = nothing lost).
//! - Dropping the last handle without `shutdown` does the same with a
//!   deadline of 2 s (`DROP_DEADLINE`): it blocks the dropping thread up
//!   to that long (call `shutdown` yourself to choose the bound, and do not
//!   drop the last handle on an async executor thread with a deep queue).
//!   Events still queued then are handled by the workers, which exit when
//!   the queue is empty, unless the process exits first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use sec_audit_core::AuditEvent;

use crate::runtime::Runtime;

/// The queue refused an event: it is full, or shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("egress queue is full or shut down; event dropped")]
pub struct QueueFull;

/// Counters of a queue since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressQueueStats {
    /// Events taken by `try_submit`.
    pub accepted: u64,
    /// Events refused (queue full or shut down).
    pub dropped: u64,
    /// Events the workers have run through egress.
    pub processed: u64,
}

struct State {
    queue: VecDeque<AuditEvent>,
    closed: bool,
    /// Workers still running.
    running: usize,
    /// Events taken by a worker and not finished yet.
    busy: usize,
    /// Workers asleep on `work` (a submit wakes one only if any is).
    waiting: usize,
}

struct Shared {
    runtime: Arc<Runtime>,
    capacity: usize,
    state: Mutex<State>,
    /// Signals workers: an event arrived, or the queue closed.
    work: Condvar,
    /// Signals shutdown: a worker exited.
    exited: Condvar,
    accepted: AtomicU64,
    dropped: AtomicU64,
    processed: AtomicU64,
}

/// How long dropping the last handle waits for the workers to drain the
/// queue (then joins them and flushes the emitter).
const DROP_DEADLINE: Duration = Duration::from_secs(2);

/// Owns the workers; when the last handle goes away, the queue shuts down
/// with a deadline of `DROP_DEADLINE`.
struct Owner {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let left = self.shutdown(DROP_DEADLINE);
        if left > 0 {
            tracing::warn!(
                events = left,
                "egress queue dropped without shutdown(); events still queued after the drop deadline are handled in the background"
            );
        }
    }
}

/// The queue handle. Cloning shares the queue.
#[derive(Clone)]
pub struct EgressQueue {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for EgressQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressQueue")
            .field("capacity", &self.owner.shared.capacity)
            .field("depth", &self.depth())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Shared {
    fn close(&self) {
        self.state.lock().closed = true;
        self.work.notify_all();
    }

    fn worker(&self) {
        let mut finished = false;
        loop {
            let event = {
                let mut st = self.state.lock();
                if finished {
                    st.busy -= 1;
                }
                loop {
                    if let Some(e) = st.queue.pop_front() {
                        st.busy += 1;
                        break Some(e);
                    }
                    if st.closed {
                        break None;
                    }
                    st.waiting += 1;
                    self.work.wait(&mut st);
                    st.waiting -= 1;
                }
            };
            let Some(event) = event else { break };
            // Never panics into the worker (isolated inside).
            self.runtime.handle_event(&event);
            self.processed.fetch_add(1, Ordering::Relaxed);
            finished = true;
        }
        let mut st = self.state.lock();
        st.running = st.running.saturating_sub(1);
        self.exited.notify_all();
    }
}

impl EgressQueue {
    /// A queue of at most `capacity` (at least 1) events, drained by
    /// `workers` (at least 1) threads named `sec-audit-egress-N`. A thread
    /// that cannot be started is logged; if none can, events queue up to
    /// `capacity` and are then refused.
    pub fn new(runtime: Arc<Runtime>, capacity: usize, workers: usize) -> EgressQueue {
        let capacity = capacity.max(1);
        let shared = Arc::new(Shared {
            runtime,
            capacity,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                closed: false,
                running: 0,
                busy: 0,
                waiting: 0,
            }),
            work: Condvar::new(),
            exited: Condvar::new(),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            processed: AtomicU64::new(0),
        });
        let mut handles = Vec::new();
        for n in 0..workers.max(1) {
            let worker = Arc::clone(&shared);
            shared.state.lock().running += 1;
            match std::thread::Builder::new()
                .name(format!("sec-audit-egress-{n}"))
                .spawn(move || worker.worker())
            {
                Ok(h) => handles.push(h),
                Err(e) => {
                    shared.state.lock().running -= 1;
                    tracing::error!(error = %e, "egress worker thread could not be started");
                }
            }
        }
        EgressQueue {
            owner: Arc::new(Owner {
                shared,
                workers: Mutex::new(handles),
            }),
        }
    }

    /// Queues `event` for egress. Never blocks: a full or shut-down queue
    /// refuses it (counted in `dropped`).
    pub fn try_submit(&self, event: AuditEvent) -> Result<(), QueueFull> {
        let s = &self.owner.shared;
        let wake = {
            let mut st = s.state.lock();
            if st.closed || st.queue.len() >= s.capacity {
                drop(st);
                s.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(QueueFull);
            }
            st.queue.push_back(event);
            // A busy worker takes it next anyway: no futex wake-up for it.
            st.waiting > 0
        };
        s.accepted.fetch_add(1, Ordering::Relaxed);
        if wake {
            s.work.notify_one();
        }
        Ok(())
    }

    /// Events queued now (not yet taken by a worker).
    pub fn depth(&self) -> usize {
        self.owner.shared.state.lock().queue.len()
    }

    pub fn capacity(&self) -> usize {
        self.owner.shared.capacity
    }

    pub fn stats(&self) -> EgressQueueStats {
        let s = &self.owner.shared;
        EgressQueueStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            processed: s.processed.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting, lets the workers drain the queue until `deadline`
    /// has passed, joins the workers that finished and flushes the runtime's
    /// emitter. Returns the number of events not through egress at the
    /// deadline — still queued, or being handled by a worker — (0: every
    /// accepted event went through egress). Calling it again
    /// waits again and reports again.
    pub fn shutdown(&self, deadline: Duration) -> usize {
        let left = self.owner.shutdown(deadline);
        if left > 0 {
            tracing::warn!(
                events = left,
                "egress queue shut down with events still queued"
            );
        }
        left
    }
}

impl Owner {
    /// See [`EgressQueue::shutdown`] (without its warning).
    fn shutdown(&self, deadline: Duration) -> usize {
        let s = &self.shared;
        s.close();
        let until = Instant::now() + deadline;
        let left = {
            let mut st = s.state.lock();
            while st.running > 0 {
                if s.exited.wait_until(&mut st, until).timed_out() {
                    break;
                }
            }
            st.queue.len() + st.busy
        };
        let mut workers = self.workers.lock();
        let (done, busy): (Vec<_>, Vec<_>) = workers.drain(..).partition(|h| h.is_finished());
        for h in done {
            if h.join().is_err() {
                tracing::error!("egress worker panicked");
            }
        }
        *workers = busy;
        drop(workers);
        s.runtime.flush();
        left
    }
}
