//! Operating figures both binaries report: Prometheus metrics (one recorder
//! per process) and the queries behind the gauges and the staff stats.

use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use std::sync::OnceLock;

use crate::amqp::{Names, timed};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Only fails if another recorder is installed; then ours still renders empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        prometheus().render(),
    )
}

/// Messages waiting in each dead-letter queue, by work queue.
pub async fn dead_letter_depths(
    conn: &Connection,
    names: &Names,
) -> anyhow::Result<Vec<(String, u32)>> {
    let channel = timed("open channel", conn.create_channel()).await?;
    let mut depths = Vec::new();
    for queue in names.work_queues() {
        let dead = Names::dead_queue(&queue);
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = timed(
            "inspect a dead-letter queue",
            channel.queue_declare(dead.as_str().into(), passive, FieldTable::default()),
        )
        .await?;
        depths.push((queue, q.message_count()));
    }
    let _ = timed("close channel", channel.close(200, "done".into())).await;
    Ok(depths)
}

/// Votes beyond what review tasks asked for (gold tasks are answered by every
/// volunteer once, so their answers are never over-collection).
pub const OVER_COLLECTED_SQL: &str =
    "SELECT coalesce(sum(greatest(v.n - t.votes_required, 0)), 0)::bigint
     FROM tasks t JOIN (SELECT task_id, count(*) AS n FROM votes GROUP BY task_id) v ON v.task_id = t.id
     WHERE t.kind = 'review'";

/// Database-side figures: over-collected votes and outbox backlog.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DbFigures {
    /// Votes beyond what their task asked for (should stay 0).
    pub over_collected: i64,
    /// Outbox rows not yet published.
    pub outbox_unsent: i64,
    /// Age of the oldest unpublished outbox row, in seconds.
    pub outbox_lag_secs: f64,
}

/// Outbox rows not yet published, and the age in seconds of the oldest.
pub async fn outbox_backlog(pool: &PgPool) -> sqlx::Result<(i64, f64)> {
    sqlx::query_as(
        "SELECT count(*),
                coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
         FROM outbox WHERE sent_at IS NULL",
    )
    .fetch_one(pool)
    .await
}

/// Reads the database-side figures.
pub async fn db_figures(pool: &PgPool) -> sqlx::Result<DbFigures> {
    let over_collected: i64 = sqlx::query_scalar(OVER_COLLECTED_SQL)
        .fetch_one(pool)
        .await?;
    let (outbox_unsent, outbox_lag_secs) = outbox_backlog(pool).await?;
    Ok(DbFigures {
        over_collected,
        outbox_unsent,
        outbox_lag_secs,
    })
}
