//! The configuration vocabulary shared by every configuration type of the
//! workspace: serde field types that range-check while they deserialize
//! (numbers, durations, severities, string lists, regexes, decisions), one
//! duration syntax (`900` or `"15m"`), and the translation of a serde error
//! into the key it is about and a message that never repeats a string value.
//!
//! A built-in rule's parameters are a `#[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]` struct of these types ([`params`]): a typo
//! is an unknown parameter, never a silent default.

use std::fmt;

use regex::Regex;
use rust_decimal::Decimal;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::policy::ActionKind;

/// A rule's configuration table (TOML tables are converted to this).
pub type RuleConfig = Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("rules: `builtin = \"{0}\"` is not a built-in rule")]
    UnknownBuiltin(String),
    #[error("rules: an entry has no `builtin` (or `plugin`) key")]
    MissingBuiltin,
    #[error("rule `{rule}`: unknown parameter `{key}`")]
    UnknownParameter { rule: String, key: String },
    #[error("rule `{rule}`: missing required parameter `{key}`")]
    MissingParameter { rule: String, key: String },
    #[error("rule `{rule}`: parameter `{key}`: {reason}")]
    BadValue {
        rule: String,
        key: String,
        reason: String,
    },
}

impl ConfigError {
    /// A bad value of parameter `key` of rule `rule`.
    pub fn bad(rule: &str, key: &str, reason: impl Into<String>) -> Self {
        ConfigError::BadValue {
            rule: rule.to_string(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// The parameter the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownParameter { key, .. }
            | ConfigError::MissingParameter { key, .. }
            | ConfigError::BadValue { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Deserializes rule `rule`'s parameters from its table (a `builtin` key is
/// ignored). The error names the rule and the parameter.
pub fn params<T: DeserializeOwned>(rule: &str, table: &RuleConfig) -> Result<T, ConfigError> {
    let mut table = table.clone();
    table.remove("builtin");
    let value = Value::Object(table);
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let (key, problem) = explain(&e.path().to_string(), &e.inner().to_string());
        // The parameter is the path's first segment (`paths[1]` is about
        // `paths`); a missing one is named by the message.
        let param = match (e.path().iter().next(), &problem) {
            (Some(serde_path_to_error::Segment::Map { key }), _) => key.clone(),
            _ => key,
        };
        match problem {
            Problem::Unknown => ConfigError::UnknownParameter {
                rule: rule.to_string(),
                key: param,
            },
            Problem::Missing => ConfigError::MissingParameter {
                rule: rule.to_string(),
                key: param,
            },
            Problem::Bad(reason) => ConfigError::BadValue {
                rule: rule.to_string(),
                key: param,
                reason,
            },
        }
    })
}

// ---------------------------------------------------------------------------
// Serde errors in this project's words.

/// What a serde error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The key is not part of the schema.
    Unknown,
    /// The key is required and absent.
    Missing,
    /// The value is wrong; the reason never repeats a string value.
    Bad(String),
}

/// Marks a custom error raised for a key below the value being
/// deserialized (see [`sub_error`]); [`explain`] strips it.
const SUB_KEY: char = '\u{1}';

/// A custom serde error about `sub` below the value being deserialized
/// (e.g. `sha256` of a whole `[[rules]]` entry), for deserializers that read
/// a table as a whole before they can tell what it is: [`explain`] appends
/// `sub` to the error's key path.
pub fn sub_error<E: de::Error>(sub: &str, reason: impl fmt::Display) -> E {
    E::custom(format!("{SUB_KEY}{sub}{SUB_KEY}{reason}"))
}

/// `parent` and `child` joined as a key path (`a.b`, `a[0]`).
pub fn join_key(parent: &str, child: &str) -> String {
    if parent.is_empty() || parent == "." {
        child.to_string()
    } else if child.is_empty() {
        parent.to_string()
    } else if child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}

fn backticked(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('`')?;
    rest.split_once('`').map(|(k, _)| k)
}

fn last_segment(path: &str) -> &str {
    path.rsplit(['.', '[']).next().unwrap_or(path)
}

/// Translates a serde error at `path` (as `serde_path_to_error` prints it)
/// into the full key it is about and the problem.
pub fn explain(path: &str, message: &str) -> (String, Problem) {
    let path = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix(SUB_KEY) {
        if let Some((sub, reason)) = rest.split_once(SUB_KEY) {
            return explain(&join_key(path, sub), reason);
        }
    }
    if let Some(field) = message.strip_prefix("unknown field ").and_then(backticked) {
        let key = if last_segment(path) == field {
            path.to_string()
        } else {
            join_key(path, field)
        };
        return (key, Problem::Unknown);
    }
    if let Some(field) = message.strip_prefix("missing field ").and_then(backticked) {
        return (join_key(path, field), Problem::Missing);
    }
    (path.to_string(), Problem::Bad(scrub(message)))
}

/// serde's `invalid type: string "…", expected …` without the string (it
/// could be a password written under the wrong key).
fn scrub(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(i) = rest.rfind(", expected ") {
                let (got, expected) = (&rest[..i], &rest[i + ", expected ".len()..]);
                let got = if got.starts_with("string") || got.starts_with("character") {
                    "a string"
                } else {
                    got
                };
                let expected = match expected {
                    "a sequence" => "a list",
                    "a map" => "a table",
                    other => other,
                };
                return format!("expected {expected} (got {got})");
            }
        }
    }
    message.to_string()
}

