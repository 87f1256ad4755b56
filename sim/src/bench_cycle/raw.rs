//! `raw`: the limits of the stack's own services in the same run, without
//! Spotcheck: RabbitMQ publish with confirms (slot-offer-sized messages to a
//! scratch quorum queue, batched as the relay batches: bench-sampler's raw
//! baseline), and Redis round trips (PING) from a few concurrent connections.

use super::Bench;
use super::report::Unit;
use super::tally::micros;
use crate::bench_sampler::phases::{offer_like_messages, raw_publish};
use crate::bench_sampler::scratch::Scratch;
use crate::stats::LatencySummary;
use anyhow::Context;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use spotcheck_platform::amqp::timed;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Messages per confirmed batch (the relay's `SPOTCHECK_RELAY_BATCH` default).
const BATCH: usize = 500;

/// Publishes the raw baseline; returns messages a second.
async fn amqp_confirms(bench: &Bench<'_>) -> anyhow::Result<f64> {
    let queue = bench.stack.raw_queue();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    timed(
        "declare the raw baseline queue",
        bench
            .channel
            .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args),
    )
    .await?;
    let messages = offer_like_messages(&queue, bench.args.raw_messages)?;
    let took = raw_publish(&bench.publisher, &messages, BATCH).await?;
    let queued = Scratch::depth(&bench.channel, &queue).await?;
    anyhow::ensure!(
        queued >= bench.args.raw_messages,
        "{queue} holds {queued} of {} messages",
        bench.args.raw_messages
    );
    Ok(bench.args.raw_messages as f64 / took.as_secs_f64())
}

/// PINGs from `connections` connections for `length`; returns latencies (µs) and the elapsed time.
async fn redis_pings(url: &str, connections: usize, length: Duration) -> anyhow::Result<Vec<u64>> {
    let client = redis::Client::open(url).context("parsing the Redis address")?;
    let end = Instant::now() + length;
    let mut pingers = JoinSet::new();
    for _ in 0..connections {
        let client = client.clone();
        pingers.spawn(async move {
            let mut conn = client.get_multiplexed_async_connection().await?;
            let mut us = Vec::new();
            while Instant::now() < end {
                let sent = Instant::now();
                redis::cmd("PING").query_async::<String>(&mut conn).await?;
                us.push(micros(sent.elapsed()));
            }
            Ok::<_, redis::RedisError>(us)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = pingers.join_next().await {
        all.extend(
            joined
                .context("a PING task failed")?
                .context("Redis PING")?,
        );
    }
    Ok(all)
}

/// `raw`: both baselines.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let args = bench.args;
    super::prefill::settle(bench).await?;
    let confirms = amqp_confirms(bench).await;
    let length = Duration::from_secs(args.raw_secs.max(1));
    let pings = redis_pings(&bench.stack.redis_url, args.redis_connections, length).await;
    let r = &mut *bench.report;
    let confirms = match confirms {
        Ok(rate) => Some(rate),
        Err(e) => {
            r.warn(format!("raw: RabbitMQ publish with confirms failed: {e:#}"));
            None
        }
    };
    let (ops, summary) = match pings {
        Ok(mut us) => {
            let ops = us.len() as f64 / length.as_secs_f64();
            (Some(ops), LatencySummary::from_micros(&mut us))
        }
        Err(e) => {
            r.warn(format!("raw: Redis PING failed: {e:#}"));
            (None, None)
        }
    };
    eprintln!(
        "bench-cycle: raw: RabbitMQ confirms {:.0} msg/s; Redis PING {:.0} ops/s, p50 {:.3} ms",
        confirms.unwrap_or(f64::NAN),
        ops.unwrap_or(f64::NAN),
        summary.as_ref().map_or(f64::NAN, |s| s.p50_ms)
    );
    r.add(
        "raw.amqp_confirms_per_sec",
        &format!("raw: RabbitMQ publish with confirms (batches of {BATCH})"),
        Unit::PerSec,
        confirms,
        None,
    );
    r.add(
        "raw.redis_ops_per_sec",
        &format!("raw: Redis PING ({} connections)", args.redis_connections),
        Unit::PerSec,
        ops,
        None,
    );
    r.add(
        "raw.redis_ping_p50_ms",
        "raw: Redis PING p50",
        Unit::Ms,
        summary.as_ref().map(|s| s.p50_ms),
        None,
    );
    r.detail(
        "raw",
        json!({
            "amqp_messages": args.raw_messages, "amqp_batch": BATCH,
            "redis_connections": args.redis_connections, "redis_ping_ms": summary,
        }),
    );
    Ok(())
}
