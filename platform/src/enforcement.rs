//! Cases and penalties in PostgreSQL: opening a case, enforcing it (strike,
//! penalties, seller status, enforcement events through the outbox, audit),
//! lifting a penalty, the ladder in force and the sellers' tiers. Every change
//! is made in the caller's transaction together with its audit row, so the
//! API and the coordinator's deadline sweep share one implementation, and an
//! event is written exactly once (the case row is locked, and penalties are
//! unique per case and kind).

use crate::clock::Clock;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use spotcheck_shared::enforcement::{self, CaseEvent, CaseRefusal, CaseState, Ladder, PenaltyKind};
use spotcheck_shared::messages::{EnforcementEvent, Topic};
use sqlx::PgConnection;
use uuid::Uuid;

/// What a case is opened from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseSource {
    /// A confirmed escalation.
    Escalation(Uuid),
    /// An accepted brand-owner complaint.
    Complaint(Uuid),
    /// A counterfeit test purchase.
    TestPurchase(Uuid),
}

impl CaseSource {
    fn parts(self) -> (&'static str, Option<Uuid>, Option<Uuid>, Option<Uuid>) {
        match self {
            CaseSource::Escalation(id) => ("escalation", Some(id), None, None),
            CaseSource::Complaint(id) => ("complaint", None, Some(id), None),
            CaseSource::TestPurchase(id) => ("test_purchase", None, None, Some(id)),
        }
    }
}

/// A case to open.
#[derive(Debug, Clone)]
pub struct NewCase<'a> {
    /// The seller accused.
    pub seller_id: &'a str,
    /// The listing, when the case is about one.
    pub listing_id: Option<&'a str>,
    /// Where it comes from (one case per source).
    pub source: CaseSource,
    /// The staff member who confirmed or accepted it.
    pub opened_by: Option<Uuid>,
    /// Their note.
    pub note: Option<&'a str>,
}

