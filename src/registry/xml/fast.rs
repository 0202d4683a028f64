//! The fast path of the XML decoder: a byte scanner for the plain, well-formed subset of XML
//! that Eureka servers actually send.
//!
//! It accepts only input it can decode with certainty to the same [`Snapshot`] as the full
//! `quick-xml` decoder ([`super::decode_full`]) and gives up (`None`) on anything else, in which
//! case the caller runs the full decoder on the whole input. So every error, and every rarely
//! seen construct, is handled by the full decoder alone; the fast path only has to be right on
//! what it accepts (checked against the full decoder by the tests below).
//!
//! Accepted subset: UTF-8 input; blank text and at most one `<?xml …?>` declaration before the
//! root and blank text after it; element and attribute names of ASCII letters, digits, `_`,
//! `.` and `-` starting with a letter or `_` (no namespace prefixes); at most one attribute per
//! element, written `name="value"` or `name='value'`; end tags written `</name>` and matching
//! their start tags; no comments, CDATA, processing instructions, DOCTYPE, entity or character
//! references (`&`); no carriage return inside a kept text value; no element inside a text
//! field or a metadata entry; nesting within [`MAX_DEPTH`]. Field rules are those of
//! [`super::decode`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::model::Interner;
use super::super::{ActionType, Application, Instance, PortInfo, Snapshot, Status};
use super::{xstream_decode_name, MAX_DEPTH};

/// One attribute: `(name, raw value)`.
type Attr<'a> = Option<(&'a str, &'a str)>;

/// A start tag read by [`Scanner::tag`].
enum Tag<'a> {
    /// `<name attr="…">`.
    Start(&'a str, Attr<'a>),
    /// `<name attr="…"/>`.
    Empty(&'a str, Attr<'a>),
}

/// What follows inside a container element.
enum Next<'a> {
    /// A child element: name, attribute, whether it is empty (`<x/>`).
    Child(&'a str, Attr<'a>, bool),
    /// The container's end tag.
    End,
}

/// Decodes `bytes` if it lies within the subset described in the module documentation;
/// `None` when it does not (the caller then runs the full decoder).
pub(super) fn decode(bytes: &[u8]) -> Option<Snapshot> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut s = Scanner {
        s: text,
        pos: 0,
        depth: 0,
        stack: Vec::new(),
        interner: Interner::default(),
        previous: Vec::new(),
    };
    s.prolog()?;
    let (root, empty) = match s.tag()? {
        Tag::Start(name, _) => {
            s.enter()?;
            (name, false)
        }
        Tag::Empty(name, _) => (name, true),
    };
    let snapshot = match root {
        "applications" => s.applications(empty)?,
        "application" => Snapshot {
            versions_delta: None,
            apps_hashcode: None,
            applications: vec![s.application(empty)?],
        },
        "instance" => Snapshot::of_instance(s.instance(empty)?),
        _ => return None,
    };
    let rest = text.get(s.pos..)?;
    rest.bytes().all(is_xml_blank).then_some(snapshot)
}

/// XML whitespace.
fn is_xml_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// A byte allowed in a name after the first one.
const fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// [`is_name_byte`] as a table.
static NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = is_name_byte(i as u8);
        i += 1;
    }
    table
};

/// A byte allowed at the start of a name.
fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// The scanner state: the input, the position, the element depth, a reusable stack of open
/// element names for skipping, the metadata string interner, and the metadata entries last
/// seen at each position (raw name, raw value, shared key, shared value).
struct Scanner<'a> {
    s: &'a str,
    pos: usize,
    depth: usize,
    stack: Vec<&'a str>,
    interner: Interner,
    previous: Vec<(&'a str, &'a str, Arc<str>, Arc<str>)>,
}

