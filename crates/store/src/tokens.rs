//! Subscribers as the links in their mail name them, and double opt-in.
//!
//! A link's token names a subscriber's id and a *binding*: the row's
//! `token_salt` for unsubscribe links, the `confirm_nonce` of one signup
//! for confirmation links. Every statement here acts only on a row that
//! still holds the binding, so an id that comes back (a restore, a
//! re-import after `--forget`) never lets an old link act on a new person,
//! and a confirmation link confirms the signup it was sent for, once.
//! Tokens made before bindings existed name only the id; they are honoured
//! for the rows that existed then (`legacy_tokens`) and no others.

use std::time::Duration;

use chrono::{DateTime, Utc};
use letterpress_core::{SubscriberEmail, SubscriberStatus};

use crate::connect::{BeginWrite, Pool, with_pool};
use crate::db;
use crate::model::{SUBSCRIBER_COLUMNS, SubscriberRow, ms, parse_status};
use crate::{PendingOutcome, Store, StoreError, Subscriber};

/// What a token must match in the row it names (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowBinding {
    /// The salt (unsubscribe) or nonce (confirmation) the token carries.
    Row(u64),
    /// A token from before bindings: only rows that existed then.
    Legacy,
}

impl RowBinding {
    /// The bound value as the database stores it (a 64-bit integer, the
    /// same bits), or `None` for a legacy token.
    fn sql(self) -> Option<i64> {
        match self {
            RowBinding::Row(v) => Some(v as i64),
            RowBinding::Legacy => None,
        }
    }
}

/// What [`Store::unsubscribe_by_token`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUnsubscribe {
    /// The subscriber was pending or active and is now unsubscribed.
    Unsubscribed,
    /// The subscriber was already off the list; nothing changed.
    AlreadyOff,
    /// No row holds this id and binding; nothing changed.
    NoSuchSubscriber,
}

/// What [`Store::confirm_signup`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// The signup was confirmed: the subscriber is active.
    Confirmed,
    /// The link was used already, or the subscriber left or was suppressed
    /// after the signup it confirms; nothing changed.
    NotConfirmable,
}

/// How often one address may be sent a confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignupLimits {
    /// At most one confirmation per this long.
    pub min_interval: Duration,
    /// And at most this many in 24 hours.
    pub per_day: u32,
}

impl Default for SignupLimits {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(600),
            per_day: 3,
        }
    }
}

/// A confirmation mail to send, for the address as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmationMail {
    /// The subscriber.
    pub subscriber_id: i64,
    /// The stored address (not the one typed into the form).
    pub email: String,
    /// The stored name.
    pub name: Option<String>,
    /// The nonce the confirmation link must carry.
    pub nonce: u64,
}

/// What [`Store::request_confirmation`] found and decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signup {
    /// The address's state when the signup came in.
    pub outcome: PendingOutcome,
    /// The mail to send, if any: none for an active, bounced, complained or
    /// forgotten address, nor over the per-address limit.
    pub confirmation: Option<ConfirmationMail>,
}

/// What a signup reads of an existing row: id, stored address, name,
/// status and confirmation nonce.
type SignupRow = (i64, String, Option<String>, String, Option<i64>);

impl Store {
    /// The subscriber a token names, if its row holds the binding.
    pub async fn subscriber_by_token(
        &self,
        id: i64,
        binding: RowBinding,
    ) -> Result<Option<Subscriber>, StoreError> {
        let row: Option<SubscriberRow> = with_pool!(self, |p| {
            db::query_as(db::AssertSqlSafe(format!(
                "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id = $1 \
                 AND (token_salt = $2 OR ($2 IS NULL AND legacy_tokens))"
            )))
            .bind(id)
            .bind(binding.sql())
            .fetch_optional(p)
            .await?
        });
        row.map(Subscriber::try_from).transpose()
    }

