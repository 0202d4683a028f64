//! Eureka XML decoding.
//!
//! Accepts both XML layouts a Eureka server produces:
//!
//! * XStream (`XmlXStream`, what a Spring Cloud Eureka server serves by default): header fields
//!   `versions__delta` / `apps__hashcode` first, `class="…"` attributes, `<overriddenstatus>`,
//!   `<port enabled="true">8080</port>`, and element names escaped by XStream's
//!   `XmlFriendlyNameCoder` (`_` written as `__`, `$` as `_-`, other characters not allowed in
//!   XML names as `_.` followed by four hex digits);
//! * Jackson XML (Eureka 2.x `JacksonXml` codec): header fields last, no `<?xml?>` prolog,
//!   `<overriddenStatus>`.
//!
//! Decoding is a streaming state machine over `quick-xml` events (no DOM): only the fields the
//! model keeps are materialised, anything else is skipped. The plain, well-formed form that
//! Eureka servers send (no entities, CDATA, comments or namespaces) is first tried by a faster
//! byte scanner (`fast`) that decodes it to the same result; whatever it does not accept,
//! including every malformed input, is decoded (or rejected) by the `quick-xml` state machine.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;

use super::model::Interner;
use super::{ActionType, Application, DecodeError, Instance, PortInfo, Snapshot, Status};

mod fast;

/// Maximum element nesting depth. A Eureka document needs 5 (`applications` → `application` →
/// `instance` → `leaseInfo`/`metadata` → field); anything deeper than this is rejected.
pub const MAX_DEPTH: usize = 64;

/// Decodes a Eureka XML payload into a [`Snapshot`].
///
/// Accepted root elements:
///
/// * `<applications>`: a full registry (`/apps`) or a delta (`/apps/delta`), with optional
///   `<versions__delta>` and `<apps__hashcode>` header elements anywhere among its children
///   (first in XStream output, last in Jackson output);
/// * `<application>`: a single application (`/apps/{APP}`);
/// * `<instance>`: a single instance (`/apps/{APP}/{id}`), wrapped into an application named
///   after its `<app>`.
///
/// Field rules, following Eureka's XStream converters (`com.netflix.discovery.converters`):
///
/// * text values are assembled from text, CDATA, the five predefined entities (`&lt;` `&gt;`
///   `&amp;` `&apos;` `&quot;`) and numeric character references, then trimmed;
///   whitespace-only text between elements is ignored;
/// * `<port enabled="…">` / `<securePort enabled="…">`: `enabled` is true when it equals `true`
///   ignoring case (`Boolean.parseBoolean`); a missing attribute means enabled for `port` and
///   disabled for `securePort`; the text must be an integer in `0..=65535` (empty means 0); a
///   missing element leaves [`PortInfo::default`] (port 0, disabled);
/// * `<overriddenStatus>` and the legacy `<overriddenstatus>` are both read (camel case wins);
///   unknown status strings become [`Status::Unknown`]; a missing status is `Unknown`;
/// * metadata element names are unescaped as XStream's `XmlFriendlyNameCoder.decodeName` does
///   (`__` → `_`, `_-` → `$`, `_.XXXX` → the UTF-16 code unit `XXXX`), so
///   `<apiml.routes.api__v1.gatewayUrl>` is the key `apiml.routes.api_v1.gatewayUrl`;
///   attributes such as `class="java.util.Collections$EmptyMap"` are ignored, and metadata
///   entries with child elements are skipped;
/// * `<versions__delta>`, `<lastUpdatedTimestamp>` and `<lastDirtyTimestamp>` are integers
///   (empty means absent / 0);
/// * a missing or empty `<instanceId>` falls back to `<hostName>` (`InstanceInfo.getId()`);
/// * unknown elements (`leaseInfo`, `dataCenterInfo`, …) are skipped whatever their content.
///
/// # Errors
///
/// [`DecodeError::Xml`] with the byte offset where decoding stopped and the cause, when the
/// input is not well-formed XML (syntax error, mismatched or missing end tag, truncation,
/// invalid UTF-8, an unknown entity such as `&nbsp;`), when nesting exceeds [`MAX_DEPTH`], when
/// the root element is not one of the three above or is followed by another element, or when a
/// value is invalid (a port outside `0..=65535`, a non-integer timestamp, an element inside a
/// text field). Never panics.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    // The plain, well-formed form every Eureka server sends is decoded by a byte scanner; any
    // other input (including every malformed one) goes through the full decoder, so results
    // and errors are those of the full decoder.
    if let Some(snapshot) = fast::decode(bytes) {
        return Ok(snapshot);
    }
    decode_full(bytes)
}

