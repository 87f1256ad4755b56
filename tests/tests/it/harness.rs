//! The test environment: an isolated database, Redis prefix and AMQP namespace,
//! with the real coordinator and worker-api running in-process on port 0.

use anyhow::Context;
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use serde_json::{Value, json};
use spotcheck_platform::amqp::{self, Names};
use spotcheck_shared::Role;
use sqlx::PgPool;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const ADMIN_DB: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The password of every user the harness creates.
pub const PASSWORD: &str = "correct-horse-battery";

/// The key worker-api pseudonymises exported volunteer ids under in tests.
pub const PSEUDONYM_KEY: &str = "spotcheck-test-pseudonym-key-of-32-bytes";

fn service_url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// One test's isolated world.
pub struct TestEnv {
    /// Unique id of this environment (database, prefix and namespace).
    pub id: String,
    /// Pool on the test's database.
    pub pool: PgPool,
    /// Base URL of worker-api, when started.
    pub api: String,
    /// HTTP client.
    pub http: reqwest::Client,
    stops: Vec<oneshot::Sender<()>>,
    /// Connection string of the test's database.
    pub db_url: String,
    /// The PEM file of the key that signs this environment's access tokens.
    pub key_file: tempfile_path::TempPath,
    /// Votes each task asks for.
    pub min_votes: i32,
    /// A Redis of this test's own, when it must be flushed or restarted.
    pub redis: Option<PrivateRedis>,
    /// Operator endpoints of the coordinators started.
    pub coordinator_ops: Vec<std::net::SocketAddr>,
    /// Operator endpoints (`/metrics`) of the worker-apis started.
    pub api_ops: Vec<std::net::SocketAddr>,
}

