//! The operator console in a real browser: headless Chromium (Debian's
//! `chromium`) through chromedriver, against a `serve` on loopback with
//! real Redis and Postgres. Screenshots of every page (and of the XSS
//! probe rendered as text) go to `docs/console/`.

mod common;

use common::browser::{Browser, Scratch};
use common::*;
use sec_audit_serve::Tokens;
use serde_json::Value;

const XSS: &str = "<img src=x onerror=alert(1)>";
const ENGINE_XSS: &str = "\"><svg onload=alert(4)>";
const ATTACKER_IP: &str = "203.0.113.9";

fn config(scratch: &Scratch, extra: &str) -> String {
    format!(
        "enabled = true\n{}trusted_proxy_cidrs = [\"127.0.0.1/32\"]\ntrusted_proxy_count = 1\n\
         [[rules]]\nbuiltin = \"brute_force_login\"\nthreshold = 3\n{extra}",
        scratch.store_toml()
    )
}

fn tokens() -> Tokens {
    Tokens::new(Some(ADMIN.into()), Some(READ.into()), None).expect("tokens")
}

/// Starts serve over the scratch stores and waits until it is ready.
fn start(scratch: &Scratch, extra: &str) -> Serve {
    let s = Serve::start(&config(scratch, extra), tokens());
    eventually(20, "serve ready", || {
        (get(s.addr, "/readyz", "").status == 200).then_some(())
    });
    s
}

fn base(s: &Serve) -> String {
    format!("http://{}", s.addr)
}

fn bearer(t: &str) -> String {
    format!("Authorization: Bearer {t}\r\n")
}

/// The active blocks through the JSON API.
fn api_blocks(s: &Serve) -> Vec<Value> {
    let r = get(s.addr, "/v1/blocks", &bearer(ADMIN));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["blocks"].as_array().cloned().unwrap_or_default()
}

fn api_block<'a>(blocks: &'a [Value], scope: &str, value: &str) -> Option<&'a Value> {
    blocks
        .iter()
        .find(|b| b["scope_type"] == scope && b["scope_value"] == value)
}

