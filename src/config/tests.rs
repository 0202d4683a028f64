use super::*;

fn key_of(e: ConfigError) -> String {
    match e {
        ConfigError::Invalid { key, .. } => key.to_owned(),
        other => other.to_string(),
    }
}

#[test]
fn minimal_file_source_gets_defaults() {
    let c = Config::from_toml(
        "[tls]\nenabled = false\n[registry]\nfile = \"r.xml\"\n",
        None,
    )
    .unwrap();
    assert_eq!(c.listen, "0.0.0.0:10010".parse().unwrap());
    assert!(c.tls.is_none());
    assert_eq!(c.registry.source, RegistrySource::File("r.xml".into()));
    assert_eq!(c.registry.refresh_interval, Duration::from_secs(30));
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(45));
    assert_eq!(c.limits.max_message_size, 16 << 20);
    assert_eq!(c.limits.max_frame_size, 16 << 20);
    assert_eq!(c.upstream.max_attempts, 3);
}

#[test]
fn max_connections_defaults_from_the_open_file_limit_and_refuses_zero() {
    let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
    let c = Config::from_toml(base, None).unwrap();
    assert_eq!(c.limits.max_connections, default_max_connections());
    assert!(c.limits.max_connections >= 64);
    let c = Config::from_toml(&format!("{base}[limits]\nmax_connections = 7\n"), None).unwrap();
    assert_eq!(c.limits.max_connections, 7);
    let e = Config::from_toml(&format!("{base}[limits]\nmax_connections = 0\n"), None).unwrap_err();
    assert_eq!(key_of(e), "limits.max_connections");
}

#[test]
fn durations_sizes_and_urls_parse() {
    let c = Config::from_toml(
        r#"
        [tls]
        cert = "c.pem"
        key = "k.pem"
        [registry]
        eureka_urls = ["http://a:8761/eureka", "https://u:p@b/eureka/"]
        refresh_interval = "1m 30s"
        format = "XML"
        [limits]
        max_message_size = "1MiB"
        max_frame_size = "64KiB"
        "#,
        None,
    )
    .unwrap();
    assert_eq!(
        c.registry.source,
        RegistrySource::Eureka(vec![
            "http://a:8761/eureka/".into(),
            "https://u:p@b/eureka/".into()
        ])
    );
    assert_eq!(c.registry.refresh_interval, Duration::from_secs(90));
    assert_eq!(c.registry.format, WireFormat::Xml);
    assert_eq!(c.limits.max_message_size, 1 << 20);
    assert_eq!(c.limits.max_frame_size, 64 << 10);
    assert_eq!(c.tls.unwrap().cert, PathBuf::from("c.pem"));
}

#[test]
fn errors_name_the_key() {
    let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
    let e = Config::from_toml(&format!("{base}[listen]\naddress = \"nope\"\n"), None).unwrap_err();
    assert_eq!(key_of(e), "listen.address");
    let e = Config::from_toml("[registry]\nfile = \"r\"\n", None).unwrap_err();
    assert_eq!(key_of(e), "tls.cert");
    let e = Config::from_toml("[tls]\nenabled = false\n", None).unwrap_err();
    assert_eq!(key_of(e), "registry");
    let e = Config::from_toml(&format!("{base}refresh_interval = \"0s\"\n"), None).unwrap_err();
    assert_eq!(key_of(e), "registry.refresh_interval");
    let e = Config::from_toml(
        &format!("{base}[limits]\nmax_frame_size = \"2MiB\"\nmax_message_size = \"1MiB\"\n"),
        None,
    )
    .unwrap_err();
    assert_eq!(key_of(e), "limits.max_frame_size");
    let e = Config::from_toml(
        "[tls]\nenabled = false\n[registry]\neureka_urls = [\"ftp://x/\"]\n",
        None,
    )
    .unwrap_err();
    assert_eq!(key_of(e), "registry.eureka_urls");
    let e = Config::from_toml(&format!("{base}[log]\nformat = \"xml\"\n"), None).unwrap_err();
    assert_eq!(key_of(e), "log.format");
}

#[test]
fn unknown_keys_and_bad_types_are_rejected_with_the_name() {
    let e = Config::from_toml(
        "[tls]\nenabled = false\nfoo = 1\n[registry]\nfile = \"r\"\n",
        None,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConfigError::Parse { .. }), "{msg}");
    assert!(msg.contains("foo"), "{msg}");
    let e = Config::from_toml(
        "[tls]\nenabled = false\n[registry]\nfile = \"r\"\nrefresh_interval = \"soon\"\n",
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("refresh_interval"), "{e}");
}

