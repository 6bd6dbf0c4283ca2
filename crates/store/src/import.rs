//! Bulk upserts: [`Store::import`] and the batch writer that
//! [`Store::add_subscriber`] shares with it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use crate::db::QueryBuilder;
use crate::db::types::Json;
use chrono::Utc;
use letterpress_core::{SubscriberName, SubscriberStatus};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::connect::{BeginWrite, suppressed_hashes_in, with_pool};
use crate::model::{ms, parse_status};
use crate::subscribers::suppressed_sql;
use crate::{AddOutcome, Backend, ImportRow, ImportSummary, Store, StoreError, UpsertMode};

/// Rows per transaction. Large, because on SQLite the commit (a WAL fsync
/// with synchronous=NORMAL only at checkpoints, but still a lock hand-over)
/// dominates small batches; small enough that an unsubscribe waiting for the
/// write lock waits well under a second.
const TX_ROWS: usize = 10_000;
/// Rows per multi-row INSERT: 12 parameters a row stays under SQLite's
/// 32,766 and PostgreSQL's 65,535 bound parameters.
const STMT_ROWS: usize = 1_000;
/// Keys per `IN (…)` lookup.
const LOOKUP_KEYS: usize = 5_000;

/// One address to upsert, already de-duplicated within its import.
pub(crate) struct Candidate {
    pub key: String,
    pub new: crate::NewSubscriber,
}

/// An existing row, as the classification needs it.
struct Existing {
    id: i64,
    email_key: String,
    name: Option<String>,
    status: String,
    tags: Json<Vec<String>>,
    attributes: Json<Map<String, Value>>,
}

crate::model::from_row!(Existing {
    id,
    email_key,
    name,
    status,
    tags,
    attributes
});

/// A row to write.
struct Write {
    email: String,
    key: String,
    name: Option<String>,
    status: SubscriberStatus,
    tags: Vec<String>,
    attributes: Map<String, Value>,
    source: String,
    confirmed_at: Option<i64>,
    unsubscribed_at: Option<i64>,
}

enum Plan {
    Done(AddOutcome),
    /// Index into the writes; the id of the existing row, if any.
    Write(usize, Option<i64>),
}

/// The upsert's conflict clause. `excluded` values were computed from the row
/// read in the same transaction; timestamps of the first confirmation and of
/// the suppression are kept when already set.
const UPSERT_SET: &str = concat!(
    " ON CONFLICT (email_key) DO UPDATE SET name = excluded.name, status = excluded.status, ",
    "tags = excluded.tags, attributes = excluded.attributes, updated_at = excluded.updated_at, ",
    "confirmed_at = COALESCE(subscribers.confirmed_at, excluded.confirmed_at), ",
    "unsubscribed_at = CASE WHEN excluded.status IN ",
    suppressed_sql!(),
    " THEN COALESCE(subscribers.unsubscribed_at, excluded.unsubscribed_at) END, ",
    "unsubscribe_source = CASE WHEN excluded.status IN ",
    suppressed_sql!(),
    " THEN COALESCE(subscribers.unsubscribe_source, excluded.unsubscribe_source) END"
);

/// Why the upsert never touches a suppressed row in Normal mode even though
/// the classification already skipped them: on PostgreSQL (READ COMMITTED)
/// an unsubscribe may commit between this transaction's read and its write.
/// The conflict action's WHERE is evaluated against the newest committed
/// version of the row (after waiting for its lock), so the unsubscribe wins
/// and the row simply does not come back in RETURNING. On SQLite the batch
/// holds the write lock from its first read (`BEGIN IMMEDIATE`), so this is
/// belt and braces there.
const UPSERT_GUARD: &str = concat!(" WHERE subscribers.status NOT IN ", suppressed_sql!());

const RETURNING: &str = " RETURNING id, email_key";

/// The id reported for rows written without RETURNING (bulk imports on
/// SQLite, whose outcomes are only counted).
const UNKNOWN_ID: i64 = 0;

