//! `wsrelay sessions` and `wsrelay routes`: read the diagnostics endpoints of a running agent
//! and print them as aligned tables (or raw JSON).
//!
//! The agent's certificate is verified against the system roots (and `--ca`), except for
//! loopback URLs, where the agent's own certificate is usually not issued for `127.0.0.1`
//! and verification would prove nothing: there it is not checked.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use crate::config::Config;

/// The base URL of the local agent described by `config`: `https://127.0.0.1:PORT` (or
/// `http://` without TLS; an unspecified listen address becomes the loopback one).
pub fn local_url(config: &Config) -> String {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

/// GETs `{base}{path}` and parses the JSON answer.
///
/// # Errors
/// Connection, TLS, non-2xx status (with the body's `message`), or a body that is not JSON.
pub async fn fetch_json(
    base: &str,
    path: &str,
    token: Option<&str>,
    ca: Option<&Path>,
) -> anyhow::Result<Value> {
    let url = format!("{}{}", base.trim_end_matches('/'), path);
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    let loopback = match uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
    {
        Some("localhost") => true,
        Some(h) => h
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    // Loopback: the agent's certificate names the gateway host, not 127.0.0.1, and a local
    // check proves nothing more, so it is not verified (handshake signatures still are).
    let tls = crate::tls::upstream_client_config(ca, loopback)?;
    let builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .use_preconfigured_tls(tls);
    let client = builder.build()?;
    let mut req = client.get(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .with_context(|| format!("cannot read the answer of {url}"))?;
    let body: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{url} did not answer JSON"))?;
    if !status.is_success() {
        anyhow::bail!(
            "{url}: HTTP {status}: {}",
            body.get("message").and_then(Value::as_str).unwrap_or("")
        );
    }
    Ok(body)
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    }
}

/// Aligns rows into columns separated by two spaces (the last column is not padded).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let w = widths.get(i).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Renders `/application/websockets` as a table: one line per session.
pub fn render_sessions(v: &Value) -> String {
    let mut rows = vec![[
        "SESSION",
        "CLIENT",
        "SERVICE",
        "INSTANCE",
        "PATH",
        "STARTED",
        "IN msgs/bytes",
        "OUT msgs/bytes",
    ]
    .map(str::to_owned)
    .to_vec()];
    for sess in v.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        rows.push(vec![
            s(sess, "sessionId"),
            // `/127.0.0.1:5` (Java's form) without the slash; the URI's path and query only.
            s(sess, "clientAddress").trim_start_matches('/').to_owned(),
            s(sess, "serviceId"),
            s(sess, "instanceId"),
            uri_path(&s(sess, "gatewayPath")).to_owned(),
            s(sess, "startedAt"),
            format!("{}/{}", s(sess, "messagesIn"), s(sess, "bytesIn")),
            format!("{}/{}", s(sess, "messagesOut"), s(sess, "bytesOut")),
        ]);
    }
    let n = rows.len() - 1;
    format!(
        "{}{n} live session{}\n",
        table(&rows),
        if n == 1 { "" } else { "s" }
    )
}

/// `wss://gw:10010/ws/v1/s?x=1` → `/ws/v1/s?x=1`; anything else as it is.
fn uri_path(uri: &str) -> &str {
    match uri.split_once("://") {
        Some((_, rest)) => rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/"),
        None => uri,
    }
}

/// Renders `/application/routes` as a table: one line per route and instance.
pub fn render_routes(v: &Value) -> String {
    let mut rows = vec![[
        "SERVICE",
        "GATEWAY URL",
        "SERVICE URL",
        "INSTANCE",
        "STATUS",
    ]
    .map(str::to_owned)
    .to_vec()];
    for svc in v.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let instances = svc
            .get("instances")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for r in svc
            .get("routes")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            for i in instances {
                rows.push(vec![
                    s(svc, "serviceId"),
                    s(r, "gatewayUrl"),
                    s(r, "serviceUrl"),
                    format!("{}://{}:{}", s(i, "scheme"), s(i, "host"), s(i, "port")),
                    s(i, "status"),
                ]);
            }
        }
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sessions_table_is_aligned() {
        let v = json!([{"sessionId":"01","clientAddress":"/127.0.0.1:5","serviceId":"S","instanceId":"i-1",
            "gatewayPath":"wss://gw:10010/ws/v1/s","startedAt":"2026-01-01T00:00:00.000Z","messagesIn":1,"bytesIn":5,
            "messagesOut":2,"bytesOut":10}]);
        let out = render_sessions(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("SESSION  CLIENT"));
        assert_eq!(lines[0].find("CLIENT"), lines[1].find("127.0.0.1:5"));
        assert!(lines[1].ends_with("1/5            2/10"), "{}", lines[1]);
        assert!(lines[1].contains("  /ws/v1/s  "), "{}", lines[1]);
        assert_eq!(lines[2], "1 live session");
        assert!(render_sessions(&json!([])).ends_with("0 live sessions\n"));
    }

    #[test]
    fn routes_table_lists_every_instance() {
        let v = json!([{"serviceId":"S","routes":[{"gatewayUrl":"ws/v1","serviceUrl":"/s"}],
            "instances":[{"scheme":"ws","host":"h","port":1,"status":"UP"},{"scheme":"wss","host":"g","port":2,"status":"DOWN"}]}]);
        let out = render_routes(&v);
        assert_eq!(out.lines().count(), 3);
        assert!(out.contains("wss://g:2  DOWN"));
    }
}
