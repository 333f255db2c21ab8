//! Deciding commands: each command is checked against the current state and
//! turned into the events that record it, or rejected with a `DomainError`.
//! Deciding never changes the state; the writer applies the events.

use rust_decimal::Decimal;

use crate::crypto::sip_digests;
use crate::domain::error::DomainError;
use crate::domain::events::{
    AccountStatus, BalancePosted, DeveloperCreated, Event, Leg, SipAccountCreated,
    SipAccountDeleted, SipAccountUpdated, SipAliasAdded, SipAliasChanged, SipAliasRemoved,
    SubAccountCreated, SubAccountStatusChanged, SubAccountUpdated,
};
use crate::domain::ids::Sid;
use crate::domain::money::{checked_add, format_amount, format_balance};
use crate::domain::posting::contra_account;
use crate::domain::text::{fold_name, FieldError};
use crate::ledger::command::{Command, NewPosting, NewSubAccount, Outcome, SubAccountChanges};
use crate::projection::model::{Account, SipAccount};
use crate::projection::{sip_name_key, subaccount_ledger_name, PostingType, State};

/// Aliases one SIP account may have.
pub const ALIASES_PER_SIP_ACCOUNT_MAX: usize = 100;
/// Tries at drawing a free generated name before giving up.
const GENERATED_NAME_TRIES_MAX: usize = 64;

/// The events a command produces and the resource it is about.
pub struct Decision {
    pub events: Vec<Event>,
    pub outcome: Outcome,
}

fn done(events: Vec<Event>, sid: Sid) -> Decision {
    Decision { events, outcome: Outcome::Done(sid) }
}

pub fn decide(state: &State, command: &Command) -> Result<Decision, DomainError> {
    match command {
        Command::CreateDeveloper { sid, name, api_key_sha256 } => {
            if state.developers.contains_key(sid) {
                return Err(DomainError::ConcurrencyConflict(format!("developer {sid} exists")));
            }
            let event = Event::DeveloperCreated(DeveloperCreated {
                sid: *sid,
                name: name.clone(),
                api_key_sha256: api_key_sha256.clone(),
            });
            Ok(done(vec![event], *sid))
        }
        Command::CreateSubAccount(new) => create_sub_account(state, new),
        Command::UpdateSubAccount { sid, changes } => update_sub_account(state, *sid, changes),
        Command::CreateSipAccount { sid, account, sip_id, domain, password } => {
            let account = open_account(state, *account)?;
            let domain = domain.clone().unwrap_or_else(|| account.domain.to_string());
            let sip_id = match sip_id {
                Some(sip_id) => {
                    check_name_free(state, &domain, sip_id, None)?;
                    sip_id.clone()
                }
                None => generate_free_name(state, &domain, "sip")?,
            };
            let event = Event::SipAccountCreated(SipAccountCreated {
                sid: *sid,
                account_sid: account.sid,
                digests: sip_digests(&sip_id, &domain, &password.0),
                sip_id,
                domain,
            });
            Ok(done(vec![event], *sid))
        }
        Command::UpdateSipAccount { sid, domain, password } => {
            let sip = sip_account(state, *sid)?;
            open_account(state, sip.account)?;
            if !sip.domain.eq_ignore_ascii_case(domain) {
                check_name_free(state, domain, &sip.sip_id, None)?;
                for alias_sid in sip.aliases.iter() {
                    let alias = &state.sip_aliases[alias_sid];
                    check_name_free(state, domain, &alias.alias, None)?;
                }
            }
            let event = Event::SipAccountUpdated(SipAccountUpdated {
                sid: *sid,
                account_sid: sip.account,
                domain: domain.clone(),
                digests: sip_digests(&sip.sip_id, domain, &password.0),
            });
            Ok(done(vec![event], *sid))
        }
        Command::DeleteSipAccount { sid } => {
            let sip = sip_account(state, *sid)?;
            open_account(state, sip.account)?;
            let event = Event::SipAccountDeleted(SipAccountDeleted {
                sid: *sid,
                account_sid: sip.account,
                alias_sids: sip.aliases.iter().copied().collect(),
            });
            Ok(done(vec![event], *sid))
        }
        Command::AddAlias { sid, sip, alias } => {
            let sip = sip_account(state, *sip)?;
            open_account(state, sip.account)?;
            if sip.aliases.len() >= ALIASES_PER_SIP_ACCOUNT_MAX {
                let message = format!(
                    "SIP account {} already has {ALIASES_PER_SIP_ACCOUNT_MAX} aliases, the maximum",
                    sip.sid
                );
                return Err(DomainError::LimitReached(message));
            }
            check_name_free(state, &sip.domain, alias, None)?;
            let event = Event::SipAliasAdded(SipAliasAdded {
                sid: *sid,
                account_sid: sip.account,
                sip_sid: sip.sid,
                alias: alias.clone(),
                domain: sip.domain.clone(),
            });
            Ok(done(vec![event], *sid))
        }
        Command::ChangeAlias { sid, alias } => {
            let current = state.sip_aliases.get(sid).ok_or(DomainError::NotFound("SIP alias"))?;
            open_account(state, current.account)?;
            check_name_free(state, &current.domain, alias, Some(*sid))?;
            let event = Event::SipAliasChanged(SipAliasChanged {
                sid: *sid,
                sip_sid: current.sip,
                alias: alias.clone(),
            });
            Ok(done(vec![event], *sid))
        }
        Command::RemoveAlias { sid } => {
            let current = state.sip_aliases.get(sid).ok_or(DomainError::NotFound("SIP alias"))?;
            open_account(state, current.account)?;
            let event = Event::SipAliasRemoved(SipAliasRemoved { sid: *sid, sip_sid: current.sip });
            Ok(done(vec![event], *sid))
        }
        Command::Post(posting) => post(state, posting),
    }
}

