//! HTTP tests against a real `subledger serve` process on port 0, each with
//! a fresh data directory.
//!
//! | module | covers |
//! |---|---|
//! | `smoke` | a first request through every layer |

mod support;

mod smoke;
