//! The write side: commands, the rules that decide them, the single writer
//! with group commit, and recovery of the projections at start.

pub mod command;
pub mod decide;
pub mod recovery;
pub mod writer;

pub use command::{Command, CommandContext, Outcome, Secret};
pub use writer::{Ledger, WriterConfig};