    /// Unsubscribes the pending or active subscriber an unsubscribe token
    /// names, if its row holds the binding, recording `source`. Idempotent.
    pub async fn unsubscribe_by_token(
        &self,
        id: i64,
        binding: RowBinding,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenUnsubscribe, StoreError> {
        let now = ms(now);
        // One autocommit UPDATE: on SQLite a writing statement takes the
        // write lock when it starts, so it waits in the busy handler
        // instead of failing while an import batch holds the lock.
        let changed = with_pool!(self, |p| {
            db::query(
                "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = $2, \
                 unsubscribe_source = $3, updated_at = $2, confirm_nonce = NULL \
                 WHERE id = $1 AND status IN ('pending','active') \
                 AND (token_salt = $4 OR ($4 IS NULL AND legacy_tokens))",
            )
            .bind(id)
            .bind(now)
            .bind(source)
            .bind(binding.sql())
            .execute(p)
            .await?
            .rows_affected()
        });
        if changed > 0 {
            return Ok(TokenUnsubscribe::Unsubscribed);
        }
        Ok(match self.subscriber_by_token(id, binding).await? {
            Some(_) => TokenUnsubscribe::AlreadyOff,
            None => TokenUnsubscribe::NoSuchSubscriber,
        })
    }

    /// Confirms the signup a confirmation token names: a pending subscriber,
    /// or an unsubscribed one whose signup came after it left, becomes
    /// active, once (the nonce is cleared). Bounced and complained
    /// subscribers are never confirmed by a link.
    pub async fn confirm_signup(
        &self,
        id: i64,
        binding: RowBinding,
        now: DateTime<Utc>,
    ) -> Result<ConfirmOutcome, StoreError> {
        let now = ms(now);
        let changed = with_pool!(self, |p| {
            db::query(
                "UPDATE subscribers SET status = 'active', confirmed_at = $2, updated_at = $2, \
                 unsubscribed_at = NULL, unsubscribe_source = NULL, \
                 confirm_nonce = NULL, signup_requested_at = NULL \
                 WHERE id = $1 AND status IN ('pending','unsubscribed') AND (\
                   ($3 IS NOT NULL AND confirm_nonce = $3 \
                    AND (status = 'pending' OR signup_requested_at > COALESCE(unsubscribed_at, 0))) \
                   OR ($3 IS NULL AND legacy_tokens AND status = 'pending'))",
            )
            .bind(id)
            .bind(now)
            .bind(binding.sql())
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(if changed > 0 {
            ConfirmOutcome::Confirmed
        } else {
            ConfirmOutcome::NotConfirmable
        })
    }

    /// Double opt-in signup of `email`, in one transaction: a new address is
    /// recorded as pending; an existing one is left as it is. A pending or
    /// unsubscribed address (one that may come back through its own
    /// confirmation) is given a confirmation mail, unless one went to it
    /// within `limits`; the mail goes to the address as stored. An active,
    /// bounced, complained or forgotten address gets nothing. The same
    /// statements run whatever the address's state, so neither the answer
    /// nor its timing tells a visitor which it was.
    pub async fn request_confirmation(
        &self,
        email: &SubscriberEmail,
        name: Option<&str>,
        source: &str,
        limits: SignupLimits,
        now: DateTime<Utc>,
    ) -> Result<Signup, StoreError> {
        let key = email.key();
        let forgotten = self.is_forgotten(&key).await?;
        let now_ms = ms(now);
        let interval = i64::try_from(limits.min_interval.as_millis()).unwrap_or(i64::MAX / 4);
        let day = 86_400_000_i64;
        // Read under a row lock on PostgreSQL, so that two signups of one
        // address at once cannot both pass the limit; SQLite's write
        // transaction already excludes the other.
        let select = match self.pool {
            Pool::Sqlite(_) => {
                "SELECT id, email, name, status, confirm_nonce FROM subscribers WHERE email_key = $1"
            }
            Pool::Postgres(_) => {
                "SELECT id, email, name, status, confirm_nonce FROM subscribers WHERE email_key = $1 FOR UPDATE"
            }
        };
        let fresh_nonce = rand::random::<u64>();
        let signup = with_pool!(self, |p| {
            let mut tx = p.begin_write().await?;
            let created: Option<i64> = if forgotten {
                None
            } else {
                // DO NOTHING on conflict, then read: two signups of one
                // address at once both succeed, one as "still pending".
                db::query_scalar(
                    "INSERT INTO subscribers (email, email_key, name, status, source, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'pending', $4, $5, $5) \
                     ON CONFLICT (email_key) DO NOTHING RETURNING id",
                )
                .bind(email.as_str())
                .bind(&key)
                .bind(name)
                .bind(source)
                .bind(now_ms)
                .fetch_optional(&mut *tx)
                .await?
            };
            let row: Option<SignupRow> = db::query_as(select)
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
            let signup = match row {
                // Forgotten (only a hash is left), or forgotten meanwhile.
                None => Signup {
                    outcome: PendingOutcome::Suppressed { id: None },
                    confirmation: None,
                },
                Some((id, stored_email, stored_name, status, nonce)) => {
                    let status = parse_status(&status)?;
                    let outcome = match (created, status) {
                        (Some(_), _) => PendingOutcome::Created { id },
                        (None, SubscriberStatus::Active) => PendingOutcome::AlreadyActive { id },
                        (None, SubscriberStatus::Pending) => PendingOutcome::StillPending { id },
                        (None, _) => PendingOutcome::Suppressed { id: Some(id) },
                    };
                    let may_come_back = matches!(
                        status,
                        SubscriberStatus::Pending | SubscriberStatus::Unsubscribed
                    );
                    let (recent, today): (i64, i64) = db::query_as(
                        "SELECT COUNT(*) FILTER (WHERE sent_at > $2), COUNT(*) FILTER (WHERE sent_at > $3) \
                         FROM confirmation_sends WHERE subscriber_id = $1",
                    )
                    .bind(id)
                    .bind(now_ms - interval)
                    .bind(now_ms - day)
                    .fetch_one(&mut *tx)
                    .await?;
                    let within_limits = recent == 0 && today < i64::from(limits.per_day);
                    let confirmation = if may_come_back && within_limits {
                        // A pending signup keeps its nonce, so every mail
                        // it was sent carries a link that works; coming
                        // back after leaving is a new signup.
                        let nonce = match (status, nonce) {
                            (SubscriberStatus::Pending, Some(n)) => n,
                            _ => fresh_nonce as i64,
                        };
                        // The request is later than the suppression it lifts
                        // even within one millisecond of it: confirmation
                        // asks for `signup_requested_at > unsubscribed_at`.
                        db::query(
                            "UPDATE subscribers SET confirm_nonce = $2, \
                             signup_requested_at = CASE WHEN $3 > COALESCE(unsubscribed_at, 0) \
                             THEN $3 ELSE unsubscribed_at + 1 END WHERE id = $1",
                        )
                        .bind(id)
                        .bind(nonce)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?;
                        db::query("INSERT INTO confirmation_sends (subscriber_id, sent_at) VALUES ($1, $2)")
                            .bind(id)
                            .bind(now_ms)
                            .execute(&mut *tx)
                            .await?;
                        Some(ConfirmationMail {
                            subscriber_id: id,
                            email: stored_email,
                            name: stored_name,
                            nonce: nonce as u64,
                        })
                    } else {
                        None
                    };
                    db::query(
                        "DELETE FROM confirmation_sends WHERE subscriber_id = $1 AND sent_at <= $2",
                    )
                    .bind(id)
                    .bind(now_ms - day)
                    .execute(&mut *tx)
                    .await?;
                    Signup {
                        outcome,
                        confirmation,
                    }
                }
            };
            tx.commit().await?;
            signup
        });
        Ok(signup)
    }
}