fn create_sub_account(state: &State, new: &NewSubAccount) -> Result<Decision, DomainError> {
    if !state.developers.contains_key(&new.developer) {
        return Err(DomainError::NotFound("developer"));
    }
    if state.logins.contains_key(fold_name(&new.login_id).as_str()) {
        let message = format!("login_id {:?} is already taken", new.login_id);
        return Err(DomainError::NameTaken(message));
    }
    check_name_free(state, &new.domain, &new.login_id, None)?;
    let alias = generate_free_alias(state, &new.domain)?;

    let events = vec![
        Event::SubAccountCreated(SubAccountCreated {
            sid: new.sid,
            developer_sid: new.developer,
            login_id: new.login_id.clone(),
            password_argon2: new.password_argon2.clone(),
            first_name: new.first_name.clone(),
            last_name: new.last_name.clone(),
            email: new.email.clone(),
            mobile_phone: new.mobile_phone.clone(),
            domain: new.domain.clone(),
            currency: new.currency,
        }),
        Event::SipAccountCreated(SipAccountCreated {
            sid: new.sip_sid,
            account_sid: new.sid,
            sip_id: new.login_id.clone(),
            domain: new.domain.clone(),
            digests: sip_digests(&new.login_id, &new.domain, &new.password.0),
        }),
        Event::SipAliasAdded(SipAliasAdded {
            sid: new.alias_sid,
            account_sid: new.sid,
            sip_sid: new.sip_sid,
            alias,
            domain: new.domain.clone(),
        }),
    ];
    Ok(done(events, new.sid))
}

fn update_sub_account(
    state: &State,
    sid: Sid,
    changes: &SubAccountChanges,
) -> Result<Decision, DomainError> {
    let account = open_account(state, sid)?;
    let mut events = Vec::new();

    let update = SubAccountUpdated {
        sid,
        password_argon2: changes.password_argon2.clone(),
        first_name: changes.first_name.clone(),
        last_name: changes.last_name.clone(),
        email: changes.email.clone(),
        mobile_phone: changes.mobile_phone.clone(),
        domain: changes.domain.clone(),
    };
    if update.changes_anything() {
        events.push(Event::SubAccountUpdated(update));
    }
    if let Some(status) = changes.status {
        if status != account.status {
            events.push(Event::SubAccountStatusChanged(SubAccountStatusChanged {
                sid,
                from: account.status,
                to: status,
            }));
        }
    }
    Ok(done(events, sid))
}

