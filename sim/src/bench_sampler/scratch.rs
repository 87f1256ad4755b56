//! The benchmark's scratch world: its own database (created, migrated, emptied
//! between runs, dropped at the end), its own AMQP namespace plus a raw baseline
//! queue (declared, purged between runs, deleted at the end), and the JSONL file
//! the import reads.

use crate::fault::world::{Database, delete_amqp_topology};
use anyhow::Context;
use lapin::Channel;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use spotcheck_platform::amqp::{self, Names, timed};
use spotcheck_simulation::demo::DemoListing;
use sqlx::PgPool;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Names and places of one benchmark's scratch world.
pub struct Scratch {
    /// `bench_<uuid>`: the database name and the AMQP namespace.
    pub id: String,
    db: Database,
    amqp_url: String,
}

impl Scratch {
    /// A fresh, not yet created, world on the servers of `database_url` and `amqp_url`.
    pub fn new(database_url: &str, amqp_url: &str) -> Self {
        let id = format!("bench_{}", uuid::Uuid::new_v4().simple());
        Self {
            db: Database::new(database_url, &id),
            id,
            amqp_url: amqp_url.to_owned(),
        }
    }

    /// The names of the namespace's exchanges and queues.
    pub fn names(&self) -> Names {
        Names::new(&self.id)
    }

    /// The quorum queue the raw baseline publishes to.
    pub fn raw_queue(&self) -> String {
        format!("{}.raw-baseline", self.id)
    }

    /// Creates the database, applies the project's migrations and returns a pool on it.
    pub async fn create_database(&self) -> anyhow::Result<PgPool> {
        self.db.recreate().await?;
        let pool = self.connect().await?;
        spotcheck_platform::db::migrate(&pool).await?;
        Ok(pool)
    }

    /// A new pool on the database (new connections, so no plans cached by an earlier run).
    pub async fn connect(&self) -> anyhow::Result<PgPool> {
        spotcheck_platform::db::connect(&self.db.url()?, 4).await
    }

    /// Declares the project's topology under the namespace, and the raw queue
    /// (a durable quorum queue, as the tasks queue is).
    pub async fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        amqp::declare_topology(channel, &self.names()).await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        timed(
            "declare the raw baseline queue",
            channel.queue_declare(
                self.raw_queue().as_str().into(),
                QueueDeclareOptions::durable(),
                args,
            ),
        )
        .await?;
        Ok(())
    }

    /// Empties what a run fills: listings, tasks, outbox, frames, and both queues.
    pub async fn reset(&self, pool: &PgPool, channel: &Channel) -> anyhow::Result<()> {
        sqlx::query("TRUNCATE listings, tasks, outbox, sampling_frames CASCADE")
            .execute(pool)
            .await
            .context("emptying the scratch tables")?;
        for queue in [self.names().tasks_queue(), self.raw_queue()] {
            timed(
                "purge",
                channel.queue_purge(queue.as_str().into(), QueuePurgeOptions::default()),
            )
            .await?;
        }
        Ok(())
    }

    /// Messages ready in `queue`.
    pub async fn depth(channel: &Channel, queue: &str) -> anyhow::Result<u64> {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = timed(
            "passive declare",
            channel.queue_declare(queue.into(), passive, FieldTable::default()),
        )
        .await?;
        Ok(u64::from(q.message_count()))
    }

    /// Drops the database and deletes the queues and exchanges; failures are
    /// printed, not returned, so every part is attempted.
    pub async fn remove(&self) {
        if let Err(e) = self.db.drop_it().await {
            eprintln!("warning: could not drop database {}: {e:#}", self.id);
        }
        if let Err(e) = delete_amqp_topology(&self.amqp_url, &self.id).await {
            eprintln!("warning: could not delete the queues of {}: {e:#}", self.id);
        }
        if let Err(e) = self.delete_raw_queue().await {
            eprintln!(
                "warning: could not delete queue {}: {e:#}",
                self.raw_queue()
            );
        }
    }

    async fn delete_raw_queue(&self) -> anyhow::Result<()> {
        let conn = amqp::connect(&self.amqp_url, "spotcheck-sim-cleanup").await?;
        let channel = timed("open channel", conn.create_channel()).await?;
        timed(
            "delete queue",
            channel.queue_delete(
                self.raw_queue().as_str().into(),
                QueueDeleteOptions::default(),
            ),
        )
        .await?;
        let _ = timed("close", conn.close(200, "done".into())).await;
        Ok(())
    }
}

/// The listings as a JSONL file in the temporary directory, removed on drop.
pub struct JsonlFile(PathBuf);

impl JsonlFile {
    /// Writes one listing a line to a new file named after `id`.
    pub fn write(id: &str, listings: &[DemoListing]) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("spotcheck-{id}.jsonl"));
        let file = Self(path);
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&file.0)
                .with_context(|| format!("creating {}", file.0.display()))?,
        );
        for d in listings {
            serde_json::to_writer(&mut out, &d.listing)?;
            out.write_all(b"\n")?;
        }
        out.flush()
            .with_context(|| format!("writing {}", file.0.display()))?;
        Ok(file)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for JsonlFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
