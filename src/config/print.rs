//! `wsrelay check --print`: the effective configuration, every key with the value in force
//! (defaults included), as TOML that reads back to the same [`Config`] (nginx `-T`). Secrets
//! are not shown: `admin.token` and passwords in Eureka URLs print as `***`. Keys whose default
//! is "unset" (`limits.max_sessions`, `routing.sticky`, ...) are left out when unset.

use toml::{Table, Value};

use super::*;

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn path(p: &Path) -> Value {
    s(p.display().to_string())
}

fn duration(d: Duration) -> Value {
    s(humantime::format_duration(d).to_string())
}

fn int(n: impl TryInto<i64>) -> Value {
    Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

/// A URL with its password (if any) replaced by `***`.
fn redact_url(url: &str) -> String {
    match (url.split_once("://"), url.find('@')) {
        (Some((scheme, rest)), Some(_)) => match rest.split_once('@') {
            Some((userinfo, host)) if !userinfo.contains('/') => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

fn table(pairs: Vec<(&str, Option<Value>)>) -> Value {
    let mut t = Table::new();
    for (k, v) in pairs {
        if let Some(v) = v {
            t.insert(k.to_owned(), v);
        }
    }
    Value::Table(t)
}

impl Config {
    /// The effective configuration as TOML (see the module doc).
    pub fn effective_toml(&self) -> String {
        let mut root = Table::new();
        root.insert(
            "listen".into(),
            table(vec![("address", Some(s(self.listen.to_string())))]),
        );
        root.insert(
            "tls".into(),
            match &self.tls {
                None => table(vec![("enabled", Some(Value::Boolean(false)))]),
                Some(t) => {
                    let (auth, ca) = match &t.client_auth {
                        ClientAuth::None => ("none", None),
                        ClientAuth::Optional(ca) => ("optional", Some(path(ca))),
                        ClientAuth::Required(ca) => ("required", Some(path(ca))),
                    };
                    table(vec![
                        ("enabled", Some(Value::Boolean(true))),
                        ("cert", Some(path(&t.cert))),
                        ("key", Some(path(&t.key))),
                        ("reload_interval", Some(duration(t.reload_interval))),
                        ("client_auth", Some(s(auth))),
                        ("client_ca", ca),
                        ("http2", Some(Value::Boolean(t.http2.is_some()))),
                        ("http2_max_streams", t.http2.map(|h| int(h.max_streams))),
                    ])
                }
            },
        );
        root.insert("registry".into(), self.registry_table());
        if let Some(i) = &self.eureka_instance {
            let metadata: Table = i
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), s(v.clone())))
                .collect();
            let mut instance = table(vec![
                ("enabled", Some(Value::Boolean(true))),
                ("app", Some(s(i.app.clone()))),
                ("instance_id", i.instance_id.clone().map(s)),
                ("host_name", i.host_name.clone().map(s)),
                ("ip_addr", i.ip_addr.map(|a| s(a.to_string()))),
                ("port", i.port.map(int)),
                ("vip_address", i.vip_address.clone().map(s)),
                ("secure_vip_address", i.secure_vip_address.clone().map(s)),
                ("renewal_interval", Some(duration(i.renewal_interval))),
                ("lease_duration", Some(duration(i.lease_duration))),
                ("home_page_url", i.home_page_url.clone().map(s)),
                ("status_page_url", i.status_page_url.clone().map(s)),
                ("health_check_url", i.health_check_url.clone().map(s)),
            ]);
            if let Value::Table(t) = &mut instance {
                t.insert("metadata".into(), Value::Table(metadata));
            }
            root.insert("eureka".into(), table(vec![("instance", Some(instance))]));
        }
        let u = &self.upstream;
        root.insert(
            "upstream".into(),
            table(vec![
                ("connect_timeout", Some(duration(u.connect_timeout))),
                ("handshake_timeout", Some(duration(u.handshake_timeout))),
                ("ca_file", u.ca_file.as_deref().map(path)),
                ("max_attempts", Some(int(u.max_attempts))),
                (
                    "insecure_skip_verify",
                    Some(Value::Boolean(u.insecure_skip_verify)),
                ),
                ("client_cert", u.client_cert.as_ref().map(|(c, _)| path(c))),
                ("client_key", u.client_cert.as_ref().map(|(_, k)| path(k))),
            ]),
        );
        let l = &self.limits;
        root.insert(
            "limits".into(),
            table(vec![
                ("max_message_size", Some(int(l.max_message_size))),
                ("max_frame_size", Some(int(l.max_frame_size))),
                ("handshake_timeout", Some(duration(l.handshake_timeout))),
                ("close_timeout", Some(duration(l.close_timeout))),
                ("idle_timeout", Some(duration(l.idle_timeout))),
                ("write_timeout", Some(duration(l.write_timeout))),
                ("max_sessions", l.max_sessions.map(int)),
                ("max_sessions_per_ip", l.max_sessions_per_ip.map(int)),
                ("max_connections", Some(int(l.max_connections))),
            ]),
        );
        root.insert(
            "log".into(),
            table(vec![
                ("level", Some(s(self.log.level.clone()))),
                (
                    "format",
                    Some(s(match self.log.format {
                        LogFormat::Text => "text",
                        LogFormat::Json => "json",
                    })),
                ),
            ]),
        );
        root.insert(
            "admin".into(),
            table(vec![
                (
                    "allow",
                    Some(Value::Array(
                        self.admin.allow.iter().map(|n| s(n.to_string())).collect(),
                    )),
                ),
                ("token", self.admin.token.as_ref().map(|_| s("***"))),
                ("recent", Some(int(self.admin.recent))),
            ]),
        );
        root.insert(
            "shutdown".into(),
            table(vec![("grace", Some(duration(self.shutdown_grace)))]),
        );
        if let Some((interval, timeout)) = self.keepalive {
            root.insert(
                "keepalive".into(),
                table(vec![
                    ("interval", Some(duration(interval))),
                    ("timeout", Some(duration(timeout))),
                ]),
            );
        }
        let f = &self.failover;
        root.insert(
            "failover".into(),
            table(vec![
                ("mode", Some(s(f.mode.as_str()))),
                ("buffer", Some(int(f.buffer_bytes))),
                ("deadline", Some(duration(f.deadline))),
                ("max_attempts", Some(int(f.max_attempts))),
            ]),
        );
        let r = &self.routing;
        root.insert(
            "routing".into(),
            table(vec![
                ("websocket_routes", Some(s(r.websocket_routes.as_str()))),
                (
                    "instance_id_header",
                    Some(Value::Boolean(r.instance_id_header)),
                ),
                ("sticky", r.sticky.as_ref().map(|st| s(st.key.describe()))),
                ("sticky_ttl", r.sticky.as_ref().map(|st| duration(st.ttl))),
                (
                    "sticky_max_entries",
                    r.sticky.as_ref().map(|st| int(st.max_entries)),
                ),
            ]),
        );
        root.insert(
            "handshake".into(),
            table(vec![
                (
                    "allowed_origins",
                    self.handshake
                        .allowed_origins
                        .as_ref()
                        .map(|o| Value::Array(o.to_strings().into_iter().map(s).collect())),
                ),
                ("failure", Some(s(self.handshake.failure.as_str()))),
            ]),
        );
        let d = &self.deflate;
        root.insert(
            "deflate".into(),
            table(vec![
                ("enabled", Some(Value::Boolean(d.enabled))),
                ("service", Some(s(d.service.as_str()))),
                ("context_takeover", Some(Value::Boolean(d.context_takeover))),
                ("max_window_bits", Some(int(d.max_window_bits))),
                ("level", Some(int(d.level))),
                ("min_message_size", Some(int(d.min_message_size))),
            ]),
        );
        let mut out = String::from(
            "# wsrelay's effective configuration (wsrelay check --print): every key in force,\n# defaults included; secrets shown as ***. Sizes in bytes.\n",
        );
        if let Some(src) = &self.source {
            out.push_str(&format!("# from {}\n", src.display()));
        }
        out.push('\n');
        out.push_str(&toml::to_string(&root).unwrap_or_default());
        out
    }

    fn registry_table(&self) -> Value {
        let r = &self.registry;
        let e = &r.eureka;
        let mut pairs: Vec<(&str, Option<Value>)> = Vec::new();
        let mut zone_urls = None;
        match &r.source {
            RegistrySource::File(p) => pairs.push(("file", Some(path(p)))),
            RegistrySource::Eureka(urls) => {
                let default_only = e.server_zones.iter().all(|z| z == DEFAULT_ZONE);
                if default_only {
                    pairs.push((
                        "eureka_urls",
                        Some(Value::Array(
                            urls.iter().map(|u| s(redact_url(u))).collect(),
                        )),
                    ));
                } else {
                    let mut zones = Table::new();
                    for (url, zone) in urls.iter().zip(&e.server_zones) {
                        if let Value::Array(list) = zones
                            .entry(zone.clone())
                            .or_insert_with(|| Value::Array(Vec::new()))
                        {
                            list.push(s(redact_url(url)));
                        }
                    }
                    zone_urls = Some(Value::Table(zones));
                }
                pairs.extend([
                    ("zone", e.zone.clone().map(s)),
                    ("full_fetch_only", Some(Value::Boolean(e.full_fetch_only))),
                    ("vip", e.vip.clone().map(s)),
                    ("cache", e.cache.as_deref().map(path)),
                    ("client_cert", e.client_cert.as_deref().map(path)),
                    ("client_key", e.client_key.as_deref().map(path)),
                    ("ca_file", e.ca_file.as_deref().map(path)),
                    ("backoff_bound", Some(int(e.backoff_bound))),
                ]);
            }
        }
        pairs.extend([
            (
                "format",
                Some(s(match r.format {
                    WireFormat::Json => "json",
                    WireFormat::Xml => "xml",
                })),
            ),
            ("refresh_interval", Some(duration(r.refresh_interval))),
            ("connect_timeout", Some(duration(r.connect_timeout))),
            ("read_timeout", Some(duration(r.read_timeout))),
            ("max_payload_size", Some(int(r.max_payload_size))),
        ]);
        let mut t = table(pairs);
        if let (Value::Table(t), Some(z)) = (&mut t, zone_urls) {
            t.insert("zone_urls".into(), z);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_config_reads_back_to_the_same_values() {
        let text = r#"
[tls]
enabled = false
[registry]
zone_urls = { zone-a = ["http://a:8761/eureka/"], zone-b = ["http://user:pw@b:8761/eureka/"] }
zone = "zone-a"
[eureka.instance]
app = "gw"
[eureka.instance.metadata]
"apiml.service.title" = "relay"
[limits]
max_sessions = 100
[keepalive]
interval = "30s"
[admin]
token = "t0ken"
[routing]
sticky = "cookie:apimlAuthenticationToken"
[handshake]
allowed_origins = ["https://a.example", "https://*.b.example:8443"]
failure = "close"
[deflate]
service = "always"
context_takeover = true
max_window_bits = 10
level = 6
min_message_size = "1 KiB"
"#;
        let c = Config::from_toml(text, None).unwrap();
        let printed = c.effective_toml();
        assert!(
            !printed.contains("t0ken") && !printed.contains(":pw@"),
            "{printed}"
        );
        assert!(printed.contains("refresh_interval = \"30s\""), "{printed}");
        assert!(printed.contains("max_message_size = 16777216"), "{printed}");
        let back = Config::from_toml(&printed, None).unwrap();
        assert_eq!(back.effective_toml(), printed);
        assert_eq!(
            back.registry.eureka.server_zones,
            c.registry.eureka.server_zones
        );
        assert_eq!(back.limits.max_sessions, Some(100));
        assert_eq!(back.routing, c.routing);
        assert_eq!(back.handshake, c.handshake);
        assert_eq!(back.failover, c.failover);
        assert_eq!(back.deflate, c.deflate);
        assert_eq!(c.deflate.min_message_size, 1024);
        assert_eq!(c.deflate.service, ServiceDeflate::Always);
    }
}