// ---------------------------------------------------------------------------
// Durations.

/// Ten years, the longest window or TTL a rule parameter may have.
pub const TEN_YEARS_SECS: u64 = 10 * 365 * 86_400;

/// Parses a duration: a whole number with an optional unit `ms`, `s`, `m`,
/// `h` or `d` (any case; no unit is seconds). Returns milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" => 1000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ if num.is_empty() => {
            return Err(format!(
                "`{t}` is not a duration (e.g. 300, 90s, 15m, 2h, 7d)"
            ))
        }
        other => return Err(format!("unknown unit `{other}` (use ms, s, m, h or d)")),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a duration (e.g. 300, 90s, 15m, 2h, 7d)"))?;
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{t}` is too long"))
}

/// Parses a duration in whole seconds (`300`, `90s`, `15m`, `2h`, `7d`).
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let ms = parse_duration_ms(s)?;
    if ms % 1000 != 0 {
        return Err(format!("`{}` is not a whole number of seconds", s.trim()));
    }
    Ok(ms / 1000)
}

/// A duration in configuration: an integer (in the key's unit) or a
/// duration string; checked to lie in `LO..=HI` of that unit.
struct DurationVisitor {
    /// Milliseconds per unit: 1000 for seconds, 1 for milliseconds.
    unit_ms: u64,
    lo: u64,
    hi: u64,
}

impl DurationVisitor {
    fn check<E: de::Error>(&self, v: u64) -> Result<u64, E> {
        if v < self.lo || v > self.hi {
            return Err(E::custom(if self.lo == 1 && self.hi == u64::MAX {
                format!("must be greater than 0 (got {v})")
            } else {
                format!("must be {}-{} (got {v})", self.lo, self.hi)
            }));
        }
        Ok(v)
    }
}

impl Visitor<'_> for DurationVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.unit_ms == 1 {
            "milliseconds"
        } else {
            "seconds"
        };
        write!(
            f,
            "a number of {unit} or a duration such as \"15m\" or \"90s\""
        )
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        if v < 0 {
            return Err(E::custom(format!("must not be negative (got {v})")));
        }
        self.check(v as u64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        self.check(v)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<u64, E> {
        let ms = parse_duration_ms(s).map_err(E::custom)?;
        if ms % self.unit_ms != 0 {
            return Err(E::custom(format!(
                "`{}` is not a whole number of seconds",
                s.trim()
            )));
        }
        self.check(ms / self.unit_ms)
    }
}

/// `deserialize_with` for a duration in seconds, greater than 0: `900` or
/// `"15m"`.
pub fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(DurationVisitor {
        unit_ms: 1000,
        lo: 1,
        hi: u64::MAX,
    })
}

/// `deserialize_with` for an optional duration in seconds (see [`seconds`]).
pub fn optional_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    seconds(d).map(Some)
}

/// A duration in seconds, greater than 0: `900` or `"15m"` (a map value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub u64);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        seconds(d).map(Secs)
    }
}

/// A duration in milliseconds within `LO..=HI`: `500` or `"2s"`.
pub fn millis_in<'de, D: Deserializer<'de>, const LO: u64, const HI: u64>(
    d: D,
) -> Result<u64, D::Error> {
    d.deserialize_any(DurationVisitor {
        unit_ms: 1,
        lo: LO,
        hi: HI,
    })
}

// ---------------------------------------------------------------------------
// Integers.

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = i128;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i128, E> {
        Ok(i128::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i128, E> {
        Ok(i128::from(v))
    }
}

/// An integer within `lo..=hi`; the message names the range.
pub fn integer_in<'de, D: Deserializer<'de>>(d: D, lo: i128, hi: i128) -> Result<i128, D::Error> {
    let v = d.deserialize_any(IntVisitor)?;
    if v < lo && lo == 0 {
        return Err(de::Error::custom(format!("must not be negative (got {v})")));
    }
    if v < lo || v > hi {
        return Err(de::Error::custom(if hi == i128::from(u64::MAX) {
            format!("must be at least {lo} (got {v})")
        } else {
            format!("must be {lo}-{hi} (got {v})")
        }));
    }
    Ok(v)
}

/// An integer within `LO..=HI` (`deserialize_with`, into any integer type
/// the range fits).
pub fn int_in<'de, D, T, const LO: i64, const HI: u64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    let v = integer_in(d, i128::from(LO), i128::from(HI))?;
    T::try_from(v).map_err(|_| de::Error::custom(format!("is out of range (got {v})")))
}

/// [`int_in`] for an optional field.
pub fn optional_int_in<'de, D, T, const LO: i64, const HI: u64>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    int_in::<D, T, LO, HI>(d).map(Some)
}

// ---------------------------------------------------------------------------
// Lenient numbers: rule parameters take integers, floats and numeric
// strings (`threshold = "4"`), as they always have.

/// A number of a rule parameter before its checks.
enum Num {
    F(f64),
    /// A string that is not a number (durations parse these).
    Text(String),
}

struct NumVisitor(&'static str);

impl Visitor<'_> for NumVisitor {
    type Value = Num;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
        Ok(Num::F(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
        Ok(Num::F(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
        Ok(Num::F(v))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Num, E> {
        Ok(match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Num::F(f),
            _ => Num::Text(s.trim().to_string()),
        })
    }
}

fn non_negative<E: de::Error>(n: Num) -> Result<f64, E> {
    match n {
        Num::F(f) if !f.is_finite() || f < 0.0 => {
            Err(E::custom(format!("must not be negative (got {f})")))
        }
        Num::F(f) => Ok(f),
        Num::Text(_) => Err(E::custom("expected a number")),
    }
}

/// A number ≥ 0 from an integer, a float or a numeric string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        non_negative(d.deserialize_any(NumVisitor("a number"))?).map(Number)
    }
}

/// A rule's window or TTL in whole seconds: greater than 0, at most ten
/// years; a number (fractions round up, numeric strings accepted) or a
/// duration string such as `"15m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = match d.deserialize_any(NumVisitor(
            "a number of seconds or a duration such as \"15m\"",
        ))? {
            Num::Text(s) if !s.starts_with(|c: char| c.is_ascii_digit()) => {
                return Err(de::Error::custom(
                    "expected a number of seconds or a duration such as \"15m\"",
                ))
            }
            Num::Text(s) => parse_duration_ms(&s).map_err(de::Error::custom)? as f64 / 1000.0,
            n => non_negative(n)?,
        };
        if n <= 0.0 {
            return Err(de::Error::custom("must be greater than 0"));
        }
        if n > TEN_YEARS_SECS as f64 {
            return Err(de::Error::custom("is more than ten years"));
        }
        Ok(Seconds(n.ceil() as u64))
    }
}