impl Store {
    /// Imports subscribers: upserts in transactions of 10,000 rows, with
    /// multi-row statements and bound parameters only.
    ///
    /// Each row is classified as added, updated (name, tags, attributes or
    /// status changed), unchanged, suppressed (an unsubscribed, bounced or
    /// complained row, or a forgotten address: left alone unless `mode` is
    /// [`UpsertMode::Resubscribe`]) or rejected (the parser's reason, or
    /// "duplicate of line N" for an address that appeared before in any
    /// letter case: the first wins). A row's explicit status is stored as
    /// given, so an export imported into an empty store reproduces it; an
    /// absent name, empty tags or empty attributes keep the stored ones.
    ///
    /// `dry_run` classifies exactly the same way inside transactions that are
    /// rolled back. Without it, batches commit one by one: an error stops the
    /// import with the batches before it kept.
    pub async fn import<I>(
        &self,
        rows: I,
        mode: UpsertMode,
        dry_run: bool,
    ) -> Result<ImportSummary, StoreError>
    where
        I: Iterator<Item = ImportRow>,
    {
        let mut summary = ImportSummary::default();
        let mut first_line: HashMap<String, u64> = HashMap::new();
        let mut batch = Vec::with_capacity(TX_ROWS);
        for row in rows {
            let new = match row.result {
                Ok(new) => new,
                Err(reason) => {
                    summary.rejected.push((row.line, reason));
                    continue;
                }
            };
            match first_line.entry(new.email.key()) {
                Entry::Occupied(first) => summary
                    .rejected
                    .push((row.line, format!("duplicate of line {}", first.get()))),
                Entry::Vacant(slot) => {
                    batch.push(Candidate {
                        key: slot.key().clone(),
                        new,
                    });
                    slot.insert(row.line);
                }
            }
            if batch.len() >= TX_ROWS {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(TX_ROWS));
                tally(
                    &mut summary,
                    self.write_batch(full, mode, dry_run, false).await?,
                );
            }
        }
        if !batch.is_empty() {
            tally(
                &mut summary,
                self.write_batch(batch, mode, dry_run, false).await?,
            );
        }
        Ok(summary)
    }

    /// Classifies and upserts one batch in one write transaction; returns one
    /// outcome per candidate, in order (ids of written rows only with
    /// `want_ids`, else possibly [`UNKNOWN_ID`]).
    pub(crate) async fn write_batch(
        &self,
        batch: Vec<Candidate>,
        mode: UpsertMode,
        dry_run: bool,
        want_ids: bool,
    ) -> Result<Vec<AddOutcome>, StoreError> {
        let span = tracing::info_span!("import_batch", rows = batch.len(), dry_run, ?mode);
        async move {
            let now = ms(Utc::now());
            with_pool!(self, |pool| {
                // A CSV import's batches (not a signup's single row) get the
                // big page cache.
                let mut tx = if batch.len() >= STMT_ROWS {
                    pool.begin_bulk_write().await?
                } else {
                    pool.begin_write().await?
                };

                // 1. The rows that exist already.
                let mut existing: HashMap<String, Existing> = HashMap::with_capacity(batch.len());
                for chunk in batch.chunks(LOOKUP_KEYS) {
                    let mut qb = QueryBuilder::new(
                        "SELECT id, email_key, name, status, tags, attributes FROM subscribers WHERE email_key IN (",
                    );
                    let mut list = qb.separated(", ");
                    for c in chunk {
                        list.push_bind(c.key.as_str());
                    }
                    qb.push(")");
                    let rows: Vec<Existing> = qb.build_query_as().fetch_all(&mut *tx).await?;
                    for r in rows {
                        existing.insert(r.email_key.clone(), r);
                    }
                }

                // 2. Forgotten addresses among the new ones: those with a
                // stored hash under any suppression key (current or retired),
                // mapped to the hashes found.
                let mut forgotten: HashMap<String, Vec<String>> = HashMap::new();
                let hashes: Vec<(String, &str)> = batch
                    .iter()
                    .filter(|c| !existing.contains_key(&c.key))
                    .flat_map(|c| self.suppression_hashes(&c.key).map(|h| (h, c.key.as_str())))
                    .collect();
                for chunk in hashes.chunks(LOOKUP_KEYS) {
                    let listed = chunk.iter().map(|(h, _)| h.as_str());
                    let found: Vec<String> = suppressed_hashes_in("SELECT hash FROM", listed)
                        .build_query_scalar()
                        .fetch_all(&mut *tx)
                        .await?;
                    let found: HashSet<String> = found.into_iter().collect();
                    for (h, k) in chunk {
                        if found.contains(h) {
                            forgotten.entry(k.to_string()).or_default().push(h.clone());
                        }
                    }
                }

                // 3. Classify.
                let mut plans = Vec::with_capacity(batch.len());
                let mut writes: Vec<Write> = Vec::new();
                let mut lifted: Vec<String> = Vec::new();
                for c in batch {
                    let plan = match existing.get(&c.key) {
                        None => {
                            if let Some(hashes) = forgotten.remove(&c.key) {
                                if mode == UpsertMode::Normal {
                                    plans.push(Plan::Done(AddOutcome::Suppressed(None)));
                                    continue;
                                }
                                // Every key's hash goes: one left behind would
                                // still refuse the lifted address's signups.
                                lifted.extend(hashes);
                            }
                            let status = c.new.status.unwrap_or(SubscriberStatus::Active);
                            let name = c.new.name.map(SubscriberName::into_string);
                            Some((status, name, c.new.tags, c.new.attributes, None))
                        }
                        Some(e) => {
                            let current = parse_status(&e.status)?;
                            if current.is_suppressed() && mode == UpsertMode::Normal {
                                plans.push(Plan::Done(AddOutcome::Suppressed(Some(e.id))));
                                continue;
                            }
                            let status = match c.new.status {
                                Some(s) => s,
                                None if current.is_suppressed() => SubscriberStatus::Active,
                                None => current,
                            };
                            let name = c
                                .new
                                .name
                                .map(SubscriberName::into_string)
                                .or_else(|| e.name.clone());
                            let tags = if c.new.tags.is_empty() { e.tags.0.clone() } else { c.new.tags };
                            let attributes = if c.new.attributes.is_empty() {
                                e.attributes.0.clone()
                            } else {
                                c.new.attributes
                            };
                            if status == current
                                && name == e.name
                                && tags == e.tags.0
                                && attributes == e.attributes.0
                            {
                                plans.push(Plan::Done(AddOutcome::Unchanged(e.id)));
                                continue;
                            }
                            Some((status, name, tags, attributes, Some(e.id)))
                        }
                    };
                    if let Some((status, name, tags, attributes, id)) = plan {
                        plans.push(Plan::Write(writes.len(), id));
                        writes.push(Write {
                            email: c.new.email.as_str().to_string(),
                            key: c.key,
                            name,
                            status,
                            tags,
                            attributes,
                            source: c.new.source,
                            confirmed_at: (status == SubscriberStatus::Active).then_some(now),
                            unsubscribed_at: status.is_suppressed().then_some(now),
                        });
                    }
                }

                // 4. Write, in key order: inserting into the email_key index in
                // order touches each page once per batch instead of at random,
                // which is most of SQLite's cost in a big import.
                let mut order: Vec<usize> = (0..writes.len()).collect();
                order.sort_unstable_by(|&a, &b| writes[a].key.cmp(&writes[b].key));
                let mut written: HashMap<String, i64> = HashMap::with_capacity(writes.len());
                // RETURNING tells which rows were really written (and their ids),
                // which matters where a concurrent unsubscribe can slip between
                // this batch's read and write: PostgreSQL. On SQLite the batch
                // has held the write lock since its read, so every planned
                // write happens; skipping RETURNING there saves about a third
                // of a bulk import's time. Single adds always want the id.
                let returning = want_ids || self.backend() == Backend::Postgres;
                for chunk in order.chunks(STMT_ROWS) {
                    let mut qb = QueryBuilder::new(
                        "INSERT INTO subscribers (email, email_key, name, status, tags, attributes, source, \
                         created_at, updated_at, confirmed_at, unsubscribed_at, unsubscribe_source) ",
                    );
                    qb.push_values(chunk.iter().map(|&i| &writes[i]), |mut b, w| {
                        b.push_bind(w.email.as_str())
                            .push_bind(w.key.as_str())
                            .push_bind(w.name.as_deref())
                            .push_bind(w.status.as_str())
                            .push_bind(Json(&w.tags))
                            .push_bind(Json(&w.attributes))
                            .push_bind(w.source.as_str())
                            .push_bind(now)
                            .push_bind(now)
                            .push_bind(w.confirmed_at)
                            .push_bind(w.unsubscribed_at)
                            .push_bind(w.status.is_suppressed().then_some(w.source.as_str()));
                    });
                    qb.push(UPSERT_SET);
                    if mode == UpsertMode::Normal {
                        qb.push(UPSERT_GUARD);
                    }
                    if returning {
                        qb.push(RETURNING);
                        let rows: Vec<(i64, String)> =
                            qb.build_query_as().fetch_all(&mut *tx).await?;
                        written.extend(rows.into_iter().map(|(id, key)| (key, id)));
                    } else {
                        qb.build().execute(&mut *tx).await?;
                        written.extend(
                            chunk.iter().map(|&i| (writes[i].key.clone(), UNKNOWN_ID)),
                        );
                    }
                }
                for chunk in lifted.chunks(LOOKUP_KEYS) {
                    suppressed_hashes_in("DELETE FROM", chunk.iter().map(String::as_str))
                        .build()
                        .execute(&mut *tx)
                        .await?;
                }

                if dry_run {
                    tx.rollback().await?;
                } else {
                    tx.commit().await?;
                }

                // 5. Outcomes. A planned write that RETURNING did not report
                // hit the guard: the row was suppressed concurrently.
                Ok(plans
                    .into_iter()
                    .map(|plan| match plan {
                        Plan::Done(o) => o,
                        Plan::Write(i, existing_id) => match (written.get(&writes[i].key), existing_id) {
                            (Some(&id), None) => AddOutcome::Added(id),
                            (Some(&id), Some(_)) => AddOutcome::Updated(id),
                            (None, id) => AddOutcome::Suppressed(id),
                        },
                    })
                    .collect())
            })
        }
        .instrument(span)
        .await
    }
}

fn tally(summary: &mut ImportSummary, outcomes: Vec<AddOutcome>) {
    for o in outcomes {
        match o {
            AddOutcome::Added(_) => summary.added += 1,
            AddOutcome::Updated(_) => summary.updated += 1,
            AddOutcome::Unchanged(_) => summary.unchanged += 1,
            AddOutcome::Suppressed(_) => summary.suppressed += 1,
        }
    }
}
