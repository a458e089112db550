//! The console's pages: what each template shows, computed here; the
//! templates (`templates/console/`, compiled in by askama) only lay it out
//! and escape every value. No template uses `|safe`.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use sec_audit_enforce::events::{keys, rfc3339};
use sec_audit_enforce::{BlockEntry, EventType, TrailRow};
use serde_json::{Map, Value};

use super::recent::{Minute, Record, MINUTES};
use super::session::{Role, Session};
use super::{AddForm, BlocksQuery, DecisionsQuery, PAGE_SIZE};

/// What every page but the login shows in its header.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `admin` or `read-only`.
    pub role: &'static str,
    pub admin: bool,
    pub actor: String,
    /// The session's CSRF token (the logout form).
    pub csrf: String,
    /// The current section of the navigation.
    pub active: &'static str,
}

impl Layout {
    pub fn of(s: &Session, active: &'static str) -> Layout {
        Layout {
            role: s.role.as_str(),
            admin: s.role == Role::Admin,
            actor: s.actor.clone(),
            csrf: s.csrf.clone(),
            active,
        }
    }
}

/// The frame of a page.
#[derive(Debug, Clone)]
pub struct Page {
    pub layout: Option<Layout>,
    pub title: String,
}

impl Page {
    pub fn new(layout: Option<Layout>, title: &str) -> Page {
        Page {
            layout,
            title: title.to_string(),
        }
    }
}

/// A URL query string (form-encoded).
fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// The page of one subject.
pub fn block_href(scope: &str, value: &str) -> String {
    format!("/ui/block?{}", query(&[("scope", scope), ("value", value)]))
}

/// A time as `2026-05-28 20:31:40 UTC`.
pub fn time(secs: f64) -> String {
    let t = rfc3339(secs);
    match (t.get(..10), t.get(11..19)) {
        (Some(d), Some(h)) => format!("{d} {h} UTC"),
        _ => t,
    }
}

/// A duration in words (`45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`).
pub fn span(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// At most `max` characters, with `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

fn json_text(m: &Map<String, Value>, max: usize) -> String {
    if m.is_empty() {
        return String::new();
    }
    cut(&serde_json::to_string(m).unwrap_or_default(), max)
}

/// The short name of an event type (`blocked`, `block_applied`, …).
pub fn short_type(t: EventType) -> &'static str {
    let s = t.as_str();
    s.strip_prefix("audit.enforcement.").unwrap_or(s)
}

/// A select option.
#[derive(Debug, Clone)]
pub struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn options(values: impl IntoIterator<Item = String>, chosen: &str, any: &str) -> Vec<Opt> {
    let mut out = vec![Opt {
        value: String::new(),
        label: any.to_string(),
        selected: chosen.is_empty(),
    }];
    out.extend(values.into_iter().map(|v| Opt {
        selected: v == chosen,
        label: v.clone(),
        value: v,
    }));
    out
}

// ---------------------------------------------------------------- rows

/// One block as the tables show it.
#[derive(Debug, Clone)]
pub struct BlockRow {
    pub scope: String,
    pub value: String,
    /// `temporary` or `permanent`.
    pub kind: &'static str,
    pub rule: String,
    pub reason: String,
    pub created: String,
    /// Empty for a permanent block.
    pub expires: String,
    /// `in 59 min`, or empty.
    pub expires_in: String,
    pub status_code: u16,
    pub message: String,
    /// Who added it (the `actor` of its metadata), or empty.
    pub actor: String,
    /// The metadata as JSON (cut to 600 characters).
    pub metadata: String,
    pub href: String,
}

impl BlockRow {
    pub fn of(e: &BlockEntry, now: f64) -> BlockRow {
        BlockRow {
            scope: e.scope_type.clone(),
            value: e.scope_value.clone(),
            kind: if e.is_permanent() {
                "permanent"
            } else {
                "temporary"
            },
            rule: e.rule_name.clone(),
            reason: e.reason.clone(),
            created: time(e.created_at),
            expires: e.expires_at.map(time).unwrap_or_default(),
            expires_in: e
                .expires_at
                .map(|x| format!("in {}", span(x - now)))
                .unwrap_or_default(),
            status_code: e.status_code,
            message: e.message.clone(),
            actor: e
                .metadata
                .get("actor")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            metadata: json_text(&e.metadata, 600),
            href: block_href(&e.scope_type, &e.scope_value),
        }
    }
}

