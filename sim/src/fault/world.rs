//! The run's isolated world outside the processes: its own database, its own
//! AMQP namespace, a signing key and a working directory for logs, and how each
//! is torn down again.

use anyhow::Context;
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use spotcheck_platform::amqp::{self, Names, timed};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The run's database, created fresh from the server's admin database.
#[derive(Debug, Clone)]
pub struct Database {
    admin_url: String,
    name: String,
}

impl Database {
    /// The database `name` on the server of `admin_url`.
    pub fn new(admin_url: &str, name: &str) -> Self {
        Self {
            admin_url: admin_url.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Its connection string: the admin URL with the database name replaced.
    pub fn url(&self) -> anyhow::Result<String> {
        let (base, _) = self
            .admin_url
            .rsplit_once('/')
            .context("--admin-db-url has no database path")?;
        Ok(format!("{base}/{}", self.name))
    }

    /// Drops the database if it exists (closing its sessions) and creates it empty.
    pub async fn recreate(&self) -> anyhow::Result<()> {
        self.drop_it().await?;
        self.admin(&format!("CREATE DATABASE {}", self.name)).await
    }

    /// Drops the database, closing its sessions.
    pub async fn drop_it(&self) -> anyhow::Result<()> {
        self.admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await
    }

    async fn admin(&self, sql: &str) -> anyhow::Result<()> {
        let admin = PgPool::connect(&self.admin_url)
            .await
            .context("connecting to the PostgreSQL admin database")?;
        // The name was checked to be plain letters, digits and `_` (FaultArgs::validate).
        let result = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&admin)
            .await
            .with_context(|| format!("running `{sql}`"));
        admin.close().await;
        result.map(|_| ())
    }
}

/// Deletes the namespace's queues (work and dead-letter) and exchanges.
pub async fn delete_amqp_topology(url: &str, namespace: &str) -> anyhow::Result<()> {
    let conn = amqp::connect(url, "spotcheck-sim-cleanup").await?;
    let channel = timed("open channel", conn.create_channel()).await?;
    let names = Names::new(namespace);
    for q in names.all_queues() {
        timed(
            "delete queue",
            channel.queue_delete(q.as_str().into(), QueueDeleteOptions::default()),
        )
        .await?;
    }
    for exchange in names.exchanges() {
        timed(
            "delete exchange",
            channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()),
        )
        .await?;
    }
    let _ = timed("close", conn.close(200, "done".into())).await;
    Ok(())
}

/// Messages waiting in each dead-letter queue of the namespace (a queue that
/// cannot be read is left out).
pub async fn dead_lettered(url: &str, namespace: &str) -> anyhow::Result<BTreeMap<String, u32>> {
    let conn = amqp::connect(url, "spotcheck-sim-check").await?;
    let mut depths = BTreeMap::new();
    for queue in Names::new(namespace).work_queues() {
        let dead = Names::dead_queue(&queue);
        // A passive declare of a missing queue closes its channel: one channel each.
        let channel = timed("open channel", conn.create_channel()).await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = timed(
            "passive declare",
            channel.queue_declare(dead.as_str().into(), passive, FieldTable::default()),
        )
        .await;
        if let Ok(q) = declared {
            depths.insert(dead, q.message_count());
        }
    }
    let _ = timed("close", conn.close(200, "done".into())).await;
    Ok(depths)
}

/// Writes a fresh Ed25519 private key as a PKCS#8 PEM file at `path`.
pub fn write_signing_key(path: &Path) -> anyhow::Result<()> {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut seed);
    let pem = ed25519_dalek::SigningKey::from_bytes(&seed)
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the signing key: {e}"))?;
    std::fs::write(path, pem.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    restrict(path)
}

#[cfg(unix)]
fn restrict(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// The run's working directory: process logs, the signing key, Redis's files.
#[derive(Debug)]
pub struct WorkDir {
    /// Where it is.
    pub path: PathBuf,
    /// Whether it was asked for (`--logs`) and so is never removed.
    pub chosen: bool,
}

impl WorkDir {
    /// `--logs DIR` if given, else a new directory under the system's temporary directory.
    pub fn create(chosen: Option<&Path>, namespace: &str) -> anyhow::Result<Self> {
        let (path, is_chosen) = match chosen {
            Some(dir) => (dir.to_path_buf(), true),
            None => {
                let unique = format!(
                    "spotcheck-fault-{namespace}-{}-{}",
                    std::process::id(),
                    chrono::Utc::now().timestamp_millis()
                );
                (std::env::temp_dir().join(unique), false)
            }
        };
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            path,
            chosen: is_chosen,
        })
    }

    /// A file in it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Removes it unless it was chosen or `keep` is set; returns whether it is still there.
    pub fn finish(&self, keep: bool) -> bool {
        if self.chosen || keep {
            // The signing key has no use after the run.
            let _ = std::fs::remove_file(self.file("jwt-key.pem"));
            return true;
        }
        let _ = std::fs::remove_dir_all(&self.path);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_database_sits_on_the_admin_server() {
        let db = Database::new(
            "postgres://postgres@127.0.0.1:5432/postgres",
            "spotcheck_fault",
        );
        assert_eq!(
            db.url().unwrap(),
            "postgres://postgres@127.0.0.1:5432/spotcheck_fault"
        );
        assert!(Database::new("nonsense", "x").url().is_err());
    }

    #[test]
    fn a_signing_key_file_holds_a_pkcs8_pem_key() {
        let dir = WorkDir::create(None, "unit_key").unwrap();
        let path = dir.file("jwt-key.pem");
        write_signing_key(&path).unwrap();
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        assert!(!dir.finish(false));
        assert!(!path.exists());
    }
}
