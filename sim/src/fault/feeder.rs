//! The marketplace feed of a fault run: the demo listings published to the
//! run's listings exchange in waves spread over the fault window, so faults
//! always meet work in flight.

use crate::feed::messages;
use anyhow::Context;
use lapin::Connection;
use spotcheck_platform::amqp::{Names, Publisher, connect, declare_topology, timed};
use spotcheck_simulation::demo::DemoListing;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::{Instant, sleep, sleep_until};

/// Attempts per batch; a retried batch may duplicate messages, which ingest tolerates.
const ATTEMPTS: u32 = 10;
/// Messages per batch of publisher confirms.
const BATCH: usize = 500;

/// Where wave `i` of `waves` starts within a window of `over`.
pub fn wave_offset(i: usize, waves: usize, over: Duration) -> Duration {
    if waves <= 1 {
        return Duration::ZERO;
    }
    over.mul_f64(i as f64 / waves as f64)
}

async fn open(url: &str, names: &Names) -> anyhow::Result<(Connection, Publisher)> {
    // Not named after the namespace: the close-amqp fault is for the apps' connections.
    let conn = connect(url, "spotcheck-sim-feed")
        .await
        .context("connecting to RabbitMQ")?;
    let channel = timed("open channel", conn.create_channel()).await?;
    declare_topology(&channel, names).await?;
    let publisher = Publisher::open(&conn).await?;
    Ok((conn, publisher))
}

/// Publishes `listings` in `waves` equal waves over `over`, adding each confirmed
/// batch to `progress`; returns how many were published.
pub async fn feed(
    url: &str,
    namespace: &str,
    listings: &[DemoListing],
    waves: usize,
    over: Duration,
    progress: &AtomicUsize,
) -> anyhow::Result<usize> {
    let names = Names::new(namespace);
    let exchange = names.listings_exchange();
    let all = messages(listings)?;
    let per_wave = all.len().div_ceil(waves.max(1)).max(1);
    let started = Instant::now();
    let mut link: Option<(Connection, Publisher)> = None;
    let mut published = 0;
    for (i, wave) in all.chunks(per_wave).enumerate() {
        sleep_until(started + wave_offset(i, waves, over)).await;
        for batch in wave.chunks(BATCH) {
            let mut attempt = 1;
            loop {
                let sent = match &link {
                    Some((_, publisher)) => publisher.publish_all(&exchange, batch).await,
                    None => match open(url, &names).await {
                        Ok(opened) => {
                            link = Some(opened);
                            continue;
                        }
                        Err(e) => Err(e),
                    },
                };
                match sent {
                    Ok(()) => break,
                    Err(e) if attempt < ATTEMPTS => {
                        eprintln!("publishing listings failed ({e:#}); retrying");
                        link = None;
                        attempt += 1;
                        sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        return Err(e.context(format!(
                            "publishing to {exchange} after {published} listings"
                        )));
                    }
                }
            }
            published += batch.len();
            progress.fetch_add(batch.len(), Ordering::Relaxed);
        }
    }
    if let Some((conn, _)) = link {
        let _ = timed("close", conn.close(200, "done".into())).await;
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_are_spread_evenly_from_the_start_of_the_window() {
        let over = Duration::from_secs(60);
        assert_eq!(wave_offset(0, 12, over), Duration::ZERO);
        assert_eq!(wave_offset(6, 12, over), Duration::from_secs(30));
        assert_eq!(wave_offset(11, 12, over), Duration::from_secs(55));
        assert_eq!(wave_offset(3, 1, over), Duration::ZERO);
    }
}