impl TestEnv {
    /// A fresh database with migrations applied; no services started.
    pub async fn db_only() -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            spotcheck_platform::telemetry::init(false);
        }
        let id = format!("t{}", uuid::Uuid::new_v4().simple());
        let admin_url = service_url("SPOTCHECK_TEST_ADMIN_DB", ADMIN_DB);
        let admin = PgPool::connect(&admin_url)
            .await
            .expect("connect to the admin database");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {id}")))
            .execute(&admin)
            .await
            .expect("create the test database");
        admin.close().await;
        let base = admin_url
            .rsplit_once('/')
            .expect("a database URL has a path")
            .0;
        let db_url = format!("{base}/{id}");
        let pool = spotcheck_platform::db::connect(&db_url, 8)
            .await
            .expect("connect to the test database");
        spotcheck_platform::db::migrate(&pool)
            .await
            .expect("migrate");
        Self {
            id,
            pool,
            api: String::new(),
            http: reqwest::Client::new(),
            stops: Vec::new(),
            db_url,
            key_file: signing_key_file(),
            min_votes: 3,
            redis: None,
            coordinator_ops: Vec::new(),
            api_ops: Vec::new(),
        }
    }

    /// A fresh environment with the coordinator and worker-api running.
    pub async fn start() -> Self {
        let mut env = Self::db_only().await;
        env.start_coordinator(|_| {}).await;
        env.start_api(|_| {}).await;
        env
    }

    fn services(&self) -> spotcheck_platform::config::ServiceConfig {
        let mut s = worker_api::Config::defaults().services;
        s.database_url = self.db_url.clone();
        s.amqp_namespace = self.id.clone();
        s.redis_prefix = self.id.clone();
        if let Some(redis) = &self.redis {
            s.redis_url = redis.url();
        }
        s.db_max_connections = 8;
        s
    }

    /// The coordinator configuration of this environment.
    pub fn coordinator_config(&self) -> coordinator::Config {
        let mut c = coordinator::Config::defaults();
        c.services = self.services();
        c.relay_poll_ms = 100;
        c.metrics_addr = "127.0.0.1:0".parse().expect("an address");
        c.min_votes = self.min_votes;
        // Fixed redundancy keeps the spine's tests exact; aggregation tests opt
        // into the adaptive default.
        c.aggregation = "majority".into();
        c.reaper_interval_ms = 200;
        // The tests' volunteers answer at once: the speed rule would stop them
        // all (it has unit tests of its own).
        c.fast_vote_secs = 0.0;
        c.shutdown_grace_secs = 5;
        c
    }

    /// Starts a coordinator (several may run, as replicas do).
    pub async fn start_coordinator(&mut self, adjust: impl FnOnce(&mut coordinator::Config)) {
        let mut config = self.coordinator_config();
        adjust(&mut config);
        let app = coordinator::App::build(config)
            .await
            .expect("build the coordinator");
        self.coordinator_ops.push(app.metrics_addr());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        self.stops.push(tx);
    }

    /// Stops the service started last (a graceful shutdown, as on SIGTERM).
    pub fn stop_latest(&mut self) {
        if let Some(stop) = self.stops.pop() {
            let _ = stop.send(());
        }
    }

    /// Starts worker-api on a free port.
    pub async fn start_api(&mut self, adjust: impl FnOnce(&mut worker_api::Config)) {
        let mut config = worker_api::Config::defaults();
        config.services = self.services();
        config.http_addr = "127.0.0.1:0".parse().expect("an address");
        config.shutdown_grace_secs = 5;
        // As in production: a configured key, no generated one.
        config.services.env = "production".into();
        config.jwt_key_file = Some(self.key_file.as_ref().to_path_buf());
        config.gold.key = self.gold_key();
        // As in production, exports pseudonymise volunteer ids under a configured key.
        config.services.pseudonym_key = PSEUDONYM_KEY.into();
        // Functional tests claim, poll and sign in far faster than people do;
        // the rate-limit tests (ratelimit.rs) set the limits they check.
        config.limits = unthrottled();
        // Tasks the API opens itself (complaints) and dry runs ask for what
        // the coordinator's tasks ask for.
        config.min_votes = self.min_votes as u32;
        // As in production, `/metrics` is private; on a port of its own here.
        config.edge.metrics_addr = Some("127.0.0.1:0".parse().expect("an address"));
        // Sign-ins wait for a hashing slot rather than being refused (the
        // hashing bound has tests of its own).
        config.edge.hash_wait_ms = 30_000;
        adjust(&mut config);
        let app = worker_api::App::build(config)
            .await
            .expect("build worker-api");
        self.api = format!("http://{}", app.local_addr());
        self.api_ops.extend(app.metrics_addr());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        self.stops.push(tx);
        let ready = format!("{}/readyz", self.api);
        let http = self.http.clone();
        wait_until("worker-api ready", Duration::from_secs(20), || {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                http.get(&ready)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        })
        .await;
    }

    /// Creates `n` volunteers at once (one shared password hash) and mints
    /// their access tokens with this environment's key, skipping `n` logins.
    pub async fn many_volunteers(&self, prefix: &str, n: usize) -> Vec<String> {
        let hash = worker_api::auth::password::hash(PASSWORD.to_owned())
            .await
            .expect("hash");
        let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::now_v7()).collect();
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role)
             SELECT id, name, $3, 'volunteer' FROM unnest($1::uuid[], $2::text[]) AS u(id, name)",
        )
        .bind(&ids)
        .bind(&names)
        .bind(hash)
        .execute(&self.pool)
        .await
        .expect("insert volunteers");
        let keys =
            worker_api::auth::keys::KeySet::from_pem_file(self.key_file.as_ref()).expect("key");
        let issuer =
            worker_api::auth::tokens::TokenIssuer::new(keys, "spotcheck", "spotcheck-api", 900);
        let now = chrono::Utc::now().timestamp();
        ids.into_iter()
            .map(|id| {
                issuer
                    .issue(spotcheck_shared::UserId(id), Role::Volunteer, now)
                    .expect("token")
            })
            .collect()
    }

    /// Full URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// Creates a user directly and signs in over HTTP; returns the access token.
    pub async fn user(&self, username: &str, role: Role) -> String {
        worker_api::users::create_user(&self.pool, username, PASSWORD.to_owned(), role)
            .await
            .expect("create a user");
        self.login(username).await
    }

    /// Signs in over HTTP; returns the access token.
    pub async fn login(&self, username: &str) -> String {
        let body = self.login_pair(username).await;
        body["access_token"]
            .as_str()
            .expect("an access token")
            .to_owned()
    }

    /// Signs in over HTTP; returns the whole token pair.
    pub async fn login_pair(&self, username: &str) -> Value {
        let response = self
            .http
            .post(self.url("/v1/auth/login"))
            .json(&json!({"username": username, "password": PASSWORD}))
            .send()
            .await
            .expect("login request");
        assert_eq!(response.status(), 200, "login of {username}");
        response.json().await.expect("login body")
    }

    /// Replaces the sampling policy through the staff API.
    pub async fn set_policy(&self, staff: &str, policy: Value) {
        let r = self
            .http
            .put(self.url("/v1/staff/sampling-rules"))
            .bearer_auth(staff)
            .json(&policy)
            .send()
            .await
            .expect("put sampling rules");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }

    /// Sends a request and returns the status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let response = req.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// How many messages wait in a queue of this environment.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let conn = amqp::connect(&self.services().amqp_url, "tests")
            .await
            .expect("amqp");
        let channel = conn.create_channel().await.expect("channel");
        let q = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("passive declare");
        let _ = conn.close(200, "done".into()).await;
        q.message_count()
    }

    /// The names of this environment's exchanges and queues.
    pub fn names(&self) -> Names {
        Names::new(&self.id)
    }

    /// The test database's URL.
    pub fn database_url(&self) -> String {
        self.db_url.clone()
    }

    /// Keys of this environment's own, as environment variables: production
    /// mode refuses the published defaults.
    pub fn secrets(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "SPOTCHECK_SAMPLING_KEY",
                format!("sampling-key-of-{}", self.id),
            ),
            ("SPOTCHECK_GOLD_KEY", self.gold_key()),
        ]
    }

    /// This environment's gold key (see [`TestEnv::secrets`]).
    pub fn gold_key(&self) -> String {
        format!("gold-key-of-{}", self.id)
    }

    /// Rate limits high enough that tests driving volunteers at full speed are not throttled.
    pub fn rate_limit_overrides(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            ("SPOTCHECK_RATE_CLAIM_PER_MIN", "1000000"),
            ("SPOTCHECK_RATE_VOTE_PER_MIN", "1000000"),
            ("SPOTCHECK_RATE_OTHER_PER_MIN", "1000000"),
        ]
    }

    /// The AMQP URL.
    pub fn amqp_url(&self) -> String {
        self.services().amqp_url
    }
}

