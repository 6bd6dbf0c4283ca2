//! Issues and the delivery queue, black-box through the API, on every backend.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{each_backend, seed};
use letterpress_store::{BounceKind, Outcome, OutcomeKind, Store, StoreError, SubscriberStatus};

const LEASE: Duration = Duration::from_secs(60);

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn outcome(id: i64, at: DateTime<Utc>, kind: OutcomeKind) -> Outcome {
    Outcome {
        delivery_id: id,
        at,
        reply: format!("reply for {id}"),
        kind,
    }
}

#[tokio::test]
async fn issues_are_recorded_once_per_slug() {
    each_backend(|db| async move {
        let store = db.store().await;
        let a = store
            .upsert_issue("why-rust", "h1", "Why Rust")
            .await
            .unwrap();
        let b = store
            .upsert_issue("why-rust", "h2", "Changed")
            .await
            .unwrap();
        assert_eq!(a, b, "existing issue returned unchanged");
        store
            .update_issue_hash(a.id, "h2", "Changed")
            .await
            .unwrap();
        let c = store.get_issue("why-rust").await.unwrap().unwrap();
        assert_eq!(
            (c.id, c.content_hash.as_str(), c.subject.as_str()),
            (a.id, "h2", "Changed")
        );
        assert!(store.get_issue("nope").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn enqueue_audience_takes_active_subscribers_once() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 10).await;
        store
            .unsubscribe_email("user1@example.com", "t")
            .await
            .unwrap();
        store
            .record_bounce("user2@example.com", BounceKind::Hard, 1)
            .await
            .unwrap();
        store
            .create_pending(&common::email("p@example.com"), None, "form")
            .await
            .unwrap();
        assert_eq!(store.count_audience().await.unwrap(), 8);
        let issue = store.upsert_issue("one", "h", "S").await.unwrap();
        assert_eq!(store.enqueue_audience(issue.id, t0()).await.unwrap(), 8);
        assert_eq!(
            store.enqueue_audience(issue.id, t0()).await.unwrap(),
            0,
            "idempotent"
        );
        seed_more(&store).await;
        assert_eq!(
            store.enqueue_audience(issue.id, t0()).await.unwrap(),
            1,
            "only the newcomer"
        );
        let claims = store
            .claim_due("w", Some(issue.id), 100, LEASE, t0())
            .await
            .unwrap();
        assert_eq!(claims.len(), 9);
        assert!(
            claims
                .iter()
                .all(|c| c.subscriber_status == SubscriberStatus::Active)
        );
        let emails: HashSet<_> = claims.iter().map(|c| c.email.as_str()).collect();
        assert!(!emails.contains("user1@example.com") && !emails.contains("p@example.com"));
        let c = &claims[0];
        assert_eq!((c.issue_id, c.attempts, c.created_at), (issue.id, 0, t0()));
        assert_eq!(c.name.as_deref(), Some("Reader 0"));
    })
    .await;
}

async fn seed_more(store: &Store) {
    store
        .add_subscriber(
            &common::sub("late@example.com"),
            letterpress_store::UpsertMode::Normal,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn claim_due_respects_leases_due_times_and_issue_filter() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 5).await;
        let one = store.upsert_issue("one", "h", "S").await.unwrap();
        let two = store.upsert_issue("two", "h", "S").await.unwrap();
        store.enqueue_audience(one.id, t0()).await.unwrap();
        store
            .enqueue_audience(two.id, t0() + TimeDelta::minutes(10))
            .await
            .unwrap();

        // Nothing is due before its time.
        let early = t0() - TimeDelta::seconds(1);
        assert!(
            store
                .claim_due("a", None, 100, LEASE, early)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.next_due_at(None).await.unwrap(), Some(t0()));
        assert_eq!(
            store.next_due_at(Some(two.id)).await.unwrap(),
            Some(t0() + TimeDelta::minutes(10))
        );

        // The issue filter and the limit.
        let first = store
            .claim_due("a", Some(two.id), 100, LEASE, t0())
            .await
            .unwrap();
        assert!(first.is_empty(), "issue two is not due yet");
        let first = store
            .claim_due("a", Some(one.id), 3, LEASE, t0())
            .await
            .unwrap();
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|c| c.issue_id == one.id));
        // A live lease is not claimed again, by anyone.
        let rest = store.claim_due("b", None, 100, LEASE, t0()).await.unwrap();
        assert_eq!(rest.len(), 2);
        let ids: HashSet<i64> = first.iter().chain(&rest).map(|c| c.delivery_id).collect();
        assert_eq!(ids.len(), 5);
        assert!(
            store
                .claim_due("c", None, 100, LEASE, t0() + TimeDelta::seconds(59))
                .await
                .unwrap()
                .is_empty()
        );
        // An expired lease (a dead worker) is claimable again.
        let later = t0() + TimeDelta::seconds(61);
        let again = store
            .claim_due("c", Some(one.id), 100, LEASE, later)
            .await
            .unwrap();
        assert_eq!(again.len(), 5);

        // Counts: leased ones are "sending".
        let counts = store.issue_counts(None).await.unwrap();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[1].slug, "two");
        assert_eq!((counts[1].total, counts[1].queued), (5, 5));

        // Released leases are claimable at once.
        assert_eq!(store.release_leases("c").await.unwrap(), 5);
        assert_eq!(store.release_leases("c").await.unwrap(), 0);
        let hour = Duration::from_secs(3600);
        let back = store.claim_due("d", None, 100, hour, later).await.unwrap();
        assert_eq!(back.len(), 5, "issue one again; issue two is not due yet");
        let back2 = store
            .claim_due("e", None, 100, LEASE, t0() + TimeDelta::minutes(10))
            .await
            .unwrap();
        assert_eq!(back2.len(), 5);
        assert!(back2.iter().all(|c| c.issue_id == two.id));
    })
    .await;
}

