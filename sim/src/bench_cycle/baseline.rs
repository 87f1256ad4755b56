//! The claims baseline: the usual way to hand out jobs, served in this process
//! on `127.0.0.1:0` so the same client loop can drive it. An axum server checks
//! the bearer token exactly as worker-api does (EdDSA pinned, `kid`, `exp`,
//! `nbf`, `iat`, `iss`, `aud`, `sub`), then claims a row of a PostgreSQL job
//! table with `FOR UPDATE SKIP LOCKED`; a release sets it free again. It answers
//! worker-api's claim and release routes in their shapes.

use super::auth::{Minter, validation};
use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

/// What the handlers share.
struct Baseline {
    pool: PgPool,
    kid: String,
    key: DecodingKey,
    validation: Validation,
}

/// The running baseline server; stopped when dropped.
pub struct BaselineServer {
    /// Its base URL.
    pub url: String,
    stop: CancellationToken,
    _task: AbortOnDropHandle<()>,
}

impl Drop for BaselineServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Creates and fills the job table (`jobs` rows) in the database of `db_url`
/// and serves the baseline on a pool of `connections`.
pub async fn start(
    db_url: &str,
    minter: &Minter,
    jobs: i64,
    connections: u32,
) -> anyhow::Result<BaselineServer> {
    // No ping on every checkout: the baseline gets the pool settings a careful service would use.
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect(db_url)
        .await
        .context("connecting the baseline to PostgreSQL")?;
    for sql in [
        "CREATE TABLE bench_jobs (id bigint PRIMARY KEY, claimed_by uuid,
                                  claimed_at timestamptz, lease_token text)",
        "CREATE INDEX bench_jobs_free_idx ON bench_jobs (id) WHERE claimed_by IS NULL",
    ] {
        sqlx::query(sql)
            .execute(&pool)
            .await
            .context("creating the job table")?;
    }
    sqlx::query("INSERT INTO bench_jobs (id) SELECT generate_series(1, $1::bigint)")
        .bind(jobs)
        .execute(&pool)
        .await
        .context("filling the job table")?;
    sqlx::query("ANALYZE bench_jobs").execute(&pool).await?;
    let state = Arc::new(Baseline {
        pool,
        kid: minter.kid().to_owned(),
        key: minter.verifying_key().clone(),
        validation: validation(),
    });
    let app = Router::new()
        .route("/v1/tasks/claim", post(claim))
        .route("/v1/tasks/{id}/release", post(release))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the baseline server")?;
    let url = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let until = stop.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { until.cancelled().await })
            .await;
        if let Err(e) = served {
            eprintln!("bench-cycle: the baseline server stopped: {e}");
        }
    });
    Ok(BaselineServer {
        url,
        stop,
        _task: AbortOnDropHandle::new(task),
    })
}

fn problem(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "code": code }))).into_response()
}

/// The token's subject, once it checks out as worker-api would check it.
fn caller(state: &Baseline, headers: &HeaderMap) -> Option<Uuid> {
    let token = headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let header = decode_header(token).ok()?;
    if header.kid.as_deref() != Some(state.kid.as_str()) {
        return None;
    }
    let data = decode::<serde_json::Value>(token, &state.key, &state.validation).ok()?;
    data.claims["sub"].as_str()?.parse().ok()
}

fn unauthorized() -> Response {
    problem(StatusCode::UNAUTHORIZED, "unauthorized")
}

fn internal(e: sqlx::Error) -> Response {
    eprintln!("bench-cycle: baseline query failed: {e}");
    problem(StatusCode::INTERNAL_SERVER_ERROR, "internal")
}

async fn claim(State(state): State<Arc<Baseline>>, headers: HeaderMap) -> Response {
    let Some(me) = caller(&state, &headers) else {
        return unauthorized();
    };
    let token = format!("bl_{}", Uuid::new_v4().simple());
    let claimed: Result<Option<(i64, chrono::DateTime<chrono::Utc>)>, _> = sqlx::query_as(
        "UPDATE bench_jobs SET claimed_by = $1, claimed_at = now(), lease_token = $2
         WHERE id = (SELECT id FROM bench_jobs WHERE claimed_by IS NULL
                     ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
         RETURNING id, claimed_at",
    )
    .bind(me)
    .bind(&token)
    .fetch_optional(&state.pool)
    .await;
    match claimed {
        Ok(Some((id, at))) => Json(json!({
            "task_id": id.to_string(),
            "lease_token": token,
            "lease_expires_at": at + chrono::Duration::minutes(5),
            "listing": { "listing_id": format!("job-{id}") },
        }))
        .into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(e),
    }
}

/// Body of a release.
#[derive(Deserialize)]
struct LeaseBody {
    lease_token: String,
}

async fn release(
    State(state): State<Arc<Baseline>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(body): Json<LeaseBody>,
) -> Response {
    let Some(me) = caller(&state, &headers) else {
        return unauthorized();
    };
    let released = sqlx::query(
        "UPDATE bench_jobs SET claimed_by = NULL, claimed_at = NULL, lease_token = NULL
         WHERE id = $1 AND claimed_by = $2 AND lease_token = $3",
    )
    .bind(id)
    .bind(me)
    .bind(&body.lease_token)
    .execute(&state.pool)
    .await;
    match released {
        Ok(done) if done.rows_affected() == 1 => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => problem(StatusCode::CONFLICT, "lease_not_found"),
        Err(e) => internal(e),
    }
}
