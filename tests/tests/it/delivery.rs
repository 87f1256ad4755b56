//! RabbitMQ faults: dropped connections and poison messages.

use crate::harness::{TestEnv, close_amqp_connections, count, import_lines, wait_until};
use reqwest::Method;
use serde_json::json;
use spotcheck_platform::amqp::{Names, Publisher};
use spotcheck_shared::Role;
use spotcheck_simulation::demo::generate;
use std::time::{Duration, Instant};

async fn started(votes: i32) -> TestEnv {
    let mut env = TestEnv::db_only().await;
    env.min_votes = votes;
    env.start_coordinator(|_| {}).await;
    env.start_api(|_| {}).await;
    let staff = env.user("staff-delivery", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    env
}

fn lines(seed: u64, n: usize) -> Vec<String> {
    generate(seed, n)
        .iter()
        .map(|d| serde_json::to_string(&d.listing).unwrap())
        .collect()
}

/// Claims and votes with every token once; returns votes accepted.
async fn one_round(env: &TestEnv, tokens: &[String]) -> usize {
    let mut votes = 0;
    for token in tokens {
        let (status, claim) = env
            .call(Method::POST, "/v1/tasks/claim", Some(token), None)
            .await;
        if status != 200 {
            continue;
        }
        let path = format!("/v1/tasks/{}/votes", claim["task_id"].as_str().unwrap());
        let body =
            json!({"lease_token": claim["lease_token"], "verdict": "genuine", "reasons": []});
        let (status, problem) = env.call(Method::POST, &path, Some(token), Some(body)).await;
        assert_eq!(status, 201, "{problem}");
        votes += 1;
    }
    votes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_rabbitmq_connections_recover_by_themselves_and_nothing_is_lost() {
    let env = started(2).await;
    import_lines(&env, &lines(31, 30)).await;
    let tokens = env.many_volunteers("amqp", 4).await;
    let mut votes = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut closed = 0;
    while count(&env.pool, "SELECT count(*) FROM tasks WHERE state = 'open'").await > 0 {
        assert!(
            Instant::now() < deadline,
            "tasks still open; {votes} votes so far"
        );
        if closed == 0 && votes >= 20 {
            closed = close_amqp_connections(&env.id);
            assert!(closed >= 2, "both apps' connections were found and closed");
            // New listings arrive while the connections are down or recovering.
            import_lines(&env, &lines(32, 10)).await;
        }
        let n = one_round(&env, &tokens).await;
        votes += n;
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(closed > 0);
    assert_eq!(votes, 80, "40 tasks x 2 votes, none lost, none extra");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM decisions").await, 40);
    assert_eq!(
        count(&env.pool, "SELECT count(*) FROM outbox").await,
        0,
        "the relay drained the outbox"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_message_on_each_queue_is_dead_lettered_and_the_consumers_keep_going() {
    let env = started(1).await;
    let names = env.names();
    let conn = spotcheck_platform::amqp::connect(&env.amqp_url(), "test-poison")
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    publisher
        .publish_all(
            &names.listings_exchange(),
            &[("listing.x".into(), b"not a listing".to_vec())],
        )
        .await
        .unwrap();
    publisher
        .publish_all("", &[(names.tasks_queue(), b"{\"v\": 1}".to_vec())])
        .await
        .unwrap();
    publisher
        .publish_all("", &[(names.votes_queue(), b"\x00\x01".to_vec())])
        .await
        .unwrap();
    // Well-formed but impossible: retried until the delivery limit dead-letters it.
    let ghost = json!({"v": 1, "task_id": uuid::Uuid::now_v7(), "vote_id": uuid::Uuid::now_v7(), "volunteer_id": uuid::Uuid::now_v7()});
    publisher
        .publish_all(
            "",
            &[(names.votes_queue(), serde_json::to_vec(&ghost).unwrap())],
        )
        .await
        .unwrap();
    let _ = conn.close(200, "done".into()).await;

    // The consumers keep going: a listing goes all the way through.
    let volunteer = env.user("vol-poison", Role::Volunteer).await;
    import_lines(&env, &lines(33, 1)).await;
    assert_eq!(one_round_until(&env, &volunteer).await, 1);
    let pool = env.pool.clone();
    wait_until("the task decided", Duration::from_secs(20), || {
        let pool = pool.clone();
        async move { count(&pool, "SELECT count(*) FROM decisions").await == 1 }
    })
    .await;

    let expected = [
        (names.ingest_queue(), 1),
        (names.tasks_queue(), 1),
        (names.votes_queue(), 2),
    ];
    for (queue, n) in expected {
        let dead = Names::dead_queue(&queue);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let depth = env.queue_depth(&dead).await;
            if depth == n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{dead} holds {depth}, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let staff = env.login("staff-delivery").await;
    let (_, stats) = env
        .call(Method::GET, "/v1/staff/stats", Some(&staff), None)
        .await;
    assert_eq!(stats["dead_lettered"]["total"], 4, "{stats}");
    assert_eq!(stats["votes_over_collected"], 0);

    // Operators see the same on the coordinator's /metrics.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = crate::harness::metrics_text(&env.http, env.coordinator_ops[0]).await;
        let dead: f64 = text
            .lines()
            .filter(|l| l.starts_with("spotcheck_dead_letter_messages{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if dead == 4.0 {
            for name in [
                "spotcheck_leases_live",
                "spotcheck_leases_expired",
                "spotcheck_votes_over_collected 0",
                "spotcheck_outbox_lag_seconds",
                "spotcheck_dead_lettered_total",
                "spotcheck_decisions_total",
            ] {
                assert!(text.contains(name), "{name} missing from /metrics");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead-letter gauge shows {dead}, expected 4"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let api_metrics = format!("http://{}/metrics", env.api_ops[0]);
    let status = env.http.get(&api_metrics).send().await.unwrap().status();
    assert_eq!(
        status, 200,
        "worker-api serves /metrics too, on its own address"
    );
}

async fn one_round_until(env: &TestEnv, token: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = one_round(env, &[token.to_owned()]).await;
        if n > 0 {
            return n;
        }
        assert!(Instant::now() < deadline, "no task became claimable");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A vote as a worker-api that stopped right after its commit leaves it: in
/// the record, counted on its task, never announced. Returns the vote's id.
async fn vote_left_unannounced(env: &TestEnv, task: uuid::Uuid, username: &str) -> uuid::Uuid {
    let volunteer = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role) VALUES ($1, $2, 'x', 'volunteer')",
    )
    .bind(volunteer)
    .bind(username)
    .execute(&env.pool)
    .await
    .unwrap();
    let vote = uuid::Uuid::now_v7();
    sqlx::query(
        "WITH v AS (INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence)
                    VALUES ($1, $2, $3, 'genuine', '[]', 1))
         UPDATE tasks SET votes_counted = votes_counted + 1 WHERE id = $2",
    )
    .bind(vote)
    .bind(task)
    .bind(volunteer)
    .execute(&env.pool)
    .await
    .unwrap();
    vote
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vote_whose_worker_api_stopped_before_announcing_it_is_announced_by_the_sweep_and_decided()
 {
    let mut env = TestEnv::db_only().await;
    env.min_votes = 1;
    env.start_coordinator(|c| {
        c.vote_sweep_ms = 200;
        c.vote_announce_grace_ms = 1_000;
    })
    .await;
    env.start_api(|_| {}).await;
    let staff = env.user("staff-sweep", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    import_lines(&env, &lines(41, 1)).await;
    let task: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tasks")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let vote = vote_left_unannounced(&env, task, "lost-announcement").await;
    wait_until(
        "the sweep announced the vote and it was decided",
        Duration::from_secs(30),
        || async { count(&env.pool, "SELECT count(*) FROM decisions").await == 1 },
    )
    .await;
    let accounted: bool =
        sqlx::query_scalar("SELECT accounted_at IS NOT NULL FROM votes WHERE id = $1")
            .bind(vote)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(accounted, "the aggregator accounted the vote");
    let state: String = sqlx::query_scalar("SELECT state FROM tasks WHERE id = $1")
        .bind(task)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_ne!(state, "open", "the task was judged");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_vote_sweep_announces_only_unaccounted_votes_past_the_grace_and_each_once() {
    use coordinator::announce::sweep;
    let mut env = TestEnv::db_only().await;
    env.min_votes = 3;
    // No coordinator: nothing relays or accounts meanwhile.
    env.start_api(|_| {}).await;
    let staff = env.user("staff-sweep2", Role::Staff).await;
    env.set_policy(&staff, json!({"default_rate": 1.0})).await;
    import_lines(&env, &lines(42, 1)).await;
    let task: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tasks")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM outbox")
        .execute(&env.pool)
        .await
        .unwrap();
    let lost = vote_left_unannounced(&env, task, "sweep-lost").await;
    let accounted = vote_left_unannounced(&env, task, "sweep-accounted").await;
    sqlx::query("UPDATE votes SET accounted_at = now() WHERE id = $1")
        .bind(accounted)
        .execute(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        sweep(&env.pool, Duration::from_secs(3600)).await.unwrap(),
        0,
        "a vote younger than the grace may still be announced by its worker-api"
    );
    assert_eq!(sweep(&env.pool, Duration::ZERO).await.unwrap(), 1);
    let payload: serde_json::Value =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE topic = 'votes'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let votes = spotcheck_shared::messages::decode_votes(payload.to_string().as_bytes()).unwrap();
    assert_eq!(votes.len(), 1, "only the unaccounted vote: {payload}");
    assert_eq!(votes[0].vote_id, lost);
    assert_eq!(votes[0].task_id.0, task);
    // The mark moved past it: the next sweep does not announce it again.
    let third = vote_left_unannounced(&env, task, "sweep-later").await;
    assert_eq!(sweep(&env.pool, Duration::ZERO).await.unwrap(), 1);
    let named: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE topic = 'votes' ORDER BY id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(named.len(), 2);
    assert_eq!(named[1]["votes"][0]["vote_id"], json!(third));
}

/// The sizes of the batches a batch consumer of `queue` hands its handler when
/// `sent` messages are published to it 30 ms apart.
async fn batches_of(env: &TestEnv, queue: String, linger: Duration, sent: usize) -> Vec<usize> {
    use coordinator::consumer::{Batching, Handled, run_batched};
    use std::sync::{Arc, Mutex};
    let conn = spotcheck_platform::amqp::connect(&env.amqp_url(), "tests")
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let cancel = tokio_util::sync::CancellationToken::new();
    let consumer = {
        let (sizes, cancel, queue) = (sizes.clone(), cancel.clone(), queue.clone());
        let conn = spotcheck_platform::amqp::connect(&env.amqp_url(), "tests")
            .await
            .unwrap();
        tokio::spawn(async move {
            let alive = std::sync::atomic::AtomicBool::new(false);
            let batching = Batching { max: 100, linger };
            let handler = |batch: Vec<lapin::message::Delivery>| {
                sizes.lock().unwrap().push(batch.len());
                async move { batch.into_iter().map(|d| (d, Handled::Ack)).collect() }
            };
            run_batched(&conn, &queue, 100, batching, cancel, &alive, handler).await
        })
    };
    for i in 0..sent {
        publisher
            .publish_all("", &[(queue.clone(), format!("{i}").into_bytes())])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    wait_until("every message handled", Duration::from_secs(10), || {
        let handled: usize = sizes.lock().unwrap().iter().sum();
        async move { handled == sent }
    })
    .await;
    cancel.cancel();
    consumer.await.unwrap().unwrap();
    sizes.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_consumer_gathers_what_arrives_within_its_linger_into_one_batch() {
    let env = TestEnv::db_only().await;
    let names = env.names();
    let conn = spotcheck_platform::amqp::connect(&env.amqp_url(), "tests")
        .await
        .unwrap();
    spotcheck_platform::amqp::declare_topology(&conn.create_channel().await.unwrap(), &names)
        .await
        .unwrap();
    // Five messages over 150 ms: one batch with a linger of 2 s.
    let lingering = batches_of(&env, names.ingest_queue(), Duration::from_secs(2), 5).await;
    assert_eq!(lingering, vec![5], "one batch within the linger");
    // Without a linger, each message is handled as it comes.
    let eager = batches_of(&env, names.votes_queue(), Duration::ZERO, 5).await;
    assert!(eager.len() > 1, "batches without a linger: {eager:?}");
    assert_eq!(env.queue_depth(&names.ingest_queue()).await, 0, "all acked");
    assert_eq!(env.queue_depth(&names.votes_queue()).await, 0, "all acked");
}