/// Two workers with pools of their own claim concurrently until the queue is
/// empty: every delivery is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_never_share_a_delivery() {
    each_backend(|db| async move {
        const N: usize = 2_000;
        let store = db.store().await;
        seed(&store, N).await;
        let issue = store.upsert_issue("one", "h", "S").await.unwrap();
        // Real time here, so that issue_counts sees the leases as live.
        let now = Utc::now();
        store.enqueue_audience(issue.id, now).await.unwrap();
        let mut workers = Vec::new();
        for w in 0..3 {
            let s = db.store().await;
            workers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = s.claim_due(&format!("w{w}"), None, 37, LEASE, now).await?;
                    if got.is_empty() {
                        return Ok::<_, StoreError>(mine);
                    }
                    mine.extend(got.into_iter().map(|c| c.delivery_id));
                }
            }));
        }
        let mut all = Vec::new();
        let mut per_worker = Vec::new();
        for w in workers {
            let mine = w.await.unwrap().expect("no claim may fail");
            per_worker.push(mine.len());
            all.extend(mine);
        }
        let unique: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(all.len(), N, "{}: claimed {per_worker:?}", db.label);
        assert_eq!(
            unique.len(),
            N,
            "{}: a delivery was claimed twice",
            db.label
        );
        let counts = &store.issue_counts(Some("one")).await.unwrap()[0];
        assert_eq!((counts.sending, counts.queued), (N as u64, 0));
    })
    .await;
}

