//! Redaction of sensitive data before anything leaves the process.
//!
//! Keys are normalized (lower-cased, every non-alphanumeric character
//! deleted). A key is sensitive when a normalized entry of the sensitive list
//! is a substring of it, unless the normalized key is exactly in the
//! allowlist. Value regexes redact matching string values anywhere.

use regex::Regex;
use serde_json::{Map, Value};

/// The replacement for a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// The default sensitive key list.
pub const DEFAULT_SENSITIVE: [&str; 15] = [
    "password",
    "passwd",
    "pwd",
    "passcode",
    "secret",
    "token",
    "apikey",
    "authorization",
    "bearer",
    "jwt",
    "cookie",
    "sessionid",
    "csrf",
    "creditcard",
    "ssn",
];

#[derive(Debug, thiserror::Error)]
pub enum ScrubError {
    #[error("invalid scrub value regex `{pattern}`: {source}")]
    InvalidRegex {
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
}

/// Normalizes a key: lower-case, alphanumeric characters only.
pub fn normalize_key(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

#[derive(Debug, Clone)]
pub struct Scrubber {
    /// Normalized, sorted by first byte.
    sensitive: Vec<String>,
    /// The range of `sensitive` (start, length) whose entries start with
    /// this byte.
    by_first_byte: [(u32, u32); 256],
    allow: Vec<String>,
    value_patterns: Vec<Regex>,
}

fn by_first_byte(sensitive: &[String]) -> [(u32, u32); 256] {
    let mut t = [(0u32, 0u32); 256];
    for (i, s) in sensitive.iter().enumerate() {
        if let Some(b) = s.bytes().next() {
            let slot = &mut t[usize::from(b)];
            if slot.1 == 0 {
                slot.0 = u32::try_from(i).unwrap_or(u32::MAX);
            }
            slot.1 = slot.1.saturating_add(1);
        }
    }
    t
}

impl Default for Scrubber {
    fn default() -> Self {
        Scrubber::new(DEFAULT_SENSITIVE, [] as [&str; 0], [] as [&str; 0]).unwrap_or_else(|_| {
            Scrubber {
                sensitive: Vec::new(),
                by_first_byte: [(0, 0); 256],
                allow: Vec::new(),
                value_patterns: Vec::new(),
            }
        })
    }
}

impl Scrubber {
    /// Builds a scrubber. Empty (after normalization) sensitive entries are
    /// ignored; an invalid value regex is an error.
    pub fn new<S, A, P>(sensitive: S, allow: A, value_patterns: P) -> Result<Self, ScrubError>
    where
        S: IntoIterator,
        S::Item: AsRef<str>,
        A: IntoIterator,
        A::Item: AsRef<str>,
        P: IntoIterator,
        P::Item: AsRef<str>,
    {
        let mut sensitive: Vec<String> = sensitive
            .into_iter()
            .map(|s| normalize_key(s.as_ref()))
            .filter(|s| !s.is_empty())
            .collect();
        sensitive.sort_by_key(|s| s.as_bytes()[0]);
        let allow = allow
            .into_iter()
            .map(|s| normalize_key(s.as_ref()))
            .collect();
        let value_patterns = value_patterns
            .into_iter()
            .map(|p| {
                Regex::new(p.as_ref()).map_err(|e| ScrubError::InvalidRegex {
                    pattern: p.as_ref().to_string(),
                    source: Box::new(e),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Scrubber {
            by_first_byte: by_first_byte(&sensitive),
            sensitive,
            allow,
            value_patterns,
        })
    }

    /// Whether the key's value must be redacted.
    pub fn is_sensitive_key(&self, key: &str) -> bool {
        // ASCII keys (nearly all) are normalized into a stack buffer; for
        // ASCII, `is_alphanumeric` and `to_lowercase` are their ASCII forms.
        let mut buf = [0u8; 64];
        let normalized;
        let k: &[u8] = if key.len() <= buf.len() && key.is_ascii() {
            let mut n = 0;
            for b in key.bytes().filter(u8::is_ascii_alphanumeric) {
                buf[n] = b.to_ascii_lowercase();
                n += 1;
            }
            &buf[..n]
        } else {
            normalized = normalize_key(key);
            normalized.as_bytes()
        };
        if self.allow.iter().any(|a| a.as_bytes() == k) {
            return false;
        }
        // Substring search over bytes is substring search over the text
        // (UTF-8 is self-synchronizing). At each position only the entries
        // starting with that byte are tried.
        (0..k.len()).any(|i| {
            let (start, len) = self.by_first_byte[usize::from(k[i])];
            let start = start as usize;
            self.sensitive
                .get(start..start + len as usize)
                .unwrap_or_default()
                .iter()
                .any(|s| k[i..].starts_with(s.as_bytes()))
        })
    }

    /// Whether a string value is redacted wherever it stands (it matches
    /// one of the value patterns).
    pub fn value_matches(&self, s: &str) -> bool {
        self.value_patterns.iter().any(|r| r.is_match(s))
    }

    /// Scrubs a value in place, recursing through objects and arrays.
    pub fn scrub_value(&self, value: &mut Value) {
        match value {
            Value::Object(map) => self.scrub_map(map),
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::String(s) if self.value_matches(s) => *s = REDACTED.to_string(),
            _ => {}
        }
    }

    /// Scrubs every entry of a map in place.
    pub fn scrub_map(&self, map: &mut Map<String, Value>) {
        self.scrub_map_except(map, &[]);
    }

    /// Scrubs a map in place, leaving the values of the `exempt` top-level
    /// keys untouched.
    pub fn scrub_map_except(&self, map: &mut Map<String, Value>, exempt: &[&str]) {
        for (k, v) in map.iter_mut() {
            if exempt.contains(&k.as_str()) {
                continue;
            }
            if self.is_sensitive_key(k) {
                *v = Value::String(REDACTED.to_string());
            } else {
                self.scrub_value(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_normalized_before_comparison() {
        let s = Scrubber::default();
        for k in [
            "api_key",
            "API-Key",
            "apiKey",
            "X-Auth-Token",
            "user_password",
            "Set-Cookie",
            "sessionid",
            "session_id",
            "credit_card_number",
            "SSN",
        ] {
            assert!(s.is_sensitive_key(k), "{k}");
        }
        for k in ["session", "user.id", "event_type", "path", "amount"] {
            assert!(!s.is_sensitive_key(k), "{k}");
        }
    }

    #[test]
    fn key_matching_agrees_with_the_plain_definition() {
        let s = Scrubber::new(
            ["password", "Tök-en", "ssn", "x"],
            ["x_y", "Ünï"],
            [] as [&str; 0],
        )
        .unwrap();
        let plain = |key: &str| {
            let k = normalize_key(key);
            !s.allow.contains(&k) && s.sensitive.iter().any(|e| k.contains(e.as_str()))
        };
        let long = "a_".repeat(40) + "password";
        for key in [
            "password",
            "PASS_word",
            "my-passwords",
            "tökens",
            "TÖKEN",
            "tok",
            "x_y",
            "X-Y",
            "xy",
            "unix",
            "ünï",
            "ÜNÏ",
            "",
            "--",
            "ssn_last4",
            "ŞSN",
            long.as_str(),
        ] {
            assert_eq!(s.is_sensitive_key(key), plain(key), "{key:?}");
        }
    }

    #[test]
    fn allowlist_matches_the_exact_normalized_key() {
        let s = Scrubber::new(DEFAULT_SENSITIVE, ["token_type"], [] as [&str; 0]).unwrap();
        assert!(!s.is_sensitive_key("Token-Type"));
        assert!(s.is_sensitive_key("token_types"));
        assert!(s.is_sensitive_key("access_token"));
    }

    #[test]
    fn empty_sensitive_entries_are_ignored() {
        let s = Scrubber::new(["", "--", "secret"], [] as [&str; 0], [] as [&str; 0]).unwrap();
        assert!(!s.is_sensitive_key("anything"));
        assert!(s.is_sensitive_key("client_secret"));
    }

    #[test]
    fn recursion_through_objects_and_arrays_and_value_regexes() {
        let s = Scrubber::new(
            DEFAULT_SENSITIVE,
            [] as [&str; 0],
            [r"^\d{4}-\d{4}-\d{4}-\d{4}$"],
        )
        .unwrap();
        let mut v = json!({"user": {"password": "hunter2", "name": "bob",
                           "cards": ["1234-5678-9012-3456", "note"]},
                           "list": [{"Authorization": "Bearer x"}], "n": 5});
        s.scrub_value(&mut v);
        assert_eq!(
            v,
            json!({"user": {"password": REDACTED, "name": "bob",
                             "cards": [REDACTED, "note"]},
                             "list": [{"Authorization": REDACTED}], "n": 5})
        );
    }

    #[test]
    fn exempt_keys_are_left_alone() {
        let s = Scrubber::default();
        let mut m = json!({"session_id": "abc", "csrf_token": "t"})
            .as_object()
            .cloned()
            .unwrap();
        s.scrub_map_except(&mut m, &["session_id"]);
        assert_eq!(m["session_id"], json!("abc"));
        assert_eq!(m["csrf_token"], json!(REDACTED));
    }

    #[test]
    fn invalid_value_regex_is_an_error() {
        assert!(Scrubber::new(DEFAULT_SENSITIVE, [] as [&str; 0], ["("]).is_err());
    }

    #[test]
    fn non_ascii_keys_do_not_panic() {
        let s = Scrubber::default();
        assert!(s.is_sensitive_key("Пароль-password"));
        assert!(!s.is_sensitive_key("☃"));
    }
}
