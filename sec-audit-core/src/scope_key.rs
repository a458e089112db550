//! The scope key: a `(scope, value)` pair that blocks, counters and history
//! are keyed on. Scope definitions and extraction live in `sec-audit-rules`.

use std::fmt;

/// A `(scope, value)` pair, written `scope:value`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeKey {
    joined: String,
    split: usize,
}

impl ScopeKey {
    pub fn new(scope: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let scope = scope.as_ref();
        let mut joined = String::with_capacity(scope.len() + 1 + value.as_ref().len());
        joined.push_str(scope);
        joined.push(':');
        joined.push_str(value.as_ref());
        ScopeKey {
            joined,
            split: scope.len(),
        }
    }
    /// Makes this key `scope:value`, reusing its buffer.
    pub fn assign(&mut self, scope: &str, value: &str) {
        self.joined.clear();
        self.joined.push_str(scope);
        self.joined.push(':');
        self.joined.push_str(value);
        self.split = scope.len();
    }
    pub fn scope(&self) -> &str {
        &self.joined[..self.split]
    }
    pub fn value(&self) -> &str {
        &self.joined[self.split + 1..]
    }
    /// `scope:value`.
    pub fn as_str(&self) -> &str {
        &self.joined
    }
}

impl fmt::Debug for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeKey({})", self.joined)
    }
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.joined)
    }
}
