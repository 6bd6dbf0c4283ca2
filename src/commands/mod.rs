//! One module per group of commands. Each takes the loaded [`Config`] and
//! returns the exit status; errors carry the context the operator needs.
//!
//! [`Config`]: crate::config::Config

pub(crate) mod render;
pub(crate) mod send;
pub(crate) mod serve;
pub(crate) mod subscribers;
pub(crate) mod worker;
