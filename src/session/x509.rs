//! The client-certificate headers of Zowe's `x509` authentication scheme.
//!
//! A service whose metadata says `apiml.authentication.scheme: x509` trusts the gateway to
//! tell it who the client is. With listener mutual TLS, wsrelay sets, from the verified
//! client certificate (the leaf), the headers the Zowe gateway sets
//! (`X509FilterFactory.setHeader`, zowe/api-layer v3; `X509Scheme` in v2):
//!
//! - `X-Certificate-Public`: Base64 (standard alphabet, padded, one line) of the whole DER
//!   certificate (`Base64.getEncoder().encodeToString(certificate.getEncoded())`);
//! - `X-Certificate-DistinguishedName`: the subject as Java's `getSubjectDN().getName()` writes
//!   it: RDNs most specific first, `", "` between them, Java's keywords (`CN`, `OU`, `O`, `L`,
//!   `ST`, `C`, `STREET`, `DC`, `UID`, `EMAILADDRESS`, ...; `OID.n.n` otherwise), values
//!   quoted when they hold `,+=<>#;"\` or surrounding or repeated spaces (`AVA.toString`);
//! - `X-Certificate-CommonName`: the value of the first `CN` (`getCommonName` over `LdapName`).
//!
//! `apiml.authentication.headers` (comma-separated) limits the set, as in v3; without it all
//! three are set, as v2 does. Client-sent copies are always dropped (`is_not_forwarded`).
//! When the client sent no certificate, the request goes on without them and with
//! `X-Zowe-Auth-Failure: ZWEAG167E No client certificate provided in the request`, as Zowe does.

use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use serde::Serialize;

/// `X-Certificate-Public`.
pub const PUBLIC: HeaderName = HeaderName::from_static("x-certificate-public");
/// `X-Certificate-DistinguishedName`.
pub const DISTINGUISHED_NAME: HeaderName =
    HeaderName::from_static("x-certificate-distinguishedname");
/// `X-Certificate-CommonName`.
pub const COMMON_NAME: HeaderName = HeaderName::from_static("x-certificate-commonname");
/// `X-Zowe-Auth-Failure`: why the scheme could not apply.
pub const AUTH_FAILURE: HeaderName = HeaderName::from_static("x-zowe-auth-failure");
/// The value Zowe sends when no client certificate came (message ZWEAG167E).
pub const NO_CERTIFICATE: &str = "ZWEAG167E No client certificate provided in the request";

/// Which of the three headers a service gets (`apiml.authentication.headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Headers {
    /// `X-Certificate-Public`.
    pub public: bool,
    /// `X-Certificate-DistinguishedName`.
    pub distinguished_name: bool,
    /// `X-Certificate-CommonName`.
    pub common_name: bool,
}

impl X509Headers {
    /// All three (no `apiml.authentication.headers`).
    pub const ALL: X509Headers = X509Headers {
        public: true,
        distinguished_name: true,
        common_name: true,
    };

    /// From `apiml.authentication.headers`: header names separated by `,`, compared
    /// case-insensitively; other names are ignored.
    pub fn parse(list: &str) -> X509Headers {
        let has = |name: &HeaderName| {
            list.split(',')
                .any(|n| n.trim().eq_ignore_ascii_case(name.as_str()))
        };
        X509Headers {
            public: has(&PUBLIC),
            distinguished_name: has(&DISTINGUISHED_NAME),
            common_name: has(&COMMON_NAME),
        }
    }
}

/// The headers for a client certificate (DER), limited to `which`.
///
/// # Errors
/// A message when the certificate cannot be parsed (it was verified by rustls, so this is
/// not expected) or a value cannot be a header value.
pub fn headers(der: &[u8], which: X509Headers) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("cannot parse the client certificate: {e}"))?;
    let subject = cert.subject();
    let mut out = Vec::with_capacity(3);
    let value = |s: String| {
        HeaderValue::try_from(s).map_err(|_| "a certificate value is not a valid header value")
    };
    if which.public {
        out.push((
            PUBLIC,
            value(base64::engine::general_purpose::STANDARD.encode(der))?,
        ));
    }
    if which.distinguished_name {
        out.push((DISTINGUISHED_NAME, value(java_dn(subject))?));
    }
    if which.common_name {
        if let Some(cn) = subject
            .iter_rdn()
            .flat_map(|rdn| rdn.iter())
            .find(|a| a.attr_type().to_id_string() == "2.5.4.3")
            .and_then(value_string)
        {
            out.push((COMMON_NAME, value(cn)?));
        }
    }
    Ok(out)
}

