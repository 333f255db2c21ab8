//! HTTP tests against a real `subledger serve` process on port 0, each with
//! a fresh data directory.
//!
//! | module | covers |
//! |---|---|
//! | `smoke` | a first request through every layer |
//! | `accounts` | sub-accounts: field rules, AES passwords, default SIP account, status, lists |
//! | `auth` | developers, HTTP Basic authentication, tenancy: another developer's data is 404 |
//! | `input` | bad input: bodies, UTF-8, content types, repeated or unknown names, sizes, routes |
//! | `durability` | restart and SIGKILL: same state, acknowledged creates survive, no secret logged |
//! | `balances` | postings, exact amounts, the prepaid guard, references, history |
//! | `concurrency` | simultaneous postings: no lost update, guard, one posting per reference |
//! | `sip` | SIP accounts and aliases: names, limits, passwords, status, tenancy |
//! | `formats` | JSON and XML by suffix and `Accept`, on every kind of route and error |
//! | `metrics` | `/metrics`: the Prometheus text format, request counts by route, ledger figures |
//! | `openapi` | the OpenAPI document: committed copy, route table, references, response schemas |
//! | `audit` | offline verify, replay, export and reconcile; snapshot starts; the events endpoint |
//! | `crash` | SIGKILL at random moments under concurrent postings: nothing acknowledged is lost |

mod support;

mod accounts;
mod audit;
mod auth;
mod balances;
mod concurrency;
mod crash;
mod durability;
mod formats;
mod input;
mod metrics;
mod openapi;
mod sip;
mod sip_restarts;
mod smoke;