#[test]
fn admin_defaults_to_loopback_and_takes_cidrs() {
    let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
    let c = Config::from_toml(base, None).unwrap();
    assert!(c.admin.allows("127.0.0.1".parse().unwrap()));
    assert!(c.admin.allows("127.9.9.9".parse().unwrap()));
    assert!(c.admin.allows("::1".parse().unwrap()));
    assert!(c.admin.allows("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!c.admin.allows("10.1.2.3".parse().unwrap()));
    assert!(!c.admin.allows("::2".parse().unwrap()));
    assert!(c.admin.token.is_none());
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    let c = Config::from_toml(&format!("{base}[admin]\nallow = [\"10.0.0.0/8\", \"192.0.2.7\"]\ntoken = \"s3cret\"\n[shutdown]\ngrace = \"5s\"\n"), None).unwrap();
    assert!(c.admin.allows("10.1.2.3".parse().unwrap()));
    assert!(c.admin.allows("192.0.2.7".parse().unwrap()));
    assert!(!c.admin.allows("127.0.0.1".parse().unwrap()));
    assert_eq!(c.admin.token.as_ref().unwrap().expose(), "s3cret");
    assert!(!format!("{:?}", c.admin).contains("s3cret"));
    assert_eq!(c.shutdown_grace, Duration::from_secs(5));
    let e = Config::from_toml(&format!("{base}[admin]\nallow = [\"nope\"]\n"), None).unwrap_err();
    assert_eq!(key_of(e), "admin.allow");
}

#[test]
fn upstream_insecure_skip_verify_is_off_unless_set() {
    let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
    let c = Config::from_toml(base, None).unwrap();
    assert!(!c.upstream.insecure_skip_verify);
    let c = Config::from_toml(
        &format!("{base}[upstream]\ninsecure_skip_verify = true\n"),
        None,
    )
    .unwrap();
    assert!(c.upstream.insecure_skip_verify);
    let e = Config::from_toml(
        &format!("{base}[upstream]\ninsecure_skip_verify = \"yes\"\n"),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("insecure_skip_verify"), "{e}");
}

const NO_TLS: &str = "[tls]\nenabled = false\n";

#[test]
fn eureka_registry_defaults_and_zones() {
    let c = Config::from_toml(
        &format!(
            "{NO_TLS}[registry]\neureka_urls = [\"http://a/eureka\"]\n[registry.zone_urls]\nz1 = [\"http://b/eureka/\", \"https://u:p@c/eureka\"]\n"
        ),
        None,
    )
    .unwrap();
    assert_eq!(
        c.registry.source,
        RegistrySource::Eureka(vec![
            "http://a/eureka/".into(),
            "http://b/eureka/".into(),
            "https://u:p@c/eureka/".into()
        ])
    );
    assert_eq!(
        c.registry.eureka,
        EurekaOptions {
            server_zones: vec![DEFAULT_ZONE.into(), "z1".into(), "z1".into()],
            ..EurekaOptions::default()
        }
    );
    assert_eq!(c.registry.eureka.backoff_bound, 10);
    assert!(!c.registry.eureka.full_fetch_only);
    assert!(c.eureka_instance.is_none());
    // zone_urls alone is enough.
    let c = Config::from_toml(
        &format!(
            "{NO_TLS}[registry]\nzone = \"z\"\nzone_urls = {{ z = [\"http://b/eureka/\"] }}\n"
        ),
        None,
    )
    .unwrap();
    assert_eq!(c.registry.eureka.zone.as_deref(), Some("z"));
}

#[test]
fn eureka_client_and_instance_keys_parse() {
    let c = Config::from_toml(
        &format!(
            r#"{NO_TLS}
            [registry]
            eureka_urls = ["https://h:10011/eureka/"]
            zone = "defaultZone"
            full_fetch_only = true
            vip = "discoverableclient"
            cache = "/var/lib/wsrelay/registry.json"
            client_cert = "c.pem"
            client_key = "k.pem"
            ca_file = "ca.pem"
            backoff_bound = 4
            [eureka.instance]
            app = "wsrelay-gw"
            instance_id = "gw1:wsrelay:10010"
            host_name = "gw1.example.com"
            ip_addr = "10.0.0.5"
            port = 10010
            vip_address = "wsrelay"
            secure_vip_address = "wsrelay-secure"
            renewal_interval = "10s"
            lease_duration = "30s"
            home_page_url = "https://gw1.example.com:10010/"
            status_page_url = "https://gw1.example.com:10010/application/info"
            health_check_url = "https://gw1.example.com:10010/application/health"
            [eureka.instance.metadata]
            "apiml.service.title" = "WebSocket relay"
            "#
        ),
        None,
    )
    .unwrap();
    let e = &c.registry.eureka;
    assert_eq!(e.zone.as_deref(), Some(DEFAULT_ZONE));
    assert!(e.full_fetch_only);
    assert_eq!(e.vip.as_deref(), Some("discoverableclient"));
    assert_eq!(
        e.cache.as_deref(),
        Some(Path::new("/var/lib/wsrelay/registry.json"))
    );
    assert_eq!(e.client_cert.as_deref(), Some(Path::new("c.pem")));
    assert_eq!(e.client_key.as_deref(), Some(Path::new("k.pem")));
    assert_eq!(e.ca_file.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(e.backoff_bound, 4);
    let i = c.eureka_instance.unwrap();
    assert_eq!(i.app, "WSRELAY-GW");
    assert_eq!(i.instance_id.as_deref(), Some("gw1:wsrelay:10010"));
    assert_eq!(i.ip_addr, Some("10.0.0.5".parse().unwrap()));
    assert_eq!(i.port, Some(10010));
    assert_eq!(i.renewal_interval, Duration::from_secs(10));
    assert_eq!(i.lease_duration, Duration::from_secs(30));
    assert_eq!(i.metadata["apiml.service.title"], "WebSocket relay");
    // Defaults, and `enabled = false`.
    let base = format!("{NO_TLS}[registry]\neureka_urls = [\"http://h/eureka/\"]\n");
    let i = Config::from_toml(&format!("{base}[eureka.instance]\n"), None)
        .unwrap()
        .eureka_instance
        .unwrap();
    assert_eq!(i.app, "WSRELAY");
    assert_eq!(i.renewal_interval, Duration::from_secs(30));
    assert_eq!(i.lease_duration, Duration::from_secs(90));
    assert!(i.instance_id.is_none() && i.host_name.is_none() && i.port.is_none());
    let off =
        Config::from_toml(&format!("{base}[eureka.instance]\nenabled = false\n"), None).unwrap();
    assert!(off.eureka_instance.is_none());
}

#[test]
fn eureka_errors_name_the_key() {
    let eureka = format!("{NO_TLS}[registry]\neureka_urls = [\"http://h/eureka/\"]\n");
    let file = format!("{NO_TLS}[registry]\nfile = \"r.xml\"\n");
    let cases: &[(String, &str)] = &[
        (format!("{eureka}zone = \"nowhere\"\n"), "registry.zone"),
        (format!("{eureka}vip = \"a/b\"\n"), "registry.vip"),
        (format!("{eureka}vip = \"\"\n"), "registry.vip"),
        (
            format!("{eureka}client_cert = \"c.pem\"\n"),
            "registry.client_key",
        ),
        (
            format!("{eureka}client_key = \"k.pem\"\n"),
            "registry.client_cert",
        ),
        (
            format!("{eureka}backoff_bound = 0\n"),
            "registry.backoff_bound",
        ),
        (format!("{eureka}cache = \"\"\n"), "registry.cache"),
        (
            format!("{eureka}[registry.zone_urls]\nz = []\n"),
            "registry.zone_urls",
        ),
        (
            format!("{eureka}[registry.zone_urls]\nz = [\"http://h/eureka\"]\n"),
            "registry.zone_urls",
        ),
        (
            format!("{NO_TLS}[registry]\nzone_urls = {{ z = [\"ftp://h/\"] }}\n"),
            "registry.zone_urls",
        ),
        (
            format!("{NO_TLS}[registry]\neureka_urls = []\n"),
            "registry.eureka_urls",
        ),
        (format!("{file}cache = \"c.json\"\n"), "registry.cache"),
        (format!("{file}vip = \"x\"\n"), "registry.vip"),
        (
            format!("{NO_TLS}[registry]\nfile = \"r\"\nzone_urls = {{ z = [\"http://h/\"] }}\n"),
            "registry",
        ),
        (format!("{file}[eureka.instance]\n"), "eureka.instance"),
        (
            format!(
                "{eureka}[eureka.instance]\nrenewal_interval = \"30s\"\nlease_duration = \"30s\"\n"
            ),
            "eureka.instance.lease_duration",
        ),
        (
            format!("{eureka}[eureka.instance]\nrenewal_interval = \"0s\"\n"),
            "eureka.instance.renewal_interval",
        ),
        (
            format!("{eureka}[eureka.instance]\nip_addr = \"10.0.0\"\n"),
            "eureka.instance.ip_addr",
        ),
        (
            format!("{eureka}[eureka.instance]\napp = \"a b\"\n"),
            "eureka.instance.app",
        ),
        (
            format!("{eureka}[eureka.instance]\ninstance_id = \"a/b\"\n"),
            "eureka.instance.instance_id",
        ),
        (
            format!("{eureka}[eureka.instance]\nhost_name = \"\"\n"),
            "eureka.instance.host_name",
        ),
        (
            format!("{eureka}[eureka.instance]\nport = 0\n"),
            "eureka.instance.port",
        ),
        (
            format!("{eureka}[eureka.instance]\nhealth_check_url = \"ftp://h/\"\n"),
            "eureka.instance.health_check_url",
        ),
        (
            format!("{eureka}[eureka.instance]\nvip_address = \"a b\"\n"),
            "eureka.instance.vip_address",
        ),
        (
            format!("{eureka}[eureka.instance.metadata]\n\"\" = \"x\"\n"),
            "eureka.instance.metadata",
        ),
    ];
    for (toml, key) in cases {
        let e = Config::from_toml(toml, None).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { .. }), "{toml}: {e}");
        assert_eq!(key_of(e), *key, "{toml}");
    }
    let e = Config::from_toml(&format!("{eureka}[eureka.instance]\nnope = 1\n"), None).unwrap_err();
    assert!(
        matches!(e, ConfigError::Parse { .. }) && e.to_string().contains("nope"),
        "{e}"
    );
}

#[test]
fn failover_section_defaults_values_and_errors() {
    let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
    let c = Config::from_toml(base, None).unwrap();
    assert_eq!(c.failover, FailoverConfig::default());
    assert_eq!(c.failover.mode, FailoverMode::Close);
    let c = Config::from_toml(
        &format!("{base}[failover]\nmode = \"Reconnect\"\nbuffer = \"64KiB\"\ndeadline = \"2s\"\nmax_attempts = 1\n"),
        None,
    )
    .unwrap();
    assert_eq!(
        c.failover,
        FailoverConfig {
            mode: FailoverMode::Reconnect,
            buffer_bytes: 64 << 10,
            deadline: Duration::from_secs(2),
            max_attempts: 1,
        }
    );
    for (body, key) in [
        ("mode = \"sometimes\"", "failover.mode"),
        ("buffer = 0", "failover.buffer"),
        ("deadline = \"0s\"", "failover.deadline"),
        ("max_attempts = 0", "failover.max_attempts"),
    ] {
        let e = Config::from_toml(&format!("{base}[failover]\n{body}\n"), None).unwrap_err();
        assert_eq!(key_of(e), key, "{body}");
    }
}

#[test]
fn example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/wsrelay.toml");
    let text = std::fs::read_to_string(path).unwrap();
    Config::from_toml(&text, Some(Path::new(path))).unwrap();
}

