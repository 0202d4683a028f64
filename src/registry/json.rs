//! Eureka JSON decoding.
//!
//! Accepts every JSON layout a Eureka server (or a client library) is known to produce:
//!
//! * the legacy XStream/Jettison and Spring Cloud `CloudJacksonJson` / Netflix
//!   `EurekaJacksonCodec` layout, where ports are `{"$":8080,"@enabled":"true"}`, timestamps and
//!   flags are strings, `instance`/`application` may be a single object instead of an array, and
//!   `overriddenstatus` is spelled in lower case;
//! * the Jackson bean layout of Eureka 2.x codecs (`JacksonJson`, `JacksonJsonMini`), with
//!   numbers and booleans, `overriddenStatus`, and the `@class` marker in empty metadata maps.
//!
//! The payload is decoded straight into the model by small serde visitors (no
//! `serde_json::Value` tree, no intermediate wire structs): known keys are matched without
//! allocating, and unknown fields are skipped without being materialised, though still
//! subject to `serde_json`'s recursion limit.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::model::Interner;
use super::{Application, DecodeError, Instance, Snapshot, Status};

/// Decodes a Eureka JSON payload into a [`Snapshot`].
///
/// Accepted top-level shapes (a JSON object with one of these keys; other keys are ignored):
///
/// * `{"applications":{…}}`: a full registry (`/apps`) or a delta (`/apps/delta`), with the
///   optional `versions__delta` (string or number) and `apps__hashcode` header fields;
/// * `{"application":[…]}` or `{"application":{…}}`: one or more applications without the
///   `applications` wrapper (`/apps/{APP}`, or a static-definition fragment);
/// * `{"instance":{…}}`: a single instance (`/apps/{APP}/{id}`), wrapped into an application
///   named after its `app` field.
///
/// If more than one of these keys is present, `applications` wins over `application`, which
/// wins over `instance`.
///
/// Field rules, following what Eureka's own codecs accept:
///
/// * `application` and `instance` may be an array or a single object (Jettison writes
///   one-element lists as objects);
/// * a port is `{"$":8080,"@enabled":"true"}` where `$` is a number or a numeric string in
///   `0..=65535` and `@enabled` is a boolean or a string (`"true"`, ignoring case and
///   surrounding blanks, is true; any other string is false, as Java's `Boolean.parseBoolean`).
///   A bare number is accepted as well. A missing `@enabled` means enabled for `port` and
///   disabled for `securePort`; a missing port object leaves [`PortInfo::default`] (port 0,
///   disabled), i.e. "not advertised";
/// * `versions__delta`, `lastUpdatedTimestamp` and `lastDirtyTimestamp` are integers or
///   numeric strings;
/// * `overriddenStatus` and the legacy `overriddenstatus` are both read (the camel-case one
///   wins if both are present); unknown status strings become [`Status::Unknown`], as
///   `InstanceInfo.InstanceStatus.toEnum` does; a missing `status` is [`Status::Unknown`];
/// * `metadata` may be absent or `null`; its `@class` entry (Jackson's type marker, e.g.
///   `java.util.Collections$EmptyMap`) is dropped; number and boolean values are kept as their
///   JSON text; `null`, object and array values are dropped;
/// * a missing or empty `instanceId` falls back to `hostName` (`InstanceInfo.getId()`);
/// * text fields (`app`, `hostName`, `ipAddr`, `vipAddress`, …) also accept numbers and
///   booleans (their JSON text) and `null` (empty / absent). Strings are kept verbatim;
/// * unknown fields are ignored; a repeated key overwrites the earlier one (as Jackson does).
///
/// # Errors
///
/// [`DecodeError::Json`] with the 1-based line and column where `serde_json` stopped and the
/// cause, when the input is not well-formed JSON (including invalid UTF-8, truncation,
/// trailing content, and nesting deeper than `serde_json`'s recursion limit of 128, in known
/// and unknown fields alike), when the top level is not an object with one of the keys above,
/// or when a field has the wrong type, e.g. a port that is not an integer in `0..=65535`, a
/// timestamp that is not an integer, an `instance` that is a string or an array, or an
/// application given as an array. Never panics.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    // Validating the whole input once and parsing a `str` is faster than letting `serde_json`
    // validate every string separately. Invalid UTF-8 falls back to the byte parser, which
    // reports the first error (syntax or encoding) with its position.
    let result = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str::<Root>(text),
        Err(_) => serde_json::from_slice::<Root>(bytes),
    };
    // The shared strings live on in the snapshot; the tables are only needed while decoding.
    let _ = SHARED.try_with(|shared| {
        if let Ok(mut shared) = shared.try_borrow_mut() {
            *shared = Shared::default();
        }
    });
    result.map(|root| root.0).map_err(json_error)
}

