//! Issues and the delivery queue, black-box through the API, on every backend.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{each_backend, publish, seed};
use letterpress_store::{
    BounceKind, IssueToPublish, Outcome, OutcomeKind, PublishOutcome, Store, StoreError,
    SubscriberStatus,
};

const LEASE: Duration = Duration::from_secs(60);

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

/// The outcome of delivery `id`'s first attempt (`..outcome(…)` with
/// `attempts_before` for a later one).
fn outcome(id: i64, at: DateTime<Utc>, kind: OutcomeKind) -> Outcome {
    Outcome {
        delivery_id: id,
        attempts_before: 0,
        at,
        reply: format!("reply for {id}"),
        kind,
    }
}

#[tokio::test]
async fn publishing_writes_only_over_what_the_publisher_saw() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 3).await;
        let first = IssueToPublish {
            slug: "why-rust",
            content_hash: "h1",
            subject: "Why Rust",
            body: "{\"v\":1}",
        };
        let PublishOutcome::Queued { issue_id, queued } =
            store.publish_issue(&first, None, t0()).await.unwrap()
        else {
            panic!("{}: a new slug is published", db.label)
        };
        assert_eq!(queued, 3);
        let a = store.get_issue("why-rust").await.unwrap().unwrap();
        assert_eq!((a.id, a.content_hash.as_str()), (issue_id, "h1"));
        assert_eq!(
            store.issue_body(issue_id).await.unwrap().as_deref(),
            Some("{\"v\":1}")
        );

        // Decided on "no such slug", or on another hash: nothing is written.
        let changed = IssueToPublish {
            content_hash: "h2",
            subject: "Changed",
            body: "{\"v\":2}",
            ..first
        };
        for seen in [None, Some("h0")] {
            assert_eq!(
                store.publish_issue(&changed, seen, t0()).await.unwrap(),
                PublishOutcome::Stale,
                "{}: seen {seen:?}",
                db.label
            );
        }
        assert_eq!(store.get_issue("why-rust").await.unwrap(), Some(a.clone()));

        // Decided on what is stored: the row takes the new content, and
        // only subscribers without a delivery are queued.
        assert_eq!(
            store
                .publish_issue(&changed, Some("h1"), t0())
                .await
                .unwrap(),
            PublishOutcome::Queued {
                issue_id,
                queued: 0
            }
        );
        let c = store.get_issue("why-rust").await.unwrap().unwrap();
        assert_eq!(
            (
                c.id,
                c.content_hash.as_str(),
                c.subject.as_str(),
                c.created_at
            ),
            (a.id, "h2", "Changed", a.created_at)
        );
        assert_eq!(
            store.issue_body(issue_id).await.unwrap().as_deref(),
            Some("{\"v\":2}")
        );
        assert!(store.get_issue("nope").await.unwrap().is_none());
    })
    .await;
}

/// A publish is one transaction: when queueing the audience fails (here a
/// trigger refuses every new delivery, as a full disk or a lost connection
/// would), the issue is not recorded either, so it is still "not sent" for
/// the scheduler; once the cause is gone the same publish goes through.
#[tokio::test]
async fn a_publish_whose_enqueue_fails_records_nothing() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 4).await;
        let (refuse, allow): (&[&str], &[&str]) = if db.label == "sqlite" {
            (
                &[
                    "CREATE TRIGGER refuse_deliveries BEFORE INSERT ON deliveries \
                   BEGIN SELECT RAISE(ABORT, 'no room for deliveries'); END",
                ],
                &["DROP TRIGGER refuse_deliveries"],
            )
        } else {
            (
                &[
                    "CREATE FUNCTION refuse_deliveries() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'no room for deliveries'; END $$",
                    "CREATE TRIGGER refuse_deliveries BEFORE INSERT ON deliveries \
                     FOR EACH STATEMENT EXECUTE FUNCTION refuse_deliveries()",
                ],
                &["DROP TRIGGER refuse_deliveries ON deliveries"],
            )
        };
        common::execute(&db, refuse).await;
        let issue = IssueToPublish {
            slug: "scheduled",
            content_hash: "h",
            subject: "S",
            body: "{}",
        };
        let err = store
            .publish_issue(&issue, None, t0())
            .await
            .expect_err("the enqueue is refused");
        assert!(
            err.to_string().contains("no room for deliveries"),
            "{}: {err}",
            db.label
        );
        assert_eq!(
            store.get_issue("scheduled").await.unwrap(),
            None,
            "{}",
            db.label
        );
        assert!(store.issue_counts(None).await.unwrap().is_empty());

        common::execute(&db, allow).await;
        assert!(matches!(
            store.publish_issue(&issue, None, t0()).await.unwrap(),
            PublishOutcome::Queued { queued: 4, .. }
        ));
        assert_eq!(
            store.issue_counts(Some("scheduled")).await.unwrap()[0].queued,
            4
        );
    })
    .await;
}