#[test]
fn routing_section_defaults_values_and_errors() {
    use crate::config::RouteScope;
    use crate::config::StickyKey;
    let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
    let c = Config::from_toml(base, None).unwrap();
    assert_eq!(c.routing, RoutingConfig::default());
    assert_eq!(c.routing.websocket_routes, RouteScope::WsPrefixed);
    assert!(c.routing.instance_id_header);
    assert!(c.routing.sticky.is_none());
    let c = Config::from_toml(
        &format!("{base}[routing]\nwebsocket_routes = \"All\"\ninstance_id_header = false\nsticky = \"cookie:apimlAuthenticationToken\"\nsticky_ttl = \"1h\"\nsticky_max_entries = 10\n"),
        None,
    )
    .unwrap();
    assert_eq!(c.routing.websocket_routes, RouteScope::All);
    assert!(!c.routing.instance_id_header);
    let sticky = c.routing.sticky.unwrap();
    assert_eq!(
        sticky.key,
        StickyKey::Cookie("apimlAuthenticationToken".into())
    );
    assert_eq!(
        (sticky.ttl, sticky.max_entries),
        (Duration::from_secs(3600), 10)
    );
    let c = Config::from_toml(
        &format!("{base}[routing]\nsticky = \"header:X-User\"\n"),
        None,
    )
    .unwrap();
    let sticky = c.routing.sticky.unwrap();
    assert_eq!(
        sticky.key,
        StickyKey::Header(http::HeaderName::from_static("x-user"))
    );
    assert_eq!(
        (sticky.ttl, sticky.max_entries),
        (Duration::from_secs(8 * 3600), 100_000)
    );
    for (body, key) in [
        ("websocket_routes = \"rest\"", "routing.websocket_routes"),
        ("sticky = \"user\"", "routing.sticky"),
        ("sticky = \"cookie:\"", "routing.sticky"),
        ("sticky = \"cookie:a b\"", "routing.sticky"),
        ("sticky = \"query:x\"", "routing.sticky"),
        ("sticky_ttl = \"1h\"", "routing.sticky_ttl"),
        (
            "sticky = \"header:x\"\nsticky_max_entries = 0",
            "routing.sticky_max_entries",
        ),
        (
            "sticky = \"header:x\"\nsticky_ttl = \"0s\"",
            "routing.sticky_ttl",
        ),
    ] {
        let e = Config::from_toml(&format!("{base}[routing]\n{body}\n"), None).unwrap_err();
        assert_eq!(key_of(e), key, "{body}");
    }
}

