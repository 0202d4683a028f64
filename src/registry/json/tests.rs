use super::*;
use crate::registry::PortInfo;

fn err_of(input: &str) -> (usize, usize, String) {
    err_of_bytes(input.as_bytes())
}

fn err_of_bytes(input: &[u8]) -> (usize, usize, String) {
    match decode(input) {
        Err(DecodeError::Json {
            line,
            column,
            message,
        }) => (line, column, message),
        other => panic!("expected a JSON error for {input:?}, got {other:?}"),
    }
}

#[test]
fn equal_metadata_is_shared_between_instances() {
    let s = decode(
        br#"{"application":{"name":"A","instance":[
            {"hostName":"a","metadata":{"k":"v","n":1,"e":"x\u0041"}},
            {"hostName":"b","metadata":{"k":"v","n":1,"e":"xA"}},
            {"hostName":"c","metadata":{"n":1,"k":"v"}}]}}"#,
    )
    .unwrap();
    let m: Vec<_> = s.applications[0]
        .instances
        .iter()
        .map(|i| &i.metadata)
        .collect();
    assert_eq!(m[0], m[1]);
    assert_eq!(&*m[0]["e"], "xA");
    assert!(Arc::ptr_eq(&m[0]["k"], &m[1]["k"]));
    assert!(Arc::ptr_eq(&m[0]["e"], &m[1]["e"]));
    assert!(Arc::ptr_eq(&m[1]["k"], &m[2]["k"]));
    let (k0, _) = m[0].get_key_value("n").unwrap();
    let (k2, _) = m[2].get_key_value("n").unwrap();
    assert!(Arc::ptr_eq(k0, k2));
}

#[test]
fn error_message_has_no_duplicate_position() {
    let (line, column, message) = err_of("{\n  \"applications\": [1]\n}");
    assert_eq!(line, 2);
    assert!(column > 1);
    assert!(!message.contains(" at line "), "{message}");
}

#[test]
fn repeated_key_last_wins() {
    let s =
        decode(br#"{"instance":{"hostName":"a","hostName":"b","port":1,"port":{"$":2}}}"#).unwrap();
    let i = &s.applications[0].instances[0];
    assert_eq!(i.host_name, "b");
    assert_eq!(
        i.port,
        PortInfo {
            port: 2,
            enabled: true
        }
    );
}

#[test]
fn invalid_utf8_is_positioned() {
    let (line, column, _) = err_of_bytes(b"{\n\"instance\":{\"app\":\"\xFF\"}}");
    assert_eq!(line, 2);
    assert!(column > 1);
}

#[test]
fn port_visitor_bounds() {
    let p: PortWire = serde_json::from_str(r#"{"$":"65535"}"#).unwrap();
    assert_eq!(p.port, Some(65535));
    assert_eq!(p.enabled, None);
    let p: PortWire = serde_json::from_str("0").unwrap();
    assert_eq!(p.port, Some(0));
    assert!(serde_json::from_str::<PortWire>(r#"{"$":-1}"#).is_err());
    assert!(serde_json::from_str::<PortWire>(r#"{"$":65536}"#).is_err());
    assert!(serde_json::from_str::<PortWire>(r#"{"$":80.5}"#).is_err());
    assert!(serde_json::from_str::<PortWire>(r#"{"$":" 80 "}"#).is_ok());
    assert!(serde_json::from_str::<PortWire>(r#"{"$":[80]}"#).is_err());
    let p: PortWire = serde_json::from_str(r#"{"$":null,"@enabled":null,"x":{}}"#).unwrap();
    assert_eq!((p.port, p.enabled), (None, None));
}

#[test]
fn enabled_flag_follows_java_parse_boolean() {
    for (input, expected) in [
        (r#"{"@enabled":"TRUE"}"#, true),
        (r#"{"@enabled":" true "}"#, true),
        (r#"{"@enabled":"yes"}"#, false),
        (r#"{"@enabled":false}"#, false),
        (r#"{"@enabled":true}"#, true),
    ] {
        let p: PortWire = serde_json::from_str(input).unwrap();
        assert_eq!(p.enabled, Some(expected), "{input}");
    }
    assert!(serde_json::from_str::<PortWire>(r#"{"@enabled":1}"#).is_err());
}

fn opt_i64(input: &str) -> Result<Option<i64>, serde_json::Error> {
    de::DeserializeSeed::deserialize(
        OptionalSeed(Integer),
        &mut serde_json::Deserializer::from_str(input),
    )
}

#[test]
fn integer_visitor() {
    let v: Option<i64> = opt_i64("\" 42 \"").unwrap();
    assert_eq!(v, Some(42));
    let v: Option<i64> = opt_i64("null").unwrap();
    assert_eq!(v, None);
    assert!(opt_i64("1.5").is_err());
    assert!(opt_i64("\"x\"").is_err());
    assert!(opt_i64("18446744073709551615").is_err());
}

#[test]
fn metadata_values() {
    let m: Metadata = serde_json::from_str(
        r#"{"@class":"java.util.HashMap","a":"x","b":1,"c":true,"d":null,"e":{"f":1},"g":[1],"h":-2,"i":1.5}"#,
    )
    .unwrap();
    let pairs: Vec<(&str, &str)> = m.0.iter().map(|(k, v)| (&**k, &**v)).collect();
    assert_eq!(
        pairs,
        [
            ("a", "x"),
            ("b", "1"),
            ("c", "true"),
            ("h", "-2"),
            ("i", "1.5")
        ]
    );
    let m: Metadata = serde_json::from_str(r#""""#).unwrap();
    assert!(m.0.is_empty());
    assert!(serde_json::from_str::<Metadata>(r#""x""#).is_err());
}
