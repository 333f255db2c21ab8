//! Commands the API sends to the writer. A command carries validated input
//! only; the writer decides it against the current state.

use rust_decimal::Decimal;

use crate::domain::events::{AccountStatus, Actor};
use crate::domain::ids::Sid;
use crate::domain::money::Currency;
use crate::projection::PostingType;

/// A password on its way to being hashed. Its `Debug` never prints it.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, Clone)]
pub struct NewSubAccount {
    pub sid: Sid,
    pub developer: Sid,
    pub login_id: String,
    pub password: Secret,
    pub password_argon2: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub mobile_phone: Option<String>,
    pub domain: String,
    pub currency: Currency,
    pub sip_sid: Sid,
    pub alias_sid: Sid,
}

#[derive(Debug, Clone, Default)]
pub struct SubAccountChanges {
    pub password_argon2: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub mobile_phone: Option<String>,
    pub domain: Option<String>,
    pub status: Option<AccountStatus>,
}

#[derive(Debug, Clone)]
pub struct NewPosting {
    pub sid: Sid,
    pub account: Sid,
    pub kind: PostingType,
    pub amount: Decimal,
    pub pay_method: u16,
    pub refer_trans_id: Option<String>,
    pub desc: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Command {
    CreateDeveloper {
        sid: Sid,
        name: String,
        api_key_sha256: String,
    },
    CreateSubAccount(Box<NewSubAccount>),
    UpdateSubAccount {
        sid: Sid,
        changes: Box<SubAccountChanges>,
    },
    CreateSipAccount {
        sid: Sid,
        account: Sid,
        sip_id: Option<String>,
        domain: Option<String>,
        password: Secret,
    },
    UpdateSipAccount {
        sid: Sid,
        domain: String,
        password: Secret,
    },
    DeleteSipAccount {
        sid: Sid,
    },
    AddAlias {
        sid: Sid,
        sip: Sid,
        alias: String,
    },
    ChangeAlias {
        sid: Sid,
        alias: String,
    },
    RemoveAlias {
        sid: Sid,
    },
    Post(Box<NewPosting>),
}

/// Who sent a command and how to recognise a repeat of it.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub actor: Actor,
    pub request_id: String,
    /// The `Idempotency-Key` header and the request's fingerprint.
    pub idempotency: Option<(String, String)>,
}

/// What a command did, for the handler to render from the new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command changed (or created) this resource.
    Done(Sid),
    /// The command repeats an earlier one; this is the earlier result.
    Replayed(Sid),
}
