//! One module per group of commands. Each takes the loaded [`Config`] and
//! returns the exit status; errors carry the context the operator needs.
//!
//! [`Config`]: crate::config::Config

pub(crate) mod backup;
pub(crate) mod bounces;
pub(crate) mod compose;
pub(crate) mod dkim;
pub(crate) mod dns;
pub(crate) mod doctor;
pub(crate) mod init;
pub(crate) mod render;
pub(crate) mod send;
pub(crate) mod serve;
pub(crate) mod subscribers;
pub(crate) mod worker;
