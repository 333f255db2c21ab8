//! Input rules for the text fields of the API: free text (names, email, desc,
//! refer_trans_id), login and SIP ids, phone numbers, domains, passwords and
//! aliases. Every function is pure, and a rejected value gives a [`FieldError`]
//! that names the API parameter and the rule it broke.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// Maximum length of `first_name` and `last_name`, in characters after NFC.
pub const NAME_CHARS_MAX: usize = 64;
/// Maximum length of `email`, in characters after NFC.
pub const EMAIL_CHARS_MAX: usize = 254;
/// Maximum length of `desc`, in characters after NFC.
pub const DESC_CHARS_MAX: usize = 512;
/// Maximum length of `refer_trans_id`, in characters after NFC.
pub const REFER_TRANS_ID_CHARS_MAX: usize = 128;
/// Maximum length of `domain`, in ASCII characters.
pub const DOMAIN_CHARS_MAX: usize = 253;
/// Maximum length of `alias`, in ASCII characters.
pub const ALIAS_CHARS_MAX: usize = 32;

const LOGIN_ID_CHARS_MIN: usize = 4;
const LOGIN_ID_CHARS_MAX: usize = 32;
const PHONE_DIGITS_MIN: usize = 4;
const PHONE_DIGITS_MAX: usize = 15;
const DOMAIN_LABEL_CHARS_MAX: usize = 63;
const PASSWORD_CHARS_MIN: usize = 8;
const PASSWORD_CHARS_MAX: usize = 128;

/// One invalid field: `field` is the API parameter name, `reason` a plain
/// sentence for the API client that starts with the parameter name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        FieldError { field, reason: reason.into() }
    }
}

/// Displays the reason alone, because every reason already names the field.
impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for FieldError {}

/// Applies the free-text rule and returns the NFC form of `value`, untrimmed.
///
/// The value is rejected when it is empty or has more than `max_chars`
/// characters after NFC normalization. It is also rejected when it contains a
/// control character (category Cc, such as tab, line feed and U+007F..U+009F)
/// or a bidirectional formatting character. A value of only white space and
/// invisible format characters (category Cf, such as U+200B and U+FEFF) is
/// rejected as blank.
pub fn normalize_text(
    field: &'static str,
    value: &str,
    max_chars: usize,
) -> Result<String, FieldError> {
    let normalized: String = value.nfc().collect();

    if normalized.is_empty() {
        return Err(FieldError::new(field, format!("{field} must not be empty")));
    }

    if let Some((position, c)) = find_char(&normalized, char::is_control) {
        return Err(FieldError::new(
            field,
            format!(
                "{field} must not contain control characters such as tab, line feed or NUL \
                 (found U+{:04X} at character {position})",
                u32::from(c)
            ),
        ));
    }

    if let Some((position, c)) = find_char(&normalized, is_bidi_format) {
        return Err(FieldError::new(
            field,
            format!(
                "{field} must not contain bidirectional formatting characters \
                 (found U+{:04X} at character {position})",
                u32::from(c)
            ),
        ));
    }

    if normalized.chars().all(|c| c.is_whitespace() || is_format(c)) {
        return Err(FieldError::new(
            field,
            format!("{field} must contain a visible character, not only white space or invisible formatting characters"),
        ));
    }

    let char_count = normalized.chars().count();
    if char_count > max_chars {
        return Err(FieldError::new(
            field,
            format!("{field} must be at most {max_chars} characters after NFC normalization, but it has {char_count}"),
        ));
    }

    Ok(normalized)
}

/// Returns the first character matching `predicate` with its 1-based position.
fn find_char(text: &str, predicate: impl Fn(char) -> bool) -> Option<(usize, char)> {
    text.chars().enumerate().find(|&(_, c)| predicate(c)).map(|(index, c)| (index + 1, c))
}