fn post(state: &State, posting: &NewPosting) -> Result<Decision, DomainError> {
    let account = state.accounts.get(&posting.account).ok_or(DomainError::NotFound("account"))?;

    // A repeated reference returns the original transaction, or names what
    // differs. It is checked before the closed rule, so that a client
    // retrying an acknowledged posting learns it landed.
    if let Some(reference) = &posting.refer_trans_id {
        if let Some(original) =
            state.find_reference(account.developer, posting.pay_method, reference)
        {
            let mut differing = Vec::new();
            if original.account() != posting.account {
                differing.push(FieldError::new("account_sid", "differs from the original posting"));
            }
            if original.amount != posting.amount {
                let reason =
                    format!("the original posting's amount is {}", format_amount(original.amount));
                differing.push(FieldError::new("amount", reason));
            }
            if original.kind != posting.kind {
                let reason = format!("the original posting's type is {}", original.kind.as_str());
                differing.push(FieldError::new("type", reason));
            }
            if original.desc() != posting.desc.as_deref() {
                differing.push(FieldError::new("desc", "differs from the original posting"));
            }
            if differing.is_empty() {
                return Ok(Decision {
                    events: Vec::new(),
                    outcome: Outcome::Replayed(original.sid()),
                });
            }
            let names: Vec<&str> = differing.iter().map(|field| field.field).collect();
            let message = format!(
                "refer_trans_id {reference:?} with pay_method {} was already used by {} with a different {}",
                posting.pay_method,
                original.sid(),
                names.join(", ")
            );
            return Err(DomainError::IdempotencyMismatch { message, fields: differing });
        }
    }

    if account.status == AccountStatus::Closed {
        return Err(closed(account));
    }
    let balance_after = checked_add(account.balance, posting.amount)
        .ok_or_else(|| DomainError::invalid("amount", "the balance would overflow"))?;
    if balance_after < Decimal::ZERO {
        let message = format!(
            "insufficient balance: the balance is {} and the posting would take it to {}",
            format_balance(account.balance, account.currency),
            format_balance(balance_after, account.currency)
        );
        return Err(DomainError::InsufficientBalance(message));
    }

    let contra_amount = -posting.amount;
    let posted = BalancePosted {
        sid: posting.sid,
        account_sid: posting.account,
        developer_sid: account.developer,
        amount: posting.amount,
        currency: account.currency,
        pay_method: posting.pay_method,
        refer_trans_id: posting.refer_trans_id.clone(),
        desc: posting.desc.clone(),
        legs: [
            Leg {
                account: subaccount_ledger_name(posting.account).to_string(),
                amount: posting.amount,
            },
            Leg {
                account: contra_account(posting.kind, posting.pay_method),
                amount: contra_amount,
            },
        ],
        balance_after,
    };
    let event = match posting.kind {
        PostingType::TopUp => Event::BalanceToppedUp(posted),
        PostingType::Adjustment => Event::BalanceAdjusted(posted),
    };
    Ok(done(vec![event], posting.sid))
}

fn closed(account: &Account) -> DomainError {
    DomainError::Closed(format!("sub-account {} is closed and can no longer change", account.sid))
}

/// The sub-account, which must exist and not be closed.
fn open_account(state: &State, sid: Sid) -> Result<&Account, DomainError> {
    let account = state.accounts.get(&sid).ok_or(DomainError::NotFound("account"))?;
    if account.status == AccountStatus::Closed {
        return Err(closed(account));
    }
    Ok(account)
}