/// The full decoder: a state machine over `quick-xml` events. Decodes every input that
/// [`decode`] accepts, to the same result.
fn decode_full(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let mut parser = Parser::new(bytes);
    let (root, empty) = parser.root()?;
    let snapshot = match root.local_name().as_ref() {
        b"applications" => parser.applications(empty)?,
        b"application" => Snapshot {
            versions_delta: None,
            apps_hashcode: None,
            applications: vec![parser.application(empty)?],
        },
        b"instance" => Snapshot::of_instance(parser.instance(empty)?),
        other => {
            return Err(parser.error(format!(
            "unexpected root element <{}>; expected <applications>, <application> or <instance>",
            String::from_utf8_lossy(other)
        )))
        }
    };
    parser.end()?;
    Ok(snapshot)
}

/// The streaming decoder: a `quick-xml` reader over the input, the current element depth, a
/// scratch buffer for assembling text values and the metadata string interner.
struct Parser<'a> {
    reader: Reader<&'a [u8]>,
    depth: usize,
    text: String,
    interner: Interner,
}

impl<'a> Parser<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let mut reader = Reader::from_reader(bytes);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        Parser {
            reader,
            depth: 0,
            text: String::new(),
            interner: Interner::default(),
        }
    }

    /// A shape or value error at the current position.
    fn error(&self, message: impl Into<String>) -> DecodeError {
        DecodeError::Xml {
            offset: self.reader.buffer_position(),
            message: message.into(),
        }
    }

    /// The next structural event: comments, processing instructions, the XML declaration and
    /// the DOCTYPE are skipped. Tracks the depth and enforces [`MAX_DEPTH`].
    #[inline(always)]
    fn next(&mut self) -> Result<Event<'a>, DecodeError> {
        loop {
            let event = self.reader.read_event().map_err(|e| DecodeError::Xml {
                offset: self.reader.error_position(),
                message: e.to_string(),
            })?;
            match event {
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => continue,
                Event::Start(_) => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(
                            self.error(format!("elements nested deeper than {MAX_DEPTH} levels"))
                        );
                    }
                }
                Event::End(_) => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
            return Ok(event);
        }
    }

    /// Finds the root element, allowing only blank text, a prolog and comments before it.
    /// Returns the start tag and whether it is an empty element (`<x/>`).
    fn root(&mut self) -> Result<(BytesStart<'a>, bool), DecodeError> {
        loop {
            match self.next()? {
                Event::Start(e) => return Ok((e, false)),
                Event::Empty(e) => return Ok((e, true)),
                Event::Text(t) if is_blank(&t) => {}
                Event::Eof => return Err(self.error("no root element")),
                _ => return Err(self.error("unexpected content before the root element")),
            }
        }
    }

    /// Checks that only blank text, comments and processing instructions follow the root.
    fn end(&mut self) -> Result<(), DecodeError> {
        loop {
            match self.next()? {
                Event::Eof => return Ok(()),
                Event::Text(t) if is_blank(&t) => {}
                _ => return Err(self.error("unexpected content after the root element")),
            }
        }
    }

    /// The next child element of the current container element, or `None` at its end tag.
    /// Text directly inside a container is ignored.
    fn child(&mut self, parent: &str) -> Result<Option<(BytesStart<'a>, bool)>, DecodeError> {
        loop {
            match self.next()? {
                Event::Start(e) => return Ok(Some((e, false))),
                Event::Empty(e) => return Ok(Some((e, true))),
                Event::End(_) => return Ok(None),
                Event::Eof => {
                    return Err(self.error(format!("unexpected end of input inside <{parent}>")))
                }
                _ => {}
            }
        }
    }

    /// Skips the content of an element whose start tag was just read, nested elements
    /// included (iteratively; the depth limit still applies).
    fn skip(&mut self, empty: bool) -> Result<(), DecodeError> {
        if empty {
            return Ok(());
        }
        let mut open = 0usize;
        loop {
            match self.next()? {
                Event::Start(_) => open += 1,
                Event::End(_) => {
                    if open == 0 {
                        return Ok(());
                    }
                    open -= 1;
                }
                Event::Eof => return Err(self.error("unexpected end of input")),
                _ => {}
            }
        }
    }

    /// Reads the text content of a leaf element whose start tag was just read into
    /// `self.text` (trimmed on use). With `lenient`, an element with child elements is skipped
    /// and `Ok(false)` returned; otherwise it is an error.
    fn read_text(&mut self, name: &str, empty: bool, lenient: bool) -> Result<bool, DecodeError> {
        self.text.clear();
        if empty {
            return Ok(true);
        }
        loop {
            match self.next()? {
                Event::Text(t) => {
                    let s = t.xml10_content().map_err(|e| self.error(e.to_string()))?;
                    self.text.push_str(&s);
                }
                Event::CData(c) => {
                    let s = c.xml10_content().map_err(|e| self.error(e.to_string()))?;
                    self.text.push_str(&s);
                }
                Event::GeneralRef(r) => {
                    let c = self.resolve_ref(&r)?;
                    self.text.push(c);
                }
                Event::End(_) => return Ok(true),
                Event::Start(e) => {
                    if lenient {
                        self.skip(false)?;
                        self.skip(false)?;
                        return Ok(false);
                    }
                    return Err(self.error(format!(
                        "unexpected element <{}> inside <{name}>",
                        String::from_utf8_lossy(e.local_name().as_ref())
                    )));
                }
                Event::Empty(e) => {
                    if lenient {
                        self.skip(false)?;
                        return Ok(false);
                    }
                    return Err(self.error(format!(
                        "unexpected element <{}> inside <{name}>",
                        String::from_utf8_lossy(e.local_name().as_ref())
                    )));
                }
                Event::Eof => {
                    return Err(self.error(format!("unexpected end of input inside <{name}>")))
                }
                _ => {}
            }
        }
    }

    /// The trimmed text of a leaf element, as an owned string.
    fn string(&mut self, name: &str, empty: bool) -> Result<String, DecodeError> {
        self.read_text(name, empty, false)?;
        Ok(self.text.trim().to_owned())
    }

    /// The integer value of a leaf element; `None` when it is empty.
    fn integer(&mut self, name: &str, empty: bool) -> Result<Option<i64>, DecodeError> {
        self.read_text(name, empty, false)?;
        let s = self.text.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<i64>()
            .map(Some)
            .map_err(|_| self.error(format!("<{name}> is not an integer: {s:?}")))
    }

    /// Resolves an entity or character reference found in text.
    fn resolve_ref(&self, r: &BytesRef<'_>) -> Result<char, DecodeError> {
        if r.is_char_ref() {
            return match r.resolve_char_ref() {
                Ok(Some(c)) => Ok(c),
                Ok(None) => Err(self.error("invalid character reference")),
                Err(e) => Err(self.error(format!("invalid character reference: {e}"))),
            };
        }
        let name = r.decode().map_err(|e| self.error(e.to_string()))?;
        match predefined_entity(&name) {
            Some(c) => Ok(c),
            None => Err(self.error(format!("unknown entity &{name};"))),
        }
    }

    /// `<applications>`: header fields and applications, in any order.
    fn applications(&mut self, empty: bool) -> Result<Snapshot, DecodeError> {
        let mut snapshot = Snapshot::default();
        if empty {
            return Ok(snapshot);
        }
        while let Some((e, empty)) = self.child("applications")? {
            match e.local_name().as_ref() {
                b"versions__delta" => {
                    snapshot.versions_delta = self.integer("versions__delta", empty)?;
                }
                b"apps__hashcode" => {
                    snapshot.apps_hashcode = Some(self.string("apps__hashcode", empty)?);
                }
                b"application" => snapshot.applications.push(self.application(empty)?),
                _ => self.skip(empty)?,
            }
        }
        Ok(snapshot)
    }

    /// `<application>`: a name and instances.
    fn application(&mut self, empty: bool) -> Result<Application, DecodeError> {
        let mut app = Application::default();
        if empty {
            return Ok(app);
        }
        while let Some((e, empty)) = self.child("application")? {
            match e.local_name().as_ref() {
                b"name" => app.name = self.string("name", empty)?,
                b"instance" => app.instances.push(self.instance(empty)?),
                _ => self.skip(empty)?,
            }
        }
        Ok(app)
    }

    /// `<instance>`: the `InstanceInfo` fields the model keeps.
    fn instance(&mut self, empty: bool) -> Result<Instance, DecodeError> {
        let mut inst = Instance::default();
        let mut overridden: Option<Status> = None;
        let mut overridden_legacy: Option<Status> = None;
        if !empty {
            while let Some((e, empty)) = self.child("instance")? {
                match e.local_name().as_ref() {
                    b"instanceId" => inst.instance_id = self.string("instanceId", empty)?,
                    b"app" => inst.app = self.string("app", empty)?,
                    b"hostName" => inst.host_name = self.string("hostName", empty)?,
                    b"ipAddr" => inst.ip_addr = self.string("ipAddr", empty)?,
                    b"status" => {
                        self.read_text("status", empty, false)?;
                        inst.status = Status::parse(&self.text);
                    }
                    b"overriddenStatus" => {
                        self.read_text("overriddenStatus", empty, false)?;
                        overridden = Some(Status::parse(&self.text));
                    }
                    b"overriddenstatus" => {
                        self.read_text("overriddenstatus", empty, false)?;
                        overridden_legacy = Some(Status::parse(&self.text));
                    }
                    b"port" => inst.port = self.port(&e, "port", empty, true)?,
                    b"securePort" => {
                        inst.secure_port = self.port(&e, "securePort", empty, false)?;
                    }
                    b"vipAddress" => inst.vip_address = self.string("vipAddress", empty)?,
                    b"secureVipAddress" => {
                        inst.secure_vip_address = self.string("secureVipAddress", empty)?;
                    }
                    b"homePageUrl" => {
                        inst.home_page_url = Some(self.string("homePageUrl", empty)?);
                    }
                    b"statusPageUrl" => {
                        inst.status_page_url = Some(self.string("statusPageUrl", empty)?);
                    }
                    b"healthCheckUrl" => {
                        inst.health_check_url = Some(self.string("healthCheckUrl", empty)?);
                    }
                    b"metadata" => self.metadata(&mut inst.metadata, empty)?,
                    b"lastUpdatedTimestamp" => {
                        inst.last_updated_timestamp_ms =
                            self.integer("lastUpdatedTimestamp", empty)?.unwrap_or(0);
                    }
                    b"lastDirtyTimestamp" => {
                        inst.last_dirty_timestamp_ms =
                            self.integer("lastDirtyTimestamp", empty)?.unwrap_or(0);
                    }
                    b"actionType" => {
                        self.read_text("actionType", empty, false)?;
                        inst.action_type = ActionType::parse(&self.text);
                    }
                    _ => self.skip(empty)?,
                }
            }
        }
        finish_instance(&mut inst, overridden, overridden_legacy);
        Ok(inst)
    }

    /// `<port enabled="…">N</port>`; `enabled_by_default` applies when the attribute is absent.
    fn port(
        &mut self,
        start: &BytesStart<'_>,
        name: &str,
        empty: bool,
        enabled_by_default: bool,
    ) -> Result<PortInfo, DecodeError> {
        let mut enabled = enabled_by_default;
        for attr in start.attributes() {
            let attr = attr.map_err(|e| self.error(format!("<{name}>: {e}")))?;
            if attr.key.local_name().as_ref() == b"enabled" {
                let value = attr
                    .unescape_value()
                    .map_err(|e| self.error(format!("<{name} enabled>: {e}")))?;
                enabled = value.trim().eq_ignore_ascii_case("true");
            }
        }
        self.read_text(name, empty, false)?;
        let s = self.text.trim();
        let port = if s.is_empty() {
            0
        } else {
            s.parse::<u16>().map_err(|_| {
                self.error(format!("<{name}> is not a port number in 0..=65535: {s:?}"))
            })?
        };
        Ok(PortInfo { port, enabled })
    }

    /// `<metadata>`: one element per entry, names unescaped as XStream does; `@class` dropped.
    fn metadata(
        &mut self,
        out: &mut BTreeMap<Arc<str>, Arc<str>>,
        empty: bool,
    ) -> Result<(), DecodeError> {
        if empty {
            return Ok(());
        }
        while let Some((e, empty)) = self.child("metadata")? {
            let raw = e.local_name();
            let raw = std::str::from_utf8(raw.as_ref())
                .map_err(|_| self.error("metadata element name is not valid UTF-8"))?;
            let key = xstream_decode_name(raw).into_owned();
            if self.read_text(&key, empty, true)? && key != "@class" {
                out.insert(self.interner.get(&key), self.interner.get(self.text.trim()));
            }
        }
        Ok(())
    }
}

