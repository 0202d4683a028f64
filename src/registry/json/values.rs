//! The visitors for single values in Eureka's JSON layouts: ports, flags, texts that may be
//! null, statuses, action types, integers written as strings, and metadata maps.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer};

use crate::registry::{ActionType, PortInfo, Status};

use super::*;

/// A `port` / `securePort` value as sent: `{"$":…,"@enabled":…}` or a bare number.
#[derive(Default)]
pub(super) struct PortWire {
    pub(super) port: Option<u16>,
    pub(super) enabled: Option<bool>,
}

impl PortWire {
    /// Applies Eureka's default for a missing `@enabled`: `port` enabled, `securePort` not.
    pub(super) fn resolve(self, enabled_by_default: bool) -> PortInfo {
        PortInfo {
            port: self.port.unwrap_or(0),
            enabled: self.enabled.unwrap_or(enabled_by_default),
        }
    }
}

#[derive(Deserialize)]
pub(super) enum PortKey {
    #[serde(rename = "$")]
    Value,
    #[serde(rename = "@enabled")]
    Enabled,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for PortWire {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;

        impl<'de> Visitor<'de> for PortVisitor {
            type Value = PortWire;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a port object {"$": port, "@enabled": flag} or a port number"#)
            }

            fn visit_unit<E: de::Error>(self) -> Result<PortWire, E> {
                Ok(PortWire::default())
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortWire, E> {
                Ok(PortWire {
                    port: Some(PortNumber.visit_u64(v)?),
                    enabled: None,
                })
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortWire, E> {
                Ok(PortWire {
                    port: Some(PortNumber.visit_i64(v)?),
                    enabled: None,
                })
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<PortWire, E> {
                PortNumber.visit_f64(v).map(|_| PortWire::default())
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortWire, E> {
                Ok(PortWire {
                    port: Some(PortNumber.visit_str(v)?),
                    enabled: None,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PortWire, A::Error> {
                let mut out = PortWire::default();
                while let Some(key) = map.next_key::<PortKey>()? {
                    match key {
                        PortKey::Value => {
                            out.port = map.next_value_seed(OptionalSeed(PortNumber))?;
                        }
                        PortKey::Enabled => {
                            out.enabled = map.next_value_seed(OptionalSeed(EnabledFlag))?;
                        }
                        PortKey::Other => {
                            map.next_value::<Skip>()?;
                        }
                    }
                }
                Ok(out)
            }
        }

        deserializer.deserialize_any(PortVisitor)
    }
}

/// Visits a port number: an integer or a numeric string (blanks trimmed) in `0..=65535`.
#[derive(Clone, Copy)]
pub(super) struct PortNumber;

impl<'de> Visitor<'de> for PortNumber {
    type Value = u16;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port number in 0..=65535 (integer or numeric string)")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u16, E> {
        u16::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u16, E> {
        u16::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u16, E> {
        Err(E::invalid_type(Unexpected::Float(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u16, E> {
        v.trim()
            .parse::<u16>()
            .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }
}

/// Visits an `@enabled` flag: a boolean, or a string that is true when it equals `"true"`
/// ignoring case and surrounding blanks (Java's `Boolean.parseBoolean`, which Eureka uses).
#[derive(Clone, Copy)]
pub(super) struct EnabledFlag;

impl<'de> Visitor<'de> for EnabledFlag {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a boolean or "true"/"false""#)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v.trim().eq_ignore_ascii_case("true"))
    }
}

/// Runs a visitor through `deserialize_any`, mapping JSON `null` to `None`.
pub(super) struct OptionalSeed<V>(pub(super) V);

impl<'de, V> de::DeserializeSeed<'de> for OptionalSeed<V>
where
    V: Visitor<'de> + Copy,
{
    type Value = Option<V::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(Nullable(self.0))
    }
}

/// Wraps a visitor so that `null` becomes `None` and everything else `Some(inner result)`.
pub(super) struct Nullable<V>(pub(super) V);

impl<'de, V: Visitor<'de> + Copy> Visitor<'de> for Nullable<V> {
    type Value = Option<V::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)?;
        f.write_str(" or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.0.visit_bool(v).map(Some)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.0.visit_i64(v).map(Some)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.0.visit_u64(v).map(Some)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.0.visit_f64(v).map(Some)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.0.visit_str(v).map(Some)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.0.visit_borrowed_str(v).map(Some)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.0.visit_string(v).map(Some)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(seq).map(Some)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(map).map(Some)
    }
}

// ---------------------------------------------------------------------------------------------
// Scalars: text and integers
// ---------------------------------------------------------------------------------------------

/// Visits a text value: a string (kept verbatim), or a number or boolean (its JSON text).
#[derive(Clone, Copy)]
pub(super) struct Text;

impl<'de> Visitor<'de> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(if v { "true" } else { "false" }.to_owned())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}

/// Visits a status string without allocating: [`Status::parse`]; a number or boolean is
/// [`Status::Unknown`].
#[derive(Clone, Copy)]
pub(super) struct StatusText;

impl<'de> Visitor<'de> for StatusText {
    type Value = Status;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a status string")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Status, E> {
        Ok(Status::Unknown)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Status, E> {
        Ok(Status::Unknown)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Status, E> {
        Ok(Status::Unknown)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Status, E> {
        Ok(Status::Unknown)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Status, E> {
        Ok(Status::parse(v))
    }
}

/// Visits an `actionType` string without allocating: [`ActionType::parse`]; anything it does
/// not know (or a number or boolean) is `None`.
#[derive(Clone, Copy)]
pub(super) struct ActionText;

impl<'de> Visitor<'de> for ActionText {
    type Value = Option<ActionType>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an action type string")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(ActionType::parse(v))
    }
}

/// Visits an integer sent as a JSON integer or as a numeric string (blanks trimmed), as
/// Eureka's codecs read `versions__delta` and the timestamps (`Long.valueOf`).
#[derive(Clone, Copy)]
pub(super) struct Integer;

impl<'de> Visitor<'de> for Integer {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a numeric string")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        Err(E::invalid_type(Unexpected::Float(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        v.trim()
            .parse::<i64>()
            .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------------

/// The `metadata` map after Eureka's rules: `@class` dropped, scalars as text.
pub(super) struct Metadata(pub(super) BTreeMap<Arc<str>, Arc<str>>);

/// Jackson's type marker inside serialized maps.
pub(super) const CLASS_MARKER: &str = "@class";

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetadataVisitor;

        impl<'de> Visitor<'de> for MetadataVisitor {
            type Value = Metadata;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a metadata object")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Metadata, E> {
                Ok(Metadata(BTreeMap::new()))
            }

            /// Jettison renders an empty `<metadata/>` as `""`.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Metadata, E> {
                if v.trim().is_empty() {
                    Ok(Metadata(BTreeMap::new()))
                } else {
                    Err(E::invalid_type(Unexpected::Str(v), &self))
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
                let mut out = BTreeMap::new();
                let mut index = 0;
                while let Some(MetaKey(key)) = map.next_key::<MetaKey<'de>>()? {
                    if key == CLASS_MARKER {
                        // Accepts what `MetaValue` accepts, without keeping it.
                        map.next_value::<Skip>()?;
                        continue;
                    }
                    if let Some(value) = map.next_value::<MetaValue<'de>>()?.0 {
                        let (key, value) = share(index, &key, &value);
                        index += 1;
                        out.insert(key, value);
                    }
                }
                Ok(Metadata(out))
            }
        }

        deserializer.deserialize_any(MetadataVisitor)
    }
}

/// A metadata key, borrowed from the input when it has no escapes (so that a dropped key such
/// as `@class` costs no allocation).
pub(super) struct MetaKey<'de>(pub(super) Cow<'de, str>);

impl<'de> Deserialize<'de> for MetaKey<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetaKeyVisitor;

        impl<'de> Visitor<'de> for MetaKeyVisitor {
            type Value = MetaKey<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a metadata key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MetaKey(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MetaKey(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(MetaKey(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(MetaKeyVisitor)
    }
}

/// One metadata value: scalars as text (borrowed from the input when it has no escapes);
/// `null`, objects and arrays are skipped (`None`).
pub(super) struct MetaValue<'de>(pub(super) Option<Cow<'de, str>>);

impl<'de> Deserialize<'de> for MetaValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetaValueVisitor;

        impl<'de> Visitor<'de> for MetaValueVisitor {
            type Value = MetaValue<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a metadata value")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MetaValue(None))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(MetaValue(Some(Cow::Borrowed(if v {
                    "true"
                } else {
                    "false"
                }))))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(MetaValue(Some(Cow::Owned(v.to_string()))))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(MetaValue(Some(Cow::Owned(v.to_string()))))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(MetaValue(Some(Cow::Owned(v.to_string()))))
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MetaValue(Some(Cow::Borrowed(v))))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MetaValue(Some(Cow::Owned(v.to_owned()))))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<Skip>()?.is_some() {}
                Ok(MetaValue(None))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, Skip>()?.is_some() {}
                Ok(MetaValue(None))
            }
        }

        deserializer.deserialize_any(MetaValueVisitor)
    }
}