async fn cleanup(id: String, amqp_url: String, redis_url: String) -> anyhow::Result<()> {
    let admin = PgPool::connect(&service_url("SPOTCHECK_TEST_ADMIN_DB", ADMIN_DB)).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {id} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .context("dropping the test database")?;
    let conn = amqp::connect(&amqp_url, "test-cleanup").await?;
    let channel = conn.create_channel().await?;
    let names = Names::new(&id);
    for q in names.all_queues() {
        channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await?;
    }
    for exchange in names.exchanges() {
        channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await?;
    }
    let _ = conn.close(200, "done".into()).await;
    let client = redis::Client::open(redis_url)?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{id}}}:*"))
        .query_async(&mut redis)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut redis).await?;
    }
    Ok(())
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.stops.clear();
        let id = self.id.clone();
        let services = self.services();
        // Clean up on a thread of its own: Drop may run inside the test's runtime.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                // Let the apps see their stop signal and close connections first.
                tokio::time::sleep(Duration::from_millis(200)).await;
                cleanup(id, services.amqp_url, services.redis_url).await
            })
        })
        .join();
        if let Ok(Err(e)) = done {
            eprintln!("test clean-up failed: {e:#}");
        }
    }
}

/// A redis-server of one test's own on a free loopback port, stopped on drop.
pub struct PrivateRedis {
    port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    /// Starts one and waits until it answers.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let redis = Self { port, child };
        let url = redis.url();
        wait_until("private redis up", Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                match redis::Client::open(url) {
                    Ok(c) => c.get_multiplexed_async_connection().await.is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Runs FLUSHALL: every key is gone, as after a restart without persistence.
    pub async fn flushall(&self) {
        let client = redis::Client::open(self.url()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut conn)
            .await
            .expect("flushall");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Closes every RabbitMQ connection whose name mentions `namespace`; returns how many.
pub fn close_amqp_connections(namespace: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "--no-table-headers",
            "-q",
        ])
        .output()
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains(namespace))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for pid in &pids {
        let status = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "fault injected by a test", "-q"])
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success(), "closing {pid}");
    }
    pids.len()
}

