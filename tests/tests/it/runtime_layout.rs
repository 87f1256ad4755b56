//! The container image's runtime layout, run as the image runs it: the tree
//! `scripts/runtime-layout.sh` assembles from the built binaries, owned by root
//! and read-only, the processes started as uid/gid 65532 with their home and
//! working directory inside it. `worker-api migrate` fills an empty database,
//! worker-api and the coordinator, in production mode with every secret read
//! from a mounted file, become healthy and ready, nothing is written
//! in the tree, and both exit cleanly on SIGTERM.

use crate::harness::{TestEnv, built_bin_dir, count, free_port};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The image's unprivileged user and group (distroless `nonroot`).
const RUNTIME_ID: u32 = 65532;
const GRACE_SECS: u64 = 5;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A directory of its own under the system temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "spotcheck-{what}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&path).expect("create a scratch directory");
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Give write permission back first, or the read-only tree cannot be removed.
        let _ = Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The effective uid of this test process.
fn own_uid() -> u32 {
    ids_of(std::process::id(), "Uid:")[1]
}

/// The real, effective, saved and filesystem ids on a `Uid:` or `Gid:` line of
/// `/proc/PID/status`.
fn ids_of(pid: u32, line: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap_or_else(|| panic!("no {line} line for {pid}"))
        .split_whitespace()
        .map(|n| n.parse().expect("a numeric id"))
        .collect()
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// What is compared of one entry: directory or not, size, mode, owner, group
/// and modification time.
type EntryState = (bool, u64, u32, u32, u32, i64, i64);

/// Every entry under `root`, by its path relative to `root`.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, EntryState> {
    let mut entries = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a directory") {
            let path = entry.expect("an entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat");
            if meta.is_dir() {
                stack.push(path.clone());
            }
            entries.insert(
                path.strip_prefix(root).expect("under root").to_path_buf(),
                (
                    meta.is_dir(),
                    meta.len(),
                    meta.mode(),
                    meta.uid(),
                    meta.gid(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                ),
            );
        }
    }
    entries
}

/// Makes every directory and file under `root` (and `root` itself) mode 0555,
/// owned by root when the test runs as root.
fn make_read_only(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read a directory") {
                stack.push(entry.expect("an entry").path());
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    }
    if own_uid() == 0 {
        let status = Command::new("chown")
            .args(["-R", "0:0"])
            .arg(root)
            .status()
            .expect("chown runs");
        assert!(status.success());
    }
}

/// `setpriv` from util-linux, which the test uses to drop to the runtime user.
fn setpriv() -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("setpriv"))
        .find(|p| p.is_file())
        .expect("setpriv is missing: install util-linux")
}

/// The environment of a container of the image: nothing inherited.
struct Runtime {
    root: PathBuf,
    home: PathBuf,
    logs: PathBuf,
    env: Vec<(String, String)>,
    as_root: bool,
}