/// Failed logins from the attacker until the engine blocks it, then a
/// request from it that `/v1/decide` denies: decisions for the chart.
fn make_traffic(s: &Serve) {
    let lines: Vec<String> = (0..4)
        .map(|_| failed_login(ATTACKER_IP, "victim"))
        .collect();
    let r = request(
        s.addr,
        "POST",
        "/v1/events",
        "Content-Type: application/x-ndjson\r\n",
        lines.join("\n").as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    eventually(20, "the attacker's ip block", || {
        api_block(&api_blocks(s), "ip", ATTACKER_IP).map(|_| ())
    });
    let r = get(
        s.addr,
        "/v1/decide",
        &format!("X-Forwarded-For: {ATTACKER_IP}\r\nX-Original-URI: /account\r\n"),
    );
    assert_eq!(r.status, 403);
}

async fn login(b: &Browser, s: &Serve, token: &str, name: &str) {
    b.goto(&format!("{}/ui/login", base(s))).await;
    b.fill("#token", token).await;
    b.fill("#name", name).await;
    b.click("#login button[type=submit]").await;
    b.wait("#active-total").await;
    assert_eq!(b.path().await, "/ui/");
}

/// Posts a form from the page with the given fields (the browser's own
/// cookies go with it), as a hand-made form would.
async fn post_from_page(b: &Browser, action: &str, fields: &[(&str, &str)]) {
    let fields = serde_json::to_string(fields).expect("json");
    b.js(&format!(
        "const f = document.createElement('form'); f.method = 'post'; f.action = {action:?};
         for (const [k, v] of {fields}) {{
           const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
         }}
         document.body.appendChild(f); f.submit(); return true;"
    ))
    .await;
}

/// The session's CSRF token, from the logout form of the page.
async fn page_csrf(b: &Browser) -> String {
    b.wait("header form input[name=csrf]")
        .await
        .attr("value")
        .await
        .expect("attr")
        .expect("a csrf value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_blocks_and_unblocks_in_a_browser() {
    let scratch = Scratch::new("console_admin");
    let s = start(&scratch, "");
    let b = Browser::start().await;
    let url = base(&s);

    // Without a session every page leads to the login.
    for page in [
        "/ui/",
        "/ui/blocks",
        "/ui/decisions",
        "/ui/block?scope=ip&value=1.2.3.4",
    ] {
        b.goto(&format!("{url}{page}")).await;
        b.wait("#login").await;
        assert_eq!(b.path().await, "/ui/login", "{page}");
    }
    b.screenshot("login").await;

    // A wrong token is refused, with a word.
    b.fill("#token", "not-the-token-0123456789").await;
    b.click("#login button[type=submit]").await;
    assert_eq!(b.text("#login-error").await, "unknown token");

    // The admin token logs in; the cookie is HttpOnly and SameSite=Strict.
    login(&b, &s, ADMIN, "ann").await;
    let cookie = b
        .client
        .get_named_cookie("sec_audit_session")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(
        cookie.same_site().map(|v| v.to_string()).as_deref(),
        Some("Strict")
    );
    assert_eq!(cookie.path(), Some("/ui"));
    let seen_by_script = b.js("return document.cookie;").await;
    assert!(
        !seen_by_script
            .as_str()
            .unwrap_or("")
            .contains("sec_audit_session"),
        "HttpOnly: {seen_by_script}"
    );
    assert!(b.text("header .who").await.contains("console:ann"));

    // The engine decides something: the overview counts it.
    make_traffic(&s);
    b.goto(&format!("{url}/ui/")).await;
    let hour: u64 = b.text("#hour-total").await.parse().expect("a number");
    assert!(
        hour >= 2,
        "block_applied and blocked in the last hour: {hour}"
    );
    assert!(b.count("#chart rect").await >= 2, "bars in the chart");
    let legend = b.text("#legend").await;
    assert!(
        legend.contains("blocked") && legend.contains("block_applied"),
        "{legend}"
    );
    assert!(b.text("#by-scope").await.contains("ip"));
    assert!(b.text("#by-rule").await.contains("brute_force_login"));
    // Nothing came from anywhere but serve itself.
    let foreign = b
        .js(&format!(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith({:?}));",
            url
        ))
        .await;
    assert_eq!(foreign, serde_json::json!([]), "assets from outside");
    b.screenshot("overview").await;

    // Add a permanent block on a user through the form.
    b.click("header nav a[href='/ui/blocks/new']").await;
    b.wait("#add").await;
    b.js("document.querySelector('#scope').value = 'user'; return true;")
        .await;
    b.fill("#value", "mallory").await;
    b.click("#duration-permanent").await;
    b.fill("#reason", "credential stuffing from many addresses")
        .await;
    b.screenshot("add").await;
    b.click("#add button[type=submit]").await;
    b.wait("#active").await;
    assert_eq!(b.path().await, "/ui/block?scope=user&value=mallory");
    let active = b.text("#active").await;
    assert!(
        active.contains("credential stuffing from many addresses"),
        "{active}"
    );
    assert!(active.contains("console:ann"), "the actor: {active}");
    assert!(active.contains("never (permanent)"), "{active}");
    // The same block API: the entry carries the actor, block_applied was
    // emitted.
    let blocks = api_blocks(&s);
    let m = api_block(&blocks, "user", "mallory").expect("listed by the API");
    assert_eq!(m["kind"], "permanent");
    assert_eq!(m["metadata"]["actor"], "console:ann");
    eventually(5, "block_applied of mallory", || {
        s.records()
            .iter()
            .any(|r| {
                r["body"] == "audit.enforcement.block_applied"
                    && r["attributes"]["scope.value"] == "mallory"
            })
            .then_some(())
    });

    // And a temporary one.
    b.goto(&format!("{url}/ui/blocks/new")).await;
    b.js("document.querySelector('#scope').value = 'session'; return true;")
        .await;
    b.fill("#value", "sess-42").await;
    b.fill("#ttl", "900").await;
    b.fill("#reason", "shared session token").await;
    b.click("#add button[type=submit]").await;
    let active = b.text("#active").await;
    assert!(b.text("main h2").await.contains("temporary"));
    assert!(active.contains("min)"), "expires in about 15 min: {active}");

    // Listed, and found by a search.
    b.click("header nav a[href='/ui/blocks']").await;
    let table = b.text("#blocks").await;
    for needle in ["mallory", "sess-42", ATTACKER_IP, "permanent", "temporary"] {
        assert!(table.contains(needle), "{needle} not in\n{table}");
    }
    b.screenshot("blocks").await;
    b.fill("#search input[name=value]", "mall").await;
    b.click("#search button[type=submit]").await;
    // The list page has `#matching` too: wait for the search's own page.
    b.wait_path("value=mall").await;
    b.wait("#matching").await;
    assert_eq!(b.count("#blocks tbody tr").await, 1);
    assert!(b.text("#blocks").await.contains("mallory"));
    assert!(b.path().await.contains("value=mall"));

    // Revoke it with a reason: gone, with its trail shown.
    b.click("#blocks a[href*='mallory']").await;
    b.wait("#revoke").await;
    // A revocation without a reason is refused by serve too (the browser's
    // `required` is taken off first).
    b.js("document.querySelector('#revoke-reason').removeAttribute('required'); return true;")
        .await;
    b.click("#revoke button[type=submit]").await;
    assert!(b.text("#error-message").await.contains("needs a reason"));
    b.goto(&format!("{url}/ui/block?scope=user&value=mallory"))
        .await;
    b.fill("#revoke-reason", "appeal accepted").await;
    b.click("#revoke button[type=submit]").await;
    assert!(b.text("#revoked-notice").await.starts_with("Revoked"));
    b.wait("#not-blocked").await;
    let trail = b.text("#trail").await;
    for needle in [
        "credential stuffing from many addresses",
        "console:ann",
        "appeal accepted",
    ] {
        assert!(
            trail.contains(needle),
            "{needle} not in the trail:\n{trail}"
        );
    }
    assert_eq!(b.count("#trail tbody tr").await, 1);
    assert!(
        b.text("table.records").await.contains("block_revoked"),
        "the subject's records"
    );
    assert!(api_block(&api_blocks(&s), "user", "mallory").is_none());
    let revoked = eventually(5, "block_revoked of mallory", || {
        s.records().into_iter().find(|r| {
            r["body"] == "audit.enforcement.block_revoked"
                && r["attributes"]["scope.value"] == "mallory"
        })
    });
    assert_eq!(
        revoked["attributes"]["enforcement.revoked_by"],
        "console:ann"
    );
    assert_eq!(
        revoked["attributes"]["enforcement.reason"],
        "appeal accepted"
    );
    b.goto(&format!("{url}/ui/blocks?value=mallory")).await;
    b.wait("#no-blocks").await;

    // Blocked again: the page shows the active block and a trail of two
    // rows, the revoked one with who and why.
    b.goto(&format!("{url}/ui/blocks/new")).await;
    b.js("document.querySelector('#scope').value = 'user'; return true;")
        .await;
    b.fill("#value", "mallory").await;
    b.click("#duration-permanent").await;
    b.fill("#reason", "back with a new address range").await;
    b.click("#add button[type=submit]").await;
    b.wait("#revoke").await;
    assert_eq!(b.count("#trail tbody tr").await, 2);
    assert_eq!(b.count("#trail tbody tr.live").await, 1);
    let trail = b.text("#trail").await;
    assert!(trail.contains("back with a new address range") && trail.contains("appeal accepted"));
    b.screenshot("block").await;

    // Recent decisions, filtered by type and rule.
    b.click("header nav a[href='/ui/decisions']").await;
    let all = b.text("table.records").await;
    for needle in [
        "blocked",
        "block_applied",
        "block_revoked",
        "brute_force_login",
    ] {
        assert!(all.contains(needle), "{needle} not in\n{all}");
    }
    b.screenshot("decisions").await;
    b.goto(&format!(
        "{url}/ui/decisions?type=blocked&rule=brute_force_login"
    ))
    .await;
    let rows = b.count("table.records tbody tr").await;
    assert!(rows >= 1);
    assert_eq!(
        b.count("table.records .type.c1").await,
        rows,
        "only blocked records"
    );
    b.goto(&format!("{url}/ui/decisions?type=block_revoked"))
        .await;
    assert!(!b.text("table.records").await.contains("brute_force_login"));

    // More blocks than a page holds: 50 a page, with links between them.
    for i in 0..52 {
        let body = format!(r#"{{"scope":"user","value":"bulk-{i:02}","ttl":600,"reason":"bulk"}}"#);
        let r = request(
            s.addr,
            "POST",
            "/v1/blocks",
            &bearer(ADMIN),
            body.as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    b.goto(&format!("{url}/ui/blocks?rule=manual")).await;
    let matching = b.text("#matching").await;
    assert!(matching.contains("page 1 of 2"), "{matching}");
    assert_eq!(b.count("#blocks tbody tr").await, 50);
    b.click("nav.pager a[rel=next]").await;
    b.wait("nav.pager a[rel=prev]").await;
    assert!(b.text("#matching").await.contains("page 2 of 2"));
    assert!(b.path().await.contains("rule=manual"), "the filter is kept");
    // 52 bulk + mallory + sess-42 manual blocks.
    assert_eq!(b.count("#blocks tbody tr").await, 4);

    // Logging out ends the session.
    b.click("header form button").await;
    b.wait("#login").await;
    b.goto(&format!("{url}/ui/blocks")).await;
    b.wait("#login").await;
    assert_eq!(b.path().await, "/ui/login");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xss_is_inert_csrf_is_required_and_read_only_cannot_revoke() {
    let scratch = Scratch::new("console_hostile");
    // The engine blocks users too: a user id from an application's event
    // becomes a block the console shows.
    let s = start(
        &scratch,
        "[rule_actions]\nbrute_force_login = { action = \"block\", scopes = [\"ip\", \"user\"] }\n",
    );
    let b = Browser::start().await;
    let url = base(&s);
    login(&b, &s, ADMIN, "bob").await;

    // A block on the user `<img src=x onerror=alert(1)>`, with hostile
    // reason and metadata too: rendered as text everywhere.
    b.goto(&format!("{url}/ui/blocks/new")).await;
    b.js("document.querySelector('#scope').value = 'user'; return true;")
        .await;
    b.fill("#value", XSS).await;
    b.fill("#reason", "<script>alert(2)</script>").await;
    b.click("#add button[type=submit]").await;
    b.wait("#active").await;
    assert!(!b.dialog_open().await, "a dialog opened on the block page");
    assert_eq!(b.text("#subject-value").await, XSS);
    assert!(b
        .text("#active")
        .await
        .contains("<script>alert(2)</script>"));
    assert_eq!(b.count("main img").await, 0, "an img element was injected");
    assert_eq!(b.count("main script").await, 0);
    b.screenshot("xss").await;
    // And one the engine writes from an application's events.
    let lines: Vec<String> = (0..3)
        .map(|_| failed_login("198.51.100.7", ENGINE_XSS))
        .collect();
    let r = request(
        s.addr,
        "POST",
        "/v1/events",
        "",
        lines.join("\n").as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    eventually(20, "the engine's user block", || {
        api_block(&api_blocks(&s), "user", ENGINE_XSS).map(|_| ())
    });
    for page in ["/ui/blocks", "/ui/", "/ui/decisions"] {
        b.goto(&format!("{url}{page}")).await;
        b.wait("main").await;
        assert!(!b.dialog_open().await, "a dialog opened on {page}");
        assert_eq!(b.count("main img").await, 0, "an img element on {page}");
        if page != "/ui/" {
            let text = b.main_text().await;
            assert!(text.contains(XSS), "the text on {page}");
            assert!(text.contains(ENGINE_XSS), "the engine's on {page}");
            assert_eq!(b.count("main svg").await, 0, "an svg element on {page}");
        }
    }
    // The policy is the strict one, on every page.
    let r = get(s.addr, "/ui/login", "");
    assert_eq!(
        r.header("content-security-policy"),
        Some(sec_audit_serve::console::CSP)
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));

    // A form posted without its CSRF token is refused (403) and changes
    // nothing.
    b.goto(&format!("{url}/ui/blocks/new")).await;
    b.js("document.querySelector('#add input[name=csrf]').remove(); \
          document.querySelector('#scope').value = 'user'; return true;")
        .await;
    b.fill("#value", "no-csrf-user").await;
    b.fill("#reason", "should not happen").await;
    b.click("#add button[type=submit]").await;
    assert!(b.text("#error-message").await.contains("CSRF"));
    assert!(b.text("main h1").await.contains("403"));
    // With a wrong token, and from outside the browser with the session
    // cookie but no token: 403 as well.
    post_from_page(
        &b,
        "/ui/blocks",
        &[
            ("csrf", "0".repeat(64).as_str()),
            ("scope", "user"),
            ("value", "no-csrf-user"),
            ("duration", "permanent"),
            ("reason", "x"),
        ],
    )
    .await;
    assert!(b.text("#error-message").await.contains("CSRF"));
    let session = b
        .client
        .get_named_cookie("sec_audit_session")
        .await
        .expect("cookie");
    let cookie = format!("Cookie: sec_audit_session={}\r\n", session.value());
    let r = request(
        s.addr,
        "POST",
        "/ui/blocks",
        &format!("{cookie}Content-Type: application/x-www-form-urlencoded\r\n"),
        b"scope=user&value=no-csrf-user&duration=permanent&reason=x",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = request(
        s.addr,
        "POST",
        "/ui/block/revoke",
        &format!("{cookie}Content-Type: application/x-www-form-urlencoded\r\n"),
        b"scope=user&value=x&reason=x",
    );
    assert_eq!(r.status, 403);
    let r = request(s.addr, "POST", "/ui/login", "", b"token=whatever");
    assert_eq!(r.status, 403, "the login form needs its token too");
    assert!(api_block(&api_blocks(&s), "user", "no-csrf-user").is_none());

    // A read-only login sees everything and changes nothing.
    b.click("header form button").await;
    b.wait("#login").await;
    login(&b, &s, READ, "carol").await;
    assert!(b.text("header .who").await.contains("read-only"));
    assert_eq!(b.count("header nav a[href='/ui/blocks/new']").await, 0);
    b.goto(&format!("{url}/ui/blocks")).await;
    assert!(b.text("#blocks").await.contains(XSS));
    b.click("#blocks a").await;
    b.wait("#active").await;
    assert_eq!(b.count("#revoke").await, 0, "no revoke form for a reader");
    // Forging the form with the session's valid CSRF token: still 403.
    let csrf = page_csrf(&b).await;
    post_from_page(
        &b,
        "/ui/block/revoke",
        &[
            ("csrf", csrf.as_str()),
            ("scope", "user"),
            ("value", XSS),
            ("reason", "reader tries"),
        ],
    )
    .await;
    assert!(b.text("#error-message").await.contains("read-only"));
    assert!(b.text("main h1").await.contains("403"));
    post_from_page(
        &b,
        "/ui/blocks",
        &[
            ("csrf", csrf.as_str()),
            ("scope", "user"),
            ("value", "reader-block"),
            ("duration", "permanent"),
            ("reason", "reader tries"),
        ],
    )
    .await;
    assert!(b.text("#error-message").await.contains("read-only"));
    b.goto(&format!("{url}/ui/blocks/new")).await;
    assert!(b.text("#error-message").await.contains("read-only"));
    let blocks = api_blocks(&s);
    assert!(api_block(&blocks, "user", XSS).is_some(), "still blocked");
    assert!(api_block(&blocks, "user", "reader-block").is_none());
    b.close().await;
}

#[test]
fn login_attempts_are_bounded_and_cookies_follow_the_settings() {
    let s = Serve::start(
        "[serve]\nconsole_secure_cookie = true\n",
        Tokens::new(Some(ADMIN.into()), None, None).expect("tokens"),
    );
    let form = get(s.addr, "/ui/login", "");
    assert_eq!(form.status, 200);
    let set = form.header("set-cookie").expect("login cookie").to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure"));
    let csrf = set
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
        .expect("value");
    let attempt = |token: &str| {
        request(
            s.addr,
            "POST",
            "/ui/login",
            &format!("Cookie: sec_audit_login={csrf}\r\nContent-Type: application/x-www-form-urlencoded\r\n"),
            format!("csrf={csrf}&token={token}").as_bytes(),
        )
    };
    let ok = attempt(ADMIN);
    assert_eq!(ok.status, 303);
    let session = ok
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("sec_audit_session="))
        .map(|(_, v)| v.clone())
        .expect("session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    assert!(session.contains("Secure") && session.contains("Path=/ui"));
    for i in 0..10 {
        assert_eq!(attempt("wrong-token-0123456789").status, 401, "attempt {i}");
    }
    let limited = attempt("wrong-token-0123456789");
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    assert_eq!(attempt(ADMIN).status, 429, "even the right token waits");
    // Without a token of either kind the console is off.
    let off = Serve::start("", Tokens::default());
    assert_eq!(get(off.addr, "/ui/", "").status, 404);
    assert_eq!(get(off.addr, "/ui/login", "").status, 404);
    let none = Serve::start(
        "[serve]\nconsole = false\n",
        Tokens::new(Some(ADMIN.into()), None, None).expect("tokens"),
    );
    assert_eq!(get(none.addr, "/ui/login", "").status, 404);
}