#[test]
fn handshake_section_defaults_values_and_errors() {
    let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
    let c = Config::from_toml(base, None).unwrap();
    assert_eq!(c.handshake, HandshakeConfig::default());
    assert!(
        c.handshake.allowed_origins.is_none(),
        "any origin by default"
    );
    assert_eq!(c.handshake.failure, FailureAnswer::Status);
    let c = Config::from_toml(
        &format!("{base}[handshake]\nallowed_origins = [\"https://app.example.com\", \"https://*.corp.example\"]\nfailure = \"Close\"\n"),
        None,
    )
    .unwrap();
    let list = c.handshake.allowed_origins.unwrap();
    assert!(list.allows("https://app.example.com") && list.allows("https://x.corp.example"));
    assert!(!list.allows("https://evil.test"));
    assert_eq!(c.handshake.failure, FailureAnswer::Close);
    for (body, key) in [
        ("allowed_origins = []", "handshake.allowed_origins"),
        (
            "allowed_origins = [\"app.example.com\"]",
            "handshake.allowed_origins",
        ),
        (
            "allowed_origins = [\"https://a.test/x\"]",
            "handshake.allowed_origins",
        ),
        ("failure = \"html\"", "handshake.failure"),
    ] {
        let e = Config::from_toml(&format!("{base}[handshake]\n{body}\n"), None).unwrap_err();
        assert_eq!(key_of(e), key, "{body}");
    }
}

