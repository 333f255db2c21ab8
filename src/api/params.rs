//! Request parameters: the query string and a JSON or form body, merged
//! into one set of named values.
//!
//! Both body types take the same names. A name given twice (in the body, in
//! the query, or in both) is rejected, and so is any name the operation does
//! not read: handlers `take` what they use and `finish` rejects the rest.
//! JSON numbers keep their exact text (serde_json's `arbitrary_precision`),
//! so amounts never pass through a float; a JSON `null` counts as absent.

use std::collections::BTreeMap;
use std::fmt;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::api::error::{codes, ApiError};
use crate::domain::text::FieldError;

/// Largest request body accepted, chunked or not.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// Time a client has to send the whole request body once the handler starts
/// reading it. A client that stalls longer gets 408 and its connection
/// back, so that slow or stalled uploads cannot hold connections open.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A request body, read whole with the size limit and the read deadline.
pub struct Body(pub actix_web::web::Bytes);

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl actix_web::FromRequest for Body {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Body, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        use futures_util::StreamExt;

        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            let too_large = || ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE);
            if declared.is_some_and(|length| length > BODY_BYTES_MAX as u64) {
                return Err(too_large());
            }
            let read = async {
                let mut body = actix_web::web::BytesMut::new();
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk.map_err(|error| {
                        malformed(format!("the request body could not be read: {error}"))
                    })?;
                    if body.len() + chunk.len() > BODY_BYTES_MAX {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(Body(body.freeze()))
            };
            match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(
                        timeout_s = BODY_READ_TIMEOUT.as_secs(),
                        "request body not received in time"
                    );
                    Err(ApiError::for_status(StatusCode::REQUEST_TIMEOUT))
                }
            }
        })
    }
}

/// One parameter's value as it arrived.
#[derive(Debug, Clone)]
struct ParamValue {
    text: String,
    from_json_number: bool,
}

/// The parameters of one request.
#[derive(Debug, Default)]
pub struct Params {
    values: BTreeMap<String, ParamValue>,
    /// Parameters given as JSON `null`: absent, but still counted as given
    /// for the unknown-parameter check.
    nulls: Vec<String>,
}

fn duplicate(name: &str) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::BAD_REQUEST,
        codes::DUPLICATE_PARAMETER,
        format!("parameter {name} is given more than once"),
    );
    error.fields.push(FieldError::new(static_name(name), "is given more than once"));
    error
}

/// Field names in errors are `&'static str`; request-supplied names are
/// leaked only through this bounded set of names the API defines, and any
/// other name is reported as `parameter`.
fn static_name(name: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "login_id",
        "password",
        "encrypt_type",
        "first_name",
        "last_name",
        "email",
        "mobile_phone",
        "domain",
        "currency",
        "developer_id",
        "status",
        "sip_id",
        "alias",
        "amount",
        "type",
        "pay_method",
        "refer_trans_id",
        "desc",
        "page",
        "page_size",
        "start_date",
        "end_date",
        "at",
        "name",
    ];
    KNOWN.iter().find(|known| **known == name).copied().unwrap_or("parameter")
}

fn malformed(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, codes::MALFORMED_BODY, message)
}

