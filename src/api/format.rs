//! Content negotiation and the edge of every request.
//!
//! `edge` runs around every route: it picks the response format from a
//! `.json` or `.xml` suffix (which it strips before routing) or the `Accept`
//! header, assigns the request id, renders every error in the error shape of
//! the chosen format (the framework's own 404, 405 and 413 included),
//! counts the request in the metrics by route pattern, and logs one
//! "request completed" line.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{StatusCode, Uri};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, Responder};
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::metrics::HttpMetrics;
use crate::api::views::TransactionView;

/// The representation a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

/// The id of a request, from a well-formed `X-Request-Id` header or drawn
/// at random.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The format suffix the client put on the path (`.json`, `.xml`), kept so
/// that page links lead to the same representation.
#[derive(Debug, Clone, Copy)]
pub struct PathSuffix(pub &'static str);

/// Maximum length of a client-supplied request id that is kept.
const REQUEST_ID_CHARS_MAX: usize = 64;

/// Paths of routes with one fixed format. They take no format suffix:
/// `/openapi.json` keeps its name, and `/metrics.xml` is no route.
const FIXED_FORMAT_PATHS: [&str; 2] = ["/openapi.json", "/metrics"];

/// Marks a response that a handler rendered on purpose with an error
/// status (a 503 from `/readyz`), so that the edge keeps its body.
#[derive(Debug, Clone, Copy)]
struct RenderedReply;

fn format_of(request: &HttpRequest) -> Format {
    request.extensions().get::<Format>().copied().unwrap_or(Format::Json)
}

pub fn request_id_of(request: &HttpRequest) -> String {
    request.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default()
}

/// Picks the format from the `Accept` header. XML wins when the client
/// rates an XML type (`application/xml`, `text/xml`) above every JSON type,
/// or rates them equally but names only the XML type (`application/xml,
/// */*`). Otherwise the format is JSON. A range (`*/*`, `application/*`,
/// `text/*`) gives its quality to the types it covers that the header does
/// not name, and `q=0` means not acceptable (RFC 9110, section 12.5.1).
fn format_from_accept(request: &ServiceRequest) -> Format {
    let Some(accept) = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Format::Json;
    };
    let mut ranks = AcceptRanks::default();
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media_type = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|parameter| parameter.trim().strip_prefix("q="))
            .find_map(|value| quality_thousandths(value.trim()))
            .unwrap_or(1000);
        ranks.add(&media_type, quality);
    }
    let json = ranks.application_json.unwrap_or(ranks.any.max(ranks.application_any));
    let application_xml = ranks.application_xml.unwrap_or(ranks.any.max(ranks.application_any));
    let text_xml = ranks.text_xml.unwrap_or(ranks.any.max(ranks.text_any));
    let xml = application_xml.max(text_xml);
    // A tie goes to XML only when a named XML type, not a range, gives XML
    // its quality and JSON has only a range's.
    let xml_named = ranks.application_xml == Some(xml) || ranks.text_xml == Some(xml);
    let json_named = ranks.application_json.is_some();
    let xml_wins_tie = xml == json && xml > 0 && xml_named && !json_named;
    if xml > json || xml_wins_tie {
        Format::Xml
    } else {
        Format::Json
    }
}

/// The qualities, in thousandths, that an `Accept` header gives the types
/// and ranges that choose between JSON and XML. A type the header does not
/// list is `None`, and a range it does not list is 0.
#[derive(Default)]
struct AcceptRanks {
    application_json: Option<u16>,
    application_xml: Option<u16>,
    text_xml: Option<u16>,
    any: u16,
    application_any: u16,
    text_any: u16,
}

impl AcceptRanks {
    /// Records one media range of the header. A type listed twice keeps
    /// its highest quality.
    fn add(&mut self, media_type: &str, quality: u16) {
        let named = |slot: &mut Option<u16>| *slot = Some(slot.unwrap_or(0).max(quality));
        match media_type {
            "application/json" => named(&mut self.application_json),
            "application/xml" => named(&mut self.application_xml),
            "text/xml" => named(&mut self.text_xml),
            "*/*" => self.any = self.any.max(quality),
            "application/*" => self.application_any = self.application_any.max(quality),
            "text/*" => self.text_any = self.text_any.max(quality),
            _ => {}
        }
    }
}