fn sip_account(state: &State, sid: Sid) -> Result<&SipAccount, DomainError> {
    state.sip_accounts.get(&sid).map(|sip| sip.as_ref()).ok_or(DomainError::NotFound("SIP account"))
}

/// Checks that `name` is free in `domain`'s namespace of SIP ids and
/// aliases; `owner` may already hold it (renaming an alias to itself).
fn check_name_free(
    state: &State,
    domain: &str,
    name: &str,
    owner: Option<Sid>,
) -> Result<(), DomainError> {
    match state.sip_names.get(&sip_name_key(domain, name)) {
        Some(holder) if Some(*holder) != owner => {
            let message =
                format!("{name:?} is already taken in domain {domain} by a SIP id or alias");
            Err(DomainError::NameTaken(message))
        }
        _ => Ok(()),
    }
}

/// Draws a SIP id such as `sip4821937650` that is free in `domain`.
fn generate_free_name(state: &State, domain: &str, prefix: &str) -> Result<String, DomainError> {
    for _ in 0..GENERATED_NAME_TRIES_MAX {
        let name = format!("{prefix}{:010}", rand::random::<u64>() % 10_000_000_000);
        if !state.sip_names.contains_key(&sip_name_key(domain, &name)) {
            return Ok(name);
        }
    }
    Err(DomainError::NameTaken(format!("no free generated name left in domain {domain}")))
}

/// Draws a default alias: a 10-digit number free in `domain`.
fn generate_free_alias(state: &State, domain: &str) -> Result<String, DomainError> {
    for _ in 0..GENERATED_NAME_TRIES_MAX {
        let low = 1_000_000_000u64;
        let alias = (low + rand::random::<u64>() % (9 * low)).to_string();
        if !state.sip_names.contains_key(&sip_name_key(domain, &alias)) {
            return Ok(alias);
        }
    }
    Err(DomainError::NameTaken(format!("no free generated alias left in domain {domain}")))
}

#[cfg(test)]
mod tests {
    //! The sub-account rules as given events / when command / then events.

    use chrono::Utc;

    use super::*;
    use crate::domain::events::{Actor, EventMeta};
    use crate::domain::ids::SidKind;
    use crate::domain::money::Currency;
    use crate::ledger::command::Secret;

    const DOMAIN: &str = "sip.example.com";
    const PASSWORD: &str = "secret123";

    fn developer() -> Sid {
        Sid::new(SidKind::Developer, 1)
    }

    fn account() -> Sid {
        Sid::new(SidKind::Account, 1)
    }

    fn developer_created() -> Event {
        Event::DeveloperCreated(DeveloperCreated {
            sid: developer(),
            name: "Acme".into(),
            api_key_sha256: "00".repeat(32),
        })
    }

    fn sub_account_fields(sid: Sid, login_id: &str) -> SubAccountCreated {
        SubAccountCreated {
            sid,
            developer_sid: developer(),
            login_id: login_id.into(),
            password_argon2: "$argon2id$placeholder".into(),
            first_name: None,
            last_name: None,
            email: None,
            mobile_phone: None,
            domain: DOMAIN.into(),
            currency: Currency::DEFAULT,
        }
    }

    fn sub_account_created(sid: Sid, login_id: &str) -> Event {
        Event::SubAccountCreated(sub_account_fields(sid, login_id))
    }

    fn sip_account_created(sid: Sid, account: Sid, sip_id: &str, domain: &str) -> Event {
        Event::SipAccountCreated(SipAccountCreated {
            sid,
            account_sid: account,
            sip_id: sip_id.into(),
            domain: domain.into(),
            digests: sip_digests(sip_id, domain, PASSWORD),
        })
    }

    fn status_changed(from: AccountStatus, to: AccountStatus) -> Event {
        Event::SubAccountStatusChanged(SubAccountStatusChanged { sid: account(), from, to })
    }

