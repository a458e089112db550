//! The console tests' pieces: real Redis and Postgres scratch space, a
//! chromedriver process on a free loopback port driving Debian's headless
//! Chromium, and a WebDriver client (fantoccini) over plain HTTP.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::Connection;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::proxy::{find_binary, free_port, ProxyProcess};

/// The browser window's width.
pub const WIDTH: u32 = 1280;

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn redis_url() -> String {
    std::env::var("SEC_AUDIT_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string())
}

pub fn pg_url() -> String {
    std::env::var("SEC_AUDIT_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

/// A name unique to this test run (lower-case, `[a-z0-9_]`).
pub fn unique(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{test}_{}_{nanos}", std::process::id())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn redis_conn() -> redis::Connection {
    let url = redis_url();
    let client = redis::Client::open(url.as_str())
        .unwrap_or_else(|e| panic!("SEC_AUDIT_TEST_REDIS_URL {url} is invalid: {e}"));
    client
        .get_connection_with_timeout(Duration::from_secs(3))
        .unwrap_or_else(|e| {
            panic!("Redis is required for this test but is not reachable at {url}: {e}")
        })
}

fn pg() -> diesel::PgConnection {
    let url = pg_url();
    diesel::PgConnection::establish(&url).unwrap_or_else(|e| {
        panic!("Postgres is required for this test but is not reachable at {url}: {e}")
    })
}

/// A Redis key prefix and a Postgres schema (migrated) of the test's own;
/// the keys and the schema are removed at the end.
pub struct Scratch {
    pub prefix: String,
    pub schema: String,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        drop(redis_conn());
        let name = unique(test);
        pg().batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .unwrap_or_else(|e| panic!("CREATE SCHEMA {name}: {e}"));
        let s = Scratch {
            prefix: format!("t_console:{name}"),
            schema: name,
        };
        let store = sec_audit_store::PostgresBlockStore::new(
            &sec_audit_store::PostgresConfig::new(pg_url()).with_search_path(s.schema.clone()),
            std::sync::Arc::new(sec_audit_core::SystemClock),
        )
        .expect("postgres config");
        store.run_migrations().expect("migrations");
        s
    }

    /// The test database URL with this schema as the search path.
    pub fn database_url(&self) -> String {
        let base = pg_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-csearch_path%3D{}", self.schema)
    }

    /// The enforcement configuration's store keys for this scratch space.
    pub fn store_toml(&self) -> String {
        format!(
            "redis_url = \"{}\"\ndatabase_url = \"{}\"\nkey_prefix = \"{}\"\n",
            redis_url(),
            self.database_url(),
            self.prefix
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = pg().batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ));
        let mut conn = redis_conn();
        let mut cursor: u64 = 0;
        for _ in 0..10_000 {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&keys).query(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// Where the screenshots go: `docs/console/` of the repository.
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
    std::fs::create_dir_all(&dir).expect("docs/console");
    dir
}

/// Whether chromedriver's `/status` says it is ready (chromedriver keeps
/// connections open, so a real HTTP client asks).
async fn driver_ready(url: &str) -> bool {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<axum::body::Bytes>>();
    let Ok(uri) = format!("{url}/status").parse::<axum::http::Uri>() else {
        return false;
    };
    let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(2), client.get(uri)).await else {
        return false;
    };
    let Ok(Ok(body)) =
        tokio::time::timeout(Duration::from_secs(2), resp.into_body().collect()).await
    else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
        .is_ok_and(|v| v["value"]["ready"] == true)
}

/// A DevTools protocol command through chromedriver.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or("")
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"cmd": self.cmd, "params": self.params}).to_string()),
        )
    }
}

/// chromedriver on a free loopback port (stopped when dropped) and a
/// headless Chromium session through it.
pub struct Browser {
    pub client: Client,
    _driver: ProxyProcess,
}

impl Browser {
    pub async fn start() -> Browser {
        let driver_bin = find_binary("chromedriver", &["/usr/bin/chromedriver"]);
        let chromium = find_binary("chromium", &["/usr/bin/chromium"]);
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).expect("log");
        let child = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_bin.display()));
        let profile = dir.path().join("profile");
        let mut driver = ProxyProcess { child, dir };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            driver.assert_running("chromedriver.log");
            if driver_ready(&url).await {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver never became ready:\n{}",
                driver.read("chromedriver.log")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({
            "browserName": "chrome",
            // An alert stays open, so the test can see it.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-extensions",
                    "--no-first-run",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no WebDriver session: {e}\n{}",
                    driver.read("chromedriver.log")
                )
            });
        Browser {
            client,
            _driver: driver,
        }
    }

    /// Ends the browser session (the driver stops on drop).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// The path (and query) of the current page.
    pub async fn path(&self) -> String {
        let u = self.client.current_url().await.expect("current url");
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Waits (up to 10 s) until the current path (and query) contains
    /// `needle`: a navigation has landed, even when the page it left had
    /// the same elements.
    pub async fn wait_path(&self, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let path = self.path().await;
            if path.contains(needle) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still on {path}, waiting for a path with `{needle}`"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 10 s) for an element.
    pub async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let page = self.client.source().await.unwrap_or_default();
                panic!("no `{css}` on {}: {e}\n{page}", self.path().await)
            }
        }
    }

    pub async fn text(&self, css: &str) -> String {
        self.wait(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    /// How many elements match.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let e = self.wait(css).await;
        e.clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        e.send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub async fn click(&self, css: &str) {
        self.wait(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Runs a script in the page and returns its value.
    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The visible text of the page's `main`.
    pub async fn main_text(&self) -> String {
        self.text("main").await
    }

    /// Whether an alert (or another dialog) is open.
    pub async fn dialog_open(&self) -> bool {
        match self.client.get_alert_text().await {
            Ok(_) => true,
            Err(e) if e.is_no_such_alert() => false,
            Err(e) => panic!("asking for a dialog: {e}"),
        }
    }

    /// Runs a DevTools protocol command (chromedriver's `goog/cdp/execute`).
    pub async fn cdp(&self, cmd: &'static str, params: serde_json::Value) {
        self.client
            .issue_cmd(Cdp { cmd, params })
            .await
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }

    /// Saves a PNG of the whole page (at most 2 400 px high) as
    /// `docs/console/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let page = self
            .js("return Math.ceil(document.body.getBoundingClientRect().height);")
            .await
            .as_u64()
            .unwrap_or(900)
            .clamp(400, 2400);
        // The viewport as high as the page, through Chromium's DevTools
        // protocol (a window cannot grow beyond the headless screen).
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WIDTH, "height": page, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        let png = self.client.screenshot().await.expect("screenshot");
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))
            .await;
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