/// State shared by the visitors of the decode running on this thread (serde's visitors have
/// no other way to share state): the metadata string interner, and the metadata entries last
/// seen at each position (the instances of a service usually repeat the same entries in the
/// same order, which are then shared without hashing).
#[derive(Default)]
struct Shared {
    interner: Interner,
    previous: Vec<(Arc<str>, Arc<str>)>,
}

thread_local! {
    static SHARED: RefCell<Shared> = RefCell::new(Shared::default());
}

/// The shared strings for the metadata entry `key` = `value` found at position `index` of an
/// instance's metadata (see [`Interner`]); fresh ones if the shared state is not available.
fn share(index: usize, key: &str, value: &str) -> (Arc<str>, Arc<str>) {
    let shared = SHARED.try_with(|shared| {
        let mut shared = shared.try_borrow_mut().ok()?;
        if let Some((k, v)) = shared.previous.get(index) {
            if **k == *key && **v == *value {
                return Some((Arc::clone(k), Arc::clone(v)));
            }
        }
        let entry = (shared.interner.get(key), shared.interner.get(value));
        match shared.previous.get_mut(index) {
            Some(slot) => slot.clone_from(&entry),
            None => shared.previous.push(entry.clone()),
        }
        Some(entry)
    });
    shared
        .ok()
        .flatten()
        .unwrap_or_else(|| (Arc::from(key), Arc::from(value)))
}

/// Converts a `serde_json` error into [`DecodeError::Json`], moving the position out of the
/// message text.
fn json_error(err: serde_json::Error) -> DecodeError {
    let line = err.line();
    let column = err.column();
    let full = err.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = match full.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => full,
    };
    DecodeError::Json {
        line: line.max(1),
        column: column.max(1),
        message,
    }
}

/// The decoded top level: a JSON object with `applications`, `application` or `instance`.
/// Built inside the visitor, so that a payload without any of these keys is reported by serde
/// (with a position).
struct Root(Snapshot);

#[derive(Deserialize)]
#[serde(field_identifier)]
enum RootField {
    #[serde(rename = "applications")]
    Applications,
    #[serde(rename = "application")]
    Application,
    #[serde(rename = "instance")]
    Instance,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Root {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RootVisitor;

        impl<'de> Visitor<'de> for RootVisitor {
            type Value = Root;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a Eureka JSON object with an `applications`, `application` or `instance` key",
                )
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Root, A::Error> {
                let mut applications: Option<ApplicationsDe> = None;
                let mut application: Option<OneOrMany<ApplicationDe>> = None;
                let mut instance: Option<InstanceDe> = None;
                while let Some(field) = map.next_key::<RootField>()? {
                    match field {
                        RootField::Applications => applications = map.next_value()?,
                        RootField::Application => application = map.next_value()?,
                        RootField::Instance => instance = map.next_value()?,
                        RootField::Other => map.next_value::<Skip>().map(drop)?,
                    }
                }
                if let Some(ApplicationsDe(snapshot)) = applications {
                    return Ok(Root(snapshot));
                }
                if let Some(apps) = application {
                    return Ok(Root(Snapshot {
                        versions_delta: None,
                        apps_hashcode: None,
                        applications: apps.0.into_iter().map(|a| a.0).collect(),
                    }));
                }
                if let Some(InstanceDe(instance)) = instance {
                    return Ok(Root(Snapshot {
                        versions_delta: None,
                        apps_hashcode: None,
                        applications: vec![Application {
                            name: instance.app.clone(),
                            instances: vec![instance],
                        }],
                    }));
                }
                Err(de::Error::custom(
                    "not a Eureka payload: expected an `applications`, `application` or \
                     `instance` key",
                ))
            }
        }

        deserializer.deserialize_map(RootVisitor)
    }
}

/// `Applications` (`versions__delta`, `apps__hashcode`, `application`), decoded to a
/// [`Snapshot`].
struct ApplicationsDe(Snapshot);

#[derive(Deserialize)]
#[serde(field_identifier)]
enum ApplicationsField {
    #[serde(rename = "versions__delta")]
    VersionsDelta,
    #[serde(rename = "apps__hashcode")]
    AppsHashcode,
    #[serde(rename = "application")]
    Application,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for ApplicationsDe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ApplicationsVisitor;

