//! The letterpress delivery engine.
//!
//! A [`Worker`] claims due deliveries from the store under a lease, builds
//! each recipient's message from the once-composed issue
//! ([`IssueMessages`]), waits for the [`Throttle`], hands the message to the
//! [`Transport`] and records what happened as the outcome the policy
//! (`policy.rs`, a pure function) decides: sent, deferred on the
//! [`RetryPolicy`], bounced, failed or skipped. Policy lives here; the
//! store only runs the queries.

mod build_pool;
mod encoded;
mod leases;
mod message;
mod policy;
mod relay_id;
mod retry;
mod smtp;
mod status_gate;
mod throttle;
mod transport;
mod worker;

pub use message::{
    Built, IssueMessages, MessageError, MessageSettings, Outgoing, To, dkim_signed_headers,
    header_safe,
};
pub use policy::{Happened, NoReply, Verdict};
pub use retry::RetryPolicy;
pub use smtp::{
    BareLineEnd, Class, EnhancedCode, Probe, ProbedTls, Reply, SendError, SmtpClient, Stage,
    Target, TargetError, TrustedCa,
};
pub use throttle::Throttle;
pub use transport::{Attempt, SmtpSettings, Transport, TransportError, outbox_file_stem};
pub use worker::{
    BoxFuture, IssueLoader, LoadError, Progress, Until, Worker, WorkerError, WorkerSettings,
};
