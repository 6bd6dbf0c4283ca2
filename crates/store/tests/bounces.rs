//! Bounce events reported after acceptance: correlation, the suppression
//! rules, idempotency and the per-issue counts, on every backend.

mod common;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::{each_backend, publish, seed};
use letterpress_store::{
    BounceEvent, BounceKind, BounceOutcome, Correlation, IssueBounces, Outcome, OutcomeKind, Store,
    SubscriberStatus,
};

const LEASE: Duration = Duration::from_secs(60);

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn event(find: Correlation, kind: BounceKind, id: &str) -> BounceEvent {
    BounceEvent {
        find,
        kind,
        reason: Some(format!("{} reason {}", kind.as_str(), "x".repeat(2000))),
        status: Some("5.1.1".into()),
        occurred_at: t0(),
        source: "test",
        event_id: id.into(),
    }
}

/// Publishes `slug` at `at` and records every delivery of it as sent, with
/// Message-ID `<{slug}-{email}>` and relay id `{slug}-R-{email}`. Returns
/// (email, delivery id) pairs.
async fn send_issue(store: &Store, slug: &str, at: DateTime<Utc>) -> Vec<(String, i64)> {
    let issue = publish(store, slug, at).await;
    let claims = store
        .claim_due("w", Some(issue.id), 100, LEASE, at)
        .await
        .unwrap();
    let outcomes: Vec<Outcome> = claims
        .iter()
        .map(|c| Outcome {
            delivery_id: c.delivery_id,
            attempts_before: c.attempts,
            at,
            reply: "250 2.0.0 Ok".into(),
            kind: OutcomeKind::Sent {
                message_id: format!("<{slug}-{}>", c.email),
                relay_id: Some(format!("{slug}-R-{}", c.email)),
            },
        })
        .collect();
    store.record_outcomes(&outcomes).await.unwrap();
    claims
        .into_iter()
        .map(|c| (c.email, c.delivery_id))
        .collect()
}

async fn status(store: &Store, email: &str) -> SubscriberStatus {
    store.get_subscriber(email).await.unwrap().unwrap().status
}