/// Parses a quality value (`0`, `0.5`, `1.000`) into thousandths; `None`
/// for anything that is not one.
fn quality_thousandths(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits_valid = fraction.len() <= 3 && fraction.bytes().all(|b| b.is_ascii_digit());
    if !digits_valid {
        return None;
    }
    let padded = format!("{fraction:0<3}");
    let thousandths: u16 = padded.parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn client_request_id(request: &ServiceRequest) -> Option<String> {
    let value = request.headers().get("x-request-id")?.to_str().ok()?;
    let well_formed = !value.is_empty()
        && value.len() <= REQUEST_ID_CHARS_MAX
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    well_formed.then(|| value.to_string())
}

/// Strips a `.json` or `.xml` suffix from the path, rewriting the URI that
/// routing matches. Returns the format the suffix names.
fn strip_format_suffix(request: &mut ServiceRequest) -> Option<Format> {
    let path = request.path();
    let (format, stripped) = if let Some(stripped) = path.strip_suffix(".json") {
        (Format::Json, stripped)
    } else if let Some(stripped) = path.strip_suffix(".xml") {
        (Format::Xml, stripped)
    } else {
        return None;
    };
    if FIXED_FORMAT_PATHS.contains(&path) || FIXED_FORMAT_PATHS.contains(&stripped) {
        return None;
    }
    let mut target = stripped.to_string();
    if let Some(query) = request.uri().query() {
        target.push('?');
        target.push_str(query);
    }
    let uri: Uri = target.parse().ok()?;
    request.match_info_mut().get_mut().update(&uri);
    request.head_mut().uri = uri;
    Some(format)
}

/// The middleware around every route; see the module documentation.
pub async fn edge(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id =
        client_request_id(&request).unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let method = request.method().clone();
    let original_path = request.path().to_string();
    let format = match strip_format_suffix(&mut request) {
        Some(format) => {
            let suffix = if format == Format::Xml { ".xml" } else { ".json" };
            request.extensions_mut().insert(PathSuffix(suffix));
            format
        }
        None => format_from_accept(&request),
    };
    request.extensions_mut().insert(format);
    request.extensions_mut().insert(RequestId(request_id.clone()));

    // Routing needs the only reference to the request, so it cannot be kept
    // for this error path. Routes turn their errors into responses, so an
    // error here comes from the framework and is rendered by it.
    let response = next.call(request).await?.map_into_boxed_body();
    let mut response = render_error_if_needed(response, format);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(header::HeaderName::from_static("x-request-id"), value);
    }

    let status = response.status().as_u16();
    let latency_us = started.elapsed().as_micros() as u64;
    if let Some(metrics) = response.request().app_data::<web::Data<HttpMetrics>>() {
        let route = response.request().match_pattern();
        metrics.record(route.as_deref(), &method, status, latency_us);
    }
    // Every error response carries its `ApiError` (see
    // `render_error_if_needed`), so its code names the rule that rejected
    // the request. The message is not logged, because it echoes input.
    let code = response.response().extensions().get::<ApiError>().map(|error| error.code);
    if response.status().is_server_error() {
        let cause = response.response().error().map(|error| error.to_string()).unwrap_or_default();
        let code = code.unwrap_or(crate::api::error::codes::INTERNAL);
        tracing::error!(%method, path = %original_path, status, code, latency_us, %request_id, %cause, "request completed");
    } else if let Some(code) = code {
        tracing::info!(%method, path = %original_path, status, code, latency_us, %request_id, "request completed");
    } else {
        tracing::info!(%method, path = %original_path, status, latency_us, %request_id, "request completed");
    }
    Ok(response)
}

/// Replaces the body of an error response with the error shape in `format`,
/// unless it already is one in JSON and JSON is wanted.
fn render_error_if_needed(
    response: ServiceResponse<BoxBody>,
    format: Format,
) -> ServiceResponse<BoxBody> {
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return response;
    }
    if response.response().extensions().get::<RenderedReply>().is_some() {
        return response;
    }
    let existing = response.response().extensions().get::<ApiError>().cloned();
    if existing.is_some() && format == Format::Json {
        return response;
    }
    let error = existing.unwrap_or_else(|| ApiError::for_status(status));
    let (request, old) = response.into_parts();
    let mut builder = HttpResponse::build(status);
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    if status == StatusCode::UNAUTHORIZED && !old.headers().contains_key(header::WWW_AUTHENTICATE) {
        builder.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"subledger\""));
    }
    let rendered = render(&mut builder, format, "RestException", &error.body());
    let mut rendered = rendered;
    rendered.extensions_mut().insert(error);
    ServiceResponse::new(request, rendered)
}

fn render(
    builder: &mut actix_web::HttpResponseBuilder,
    format: Format,
    root: &str,
    body: &Value,
) -> HttpResponse {
    match format {
        Format::Json => render_json(builder, body),
        Format::Xml => {
            builder.content_type("application/xml; charset=utf-8").body(to_xml(root, body))
        }
    }
}

/// Renders `body` as a JSON response.
fn render_json(
    builder: &mut actix_web::HttpResponseBuilder,
    body: &impl serde::Serialize,
) -> HttpResponse {
    // `to_vec` writes straight into the buffer. `to_string` goes through
    // `Display` and a formatter adapter, with the same bytes.
    let bytes = serde_json::to_vec(body).expect("a JSON body serializes");
    builder.content_type("application/json").body(bytes)
}