/// Limits no functional test reaches (the quotas across replicas stay as configured by default).
pub fn unthrottled() -> worker_api::config::LimitsConfig {
    let mut limits = worker_api::Config::defaults().limits;
    limits.rate_claim_per_min = 1_000_000;
    limits.rate_vote_per_min = 1_000_000;
    limits.rate_other_per_min = 1_000_000;
    limits.rate_auth_per_min = 1_000_000;
    limits
}

/// A fresh Ed25519 private key in a PKCS#8 PEM file.
pub fn signing_key_file() -> tempfile_path::TempPath {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
    let pem = ed25519_dalek::SigningKey::from_bytes(&seed)
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .expect("encode a key");
    tempfile_path::TempPath::with_contents(&pem)
}

/// Polls `check` until it is true or `timeout` passes (then panics naming `what`).
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A count from SQL.
pub async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .expect("count query")
}

/// Writes listings as JSONL to a temporary file and returns its path.
pub fn jsonl_file(lines: &[String]) -> tempfile_path::TempPath {
    tempfile_path::TempPath::with_contents(&lines.join("\n"))
}

/// Imports JSONL lines with this environment's sampler; returns the summary.
pub async fn import_lines(env: &TestEnv, lines: &[String]) -> coordinator::import::ImportSummary {
    import_lines_at(env, lines, chrono::Utc::now().timestamp()).await
}

/// Imports JSONL lines as if at `now_secs`.
pub async fn import_lines_at(
    env: &TestEnv,
    lines: &[String],
    now_secs: i64,
) -> coordinator::import::ImportSummary {
    let sampler = coordinator::app::sampler(&env.coordinator_config());
    import_with(env, &sampler, lines, now_secs).await
}

/// Imports JSONL lines with `sampler` (its throttle as set) as if at `now_secs`.
pub async fn import_with(
    env: &TestEnv,
    sampler: &coordinator::ingest::Sampler,
    lines: &[String],
    now_secs: i64,
) -> coordinator::import::ImportSummary {
    let file = jsonl_file(lines);
    coordinator::import::import_file(
        &env.pool,
        sampler,
        file.as_ref(),
        100,
        now_secs,
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .expect("import")
}

/// A small self-deleting temporary file, without another dependency.
pub mod tempfile_path {
    use std::path::{Path, PathBuf};

    /// A file deleted on drop.
    pub struct TempPath(PathBuf);

    impl TempPath {
        /// Writes `contents` to a new file in the temporary directory.
        pub fn with_contents(contents: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("spotcheck-{}.tmp", uuid::Uuid::new_v4().simple()));
            std::fs::write(&path, contents).expect("write a temporary file");
            Self(path)
        }
    }

    impl AsRef<Path> for TempPath {
        fn as_ref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Claims until a task is granted (offers reach worker-api asynchronously), or panics after `timeout`.
pub async fn claim_within(env: &TestEnv, token: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = env
            .call(reqwest::Method::POST, "/v1/tasks/claim", Some(token), None)
            .await;
        match status {
            200 => return body,
            204 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            204 => panic!("no task became claimable within {timeout:?}"),
            other => panic!("claim answered {other}: {body}"),
        }
    }
}

/// The Prometheus text an operator listener at `addr` serves on `/metrics`.
pub async fn metrics_text(http: &reqwest::Client, addr: impl std::fmt::Display) -> String {
    let response = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(response.status(), 200, "/metrics at {addr}");
    response.text().await.expect("the metrics text")
}

/// Where `cargo build --bins` put the debug binaries.
pub fn built_bin_dir() -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug")
}

