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

/// An error and its causes on one line, `: `-separated, leaving out a cause whose text the
/// message before it already holds (`thiserror` messages that print their source, as
/// `cannot read registry file X: No such file or directory`, would repeat it).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `--url` as given, checked and made a base URL: a scheme is required (`https://host:port`),
/// and a trailing `/application` (the endpoints' prefix, often pasted with them) is dropped.
///
/// # Errors
/// A message saying what to write for a URL without a scheme, with a scheme other than
/// `http`/`https`, or with another path.
pub fn base_url(given: &str) -> anyhow::Result<String> {
    let trimmed = given.trim().trim_end_matches('/');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        anyhow::bail!(
            "--url {given:?} has no scheme: write https://{trimmed} (or http:// when the agent runs with tls.enabled = false)"
        );
    };
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        anyhow::bail!("--url {given:?}: the scheme must be https or http (the agent's listener)");
    }
    let rest = rest
        .strip_suffix("/application")
        .unwrap_or(rest)
        .trim_end_matches('/');
    if let Some(path) = rest.find('/').and_then(|i| rest.get(i..)) {
        anyhow::bail!(
            "--url {given:?}: give the agent's base URL ({scheme}://host:port), without the path {path:?}"
        );
    }
    Ok(format!("{scheme}://{rest}"))
}

/// GETs `{base}{path}`: the HTTP status and the JSON answer, whatever the status.
///
/// # Errors
/// Connection or TLS failure (with a hint when the scheme does not match the listener: `http`
/// to a TLS port, `https` to a plain one), or a body that is not JSON.
pub async fn fetch(
    base: &str,
    path: &str,
    token: Option<&str>,
    ca: Option<&Path>,
) -> anyhow::Result<(u16, Value)> {
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
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let hint = match uri.scheme_str() {
                Some("http") if !e.is_connect() && !e.is_timeout() => {
                    " (the listener may serve TLS: try https://)"
                }
                Some("https")
                    if e.is_connect() && format!("{e:?}").contains("InvalidContentType") =>
                {
                    " (the listener may serve plain HTTP, tls.enabled = false: try http://)"
                }
                _ => "",
            };
            return Err(anyhow::Error::new(e).context(format!("cannot reach {url}{hint}")));
        }
    };
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .with_context(|| format!("cannot read the answer of {url}"))?;
    let body: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{url} answered HTTP {status} without JSON"))?;
    Ok((status.as_u16(), body))
}

/// GETs `{base}{path}` and parses the JSON answer of a 2xx.
///
/// # Errors
/// As [`fetch`], and a non-2xx status (with the body's `message`).
pub async fn fetch_json(
    base: &str,
    path: &str,
    token: Option<&str>,
    ca: Option<&Path>,
) -> anyhow::Result<Value> {
    let (status, body) = fetch(base, path, token, ca).await?;
    if !(200..300).contains(&status) {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        anyhow::bail!(
            "{base}{path}: HTTP {status} {reason}: {}",
            body.get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
        );
    }
    Ok(body)
}

/// A health document (`/application/health`) in one line per component that is not UP, with
/// its last error: what `wsrelay health` prints when the agent is DOWN.
pub fn render_health(v: &Value) -> String {
    let mut out = format!(
        "{}\n",
        v.get("status").and_then(Value::as_str).unwrap_or("UNKNOWN")
    );
    if let Some(components) = v.get("components").and_then(Value::as_object) {
        for (name, c) in components {
            let status = c.get("status").and_then(Value::as_str).unwrap_or("UNKNOWN");
            if status == "UP" {
                continue;
            }
            let details = c.get("details");
            let detail = |k: &str| details.and_then(|d| d.get(k)).filter(|v| !v.is_null());
            let mut line = format!("  {name}: {status}");
            if let Some(e) = detail("lastError") {
                line.push_str(&format!(
                    "; last error: {}",
                    e.as_str().map_or_else(|| e.to_string(), str::to_owned)
                ));
            }
            if detail("draining").and_then(Value::as_bool) == Some(true) {
                line.push_str("; draining (shutting down)");
            }
            if name == "registry" && detail("lastSuccess").is_none() {
                line.push_str("; no registry fetch has succeeded yet");
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
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

/// Renders `/application/websockets/closed` as a table, newest first.
pub fn render_closed_sessions(v: &Value) -> String {
    let mut rows = vec![[
        "SESSION",
        "ENDED",
        "CLIENT",
        "SERVICE",
        "INSTANCE",
        "CODE",
        "BY",
        "DURATION",
        "IN msgs/bytes",
        "OUT msgs/bytes",
        "REASON",
    ]
    .map(str::to_owned)
    .to_vec()];
    for sess in v.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        rows.push(vec![
            s(sess, "sessionId"),
            s(sess, "endedAt"),
            s(sess, "clientAddress").trim_start_matches('/').to_owned(),
            s(sess, "serviceId"),
            s(sess, "instanceId"),
            s(sess, "closeCode"),
            s(sess, "closedBy"),
            format!("{} ms", s(sess, "durationMs")),
            format!("{}/{}", s(sess, "messagesIn"), s(sess, "bytesIn")),
            format!("{}/{}", s(sess, "messagesOut"), s(sess, "bytesOut")),
            s(sess, "closeReason"),
        ]);
    }
    let n = rows.len() - 1;
    format!(
        "{}{n} closed session{}\n",
        table(&rows),
        if n == 1 { "" } else { "s" }
    )
}

/// Renders `/application/websockets/refused` as a table, newest first.
pub fn render_refused(v: &Value) -> String {
    let mut rows = vec![["AT", "CLIENT", "STATUS", "PATH", "CAUSE"]
        .map(str::to_owned)
        .to_vec()];
    for r in v.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        rows.push(vec![
            s(r, "at"),
            s(r, "clientAddress").trim_start_matches('/').to_owned(),
            s(r, "status"),
            s(r, "path"),
            s(r, "cause"),
        ]);
    }
    let n = rows.len() - 1;
    format!(
        "{}{n} refused upgrade{}\n",
        table(&rows),
        if n == 1 { "" } else { "s" }
    )
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
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read registry file r.xml: {source}")]
        struct Read {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Read { source: io }).context("registry");
        assert_eq!(
            error_text(&e),
            "registry: cannot read registry file r.xml: No such file or directory"
        );
    }

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(base_url("https://gw:10010").unwrap(), "https://gw:10010");
        assert_eq!(
            base_url("https://gw:10010/application/").unwrap(),
            "https://gw:10010"
        );
        assert!(base_url("127.0.0.1:10010")
            .unwrap_err()
            .to_string()
            .contains("https://127.0.0.1:10010"));
        assert!(base_url("ftp://gw").is_err());
        assert!(base_url("https://gw/application/health")
            .unwrap_err()
            .to_string()
            .contains("base URL"));
    }

    #[test]
    fn a_down_health_names_the_failing_component_and_its_error() {
        let v = json!({"status":"DOWN","components":{
            "listener":{"status":"UP","details":{"draining":false}},
            "registry":{"status":"DOWN","details":{"source":"eureka","lastSuccess":null,
                "lastError":"http://e:8761/eureka/apps/: connection refused"}},
            "tls":{"status":"UP"}}});
        let out = render_health(&v);
        assert_eq!(
            out,
            "DOWN\n  registry: DOWN; last error: http://e:8761/eureka/apps/: connection refused; no registry fetch has succeeded yet\n"
        );
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