        impl<'de> Visitor<'de> for ApplicationsVisitor {
            type Value = ApplicationsDe;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an `applications` object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ApplicationsDe, A::Error> {
                let mut snapshot = Snapshot::default();
                while let Some(field) = map.next_key::<ApplicationsField>()? {
                    match field {
                        ApplicationsField::VersionsDelta => {
                            snapshot.versions_delta = map.next_value_seed(OptionalSeed(Integer))?;
                        }
                        ApplicationsField::AppsHashcode => {
                            snapshot.apps_hashcode = map.next_value_seed(OptionalSeed(Text))?;
                        }
                        ApplicationsField::Application => {
                            let apps = map.next_value::<OneOrMany<ApplicationDe>>()?;
                            snapshot.applications = apps.0.into_iter().map(|a| a.0).collect();
                        }
                        ApplicationsField::Other => map.next_value::<Skip>().map(drop)?,
                    }
                }
                Ok(ApplicationsDe(snapshot))
            }
        }

        deserializer.deserialize_map(ApplicationsVisitor)
    }
}

/// `Application` (`name`, `instance`).
struct ApplicationDe(Application);

#[derive(Deserialize)]
#[serde(field_identifier)]
enum ApplicationField {
    #[serde(rename = "name")]
    Name,
    #[serde(rename = "instance")]
    Instance,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for ApplicationDe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ApplicationVisitor;

        impl<'de> Visitor<'de> for ApplicationVisitor {
            type Value = ApplicationDe;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an `application` object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ApplicationDe, A::Error> {
                let mut app = Application::default();
                while let Some(field) = map.next_key::<ApplicationField>()? {
                    match field {
                        ApplicationField::Name => {
                            app.name = map.next_value_seed(OptionalSeed(Text))?.unwrap_or_default();
                        }
                        ApplicationField::Instance => {
                            let instances = map.next_value::<OneOrMany<InstanceDe>>()?;
                            app.instances = instances.0.into_iter().map(|i| i.0).collect();
                        }
                        ApplicationField::Other => map.next_value::<Skip>().map(drop)?,
                    }
                }
                Ok(ApplicationDe(app))
            }
        }

        deserializer.deserialize_map(ApplicationVisitor)
    }
}

/// `InstanceInfo`: only the fields the model keeps; everything else is skipped.
struct InstanceDe(Instance);

#[derive(Deserialize)]
#[serde(field_identifier)]
enum InstanceField {
    #[serde(rename = "instanceId")]
    InstanceId,
    #[serde(rename = "app")]
    App,
    #[serde(rename = "hostName")]
    HostName,
    #[serde(rename = "ipAddr")]
    IpAddr,
    #[serde(rename = "status")]
    Status,
    #[serde(rename = "overriddenStatus")]
    OverriddenStatus,
    #[serde(rename = "overriddenstatus")]
    OverriddenStatusLegacy,
    #[serde(rename = "port")]
    Port,
    #[serde(rename = "securePort")]
    SecurePort,
    #[serde(rename = "vipAddress")]
    VipAddress,
    #[serde(rename = "secureVipAddress")]
    SecureVipAddress,
    #[serde(rename = "homePageUrl")]
    HomePageUrl,
    #[serde(rename = "statusPageUrl")]
    StatusPageUrl,
    #[serde(rename = "healthCheckUrl")]
    HealthCheckUrl,
    #[serde(rename = "metadata")]
    Metadata,
    #[serde(rename = "lastUpdatedTimestamp")]
    LastUpdatedTimestamp,
    #[serde(rename = "lastDirtyTimestamp")]
    LastDirtyTimestamp,
    #[serde(rename = "actionType")]
    ActionType,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for InstanceDe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InstanceVisitor;

