//! The sampling frame of a transaction: per round and stratum, the listings the
//! sampler looked at, the sum of their inclusion probabilities and the tasks made.

use sqlx::PgConnection;
use std::collections::BTreeMap;

/// Sampling-frame counts gathered during one transaction, written at its end in
/// key order so concurrent transactions never lock frame rows in opposite orders.
#[derive(Debug, Default)]
pub struct FrameTally(BTreeMap<(i64, String), (i64, f64, i64)>);

impl FrameTally {
    pub(super) fn add(&mut self, round: i64, stratum: String, probability: f64, sampled: bool) {
        let entry = self.0.entry((round, stratum)).or_default();
        entry.0 += 1;
        entry.1 += probability;
        entry.2 += i64::from(sampled);
    }

    /// Adds the counts to `sampling_frames`, in one statement that takes the
    /// rows in key order.
    pub async fn flush(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let n = self.0.len();
        let (mut rounds, mut strata) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut listings, mut expected, mut tasks) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ((round, stratum), (l, e, t)) in self.0 {
            rounds.push(round);
            strata.push(stratum);
            listings.push(l);
            expected.push(e);
            tasks.push(t);
        }
        sqlx::query(
            "INSERT INTO sampling_frames (round, stratum, listings, expected_tasks, tasks)
             SELECT f.round, f.stratum, f.listings, f.expected_tasks, f.tasks
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::float8[], $5::bigint[])
                 WITH ORDINALITY AS f(round, stratum, listings, expected_tasks, tasks, n)
             ORDER BY f.n
             ON CONFLICT (round, stratum) DO UPDATE SET
                 listings = sampling_frames.listings + EXCLUDED.listings,
                 expected_tasks = sampling_frames.expected_tasks + EXCLUDED.expected_tasks,
                 tasks = sampling_frames.tasks + EXCLUDED.tasks",
        )
        .bind(rounds)
        .bind(strata)
        .bind(listings)
        .bind(expected)
        .bind(tasks)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
