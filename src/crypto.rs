//! Secrets: the server's AES-256-GCM key and the wire format of passwords sent
//! with `encrypt_type` 1, Argon2id hashes of login passwords, SIP digest HA1
//! values, API key generation and hashing, and constant-time comparison.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::Md5;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const AES_KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const SALT_BYTES: usize = 16;
const API_KEY_BYTES: usize = 32;

/// The server's AES-256-GCM key for passwords sent with `encrypt_type` 1.
///
/// `Debug` prints `AesKey(..)` so that the key never reaches a log.
#[derive(Clone)]
pub struct AesKey([u8; AES_KEY_BYTES]);

impl AesKey {
    /// Decodes the key from standard, padded base64 of exactly 32 bytes.
    /// Surrounding ASCII white space, such as the newline at the end of a key
    /// file, is ignored.
    pub fn from_base64(text: &str) -> Result<AesKey, KeyError> {
        let bytes = STANDARD.decode(text.trim_ascii()).map_err(|_| KeyError::InvalidBase64)?;
        let actual = bytes.len();
        let key = <[u8; AES_KEY_BYTES]>::try_from(bytes.as_slice())
            .map_err(|_| KeyError::WrongLength { actual })?;
        Ok(AesKey(key))
    }

    /// Generates a random key from the operating system's generator.
    pub fn generate() -> AesKey {
        let mut key = [0u8; AES_KEY_BYTES];
        OsRng.fill_bytes(&mut key);
        AesKey(key)
    }

    /// Encodes the key as standard, padded base64, the form `from_base64` reads.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AesKey(..)")
    }
}

/// A configured AES key that cannot be used. The messages never contain the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("AES key is not valid base64: use the standard alphabet with '=' padding")]
    InvalidBase64,
    #[error("AES key must decode to 32 bytes, but it decodes to {actual} bytes")]
    WrongLength { actual: usize },
}

/// A password that could not be decrypted. Every cause gives this same error,
/// so a client learns nothing about which check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "password could not be decrypted: it must be base64 of a 12-byte nonce followed by \
     AES-256-GCM ciphertext and tag under the server's key, or be sent with encrypt_type 0 \
     as plain text"
)]
pub struct DecryptError;

/// Decrypts a password sent with `encrypt_type` 1.
///
/// `encoded` is standard, padded base64 of a 12-byte nonce followed by the
/// AES-256-GCM ciphertext and its 16-byte tag, with no associated data. The
/// plaintext is the UTF-8 password. Malformed, truncated, tampered, non-UTF-8
/// and wrongly keyed values all give [`DecryptError`].
pub fn decrypt_password(key: &AesKey, encoded: &str) -> Result<String, DecryptError> {
    let bytes = STANDARD.decode(encoded).map_err(|_| DecryptError)?;
    if bytes.len() < NONCE_BYTES + TAG_BYTES {
        return Err(DecryptError);
    }

    let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
    let plaintext =
        key.cipher().decrypt(Nonce::from_slice(nonce), sealed).map_err(|_| DecryptError)?;
    String::from_utf8(plaintext).map_err(|_| DecryptError)
}

/// Encrypts `password` under a random nonce in the format that
/// [`decrypt_password`] reads.
pub fn encrypt_password(key: &AesKey, password: &str) -> String {
    let mut nonce = [0u8; NONCE_BYTES];
    OsRng.fill_bytes(&mut nonce);

    let sealed = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), password.as_bytes())
        .expect("AES-GCM rejects only plaintexts over 64 GiB");

    let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(&sealed);
    STANDARD.encode(bytes)
}

/// Hashes a login password to an Argon2id PHC string with the argon2 0.5
/// defaults (m=19456 KiB, t=2, p=1) and a random 16-byte salt.
///
/// Each call costs tens of milliseconds of CPU (an estimate), so async callers
/// should run it on a blocking thread.
pub fn hash_login_password(password: &str) -> String {
    let mut salt_bytes = [0u8; SALT_BYTES];
    OsRng.fill_bytes(&mut salt_bytes);
    let salt =
        SaltString::encode_b64(&salt_bytes).expect("a 16-byte salt is within the PHC salt limits");

    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters rejects only passwords of 4 GiB or more")
        .to_string()
}

/// Checks a login password against a PHC string from [`hash_login_password`].
///
/// The parameters stored in the PHC string are used, so hashes made with older
/// parameters still verify. A malformed PHC string returns false. This is as
/// CPU-heavy as hashing.
pub fn verify_login_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
}

/// HA1 values of SIP digest authentication, which a registrar stores in place
/// of the password: HA1 = H(username ":" realm ":" password) in lower-case hex,
/// with H = MD5 (RFC 2617) and H = SHA-256 (RFC 7616).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SipDigests {
    pub ha1_md5: String,
    pub ha1_sha256: String,
}

