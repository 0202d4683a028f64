//! Prometheus metrics (prometheus-client), served at `/application/prometheus` in the
//! Prometheus text format 0.0.4 (`text/plain; version=0.0.4`), or in the OpenMetrics text
//! format when the request's `Accept` asks for `application/openmetrics-text`, as Spring
//! Boot's endpoint does (spring-boot #28446: a browser downloads OpenMetrics as a file).
//!
//! Metric handles are cheap `Arc`ed atomics: the hot path clones a handle once per session
//! and then only does atomic adds. Counter names below are registered without the `_total`
//! suffix, which the OpenMetrics encoder adds.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `wsrelay_sessions_open` | gauge | `service` |
//! | `wsrelay_sessions_total` | counter | `service`, `close_code` (ended sessions) |
//! | `wsrelay_sessions_opened_total` | counter | `service` |
//! | `wsrelay_sessions_limit` | gauge | — (`limits.max_sessions`, 0 = unlimited) |
//! | `wsrelay_http2_sessions_total` | counter | — (sessions opened as extended CONNECTs over HTTP/2, RFC 8441) |
//! | `wsrelay_deflate_sessions_total` | counter | `leg` (`client`, `service`: sessions whose leg agreed permessage-deflate) |
//! | `wsrelay_connections_open` | gauge | |
//! | `wsrelay_connection_limit_reached_total` | counter | |
//! | `wsrelay_connection_refusals_total` | counter | `reason` |
//! | `wsrelay_handshake_failures_total` | counter | `status` |
//! | `wsrelay_session_failovers_total` | counter | `service`, `result` (`switched`, `failed`) |
//! | `wsrelay_relayed_messages_total` | counter | `direction` (`client_to_service`, `service_to_client`) |
//! | `wsrelay_relayed_bytes_total` | counter | `direction` |
//! | `wsrelay_upstream_connect_seconds` | histogram | — |
//! | `wsrelay_registry_last_success_timestamp_seconds` | gauge | — |
//! | `wsrelay_registry_fetches_total` | counter | `outcome` (`full`, `delta`, `reconcile`, `error`, `file`) |
//! | `wsrelay_registry_instances` | gauge | `status` |
//! | `wsrelay_registry_server` | gauge (1 = current) | `server` (credentials removed) |
//! | `wsrelay_tls_reload_failures_total` | counter | — |
//! | `wsrelay_tls_cert_expiry_timestamp_seconds` | gauge | — |
//! | `wsrelay_build_info` | gauge (1) | `version`, `commit` |

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `leg` label: `client` or `service`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LegLabel {
    /// `client` or `service`.
    pub leg: &'static str,
}

/// `service` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    /// Eureka service id.
    pub service: String,
}

/// `service` + `close_code` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionEndLabels {
    /// Eureka service id.
    pub service: String,
    /// The close code that ended the session, bucketed by [`close_code_label`] (`1005` when
    /// none), so a peer cannot mint series.
    pub close_code: &'static str,
}

/// The `close_code` label of a close code: the codes RFC 6455 §7.4.1 and IANA's registry define
/// (1000–1003, 1005–1015) keep their number; the ranges a peer chooses from are bucketed:
/// `3xxx` (3000–3999, registered with IANA), `4xxx` (4000–4999, private use), and `other` for
/// anything else. At most 18 series per service.
pub fn close_code_label(code: u16) -> &'static str {
    match code {
        1000 => "1000",
        1001 => "1001",
        1002 => "1002",
        1003 => "1003",
        1005 => "1005",
        1006 => "1006",
        1007 => "1007",
        1008 => "1008",
        1009 => "1009",
        1010 => "1010",
        1011 => "1011",
        1012 => "1012",
        1013 => "1013",
        1014 => "1014",
        1015 => "1015",
        3000..=3999 => "3xxx",
        4000..=4999 => "4xxx",
        _ => "other",
    }
}