/// A severity, an integer from 1 to 10 (numeric strings accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Severity(pub u8);

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = non_negative(d.deserialize_any(NumVisitor("an integer from 1 to 10"))?)?;
        if n.fract() != 0.0 || !(1.0..=10.0).contains(&n) {
            return Err(de::Error::custom("must be an integer from 1 to 10"));
        }
        Ok(Severity(n as u8))
    }
}

/// An exact decimal from an integer, a float or a numeric string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(pub Decimal);

struct AmountVisitor;

impl Visitor<'_> for AmountVisitor {
    type Value = Option<Decimal>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal number")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Decimal::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Decimal::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(parse_decimal(&v.to_string()))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(parse_decimal(s.trim()))
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AmountVisitor)?
            .map(Amount)
            .ok_or_else(|| de::Error::custom("expected a decimal number"))
    }
}

/// A list of strings; a single string counts as a list of one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StringList(pub Vec<String>);

impl StringList {
    pub fn of(items: &[&str]) -> Self {
        StringList(items.iter().map(|s| s.to_string()).collect())
    }
}

struct StringListVisitor;

impl<'de> Visitor<'de> for StringListVisitor {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(vec![s.to_string()])
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element::<ListItem>()? {
            out.push(s.0);
        }
        Ok(out)
    }
}