/// Checks for the characters that change the display order of the text around
/// them: ALM, LRM, RLM, the embeddings and overrides, and the isolates.
fn is_bidi_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Checks for Unicode general category Cf (format characters).
///
/// NOTE: the table lists Cf as of Unicode 15.1. A format character added in a
/// later version is treated as visible by the blank check.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Validates a `login_id` or `sip_id`: 4 to 32 characters, an ASCII letter
/// first, then ASCII letters, digits, '.', '_' or '-'. Returns the value unchanged.
pub fn validate_login_id(field: &'static str, value: &str) -> Result<String, FieldError> {
    let length_ok = (LOGIN_ID_CHARS_MIN..=LOGIN_ID_CHARS_MAX).contains(&value.len());
    let first_ok = value.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));

    if length_ok && first_ok && rest_ok {
        Ok(value.to_owned())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{field} must be {LOGIN_ID_CHARS_MIN} to {LOGIN_ID_CHARS_MAX} characters: \
                 an ASCII letter, then letters, digits, '.', '_' or '-'"
            ),
        ))
    }
}

/// Builds the case-insensitive key under which a name must be unique: NFC,
/// then full Unicode lower-case, then NFC again. For ASCII login ids this is
/// plain ASCII lower-case.
pub fn fold_name(value: &str) -> String {
    if value.is_ascii() {
        return value.to_ascii_lowercase();
    }

    let composed: String = value.nfc().collect();
    // Lower-casing can produce a sequence that is no longer in NFC, for
    // example U+0130 becomes "i" followed by U+0307, so normalize again.
    composed.to_lowercase().nfc().collect()
}

/// Validates `email`: the free-text rule with at most 254 characters, exactly
/// one '@' with text on both sides, and no white space. Returns the NFC form.
pub fn validate_email(value: &str) -> Result<String, FieldError> {
    const FIELD: &str = "email";
    let normalized = normalize_text(FIELD, value, EMAIL_CHARS_MAX)?;

    if normalized.chars().any(char::is_whitespace) {
        return Err(FieldError::new(FIELD, "email must not contain white space"));
    }

    let mut parts = normalized.split('@');
    let local = parts.next().unwrap_or_default();
    let domain = parts.next();
    let extra = parts.next();

    match (domain, extra) {
        (Some(domain), None) if !local.is_empty() && !domain.is_empty() => Ok(normalized),
        _ => Err(FieldError::new(
            FIELD,
            "email must contain exactly one '@' with text on both sides, such as name@example.com",
        )),
    }
}

/// Validates `mobile_phone`: an optional leading '+', then 4 to 15 ASCII
/// digits and nothing else. Returns the value unchanged.
pub fn validate_mobile_phone(value: &str) -> Result<String, FieldError> {
    let digits = value.strip_prefix('+').unwrap_or(value);
    let length_ok = (PHONE_DIGITS_MIN..=PHONE_DIGITS_MAX).contains(&digits.len());

    if length_ok && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value.to_owned())
    } else {
        Err(FieldError::new(
            "mobile_phone",
            format!(
                "mobile_phone must be an optional '+' followed by {PHONE_DIGITS_MIN} to \
                 {PHONE_DIGITS_MAX} digits, without spaces or other characters"
            ),
        ))
    }
}

/// Validates `domain` as a DNS name and returns it in lower case.
///
/// The name has at most 253 characters and at least two labels separated by
/// single dots. Each label has 1 to 63 ASCII letters, digits or '-', and does
/// not start or end with '-'. The last label is not all digits, so an IPv4
/// address is rejected, and a trailing dot is rejected too.
pub fn validate_domain(value: &str) -> Result<String, FieldError> {
    const FIELD: &str = "domain";
    let reject = |reason: String| Err(FieldError::new(FIELD, reason));

    if value.is_empty() {
        return reject("domain must not be empty".to_owned());
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return reject(
            "domain must contain only ASCII letters, digits, '-' and '.', so an \
             internationalized name must be given in its xn-- (Punycode) form"
                .to_owned(),
        );
    }
    // Only ASCII is left, so the byte length is the character count.
    if value.len() > DOMAIN_CHARS_MAX {
        return reject(format!(
            "domain must be at most {DOMAIN_CHARS_MAX} characters, but it has {}",
            value.len()
        ));
    }
    if value.ends_with('.') {
        return reject("domain must not end with a dot".to_owned());
    }

    let labels: Vec<&str> = value.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return reject(
                "domain must not start with a dot or contain two dots in a row".to_owned(),
            );
        }
        if label.len() > DOMAIN_LABEL_CHARS_MAX {
            return reject(format!(
                "domain labels must be at most {DOMAIN_LABEL_CHARS_MAX} characters, \
                 but one has {}",
                label.len()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return reject("domain labels must not start or end with '-'".to_owned());
        }
    }

    if labels.len() < 2 {
        return reject("domain must have at least two labels, such as example.com".to_owned());
    }
    let last_is_numeric =
        labels.last().is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    if last_is_numeric {
        return reject(
            "domain must not have a last label of all digits, so an IP address is not accepted"
                .to_owned(),
        );
    }

    Ok(value.to_ascii_lowercase())
}