/// `service` + `result` labels of a session failover.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    /// Eureka service id.
    pub service: String,
    /// `switched` (the session moved to another instance) or `failed` (it was closed).
    pub result: &'static str,
}

/// `status` label (HTTP status or Eureka status).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The status.
    pub status: String,
}

/// `direction` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `client_to_service` or `service_to_client`.
    pub direction: &'static str,
}

/// `outcome` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// What happened.
    pub outcome: &'static str,
}

/// `server` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabel {
    /// Eureka server URL without credentials.
    pub server: String,
}

/// Proxy metrics.
#[derive(Clone, Debug)]
pub struct ProxyMetrics {
    /// Live sessions by service.
    pub sessions_open: Family<ServiceLabel, Gauge>,
    /// Sessions opened (101 sent after the upstream accepted) by service.
    pub sessions_opened: Family<ServiceLabel, Counter>,
    /// `limits.max_sessions` (0 = unlimited), for alerts on sessions near the limit.
    pub sessions_limit: Gauge,
    /// Sessions whose leg (`client`, `service`) agreed permessage-deflate (RFC 7692).
    pub deflate_sessions: Family<LegLabel, Counter>,
    /// Sessions opened over HTTP/2 (RFC 8441 extended CONNECT).
    pub http2_sessions: Counter,
    /// Ended sessions by service and close code.
    pub sessions_total: Family<SessionEndLabels, Counter>,
    /// Refused or failed handshakes by HTTP status.
    pub handshake_failures: Family<StatusLabel, Counter>,
    /// Session failovers (issue 6) by service and result.
    pub failovers: Family<FailoverLabels, Counter>,
    /// Messages client → service.
    pub messages_in: Counter,
    /// Messages service → client.
    pub messages_out: Counter,
    /// Bytes client → service.
    pub bytes_in: Counter,
    /// Bytes service → client.
    pub bytes_out: Counter,
    /// Upstream connect + upgrade latency in seconds.
    pub upstream_connect: Histogram,
    /// Open client connections (each holds one `limits.max_connections` permit).
    pub connections_open: Gauge,
    /// Times the accept loop found every `limits.max_connections` permit taken and waited.
    pub connection_limit_reached: Counter,
    /// Connections that failed below the upgrade (TLS handshake, HTTP request head), by reason.
    pub connection_refusals: Family<ReasonLabel, Counter>,
}

/// `reason` label of a connection refused below the upgrade.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `tls_handshake`, `tls_incomplete`, `tls_timeout`, `tls_io`, `malformed_request`,
    /// `head_too_large`, `head_timeout`, `incomplete_request`.
    pub reason: &'static str,
}

/// Registry source metrics.
#[derive(Clone, Debug, Default)]
pub struct RegistryMetrics {
    /// Unix time of the last successful fetch, in seconds.
    pub last_success: Gauge,
    /// Fetches by outcome.
    pub fetches: Family<OutcomeLabel, Counter>,
    /// Instances in the registry by `status` (not `overriddenStatus`, as Eureka counts them).
    pub instances: Family<StatusLabel, Gauge>,
    /// The Eureka server in use (value 1; the previous one is removed).
    pub server: Family<ServerLabel, Gauge>,
}

/// TLS metrics.
#[derive(Clone, Debug, Default)]
pub struct TlsMetrics {
    /// Certificate reloads refused (unparsable, mismatched, half-written pair).
    pub reload_failures: Counter,
    /// `notAfter` of the serving certificate, Unix seconds.
    pub cert_expiry: Gauge,
}

