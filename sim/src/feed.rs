//! `publish`: the demo marketplace sent to the listings exchange the way the
//! marketplace would, in confirmed batches.

use crate::cli::{AmqpArgs, PublishArgs};
use anyhow::Context;
use spotcheck_platform::amqp::{Names, Publisher, connect, declare_topology, timed};
use spotcheck_simulation::demo::{DemoListing, generate};
use std::time::Duration;

/// Attempts per batch; a retried batch may duplicate messages, which ingest tolerates.
const ATTEMPTS: u32 = 3;
/// Batches between progress lines.
const PROGRESS_EVERY_BATCHES: usize = 10;

/// The routing key and body of each listing's message.
pub fn messages(listings: &[DemoListing]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    listings
        .iter()
        .map(|d| {
            let key = format!("listing.{}", d.listing.category);
            Ok((key, serde_json::to_vec(&d.listing)?))
        })
        .collect()
}

/// Publishes `listings` to `<namespace>.listings`, after declaring the topology.
pub async fn publish(amqp: &AmqpArgs, listings: &[DemoListing]) -> anyhow::Result<()> {
    let names = Names::new(&amqp.namespace);
    let exchange = names.listings_exchange();
    let conn = connect(&amqp.url, "spotcheck-sim")
        .await
        .context("connecting to RabbitMQ")?;
    let channel = timed("open channel", conn.create_channel()).await?;
    declare_topology(&channel, &names).await?;
    let publisher = Publisher::open(&conn).await?;
    let messages = messages(listings)?;
    let mut sent = 0;
    for (i, batch) in messages.chunks(amqp.batch.max(1)).enumerate() {
        let mut attempt = 1;
        while let Err(e) = publisher.publish_all(&exchange, batch).await {
            if attempt == ATTEMPTS {
                return Err(e.context(format!("publishing to {exchange} after {sent} listings")));
            }
            eprintln!("publish batch failed ({e:#}); retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            attempt += 1;
        }
        sent += batch.len();
        if sent == messages.len() || (i + 1) % PROGRESS_EVERY_BATCHES == 0 {
            eprintln!("published {sent}/{} listings to {exchange}", messages.len());
        }
    }
    let _ = timed("close", conn.close(200, "done".into())).await;
    Ok(())
}

/// `spotcheck-sim publish`.
pub async fn run(args: &PublishArgs) -> anyhow::Result<()> {
    let listings = generate(args.market.seed, args.market.count);
    publish(&args.amqp, &listings).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_listing_is_routed_by_its_category() {
        let listings = generate(4, 10);
        let messages = messages(&listings).unwrap();
        for ((key, body), d) in messages.iter().zip(&listings) {
            assert_eq!(key, &format!("listing.{}", d.listing.category));
            let back: spotcheck_shared::Listing = serde_json::from_slice(body).unwrap();
            assert_eq!(back, d.listing);
        }
    }
}
