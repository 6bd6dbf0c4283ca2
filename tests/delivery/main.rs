//! The delivery engine end to end: the built `letterpress` binary (`send`,
//! `status`, `retry-failed`, `worker`) against the kit's scripted SMTP
//! relay, on a real SQLite file and, when `TEST_DATABASE_URL` is set, on
//! PostgreSQL.
//!
//! What a user checks: who got how many copies (the relay's count), what
//! `status --json` and `subscribers list --json` say, and the messages as
//! a mail client parses them (`mail-parser`). DKIM signatures are checked
//! by an independent verifier (Python's dkimpy).

#![cfg(unix)]

mod helpers;

mod bounces;
mod crash;
mod dkim;
mod eai;
mod file_transport;
mod message;
mod outage;
mod refusals;
mod relay_tls;
mod retries;
mod return_path;
mod sends;
mod spam;
mod unsubscribe;
mod workers;