#[tokio::test]
async fn record_outcomes_moves_deliveries_and_subscribers() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 5).await;
        let issue = store.upsert_issue("one", "h", "S").await.unwrap();
        store.enqueue_audience(issue.id, t0()).await.unwrap();
        let claims = store.claim_due("w", None, 10, LEASE, t0()).await.unwrap();
        assert_eq!(claims.len(), 5);
        let by_email = |e: &str| claims.iter().find(|c| c.email == e).unwrap().delivery_id;
        // user0 had two soft bounces; a sent delivery resets the count.
        store
            .record_bounce("user0@example.com", BounceKind::Soft, 3)
            .await
            .unwrap();
        store
            .record_bounce("user0@example.com", BounceKind::Soft, 3)
            .await
            .unwrap();

        let at = t0() + TimeDelta::seconds(5);
        let retry_at = t0() + TimeDelta::minutes(5);
        store
            .record_outcomes(&[
                outcome(
                    by_email("user0@example.com"),
                    at,
                    OutcomeKind::Sent {
                        message_id: "<m0@x.org>".into(),
                    },
                ),
                outcome(
                    by_email("user1@example.com"),
                    at,
                    OutcomeKind::Deferred {
                        next_attempt_at: retry_at,
                    },
                ),
                outcome(by_email("user2@example.com"), at, OutcomeKind::Failed),
                outcome(by_email("user3@example.com"), at, OutcomeKind::Bounced),
                outcome(by_email("user4@example.com"), at, OutcomeKind::Skipped),
            ])
            .await
            .unwrap();
        let c = &store.issue_counts(Some("one")).await.unwrap()[0];
        assert_eq!(
            (
                c.total, c.queued, c.deferred, c.sending, c.sent, c.failed, c.skipped
            ),
            (5, 0, 1, 0, 1, 2, 1)
        );
        assert_eq!(
            store
                .get_subscriber("user3@example.com")
                .await
                .unwrap()
                .unwrap()
                .status,
            SubscriberStatus::Bounced
        );
        // The reset: one more soft bounce is not the third in a row.
        assert!(
            !store
                .record_bounce("user0@example.com", BounceKind::Soft, 3)
                .await
                .unwrap()
        );

        // The deferred one is due at its retry time, with its attempt counted.
        assert_eq!(
            store.next_due_at(Some(issue.id)).await.unwrap(),
            Some(retry_at)
        );
        assert!(
            store
                .claim_due("w", None, 10, LEASE, at)
                .await
                .unwrap()
                .is_empty()
        );
        let again = store
            .claim_due("w", None, 10, LEASE, retry_at)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].email.as_str(), again[0].attempts),
            ("user1@example.com", 1)
        );
        store
            .record_outcomes(&[outcome(
                again[0].delivery_id,
                retry_at,
                OutcomeKind::Deferred {
                    next_attempt_at: retry_at + TimeDelta::hours(1),
                },
            )])
            .await
            .unwrap();

        // Retry the failed ones (the bounced subscriber's too: the sender
        // skips it by its status).
        assert_eq!(store.retry_failed(issue.id, retry_at).await.unwrap(), 2);
        assert_eq!(store.retry_failed(issue.id, retry_at).await.unwrap(), 0);
        let retried = store
            .claim_due("w", None, 10, LEASE, retry_at)
            .await
            .unwrap();
        assert_eq!(retried.len(), 2);
        let bounced = retried
            .iter()
            .find(|c| c.email == "user3@example.com")
            .unwrap();
        assert_eq!(bounced.subscriber_status, SubscriberStatus::Bounced);
        store
            .record_outcomes(&[
                outcome(retried[0].delivery_id, retry_at, OutcomeKind::Skipped),
                outcome(retried[1].delivery_id, retry_at, OutcomeKind::Skipped),
            ])
            .await
            .unwrap();

        // Give up on deferred deliveries queued before the max age.
        assert_eq!(
            store
                .settle_expired(issue.id, t0(), "too old")
                .await
                .unwrap(),
            0,
            "not older"
        );
        assert_eq!(
            store
                .settle_expired(issue.id, t0() + TimeDelta::seconds(1), "gave up after 4d")
                .await
                .unwrap(),
            1
        );
        let c = &store.issue_counts(Some("one")).await.unwrap()[0];
        assert_eq!((c.deferred, c.sent, c.failed, c.skipped), (0, 1, 1, 3));
        assert_eq!(store.next_due_at(None).await.unwrap(), None, "all settled");
        assert!(store.issue_counts(Some("nope")).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn record_outcomes_keeps_every_attempt_and_ignores_unknown_deliveries() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 2).await;
        let issue = store.upsert_issue("one", "h", "S").await.unwrap();
        store.enqueue_audience(issue.id, t0()).await.unwrap();
        let claims = store.claim_due("w", None, 10, LEASE, t0()).await.unwrap();
        let (a, b) = (claims[0].delivery_id, claims[1].delivery_id);
        let at = |s| t0() + TimeDelta::seconds(s);
        // One batch: `a` deferred then sent (the same delivery twice), a
        // delivery that does not exist, and `b` failed with a reply that
        // needs escaping in JSON.
        let mut failed = outcome(b, at(3), OutcomeKind::Failed);
        failed.reply = "550 \"quoted\" \\ reply\nwith a line break".into();
        store
            .record_outcomes(&[
                outcome(
                    a,
                    at(1),
                    OutcomeKind::Deferred {
                        next_attempt_at: at(60),
                    },
                ),
                outcome(999_999, at(1), OutcomeKind::Failed),
                outcome(
                    a,
                    at(2),
                    OutcomeKind::Sent {
                        message_id: "<m@x.org>".into(),
                    },
                ),
                failed.clone(),
            ])
            .await
            .unwrap();
        let kept = store.attempts(a).await.unwrap();
        assert_eq!(
            kept.iter()
                .map(|k| (k.at, k.outcome.as_str(), k.reply.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (at(1), "deferred", format!("reply for {a}").as_str()),
                (at(2), "sent", format!("reply for {a}").as_str()),
            ]
        );
        let kept = store.attempts(b).await.unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].outcome.as_str(), &kept[0].reply),
            ("failed", &failed.reply)
        );
        assert!(store.attempts(999_999).await.unwrap().is_empty());
        let c = &store.issue_counts(Some("one")).await.unwrap()[0];
        assert_eq!((c.sent, c.failed, c.deferred, c.sending), (1, 1, 0, 0));
    })
    .await;
}

#[tokio::test]
async fn subscriber_statuses_answers_many_at_once() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 3).await;
        let id = |e: &'static str| {
            let store = store.clone();
            async move { store.get_subscriber(e).await.unwrap().unwrap().id }
        };
        let (first, second) = (id("user0@example.com").await, id("user1@example.com").await);
        store
            .unsubscribe_email("user1@example.com", "test")
            .await
            .unwrap();
        let mut got = store
            .subscriber_statuses(&[second, first, 424_242])
            .await
            .unwrap();
        got.sort_by_key(|(id, _)| *id);
        assert_eq!(
            got,
            vec![
                (first, SubscriberStatus::Active),
                (second, SubscriberStatus::Unsubscribed)
            ]
        );
        assert!(store.subscriber_statuses(&[]).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn next_due_at_waits_for_a_live_lease() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 1).await;
        let issue = store.upsert_issue("one", "h", "S").await.unwrap();
        store.enqueue_audience(issue.id, t0()).await.unwrap();
        store.claim_due("w", None, 1, LEASE, t0()).await.unwrap();
        assert_eq!(
            store.next_due_at(None).await.unwrap(),
            Some(t0() + TimeDelta::seconds(60))
        );
        assert_eq!(
            store.issue_counts(None).await.unwrap()[0].sending,
            0,
            "lease long expired in real time"
        );
    })
    .await;
}