/// Makes sure the seller has a record.
pub async fn ensure_seller(conn: &mut PgConnection, seller_id: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO sellers (seller_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(seller_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Appends an audit row (`actor` None for an automatic action).
pub async fn audit(
    conn: &mut PgConnection,
    actor: Option<Uuid>,
    action: &str,
    subject: &str,
    old: Option<Value>,
    new: Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor_id, action, subject, old, new) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(actor)
    .bind(action)
    .bind(subject)
    .bind(old)
    .bind(new)
    .execute(conn)
    .await?;
    Ok(())
}

/// Opens a case (state `notified`, deadline now + the window) and returns its
/// id; opening it again from the same source returns the first one. The
/// caller's own audit row names the case (`case_id` in its new value), so a
/// staff action that opens a case leaves one audit row, not two.
pub async fn open_case(
    conn: &mut PgConnection,
    case: &NewCase<'_>,
    window_secs: i64,
    now: DateTime<Utc>,
) -> sqlx::Result<Uuid> {
    ensure_seller(conn, case.seller_id).await?;
    let (source, escalation, complaint, purchase) = case.source.parts();
    let deadline = now + Duration::seconds(window_secs);
    let id = Uuid::now_v7();
    let inserted: Option<(Uuid,)> = sqlx::query_as(
        "INSERT INTO cases (id, seller_id, listing_id, source, escalation_id, complaint_id,
                            test_purchase_id, opened_by, note, deadline, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(case.seller_id)
    .bind(case.listing_id)
    .bind(source)
    .bind(escalation)
    .bind(complaint)
    .bind(purchase)
    .bind(case.opened_by)
    .bind(case.note)
    .bind(deadline)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((id,)) = inserted {
        metrics::counter!("spotcheck_cases_opened_total", "source" => source).increment(1);
        return Ok(id);
    }
    let (id,): (Uuid,) = sqlx::query_as(
        "SELECT id FROM cases WHERE escalation_id = $1 OR complaint_id = $2 OR test_purchase_id = $3",
    )
    .bind(escalation)
    .bind(complaint)
    .bind(purchase)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

/// A case row as the rules need it, locked.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LockedCase {
    /// The case.
    pub id: Uuid,
    /// Its seller.
    pub seller_id: String,
    /// Its listing.
    pub listing_id: Option<String>,
    /// Its state, as stored.
    pub state: String,
    /// The refutation deadline.
    pub deadline: DateTime<Utc>,
    /// Who opened it.
    pub opened_by: Option<Uuid>,
    /// Who holds it for review, and until when.
    pub reviewer: Option<Uuid>,
    /// Until when the review hold lasts.
    pub review_until: Option<DateTime<Utc>>,
}

impl LockedCase {
    /// Its state.
    pub fn state(&self) -> CaseState {
        self.state.parse().unwrap_or(CaseState::Notified)
    }
}

/// Locks a case row for a transition.
pub async fn lock_case(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<LockedCase>> {
    sqlx::query_as(
        "SELECT id, seller_id, listing_id, state, deadline, opened_by, reviewer, review_until
         FROM cases WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Moves a locked case by one event, with its audit row; returns the new state.
pub async fn transition(
    conn: &mut PgConnection,
    case: &LockedCase,
    event: CaseEvent,
    actor: Option<Uuid>,
    now: DateTime<Utc>,
) -> sqlx::Result<Result<CaseState, CaseRefusal>> {
    let from = case.state();
    let to = match enforcement::apply(from, case.deadline, event) {
        Ok(to) => to,
        Err(refusal) => return Ok(Err(refusal)),
    };
    sqlx::query(
        "UPDATE cases SET state = $2, updated_at = $3,
                closed_at = CASE WHEN $2 IN ('upheld', 'enforced') THEN $3 ELSE closed_at END
         WHERE id = $1",
    )
    .bind(case.id)
    .bind(to.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    audit(
        conn,
        actor,
        &format!("case.{to}"),
        &format!("case:{}", case.id),
        Some(json!({"state": from.as_str()})),
        json!({"state": to.as_str()}),
    )
    .await?;
    metrics::counter!("spotcheck_case_transitions_total", "to" => to.as_str()).increment(1);
    Ok(Ok(to))
}

/// The ladder in force (the default until staff set one).
pub async fn ladder(conn: &mut PgConnection) -> sqlx::Result<Ladder> {
    let row: Option<(sqlx::types::Json<Ladder>,)> =
        sqlx::query_as("SELECT ladder FROM penalty_ladders ORDER BY id DESC LIMIT 1")
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(l,)| l.0).unwrap_or_default())
}

/// A penalty issued.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    /// Its id.
    pub penalty_id: Uuid,
    /// What.
    pub kind: PenaltyKind,
    /// Until when.
    pub until: Option<DateTime<Utc>>,
}

/// Enforces a `rejected` or `expired` case: a strike, the ladder's penalties
/// for it, the seller's new status and tier, one enforcement event per
/// penalty in the outbox, and the case `enforced`, all in the caller's
/// transaction. A case in any other state is left alone (an empty answer):
/// whoever comes second finds it enforced.
pub async fn enforce(
    conn: &mut PgConnection,
    case: &LockedCase,
    now: DateTime<Utc>,
) -> sqlx::Result<Vec<Issued>> {
    if !matches!(case.state(), CaseState::Rejected | CaseState::Expired) {
        return Ok(Vec::new());
    }
    let ladder = ladder(conn).await?;
    // The seller's row is locked: two cases of one seller enforced at once
    // count their strikes one after the other.
    sqlx::query("SELECT 1 FROM sellers WHERE seller_id = $1 FOR UPDATE")
        .bind(&case.seller_id)
        .execute(&mut *conn)
        .await?;
    let strikes: Vec<(DateTime<Utc>,)> =
        sqlx::query_as("SELECT at FROM strikes WHERE seller_id = $1 AND at > $2")
            .bind(&case.seller_id)
            .bind(now - Duration::days(i64::from(ladder.strikes_expire_days)))
            .fetch_all(&mut *conn)
            .await?;
    let strikes: Vec<DateTime<Utc>> = strikes.into_iter().map(|(at,)| at).collect();
    let strike = ladder.next_strike(&strikes, now);
    sqlx::query("INSERT INTO strikes (seller_id, case_id, at) VALUES ($1, $2, $3)")
        .bind(&case.seller_id)
        .bind(case.id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    let mut issued = Vec::new();
    for (kind, until) in ladder.penalties(strike, now) {
        let penalty_id = Uuid::now_v7();
        let event_id = Uuid::now_v7();
        let listing = if kind == PenaltyKind::DelistListing || kind == PenaltyKind::ReimburseBuyers
        {
            case.listing_id.clone()
        } else {
            None
        };
        sqlx::query(
            "INSERT INTO penalties (id, case_id, seller_id, listing_id, kind, until, issued_at, event_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(penalty_id)
        .bind(case.id)
        .bind(&case.seller_id)
        .bind(&listing)
        .bind(kind.as_str())
        .bind(until)
        .bind(now)
        .bind(event_id)
        .execute(&mut *conn)
        .await?;
        let event = EnforcementEvent {
            event_id,
            kind: kind.as_str().to_owned(),
            case_id: case.id,
            seller_id: case.seller_id.clone(),
            listing_id: listing,
            until,
            penalty_id: Some(penalty_id),
            lifted_kind: None,
            issued_at: now,
        };
        publish(conn, &event).await?;
        metrics::counter!("spotcheck_penalties_total", "kind" => kind.as_str()).increment(1);
        issued.push(Issued {
            penalty_id,
            kind,
            until,
        });
    }
    let has = |k: PenaltyKind| issued.iter().any(|p| p.kind == k);
    sqlx::query(
        "UPDATE sellers SET
             storefront_status = CASE WHEN $2 THEN 'closed' ELSE storefront_status END,
             deposit_status = CASE WHEN $3 THEN 'confiscated' ELSE deposit_status END,
             banned = banned OR $4,
             derived_tier = $5, updated_at = $6
         WHERE seller_id = $1",
    )
    .bind(&case.seller_id)
    .bind(has(PenaltyKind::CloseStorefront))
    .bind(has(PenaltyKind::ConfiscateDeposit))
    .bind(has(PenaltyKind::PermanentBan))
    .bind(enforcement::derived_tier(strikes.len() + 1))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    retier_listings(conn, &case.seller_id).await?;
    sqlx::query("UPDATE cases SET strike = $2 WHERE id = $1")
        .bind(case.id)
        .bind(strike as i32)
        .execute(&mut *conn)
        .await?;
    let mut enforced = case.clone();
    let _ = transition(conn, case, CaseEvent::Enforce, None, now).await?;
    enforced.state = CaseState::Enforced.as_str().to_owned();
    audit(
        conn,
        None,
        "penalties.issue",
        &format!("seller:{}", case.seller_id),
        None,
        json!({"case_id": case.id, "strike": strike,
               "penalties": issued.iter().map(|p| json!({"penalty_id": p.penalty_id,
                   "kind": p.kind.as_str(), "until": p.until})).collect::<Vec<_>>()}),
    )
    .await?;
    Ok(issued)
}

/// Writes an enforcement event to the outbox (the relay publishes it to the
/// enforcement exchange with routing key `enforcement.<kind>`).
pub async fn publish(conn: &mut PgConnection, event: &EnforcementEvent) -> sqlx::Result<()> {
    let payload = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT INTO outbox (topic, payload) VALUES ($1, $2)")
        .bind(Topic::Enforcement.as_str())
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::outbox::NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}

/// Why a penalty could not be lifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiftRefusal {
    /// No such penalty.
    NotFound,
    /// It was lifted before.
    AlreadyLifted,
}

/// Case, seller, kind, listing and when lifted, of a penalty.
type PenaltyRow = (Uuid, String, String, Option<String>, Option<DateTime<Utc>>);

/// Lifts a penalty: marks it, undoes the seller status it set, publishes a
/// `lifted` event and audits it. Returns the penalty as JSON.
pub async fn lift(
    conn: &mut PgConnection,
    penalty_id: Uuid,
    by: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> sqlx::Result<Result<Value, LiftRefusal>> {
    let row: Option<PenaltyRow> = sqlx::query_as(
        "SELECT case_id, seller_id, kind, listing_id, lifted_at FROM penalties
             WHERE id = $1 FOR UPDATE",
    )
    .bind(penalty_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((case_id, seller_id, kind, listing_id, lifted_at)) = row else {
        return Ok(Err(LiftRefusal::NotFound));
    };
    if lifted_at.is_some() {
        return Ok(Err(LiftRefusal::AlreadyLifted));
    }
    let lift_event = Uuid::now_v7();
    sqlx::query(
        "UPDATE penalties SET lifted_at = $2, lifted_by = $3, lift_reason = $4, lift_event_id = $5
         WHERE id = $1",
    )
    .bind(penalty_id)
    .bind(now)
    .bind(by)
    .bind(reason)
    .bind(lift_event)
    .execute(&mut *conn)
    .await?;
    let column = match kind.as_str() {
        "close_storefront" => Some("storefront_status = 'open'"),
        "confiscate_deposit" => Some("deposit_status = 'held'"),
        "permanent_ban" => Some("banned = false"),
        _ => None,
    };
    if let Some(set) = column {
        // Only when no other live penalty of the kind holds the seller.
        let sql = format!(
            "UPDATE sellers SET {set}, updated_at = $3 WHERE seller_id = $1
               AND NOT EXISTS (SELECT 1 FROM penalties WHERE seller_id = $1 AND kind = $2
                               AND lifted_at IS NULL)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&seller_id)
            .bind(&kind)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    publish(
        conn,
        &EnforcementEvent {
            event_id: lift_event,
            kind: "lifted".into(),
            case_id,
            seller_id: seller_id.clone(),
            listing_id: listing_id.clone(),
            until: None,
            penalty_id: Some(penalty_id),
            lifted_kind: Some(kind.clone()),
            issued_at: now,
        },
    )
    .await?;
    let penalty = json!({"penalty_id": penalty_id, "case_id": case_id, "seller_id": seller_id,
        "kind": kind, "listing_id": listing_id, "lifted_at": now, "lifted_by": by,
        "lift_reason": reason});
    audit(
        conn,
        Some(by),
        "penalty.lift",
        &format!("penalty:{penalty_id}"),
        Some(json!({"lifted": false})),
        penalty.clone(),
    )
    .await?;
    metrics::counter!("spotcheck_penalties_lifted_total", "kind" => kind).increment(1);
    Ok(Ok(penalty))
}

/// Carries the seller's effective tier to its stored listings, so the next
/// surveillance round samples them at that tier's rate.
pub async fn retier_listings(conn: &mut PgConnection, seller_id: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE listings l SET seller_risk_tier = coalesce(s.tier_override, s.derived_tier)
         FROM sellers s
         WHERE s.seller_id = $1 AND l.seller_id = $1
           AND l.seller_risk_tier <> coalesce(s.tier_override, s.derived_tier)",
    )
    .bind(seller_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The risk tier the sampler uses for each of these sellers that has a record
/// (the override, else the derived tier), and whether each is banned.
pub async fn seller_tiers(
    conn: &mut PgConnection,
    seller_ids: &[&str],
) -> sqlx::Result<Vec<(String, String, bool)>> {
    sqlx::query_as(
        "SELECT seller_id, coalesce(tier_override, derived_tier), banned FROM sellers
         WHERE seller_id = ANY($1)
           AND (tier_override IS NOT NULL OR derived_tier <> 'standard' OR banned)",
    )
    .bind(seller_ids)
    .fetch_all(conn)
    .await
}

/// One pass of the deadline sweep: every case past its deadline without a
/// refutation is expired and enforced, each in its own transaction (rows
/// locked with `SKIP LOCKED`, so any number of replicas sweep side by side);
/// a rejected or expired case not yet enforced (an earlier crash) is enforced
/// too. Then the derived tiers of sellers whose strikes aged out are lowered.
/// Returns how many cases were enforced.
pub async fn sweep(pool: &sqlx::PgPool, clock: &Clock, limit: i64) -> anyhow::Result<usize> {
    let mut done = 0;
    loop {
        let now = clock.now();
        let mut tx = pool.begin().await?;
        let due: Option<LockedCase> = sqlx::query_as(
            "SELECT id, seller_id, listing_id, state, deadline, opened_by, reviewer, review_until
             FROM cases
             WHERE (state = 'notified' AND deadline <= $1) OR state IN ('rejected', 'expired')
             ORDER BY deadline LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(mut case) = due else {
            break;
        };
        if case.state() == CaseState::Notified {
            transition(&mut tx, &case, CaseEvent::Sweep { now }, None, now)
                .await?
                .map_err(|r| anyhow::anyhow!("case {} cannot expire: {r:?}", case.id))?;
            case.state = CaseState::Expired.as_str().to_owned();
        }
        enforce(&mut tx, &case, now).await?;
        tx.commit().await?;
        done += 1;
        if done as i64 >= limit {
            break;
        }
    }
    retier(pool, clock.now()).await?;
    Ok(done)
}

/// Lowers the derived tier of sellers whose strikes aged out.
async fn retier(pool: &sqlx::PgPool, now: DateTime<Utc>) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let ladder = ladder(&mut conn).await?;
    let since = now - Duration::days(i64::from(ladder.strikes_expire_days));
    let stale: Vec<(String, i64)> = sqlx::query_as(
        "SELECT s.seller_id, (SELECT count(*) FROM strikes k WHERE k.seller_id = s.seller_id AND k.at > $1)
         FROM sellers s WHERE s.derived_tier <> 'standard'",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await?;
    for (seller, live) in stale {
        let tier = enforcement::derived_tier(live as usize);
        let changed = sqlx::query(
            "UPDATE sellers SET derived_tier = $2, updated_at = $3
             WHERE seller_id = $1 AND derived_tier <> $2",
        )
        .bind(&seller)
        .bind(tier)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        if changed.rows_affected() > 0 {
            retier_listings(&mut conn, &seller).await?;
        }
    }
    Ok(())
}

/// The enforcement figures staff stats and the gauges show: cases by state,
/// the refutation rate (cases refuted ÷ cases whose window is over), the
/// median seconds from opening to enforcement, and live penalties by kind.
pub async fn figures(pool: &sqlx::PgPool) -> sqlx::Result<Value> {
    let (figures,): (Value,) = sqlx::query_as(
        "SELECT jsonb_build_object(
           'cases_by_state', (SELECT coalesce(jsonb_object_agg(state, n), '{}'::jsonb)
                              FROM (SELECT state, count(*) AS n FROM cases GROUP BY state) s),
           'refutation_rate', (SELECT CASE WHEN count(*) = 0 THEN NULL
                                 ELSE (count(*) FILTER (WHERE r.case_id IS NOT NULL))::float8 / count(*) END
                               FROM cases c LEFT JOIN refutations r ON r.case_id = c.id
                               WHERE c.state <> 'notified'),
           'median_secs_to_enforcement', (SELECT percentile_cont(0.5) WITHIN GROUP (
                                            ORDER BY extract(epoch FROM closed_at - created_at))
                                          FROM cases WHERE state = 'enforced'),
           'penalties_by_kind', (SELECT coalesce(jsonb_object_agg(kind, n), '{}'::jsonb)
                                 FROM (SELECT kind, count(*) AS n FROM penalties
                                       WHERE lifted_at IS NULL GROUP BY kind) p))",
    )
    .fetch_one(pool)
    .await?;
    Ok(figures)
}
