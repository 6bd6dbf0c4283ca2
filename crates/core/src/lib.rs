//! Domain types that more than one letterpress crate needs, and the one
//! URL redactor they all print through.
//!
//! Types here *parse* rather than validate: a [`SubscriberEmail`] can only be
//! built from a string that is a deliverable address, and a
//! [`SubscriberName`] only by the one normalisation every write path uses, so
//! code that holds one never has to check again.

mod email;
mod name;
mod redact;
mod status;

pub use email::{InvalidEmail, SubscriberEmail, normalize_key};
pub use name::{NameTooLong, SubscriberName, terminal_safe};
pub use redact::{redact_url, url_has_password};
pub use status::{SubscriberStatus, UnknownStatus};