/// One enforcement record as the tables show it.
#[derive(Debug, Clone)]
pub struct RecordRow {
    pub seq: u64,
    pub time: String,
    pub event_type: &'static str,
    /// Index of the type in [`EventType::ALL`] (its colour).
    pub type_index: usize,
    pub rule: String,
    pub scope: String,
    pub value: String,
    /// The subject's page, when the record names one.
    pub href: Option<String>,
    pub action: String,
    /// A reason, error kind or who revoked.
    pub detail: String,
    pub client: String,
    pub user: String,
    /// Every attribute as JSON (cut to 2 000 characters).
    pub attributes: String,
}

impl RecordRow {
    pub fn of(r: &Record) -> RecordRow {
        let scope = r.text(keys::SCOPE_TYPE);
        let value = r.text(keys::SCOPE_VALUE);
        let href = (!scope.is_empty() && !value.is_empty()).then(|| block_href(&scope, &value));
        let mut action = r.text(keys::ACTION);
        let ttl = r.text(keys::TTL);
        if !ttl.is_empty() {
            action = format!("{action} {ttl} s");
        }
        let detail = [
            keys::REASON,
            keys::RULE_DESCRIPTION,
            keys::ERROR_TYPE,
            keys::REVOKED_BY,
        ]
        .iter()
        .map(|k| r.text(k))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" · ");
        RecordRow {
            seq: r.seq,
            time: time(r.timestamp_ns as f64 / 1e9),
            event_type: short_type(r.event_type),
            type_index: EventType::ALL
                .iter()
                .position(|t| *t == r.event_type)
                .unwrap_or(0),
            rule: r.text(keys::RULE_NAME),
            scope,
            value,
            href,
            action: action.trim().to_string(),
            detail: cut(&detail, 300),
            client: r.text(keys::SOURCE_ADDRESS),
            user: r.text(keys::USER_ID),
            attributes: json_text(&r.attributes, 2000),
        }
    }
}

// ---------------------------------------------------------------- chart

/// One coloured piece of a bar.
#[derive(Debug, Clone)]
pub struct Segment {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub class: usize,
    pub title: String,
}

/// A horizontal guide line with its value.
#[derive(Debug, Clone)]
pub struct Grid {
    pub y: f64,
    pub label: u64,
}

#[derive(Debug, Clone)]
pub struct Legend {
    pub class: usize,
    pub name: &'static str,
    pub total: u64,
}

/// The decisions of the last hour, per minute, stacked by event type:
/// server-rendered SVG (numbers and fixed words only).
#[derive(Debug, Clone)]
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub left: f64,
    pub bottom: f64,
    pub segments: Vec<Segment>,
    pub grid: Vec<Grid>,
    pub legend: Vec<Legend>,
    pub total: u64,
}

/// The smallest of 1, 2, 5 × 10^k at least `n`.
fn nice(n: u64) -> u64 {
    let mut m = 1u64;
    loop {
        for f in [1, 2, 5] {
            if f * m >= n {
                return f * m;
            }
        }
        m = m.saturating_mul(10);
        if m == u64::MAX {
            return n;
        }
    }
}

impl Chart {
    pub const WIDTH: u32 = 1080;
    pub const HEIGHT: u32 = 240;