    /// Folds `events` in order into an empty state.
    fn given(events: &[Event]) -> State {
        let mut state = State::default();
        let meta = EventMeta {
            recorded_at: Utc::now(),
            actor: Actor::Platform,
            request_id: "test".into(),
            idempotency: None,
        };
        for event in events {
            let seq = state.last_seq + 1;
            state.apply(seq, &meta, event).expect("given events apply");
        }
        state
    }

    /// Decides `command` against `state` and returns its events.
    fn when(state: &State, command: Command) -> Result<Vec<Event>, DomainError> {
        decide(state, &command).map(|decision| decision.events)
    }

    fn new_sub_account(login_id: &str, domain: &str) -> NewSubAccount {
        NewSubAccount {
            sid: account(),
            developer: developer(),
            login_id: login_id.into(),
            password: Secret(PASSWORD.into()),
            password_argon2: "$argon2id$placeholder".into(),
            first_name: Some("Alice".into()),
            last_name: None,
            email: Some("alice@example.com".into()),
            mobile_phone: None,
            domain: domain.into(),
            currency: Currency::DEFAULT,
            sip_sid: Sid::new(SidKind::SipAccount, 1),
            alias_sid: Sid::new(SidKind::SipAlias, 1),
        }
    }

    fn create(login_id: &str, domain: &str) -> Command {
        Command::CreateSubAccount(Box::new(new_sub_account(login_id, domain)))
    }

    fn update(changes: SubAccountChanges) -> Command {
        Command::UpdateSubAccount { sid: account(), changes: Box::new(changes) }
    }

    fn set_status(status: AccountStatus) -> Command {
        update(SubAccountChanges { status: Some(status), ..SubAccountChanges::default() })
    }

    /// Builds a state with a developer, one sub-account with its default SIP
    /// account, and `more` events after them.
    fn with_account(more: &[Event]) -> State {
        let mut events = vec![
            developer_created(),
            sub_account_created(account(), "alice01"),
            sip_account_created(Sid::new(SidKind::SipAccount, 1), account(), "alice01", DOMAIN),
        ];
        events.extend_from_slice(more);
        given(&events)
    }

    #[test]
    fn create_emits_account_sip_and_alias() {
        let state = given(&[developer_created()]);

        let events = when(&state, create("alice01", DOMAIN)).expect("create is accepted");

        assert_eq!(events.len(), 3, "three events: {events:?}");
        let expected_account = Event::SubAccountCreated(SubAccountCreated {
            first_name: Some("Alice".into()),
            email: Some("alice@example.com".into()),
            ..sub_account_fields(account(), "alice01")
        });
        assert_eq!(events[0], expected_account, "the sub-account");
        let expected_sip =
            sip_account_created(Sid::new(SidKind::SipAccount, 1), account(), "alice01", DOMAIN);
        assert_eq!(events[1], expected_sip, "the default SIP account takes login_id and password");
        let Event::SipAliasAdded(alias) = &events[2] else {
            panic!("third event is an alias: {:?}", events[2]);
        };
        assert_eq!(alias.sip_sid, Sid::new(SidKind::SipAccount, 1), "alias of the default SIP");
        assert_eq!(alias.domain, DOMAIN, "alias domain");
        assert_eq!(alias.alias.len(), 10, "alias is ten digits: {}", alias.alias);
        assert!(alias.alias.bytes().all(|b| b.is_ascii_digit()), "alias digits: {}", alias.alias);
    }

    #[test]
    fn create_unknown_developer() {
        let state = given(&[]);

        let result = when(&state, create("alice01", DOMAIN));

        assert_eq!(result.unwrap_err(), DomainError::NotFound("developer"));
    }

    #[test]
    fn create_login_taken_any_case() {
        let state = given(&[developer_created(), sub_account_created(account(), "Alice01")]);

        let mut new = new_sub_account("alice01", "other.example.com");
        new.sid = Sid::new(SidKind::Account, 2);
        let result = when(&state, Command::CreateSubAccount(Box::new(new)));

        assert!(matches!(result, Err(DomainError::NameTaken(_))), "got {result:?}");
    }

