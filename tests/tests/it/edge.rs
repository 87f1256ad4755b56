//! The HTTP edge: slow headers and slow bodies are cut off, connections above
//! the cap wait in the backlog while the server keeps answering the others,
//! `/metrics` is not on the public address, and the public `/readyz` names no
//! dependency.

use crate::harness::{PrivateRedis, TestEnv, wait_until};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `host:port` of the environment's worker-api.
fn api_addr(env: &TestEnv) -> String {
    env.api.trim_start_matches("http://").to_owned()
}

/// Reads one HTTP/1.1 response (headers and a `Content-Length` body) and
/// returns its status and body; `None` when the connection ends first.
async fn read_response(stream: &mut TcpStream) -> Option<(u16, String)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let body = String::from_utf8_lossy(&data[head_end..head_end + length]).into_owned();
    Some((status, body))
}

/// Whether the peer closed the connection (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: spotcheck\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_client_sending_headers_one_byte_a_second_is_cut_off_by_the_header_timeout() {
    let mut env = TestEnv::db_only().await;
    env.start_api(|c| c.edge.header_timeout_secs = 2).await;
    let stream = TcpStream::connect(api_addr(&env)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let mut sent = 0;
        for byte in HEALTHZ {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        sent
    });
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(6), reader.read(&mut buf)).await;
    let took = started.elapsed();
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the connection is closed without an answer within 6 s: {read:?}"
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "closed after {took:?}, with a 2 s header timeout"
    );
    trickle.abort();
    // Anyone else is served as usual.
    let (status, _) = env.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_is_answered_408_and_its_connection_closed() {
    let mut env = TestEnv::db_only().await;
    env.start_api(|c| c.edge.body_timeout_secs = 2).await;
    let mut stream = TcpStream::connect(api_addr(&env)).await.unwrap();
    let head = "POST /v1/auth/login HTTP/1.1\r\nHost: spotcheck\r\n\
                Content-Type: application/json\r\nContent-Length: 64\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut stream_back = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(6), async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => stream_back.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let took = started.elapsed();
    trickle.abort();
    assert!(answered.is_ok(), "the connection was closed within 6 s");
    let text = String::from_utf8_lossy(&stream_back);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_lowercase().contains("application/problem+json"),
        "{text}"
    );
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "answered after {took:?}, with a 2 s body deadline"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_above_the_cap_wait_in_the_backlog_while_the_others_are_served() {
    let mut env = TestEnv::db_only().await;
    env.start_api(|c| {
        c.edge.max_connections = 8;
        c.edge.idle_timeout_secs = 60;
    })
    .await;
    let addr = api_addr(&env);
    // The client's pooled connection from the readiness poll would hold a slot.
    env.http = reqwest::Client::new();
    // That connection may take a moment to close: fill every slot with
    // a connection that has been served once and stays kept alive.
    let mut held = Vec::new();
    while held.len() < 8 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(HEALTHZ).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(3), read_response(&mut c)).await {
            Ok(Some((200, _))) => held.push(c),
            // A slot was still taken by an earlier connection: let it go and retry.
            _ => {
                drop(c);
                env.http = reqwest::Client::new();
            }
        }
    }
    // The ninth is queued: connected by the kernel, not served.
    let mut ninth = TcpStream::connect(&addr).await.unwrap();
    ninth.write_all(HEALTHZ).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(1), read_response(&mut ninth)).await;
    assert!(
        waited.is_err(),
        "above the cap a connection is not served: {waited:?}"
    );
    // Meanwhile every connection already served is answered at once.
    for c in &mut held {
        let started = Instant::now();
        c.write_all(HEALTHZ).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(2), read_response(c)).await;
        assert!(matches!(answer, Ok(Some((200, _)))), "{answer:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    // One closes: the queued connection is accepted and answered.
    let started = Instant::now();
    drop(held.pop());
    let answer = tokio::time::timeout(Duration::from_secs(5), read_response(&mut ninth)).await;
    assert!(matches!(answer, Ok(Some((200, _)))), "{answer:?}");
    println!(
        "the queued connection was served {:?} after a slot freed",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_with_nothing_in_progress_is_closed_after_the_idle_timeout() {
    let mut env = TestEnv::db_only().await;
    env.start_api(|c| c.edge.idle_timeout_secs = 2).await;
    let mut c = TcpStream::connect(api_addr(&env)).await.unwrap();
    c.write_all(HEALTHZ).await.unwrap();
    assert!(matches!(read_response(&mut c).await, Some((200, _))));
    let started = Instant::now();
    assert!(
        closed_within(&mut c, Duration::from_secs(5)).await,
        "an idle kept-alive connection is closed"
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_served_on_the_metrics_address_only() {
    let mut env = TestEnv::db_only().await;
    env.start_api(|_| {}).await;
    let (status, problem) = env.call(reqwest::Method::GET, "/metrics", None, None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("not_found")),
        "the public address has no /metrics: {problem}"
    );
    let (_, unknown) = env
        .call(reqwest::Method::GET, "/no-such-route", None, None)
        .await;
    assert_eq!(problem, unknown, "answered like any unknown route");
    let private = format!("http://{}", env.api_ops[0]);
    let metrics = env
        .http
        .get(format!("{private}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("spotcheck_"), "Prometheus text: {text}");
    let health = env.http.get(format!("{private}/healthz")).send().await;
    assert_eq!(health.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_says_not_ready_without_naming_the_failed_dependency() {
    let mut env = TestEnv::db_only().await;
    env.redis = Some(PrivateRedis::start().await);
    env.start_api(|_| {}).await;
    let (status, body) = env.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"status": "ready"}))
    );
    // Redis goes away.
    drop(env.redis.take());
    let url = env.url("/readyz");
    let http = env.http.clone();
    wait_until("readyz answers 503", Duration::from_secs(20), || {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(&url).send().await.is_ok_and(|r| r.status() == 503) }
    })
    .await;
    let response = env.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let text = response.text().await.unwrap();
    let problem: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(problem["code"], "not_ready");
    let lower = text.to_lowercase();
    for word in [
        "postgres", "redis", "consumer", "rabbit", "amqp", "database", "sql", "true", "false",
    ] {
        assert!(
            !lower.contains(word),
            "the public answer names {word}: {text}"
        );
    }
    // The operator address says which.
    let private = format!("http://{}/readyz", env.api_ops[0]);
    let detail: serde_json::Value = env
        .http
        .get(&private)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["dependencies"]["redis"], false, "{detail}");
    assert_eq!(detail["dependencies"]["postgres"], true, "{detail}");
    let metrics = crate::harness::metrics_text(&env.http, env.api_ops[0]).await;
    assert!(
        metrics.contains("spotcheck_ready{dependency=\"redis\"}"),
        "a gauge per dependency"
    );
}
