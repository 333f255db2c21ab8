//! subledger: sub-accounts, SIP accounts and aliases, and a prepaid balance
//! per sub-account, kept as an append-only, hash-chained event log with
//! projections rebuilt from it and served over a REST API.

pub mod api;
pub mod audit;
pub mod crypto;
pub mod domain;
pub mod ledger;
pub mod memory;
pub mod projection;
pub mod server;
pub mod store;