    pub fn build(minutes: &[Minute]) -> Chart {
        let (left, top, right, bottom) = (44.0, 10.0, 8.0, 24.0);
        let plot_w = f64::from(Self::WIDTH) - left - right;
        let plot_h = f64::from(Self::HEIGHT) - top - bottom;
        let peak = minutes
            .iter()
            .map(|m| m.counts.iter().sum::<u64>())
            .max()
            .unwrap_or(0);
        let scale = nice(peak.max(4));
        let slot = plot_w / MINUTES as f64;
        let mut segments = Vec::new();
        let n = minutes.len();
        for (i, m) in minutes.iter().enumerate() {
            let x = left + slot * i as f64 + 1.0;
            let mut y = top + plot_h;
            let ago = n - 1 - i;
            for (t, &count) in m.counts.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let h = plot_h * count as f64 / scale as f64;
                y -= h;
                segments.push(Segment {
                    x: round1(x),
                    y: round1(y),
                    w: round1(slot - 2.0),
                    h: round1(h),
                    class: t,
                    title: format!("{} min ago: {count} {}", ago, short_type(EventType::ALL[t])),
                });
            }
        }
        let grid = [0, scale / 2, scale]
            .into_iter()
            .map(|v| Grid {
                y: round1(top + plot_h - plot_h * v as f64 / scale as f64),
                label: v,
            })
            .collect();
        let legend: Vec<Legend> = EventType::ALL
            .iter()
            .enumerate()
            .map(|(i, t)| Legend {
                class: i,
                name: short_type(*t),
                total: minutes.iter().map(|m| m.counts[i]).sum(),
            })
            .collect();
        Chart {
            width: Self::WIDTH,
            height: Self::HEIGHT,
            left,
            bottom: round1(top + plot_h),
            total: legend.iter().map(|l| l.total).sum(),
            segments,
            grid,
            legend,
        }
    }

    pub fn x_end(&self) -> f64 {
        f64::from(self.width) - 8.0
    }
    pub fn x_mid(&self) -> f64 {
        round1((self.left + self.x_end()) / 2.0)
    }
    pub fn label_y(&self) -> f64 {
        self.bottom + 16.0
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

// ---------------------------------------------------------------- pages

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct Login {
    pub page: Page,
    pub csrf: String,
    pub error: Option<String>,
    pub name: String,
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    pub page: Page,
    pub status: u16,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Count {
    pub name: String,
    pub temporary: usize,
    pub permanent: usize,
    pub href: String,
}

impl Count {
    pub fn total(&self) -> usize {
        self.temporary + self.permanent
    }
}

#[derive(Template)]
#[template(path = "console/overview.html")]
pub struct Overview {
    pub page: Page,
    pub error: Option<String>,
    pub temporary: usize,
    pub permanent: usize,
    pub by_scope: Vec<Count>,
    pub by_rule: Vec<Count>,
    pub chart: Chart,
}

fn counts(
    blocks: &[BlockEntry],
    key: impl Fn(&BlockEntry) -> &str,
    href: impl Fn(&str) -> String,
) -> Vec<Count> {
    let mut m: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for b in blocks {
        let c = m.entry(key(b)).or_default();
        if b.is_permanent() {
            c.1 += 1;
        } else {
            c.0 += 1;
        }
    }
    let mut v: Vec<Count> = m
        .into_iter()
        .map(|(name, (temporary, permanent))| Count {
            name: name.to_string(),
            temporary,
            permanent,
            href: href(name),
        })
        .collect();
    v.sort_by(|a, b| b.total().cmp(&a.total()).then(a.name.cmp(&b.name)));
    v
}

impl Overview {
    pub fn build(
        page: Page,
        blocks: &[BlockEntry],
        error: Option<String>,
        minutes: &[Minute],
    ) -> Overview {
        let permanent = blocks.iter().filter(|b| b.is_permanent()).count();
        Overview {
            page,
            error,
            temporary: blocks.len() - permanent,
            permanent,
            by_scope: counts(
                blocks,
                |b| &b.scope_type,
                |n| format!("/ui/blocks?{}", query(&[("scope", n)])),
            ),
            by_rule: counts(
                blocks,
                |b| &b.rule_name,
                |n| format!("/ui/blocks?{}", query(&[("rule", n)])),
            ),
            chart: Chart::build(minutes),
        }
    }
}

#[derive(Template)]
#[template(path = "console/blocks.html")]
pub struct Blocks {
    pub page: Page,
    pub error: Option<String>,
    pub rows: Vec<BlockRow>,
    pub scopes: Vec<Opt>,
    pub kinds: Vec<Opt>,
    pub value: String,
    pub rule: String,
    /// Matching blocks over every page.
    pub matching: usize,
    pub page_no: usize,
    pub pages: usize,
    pub prev: Option<String>,
    pub next: Option<String>,
}

impl Blocks {
    pub fn build(
        page: Page,
        mut entries: Vec<BlockEntry>,
        q: &BlocksQuery,
        error: Option<String>,
        scopes: Vec<String>,
        now: f64,
    ) -> Blocks {
        let value = q.value.trim().to_lowercase();
        let rule = q.rule.trim().to_lowercase();
        let kind = q.kind.trim();
        entries.retain(|e| {
            (value.is_empty() || e.scope_value.to_lowercase().contains(&value))
                && (rule.is_empty() || e.rule_name.to_lowercase().contains(&rule))
                && match kind {
                    "temporary" => !e.is_permanent(),
                    "permanent" => e.is_permanent(),
                    _ => true,
                }
        });
        entries.sort_by(|a, b| {
            b.created_at
                .total_cmp(&a.created_at)
                .then_with(|| a.scope_type.cmp(&b.scope_type))
                .then_with(|| a.scope_value.cmp(&b.scope_value))
        });
        let matching = entries.len();
        let pages = matching.div_ceil(PAGE_SIZE).max(1);
        let page_no = q.page.unwrap_or(1).clamp(1, pages);
        let rows = entries
            .iter()
            .skip((page_no - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .map(|e| BlockRow::of(e, now))
            .collect();
        let link = |n: usize| {
            let n = n.to_string();
            format!(
                "/ui/blocks?{}",
                query(&[
                    ("scope", q.scope.trim()),
                    ("value", q.value.trim()),
                    ("rule", q.rule.trim()),
                    ("kind", kind),
                    ("page", &n),
                ])
            )
        };
        Blocks {
            page,
            error,
            rows,
            scopes: options(scopes, q.scope.trim(), "any scope"),
            kinds: options(
                ["temporary".to_string(), "permanent".to_string()],
                kind,
                "any kind",
            ),
            value: q.value.trim().to_string(),
            rule: q.rule.trim().to_string(),
            matching,
            page_no,
            pages,
            prev: (page_no > 1).then(|| link(page_no - 1)),
            next: (page_no < pages).then(|| link(page_no + 1)),
        }
    }
}

#[derive(Template)]
#[template(path = "console/new.html")]
pub struct NewBlock {
    pub page: Page,
    pub scopes: Vec<Opt>,
    pub value: String,
    pub permanent: bool,
    pub ttl: String,
    pub reason: String,
    pub status_code: String,
    pub message: String,
    pub error: Option<String>,
}

impl NewBlock {
    pub fn blank(page: Page, scopes: Vec<String>) -> NewBlock {
        let first = scopes.first().cloned().unwrap_or_default();
        NewBlock {
            page,
            scopes: options(scopes, &first, "")
                .into_iter()
                .filter(|o| !o.value.is_empty())
                .collect(),
            value: String::new(),
            permanent: false,
            ttl: "3600".into(),
            reason: String::new(),
            status_code: String::new(),
            message: String::new(),
            error: None,
        }
    }

    pub fn refill(page: Page, scopes: Vec<String>, f: AddForm, error: String) -> NewBlock {
        NewBlock {
            page,
            scopes: options(scopes, f.scope.trim(), "")
                .into_iter()
                .filter(|o| !o.value.is_empty())
                .collect(),
            value: f.value,
            permanent: f.duration == "permanent",
            ttl: f.ttl,
            reason: f.reason,
            status_code: f.status_code,
            message: f.message,
            error: Some(error),
        }
    }
}

/// One row of a subject's trail.
#[derive(Debug, Clone)]
pub struct TrailItem {
    pub block: BlockRow,
    /// When it was revoked, or empty while active.
    pub revoked_at: String,
    pub revoked_by: String,
    pub revoked_reason: String,
}

#[derive(Template)]
#[template(path = "console/block.html")]
pub struct BlockDetail {
    pub page: Page,
    pub scope: String,
    pub value: String,
    pub active: Option<BlockRow>,
    /// `None`: the store keeps no trail.
    pub trail: Option<Vec<TrailItem>>,
    pub records: Vec<RecordRow>,
    pub error: Option<String>,
    /// The notice after a revocation.
    pub revoked: Option<String>,
    pub can_revoke: bool,
}

impl BlockDetail {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        mut page: Page,
        scope: &str,
        value: &str,
        active: Option<BlockEntry>,
        trail: Option<Vec<TrailRow>>,
        records: &[Arc<Record>],
        error: Option<String>,
        revoked: Option<usize>,
        admin: bool,
        now: f64,
    ) -> BlockDetail {
        // The stored (canonical) value when there is an entry, else as asked.
        let (scope, value) = match &active {
            Some(e) => (e.scope_type.clone(), e.scope_value.clone()),
            None => (scope.to_string(), value.to_string()),
        };
        page.title = format!("{scope} {value}");
        let records = records
            .iter()
            .filter(|r| r.text(keys::SCOPE_TYPE) == scope && r.text(keys::SCOPE_VALUE) == value)
            .map(|r| RecordRow::of(r))
            .collect();
        BlockDetail {
            page,
            can_revoke: admin && active.is_some(),
            active: active.as_ref().map(|e| BlockRow::of(e, now)),
            trail: trail.map(|rows| {
                rows.iter()
                    .map(|r| TrailItem {
                        block: BlockRow::of(&r.entry, now),
                        revoked_at: r.entry.revoked_at.map(time).unwrap_or_default(),
                        revoked_by: r.revoked_by.clone(),
                        revoked_reason: r.revoked_reason.clone(),
                    })
                    .collect()
            }),
            records,
            error,
            revoked: revoked.map(|n| match n {
                0 => "Nothing was revoked: there was no active block.".to_string(),
                1 => "Revoked: the block is lifted (1 store entry removed).".to_string(),
                n => format!("Revoked: the block is lifted ({n} store entries removed)."),
            }),
            scope,
            value,
        }
    }
}

#[derive(Template)]
#[template(path = "console/decisions.html")]
pub struct Decisions {
    pub page: Page,
    pub rows: Vec<RecordRow>,
    pub types: Vec<Opt>,
    pub rules: Vec<Opt>,
    /// Records kept in all.
    pub kept: usize,
}

impl Decisions {
    pub fn build(page: Page, records: &[Arc<Record>], q: &DecisionsQuery) -> Decisions {
        let ty = q.event_type.trim();
        let rule = q.rule.trim();
        let mut seen: Vec<String> = records
            .iter()
            .map(|r| r.text(keys::RULE_NAME))
            .filter(|r| !r.is_empty())
            .collect();
        seen.sort();
        seen.dedup();
        if !rule.is_empty() && !seen.iter().any(|r| r == rule) {
            seen.push(rule.to_string());
        }
        let rows = records
            .iter()
            .filter(|r| ty.is_empty() || short_type(r.event_type) == ty)
            .filter(|r| rule.is_empty() || r.text(keys::RULE_NAME) == rule)
            .map(|r| RecordRow::of(r))
            .collect();
        Decisions {
            page,
            rows,
            types: options(
                EventType::ALL.iter().map(|t| short_type(*t).to_string()),
                ty,
                "any type",
            ),
            rules: options(seen, rule, "any rule"),
            kept: records.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_for_times() {
        assert_eq!(time(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(span(59.6), "60 s");
        assert_eq!(span(3599.0), "59 min");
        assert_eq!(span(3.0 * 3600.0 + 300.0), "3 h 5 min");
        assert_eq!(span(-5.0), "0 s");
        assert_eq!(cut("abcdef", 3), "abc…");
        assert_eq!(nice(0), 1);
        assert_eq!(nice(3), 5);
        assert_eq!(nice(11), 20);
        assert_eq!(nice(500), 500);
    }

    #[test]
    fn hrefs_are_encoded() {
        assert_eq!(
            block_href("ip", "10.0.0.0/8"),
            "/ui/block?scope=ip&value=10.0.0.0%2F8"
        );
        assert_eq!(
            block_href("user", "<a&b>"),
            "/ui/block?scope=user&value=%3Ca%26b%3E"
        );
    }

    #[test]
    fn the_chart_stacks_and_scales() {
        let mut minutes = vec![
            Minute {
                minute: 0,
                counts: [0; EventType::ALL.len()]
            };
            MINUTES
        ];
        minutes[MINUTES - 1].counts = [1, 2, 3, 0, 0];
        let c = Chart::build(&minutes);
        assert_eq!(c.total, 6);
        assert_eq!(c.segments.len(), 3);
        assert!(c.segments[0].y > c.segments[1].y, "stacked upwards");
        assert_eq!(c.grid.last().map(|g| g.label), Some(10));
        assert!(c.segments[2]
            .title
            .starts_with("0 min ago: 3 block_applied"));
    }
}
