//! The bounded memory of recent request ids (at least the last
//! 100 000 distinct ids): a map and a first-seen FIFO.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// What the replay decided for a request on its ingress pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Allowed,
    Denied,
}

/// The last `capacity` distinct request ids and their state. When full, the
/// id seen first is forgotten.
pub struct RequestWindow {
    capacity: usize,
    states: HashMap<Rc<str>, RequestState>,
    order: VecDeque<Rc<str>>,
}

impl RequestWindow {
    pub fn new(capacity: usize) -> Self {
        RequestWindow {
            capacity: capacity.max(1),
            states: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, id: &str) -> Option<RequestState> {
        self.states.get(id).copied()
    }

    /// Remembers a new id (the caller checked it is not known).
    pub fn insert(&mut self, id: &str, state: RequestState) {
        if let Some(s) = self.states.get_mut(id) {
            *s = state;
            return;
        }
        while self.states.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.states.remove(&old);
                }
                None => break,
            }
        }
        let id: Rc<str> = Rc::from(id);
        self.order.push_back(Rc::clone(&id));
        self.states.insert(id, state);
    }

    /// How many request ids are remembered.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut w = RequestWindow::new(3);
        w.insert("a", RequestState::Denied);
        w.insert("b", RequestState::Allowed);
        w.insert("c", RequestState::Allowed);
        assert_eq!(w.get("a"), Some(RequestState::Denied));
        w.insert("d", RequestState::Allowed);
        assert_eq!(w.len(), 3);
        assert_eq!(w.get("a"), None);
        assert_eq!(w.get("b"), Some(RequestState::Allowed));
        assert_eq!(w.get("d"), Some(RequestState::Allowed));
        w.insert("b", RequestState::Denied);
        assert_eq!(w.len(), 3);
        assert_eq!(w.get("b"), Some(RequestState::Denied));
    }

    #[test]
    fn stays_bounded_over_many_ids() {
        let mut w = RequestWindow::new(1000);
        for i in 0..50_000 {
            w.insert(&format!("req-{i}"), RequestState::Allowed);
        }
        assert_eq!(w.len(), 1000);
        assert_eq!(w.order.len(), 1000);
        assert!(w.get("req-49999").is_some());
        assert!(w.get("req-49000").is_some());
        assert!(w.get("req-48999").is_none());
    }
}