/// Java's keyword for an attribute type (`AVAKeyword`, the last one registered per OID).
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "T",
        "1.3.6.1.4.1.42.2.11.2.1" => "IP",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "2.5.4.46" => "DNQ",
        "2.5.4.4" => "SURNAME",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATION",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        "0.9.2342.19200300.100.1.1" => "UID",
        "2.5.4.5" => "SERIALNUMBER",
        _ => return None,
    })
}

/// An attribute value as text: the string types Java's `DerValue.getAsString` reads.
fn value_string(a: &x509_parser::x509::AttributeTypeAndValue<'_>) -> Option<String> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let data = a.attr_value().data;
    match a.attr_value().tag() {
        Tag::PrintableString
        | Tag::Utf8String
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::T61String => Some(String::from_utf8_lossy(data).into_owned()),
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        Tag::UniversalString => Some(
            data.chunks_exact(4)
                .filter_map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        _ => None,
    }
}

/// The subject as `X500Name.toString()` writes it (see the module doc).
fn java_dn(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let oid = a.attr_type().to_id_string();
                    let key = keyword(&oid).map_or_else(|| format!("OID.{oid}"), str::to_owned);
                    match value_string(a) {
                        Some(v) => format!("{key}={}", java_value(&v)),
                        None => format!("{key}=#{}", hex(a.attr_value())),
                    }
                })
                .collect::<Vec<_>>()
                .join(" + ")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(", ")
}

/// A value as `AVA.toKeywordValueString` writes it: `"` and `\` escaped with `\`, the whole
/// value quoted when it holds `,+=\n<>#;"\`, starts or ends with a space, or has two spaces in
/// a row.
fn java_value(v: &str) -> String {
    const ESCAPEES: &str = ",+=\n<>#;\\\"";
    let mut quote = false;
    let mut out = String::with_capacity(v.len() + 2);
    let mut previous_white = false;
    for (i, c) in v.chars().enumerate() {
        if is_printable_string_char(c) || ESCAPEES.contains(c) {
            if (i == 0 && (c == ' ' || c == '\n')) || ESCAPEES.contains(c) {
                quote = true;
            }
            if c == ' ' || c == '\n' {
                if previous_white {
                    quote = true;
                }
                previous_white = true;
            } else {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                previous_white = false;
            }
        } else {
            previous_white = false;
        }
        out.push(c);
    }
    if out.ends_with([' ', '\n']) {
        quote = true;
    }
    if quote {
        format!("\"{out}\"")
    } else {
        out
    }
}

/// ASN.1 PrintableString characters (Java's `DerValue.isPrintableStringChar`).
fn is_printable_string_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

/// The value's DER (tag, length, contents) in lower-case hex, for types without a string
/// form.
fn hex(v: &x509_parser::der_parser::asn1_rs::Any<'_>) -> String {
    use std::fmt::Write;
    let data = v.data;
    // The identifier octet: class, constructed bit, tag number (low-tag form).
    let header = &v.header;
    let identifier = ((header.class() as u8) << 6)
        | (u8::from(header.is_constructed()) << 5)
        | u8::try_from(v.tag().0).unwrap_or(0x1f).min(0x1f);
    let mut der = vec![identifier];
    match data.len() {
        n @ 0..=127 => der.push(n as u8),
        n => {
            let bytes = n.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            der.push(0x80 | (bytes.len() - skip) as u8);
            der.extend_from_slice(&bytes[skip..]);
        }
    }
    der.extend_from_slice(data);
    let mut out = String::with_capacity(der.len() * 2);
    for b in der {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_as_java_quotes_them() {
        assert_eq!(java_value("Alice"), "Alice");
        assert_eq!(java_value("Example, Inc."), "\"Example, Inc.\"");
        assert_eq!(java_value("a\"b"), "\"a\\\"b\"");
        assert_eq!(java_value(" lead"), "\" lead\"");
        assert_eq!(java_value("trail "), "\"trail \"");
        assert_eq!(java_value("two  spaces"), "\"two  spaces\"");
        assert_eq!(java_value("one space"), "one space");
        assert_eq!(java_value("Žluťoučký"), "Žluťoučký");
    }

    #[test]
    fn header_lists_parse() {
        assert_eq!(
            X509Headers::parse("X-Certificate-CommonName, x-certificate-public,Other"),
            X509Headers {
                public: true,
                distinguished_name: false,
                common_name: true,
            }
        );
    }
}