#[tokio::test]
async fn events_are_traced_to_their_delivery_and_suppress_at_once() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 5).await;
        let sent = send_issue(&store, "one", t0()).await;
        let id_of = |e: &str| sent.iter().find(|(m, _)| m == e).unwrap().1;

        // Message-ID without its angle brackets.
        let hard = event(
            Correlation::MessageId("one-user0@example.com".into()),
            BounceKind::Hard,
            "e-hard",
        );
        let got = store.record_bounce_event(&hard, 3).await.unwrap();
        assert_eq!(
            got,
            BounceOutcome {
                duplicate: false,
                delivery_id: Some(id_of("user0@example.com")),
                subscriber_found: true,
                suppressed: true,
            },
            "{}",
            db.label
        );
        assert_eq!(
            status(&store, "user0@example.com").await,
            SubscriberStatus::Bounced
        );

        let complaint = event(
            Correlation::RelayId("one-R-user1@example.com".into()),
            BounceKind::Complaint,
            "e-complaint",
        );
        let got = store.record_bounce_event(&complaint, 3).await.unwrap();
        assert_eq!(got.delivery_id, Some(id_of("user1@example.com")));
        assert_eq!(
            status(&store, "user1@example.com").await,
            SubscriberStatus::Complained
        );

        let unsubscribe = event(
            Correlation::Delivery(id_of("user2@example.com")),
            BounceKind::UnsubscribeRequest,
            "e-unsub",
        );
        assert!(
            store
                .record_bounce_event(&unsubscribe, 3)
                .await
                .unwrap()
                .suppressed
        );
        assert_eq!(
            status(&store, "user2@example.com").await,
            SubscriberStatus::Unsubscribed
        );

        // Only an address, in another letter case: the latest sent delivery.
        let by_address = event(
            Correlation::Address("USER3@example.com".into()),
            BounceKind::Hard,
            "e-address",
        );
        let got = store.record_bounce_event(&by_address, 3).await.unwrap();
        assert_eq!(got.delivery_id, Some(id_of("user3@example.com")));
        assert_eq!(
            status(&store, "user3@example.com").await,
            SubscriberStatus::Bounced
        );

        // The same event again (a provider's retry): nothing changes, and
        // the answer still says what it was about.
        let again = store.record_bounce_event(&hard, 3).await.unwrap();
        assert!(again.duplicate);
        assert_eq!(again.delivery_id, Some(id_of("user0@example.com")));
        assert_eq!(
            store
                .delivery_bounces(id_of("user0@example.com"))
                .await
                .unwrap(),
            vec![(BounceKind::Hard, Some("5.1.1".into()), "test".into())]
        );

        // Mail we did not send: kept (so it is not processed again), traced
        // to nothing, and nobody is touched.
        for find in [
            Correlation::MessageId("<stranger@elsewhere>".into()),
            Correlation::RelayId("nope".into()),
            Correlation::Delivery(999_999),
            Correlation::Address("nobody@example.com".into()),
        ] {
            let got = store
                .record_bounce_event(
                    &event(find.clone(), BounceKind::Hard, &format!("{find:?}")),
                    3,
                )
                .await
                .unwrap();
            assert_eq!(got, BounceOutcome::default(), "{find:?}");
        }
        assert_eq!(
            status(&store, "user4@example.com").await,
            SubscriberStatus::Active
        );

        assert_eq!(
            store.issue_bounces(Some("one")).await.unwrap(),
            vec![IssueBounces {
                slug: "one".into(),
                bounced_after_acceptance: 2,
                complaints: 1,
                unsubscribe_requests: 1,
            }]
        );
        let counts = store.bounce_event_counts().await.unwrap();
        let hard_count = counts
            .iter()
            .find(|(s, k, _)| s == "test" && *k == BounceKind::Hard)
            .map(|c| c.2);
        // Two traced, four about nothing of ours; the duplicate not at all.
        assert_eq!(hard_count, Some(6), "{counts:?}");

        // Forgetting the subscriber blanks the reasons, which quote addresses.
        let store = store.with_suppression_keys(b"k", &[]);
        store.forget("user0@example.com").await.unwrap();
        let again = store.record_bounce_event(&hard, 3).await.unwrap();
        assert!(again.duplicate && !again.subscriber_found);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn soft_bounces_suppress_after_the_limit_of_sent_deliveries() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 2).await;
        let mut issues = Vec::new();
        for (n, slug) in ["one", "two", "three"].into_iter().enumerate() {
            let at = t0() + TimeDelta::hours(n as i64);
            issues.push(send_issue(&store, slug, at).await);
        }
        let soft = |slug: &str, email: &str, id: &str| {
            event(
                Correlation::MessageId(format!("<{slug}-{email}>")),
                BounceKind::Soft,
                id,
            )
        };
        let u0 = "user0@example.com";
        let u1 = "user1@example.com";
        // user0: every one of the last three accepted messages bounced
        // softly later (each accepted with 250 first, as a relay does).
        for (slug, id) in [("one", "a"), ("two", "b")] {
            let got = store
                .record_bounce_event(&soft(slug, u0, id), 3)
                .await
                .unwrap();
            assert!(!got.suppressed, "{}: {slug}", db.label);
        }
        // Replays and a second report about the same message add nothing.
        for _ in 0..3 {
            assert!(
                store
                    .record_bounce_event(&soft("two", u0, "b"), 3)
                    .await
                    .unwrap()
                    .duplicate
            );
        }
        store
            .record_bounce_event(&soft("two", u0, "b2"), 3)
            .await
            .unwrap();
        assert_eq!(status(&store, u0).await, SubscriberStatus::Active);
        let got = store
            .record_bounce_event(&soft("three", u0, "c"), 3)
            .await
            .unwrap();
        assert!(got.suppressed, "{}", db.label);
        assert_eq!(status(&store, u0).await, SubscriberStatus::Bounced);

        // user1: issue two arrived (no report), which breaks the run.
        for (slug, id) in [("one", "d"), ("three", "e")] {
            store
                .record_bounce_event(&soft(slug, u1, id), 3)
                .await
                .unwrap();
        }
        assert_eq!(status(&store, u1).await, SubscriberStatus::Active);
        // With a limit of 2, the last two (two, three) must both have bounced.
        store
            .record_bounce_event(&soft("three", u1, "f"), 2)
            .await
            .unwrap();
        assert_eq!(status(&store, u1).await, SubscriberStatus::Active);
        store
            .record_bounce_event(&soft("two", u1, "g"), 2)
            .await
            .unwrap();
        assert_eq!(status(&store, u1).await, SubscriberStatus::Bounced);
        store.close().await;
    })
    .await;
}