#[test]
fn log_levels_that_would_log_nothing_are_refused() {
    let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n[log]\n";
    for ok in [
        "info",
        "DEBUG",
        "info,wsrelay=debug",
        "warn,hyper::proto=error",
        "off",
    ] {
        assert!(
            Config::from_toml(&format!("{base}level = {ok:?}\n"), None).is_ok(),
            "{ok}"
        );
    }
    for bad in [
        "verbose",
        "inof",
        "garbage!!",
        "",
        "info,wsrelay",
        "wsrelay=loud",
        "info,[",
    ] {
        let e = Config::from_toml(&format!("{base}level = {bad:?}\n"), None).unwrap_err();
        assert_eq!(key_of(e), "log.level", "{bad}");
    }
    assert!(check_log_filter("inof").unwrap_err().contains("\"inof\""));
}

#[test]
fn parse_errors_say_what_is_accepted_over_several_lines() {
    let base = "[tls]\nenabled = false\n[registry]\nfile = \"r\"\n";
    for (body, want) in [
        (
            "[limits]\nmax_message_size = \"16MB!\"",
            "expected a size: a byte count",
        ),
        (
            "[upstream]\nmax_attempts = \"3\"",
            "expected a whole number (0 to 4294967295)",
        ),
        ("[registry2]\nx = 1", "unknown field `registry2`"),
        (
            "[keepalive]\ninterval = \"30 secs!\"",
            "durations are strings such as \"30s\"",
        ),
    ] {
        let e = Config::from_toml(&format!("{base}{body}\n"), Some(Path::new("w.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("config file w.toml is not valid:\n  TOML parse error at line "),
            "{e}"
        );
        assert!(e.contains(want), "{body}: {e}");
        assert!(e.lines().count() >= 4, "{e}");
    }
}
