//! Subscriber behaviour, black-box through the API, on every backend.

mod common;

use common::{each_backend, email, generated, seed, sub};
use futures_util::TryStreamExt;
use letterpress_store::{
    AddOutcome, Backend, BounceKind, ConfirmOutcome, ImportRow, NewSubscriber, PendingOutcome,
    RowBinding, Signup, SignupLimits, Store, StoreError, SubscriberName, SubscriberStatus,
    TokenUnsubscribe, UpsertMode,
};
use serde_json::json;

const KEY: &[u8] = b"test suppression key";
/// The key after a rotation.
const NEW_KEY: &[u8] = b"rotated test suppression key";

#[tokio::test]
async fn migrations_are_idempotent_and_backend_is_reported() {
    each_backend(|db| async move {
        let store = db.store().await;
        store.migrate().await.expect("second migrate");
        let again = db.store().await; // a second process migrating too
        again.migrate().await.unwrap();
        store.ping().await.unwrap();
        let expected = if db.label == "sqlite" {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        assert_eq!(store.backend(), expected);
        store.close().await;
        again.close().await;
    })
    .await;
}

#[tokio::test]
async fn unsupported_url_is_an_error() {
    let err = Store::connect("mysql://bob:secret@localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)));
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn add_update_unchanged_suppressed() {
    each_backend(|db| async move {
        let store = db.store().await;
        let mut new = sub("ann@example.com");
        let id = match store
            .add_subscriber(&new, UpsertMode::Normal)
            .await
            .unwrap()
        {
            AddOutcome::Added(id) => id,
            other => panic!("{}: {other:?}", db.label),
        };
        assert_eq!(
            store
                .add_subscriber(&new, UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Unchanged(id)
        );
        new.name = SubscriberName::parse("Ann").unwrap();
        new.tags = vec!["rust".into()];
        new.attributes.insert("city".into(), json!("Oslo"));
        assert_eq!(
            store
                .add_subscriber(&new, UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Updated(id)
        );
        // Absent name, tags and attributes keep what is stored.
        assert_eq!(
            store
                .add_subscriber(&sub("ANN@example.com"), UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Unchanged(id)
        );
        let got = store
            .get_subscriber("ann@EXAMPLE.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.name.as_deref(), Some("Ann"));
        assert_eq!(got.tags, vec!["rust".to_string()]);
        assert_eq!(got.attributes["city"], json!("Oslo"));
        assert_eq!(got.status, SubscriberStatus::Active);
        assert!(got.confirmed_at.is_some());

        assert!(
            store
                .unsubscribe_email("ann@example.com", "link")
                .await
                .unwrap()
        );
        assert!(
            !store
                .unsubscribe_email("ann@example.com", "link")
                .await
                .unwrap(),
            "idempotent"
        );
        new.name = SubscriberName::parse("Someone else").unwrap();
        assert_eq!(
            store
                .add_subscriber(&new, UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Suppressed(Some(id))
        );
        let got = store.get_subscriber_by_id(id).await.unwrap().unwrap();
        assert_eq!(got.status, SubscriberStatus::Unsubscribed);
        assert_eq!(got.name.as_deref(), Some("Ann"), "suppressed row untouched");
        assert!(got.unsubscribed_at.is_some());
    })
    .await;
}

#[tokio::test]
async fn resubscribe_lifts_suppression() {
    each_backend(|db| async move {
        let store = db.store().await;
        let AddOutcome::Added(id) = store
            .add_subscriber(&sub("bo@example.com"), UpsertMode::Normal)
            .await
            .unwrap()
        else {
            panic!()
        };
        assert!(
            store
                .record_bounce("bo@example.com", BounceKind::Hard, 3)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .add_subscriber(&sub("bo@example.com"), UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Suppressed(Some(id))
        );
        assert_eq!(
            store
                .add_subscriber(&sub("bo@example.com"), UpsertMode::Resubscribe)
                .await
                .unwrap(),
            AddOutcome::Updated(id)
        );
        let got = store.get_subscriber_by_id(id).await.unwrap().unwrap();
        assert_eq!(got.status, SubscriberStatus::Active);
        assert_eq!(got.unsubscribed_at, None);

        // Import with --resubscribe as well.
        store
            .unsubscribe_email("bo@example.com", "test")
            .await
            .unwrap();
        let rows = vec![ImportRow {
            line: 2,
            result: Ok(sub("Bo@Example.com")),
        }];
        let s = store
            .import(rows.clone().into_iter(), UpsertMode::Normal, false)
            .await
            .unwrap();
        assert_eq!(s.suppressed, 1);
        let s = store
            .import(rows.into_iter(), UpsertMode::Resubscribe, false)
            .await
            .unwrap();
        assert_eq!(s.updated, 1);
        assert_eq!(
            store
                .get_subscriber_by_id(id)
                .await
                .unwrap()
                .unwrap()
                .status,
            SubscriberStatus::Active
        );
    })
    .await;
}

#[tokio::test]
async fn forget_erases_and_keeps_the_address_suppressed() {
    each_backend(|db| async move {
        let store = db.store().await.with_suppression_keys(KEY, &[]);
        let mut new = sub("Gone@Example.com");
        new.name = SubscriberName::parse("Private Person").unwrap();
        let AddOutcome::Added(id) = store
            .add_subscriber(&new, UpsertMode::Normal)
            .await
            .unwrap()
        else {
            panic!()
        };
        seed(&store, 3).await;
        let issue = common::publish(&store, "one", chrono::Utc::now()).await;
        assert_eq!(issue.queued, 4);

        assert!(store.forget("gone@example.COM").await.unwrap());
        assert!(
            store
                .get_subscriber("gone@example.com")
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.get_subscriber_by_id(id).await.unwrap().is_none());
        let all = store.list_subscribers(None).await.unwrap();
        assert!(all.iter().all(|s| !s.email.to_lowercase().contains("gone")
            && s.name.as_deref() != Some("Private Person")));

        // Its queued delivery is settled (skipped), the others wait.
        let counts = store.issue_counts(Some("one")).await.unwrap();
        assert_eq!(
            (counts[0].total, counts[0].skipped, counts[0].queued),
            (4, 1, 3)
        );
        // The delivery stays in the ledger without its subscriber: nothing
        // names the deleted row (PostgreSQL has no foreign key to do it).
        let count = |query: &'static str, arg: i64| {
            let url = db.url.clone();
            async move { letterpress_testkit::sql::query_i64(&url, query, arg).await }
        };
        assert_eq!(
            count(
                "SELECT COUNT(*) FROM deliveries WHERE subscriber_id = $1",
                id
            )
            .await,
            Some(0)
        );
        assert_eq!(
            count(
                "SELECT COUNT(*) FROM deliveries WHERE subscriber_id IS NULL AND issue_id = $1",
                issue.id
            )
            .await,
            Some(1)
        );

        // Refused by add, import and signup; the hash holds no address.
        assert_eq!(
            store
                .add_subscriber(&new, UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Suppressed(None)
        );
        let s = store
            .import(
                vec![ImportRow {
                    line: 2,
                    result: Ok(sub("GONE@example.com")),
                }]
                .into_iter(),
                UpsertMode::Normal,
                false,
            )
            .await
            .unwrap();
        assert_eq!((s.added, s.suppressed), (0, 1));
        assert_eq!(
            common::signup(&store, &email("gone@example.com"), None).await,
            PendingOutcome::Suppressed { id: None }
        );
        assert!(
            store
                .get_subscriber("gone@example.com")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !store.forget("gone@example.com").await.unwrap(),
            "nothing left to do"
        );

        // The operator may lift it explicitly.
        assert!(matches!(
            store
                .add_subscriber(&new, UpsertMode::Resubscribe)
                .await
                .unwrap(),
            AddOutcome::Added(_)
        ));
        assert!(matches!(
            store
                .add_subscriber(&new, UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Unchanged(_)
        ));
    })
    .await;
}

/// Import rows of these addresses, one a line after the header.
fn import_rows(addresses: &[&str]) -> Vec<ImportRow> {
    addresses
        .iter()
        .enumerate()
        .map(|(i, a)| ImportRow {
            line: i as u64 + 2,
            result: Ok(sub(a)),
        })
        .collect()
}

#[tokio::test]
async fn forgotten_addresses_stay_refused_after_a_key_rotation() {
    each_backend(|db| async move {
        let gone = ["one@example.com", "two@example.com", "three@example.com"];
        // Without a key there is nothing to hash with: refused, not ignored.
        assert!(matches!(
            db.store().await.forget(gone[0]).await,
            Err(StoreError::NoSuppressionKey)
        ));
        let before = db.store().await.with_suppression_keys(KEY, &[]);
        for address in gone {
            before
                .add_subscriber(&sub(address), UpsertMode::Normal)
                .await
                .unwrap();
            assert!(before.forget(address).await.unwrap());
        }

        // Rotated, with the old key kept listed: every way in is refused.
        let rotated = db.store().await.with_suppression_keys(NEW_KEY, &[KEY]);
        assert_eq!(
            rotated
                .add_subscriber(&sub("One@Example.com"), UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Suppressed(None),
            "{}",
            db.label
        );
        // Forgotten after the rotation, under the new key: one import
        // recognises hashes under either key.
        assert!(rotated.forget("late@example.com").await.unwrap());
        let s = rotated
            .import(
                import_rows(&["TWO@example.com", "late@example.com", "new@example.com"])
                    .into_iter(),
                UpsertMode::Normal,
                false,
            )
            .await
            .unwrap();
        assert_eq!((s.added, s.suppressed), (1, 2), "{}", db.label);
        assert_eq!(
            common::signup(&rotated, &email("three@EXAMPLE.com"), None).await,
            PendingOutcome::Suppressed { id: None },
            "{}",
            db.label
        );
        for address in gone {
            assert!(rotated.get_subscriber(address).await.unwrap().is_none());
        }

        // Without the old key the stored hashes are unrecognisable: this is
        // why a retired secret must stay listed for as long as the addresses
        // forgotten under it must stay refused.
        let dropped = db.store().await.with_suppression_keys(NEW_KEY, &[]);
        let s = dropped
            .import(
                import_rows(&["two@example.com"]).into_iter(),
                UpsertMode::Normal,
                true,
            )
            .await
            .unwrap();
        assert_eq!((s.added, s.suppressed), (1, 0), "{}", db.label);
        assert!(matches!(
            common::signup(&dropped, &email("three@example.com"), None).await,
            PendingOutcome::Created { .. }
        ));
        assert!(matches!(
            dropped
                .add_subscriber(&sub("one@example.com"), UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Added(_)
        ));

        // Forgotten under both keys, then lifted by the operator: both hashes
        // go, or the one left would still refuse the subscriber's signup.
        assert!(rotated.forget("one@example.com").await.unwrap());
        let AddOutcome::Added(id) = rotated
            .add_subscriber(&sub("one@example.com"), UpsertMode::Resubscribe)
            .await
            .unwrap()
        else {
            panic!("{}: resubscribe lifts the suppression", db.label)
        };
        assert_eq!(
            common::signup(&rotated, &email("one@example.com"), None).await,
            PendingOutcome::AlreadyActive { id },
            "{}",
            db.label
        );
    })
    .await;
}

#[tokio::test]
async fn uniqueness_ignores_case_and_international_addresses_work() {
    each_backend(|db| async move {
        let store = db.store().await;
        let AddOutcome::Added(id) = store
            .add_subscriber(&sub("Jörg@Bücher.de"), UpsertMode::Normal)
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            store
                .add_subscriber(&sub("jörg@bücher.de"), UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Unchanged(id)
        );
        assert_eq!(
            store
                .add_subscriber(&sub("JÖRG@BÜCHER.DE"), UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Unchanged(id)
        );
        let got = store
            .get_subscriber("JÖRG@bücher.DE")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.email, "Jörg@Bücher.de", "kept as first given");
        assert!(matches!(
            store
                .add_subscriber(&sub("用户@例子.广告"), UpsertMode::Normal)
                .await
                .unwrap(),
            AddOutcome::Added(_)
        ));
        assert!(
            store
                .get_subscriber("用户@例子.广告")
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.list_subscribers(None).await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn import_classifies_rows_and_reports_duplicates() {
    each_backend(|db| async move {
        let store = db.store().await;
        store
            .add_subscriber(&sub("same@example.com"), UpsertMode::Normal)
            .await
            .unwrap();
        let mut changed = sub("changed@example.com");
        store
            .add_subscriber(&changed, UpsertMode::Normal)
            .await
            .unwrap();
        store
            .add_subscriber(&sub("left@example.com"), UpsertMode::Normal)
            .await
            .unwrap();
        store
            .unsubscribe_email("LEFT@example.com", "test")
            .await
            .unwrap();
        changed.tags = vec!["vip".into()];

        let mut unsubscribed_new = sub("gone-before@example.com");
        unsubscribed_new.status = Some(SubscriberStatus::Unsubscribed);
        let rows = vec![
            ImportRow {
                line: 2,
                result: Ok(sub("new@example.com")),
            },
            ImportRow {
                line: 3,
                result: Ok(sub("same@example.com")),
            },
            ImportRow {
                line: 4,
                result: Ok(changed),
            },
            ImportRow {
                line: 5,
                result: Ok(sub("left@example.com")),
            },
            ImportRow {
                line: 6,
                result: Err("\"bob@\" is not a valid email address".into()),
            },
            ImportRow {
                line: 7,
                result: Ok(sub("NEW@Example.com")),
            },
            ImportRow {
                line: 8,
                result: Ok(unsubscribed_new),
            },
        ];
        let before = store.list_subscribers(None).await.unwrap();
        let dry = store
            .import(rows.clone().into_iter(), UpsertMode::Normal, true)
            .await
            .unwrap();
        assert_eq!(
            store.list_subscribers(None).await.unwrap(),
            before,
            "dry run writes nothing"
        );
        let real = store
            .import(rows.into_iter(), UpsertMode::Normal, false)
            .await
            .unwrap();
        assert_eq!(dry, real, "dry run classifies the same");
        assert_eq!(
            (real.added, real.updated, real.unchanged, real.suppressed),
            (2, 1, 1, 1),
            "{}",
            db.label
        );
        assert_eq!(
            real.rejected,
            vec![
                (6, "\"bob@\" is not a valid email address".to_string()),
                (7, "duplicate of line 2".to_string())
            ]
        );
        assert_eq!(
            store
                .get_subscriber("new@example.com")
                .await
                .unwrap()
                .unwrap()
                .email,
            "new@example.com",
            "the first of the duplicates wins"
        );
        assert_eq!(
            store
                .get_subscriber("gone-before@example.com")
                .await
                .unwrap()
                .unwrap()
                .status,
            SubscriberStatus::Unsubscribed
        );
        assert_eq!(
            store
                .get_subscriber("changed@example.com")
                .await
                .unwrap()
                .unwrap()
                .tags,
            vec!["vip".to_string()]
        );
        assert_eq!(
            store
                .get_subscriber("left@example.com")
                .await
                .unwrap()
                .unwrap()
                .status,
            SubscriberStatus::Unsubscribed,
            "an import never reactivates"
        );
    })
    .await;
}

#[tokio::test]
async fn export_then_import_reproduces_statuses() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 1_500).await; // more than one stream page
        store
            .unsubscribe_email("user3@example.com", "t")
            .await
            .unwrap();
        store
            .record_bounce("user4@example.com", BounceKind::Hard, 1)
            .await
            .unwrap();
        store
            .record_bounce("user5@example.com", BounceKind::Complaint, 1)
            .await
            .unwrap();
        common::signup(&store, &email("pending@example.com"), Some("P")).await;

        let exported: Vec<_> = store.stream_subscribers().try_collect().await.unwrap();
        assert_eq!(exported.len(), 1_501);
        assert!(exported.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(exported, store.list_subscribers(None).await.unwrap());

        let other = common::TestDb {
            url: format!("{}-copy", db.url),
            label: db.label,
        };
        if db.label == "postgres" {
            return; // a second fresh database is covered on SQLite
        }
        let copy = other.store().await;
        let rows = exported.iter().enumerate().map(|(i, s)| ImportRow {
            line: i as u64 + 2,
            result: Ok(NewSubscriber {
                email: email(&s.email),
                name: s
                    .name
                    .as_deref()
                    .map(|n| SubscriberName::parse(n).unwrap().unwrap()),
                tags: s.tags.clone(),
                attributes: s.attributes.clone(),
                status: Some(s.status),
                source: "import".into(),
            }),
        });
        let summary = copy.import(rows, UpsertMode::Normal, false).await.unwrap();
        assert_eq!(summary.added, 1_501);
        assert_eq!(
            copy.count_by_status().await.unwrap(),
            store.count_by_status().await.unwrap()
        );
        assert_eq!(
            store.count_by_status().await.unwrap(),
            vec![
                (SubscriberStatus::Pending, 1),
                (SubscriberStatus::Active, 1_497),
                (SubscriberStatus::Unsubscribed, 1),
                (SubscriberStatus::Bounced, 1),
                (SubscriberStatus::Complained, 1),
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn double_opt_in_confirms_each_signup_once() {
    each_backend(|db| async move {
        let store = db.store().await;
        let now = chrono::Utc::now();
        let e = email("new@example.com");
        let first = common::signup_mail(&store, &e, Some("N")).await;
        let PendingOutcome::Created { id } = first.outcome else {
            panic!("{}: {first:?}", db.label)
        };
        let mail = first
            .confirmation
            .expect("a new address gets a confirmation");
        assert_eq!(
            (mail.subscriber_id, mail.email.as_str()),
            (id, "new@example.com")
        );
        assert_eq!(
            store.count_audience().await.unwrap(),
            0,
            "pending is no audience"
        );
        // Asking again while pending: the same link, so every mail works.
        let again = common::signup_mail(&store, &email("NEW@example.com"), None).await;
        assert_eq!(again.outcome, PendingOutcome::StillPending { id });
        let again = again
            .confirmation
            .expect("a pending address may be asked again");
        assert_eq!(
            (again.nonce, again.email.as_str()),
            (mail.nonce, "new@example.com"),
            "the stored address"
        );

        // A link for another signup, or made up, confirms nothing.
        for wrong in [RowBinding::Row(mail.nonce ^ 1), RowBinding::Legacy] {
            assert_eq!(
                store.confirm_signup(id, wrong, now).await.unwrap(),
                ConfirmOutcome::NotConfirmable,
                "{}: {wrong:?}",
                db.label
            );
        }
        let link = RowBinding::Row(mail.nonce);
        assert_eq!(
            store.confirm_signup(id, link, now).await.unwrap(),
            ConfirmOutcome::Confirmed
        );
        let s = store.get_subscriber_by_id(id).await.unwrap().unwrap();
        assert_eq!(s.status, SubscriberStatus::Active);
        assert!(s.confirmed_at.is_some());
        // Once: then unsubscribed, the old link does not bring it back.
        assert_eq!(
            store.confirm_signup(id, link, now).await.unwrap(),
            ConfirmOutcome::NotConfirmable
        );
        let active = common::signup_mail(&store, &e, None).await;
        assert_eq!(
            active,
            Signup {
                outcome: PendingOutcome::AlreadyActive { id },
                confirmation: None
            }
        );
        assert!(
            store
                .unsubscribe_email("new@example.com", "link")
                .await
                .unwrap()
        );
        assert_eq!(
            store.confirm_signup(id, link, now).await.unwrap(),
            ConfirmOutcome::NotConfirmable
        );
        assert_eq!(
            store
                .get_subscriber_by_id(id)
                .await
                .unwrap()
                .unwrap()
                .status,
            SubscriberStatus::Unsubscribed,
            "{}: an old confirmation link does not lift suppression",
            db.label
        );

        // Coming back: a new signup, a new link, which lifts it.
        let back = common::signup_mail(&store, &e, None).await;
        assert_eq!(back.outcome, PendingOutcome::Suppressed { id: Some(id) });
        let back = back
            .confirmation
            .expect("an unsubscribed address may come back");
        assert_ne!(back.nonce, mail.nonce);
        assert_eq!(
            store.confirm_signup(id, link, now).await.unwrap(),
            ConfirmOutcome::NotConfirmable
        );
        assert_eq!(
            store
                .confirm_signup(id, RowBinding::Row(back.nonce), now)
                .await
                .unwrap(),
            ConfirmOutcome::Confirmed,
            "its own confirmation does"
        );
        assert_eq!(store.count_audience().await.unwrap(), 1);

        // Bounced and complained addresses get no confirmation mail at all.
        for (address, kind) in [
            ("b@example.com", BounceKind::Hard),
            ("c@example.com", BounceKind::Complaint),
        ] {
            store
                .add_subscriber(&sub(address), UpsertMode::Normal)
                .await
                .unwrap();
            store.record_bounce(address, kind, 1).await.unwrap();
            let signup = common::signup_mail(&store, &email(address), None).await;
            assert!(matches!(
                signup.outcome,
                PendingOutcome::Suppressed { id: Some(_) }
            ));
            assert_eq!(signup.confirmation, None, "{}: {address}", db.label);
        }
    })
    .await;
}

#[tokio::test]
async fn an_address_gets_a_confirmation_at_most_every_ten_minutes_and_three_a_day() {
    each_backend(|db| async move {
        let store = db.store().await;
        let e = email("target@example.com");
        let limits = SignupLimits::default();
        let t0 = chrono::Utc::now();
        let at = |minutes: i64| t0 + chrono::TimeDelta::minutes(minutes);
        let mut sent = Vec::new();
        // A signup every minute for a day and a half.
        for minute in 0..(36 * 60) {
            let signup = store
                .request_confirmation(&e, None, "form", limits, at(minute))
                .await
                .unwrap();
            if signup.confirmation.is_some() {
                sent.push(minute);
            }
        }
        // A rolling day: the first mail is a day old at minute 1440.
        assert_eq!(
            sent,
            [0, 10, 20, 24 * 60, 24 * 60 + 10, 24 * 60 + 20],
            "{}",
            db.label
        );
    })
    .await;
}

#[tokio::test]
async fn unsubscribe_links_act_only_on_the_row_they_were_made_for() {
    each_backend(|db| async move {
        let store = db.store().await.with_suppression_keys(KEY, &[]);
        let now = chrono::Utc::now();
        store
            .add_subscriber(&sub("older@example.com"), UpsertMode::Normal)
            .await
            .unwrap();
        let AddOutcome::Added(id) = store
            .add_subscriber(&sub("newest@example.com"), UpsertMode::Normal)
            .await
            .unwrap()
        else {
            panic!()
        };
        let salt = token_salt(&db, id).await;
        let link = RowBinding::Row(salt);
        assert!(store.subscriber_by_token(id, link).await.unwrap().is_some());
        assert_eq!(
            store
                .subscriber_by_token(id, RowBinding::Row(salt ^ 1))
                .await
                .unwrap(),
            None
        );
        // Rows made after bindings existed do not honour id-only tokens.
        assert_eq!(
            store
                .subscriber_by_token(id, RowBinding::Legacy)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .unsubscribe_by_token(id, RowBinding::Legacy, "one-click", now)
                .await
                .unwrap(),
            TokenUnsubscribe::NoSuchSubscriber
        );

        // The newest subscriber is forgotten; the next one never gets its id,
        // and its old link acts on nobody.
        assert!(store.forget("newest@example.com").await.unwrap());
        let AddOutcome::Added(next) = store
            .add_subscriber(&sub("stranger@example.com"), UpsertMode::Normal)
            .await
            .unwrap()
        else {
            panic!()
        };
        assert!(
            next > id,
            "{}: id {id} handed out again as {next}",
            db.label
        );
        assert_eq!(
            store
                .unsubscribe_by_token(id, link, "one-click", now)
                .await
                .unwrap(),
            TokenUnsubscribe::NoSuchSubscriber
        );
        // Even if a restore brought the id back, the salt would differ.
        assert_eq!(
            store
                .unsubscribe_by_token(next, link, "one-click", now)
                .await
                .unwrap(),
            TokenUnsubscribe::NoSuchSubscriber
        );
        let stranger = RowBinding::Row(token_salt(&db, next).await);
        assert_eq!(
            store
                .unsubscribe_by_token(next, stranger, "one-click", now)
                .await
                .unwrap(),
            TokenUnsubscribe::Unsubscribed
        );
        assert_eq!(
            store
                .unsubscribe_by_token(next, stranger, "one-click", now)
                .await
                .unwrap(),
            TokenUnsubscribe::AlreadyOff,
            "idempotent"
        );
    })
    .await;
}

/// A subscriber's token salt, read from outside the store.
async fn token_salt(db: &common::TestDb, id: i64) -> u64 {
    letterpress_testkit::sql::query_i64(
        &db.url,
        "SELECT token_salt FROM subscribers WHERE id = $1",
        id,
    )
    .await
    .expect("a salt") as u64
}

#[tokio::test]
async fn bounces_and_complaints() {
    each_backend(|db| async move {
        let store = db.store().await;
        seed(&store, 3).await;
        assert!(
            !store
                .record_bounce("user0@example.com", BounceKind::Soft, 3)
                .await
                .unwrap()
        );
        assert!(
            !store
                .record_bounce("user0@example.com", BounceKind::Soft, 3)
                .await
                .unwrap()
        );
        assert!(
            store
                .record_bounce("USER0@example.com", BounceKind::Soft, 3)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .get_subscriber("user0@example.com")
                .await
                .unwrap()
                .unwrap()
                .status,
            SubscriberStatus::Bounced
        );
        assert!(
            store
                .record_bounce("user1@example.com", BounceKind::Complaint, 3)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .get_subscriber("user1@example.com")
                .await
                .unwrap()
                .unwrap()
                .status,
            SubscriberStatus::Complained
        );
        assert!(
            !store
                .record_bounce("nobody@example.com", BounceKind::Hard, 3)
                .await
                .unwrap()
        );
        assert!(
            !store
                .unsubscribe_email("nobody@example.com", "x")
                .await
                .unwrap()
        );
    })
    .await;
}

/// An import running while unsubscribes arrive: nothing fails ("database is
/// locked") and no unsubscribe is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_never_loses_a_concurrent_unsubscribe() {
    each_backend(|db| async move {
        const N: usize = 50_000;
        let store = db.store().await;
        seed(&store, N).await;
        let import_store = db.store().await; // its own pool, like another process
        let import = tokio::spawn(async move {
            import_store
                .import(generated(N, "Renamed"), UpsertMode::Normal, false)
                .await
        });
        let unsubscriber = db.store().await;
        let unsub = tokio::spawn(async move {
            let mut done = Vec::new();
            for i in (0..N).step_by(97) {
                let address = format!("user{i}@example.com");
                let changed = unsubscriber.unsubscribe_email(&address, "webhook").await?;
                assert!(changed, "{address} was active");
                done.push(address);
            }
            Ok::<_, StoreError>(done)
        });
        let summary = import.await.unwrap().expect("import must not fail");
        let unsubscribed = unsub.await.unwrap().expect("no unsubscribe may fail");
        assert_eq!(summary.updated + summary.suppressed, N as u64);
        assert!(summary.rejected.is_empty());
        for address in &unsubscribed {
            let s = store.get_subscriber(address).await.unwrap().unwrap();
            assert_eq!(
                s.status,
                SubscriberStatus::Unsubscribed,
                "{} lost {address}",
                db.label
            );
        }
        let counts = store.count_by_status().await.unwrap();
        assert_eq!(
            counts[2],
            (SubscriberStatus::Unsubscribed, unsubscribed.len() as u64)
        );
        // Every other row got the import's change.
        let renamed = store
            .list_subscribers(Some(SubscriberStatus::Active))
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.name.as_deref().is_some_and(|n| n.starts_with("Renamed")))
            .count();
        assert_eq!(renamed, N - unsubscribed.len());
    })
    .await;
}

#[tokio::test]
async fn connect_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("lp.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert!(path.exists());
    store.close().await;
}