impl Runtime {
    /// Starts `args` (the binary first) from the layout, as uid/gid 65532 when
    /// the test runs as root, with its standard error in `logs/NAME.log`.
    fn start(&self, name: &str, args: &[&str], extra: &[(&str, String)]) -> Running {
        let binary = self.root.join("usr/local/bin").join(args[0]);
        let mut cmd = if self.as_root {
            let mut cmd = Command::new(setpriv());
            cmd.arg(format!("--reuid={RUNTIME_ID}"))
                .arg(format!("--regid={RUNTIME_ID}"))
                .args(["--clear-groups", "--no-new-privs", "--"])
                .arg(&binary);
            cmd
        } else {
            Command::new(&binary)
        };
        let log = self.logs.join(format!("{name}.log"));
        cmd.args(&args[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .env("HOME", &self.home)
            .current_dir(&self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Running {
            name: name.to_owned(),
            child,
            log,
        }
    }
}

/// A process of the layout, killed if the test ends before it does.
struct Running {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit, at most `timeout`.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {timeout:?}; its log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "signalling {}", self.name);
        self.wait(Duration::from_secs(GRACE_SECS + 10))
    }

    /// Panics with the log when the process has already exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            panic!(
                "{} exited with {status}; its log:\n{}",
                self.name,
                self.log()
            );
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `url` until it answers 200, while `process` keeps running.
async fn wait_for_200(http: &reqwest::Client, process: &mut Running, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        process.assert_running();
        if let Ok(r) = http.get(url).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 within a minute; {} log:\n{}",
            process.name,
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_runs_as_runtime_user(process: &Running, as_root: bool) {
    let pid = process.pid();
    let expected = if as_root { RUNTIME_ID } else { own_uid() };
    assert_ne!(expected, 0, "the services must not run as root");
    assert_eq!(
        ids_of(pid, "Uid:"),
        vec![expected; 4],
        "{} uids",
        process.name
    );
    if as_root {
        assert_eq!(
            ids_of(pid, "Gid:"),
            vec![RUNTIME_ID; 4],
            "{} gids",
            process.name
        );
        assert_eq!(status_field(pid, "Groups:"), "", "{} groups", process.name);
        assert_eq!(
            status_field(pid, "NoNewPrivs:"),
            "1",
            "{} no_new_privs",
            process.name
        );
        assert_eq!(
            status_field(pid, "CapEff:"),
            "0000000000000000",
            "{} capabilities",
            process.name
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_layout_runs_read_only_as_an_unprivileged_user_and_stops_cleanly() {
    let env = TestEnv::db_only().await;
    // The database starts empty: `migrate` from the layout must create the schema.
    sqlx::query("DROP SCHEMA public CASCADE")
        .execute(&env.pool)
        .await
        .expect("drop the schema");
    sqlx::query("CREATE SCHEMA public")
        .execute(&env.pool)
        .await
        .expect("recreate the schema");

    let scratch = Scratch::new("layout");
    let root = scratch.0.join("root");
    let logs = scratch.0.join("logs");
    std::fs::create_dir(&logs).expect("a log directory");
    let assembled = Command::new("bash")
        .arg(repo_root().join("scripts/runtime-layout.sh"))
        .arg(built_bin_dir())
        .arg(&root)
        .output()
        .expect("the layout script runs");
    assert!(
        assembled.status.success(),
        "runtime-layout.sh failed: {}",
        String::from_utf8_lossy(&assembled.stderr)
    );
    for bin in ["worker-api", "coordinator", "spotcheck-sim"] {
        let path = root.join("usr/local/bin").join(bin);
        let meta = std::fs::metadata(&path).expect("the binary is in the layout");
        assert_eq!(meta.mode() & 0o777, 0o555, "{bin} is mode 0555");
    }
    // The runtime user's home, as in the image.
    let home = root.join("home/nonroot");
    std::fs::create_dir_all(&home).expect("a home directory");
    // Secrets mounted as files, as Kubernetes mounts a Secret (read-only too).
    let secrets = root.join("var/run/secrets/spotcheck");
    std::fs::create_dir_all(&secrets).expect("a secrets directory");
    let secret = |name: &str, value: &str| {
        let path = secrets.join(name);
        std::fs::write(&path, value).expect("write a secret");
        path.to_string_lossy().into_owned()
    };
    let key_pem = std::fs::read_to_string(env.key_file.as_ref()).expect("the signing key");
    let secret_env: Vec<(String, String)> = vec![
        ("SPOTCHECK_ENV".into(), "production".into()),
        (
            "DATABASE_URL_FILE".into(),
            secret("database-url", &format!("{}\n", env.database_url())),
        ),
        (
            "SPOTCHECK_JWT_KEY_FILE".into(),
            secret("jwt-key.pem", &key_pem),
        ),
        (
            "SPOTCHECK_SAMPLING_KEY_FILE".into(),
            secret(
                "sampling-key",
                &format!("sampling-{}-{}", env.id, uuid::Uuid::new_v4()),
            ),
        ),
        (
            "SPOTCHECK_GOLD_KEY_FILE".into(),
            secret(
                "gold-key",
                &format!("gold-{}-{}", env.id, uuid::Uuid::new_v4()),
            ),
        ),
    ];
    make_read_only(&root);
    let before = snapshot(&root);

    let as_root = own_uid() == 0;
    let services = worker_api::Config::defaults().services;
    let runtime = Runtime {
        root: root.clone(),
        home,
        logs,
        as_root,
        env: vec![
            ("REDIS_URL".into(), services.redis_url.clone()),
            ("AMQP_URL".into(), env.amqp_url()),
            ("SPOTCHECK_AMQP_NAMESPACE".into(), env.id.clone()),
            ("SPOTCHECK_REDIS_PREFIX".into(), env.id.clone()),
            ("SPOTCHECK_DB_MAX_CONNECTIONS".into(), "4".into()),
            (
                "SPOTCHECK_SHUTDOWN_GRACE_SECS".into(),
                GRACE_SECS.to_string(),
            ),
            ("SPOTCHECK_LOG_FORMAT".into(), "json".into()),
            ("RUST_LOG".into(), "warn".into()),
        ]
        .into_iter()
        .chain(secret_env)
        .collect(),
    };

    let mut migrate = runtime.start("migrate", &["worker-api", "migrate"], &[]);
    let status = migrate.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "worker-api migrate: {status}; log:\n{}",
        migrate.log()
    );
    let migrations = std::fs::read_dir(repo_root().join("migrations"))
        .expect("migrations/")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count() as i64;
    assert!(migrations > 0);
    assert_eq!(
        count(
            &env.pool,
            "SELECT count(*) FROM _sqlx_migrations WHERE success"
        )
        .await,
        migrations,
        "every migration applied by worker-api migrate"
    );

    let http_port = free_port();
    let api_metrics_port = free_port();
    let ops_port = free_port();
    let mut worker = runtime.start(
        "worker-api",
        &["worker-api"],
        &[
            ("SPOTCHECK_HTTP_ADDR", format!("127.0.0.1:{http_port}")),
            (
                "SPOTCHECK_METRICS_ADDR",
                format!("127.0.0.1:{api_metrics_port}"),
            ),
        ],
    );
    let mut coordinator = runtime.start(
        "coordinator",
        &["coordinator"],
        &[("SPOTCHECK_METRICS_ADDR", format!("127.0.0.1:{ops_port}"))],
    );

    let http = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        wait_for_200(
            &http,
            &mut worker,
            &format!("http://127.0.0.1:{http_port}{path}"),
        )
        .await;
        wait_for_200(
            &http,
            &mut coordinator,
            &format!("http://127.0.0.1:{ops_port}{path}"),
        )
        .await;
    }
    assert_runs_as_runtime_user(&worker, as_root);
    assert_runs_as_runtime_user(&coordinator, as_root);

    assert_eq!(before, snapshot(&root), "nothing was written in the tree");

    for process in [&mut worker, &mut coordinator] {
        let status = process.terminate();
        assert!(
            status.success(),
            "{} exits cleanly on SIGTERM, got {status}; its log:\n{}",
            process.name,
            process.log()
        );
    }
    assert_eq!(before, snapshot(&root), "nothing was written in the tree");
}