/// A successful response: a status and a JSON value, rendered as JSON or
/// XML with `root` as the XML document element.
pub struct Reply {
    pub status: StatusCode,
    pub root: &'static str,
    pub body: Content,
    pub headers: Vec<(&'static str, String)>,
}

/// The body of a reply before it is rendered.
pub enum Content {
    Value(Value),
    /// Serialized straight into a JSON body, and through a `Value` only for
    /// XML (see `TransactionView`).
    Transaction(Box<TransactionView>),
}

impl From<Value> for Content {
    fn from(value: Value) -> Content {
        Content::Value(value)
    }
}

impl From<TransactionView> for Content {
    fn from(view: TransactionView) -> Content {
        Content::Transaction(Box::new(view))
    }
}

impl Reply {
    pub fn ok(root: &'static str, body: impl Into<Content>) -> Reply {
        Reply { status: StatusCode::OK, root, body: body.into(), headers: Vec::new() }
    }

    pub fn created(root: &'static str, body: impl Into<Content>) -> Reply {
        Reply { status: StatusCode::CREATED, root, body: body.into(), headers: Vec::new() }
    }

    pub fn no_content() -> Reply {
        let body = Content::Value(Value::Null);
        Reply { status: StatusCode::NO_CONTENT, root: "", body, headers: Vec::new() }
    }

    /// Marks the reply as the stored result of an earlier, identical request.
    pub fn replayed(mut self) -> Reply {
        self.status = StatusCode::OK;
        self.headers.push(("idempotent-replayed", "true".to_string()));
        self
    }
}

impl Responder for Reply {
    type Body = BoxBody;

    fn respond_to(self, request: &HttpRequest) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            builder.insert_header((*name, value.as_str()));
        }
        if self.status == StatusCode::NO_CONTENT {
            return builder.finish();
        }
        let format = format_of(request);
        let mut response = match (&self.body, format) {
            (Content::Value(value), _) => render(&mut builder, format, self.root, value),
            (Content::Transaction(view), Format::Json) => render_json(&mut builder, view),
            (Content::Transaction(view), Format::Xml) => {
                let value = serde_json::to_value(view).expect("a transaction serializes");
                render(&mut builder, format, self.root, &value)
            }
        };
        response.extensions_mut().insert(RenderedReply);
        response
    }
}

/// Renders a JSON value as an XML document: objects become elements named
/// by their keys, array items take the singular of the array's name
/// (`accounts` → `account`, `sip_aliases` → `sip_alias`), and null is an
/// empty element.
pub fn to_xml(root: &str, value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    write_element(&mut out, root, value);
    out
}

fn singular(name: &str) -> String {
    if let Some(stem) = name.strip_suffix("ses") {
        format!("{stem}s")
    } else if let Some(stem) = name.strip_suffix('s') {
        stem.to_string()
    } else {
        format!("{name}_item")
    }
}

fn write_element(out: &mut String, name: &str, value: &Value) {
    match value {
        Value::Null => {
            out.push('<');
            out.push_str(name);
            out.push_str("/>");
        }
        Value::Object(map) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            for (key, child) in map {
                write_element(out, key, child);
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        Value::Array(items) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            let item_name = singular(name);
            for item in items {
                write_element(out, &item_name, item);
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        Value::String(text) => write_text_element(out, name, text),
        Value::Bool(flag) => write_text_element(out, name, if *flag { "true" } else { "false" }),
        Value::Number(number) => write_text_element(out, name, &number.to_string()),
    }
}

fn write_text_element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry these characters at all, even escaped.
            c if (c < '\u{20}' && !matches!(c, '\t' | '\n' | '\r'))
                || matches!(c, '\u{FFFE}' | '\u{FFFF}') =>
            {
                out.push('\u{FFFD}')
            }
            c => out.push(c),
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn xml_names_array_items_singular() {
        let value = json!({"sip_aliases": ["a", "b"], "accounts": [{"sid": "x"}], "page": 0});
        let xml = to_xml("List", &value);
        assert!(
            xml.contains(
                "<sip_aliases><sip_alias>a</sip_alias><sip_alias>b</sip_alias></sip_aliases>"
            ),
            "{xml}"
        );
        assert!(xml.contains("<accounts><account><sid>x</sid></account></accounts>"), "{xml}");
        assert!(xml.contains("<page>0</page>"), "{xml}");
    }

    #[test]
    fn xml_escapes_markup_and_controls() {
        let xml = to_xml("R", &json!({"m": "a<b>&\"'\u{1}", "n": null}));
        assert!(xml.contains("<m>a&lt;b&gt;&amp;&quot;&apos;\u{FFFD}</m>"), "{xml}");
        assert!(xml.contains("<n/>"), "{xml}");
    }
}