#[tokio::test]
async fn publishing_queues_active_subscribers_once() {
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
        common::signup(&store, &common::email("p@example.com"), None).await;
        assert_eq!(store.count_audience().await.unwrap(), 8);
        let issue = publish(&store, "one", t0()).await;
        assert_eq!(issue.queued, 8);
        assert_eq!(publish(&store, "one", t0()).await.queued, 0, "idempotent");
        seed_more(&store).await;
        assert_eq!(
            publish(&store, "one", t0()).await.queued,
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
        let one = publish(&store, "one", t0()).await;
        let two = publish(&store, "two", t0() + TimeDelta::minutes(10)).await;

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
        // Real time here, so that issue_counts sees the leases as live.
        let now = Utc::now();
        publish(&store, "one", now).await;
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
        let issue = publish(&store, "one", t0()).await;
        let claims = store.claim_due("w", None, 10, LEASE, t0()).await.unwrap();
        assert_eq!(claims.len(), 5);
        let by_email = |e: &str| claims.iter().find(|c| c.email == e).unwrap().delivery_id;
        // user0 had two soft bounces before anything was sent to it; from
        // its first sent delivery on, the run is counted over deliveries.
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
                        relay_id: Some("Q0".into()),
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
        // One more soft bounce (about that delivery) is not the third in a
        // row: one sent delivery has bounced, not three.
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
            .record_outcomes(&[Outcome {
                attempts_before: again[0].attempts,
                ..outcome(
                    again[0].delivery_id,
                    retry_at,
                    OutcomeKind::Deferred {
                        next_attempt_at: retry_at + TimeDelta::hours(1),
                    },
                )
            }])
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
            .record_outcomes(
                &retried
                    .iter()
                    .map(|c| Outcome {
                        attempts_before: c.attempts,
                        ..outcome(c.delivery_id, retry_at, OutcomeKind::Skipped)
                    })
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();

        // The sender gives up on the deferred one (too old): it fails.
        let last = store
            .claim_due("w", None, 10, LEASE, retry_at + TimeDelta::hours(1))
            .await
            .unwrap();
        assert_eq!(last.len(), 1);
        store
            .record_outcomes(&[Outcome {
                attempts_before: last[0].attempts,
                ..outcome(
                    last[0].delivery_id,
                    retry_at + TimeDelta::hours(1),
                    OutcomeKind::Failed,
                )
            }])
            .await
            .unwrap();
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
        let (a, b) = two_claimed(&store).await;
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
                Outcome {
                    attempts_before: 1,
                    ..outcome(
                        a,
                        at(2),
                        OutcomeKind::Sent {
                            message_id: "<m@x.org>".into(),
                            relay_id: None,
                        },
                    )
                },
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

/// A batch written twice, as a worker writes it again when the connection
/// went down with the reply to its commit, and an outcome that arrives
/// after a later attempt's: neither counts an attempt twice nor undoes a
/// later one (a deferral written over a sent delivery would send it again).
#[tokio::test]
async fn an_outcome_applies_once_to_the_attempt_it_was_claimed_for() {
    each_backend(|db| async move {
        let store = db.store().await;
        let (a, b) = two_claimed(&store).await;
        let at = |s| t0() + TimeDelta::seconds(s);
        let first = [
            outcome(
                a,
                at(1),
                OutcomeKind::Deferred {
                    next_attempt_at: at(10),
                },
            ),
            outcome(b, at(1), OutcomeKind::Bounced),
        ];
        store.record_outcomes(&first).await.unwrap();
        store.record_outcomes(&first).await.unwrap();
        assert_eq!(store.attempts(a).await.unwrap().len(), 1);
        assert_eq!(store.attempts(b).await.unwrap().len(), 1);

        let again = store.claim_due("w", None, 10, LEASE, at(10)).await.unwrap();
        assert_eq!(
            (again.len(), again[0].delivery_id, again[0].attempts),
            (1, a, 1),
            "claimed for its second attempt, counted once"
        );
        store
            .record_outcomes(&[Outcome {
                attempts_before: again[0].attempts,
                ..outcome(
                    a,
                    at(11),
                    OutcomeKind::Sent {
                        message_id: "<m@x.org>".into(),
                        relay_id: None,
                    },
                )
            }])
            .await
            .unwrap();
        // The first batch once more, late.
        store.record_outcomes(&first).await.unwrap();
        let kept: Vec<String> = store
            .attempts(a)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.outcome)
            .collect();
        assert_eq!(kept, ["deferred", "sent"]);
        let c = &store.issue_counts(Some("one")).await.unwrap()[0];
        assert_eq!((c.sent, c.failed, c.deferred, c.queued), (1, 1, 0, 0));
        assert!(
            store
                .claim_due("w", None, 10, LEASE, at(3600))
                .await
                .unwrap()
                .is_empty(),
            "nothing is due again"
        );
    })
    .await;
}

/// Two subscribers, issue "one" published to them, and their deliveries
/// claimed for a first attempt at `t0`: the two delivery ids.
async fn two_claimed(store: &Store) -> (i64, i64) {
    seed(store, 2).await;
    publish(store, "one", t0()).await;
    let claims = store.claim_due("w", None, 10, LEASE, t0()).await.unwrap();
    (claims[0].delivery_id, claims[1].delivery_id)
}

/// The id of the subscriber with address `email`, who must exist.
async fn subscriber_id(store: &Store, email: &str) -> i64 {
    store.get_subscriber(email).await.unwrap().unwrap().id
}

#[tokio::test]
async fn subscriber_statuses_answers_many_at_once() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 3).await;
        let id = |e: &'static str| subscriber_id(&store, e);
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

/// Statuses in id order, as the tests compare them (a query returns rows in
/// any order).
fn sorted(mut rows: Vec<(i64, SubscriberStatus)>) -> Vec<(i64, SubscriberStatus)> {
    rows.sort_by_key(|(id, _)| *id);
    rows
}

/// The status gate's reader (on SQLite a connection of its own) sees what
/// another connection commits after the reader was made, as the HTTP
/// server's unsubscribes come from another process: every answer is read
/// afresh, nothing is kept from one lookup to the next.
#[tokio::test]
async fn status_reader_sees_changes_committed_elsewhere() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 3).await;
        let id = |e: &'static str| subscriber_id(&store, e);
        let (a, b, c) = (
            id("user0@example.com").await,
            id("user1@example.com").await,
            id("user2@example.com").await,
        );
        let reader = store.status_reader();
        let read = sorted(reader.statuses(&[c, a, b, 424_242]).await.unwrap());
        assert_eq!(
            read,
            vec![
                (a, SubscriberStatus::Active),
                (b, SubscriberStatus::Active),
                (c, SubscriberStatus::Active)
            ],
            "{}",
            db.label
        );
        // On SQLite its own connection, read on the caller's thread, not
        // the pool's (which would also answer right, only dearer).
        assert_eq!(reader.reads_inline(), db.label == "sqlite");

        // Another store: its own pool and connections, like `serve`.
        let other = db.store().await.with_suppression_keys(b"k", &[]);
        other
            .unsubscribe_email("user1@example.com", "test")
            .await
            .unwrap();
        assert!(other.forget("user2@example.com").await.unwrap());
        let read = sorted(reader.statuses(&[a, b, c]).await.unwrap());
        assert_eq!(
            read,
            vec![
                (a, SubscriberStatus::Active),
                (b, SubscriberStatus::Unsubscribed)
            ],
            "{}: the unsubscribe and the forgotten row are seen",
            db.label
        );
        assert!(reader.statuses(&[]).await.unwrap().is_empty());
    })
    .await;
}

