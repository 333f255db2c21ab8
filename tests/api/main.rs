//! HTTP tests against a real `subledger serve` process on port 0, each with
//! a fresh data directory.
//!
//! | module | covers |
//! |---|---|
//! | `smoke` | a first request through every layer |
//! | `balances` | postings, exact amounts, the prepaid guard, references, history |
//! | `concurrency` | simultaneous postings: no lost update, guard, one posting per reference |

mod support;

mod balances;
mod concurrency;
mod smoke;
