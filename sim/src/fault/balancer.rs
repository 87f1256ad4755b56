//! A small TCP load balancer: one loopback address in front of the worker-api
//! replicas, as a Kubernetes Service puts one in front of pods. Each new
//! connection goes to the next replica that accepts it; a killed replica's
//! connections break, and the clients' next connections go to the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long a replica may take to accept before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the balancer did, for the report.
#[derive(Debug, Default)]
pub struct BalancerStats {
    /// Connections proxied, by replica index.
    pub per_backend: Vec<AtomicU64>,
    /// Connections no replica accepted (closed at once).
    pub refused: AtomicU64,
}

impl BalancerStats {
    /// Connections proxied to each replica.
    pub fn counts(&self) -> Vec<u64> {
        self.per_backend
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// A running balancer.
pub struct Balancer {
    /// The one address clients use.
    pub addr: SocketAddr,
    /// What it did.
    pub stats: Arc<BalancerStats>,
}

/// Binds a loopback port and balances connections over `backends` until `stop`.
pub async fn start(backends: Vec<SocketAddr>, stop: CancellationToken) -> anyhow::Result<Balancer> {
    anyhow::ensure!(!backends.is_empty(), "a balancer needs a backend");
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(BalancerStats {
        per_backend: backends.iter().map(|_| AtomicU64::new(0)).collect(),
        refused: AtomicU64::new(0),
    });
    let next = Arc::new(AtomicUsize::new(0));
    let (backends, shared) = (Arc::new(backends), stats.clone());
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((client, _)) = accepted else { continue };
            let start = next.fetch_add(1, Ordering::Relaxed);
            let (backends, stats, stop) = (backends.clone(), shared.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = proxy(client, &backends, start, &stats) => {}
                }
            });
        }
    });
    Ok(Balancer { addr, stats })
}

/// Connects `client` to the first replica from `start` on that accepts, and
/// copies both ways until either side closes.
async fn proxy(
    mut client: TcpStream,
    backends: &[SocketAddr],
    start: usize,
    stats: &BalancerStats,
) {
    let _ = client.set_nodelay(true);
    for i in 0..backends.len() {
        let at = (start + i) % backends.len();
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backends[at])).await;
        let Ok(Ok(mut backend)) = connected else {
            continue;
        };
        let _ = backend.set_nodelay(true);
        stats.per_backend[at].fetch_add(1, Ordering::Relaxed);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        return;
    }
    stats.refused.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend that answers every connection with its own name.
    async fn named_backend(name: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(name.as_bytes()).await;
            }
        });
        addr
    }

    async fn ask(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn connections_take_turns_and_skip_a_replica_that_is_down() {
        let a = named_backend("a").await;
        let b = named_backend("b").await;
        // A port nobody listens on: a killed replica.
        let dead = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let stop = CancellationToken::new();
        let balancer = start(vec![a, dead, b], stop.clone()).await.unwrap();
        let mut answers = Vec::new();
        for _ in 0..6 {
            answers.push(ask(balancer.addr).await);
        }
        assert_eq!(
            answers.iter().filter(|a| *a == "a").count(),
            2,
            "{answers:?}"
        );
        assert_eq!(
            answers.iter().filter(|a| *a == "b").count(),
            4,
            "{answers:?}"
        );
        assert_eq!(balancer.stats.counts(), vec![2, 0, 4]);
        stop.cancel();
    }
}