/// Whether a text event is only XML whitespace.
fn is_blank(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// The five entities XML predefines; any other general entity is undeclared in a Eureka
/// payload.
fn predefined_entity(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}

/// Undoes XStream's `XmlFriendlyNameCoder` escaping of an element name: `_-` → `$`,
/// `_.XXXX` → the UTF-16 code unit `XXXX` (surrogate pairs combined), `__` → `_`, checked in
/// that order at each `_` as `decodeName` does. A `_` that starts none of these, or an `_.`
/// escape that is not four hex digits or does not form a valid character, is kept verbatim
/// (XStream would throw there).
fn xstream_decode_name(name: &str) -> Cow<'_, str> {
    if !name.contains('_') {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(pos) = rest.find('_') {
        let (head, tail) = rest.split_at(pos);
        out.push_str(head);
        if let Some(after) = tail.strip_prefix("_-") {
            out.push('$');
            rest = after;
        } else if let Some((c, after)) = hex_escape(tail) {
            out.push(c);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("__") {
            out.push('_');
            rest = after;
        } else {
            out.push('_');
            rest = tail.get(1..).unwrap_or("");
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Parses `_.XXXX` (optionally followed by a second `_.XXXX` forming a surrogate pair) at the
/// start of `s`; returns the character and the rest.
fn hex_escape(s: &str) -> Option<(char, &str)> {
    fn unit(s: &str) -> Option<(u16, &str)> {
        let digits = s.strip_prefix("_.")?.get(..4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let value = u16::from_str_radix(digits, 16).ok()?;
        Some((value, s.get(6..)?))
    }
    let (first, rest) = unit(s)?;
    if (0xD800..0xDC00).contains(&first) {
        let (second, rest) = unit(rest)?;
        let c = char::decode_utf16([first, second]).next()?.ok()?;
        return Some((c, rest));
    }
    let c = char::from_u32(u32::from(first))?;
    Some((c, rest))
}

/// The last step of decoding an instance, in both XML decoders: `overriddenStatus` (or the legacy
/// `overriddenstatus`) when present, and the host name as instance id when none was sent (as
/// Eureka's `InstanceInfo` does for old clients).
fn finish_instance(inst: &mut Instance, overridden: Option<Status>, legacy: Option<Status>) {
    inst.overridden_status = overridden.or(legacy).unwrap_or_default();
    if inst.instance_id.is_empty() {
        inst.instance_id = inst.host_name.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xstream_names() {
        assert_eq!(xstream_decode_name("plain.name"), "plain.name");
        assert_eq!(
            xstream_decode_name("apiml.routes.api__v1.gatewayUrl"),
            "apiml.routes.api_v1.gatewayUrl"
        );
        assert_eq!(xstream_decode_name("a_-b"), "a$b");
        assert_eq!(xstream_decode_name("___-"), "_$");
        assert_eq!(xstream_decode_name("a__-"), "a_-");
        assert_eq!(xstream_decode_name("a_.002fb"), "a/b");
        assert_eq!(xstream_decode_name("_.d83d_.de00"), "\u{1F600}");
        // Malformed escapes are kept as they are.
        assert_eq!(xstream_decode_name("a_.zz"), "a_.zz");
        assert_eq!(xstream_decode_name("a_.d83d"), "a_.d83d");
        assert_eq!(xstream_decode_name("a_"), "a_");
        assert_eq!(xstream_decode_name("a_b"), "a_b");
    }

    #[test]
    fn entities() {
        assert_eq!(predefined_entity("amp"), Some('&'));
        assert_eq!(predefined_entity("nbsp"), None);
    }

    #[test]
    fn blank() {
        assert!(is_blank(b" \r\n\t"));
        assert!(!is_blank(b" x "));
    }

    #[test]
    fn lenient_metadata_skips_nested_entries() {
        let xml = "<instance><hostName>h</hostName><metadata><a><b>1</b><c/></a><d/><e>2</e>\
                   <f x='1'><g/></f></metadata></instance>";
        let snap = decode(xml.as_bytes()).unwrap();
        let inst = &snap.applications[0].instances[0];
        let keys: Vec<_> = inst.metadata.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(keys, [("d", ""), ("e", "2")]);
        assert_eq!(inst.instance_id, "h");
    }

    #[test]
    fn depth_limit_is_exact() {
        let ok = format!(
            "<applications>{}{}</applications>",
            "<x>".repeat(MAX_DEPTH - 1),
            "</x>".repeat(MAX_DEPTH - 1)
        );
        assert!(decode(ok.as_bytes()).is_ok());
        let deep = format!(
            "<applications>{}{}</applications>",
            "<x>".repeat(MAX_DEPTH),
            "</x>".repeat(MAX_DEPTH)
        );
        assert!(matches!(
            decode(deep.as_bytes()),
            Err(DecodeError::Xml { .. })
        ));
    }
}