        impl<'de> Visitor<'de> for InstanceVisitor {
            type Value = InstanceDe;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an `instance` object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InstanceDe, A::Error> {
                let mut i = Instance::default();
                let mut overridden: Option<Status> = None;
                let mut overridden_legacy: Option<Status> = None;
                while let Some(field) = map.next_key::<InstanceField>()? {
                    let text = OptionalSeed(Text);
                    match field {
                        InstanceField::InstanceId => {
                            i.instance_id = map.next_value_seed(text)?.unwrap_or_default();
                        }
                        InstanceField::App => {
                            i.app = map.next_value_seed(text)?.unwrap_or_default();
                        }
                        InstanceField::HostName => {
                            i.host_name = map.next_value_seed(text)?.unwrap_or_default();
                        }
                        InstanceField::IpAddr => {
                            i.ip_addr = map.next_value_seed(text)?.unwrap_or_default();
                        }
                        InstanceField::Status => {
                            let s = map.next_value_seed(OptionalSeed(StatusText))?;
                            i.status = s.unwrap_or_default();
                        }
                        InstanceField::OverriddenStatus => {
                            overridden = map.next_value_seed(OptionalSeed(StatusText))?;
                        }
                        InstanceField::OverriddenStatusLegacy => {
                            overridden_legacy = map.next_value_seed(OptionalSeed(StatusText))?;
                        }
                        InstanceField::Port => {
                            let p = map.next_value::<Option<PortWire>>()?;
                            i.port = p.map(|p| p.resolve(true)).unwrap_or_default();
                        }
                        InstanceField::SecurePort => {
                            let p = map.next_value::<Option<PortWire>>()?;
                            i.secure_port = p.map(|p| p.resolve(false)).unwrap_or_default();
                        }
                        InstanceField::VipAddress => {
                            i.vip_address = map.next_value_seed(text)?.unwrap_or_default();
                        }
                        InstanceField::SecureVipAddress => {
                            i.secure_vip_address = map.next_value_seed(text)?.unwrap_or_default();
                        }
                        InstanceField::HomePageUrl => {
                            i.home_page_url = map.next_value_seed(text)?
                        }
                        InstanceField::StatusPageUrl => {
                            i.status_page_url = map.next_value_seed(text)?;
                        }
                        InstanceField::HealthCheckUrl => {
                            i.health_check_url = map.next_value_seed(text)?;
                        }
                        InstanceField::Metadata => {
                            let m = map.next_value::<Option<Metadata>>()?;
                            i.metadata = m.map(|m| m.0).unwrap_or_default();
                        }
                        InstanceField::LastUpdatedTimestamp => {
                            i.last_updated_timestamp_ms =
                                map.next_value_seed(OptionalSeed(Integer))?.unwrap_or(0);
                        }
                        InstanceField::LastDirtyTimestamp => {
                            i.last_dirty_timestamp_ms =
                                map.next_value_seed(OptionalSeed(Integer))?.unwrap_or(0);
                        }
                        InstanceField::ActionType => {
                            let a = map.next_value_seed(OptionalSeed(ActionText))?;
                            i.action_type = a.flatten();
                        }
                        InstanceField::Other => map.next_value::<Skip>().map(drop)?,
                    }
                }
                i.overridden_status = overridden.or(overridden_legacy).unwrap_or_default();
                if i.instance_id.trim().is_empty() {
                    i.instance_id = i.host_name.clone();
                }
                Ok(InstanceDe(i))
            }
        }

        deserializer.deserialize_map(InstanceVisitor)
    }
}

/// Skips any JSON value. Unlike `serde::de::IgnoredAny` (which `serde_json` skips with an
/// unbounded iterative scan), this goes through `deserialize_any`, so nesting in unknown
/// fields is subject to `serde_json`'s recursion limit like everything else.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SkipVisitor;

        impl<'de> Visitor<'de> for SkipVisitor {
            type Value = Skip;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
                Ok(Skip)
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
                Ok(Skip)
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
                Ok(Skip)
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
                Ok(Skip)
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
                Ok(Skip)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
                Ok(Skip)
            }

            fn visit_none<E: de::Error>(self) -> Result<Skip, E> {
                Ok(Skip)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
                while seq.next_element::<Skip>()?.is_some() {}
                Ok(Skip)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
                while map.next_entry::<IgnoredAny, Skip>()?.is_some() {}
                Ok(Skip)
            }
        }

        deserializer.deserialize_any(SkipVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// One-or-many lists
// ---------------------------------------------------------------------------------------------

/// A list that Jettison may render as a single object when it has one element; `null` is an
/// empty list.
struct OneOrMany<T>(Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object or an array of objects")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OneOrMany(Vec::new()))
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OneOrMany(Vec::new()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // The size hint comes from the input; cap it so a lying hint cannot allocate.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(item) = seq.next_element::<T>()? {
                    out.push(item);
                }
                Ok(OneOrMany(out))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let one = T::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(OneOrMany(vec![one]))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor(std::marker::PhantomData))
    }
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests;
mod values;

use values::*;