/// Computes both HA1 values for a SIP account.
pub fn sip_digests(username: &str, realm: &str, password: &str) -> SipDigests {
    let input = format!("{username}:{realm}:{password}");
    SipDigests {
        ha1_md5: hex::encode(Md5::digest(input.as_bytes())),
        ha1_sha256: hex::encode(Sha256::digest(input.as_bytes())),
    }
}

/// Generates an API key: 256 random bits as 64 lower-case hex characters.
/// Callers show the key to its owner once and store only [`hash_api_key`] of it.
pub fn generate_api_key() -> String {
    let mut bytes = [0u8; API_KEY_BYTES];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Hashes an API key with SHA-256 for storage.
pub fn hash_api_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Checks a presented API key against a stored hash in constant time.
pub fn api_key_matches(presented: &str, stored_hash: &[u8; 32]) -> bool {
    hash_api_key(presented).ct_eq(stored_hash).into()
}

/// Compares two byte strings in constant time, as for the platform key.
///
/// Only the contents are compared in constant time. Inputs of different
/// lengths return false at once, so the length can leak through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The expected values were computed outside Rust with
    // `printf 'alice:sip.example.com:secret1' | md5sum` and `| sha256sum`.
    const ALICE_HA1_MD5: &str = "9c129ac10a20912e91551ca399a28992";
    const ALICE_HA1_SHA256: &str =
        "72ccc4c95dfbfb4c0998b4781412b09bb022c20157c05469ac8d3b1616feb9de";

    fn fixed_key(byte: u8) -> AesKey {
        AesKey([byte; AES_KEY_BYTES])
    }

    fn decode(encoded: &str) -> Vec<u8> {
        STANDARD.decode(encoded).expect("test input is valid base64")
    }

    /// Encrypts raw bytes in the wire format, for plaintexts that are not UTF-8.
    fn encrypt_bytes(key: &AesKey, plaintext: &[u8]) -> String {
        let nonce = [7u8; NONCE_BYTES];
        let sealed = key
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("encryption of a short plaintext");
        STANDARD.encode([nonce.as_slice(), sealed.as_slice()].concat())
    }

    #[test]
    fn aes_round_trip() {
        let key = AesKey::generate();
        let cases = ["Secret123", "pässwörd 🔑", "", &"x".repeat(1000)];
        for password in cases {
            let encoded = encrypt_password(&key, password);
            let decoded_len = decode(&encoded).len();
            assert_eq!(
                decoded_len,
                NONCE_BYTES + password.len() + TAG_BYTES,
                "case {password:?}: wire length"
            );
            assert_eq!(
                decrypt_password(&key, &encoded).as_deref(),
                Ok(password),
                "case {password:?}: round trip"
            );
        }
    }

    #[test]
    fn aes_nonce_is_random() {
        let key = fixed_key(1);
        let first = encrypt_password(&key, "Secret123");
        let second = encrypt_password(&key, "Secret123");
        assert_ne!(first, second, "case same password twice: ciphertexts differ");
    }

    #[test]
    fn aes_rejects_bad_values() {
        let key = fixed_key(1);
        // 28 + 6 bytes is not a multiple of 3, so the encoding ends in padding.
        let encoded = encrypt_password(&key, "pw1234");
        assert!(encoded.ends_with('='), "case setup: encoding {encoded:?} is padded");
        let bytes = decode(&encoded);

        let flip = |index: usize| {
            let mut tampered = bytes.clone();
            tampered[index] ^= 0x01;
            STANDARD.encode(tampered)
        };
        let wrong_key = encrypt_password(&fixed_key(2), "pw1234");
        let short_27 = STANDARD.encode(&bytes[..NONCE_BYTES + TAG_BYTES - 1]);
        let garbage_28 = STANDARD.encode([0u8; NONCE_BYTES + TAG_BYTES]);
        let cut_tag = STANDARD.encode(&bytes[..bytes.len() - 1]);
        let unpadded = encoded.trim_end_matches('=').to_owned();
        let url_safe = base64::engine::general_purpose::URL_SAFE.encode([0xfb_u8; 40]);
        let non_utf8 = encrypt_bytes(&key, &[0xff, 0xfe, 0x80]);

        let cases: Vec<(&str, String)> = vec![
            ("flipped nonce byte", flip(0)),
            ("flipped ciphertext byte", flip(NONCE_BYTES)),
            ("flipped tag byte", flip(bytes.len() - 1)),
            ("encrypted under another key", wrong_key),
            ("truncated to 27 bytes", short_27),
            ("28 zero bytes", garbage_28),
            ("last tag byte cut", cut_tag),
            ("empty", String::new()),
            ("not base64", "not base64!".to_owned()),
            ("padding removed", unpadded),
            ("URL-safe alphabet", url_safe),
            ("surrounding space", format!(" {encoded} ")),
            ("line break inside", format!("{}\n{}", &encoded[..8], &encoded[8..])),
            ("non-UTF-8 plaintext", non_utf8),
        ];
        for (case, input) in cases {
            assert_eq!(decrypt_password(&key, &input), Err(DecryptError), "case {case}");
        }
    }

    #[test]
    fn decrypt_error_names_plain_text_option() {
        // PUT routes default to encrypt_type 1, so the message shows a client
        // that sent a plain password there how to send it as plain text.
        let message = DecryptError.to_string();
        assert!(message.contains("encrypt_type 0"), "names encrypt_type 0: {message}");
    }

    #[test]
    fn aes_non_utf8_setup_decrypts() {
        // Confirms that the non-UTF-8 case above fails on UTF-8, not on the tag.
        let key = fixed_key(1);
        let encoded = encrypt_bytes(&key, b"valid");
        assert_eq!(
            decrypt_password(&key, &encoded).as_deref(),
            Ok("valid"),
            "case raw bytes round trip"
        );
    }

    #[test]
    fn aes_key_base64() {
        let key = AesKey::generate();
        let text = key.to_base64();
        let parsed = AesKey::from_base64(&text).expect("case generated key parses");
        assert_eq!(parsed.0, key.0, "case round trip");

        let with_newline =
            AesKey::from_base64(&format!("{text}\n")).expect("case trailing newline");
        assert_eq!(with_newline.0, key.0, "case trailing newline");

        let cases = [
            ("16 bytes", STANDARD.encode([1u8; 16]), KeyError::WrongLength { actual: 16 }),
            ("31 bytes", STANDARD.encode([1u8; 31]), KeyError::WrongLength { actual: 31 }),
            ("33 bytes", STANDARD.encode([1u8; 33]), KeyError::WrongLength { actual: 33 }),
            ("empty", String::new(), KeyError::WrongLength { actual: 0 }),
            ("not base64", "this is not a key".to_owned(), KeyError::InvalidBase64),
            ("padding removed", text.trim_end_matches('=').to_owned(), KeyError::InvalidBase64),
        ];
        for (case, input, expected) in cases {
            let error = AesKey::from_base64(&input).unwrap_err();
            assert_eq!(error, expected, "case {case}");
            if !input.is_empty() {
                assert!(
                    !error.to_string().contains(&input),
                    "case {case}: message does not echo the key"
                );
            }
        }
    }

    #[test]
    fn aes_key_debug_hides_key() {
        let key = fixed_key(0xAB);
        let debug_output = format!("{key:?}");
        assert_eq!(debug_output, "AesKey(..)", "case debug output");
        assert!(!debug_output.contains(&key.to_base64()), "case debug omits base64");
    }

    #[test]
    fn argon2_hash_and_verify() {
        let phc = hash_login_password("Correct horse 1");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "case PHC prefix: {phc}");
        assert!(verify_login_password("Correct horse 1", &phc), "case right password");
        assert!(!verify_login_password("Correct horse 2", &phc), "case wrong password");
        assert!(!verify_login_password("", &phc), "case empty password");
        assert!(
            !verify_login_password("Correct horse 1", "not a phc string"),
            "case malformed PHC"
        );
        assert!(!verify_login_password("Correct horse 1", ""), "case empty PHC");

        let again = hash_login_password("Correct horse 1");
        assert_ne!(phc, again, "case salts differ");
    }

    #[test]
    fn sip_digest_known_vector() {
        let digests = sip_digests("alice", "sip.example.com", "secret1");
        assert_eq!(digests.ha1_md5, ALICE_HA1_MD5, "case MD5 HA1");
        assert_eq!(digests.ha1_sha256, ALICE_HA1_SHA256, "case SHA-256 HA1");

        let other = sip_digests("alice", "sip.example.com", "secret2");
        assert_ne!(other.ha1_md5, ALICE_HA1_MD5, "case other password MD5");
        assert_ne!(other.ha1_sha256, ALICE_HA1_SHA256, "case other password SHA-256");
    }

    #[test]
    fn api_key_format_and_match() {
        let key = generate_api_key();
        assert_eq!(key.len(), 64, "case length");
        assert!(
            key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "case lower-case hex: {key}"
        );
        assert_ne!(key, generate_api_key(), "case two keys differ");

        let stored = hash_api_key(&key);
        assert!(api_key_matches(&key, &stored), "case same key");
        assert!(!api_key_matches(&key.to_uppercase(), &stored), "case upper-case key");
        assert!(!api_key_matches(&key[..63], &stored), "case truncated key");
        assert!(!api_key_matches("", &stored), "case empty key");
        assert!(!api_key_matches(&generate_api_key(), &stored), "case other key");
    }

    #[test]
    fn constant_time_eq_cases() {
        let cases: [(&str, &[u8], &[u8], bool); 5] = [
            ("equal", b"platform-key", b"platform-key", true),
            ("both empty", b"", b"", true),
            ("one byte differs", b"platform-key", b"platform-kez", false),
            ("prefix", b"platform", b"platform-key", false),
            ("empty and non-empty", b"", b"x", false),
        ];
        for (case, a, b, expected) in cases {
            assert_eq!(constant_time_eq(a, b), expected, "case {case}");
        }
    }
}