/// On PostgreSQL the reader keeps a connection of its own. When the server
/// ends it (a restart, an operator's `pg_terminate_backend`) the next lookup
/// still answers, on a fresh connection, and reads what changed meanwhile:
/// a dropped connection must not defer the messages waiting at the gate.
#[tokio::test]
async fn status_reader_rides_out_the_end_of_its_postgres_connection() {
    let Some(pg) = letterpress_testkit::PgDb::create().await else {
        return;
    };
    let store = Store::connect(&pg.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    seed(&store, 2).await;
    let (a, b) = (
        subscriber_id(&store, "user0@example.com").await,
        subscriber_id(&store, "user1@example.com").await,
    );
    let reader = store.status_reader();
    let active = vec![(a, SubscriberStatus::Active), (b, SubscriberStatus::Active)];
    assert_eq!(sorted(reader.statuses(&[a, b]).await.unwrap()), active);

    let end = || {
        letterpress_testkit::sql::terminate_backends(
            &pg.url,
            letterpress_store::STATUS_READER_APPLICATION,
        )
    };
    assert_eq!(
        end().await,
        1,
        "the reader reads on one connection of its own"
    );
    store
        .unsubscribe_email("user1@example.com", "test")
        .await
        .unwrap();
    assert_eq!(
        sorted(reader.statuses(&[a, b]).await.unwrap()),
        vec![
            (a, SubscriberStatus::Active),
            (b, SubscriberStatus::Unsubscribed)
        ],
        "answered on a fresh connection, with the unsubscribe made meanwhile"
    );
    assert_eq!(end().await, 1, "the fresh connection, named as the first");
    assert_eq!(
        reader.statuses(&[a]).await.unwrap(),
        vec![(a, SubscriberStatus::Active)]
    );
}

#[tokio::test]
async fn next_due_at_waits_for_a_live_lease() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 1).await;
        publish(&store, "one", t0()).await;
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
