//! One module per group of commands. Each takes the loaded [`Config`] and
//! returns the exit status; errors carry the context the operator needs.
//!
//! [`Config`]: crate::config::Config

pub mod render;
pub mod send;
pub mod serve;
pub mod subscribers;
pub mod worker;