impl<'a> Scanner<'a> {
    /// Blank text and an optional `<?xml …?>` declaration before the root element.
    fn prolog(&mut self) -> Option<()> {
        self.skip_blank();
        let rest = self.s.get(self.pos..)?;
        if let Some(decl) = rest.strip_prefix("<?xml") {
            if !decl.bytes().next().is_some_and(is_xml_blank) {
                return None;
            }
            let end = decl.find("?>")?;
            if decl.get(..end)?.contains('<') {
                return None;
            }
            self.pos += "<?xml".len() + end + 2;
            self.skip_blank();
        }
        Some(())
    }

    fn skip_blank(&mut self) {
        let b = self.s.as_bytes();
        while b.get(self.pos).is_some_and(|&c| is_xml_blank(c)) {
            self.pos += 1;
        }
    }

    /// Text up to the next `<`, which must exist; gives up on `&`.
    #[inline]
    fn text(&mut self) -> Option<&'a str> {
        if self.s.as_bytes().get(self.pos) == Some(&b'<') {
            return Some("");
        }
        self.text_until(memchr::memchr2(b'<', b'&', self.rest()?))
    }

    /// Text of a leaf field up to the next `<`; also gives up on `\r` (which the full decoder
    /// would normalise).
    #[inline]
    fn leaf_text(&mut self) -> Option<&'a str> {
        self.text_until(memchr::memchr3(b'<', b'&', b'\r', self.rest()?))
    }

    /// The unread input.
    fn rest(&self) -> Option<&'a [u8]> {
        self.s.as_bytes().get(self.pos..)
    }

    /// Takes the text up to `stop` (an offset from the position) if a `<` is there.
    fn text_until(&mut self, stop: Option<usize>) -> Option<&'a str> {
        let i = stop?;
        if self.rest()?.get(i) != Some(&b'<') {
            return None;
        }
        let t = self.s.get(self.pos..self.pos + i)?;
        self.pos += i;
        Some(t)
    }

    /// A name at `i` (see [`is_name_start`], [`is_name_byte`]); returns it and the index after.
    #[inline]
    fn name_at(&self, i: usize) -> Option<(&'a str, usize)> {
        let rest = self.s.as_bytes().get(i..)?;
        if !is_name_start(*rest.first()?) {
            return None;
        }
        let len = rest
            .iter()
            .position(|&c| !NAME_BYTE[usize::from(c)])
            .unwrap_or(rest.len());
        Some((self.s.get(i..i + len)?, i + len))
    }

    /// Whether the current position holds an end tag (`</`).
    #[inline]
    fn at_end_tag(&self) -> bool {
        self.s.as_bytes().get(self.pos + 1) == Some(&b'/')
    }

    /// The end tag `</name>` at the current position; gives up on anything else.
    #[inline]
    fn end_tag(&mut self, name: &str) -> Option<()> {
        let rest = self.s.as_bytes().get(self.pos..)?;
        let after = rest.strip_prefix(b"</")?.strip_prefix(name.as_bytes())?;
        if after.first() != Some(&b'>') {
            return None;
        }
        self.pos += name.len() + 3;
        self.depth = self.depth.checked_sub(1)?;
        Some(())
    }

    /// The start or empty-element tag at the current position (which holds `<`); gives up on
    /// an end tag (see [`Scanner::end_tag`]).
    fn tag(&mut self) -> Option<Tag<'a>> {
        let b = self.s.as_bytes();
        if b.get(self.pos) != Some(&b'<') {
            return None;
        }
        let (name, mut i) = self.name_at(self.pos + 1)?;
        let mut attr: Attr<'a> = None;
        loop {
            match *b.get(i)? {
                b'>' => {
                    self.pos = i + 1;
                    return Some(Tag::Start(name, attr));
                }
                b'/' => {
                    if b.get(i + 1) != Some(&b'>') {
                        return None;
                    }
                    self.pos = i + 2;
                    return Some(Tag::Empty(name, attr));
                }
                c if is_xml_blank(c) => {
                    while b.get(i).is_some_and(|&c| is_xml_blank(c)) {
                        i += 1;
                    }
                    if matches!(b.get(i), Some(b'>' | b'/')) {
                        continue;
                    }
                    if attr.is_some() {
                        return None;
                    }
                    let (key, after) = self.name_at(i)?;
                    if b.get(after) != Some(&b'=') {
                        return None;
                    }
                    let quote = *b.get(after + 1)?;
                    if quote != b'"' && quote != b'\'' {
                        return None;
                    }
                    let start = after + 2;
                    let len = memchr::memchr(quote, b.get(start..)?)?;
                    let value = self.s.get(start..start + len)?;
                    if value.bytes().any(|c| c == b'<' || c == b'&') {
                        return None;
                    }
                    attr = Some((key, value));
                    i = start + len + 1;
                    if !matches!(b.get(i), Some(&c) if is_xml_blank(c) || c == b'>' || c == b'/') {
                        return None;
                    }
                }
                _ => return None,
            }
        }
    }

    /// One level deeper; gives up beyond [`MAX_DEPTH`].
    #[inline]
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// The next child of the container `parent` (text inside a container is ignored, as the
    /// full decoder does), or its end tag.
    #[inline]
    fn next(&mut self, parent: &str) -> Option<Next<'a>> {
        self.text()?;
        if self.at_end_tag() {
            self.end_tag(parent)?;
            return Some(Next::End);
        }
        match self.tag()? {
            Tag::Start(name, attr) => {
                self.enter()?;
                Some(Next::Child(name, attr, false))
            }
            Tag::Empty(name, attr) => Some(Next::Child(name, attr, true)),
        }
    }

    /// The trimmed text of the leaf element `name` whose start tag was just read.
    #[inline]
    fn leaf(&mut self, name: &str, empty: bool) -> Option<&'a str> {
        if empty {
            return Some("");
        }
        let t = self.leaf_text()?;
        self.end_tag(name)?;
        Some(t.trim())
    }

    fn string(&mut self, name: &str, empty: bool) -> Option<String> {
        self.leaf(name, empty).map(str::to_owned)
    }

    /// An integer field; `Some(None)` when empty.
    fn integer(&mut self, name: &str, empty: bool) -> Option<Option<i64>> {
        let t = self.leaf(name, empty)?;
        if t.is_empty() {
            return Some(None);
        }
        t.parse::<i64>().ok().map(Some)
    }

    /// Skips the element `name` whose start tag was just read, checking its end tags.
    fn skip(&mut self, name: &'a str, empty: bool) -> Option<()> {
        if empty {
            return Some(());
        }
        let base = self.stack.len();
        self.stack.push(name);
        while self.stack.len() > base {
            self.text()?;
            if self.at_end_tag() {
                let open = self.stack.pop()?;
                self.end_tag(open)?;
                continue;
            }
            match self.tag()? {
                Tag::Start(n, _) => {
                    self.enter()?;
                    self.stack.push(n);
                }
                Tag::Empty(..) => {}
            }
        }
        Some(())
    }

    fn applications(&mut self, empty: bool) -> Option<Snapshot> {
        let mut snapshot = Snapshot::default();
        if empty {
            return Some(snapshot);
        }
        while let Next::Child(name, _, empty) = self.next("applications")? {
            match name {
                "versions__delta" => snapshot.versions_delta = self.integer(name, empty)?,
                "apps__hashcode" => snapshot.apps_hashcode = Some(self.string(name, empty)?),
                "application" => snapshot.applications.push(self.application(empty)?),
                _ => self.skip(name, empty)?,
            }
        }
        Some(snapshot)
    }

    fn application(&mut self, empty: bool) -> Option<Application> {
        let mut app = Application::default();
        if empty {
            return Some(app);
        }
        while let Next::Child(name, _, empty) = self.next("application")? {
            match name {
                "name" => app.name = self.string(name, empty)?,
                "instance" => app.instances.push(self.instance(empty)?),
                _ => self.skip(name, empty)?,
            }
        }
        Some(app)
    }

    fn instance(&mut self, empty: bool) -> Option<Instance> {
        let mut inst = Instance::default();
        let mut overridden: Option<Status> = None;
        let mut overridden_legacy: Option<Status> = None;
        if !empty {
            while let Next::Child(name, attr, empty) = self.next("instance")? {
                match name {
                    "instanceId" => inst.instance_id = self.string(name, empty)?,
                    "app" => inst.app = self.string(name, empty)?,
                    "hostName" => inst.host_name = self.string(name, empty)?,
                    "ipAddr" => inst.ip_addr = self.string(name, empty)?,
                    "status" => inst.status = Status::parse(self.leaf(name, empty)?),
                    "overriddenStatus" => {
                        overridden = Some(Status::parse(self.leaf(name, empty)?));
                    }
                    "overriddenstatus" => {
                        overridden_legacy = Some(Status::parse(self.leaf(name, empty)?));
                    }
                    "port" => inst.port = self.port(name, attr, empty, true)?,
                    "securePort" => inst.secure_port = self.port(name, attr, empty, false)?,
                    "vipAddress" => inst.vip_address = self.string(name, empty)?,
                    "secureVipAddress" => inst.secure_vip_address = self.string(name, empty)?,
                    "homePageUrl" => inst.home_page_url = Some(self.string(name, empty)?),
                    "statusPageUrl" => inst.status_page_url = Some(self.string(name, empty)?),
                    "healthCheckUrl" => inst.health_check_url = Some(self.string(name, empty)?),
                    "metadata" => self.metadata(&mut inst.metadata, empty)?,
                    "lastUpdatedTimestamp" => {
                        inst.last_updated_timestamp_ms = self.integer(name, empty)?.unwrap_or(0);
                    }
                    "lastDirtyTimestamp" => {
                        inst.last_dirty_timestamp_ms = self.integer(name, empty)?.unwrap_or(0);
                    }
                    "actionType" => inst.action_type = ActionType::parse(self.leaf(name, empty)?),
                    _ => self.skip(name, empty)?,
                }
            }
        }
        super::finish_instance(&mut inst, overridden, overridden_legacy);
        Some(inst)
    }

    fn port(
        &mut self,
        name: &str,
        attr: Attr<'a>,
        empty: bool,
        enabled_by_default: bool,
    ) -> Option<PortInfo> {
        let enabled = match attr {
            Some(("enabled", value)) => value.trim().eq_ignore_ascii_case("true"),
            _ => enabled_by_default,
        };
        let t = self.leaf(name, empty)?;
        let port = if t.is_empty() {
            0
        } else {
            t.parse::<u16>().ok()?
        };
        Some(PortInfo { port, enabled })
    }

    fn metadata(&mut self, out: &mut BTreeMap<Arc<str>, Arc<str>>, empty: bool) -> Option<()> {
        if empty {
            return Some(());
        }
        let mut index = 0;
        while let Next::Child(name, _, empty) = self.next("metadata")? {
            let value = self.leaf(name, empty)?;
            // The instances of a service usually repeat the same entries in the same order:
            // reuse the shared strings of the previous instance's entry at this position when
            // its raw name and value are the same, without hashing.
            let (key, value) = match self.previous.get(index) {
                Some(p) if p.0 == name && p.1 == value => (Arc::clone(&p.2), Arc::clone(&p.3)),
                _ => {
                    let key = xstream_decode_name(name);
                    if key == "@class" {
                        continue;
                    }
                    let shared = (self.interner.get(&key), self.interner.get(value));
                    let entry = (name, value, shared.0.clone(), shared.1.clone());
                    match self.previous.get_mut(index) {
                        Some(p) => *p = entry,
                        None => self.previous.push(entry),
                    }
                    shared
                }
            };
            index += 1;
            out.insert(key, value);
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path must never disagree with the full decoder: whenever it accepts an input,
    /// the full decoder accepts it too and decodes the same snapshot.
    fn agree(input: &[u8]) -> bool {
        match decode(input) {
            Some(fast) => match super::super::decode_full(input) {
                Ok(full) => {
                    assert_eq!(fast, full, "{}", String::from_utf8_lossy(input));
                    true
                }
                Err(e) => panic!(
                    "fast path accepted what the full decoder rejects ({e}): {}",
                    String::from_utf8_lossy(input)
                ),
            },
            None => false,
        }
    }

    const SAMPLE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<applications>\
<versions__delta>1</versions__delta><apps__hashcode>UP_2_</apps__hashcode><application>\
<name>SVC</name><instance><instanceId>h:svc:1</instanceId><hostName>h</hostName><app>SVC</app>\
<ipAddr>10.0.0.1</ipAddr><status>UP</status><overriddenstatus>UNKNOWN</overriddenstatus>\
<port enabled=\"false\">1</port><securePort enabled='true'>2</securePort><countryId>1</countryId>\
<dataCenterInfo class=\"x$y\"><name>MyOwn</name></dataCenterInfo><leaseInfo>\
<durationInSecs>90</durationInSecs></leaseInfo><metadata class=\"m\">\
<apiml.routes.ws__v1.gatewayUrl>ws/v1</apiml.routes.ws__v1.gatewayUrl><a_-b> v </a_-b><e/>\
<_.0040class>x</_.0040class></metadata><homePageUrl>https://h:2/</homePageUrl>\
<vipAddress>svc</vipAddress><lastUpdatedTimestamp>17</lastUpdatedTimestamp>\
<actionType>ADDED</actionType></instance><instance><hostName>g</hostName><status>DOWN</status>\
<overriddenStatus>UP</overriddenStatus><port>3</port><securePort/></instance></application>\
</applications>\n";

    #[test]
    fn sample_takes_the_fast_path() {
        assert!(agree(SAMPLE.as_bytes()));
        let snap = decode(SAMPLE.as_bytes()).unwrap();
        assert_eq!(snap.instance_count(), 2);
    }

    #[test]
    fn fixtures_agree() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/eureka");
        let mut stack = vec![std::path::PathBuf::from(dir)];
        let mut fast = 0;
        while let Some(path) = stack.pop() {
            for entry in std::fs::read_dir(&path).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "xml") {
                    let body = std::fs::read(&p).unwrap();
                    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&body);
                    if agree(body) {
                        fast += 1;
                    }
                }
            }
        }
        assert!(fast > 0, "no fixture took the fast path");
    }

    #[test]
    fn mutations_agree() {
        let base = SAMPLE.as_bytes();
        let bytes: &[u8] = b"<>/&\"' x_.-\r\n=!?:\x80";
        let mut accepted = 0usize;
        for i in 0..=base.len() {
            accepted += usize::from(agree(&base[..i]));
            let mut v = base.to_vec();
            if i < v.len() {
                v.remove(i);
                accepted += usize::from(agree(&v));
            }
            for &b in bytes {
                let mut v = base.to_vec();
                v.insert(i, b);
                accepted += usize::from(agree(&v));
                if i < base.len() {
                    let mut v = base.to_vec();
                    v[i] = b;
                    accepted += usize::from(agree(&v));
                }
            }
        }
        assert!(accepted > 1000, "{accepted}");
    }

    #[test]
    fn gives_up_on_what_it_does_not_handle() {
        for input in [
            "<instance><hostName>a&amp;b</hostName></instance>",
            "<instance><hostName><![CDATA[a]]></hostName></instance>",
            "<instance><!-- c --><hostName>a</hostName></instance>",
            "<instance><hostName>a\r\nb</hostName></instance>",
            "<x:instance xmlns:x='u'><hostName>a</hostName></x:instance>",
            "<instance><hostName>a</hostName ></instance>",
            "<instance><port enabled='true' x='1'>1</port></instance>",
            "<instance><metadata><a><b/></a></metadata></instance>",
            "<instance><hostName>a</hostName></instance><x/>",
            "<instance><hostName>a</hostName>",
            "<instance><port>99999</port></instance>",
        ] {
            assert!(decode(input.as_bytes()).is_none(), "{input}");
            agree(input.as_bytes());
        }
    }
}
