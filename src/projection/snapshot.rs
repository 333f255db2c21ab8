//! The snapshot encoding of `State`: a format prefix, then the stored views
//! in postcard. Transactions are stored once, in posting order, and the
//! indexes over them (by sid, sub-account, developer and reference) are
//! rebuilt when a snapshot is read. That keeps a snapshot small and leaves
//! the decoded maps shaped as live ones, filled in posting order.

use std::sync::Arc;

use super::State;

/// Starts every snapshot encoding: a zero byte and the format version. An
/// encoding of an older format starts with its sequence number, which is
/// never zero in a snapshot, so `decode` rejects it instead of misreading it.
const SNAPSHOT_PREFIX: [u8; 2] = [0, 2];

/// A snapshot that this build cannot read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the snapshot is of another format than version {}", SNAPSHOT_PREFIX[1])]
    Format,
    #[error(transparent)]
    Decode(#[from] postcard::Error),
    #[error("the snapshot's transactions do not fit its other views: {0}")]
    Inconsistent(String),
}

impl State {
    /// Encodes the snapshot: `SNAPSHOT_PREFIX`, then the state in postcard.
    pub fn encode(&self) -> Vec<u8> {
        let encoded = postcard::to_extend(self, SNAPSHOT_PREFIX.to_vec());
        // Serializing into a `Vec` fails only for a sequence of unknown
        // length, and every collection here reports its length.
        encoded.expect("projection state serializes")
    }

    /// Reads a snapshot of this build's format and rebuilds its indexes.
    pub fn decode(bytes: &[u8]) -> Result<State, SnapshotError> {
        let body = bytes.strip_prefix(&SNAPSHOT_PREFIX[..]).ok_or(SnapshotError::Format)?;
        let mut state: State = postcard::from_bytes(body)?;
        for transaction in state.transaction_order.clone().iter() {
            let developer = state
                .accounts
                .get(&transaction.account)
                .map(|account| account.developer)
                .ok_or_else(|| {
                    let reason = format!("account {} does not exist", transaction.account);
                    SnapshotError::Inconsistent(reason)
                })?;
            state
                .index_posting(Arc::clone(transaction), developer)
                .map_err(SnapshotError::Inconsistent)?;
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use rust_decimal::Decimal;

    use super::*;
    use crate::domain::events::{
        Actor, BalancePosted, DeveloperCreated, Event, EventMeta, Leg, SubAccountCreated,
    };
    use crate::domain::ids::{Sid, SidKind};
    use crate::domain::money::Currency;

    fn fold(state: &mut State, actor: Actor, event: Event) {
        let seq = state.last_seq + 1;
        let recorded_at = Utc.timestamp_opt(1_700_000_000 + seq as i64, 0).unwrap();
        let meta = EventMeta { recorded_at, actor, request_id: String::new(), idempotency: None };
        state.apply(seq, &meta, &event).expect("the event applies");
    }

    /// Builds a state with one developer, two sub-accounts and `postings`
    /// TOPUPs of 1.00 spread over them, every other one with a reference.
    fn state_with_postings(postings: usize) -> State {
        let mut state = State::default();
        let developer = Sid::generate(SidKind::Developer);
        let created = DeveloperCreated {
            sid: developer,
            name: "Snapshot".to_string(),
            api_key_sha256: "00".repeat(32),
        };
        fold(&mut state, Actor::Platform, Event::DeveloperCreated(created));
        let accounts = [Sid::generate(SidKind::Account), Sid::generate(SidKind::Account)];
        let actor = Actor::Developer(developer);
        for (index, sid) in accounts.iter().enumerate() {
            let event = Event::SubAccountCreated(SubAccountCreated {
                sid: *sid,
                developer_sid: developer,
                login_id: format!("user{index}"),
                password_argon2: String::new(),
                first_name: None,
                last_name: None,
                email: None,
                mobile_phone: None,
                domain: "sip.example.com".to_string(),
                currency: Currency::DEFAULT,
            });
            fold(&mut state, actor, event);
        }
        let amount = Decimal::ONE;
        for index in 0..postings {
            let account = accounts[index % accounts.len()];
            let balance_after = Decimal::from((index / accounts.len() + 1) as u64);
            let event = Event::BalanceToppedUp(BalancePosted {
                sid: Sid::generate(SidKind::Transaction),
                account_sid: account,
                developer_sid: developer,
                amount,
                currency: Currency::DEFAULT,
                pay_method: 4,
                refer_trans_id: (index % 2 == 0).then(|| format!("PAY-{index}")),
                desc: None,
                legs: [
                    Leg { account: format!("subaccount:{account}"), amount },
                    Leg { account: "funding:paypal".to_string(), amount: -amount },
                ],
                balance_after,
            });
            fold(&mut state, actor, event);
        }
        state
    }

    #[test]
    fn decode_rejects_older_format() {
        // An older snapshot starts with its sequence number as a varint.
        let older = postcard::to_stdvec(&(5u64, 0u8)).expect("encodes");
        let result = State::decode(&older);
        assert!(matches!(result, Err(SnapshotError::Format)), "older format: {result:?}");
    }

    #[test]
    fn empty_state_round_trips() {
        let state = State::default();
        let decoded = State::decode(&state.encode()).expect("decodes");
        assert_eq!(decoded, state, "decoded state");
    }

    #[test]
    fn postings_round_trip() {
        // 150 postings give each sub-account 75, past a short list's 64.
        let state = state_with_postings(150);
        let decoded = State::decode(&state.encode()).expect("decodes");
        assert_eq!(decoded.transactions, state.transactions, "transactions by sid");
        assert_eq!(decoded.account_transactions, state.account_transactions, "by sub-account");
        assert_eq!(decoded.developer_transactions, state.developer_transactions, "by developer");
        assert_eq!(decoded.references, state.references, "references");
        assert_eq!(decoded.ledger_balances, state.ledger_balances, "ledger balances");
        assert_eq!(decoded, state, "whole state");
        assert_eq!(decoded.state_hash(), state.state_hash(), "state hash");
    }

    #[test]
    fn decoded_references_match() {
        let state = state_with_postings(4);
        let decoded = State::decode(&state.encode()).expect("decodes");
        let first = &state.transaction_order[0];
        let developer = state.accounts[&first.account].developer;
        let found = decoded.find_reference(developer, 4, "PAY-0").map(|found| found.sid);
        assert_eq!(found, Some(first.sid), "PAY-0 finds the first posting");
        assert!(decoded.find_reference(developer, 5, "PAY-0").is_none(), "other pay method");
        assert!(decoded.find_reference(developer, 4, "PAY-1").is_none(), "posting without one");
    }
}