/// Validates a SIP or login password: 8 to 128 printable ASCII characters
/// (0x21..=0x7E, so no spaces) with at least one ASCII letter and one digit.
///
/// The reason never contains the password or its length.
pub fn validate_password(field: &'static str, value: &str) -> Result<(), FieldError> {
    let char_count = value.chars().count();
    if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&char_count) {
        return Err(FieldError::new(
            field,
            format!("{field} must be {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters long"),
        ));
    }
    if !value.bytes().all(|b| (0x21..=0x7E).contains(&b)) {
        return Err(FieldError::new(
            field,
            format!("{field} must contain only printable ASCII characters (0x21 to 0x7E), without spaces"),
        ));
    }

    let has_letter = value.bytes().any(|b| b.is_ascii_alphabetic());
    let has_digit = value.bytes().any(|b| b.is_ascii_digit());
    if !(has_letter && has_digit) {
        return Err(FieldError::new(
            field,
            format!("{field} must contain at least one ASCII letter and one digit"),
        ));
    }

    Ok(())
}

/// Validates `alias`: 1 to 32 ASCII letters, digits, '+', '.', '_' or '-',
/// not starting with '.', '_' or '-'. Returns the value unchanged.
pub fn validate_alias(value: &str) -> Result<String, FieldError> {
    const FIELD: &str = "alias";
    let length_ok = (1..=ALIAS_CHARS_MAX).contains(&value.len());
    let chars_ok =
        value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '_' | '-'));

    if !(length_ok && chars_ok) {
        return Err(FieldError::new(
            FIELD,
            format!("alias must be 1 to {ALIAS_CHARS_MAX} characters of ASCII letters, digits, '+', '.', '_' or '-'"),
        ));
    }
    if value.starts_with(['.', '_', '-']) {
        return Err(FieldError::new(FIELD, "alias must not start with '.', '_' or '-'"));
    }

    Ok(value.to_owned())
}

/// Validates `refer_trans_id` with the free-text rule and at most 128 characters.
pub fn validate_refer_trans_id(value: &str) -> Result<String, FieldError> {
    normalize_text("refer_trans_id", value, REFER_TRANS_ID_CHARS_MAX)
}

/// Rejects a `refer_trans_id` that contains an invisible format character
/// (category Cf, such as U+200B, U+00AD or U+FEFF), which would make it
/// look the same as another reference but count as a new one. Only new
/// references are checked this way, so references that the log already
/// contains stay valid for lookups and retries.
pub fn check_new_refer_trans_id(value: &str) -> Result<(), FieldError> {
    match find_char(value, is_format) {
        None => Ok(()),
        Some((position, c)) => Err(FieldError::new(
            "refer_trans_id",
            format!(
                "refer_trans_id must contain printable characters only, not invisible format \
                 characters (found U+{:04X} at character {position})",
                u32::from(c)
            ),
        )),
    }
}

/// Validates `desc` with the free-text rule and at most 512 characters. An
/// empty desc is invalid like every other text field.
pub fn validate_desc(value: &str) -> Result<String, FieldError> {
    normalize_text("desc", value, DESC_CHARS_MAX)
}

