//! Rules of balance postings that need no state: the pay method catalogue,
//! the contra account each posting balances against, and the amount's sign.

use rust_decimal::Decimal;

use crate::domain::error::DomainError;
use crate::projection::PostingType;

/// Pay method codes existing clients send, with the name used in contra
/// account names (`funding:paypal`).
pub const PAY_METHODS: &[(u16, &str, &str)] = &[
    (1, "balance", "pay balance"),
    (2, "yeepay", "YeePay"),
    (3, "cash_on_arrival", "cash on arrival"),
    (4, "paypal", "PayPal"),
    (5, "alipay", "Alipay"),
    (6, "buy_service", "buy service"),
    (7, "system_presented", "system is presented"),
    (8, "unionpay", "UnionPay"),
    (9, "brpay", "brpay"),
    (10, "topup", "top-up"),
    (242, "purchase", "purchase"),
];

/// The ledger account name of ADJUSTMENT postings' contra leg.
pub const ADJUSTMENTS_ACCOUNT: &str = "adjustments";

/// The short name of a pay method code, or `None` for an unknown code.
pub fn pay_method_name(code: u16) -> Option<&'static str> {
    PAY_METHODS.iter().find(|(known, _, _)| *known == code).map(|(_, name, _)| *name)
}

/// Parses a `pay_method` parameter: one of the known codes, written as ASCII
/// digits only. `str::parse` alone would also take a leading `+`.
pub fn parse_pay_method(text: &str) -> Result<u16, DomainError> {
    let known: Vec<String> = PAY_METHODS.iter().map(|(code, _, _)| code.to_string()).collect();
    let reason = || format!("pay_method must be one of {}", known.join(", "));
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(DomainError::invalid("pay_method", reason()));
    }
    let code: u16 = text.parse().map_err(|_| DomainError::invalid("pay_method", reason()))?;
    match pay_method_name(code) {
        Some(_) => Ok(code),
        None => Err(DomainError::invalid("pay_method", reason())),
    }
}

/// The contra account a posting balances against: `funding:<method>` for a
/// TOPUP, `adjustments` for an ADJUSTMENT.
pub fn contra_account(kind: PostingType, pay_method: u16) -> String {
    match kind {
        PostingType::TopUp => {
            let name = pay_method_name(pay_method).unwrap_or("unknown");
            format!("funding:{name}")
        }
        PostingType::Adjustment => ADJUSTMENTS_ACCOUNT.to_string(),
    }
}

/// Checks the amount's sign for the posting type: a TOPUP is positive, an
/// ADJUSTMENT is non-zero and may be negative.
pub fn check_amount_sign(kind: PostingType, amount: Decimal) -> Result<(), DomainError> {
    match kind {
        PostingType::TopUp if amount <= Decimal::ZERO => {
            Err(DomainError::invalid("amount", "a TOPUP amount must be positive"))
        }
        PostingType::Adjustment if amount.is_zero() => {
            Err(DomainError::invalid("amount", "an ADJUSTMENT amount must not be zero"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pay_method_accepts_known_codes() {
        for (code, _, _) in PAY_METHODS {
            assert_eq!(parse_pay_method(&code.to_string()).ok(), Some(*code), "code {code}");
        }
    }

    #[test]
    fn pay_method_rejects_unknown_codes() {
        for text in ["0", "11", "241", "243", "-1", "", "4.0", "x", "65536", " 4", "+4", "4 "] {
            assert!(parse_pay_method(text).is_err(), "{text:?} must be rejected");
        }
    }

    #[test]
    fn contra_account_names_method() {
        assert_eq!(contra_account(PostingType::TopUp, 4), "funding:paypal");
        assert_eq!(contra_account(PostingType::TopUp, 242), "funding:purchase");
        assert_eq!(contra_account(PostingType::Adjustment, 4), "adjustments");
    }

    #[test]
    fn amount_sign_by_type() {
        let one = Decimal::ONE;
        assert!(check_amount_sign(PostingType::TopUp, one).is_ok());
        assert!(check_amount_sign(PostingType::TopUp, Decimal::ZERO).is_err());
        assert!(check_amount_sign(PostingType::TopUp, -one).is_err());
        assert!(check_amount_sign(PostingType::Adjustment, -one).is_ok());
        assert!(check_amount_sign(PostingType::Adjustment, Decimal::ZERO).is_err());
    }
}