/// Every metric of the agent, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    /// Proxy metrics.
    pub proxy: ProxyMetrics,
    /// Registry source metrics.
    pub registry: RegistryMetrics,
    /// TLS metrics.
    pub tls: TlsMetrics,
    registry_: Mutex<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let messages = Family::<DirectionLabel, Counter>::default();
        let bytes = Family::<DirectionLabel, Counter>::default();
        // Pre-create the two directions so the hot path never touches the family map.
        let dir = |d| DirectionLabel { direction: d };
        // Each get_or_create guard must be dropped before the next call (one statement each).
        let messages_in = messages.get_or_create(&dir("client_to_service")).clone();
        let messages_out = messages.get_or_create(&dir("service_to_client")).clone();
        let bytes_in = bytes.get_or_create(&dir("client_to_service")).clone();
        let bytes_out = bytes.get_or_create(&dir("service_to_client")).clone();
        let proxy = ProxyMetrics {
            sessions_open: Family::default(),
            sessions_opened: Family::default(),
            sessions_limit: Gauge::default(),
            deflate_sessions: Family::default(),
            http2_sessions: Counter::default(),
            sessions_total: Family::default(),
            handshake_failures: Family::default(),
            failovers: Family::default(),
            messages_in,
            messages_out,
            bytes_in,
            bytes_out,
            upstream_connect: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            connections_open: Gauge::default(),
            connection_limit_reached: Counter::default(),
            connection_refusals: Family::default(),
        };
        r.register(
            "wsrelay_connection_refusals",
            "Connections that failed below the upgrade (TLS handshake or HTTP request head), by reason",
            proxy.connection_refusals.clone(),
        );
        r.register(
            "wsrelay_connections_open",
            "Open client connections (limits.max_connections caps them)",
            proxy.connections_open.clone(),
        );
        r.register(
            "wsrelay_connection_limit_reached",
            "Times every limits.max_connections permit was taken; new connections then wait in the listen backlog",
            proxy.connection_limit_reached.clone(),
        );
        r.register(
            "wsrelay_sessions_open",
            "Live WebSocket sessions",
            proxy.sessions_open.clone(),
        );
        r.register(
            "wsrelay_sessions_opened",
            "WebSocket sessions opened",
            proxy.sessions_opened.clone(),
        );
        r.register(
            "wsrelay_http2_sessions",
            "Sessions opened over HTTP/2 (RFC 8441 extended CONNECT)",
            proxy.http2_sessions.clone(),
        );
        r.register(
            "wsrelay_deflate_sessions",
            "Sessions whose leg (client or service) agreed permessage-deflate",
            proxy.deflate_sessions.clone(),
        );
        r.register(
            "wsrelay_sessions_limit",
            "limits.max_sessions (0 = unlimited)",
            proxy.sessions_limit.clone(),
        );
        r.register(
            "wsrelay_sessions",
            "Ended WebSocket sessions by close code",
            proxy.sessions_total.clone(),
        );
        r.register(
            "wsrelay_session_failovers",
            "Sessions moved to another instance after their upstream leg failed, or closed because no instance took them",
            proxy.failovers.clone(),
        );
        r.register(
            "wsrelay_handshake_failures",
            "Upgrade requests answered with an HTTP error, by status",
            proxy.handshake_failures.clone(),
        );
        r.register(
            "wsrelay_relayed_messages",
            "Data messages relayed",
            messages,
        );
        r.register("wsrelay_relayed_bytes", "Payload bytes relayed", bytes);
        r.register(
            "wsrelay_upstream_connect_seconds",
            "Time from upstream connect to its 101 answer",
            proxy.upstream_connect.clone(),
        );

        let registry = RegistryMetrics::default();
        r.register(
            "wsrelay_registry_last_success_timestamp_seconds",
            "Unix time of the last successful registry fetch",
            registry.last_success.clone(),
        );
        r.register(
            "wsrelay_registry_fetches",
            "Registry fetches by outcome",
            registry.fetches.clone(),
        );
        r.register(
            "wsrelay_registry_instances",
            "Registry instances by Eureka status (status, not overriddenStatus)",
            registry.instances.clone(),
        );
        r.register(
            "wsrelay_registry_server",
            "The Eureka server in use (1)",
            registry.server.clone(),
        );

        let tls = TlsMetrics::default();
        r.register(
            "wsrelay_tls_reload_failures",
            "Certificate reloads refused",
            tls.reload_failures.clone(),
        );
        r.register(
            "wsrelay_tls_cert_expiry_timestamp_seconds",
            "notAfter of the serving certificate (Unix seconds)",
            tls.cert_expiry.clone(),
        );
        r.register(
            "wsrelay_build",
            "The running build",
            prometheus_client::metrics::info::Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", COMMIT),
            ]),
        );
        Metrics {
            proxy,
            registry,
            tls,
            registry_: Mutex::new(r),
        }
    }

    /// Encodes every metric in the OpenMetrics text format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry_.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
            out.clear();
        }
        out
    }
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of [`to_text_004`]'s output (Prometheus' classic text format).
pub const CONTENT_TYPE_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The commit the binary was built from (12 hex digits, or `unknown`; see `build.rs`).
pub const COMMIT: &str = env!("WSRELAY_COMMIT");