/// Validates `first_name` or `last_name` with the free-text rule and at most 64 characters.
pub fn validate_person_name(field: &'static str, value: &str) -> Result<String, FieldError> {
    normalize_text(field, value, NAME_CHARS_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIDI_CHARS: [char; 12] = [
        '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
        '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
    ];

    fn assert_ok(case: &str, result: Result<String, FieldError>, expected: &str) {
        match result {
            Ok(value) => assert_eq!(value, expected, "case {case}: returned value"),
            Err(error) => panic!("case {case}: expected Ok, got {error:?}"),
        }
    }

    fn assert_rejected(case: &str, result: Result<String, FieldError>, field: &str) -> String {
        match result {
            Ok(value) => panic!("case {case}: expected an error, got Ok({value:?})"),
            Err(error) => {
                assert_eq!(error.field, field, "case {case}: field");
                assert!(
                    error.reason.starts_with(field),
                    "case {case}: reason {:?} starts with the field",
                    error.reason
                );
                error.reason
            }
        }
    }

    #[test]
    fn free_text_valid_classes() {
        let accented_64 = "é".repeat(64);
        let zwj_emoji = "\u{1F468}\u{200D}\u{1F469}";
        let cases: Vec<(&str, &str, &str)> = vec![
            ("plain", "Alice", "Alice"),
            ("inner and outer spaces kept", "  Ann Lee ", "  Ann Lee "),
            ("NFC composes e + U+0301", "Jose\u{301}", "José"),
            ("64 two-byte characters", &accented_64, &accented_64),
            ("zero width joiner inside emoji", zwj_emoji, zwj_emoji),
            ("visible text with U+200B", "a\u{200B}b", "a\u{200B}b"),
            ("no-break space inside", "Jean\u{00A0}Luc", "Jean\u{00A0}Luc"),
        ];
        for (case, input, expected) in cases {
            assert_ok(case, normalize_text("first_name", input, NAME_CHARS_MAX), expected);
        }
    }

    #[test]
    fn free_text_nfc_counts_one_char() {
        let decomposed = "e\u{301}".repeat(64);
        let normalized = normalize_text("first_name", &decomposed, NAME_CHARS_MAX);
        assert_ok("64 decomposed é fit in 64", normalized, &"é".repeat(64));

        let single = normalize_text("first_name", "e\u{301}", 1);
        assert_ok("e + U+0301 is one char", single, "é");
    }

    #[test]
    fn free_text_invalid_classes() {
        let accented_65 = "é".repeat(65);
        let cjk_65 = "漢".repeat(65);
        let cases: Vec<(&str, String, &str)> = vec![
            ("empty", String::new(), "must not be empty"),
            ("only spaces", "   ".to_owned(), "visible character"),
            ("only U+200B", "\u{200B}".to_owned(), "visible character"),
            ("only U+FEFF", "\u{FEFF}\u{FEFF}".to_owned(), "visible character"),
            ("only U+2060", "\u{2060}".to_owned(), "visible character"),
            ("spaces and U+200B", " \u{200B} \u{3000}".to_owned(), "visible character"),
            ("tab", "a\tb".to_owned(), "U+0009"),
            ("line feed", "a\nb".to_owned(), "U+000A"),
            ("carriage return", "a\rb".to_owned(), "U+000D"),
            ("NUL", "a\0b".to_owned(), "U+0000"),
            ("DEL", "a\u{7F}".to_owned(), "U+007F"),
            ("U+0085 next line", "a\u{85}b".to_owned(), "U+0085"),
            ("U+009F", "\u{9F}a".to_owned(), "U+009F"),
            ("65 two-byte characters", accented_65, "at most 64"),
            ("65 three-byte characters", cjk_65, "at most 64"),
        ];
        for (case, input, expected_in_reason) in cases {
            let reason = assert_rejected(
                case,
                normalize_text("first_name", &input, NAME_CHARS_MAX),
                "first_name",
            );
            assert!(
                reason.contains(expected_in_reason),
                "case {case}: reason {reason:?} contains {expected_in_reason:?}"
            );
        }
    }

    #[test]
    fn free_text_control_position() {
        let reason =
            assert_rejected("tab at 3", normalize_text("desc", "ab\tc", DESC_CHARS_MAX), "desc");
        assert!(
            reason.contains("at character 3"),
            "case tab at 3: reason {reason:?} gives the position"
        );
    }

    #[test]
    fn free_text_rejects_each_bidi_char() {
        for c in BIDI_CHARS {
            let case = format!("U+{:04X}", u32::from(c));
            let input = format!("abc{c}def");
            let reason =
                assert_rejected(&case, normalize_text("desc", &input, DESC_CHARS_MAX), "desc");
            assert!(
                reason.contains("bidirectional"),
                "case {case}: reason {reason:?} names the rule"
            );
            assert!(reason.contains(&case), "case {case}: reason {reason:?} names the character");
        }
    }

    #[test]
    fn format_table_covers_bidi_and_invisibles() {
        for c in BIDI_CHARS {
            assert!(is_format(c), "case U+{:04X}: bidi character is Cf", u32::from(c));
        }
        for c in ['\u{200B}', '\u{FEFF}', '\u{2060}', '\u{00AD}', '\u{E0001}'] {
            assert!(is_format(c), "case U+{:04X}: is Cf", u32::from(c));
        }
        for c in ['a', ' ', '\u{00A0}', '\u{0301}', '\u{FE0F}'] {
            assert!(!is_format(c), "case U+{:04X}: is not Cf", u32::from(c));
        }
    }

    #[test]
    fn field_wrappers_use_their_limits() {
        let cases: Vec<(&str, Result<String, FieldError>, bool)> = vec![
            ("desc 512", validate_desc(&"d".repeat(512)), true),
            ("desc 513", validate_desc(&"d".repeat(513)), false),
            ("desc empty", validate_desc(""), false),
            ("refer_trans_id 128", validate_refer_trans_id(&"r".repeat(128)), true),
            ("refer_trans_id 129", validate_refer_trans_id(&"r".repeat(129)), false),
            ("refer_trans_id blank", validate_refer_trans_id(" "), false),
            ("refer_trans_id newline", validate_refer_trans_id("tx-1\n"), false),
            ("last_name 64", validate_person_name("last_name", &"L".repeat(64)), true),
            ("last_name 65", validate_person_name("last_name", &"L".repeat(65)), false),
        ];
        for (case, result, valid) in cases {
            assert_eq!(result.is_ok(), valid, "case {case}: got {result:?}");
        }

        let error = validate_person_name("last_name", "").unwrap_err();
        assert_eq!(error.field, "last_name", "case last_name empty: field");
        let error = validate_refer_trans_id("").unwrap_err();
        assert_eq!(error.field, "refer_trans_id", "case refer_trans_id empty: field");
    }

    #[test]
    fn new_reference_rejects_format_chars() {
        for reference in ["PP-1", "PP-1 ", "paiement-é", "🙂-1"] {
            assert_eq!(check_new_refer_trans_id(reference), Ok(()), "case {reference:?}");
        }
        let cases =
            [("PP\u{200B}-1", 0x200B, 3), ("\u{FEFF}PP-1", 0xFEFF, 1), ("PP-\u{00AD}1", 0xAD, 4)];
        for (reference, code, position) in cases {
            let error = check_new_refer_trans_id(reference).unwrap_err();
            assert_eq!(error.field, "refer_trans_id", "case {reference:?}: field");
            let found = format!("found U+{code:04X} at character {position}");
            assert!(error.reason.contains(&found), "case {reference:?}: {}", error.reason);
        }
    }

    #[test]
    fn login_id_classes() {
        let cases: Vec<(&str, String, bool)> = vec![
            ("3 chars", "abc".to_owned(), false),
            ("4 chars", "abcd".to_owned(), true),
            ("32 chars", format!("a{}", "b".repeat(31)), true),
            ("33 chars", format!("a{}", "b".repeat(32)), false),
            ("empty", String::new(), false),
            ("dot underscore hyphen digits", "a.b_c-d9".to_owned(), true),
            ("upper case", "Alice".to_owned(), true),
            ("digit first", "1abc".to_owned(), false),
            ("dot first", ".abc".to_owned(), false),
            ("underscore first", "_abc".to_owned(), false),
            ("space", "ab cd".to_owned(), false),
            ("at sign", "ab@cd".to_owned(), false),
            ("non-ASCII letter", "ébcd".to_owned(), false),
            ("non-ASCII inside", "abcdé".to_owned(), false),
        ];
        for (case, input, valid) in cases {
            let result = validate_login_id("login_id", &input);
            if valid {
                assert_ok(case, result, &input);
            } else {
                let reason = assert_rejected(case, result, "login_id");
                assert_eq!(
                    reason,
                    "login_id must be 4 to 32 characters: an ASCII letter, then letters, digits, '.', '_' or '-'",
                    "case {case}: reason"
                );
            }
        }

        let error = validate_login_id("sip_id", "x").unwrap_err();
        assert_eq!(error.field, "sip_id", "case sip_id: field");
        assert!(error.reason.starts_with("sip_id "), "case sip_id: reason names sip_id");
    }

    #[test]
    fn fold_name_cases() {
        let cases = [
            ("ASCII", "Alice.Smith", "alice.smith"),
            ("already lower", "bob", "bob"),
            ("precomposed upper", "ÉMILE", "émile"),
            ("decomposed upper", "E\u{301}MILE", "émile"),
            ("German sharp s kept", "Straße", "straße"),
            ("Greek", "ΑΘΗΝΑ", "αθηνα"),
            ("dotted capital I", "\u{130}", "i\u{307}"),
        ];
        for (case, input, expected) in cases {
            assert_eq!(fold_name(input), expected, "case {case}");
        }
        assert_eq!(
            fold_name("Émile"),
            fold_name("e\u{301}mile"),
            "case composed and decomposed fold alike"
        );
    }

    #[test]
    fn email_classes() {
        let max_email = format!("{}@example.com", "a".repeat(EMAIL_CHARS_MAX - 12));
        let long_email = format!("{}@example.com", "a".repeat(EMAIL_CHARS_MAX - 11));
        let valid: Vec<(&str, &str, &str)> = vec![
            ("plain", "alice@example.com", "alice@example.com"),
            ("plus tag", "alice+tag@example.com", "alice+tag@example.com"),
            ("NFC", "jose\u{301}@example.com", "josé@example.com"),
            ("254 chars", &max_email, &max_email),
        ];
        for (case, input, expected) in valid {
            assert_ok(case, validate_email(input), expected);
        }

        let invalid: Vec<(&str, &str)> = vec![
            ("zero '@'", "alice.example.com"),
            ("two '@'", "alice@bob@example.com"),
            ("empty local part", "@example.com"),
            ("empty domain", "alice@"),
            ("only '@'", "@"),
            ("space", "alice smith@example.com"),
            ("leading space", " alice@example.com"),
            ("no-break space", "alice\u{A0}@example.com"),
            ("tab", "alice\t@example.com"),
            ("empty", ""),
            ("255 chars", &long_email),
        ];
        for (case, input) in invalid {
            assert_rejected(case, validate_email(input), "email");
        }
    }

    #[test]
    fn mobile_phone_classes() {
        let cases = [
            ("3 digits", "123", false),
            ("4 digits", "1234", true),
            ("15 digits", "123456789012345", true),
            ("16 digits", "1234567890123456", false),
            ("plus and 4 digits", "+1234", true),
            ("plus and 15 digits", "+491701234567890", true),
            ("plus and 3 digits", "+123", false),
            ("plus and 16 digits", "+1234567890123456", false),
            ("plus only", "+", false),
            ("empty", "", false),
            ("two plus signs", "++1234", false),
            ("plus in the middle", "12+34", false),
            ("space", "+49 170 1234", false),
            ("hyphen", "0170-1234", false),
            ("letter", "1234a", false),
            ("Arabic-Indic digits", "\u{661}\u{662}\u{663}\u{664}", false),
        ];
        for (case, input, valid) in cases {
            let result = validate_mobile_phone(input);
            if valid {
                assert_ok(case, result, input);
            } else {
                assert_rejected(case, result, "mobile_phone");
            }
        }
    }

    /// Builds a domain of exactly `total` characters from labels of 63 characters.
    fn domain_of_length(total: usize) -> String {
        let mut labels = Vec::new();
        let mut remaining = total;
        while remaining > 0 {
            let take = remaining.min(63);
            labels.push("a".repeat(take));
            // A label is followed by a dot unless it is the last one.
            remaining -= take;
            remaining = remaining.saturating_sub(1);
        }
        let domain = labels.join(".");
        assert_eq!(domain.len(), total, "helper builds {total} characters");
        domain
    }

    #[test]
    fn domain_classes() {
        let label_63 = format!("{}.com", "a".repeat(63));
        let label_64 = format!("{}.com", "a".repeat(64));
        let total_253 = domain_of_length(253);
        let total_254 = domain_of_length(254);

        let valid: Vec<(&str, &str, &str)> = vec![
            ("two labels", "example.com", "example.com"),
            ("upper case lowered", "SIP.Example.COM", "sip.example.com"),
            ("hyphen inside", "my-host.example.org", "my-host.example.org"),
            ("digits in labels", "123.example.c0m", "123.example.c0m"),
            ("Punycode", "xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("label 63", &label_63, &label_63),
            ("total 253", &total_253, &total_253),
        ];
        for (case, input, expected) in valid {
            assert_ok(case, validate_domain(input), expected);
        }

        let invalid: Vec<(&str, &str, &str)> = vec![
            ("empty", "", "must not be empty"),
            ("label 64", &label_64, "at most 63"),
            ("total 254", &total_254, "at most 253"),
            ("single label", "localhost", "at least two labels"),
            ("leading hyphen", "-example.com", "'-'"),
            ("trailing hyphen", "example-.com", "'-'"),
            ("hyphen before last label", "example.-com", "'-'"),
            ("empty label", "example..com", "two dots"),
            ("leading dot", ".example.com", "two dots"),
            ("trailing dot", "example.com.", "end with a dot"),
            ("only a dot", ".", "end with a dot"),
            ("IPv4 address", "192.168.1.1", "all digits"),
            ("numeric last label", "example.123", "all digits"),
            ("underscore", "_sip.example.com", "only ASCII"),
            ("space", "exa mple.com", "only ASCII"),
            ("non-ASCII", "bücher.example", "xn--"),
            ("port", "example.com:5060", "only ASCII"),
        ];
        for (case, input, expected_in_reason) in invalid {
            let reason = assert_rejected(case, validate_domain(input), "domain");
            assert!(
                reason.contains(expected_in_reason),
                "case {case}: reason {reason:?} contains {expected_in_reason:?}"
            );
        }
    }

    #[test]
    fn password_classes() {
        let max_password = format!("a1{}", "x".repeat(126));
        let long_password = format!("a1{}", "x".repeat(127));
        let valid: Vec<(&str, &str)> = vec![
            ("8 chars", "Abcdefg1"),
            ("128 chars", &max_password),
            ("punctuation", "p@ss:W0rd!~"),
            ("digits then letter", "1234567z"),
        ];
        for (case, input) in valid {
            assert_eq!(validate_password("sip_password", input), Ok(()), "case {case}");
        }

        let invalid: Vec<(&str, &str, &str)> = vec![
            ("7 chars", "Qz7Wv3K", "8 to 128"),
            ("129 chars", &long_password, "8 to 128"),
            ("empty", "", "8 to 128"),
            ("space", "Qz7W v3Kp", "printable ASCII"),
            ("tab", "Qz7W\tv3Kp", "printable ASCII"),
            ("non-ASCII", "Qz7Wäv3Kp", "printable ASCII"),
            ("no digit", "QzWvKpRtYu", "letter and one digit"),
            ("no letter", "7391!2846", "letter and one digit"),
        ];
        for (case, input, expected_in_reason) in invalid {
            let error = validate_password("sip_password", input).unwrap_err();
            assert_eq!(error.field, "sip_password", "case {case}: field");
            assert!(
                error.reason.contains(expected_in_reason),
                "case {case}: reason {:?} contains {expected_in_reason:?}",
                error.reason
            );
            if !input.is_empty() {
                assert!(
                    !error.reason.contains(input),
                    "case {case}: reason does not echo the password"
                );
            }
            assert!(
                !error.to_string().contains("Qz7W"),
                "case {case}: message does not echo the password"
            );
        }
    }

    #[test]
    fn alias_classes() {
        let max_alias = "a".repeat(32);
        let long_alias = "a".repeat(33);
        let valid: Vec<(&str, &str)> = vec![
            ("1 char", "a"),
            ("32 chars", &max_alias),
            ("phone style", "+4930123456"),
            ("all allowed marks", "a+b.c_d-e9"),
            ("digit first", "9lives"),
        ];
        for (case, input) in valid {
            assert_ok(case, validate_alias(input), input);
        }

        let invalid: Vec<(&str, &str, &str)> = vec![
            ("empty", "", "1 to 32"),
            ("33 chars", &long_alias, "1 to 32"),
            ("dot first", ".alias", "must not start"),
            ("underscore first", "_alias", "must not start"),
            ("hyphen first", "-alias", "must not start"),
            ("space", "my alias", "1 to 32"),
            ("at sign", "me@home", "1 to 32"),
            ("non-ASCII", "café", "1 to 32"),
        ];
        for (case, input, expected_in_reason) in invalid {
            let reason = assert_rejected(case, validate_alias(input), "alias");
            assert!(
                reason.contains(expected_in_reason),
                "case {case}: reason {reason:?} contains {expected_in_reason:?}"
            );
        }
    }

    #[test]
    fn field_error_display_is_reason() {
        let error = FieldError::new("alias", "alias must not start with '.', '_' or '-'");
        assert_eq!(error.to_string(), error.reason, "case display");
    }
}
