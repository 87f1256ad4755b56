//! Streams an export of votes or decisions out of PostgreSQL: a keyset-paged
//! query of [`CHUNK_ROWS`] rows at a time, each chunk written out before the
//! next is read. Memory stays bounded whatever the range, and a reader that
//! stops (a client that disconnects) stops the export between two short
//! queries: nothing keeps running in the database.

use chrono::{DateTime, Utc};
use futures::Stream;
use spotcheck_shared::export::{
    DecisionRow, ExportFormat, ExportKind, ExportRow, VolunteerIds, VoteRow, header,
};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

/// Rows read by one query of an export.
pub const CHUNK_ROWS: i64 = 5_000;

/// What to export, and how.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Votes or decisions.
    pub kind: ExportKind,
    /// CSV or JSON lines.
    pub format: ExportFormat,
    /// First instant included (`created_at` of a vote, `decided_at` of a decision).
    pub since: DateTime<Utc>,
    /// First instant left out.
    pub until: DateTime<Utc>,
    /// Volunteer ids as they are, or pseudonymised.
    pub volunteers: VolunteerIds,
}

/// Where the next chunk starts: after this instant and id.
type Cursor = Option<(DateTime<Utc>, Uuid)>;

/// The export as a stream of byte chunks: the CSV header first (if any), then
/// one chunk of written rows per query, oldest first (ties by id).
pub fn stream(
    pool: PgPool,
    request: ExportRequest,
) -> impl Stream<Item = Result<Vec<u8>, sqlx::Error>> + Send + 'static {
    let first = header(request.kind, request.format);
    futures::stream::try_unfold(
        (Some(first), None::<(DateTime<Utc>, Uuid)>, false),
        move |(pending, cursor, done)| {
            let pool = pool.clone();
            let request = request.clone();
            async move {
                if let Some(head) = pending.filter(|h| !h.is_empty()) {
                    return Ok(Some((head, (None, cursor, done))));
                }
                if done {
                    return Ok(None);
                }
                let (bytes, next, rows) = chunk(&pool, &request, cursor).await?;
                if rows == 0 {
                    return Ok(None);
                }
                Ok(Some((bytes, (None, next, rows < CHUNK_ROWS as usize))))
            }
        },
    )
}

/// One chunk: its written rows, the cursor after it and how many rows it held.
async fn chunk(
    pool: &PgPool,
    request: &ExportRequest,
    cursor: Cursor,
) -> sqlx::Result<(Vec<u8>, Cursor, usize)> {
    let mut out = Vec::with_capacity(256 * CHUNK_ROWS as usize);
    let (after_at, after_id) = cursor.unzip();
    match request.kind {
        ExportKind::Votes => {
            let rows: Vec<VoteRecord> = sqlx::query_as(
                "SELECT v.id, v.task_id, t.kind, t.listing_id, v.volunteer_id, v.verdict,
                        v.reasons, v.note, v.seconds_taken, v.created_at
                 FROM votes v JOIN tasks t ON t.id = v.task_id
                 WHERE v.created_at >= $1 AND v.created_at < $2
                   AND ($3::timestamptz IS NULL OR (v.created_at, v.id) > ($3, $4))
                 ORDER BY v.created_at, v.id LIMIT $5",
            )
            .bind(request.since)
            .bind(request.until)
            .bind(after_at)
            .bind(after_id)
            .bind(CHUNK_ROWS)
            .fetch_all(pool)
            .await?;
            let next = rows.last().map(|r| (r.9, r.0));
            for r in &rows {
                vote_row(r, &request.volunteers).write(request.format, &mut out);
            }
            Ok((out, next, rows.len()))
        }
        ExportKind::Decisions => {
            let rows: Vec<DecisionRecord> = sqlx::query_as(
                "SELECT d.task_id, t.listing_id, t.round, t.stratum, t.inclusion_probability,
                        d.outcome, coalesce((d.tally->>'genuine')::bigint, 0),
                        coalesce((d.tally->>'counterfeit')::bigint, 0),
                        coalesce((d.tally->>'unsure')::bigint, 0), d.posterior, e.status,
                        d.decided_at
                 FROM decisions d JOIN tasks t ON t.id = d.task_id
                 LEFT JOIN escalations e ON e.task_id = d.task_id
                 WHERE d.decided_at >= $1 AND d.decided_at < $2
                   AND ($3::timestamptz IS NULL OR (d.decided_at, d.task_id) > ($3, $4))
                 ORDER BY d.decided_at, d.task_id LIMIT $5",
            )
            .bind(request.since)
            .bind(request.until)
            .bind(after_at)
            .bind(after_id)
            .bind(CHUNK_ROWS)
            .fetch_all(pool)
            .await?;
            let next = rows.last().map(|r| (r.11, r.0));
            for r in rows.iter().cloned() {
                decision_row(r).write(request.format, &mut out);
            }
            Ok((out, next, rows.len()))
        }
    }
}

/// A vote as read: id, task, task kind, listing, volunteer, verdict, reasons,
/// note, seconds taken, cast at.
type VoteRecord = (
    Uuid,
    Uuid,
    String,
    String,
    Uuid,
    String,
    Json<Vec<String>>,
    Option<String>,
    Option<f64>,
    DateTime<Utc>,
);

fn vote_row(r: &VoteRecord, volunteers: &VolunteerIds) -> VoteRow {
    VoteRow {
        vote_id: r.0,
        task_id: r.1,
        task_kind: r.2.clone(),
        listing_id: r.3.clone(),
        volunteer: volunteers.write(r.4),
        verdict: r.5.clone(),
        reasons: r.6.0.clone(),
        note: r.7.clone(),
        seconds_taken: r.8,
        created_at: r.9,
    }
}

/// A decision as read, in [`DecisionRow`]'s order.
type DecisionRecord = (
    Uuid,
    String,
    i64,
    String,
    f64,
    String,
    i64,
    i64,
    i64,
    Option<f64>,
    Option<String>,
    DateTime<Utc>,
);

fn decision_row(r: DecisionRecord) -> DecisionRow {
    DecisionRow {
        task_id: r.0,
        listing_id: r.1,
        round: r.2,
        stratum: r.3,
        inclusion_probability: r.4,
        outcome: r.5,
        votes_genuine: r.6,
        votes_counterfeit: r.7,
        votes_unsure: r.8,
        posterior: r.9,
        escalation_status: r.10,
        decided_at: r.11,
    }
}