/// The path of a built binary of the workspace; panics with the fix when missing.
pub fn binary(name: &str) -> std::path::PathBuf {
    let path = built_bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The listings of a demo marketplace as JSONL lines (the feed's shape).
pub fn lines_of(market: &[spotcheck_simulation::demo::DemoListing]) -> Vec<String> {
    market
        .iter()
        .map(|d| serde_json::to_string(&d.listing).expect("a listing serializes"))
        .collect()
}

/// Waits until `sql` (a single count) answers `want`, or panics after `timeout`.
pub async fn count_reaches(
    pool: &PgPool,
    what: &str,
    sql: &'static str,
    want: i64,
    timeout: Duration,
) {
    wait_until(
        what,
        timeout,
        || async move { count(pool, sql).await == want },
    )
    .await;
}

/// A volunteer row made directly (no password hashing) and `votes` "genuine"
/// votes from them, cast now on as many distinct tasks: a pace to measure.
pub async fn seeded_votes(pool: &PgPool, username: &str, votes: i64) -> uuid::Uuid {
    let volunteer = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, 'x', 'volunteer')",
    )
    .bind(volunteer)
    .bind(username)
    .execute(pool)
    .await
    .expect("a volunteer");
    sqlx::query(
        "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence)
         SELECT gen_random_uuid(), id, $1, 'genuine', '[]', 1 FROM tasks LIMIT $2",
    )
    .bind(volunteer)
    .bind(votes)
    .execute(pool)
    .await
    .expect("the votes");
    volunteer
}

/// An open escalation of a listing stored directly (not through the feed):
/// the listing of `seller_id` with `title` and `image_urls`, an escalated task
/// with one counterfeit vote per reason (each by a volunteer of its own).
/// Returns the escalation's id and the voters' ids.
pub async fn seed_escalation(
    pool: &PgPool,
    listing_id: &str,
    seller_id: &str,
    title: &str,
    image_urls: Value,
    reasons: &[&str],
) -> (uuid::Uuid, Vec<uuid::Uuid>) {
    sqlx::query(
        "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
             seller_risk_tier, price, currency, title, description, image_urls, signals)
         VALUES ($1, 1, $2, 'Acme', 'bags', 'eu', 'standard', 20, 'EUR', $3, 'cheap', $4, '{}')",
    )
    .bind(listing_id)
    .bind(seller_id)
    .bind(title)
    .bind(image_urls)
    .execute(pool)
    .await
    .expect("insert a listing");
    let task = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO tasks (id, listing_id, listing_version, round, state, votes_required,
             votes_counted, inclusion_probability, stratum, sampling)
         VALUES ($1, $2, 1, 1, 'escalated', $3, $3, 1, 'bags/eu/standard', '{}')",
    )
    .bind(task)
    .bind(listing_id)
    .bind(reasons.len() as i32)
    .execute(pool)
    .await
    .expect("insert a task");
    let mut voters = Vec::new();
    for (i, reason) in reasons.iter().enumerate() {
        let id = worker_api::users::create_user(
            pool,
            &format!("v-{listing_id}-{i}"),
            PASSWORD.to_owned(),
            Role::Volunteer,
        )
        .await
        .expect("a volunteer");
        sqlx::query(
            "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence)
             VALUES ($1, $2, $3, 'counterfeit', $4, 1)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(task)
        .bind(id.0)
        .bind(json!([reason]))
        .execute(pool)
        .await
        .expect("insert a vote");
        voters.push(id.0);
    }
    let escalation = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO escalations (id, task_id, listing_id, reason) VALUES ($1, $2, $3, 'counterfeit')",
    )
    .bind(escalation)
    .bind(task)
    .bind(listing_id)
    .execute(pool)
    .await
    .expect("insert an escalation");
    (escalation, voters)
}