/// Whether an `Accept` header value asks for OpenMetrics (any of its media ranges is
/// `application/openmetrics-text` with a non-zero `q`), as Prometheus' scrape `Accept` does.
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        media.eq_ignore_ascii_case("application/openmetrics-text")
            && !parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            })
    })
}

/// Rewrites OpenMetrics text (as [`Metrics::encode`] writes it) into the Prometheus text
/// format 0.0.4: a counter family `x` becomes `x_total` in its `# HELP` and `# TYPE` lines
/// (its samples already are), an info family `x` becomes the gauge `x_info`, and `# UNIT` and
/// `# EOF` lines go.
pub fn to_text_004(openmetrics: &str) -> String {
    let mut renamed: std::collections::HashMap<&str, (&str, &str)> =
        std::collections::HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                match kind {
                    "counter" if !name.ends_with("_total") => {
                        renamed.insert(name, ("_total", "counter"));
                    }
                    "info" => {
                        renamed.insert(name, ("_info", "gauge"));
                    }
                    _ => {}
                }
            }
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some((suffix, kind)) = renamed.get(name) {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str(suffix);
                out.push(' ');
                out.push_str(if prefix == "# TYPE " { kind } else { tail });
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_004_renames_counters_and_info_and_drops_eof() {
        let m = Metrics::new();
        m.proxy.bytes_in.inc_by(5);
        let om = m.encode();
        assert!(om.ends_with("# EOF\n"));
        let t = to_text_004(&om);
        assert!(!t.contains("# EOF") && !t.contains("# UNIT"));
        assert!(
            t.contains("# TYPE wsrelay_relayed_bytes_total counter\n"),
            "{t}"
        );
        assert!(
            t.contains("# HELP wsrelay_relayed_bytes_total Payload bytes relayed"),
            "{t}"
        );
        assert!(t.contains("wsrelay_relayed_bytes_total{direction=\"client_to_service\"} 5\n"));
        assert!(t.contains("# TYPE wsrelay_build_info gauge\n"), "{t}");
        assert!(t.contains(&format!(
            "wsrelay_build_info{{version=\"{}\",commit=\"{COMMIT}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(t.contains("# TYPE wsrelay_connections_open gauge\n"), "{t}");
    }

    #[test]
    fn openmetrics_is_served_when_asked_for() {
        assert!(wants_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(!wants_openmetrics(
            "text/html,application/xhtml+xml,*/*;q=0.8"
        ));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
        assert!(!wants_openmetrics(""));
    }

    #[test]
    fn encodes_registered_metrics_with_total_suffix() {
        let m = Metrics::new();
        m.proxy.bytes_in.inc_by(5);
        m.proxy
            .sessions_total
            .get_or_create(&SessionEndLabels {
                service: "S".into(),
                close_code: close_code_label(1000),
            })
            .inc();
        m.tls.reload_failures.inc();
        let text = m.encode();
        assert!(
            text.contains("wsrelay_relayed_bytes_total{direction=\"client_to_service\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("wsrelay_sessions_total{service=\"S\",close_code=\"1000\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wsrelay_tls_reload_failures_total 1"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