impl Params {
    /// Reads the query string and, for requests with a body, the body.
    pub fn from_request(request: &HttpRequest, body: &[u8]) -> Result<Params, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap_or("invalid"));
        Params::from_parts(request.query_string(), content_type, body)
    }

    /// Reads a query string and a body sent with the `Content-Type` header
    /// value `content_type`. This is `from_request` without actix-web, so
    /// that a fuzzer can call it.
    pub fn from_parts(
        query: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Params, ApiError> {
        let mut params = Params::default();
        params.add_pairs(query.as_bytes())?;

        let content_type = content_type.map(str::to_ascii_lowercase);
        let media_type = content_type
            .as_deref()
            .map(|value| value.split(';').next().unwrap_or("").trim().to_string());
        match media_type.as_deref() {
            // A request without a body has no body parameters, whatever
            // `Content-Type` it names, because some clients send one on
            // every GET.
            _ if body.is_empty() => {}
            Some("application/json") => params.add_json(body)?,
            Some("application/x-www-form-urlencoded") => params.add_pairs(body)?,
            _ => return Err(ApiError::for_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)),
        }
        Ok(params)
    }

    fn insert(&mut self, name: String, value: Option<ParamValue>) -> Result<(), ApiError> {
        if self.values.contains_key(&name) || self.nulls.contains(&name) {
            return Err(duplicate(&name));
        }
        match value {
            Some(value) => {
                self.values.insert(name, value);
            }
            None => self.nulls.push(name),
        }
        Ok(())
    }

    fn add_pairs(&mut self, encoded: &[u8]) -> Result<(), ApiError> {
        let pairs = encoded.split(|b| *b == b'&').filter(|pair| !pair.is_empty());
        for pair in pairs {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(index) => (&pair[..index], &pair[index + 1..]),
                None => (pair, &[][..]),
            };
            let value = ParamValue { text: percent_decode(value)?, from_json_number: false };
            self.insert(percent_decode(name)?, Some(value))?;
        }
        Ok(())
    }

    fn add_json(&mut self, body: &[u8]) -> Result<(), ApiError> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let pairs = deserializer
            .deserialize_map(PairsVisitor)
            .map_err(|error| malformed(format!("the JSON body is invalid: {error}")))?;
        deserializer
            .end()
            .map_err(|error| malformed(format!("the JSON body is invalid: {error}")))?;
        for (name, value) in pairs {
            let value = match value {
                Value::Null => None,
                Value::String(text) => Some(ParamValue { text, from_json_number: false }),
                Value::Number(number) => {
                    Some(ParamValue { text: number.to_string(), from_json_number: true })
                }
                Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
                    let field = static_name(&name);
                    let reason = format!("{name} must be a string or a number");
                    let mut error = ApiError::invalid(field, reason);
                    error.message = format!("invalid {name}: must be a string or a number");
                    return Err(error);
                }
            };
            self.insert(name, value)?;
        }
        Ok(())
    }

    /// Removes and returns a parameter's text.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.nulls.retain(|null| null != name);
        self.values.remove(name).map(|value| value.text)
    }

    /// Removes and returns a required parameter's text.
    pub fn required(&mut self, name: &'static str) -> Result<String, ApiError> {
        self.take(name).ok_or_else(|| ApiError::missing(name))
    }

    /// Whether a parameter is present (not null).
    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Whether a parameter arrived as a JSON number.
    pub fn is_json_number(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|value| value.from_json_number)
    }

    /// Removes an integer parameter given as a JSON number or a string of
    /// ASCII digits.
    pub fn take_integer(&mut self, name: &'static str) -> Result<Option<u32>, ApiError> {
        let Some(text) = self.take(name) else {
            return Ok(None);
        };
        let is_digits =
            !text.is_empty() && text.len() <= 9 && text.bytes().all(|b| b.is_ascii_digit());
        if !is_digits {
            return Err(ApiError::invalid(
                name,
                format!("{name} must be a whole number, got {text:?}"),
            ));
        }
        Ok(Some(text.parse().expect("nine ASCII digits parse as u32")))
    }

    /// Rejects every parameter that was not taken.
    pub fn finish(self) -> Result<(), ApiError> {
        let leftover = self.values.keys().next().or_else(|| self.nulls.first());
        match leftover {
            None => Ok(()),
            Some(name) => {
                let shown: String = name.chars().take(64).collect();
                let mut error = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::UNKNOWN_PARAMETER,
                    format!("unknown parameter {shown:?} for this operation"),
                );
                error.fields.push(FieldError::new(
                    static_name(name),
                    "is not a parameter of this operation",
                ));
                Err(error)
            }
        }
    }
}

/// Decodes one `application/x-www-form-urlencoded` name or value: `+` is a
/// space and `%XX` a byte. A `%` without two hex digits is kept as it is.
/// The decoded bytes must be UTF-8, because a lossy decoding would store
/// U+FFFD in place of what the client sent.
fn percent_decode(encoded: &[u8]) -> Result<String, ApiError> {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut index = 0;
    while index < encoded.len() {
        let byte = encoded[index];
        let escaped = match encoded.get(index + 1..index + 3) {
            Some(&[high, low]) if byte == b'%' => hex_digit(high).zip(hex_digit(low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                bytes.push(high * 16 + low);
                index += 3;
            }
            None => {
                bytes.push(if byte == b'+' { b' ' } else { byte });
                index += 1;
            }
        }
    }
    String::from_utf8(bytes)
        .map_err(|_| malformed("the form body or query string is not valid UTF-8"))
}

fn hex_digit(byte: u8) -> Option<u8> {
    char::from(byte).to_digit(16).map(|digit| digit as u8)
}

/// Reads a JSON object as its list of members, keeping repeated names.
struct PairsVisitor;

impl<'de> Visitor<'de> for PairsVisitor {
    type Value = Vec<(String, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of parameters")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, Value>()? {
            pairs.push((name, value));
        }
        Ok(pairs)
    }
}