/// One string of a list; anything else is "expected a list of strings".
struct ListItem(String);

impl<'de> Deserialize<'de> for ListItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
                Ok(s.to_string())
            }
        }
        d.deserialize_any(V).map(ListItem)
    }
}

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringListVisitor).map(StringList)
    }
}

/// A list of regexes (a single pattern counts as a list of one), compiled.
#[derive(Debug, Clone)]
pub struct Regexes(pub Vec<Regex>);

impl Regexes {
    /// Compiles built-in default patterns.
    pub fn of(patterns: &[&str]) -> Result<Self, regex::Error> {
        patterns
            .iter()
            .map(|p| Regex::new(p))
            .collect::<Result<_, _>>()
            .map(Regexes)
    }
}

impl<'de> Deserialize<'de> for Regexes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = StringList::deserialize(d)?;
        list.0
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| de::Error::custom(format!("invalid regex `{p}`: {e}")))
            })
            .collect::<Result<_, _>>()
            .map(Regexes)
    }
}

impl<'de> Deserialize<'de> for ActionKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ActionKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an action name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ActionKind, E> {
                ActionKind::parse(s).ok_or_else(|| {
                    E::custom(format!(
                        "unknown action `{s}` (expected observe, alert, temp_block, persist_block or block)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A rule's suggested `decision`: an action name, or `"none"` / `""` for
/// none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision(pub Option<ActionKind>);

impl<'de> Deserialize<'de> for Decision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Decision;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an action name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Decision, E> {
                if s.is_empty() || s == "none" {
                    return Ok(Decision(None));
                }
                ActionKind::parse(s)
                    .map(|k| Decision(Some(k)))
                    .ok_or_else(|| E::custom(format!("unknown action `{s}`")))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------
// Numbers as rules read them from events.

/// A number from an integer, a float or a numeric string.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    text.parse::<Decimal>()
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())
}

/// An exact decimal from a number or a numeric string.
pub fn decimal(v: &Value) -> Option<Decimal> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    parse_decimal(&text)
}

/// The field names a serde-derived struct accepts, read from its derived
/// `Deserialize` (the `fields` it hands to `deserialize_struct`): what the
/// documentation tests compare `docs/configuration.md` against, so a key
/// added to a schema type without a heading fails a test.
pub fn struct_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'f>(&'f mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("introspection stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct P {
        n: Number,
        w: Seconds,
        s: Severity,
        l: StringList,
        r: Option<Regexes>,
        d: Decision,
        a: Option<Amount>,
    }

    impl Default for P {
        fn default() -> Self {
            P {
                n: Number(1.0),
                w: Seconds(300),
                s: Severity(5),
                l: StringList::of(&["x"]),
                r: None,
                d: Decision(None),
                a: None,
            }
        }
    }

    fn p(v: Value) -> Result<P, ConfigError> {
        params("r", v.as_object().unwrap())
    }

    #[test]
    fn numbers_accept_integers_floats_and_numeric_strings() {
        for (v, n) in [(json!(5), 5.0), (json!(2.5), 2.5), (json!("7"), 7.0)] {
            assert_eq!(p(json!({ "n": v })).unwrap().n, Number(n));
        }
        let e = p(json!({"n": -1})).unwrap_err().to_string();
        assert_eq!(e, "rule `r`: parameter `n`: must not be negative (got -1)");
        assert!(p(json!({"n": "x"})).is_err());
        assert!(p(json!({"n": true})).is_err());
        assert_eq!(p(json!({})).unwrap().n, Number(1.0));
    }

    #[test]
    fn unknown_and_builtin_keys() {
        assert_eq!(
            p(json!({"builtin": "x", "n": 3, "treshold": 4})).unwrap_err(),
            ConfigError::UnknownParameter {
                rule: "r".into(),
                key: "treshold".into()
            }
        );
    }

    #[test]
    fn regexes_severity_decision_and_seconds() {
        let e = p(json!({"r": ["ok", "(bad"]})).unwrap_err();
        assert_eq!(e.key(), Some("r"));
        assert!(e.to_string().contains("invalid regex `(bad`"), "{e}");
        assert!(p(json!({"s": 11})).is_err());
        assert_eq!(p(json!({"s": "9"})).unwrap().s, Severity(9));
        assert!(p(json!({"d": "explode"})).is_err());
        assert_eq!(
            p(json!({"d": "temp_block"})).unwrap().d,
            Decision(Some(ActionKind::TempBlock))
        );
        assert_eq!(p(json!({"d": "none"})).unwrap().d, Decision(None));
        assert_eq!(p(json!({"w": 0.5})).unwrap().w, Seconds(1));
        assert_eq!(p(json!({"w": "15m"})).unwrap().w, Seconds(900));
        assert_eq!(p(json!({"w": 900})).unwrap().w, Seconds(900));
        assert_eq!(p(json!({"w": "90s"})).unwrap().w, Seconds(90));
        for bad in [json!(0), json!(-1), json!("soon"), json!("5w"), json!(4e8)] {
            assert!(p(json!({ "w": bad })).is_err(), "{bad}");
        }
        assert_eq!(p(json!({"l": "one"})).unwrap().l, StringList::of(&["one"]));
        assert!(p(json!({"l": [1]})).is_err());
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(
            p(json!({"a": "10000.01"}))
                .unwrap()
                .a
                .unwrap()
                .0
                .to_string(),
            "10000.01"
        );
        assert!(p(json!({"a": "abc"})).is_err());
        assert_eq!(decimal(&json!("10000.01")).unwrap().to_string(), "10000.01");
        assert!(decimal(&json!(10000.01)).unwrap() > decimal(&json!(10000)).unwrap());
        assert!(decimal(&json!("1e3")).is_some());
        assert!(decimal(&json!("abc")).is_none());
        assert!(decimal(&json!(null)).is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("900"), Ok(900));
        assert_eq!(parse_duration_secs("15m"), Ok(900));
        assert_eq!(parse_duration_secs(" 2H "), Ok(7200));
        assert_eq!(parse_duration_secs("7d"), Ok(604_800));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert!(parse_duration_secs("1500ms").is_err());
        assert!(parse_duration_secs("5w").is_err());
        assert!(parse_duration_secs("-5").is_err());
        assert!(parse_duration_secs("abc").is_err());
        assert!(parse_duration_secs("").is_err());
        assert!(parse_duration_secs("99999999999999999d").is_err());
    }

    #[test]
    fn serde_messages_never_repeat_strings() {
        let (k, p) = explain("a.b", "invalid type: string \"s3cret\", expected a boolean");
        assert_eq!(k, "a.b");
        assert_eq!(p, Problem::Bad("expected a boolean (got a string)".into()));
        assert_eq!(
            explain("rules[0]", "unknown field `sha`, expected one of `a`"),
            ("rules[0].sha".into(), Problem::Unknown)
        );
        assert_eq!(
            explain("enabeld", "unknown field `enabeld`, expected `x`"),
            ("enabeld".into(), Problem::Unknown)
        );
        assert_eq!(
            explain("escalation", "missing field `factor`"),
            ("escalation.factor".into(), Problem::Missing)
        );
        let e: serde_json::Error = sub_error("sha256", "expected a string");
        assert_eq!(
            explain("rules[2]", &e.to_string()),
            (
                "rules[2].sha256".into(),
                Problem::Bad("expected a string".into())
            )
        );
    }
}
