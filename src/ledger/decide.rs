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
            let domain = domain.clone().unwrap_or_else(|| account.domain.clone());
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
    if state.logins.contains_key(&fold_name(&new.login_id)) {
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
        let key = (account.developer, posting.pay_method, reference.clone());
        if let Some(original_sid) = state.references.get(&key) {
            let original = &state.transactions[original_sid];
            let mut differing = Vec::new();
            if original.account != posting.account {
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
            if original.desc != posting.desc {
                differing.push(FieldError::new("desc", "differs from the original posting"));
            }
            if differing.is_empty() {
                return Ok(Decision {
                    events: Vec::new(),
                    outcome: Outcome::Replayed(original.sid),
                });
            }
            let names: Vec<&str> = differing.iter().map(|field| field.field).collect();
            let message = format!(
                "refer_trans_id {reference:?} with pay_method {} was already used by {} with a different {}",
                posting.pay_method,
                original.sid,
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
            Leg { account: subaccount_ledger_name(posting.account), amount: posting.amount },
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