    #[test]
    fn create_login_taken_as_sip_name() {
        let other = Sid::new(SidKind::Account, 2);
        let state = given(&[
            developer_created(),
            sub_account_created(other, "carol01"),
            sip_account_created(Sid::new(SidKind::SipAccount, 2), other, "bob01", DOMAIN),
        ]);

        let same_domain = when(&state, create("BOB01", DOMAIN));
        let other_domain = when(&state, create("BOB01", "other.example.com"));

        assert!(matches!(same_domain, Err(DomainError::NameTaken(_))), "got {same_domain:?}");
        assert!(other_domain.is_ok(), "another domain is free: {other_domain:?}");
    }

    #[test]
    fn suspend_then_reactivate() {
        use AccountStatus::{Active, Suspended};
        let active = with_account(&[]);
        let suspended = with_account(&[status_changed(Active, Suspended)]);

        let suspending = when(&active, set_status(Suspended)).expect("suspend");
        let reactivating = when(&suspended, set_status(Active)).expect("reactivate");

        assert_eq!(suspending, vec![status_changed(Active, Suspended)], "active to suspended");
        assert_eq!(reactivating, vec![status_changed(Suspended, Active)], "suspended to active");
    }

    #[test]
    fn close_from_either_status() {
        use AccountStatus::{Active, Closed, Suspended};
        let active = with_account(&[]);
        let suspended = with_account(&[status_changed(Active, Suspended)]);

        let from_active = when(&active, set_status(Closed)).expect("close an active account");
        let from_suspended = when(&suspended, set_status(Closed)).expect("close a suspended one");

        assert_eq!(from_active, vec![status_changed(Active, Closed)], "active to closed");
        assert_eq!(from_suspended, vec![status_changed(Suspended, Closed)], "suspended to closed");
    }

    #[test]
    fn closed_rejects_every_change() {
        use AccountStatus::{Active, Closed, Suspended};
        let closed = with_account(&[status_changed(Active, Closed)]);
        let cases = [
            ("reopen", set_status(Active)),
            ("suspend", set_status(Suspended)),
            ("close again", set_status(Closed)),
            (
                "rename",
                update(SubAccountChanges {
                    first_name: Some("Bob".into()),
                    ..SubAccountChanges::default()
                }),
            ),
            ("no change", update(SubAccountChanges::default())),
        ];

        for (case, command) in cases {
            let result = when(&closed, command);
            assert!(matches!(result, Err(DomainError::Closed(_))), "case {case}: got {result:?}");
        }
    }

    #[test]
    fn same_status_emits_nothing() {
        let state = with_account(&[]);

        let events = when(&state, set_status(AccountStatus::Active)).expect("accepted");

        assert!(events.is_empty(), "no events: {events:?}");
    }

    #[test]
    fn profile_and_status_change() {
        use AccountStatus::{Active, Suspended};
        let state = with_account(&[]);
        let changes = SubAccountChanges {
            first_name: Some("Bob".into()),
            email: Some("bob@example.com".into()),
            status: Some(Suspended),
            ..SubAccountChanges::default()
        };

        let events = when(&state, update(changes)).expect("accepted");

        let expected_update = Event::SubAccountUpdated(SubAccountUpdated {
            sid: account(),
            password_argon2: None,
            first_name: Some("Bob".into()),
            last_name: None,
            email: Some("bob@example.com".into()),
            mobile_phone: None,
            domain: None,
        });
        assert_eq!(events.len(), 2, "two events: {events:?}");
        assert_eq!(events[0], expected_update, "profile first");
        assert_eq!(events[1], status_changed(Active, Suspended), "then the status");
    }

    #[test]
    fn update_unknown_account() {
        let state = given(&[developer_created()]);

        let result = when(&state, set_status(AccountStatus::Suspended));

        assert_eq!(result.unwrap_err(), DomainError::NotFound("account"));
    }
}
