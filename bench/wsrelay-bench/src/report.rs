//! `report`: the median table of a benchmark run, ratios against the baseline target, and the
//! performance targets of issue 7 checked against the medians.
//!
//! Runs are grouped by `load` (rows, in order of first appearance) and `target` (columns; the
//! baseline first, then in order of first appearance). Every figure is the median over the
//! runs of its group (the mean of the two middle values for an even count).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::result::RunResult;

/// `report` options.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// JSON result files (one object per line; lines that are not results are skipped).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Target that ratios are computed against.
    #[arg(long, default_value = "direct")]
    baseline: String,
    /// Leave out the target checks.
    #[arg(long)]
    no_check: bool,
}

/// Reads the files and prints the table (and checks) on stdout.
///
/// # Errors
/// A file cannot be read, or holds no result.
pub fn run(a: &ReportArgs) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for f in &a.files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        runs.extend(
            text.lines()
                .filter(|l| l.trim_start().starts_with('{'))
                .filter_map(|l| serde_json::from_str::<RunResult>(l).ok())
                .filter(|r| !r.mode.is_empty()),
        );
    }
    if runs.is_empty() {
        anyhow::bail!("no results in the given files");
    }
    print!("{}", render(&runs, &a.baseline, !a.no_check));
    Ok(())
}

/// Median of the values (`None` when empty).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v.get(m).copied()
    } else {
        Some((v.get(m - 1)? + v.get(m)?) / 2.0)
    }
}

/// Runs of one load against one target.
struct Group<'a> {
    runs: Vec<&'a RunResult>,
}

impl Group<'_> {
    fn med(&self, f: impl Fn(&RunResult) -> Option<f64>) -> Option<f64> {
        median(self.runs.iter().filter_map(|r| f(r)).collect())
    }

    /// Lowest and highest value over the runs, when there are at least two.
    fn spread(&self, f: impl Fn(&RunResult) -> Option<f64>) -> Option<(f64, f64)> {
        let v: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| f(r))
            .filter(|x| x.is_finite())
            .collect();
        if v.len() < 2 {
            return None;
        }
        let lo = v.iter().copied().reduce(f64::min)?;
        let hi = v.iter().copied().reduce(f64::max)?;
        Some((lo, hi))
    }
}

/// One table row: a label, the value of one run (the cell shows the median over the runs), how
/// to show it, whether a ratio against the baseline is shown, and whether the spread over the
/// runs (lowest–highest) is shown beside the median.
struct Row {
    label: &'static str,
    value: fn(&RunResult) -> Option<f64>,
    show: fn(f64) -> String,
    ratio: bool,
    spread: bool,
}

fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn micros(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        thousands(v)
    }
}

fn one_decimal(v: f64) -> String {
    format!("{v:.1}")
}

fn two_decimals(v: f64) -> String {
    format!("{v:.2}")
}

fn percent(v: f64) -> String {
    format!("{v:+.1}%")
}

fn whole(v: f64) -> String {
    thousands(v)
}

fn size_text(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn rows(mode: &str) -> Vec<Row> {
    let cpu_pct = Row {
        label: "target CPU % of one core",
        value: |r| r.cpu_pct,
        show: whole,
        ratio: false,
        spread: false,
    };
    let load_cpu = Row {
        label: "load generator + echo backend CPU %",
        value: |r| Some(r.self_cpu_pct? + r.backend_cpu_pct.unwrap_or(0.0)),
        show: whole,
        ratio: false,
        spread: false,
    };
    let other_cpu = Row {
        label: "other CPU % (rest of the machine, softirq included)",
        value: |r| r.other_cpu_pct,
        show: whole,
        ratio: false,
        spread: false,
    };
    let cpu_msg = Row {
        label: "target CPU µs per message",
        value: |r| r.cpu_us_per_msg,
        show: two_decimals,
        ratio: false,
        spread: true,
    };
    match mode {
        "closed" => vec![
            Row {
                label: "msgs/s",
                value: |r| Some(r.msgs_per_s),
                show: whole,
                ratio: true,
                spread: false,
            },
            Row {
                label: "p50 µs",
                value: |r| r.p50_us,
                show: micros,
                ratio: true,
                spread: false,
            },
            Row {
                label: "p99 µs",
                value: |r| r.p99_us,
                show: micros,
                ratio: true,
                spread: false,
            },
            Row {
                label: "p99.9 µs",
                value: |r| r.p999_us,
                show: micros,
                ratio: true,
                spread: false,
            },
            cpu_pct,
            cpu_msg,
            load_cpu,
            other_cpu,
        ],
        "paced" => vec![
            Row {
                label: "achieved msgs/s",
                value: |r| Some(r.msgs_per_s),
                show: whole,
                ratio: true,
                spread: false,
            },
            Row {
                label: "p50 µs",
                value: |r| r.p50_us,
                show: micros,
                ratio: true,
                spread: false,
            },
            Row {
                label: "p99 µs",
                value: |r| r.p99_us,
                show: micros,
                ratio: true,
                spread: false,
            },
            Row {
                label: "p99.9 µs",
                value: |r| r.p999_us,
                show: micros,
                ratio: true,
                spread: false,
            },
            cpu_pct,
        ],
        "throughput" => vec![
            Row {
                label: "MB/s",
                value: |r| Some(r.mb_per_s),
                show: one_decimal,
                ratio: true,
                spread: true,
            },
            Row {
                label: "msgs/s",
                value: |r| Some(r.msgs_per_s),
                show: whole,
                ratio: true,
                spread: false,
            },
            Row {
                label: "p99 µs",
                value: |r| r.p99_us,
                show: micros,
                ratio: true,
                spread: false,
            },
            cpu_pct,
            cpu_msg,
            load_cpu,
            other_cpu,
        ],
        "hold" => vec![
            Row {
                label: "sessions still echoing",
                value: |r| r.echoed.map(|e| e as f64),
                show: whole,
                ratio: false,
                spread: false,
            },
            Row {
                label: "extra RSS per idle session, KiB (after open)",
                value: |r| r.kib_per_session_open,
                show: two_decimals,
                ratio: false,
                spread: false,
            },
            Row {
                label: "extra RSS per idle session, KiB (after one echo each)",
                value: |r| r.kib_per_session_echoed,
                show: two_decimals,
                ratio: false,
                spread: false,
            },
            Row {
                label: "RSS after close vs before",
                value: |r| r.after_close_pct,
                show: percent,
                ratio: false,
                spread: false,
            },
            Row {
                label: "RSS before, KiB",
                value: |r| r.rss_before_kib.map(|v| v as f64),
                show: whole,
                ratio: false,
                spread: false,
            },
            Row {
                label: "seconds to open all",
                value: |r| r.open_s,
                show: one_decimal,
                ratio: false,
                spread: false,
            },
        ],
        _ => Vec::new(),
    }
}

fn title(r: &RunResult, repeats: usize) -> String {
    let base = match r.mode.as_str() {
        "closed" if r.load == "bound" => format!(
            "relay-bound closed-loop echo (target under a cgroup CPU quota), {}, {} connections",
            size_text(r.size),
            r.connections
        ),
        "closed" => format!(
            "closed-loop echo, {}, {} connections",
            size_text(r.size),
            r.connections
        ),
        "paced" => format!(
            "paced echo, {} msgs/s, {}, {} connections",
            thousands(r.rate.unwrap_or(0.0)),
            size_text(r.size),
            r.connections
        ),
        "throughput" => format!(
            "pipelined echo, {}, {} connections × {} in flight",
            size_text(r.size),
            r.connections,
            r.window.unwrap_or(0)
        ),
        "hold" => format!("hold {} idle sessions", thousands(r.connections as f64)),
        other => other.to_string(),
    };
    format!("{base} (median of {repeats})")
}

/// Results grouped by load, then target, both in order of first appearance.
struct Grouped<'a> {
    loads: Vec<(String, Vec<(String, Group<'a>)>)>,
    targets: Vec<String>,
}

fn group<'a>(runs: &'a [RunResult], baseline: &str) -> Grouped<'a> {
    let mut loads: Vec<(String, Vec<(String, Group<'a>)>)> = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    for r in runs {
        let load = if r.load.is_empty() {
            r.mode.clone()
        } else {
            r.load.clone()
        };
        if !targets.contains(&r.target) {
            targets.push(r.target.clone());
        }
        let idx = match loads.iter().position(|(l, _)| *l == load) {
            Some(i) => i,
            None => {
                loads.push((load, Vec::new()));
                loads.len() - 1
            }
        };
        let Some((_, groups)) = loads.get_mut(idx) else {
            continue;
        };
        match groups.iter_mut().find(|(t, _)| *t == r.target) {
            Some((_, g)) => g.runs.push(r),
            None => groups.push((r.target.clone(), Group { runs: vec![r] })),
        }
    }
    if let Some(i) = targets.iter().position(|t| t == baseline) {
        let b = targets.remove(i);
        targets.insert(0, b);
    }
    Grouped { loads, targets }
}

/// Renders the Markdown table, the error notes and (with `check`) the target checks.
pub fn render(runs: &[RunResult], baseline: &str, check: bool) -> String {
    let g = group(runs, baseline);
    let mut out = String::new();
    let _ = write!(out, "| load | metric |");
    for t in &g.targets {
        let _ = write!(out, " {t} |");
    }
    out.push('\n');
    out.push_str("|---|---|");
    for _ in &g.targets {
        out.push_str("---:|");
    }
    out.push('\n');
    let mut notes = Vec::new();
    let mut medians: BTreeMap<(String, String, &'static str), f64> = BTreeMap::new();
    for (load, groups) in &g.loads {
        let Some(first) = groups.first().and_then(|(_, g)| g.runs.first()) else {
            continue;
        };
        let repeats = groups.iter().map(|(_, g)| g.runs.len()).max().unwrap_or(0);
        let base = groups.iter().find(|(t, _)| t == baseline).map(|(_, g)| g);
        for (i, row) in rows(&first.mode).iter().enumerate() {
            let label = if i == 0 {
                title(first, repeats)
            } else {
                String::new()
            };
            let _ = write!(out, "| {label} | {} |", row.label);
            let base_v = base.and_then(|b| b.med(row.value));
            for t in &g.targets {
                let cell = match groups.iter().find(|(gt, _)| gt == t) {
                    Some((_, grp)) => match grp.med(row.value) {
                        Some(v) => {
                            medians.insert((load.clone(), t.clone(), row.label), v);
                            let mut c = (row.show)(v);
                            if row.ratio && t != baseline {
                                if let Some(b) = base_v.filter(|b| *b > 0.0) {
                                    let _ = write!(c, " ({:.2}×)", v / b);
                                }
                            }
                            if row.spread {
                                if let Some((lo, hi)) = grp.spread(row.value) {
                                    let _ = write!(c, " [{}–{}]", (row.show)(lo), (row.show)(hi));
                                }
                            }
                            c
                        }
                        None => "–".to_string(),
                    },
                    None => "–".to_string(),
                };
                let _ = write!(out, " {cell} |");
            }
            out.push('\n');
        }
        for (t, grp) in groups {
            let errs: u64 = grp.runs.iter().map(|r| r.errors + r.connect_errors).sum();
            if errs > 0 {
                let first_err = grp
                    .runs
                    .iter()
                    .find_map(|r| r.first_error.clone())
                    .unwrap_or_default();
                notes.push(format!(
                    "- {load} / {t}: {errs} errors over {} runs (first: {first_err})",
                    grp.runs.len()
                ));
            }
        }
    }
    if !notes.is_empty() {
        out.push_str("\nErrors:\n");
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    if check {
        let lines = checks(&g, runs, baseline, &medians);
        if !lines.is_empty() {
            out.push_str("\nTargets (issues 7 and 18):\n");
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
    }
    out
}

type Medians = BTreeMap<(String, String, &'static str), f64>;

/// The first load of a mode (the relay-bound load, `bound`, only when asked for by name).
fn load_of<'a>(g: &'a Grouped, mode: &str) -> Option<&'a str> {
    g.loads
        .iter()
        .find(|(l, groups)| {
            (l.as_str() == "bound") == (mode == "bound")
                && groups
                    .first()
                    .and_then(|(_, g)| g.runs.first())
                    .is_some_and(|r| r.mode == mode || (mode == "bound" && r.mode == "closed"))
        })
        .map(|(l, _)| l.as_str())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// A figure's median for wsrelay over `scheme` (`ws`, `wss`) and for the best peer (nginx,
/// HAProxy, Spring Cloud Gateway) with its name: the peer with the highest value when `higher`,
/// else the lowest. `None` when either is missing.
fn mine_and_best_peer(
    get: &dyn Fn(&str, &str, &'static str) -> Option<f64>,
    load: &str,
    scheme: &str,
    label: &'static str,
    higher: bool,
) -> Option<(f64, &'static str, f64)> {
    let mine = get(load, &format!("wsrelay-{scheme}"), label)?;
    let (peer, v) = ["nginx", "haproxy", "scg"]
        .into_iter()
        .filter_map(|p| get(load, &format!("{p}-{scheme}"), label).map(|v| (p, v)))
        .reduce(|a, b| if (b.1 > a.1) == higher { b } else { a })?;
    Some((mine, peer, v))
}

/// The targets, evaluated on the medians of this report.
fn checks(g: &Grouped, runs: &[RunResult], baseline: &str, m: &Medians) -> Vec<String> {
    let mut out = Vec::new();
    let get = |load: &str, target: &str, label: &'static str| {
        m.get(&(load.to_string(), target.to_string(), label))
            .copied()
    };
    // Closed-loop 64 B.
    if let Some(load) = load_of(g, "closed") {
        if let (Some(w), Some(d)) = (
            get(load, "wsrelay-ws", "msgs/s"),
            get(load, baseline, "msgs/s"),
        ) {
            let r = w / d;
            out.push(format!(
                "- {load}: wsrelay ws msgs/s ≥ 0.85× direct: {r:.2}× — {}",
                verdict(r >= 0.85)
            ));
        }
        for scheme in ["ws", "wss"] {
            if let Some((w, p, v)) = mine_and_best_peer(&get, load, scheme, "msgs/s", true) {
                let r = w / v;
                out.push(format!(
                    "- {load}: wsrelay {scheme} msgs/s ≥ 1.2× best peer ({p} {scheme}): {r:.2}× — {}",
                    verdict(r >= 1.2)
                ));
            }
            if let Some((w, p, v)) = mine_and_best_peer(&get, load, scheme, "p99 µs", false) {
                out.push(format!(
                    "- {load}: wsrelay {scheme} p99 ≤ best peer's ({p} {scheme}, {} µs): {} µs — {}",
                    micros(v),
                    micros(w),
                    verdict(w <= v)
                ));
            }
        }
    }
    // Pipelined 64 KiB.
    if let Some(load) = load_of(g, "throughput") {
        if let (Some(w), Some(d)) = (get(load, "wsrelay-ws", "MB/s"), get(load, baseline, "MB/s")) {
            let r = w / d;
            out.push(format!(
                "- {load}: wsrelay ws MB/s ≥ 0.8× direct: {r:.2}× — {}",
                verdict(r >= 0.8)
            ));
        }
        if let Some((w, p, v)) = mine_and_best_peer(&get, load, "wss", "MB/s", true) {
            let r = w / v;
            out.push(format!(
                "- {load}: wsrelay wss MB/s ≥ 1.5× best peer ({p} wss): {r:.2}× — {}",
                verdict(r >= 1.5)
            ));
        }
    }
    // Idle sessions.
    if let Some(load) = load_of(g, "hold") {
        for (scheme, limit) in [("ws", 4.0), ("wss", 10.0)] {
            let me = format!("wsrelay-{scheme}");
            let open = get(load, &me, "extra RSS per idle session, KiB (after open)");
            let echoed = get(
                load,
                &me,
                "extra RSS per idle session, KiB (after one echo each)",
            );
            if let Some(worst) = open.into_iter().chain(echoed).reduce(f64::max) {
                out.push(format!(
                    "- {load}: wsrelay {scheme} extra RSS per idle session ≤ {limit} KiB (larger of after-open and after-echo): {worst:.2} KiB — {}",
                    verdict(worst <= limit)
                ));
            }
            if let Some(pct) = get(load, &me, "RSS after close vs before") {
                out.push(format!(
                    "- {load}: wsrelay {scheme} RSS after close within 10% of before: {pct:+.1}% — {}",
                    verdict(pct <= 10.0)
                ));
            }
            let mine: Vec<&RunResult> = runs
                .iter()
                .filter(|r| r.mode == "hold" && r.target == me)
                .collect();
            if let Some(least) = mine.iter().map(|r| r.echoed.unwrap_or(0)).min() {
                let requested = mine.iter().map(|r| r.connections).max().unwrap_or(0);
                out.push(format!(
                    "- {load}: wsrelay {scheme} every one of {} sessions still echoing (≥ 9,900 wanted) in every run: {} — {}",
                    thousands(requested as f64),
                    thousands(least as f64),
                    verdict(least == requested && requested >= 9900)
                ));
            }
        }
        // WebSockets over HTTP/2 (issue 17): an idle h2 session costs less than a wss one.
        let worst = |target: &str| {
            [
                "extra RSS per idle session, KiB (after open)",
                "extra RSS per idle session, KiB (after one echo each)",
            ]
            .into_iter()
            .filter_map(|label| get(load, target, label))
            .reduce(f64::max)
        };
        if let (Some(h2), Some(wss)) = (worst("wsrelay-h2"), worst("wsrelay-wss")) {
            out.push(format!(
                "- {load}: wsrelay h2 extra RSS per idle session < wsrelay wss's ({wss:.2} KiB; larger of after-open and after-echo): {h2:.2} KiB — {}",
                verdict(h2 < wss)
            ));
        }
        // TLS on both legs (issue 18).
        if let Some(w) = worst("wsrelay-wss-wss") {
            out.push(format!(
                "- {load}: wsrelay wss-wss (TLS on both legs) extra RSS per idle session ≤ 10 KiB (larger of after-open and after-echo): {w:.2} KiB — {}",
                verdict(w <= 10.0)
            ));
        }
    }
    out.extend(checks_18(g, &get, baseline));
    out
}

/// Issue 18's targets: CPU per message and relay-bound msgs/s against the best peer (nginx,
/// HAProxy, Spring Cloud Gateway), paced p99, 64 KiB pipelined against direct, and the load
/// side's headroom in the relay-bound load.
fn checks_18(
    g: &Grouped,
    get: &dyn Fn(&str, &str, &'static str) -> Option<f64>,
    baseline: &str,
) -> Vec<String> {
    const CPU_MSG: &str = "target CPU µs per message";
    let mut out = Vec::new();
    for load in [load_of(g, "closed"), load_of(g, "bound")]
        .into_iter()
        .flatten()
    {
        for scheme in ["ws", "wss"] {
            if let Some((w, p, v)) = mine_and_best_peer(get, load, scheme, CPU_MSG, false) {
                let r = w / v;
                out.push(format!(
                    "- {load}: wsrelay {scheme} CPU per message ≤ 0.9× best peer's ({p} {scheme}, {v:.2} µs): {w:.2} µs, {r:.2}× — {}",
                    verdict(r <= 0.9)
                ));
            }
        }
    }
    if let Some(load) = load_of(g, "bound") {
        for scheme in ["ws", "wss"] {
            if let Some((w, p, v)) = mine_and_best_peer(get, load, scheme, "msgs/s", true) {
                let r = w / v;
                out.push(format!(
                    "- {load}: wsrelay {scheme} relay-bound msgs/s ≥ 1.05× best peer ({p} {scheme}): {r:.2}× — {}",
                    verdict(r >= 1.05)
                ));
            }
        }
        let busiest = g
            .loads
            .iter()
            .find(|(l, _)| l == load)
            .into_iter()
            .flat_map(|(_, groups)| groups.iter())
            .filter_map(|(t, _)| {
                get(load, t, "load generator + echo backend CPU %").map(|v| (t.as_str(), v))
            })
            .reduce(|a, b| if b.1 > a.1 { b } else { a });
        if let Some((t, v)) = busiest {
            out.push(format!(
                "- {load}: the load side (load generator + echo backend) below 80 % of its core, so the relay is the bottleneck: at most {v:.0} % ({t}) — {}",
                verdict(v < 80.0)
            ));
        }
    }
    if let Some(load) = load_of(g, "paced") {
        for scheme in ["ws", "wss"] {
            if let Some((w, p, v)) = mine_and_best_peer(get, load, scheme, "p99 µs", false) {
                out.push(format!(
                    "- {load}: wsrelay {scheme} paced p99 ≤ best peer's ({p} {scheme}, {} µs): {} µs — {}",
                    micros(v),
                    micros(w),
                    verdict(w <= v)
                ));
            }
        }
    }
    if let Some(load) = load_of(g, "throughput") {
        for (scheme, want) in [("ws", 0.9), ("wss", 0.6)] {
            let me = format!("wsrelay-{scheme}");
            if let (Some(w), Some(d)) = (get(load, &me, "MB/s"), get(load, baseline, "MB/s")) {
                let r = w / d;
                out.push(format!(
                    "- {load}: wsrelay {scheme} 64 KiB MB/s ≥ {want}× direct: {r:.2}× — {}",
                    verdict(r >= want)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, msgs: f64, p99: f64) -> RunResult {
        RunResult {
            mode: "closed".into(),
            load: "closed-64B".into(),
            target: target.into(),
            connections: 50,
            size: 64,
            msgs_per_s: msgs,
            p99_us: Some(p99),
            ..RunResult::default()
        }
    }

    #[test]
    fn medians_ratios_and_checks() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        let runs = vec![
            run("direct", 100.0, 10.0),
            run("wsrelay-ws", 90.0, 12.0),
            run("nginx-ws", 70.0, 14.0),
            run("haproxy-ws", 60.0, 20.0),
            run("direct", 200.0, 10.0),
            run("wsrelay-ws", 80.0, 12.0),
            run("nginx-ws", 70.0, 14.0),
            run("haproxy-ws", 60.0, 20.0),
        ];
        let text = render(&runs, "direct", true);
        assert!(text.contains("| closed-loop echo, 64 B, 50 connections (median of 2) | msgs/s | 150 | 85 (0.57×) |"), "{text}");
        assert!(
            text.contains("wsrelay ws msgs/s ≥ 0.85× direct: 0.57× — MISSED"),
            "{text}"
        );
        assert!(
            text.contains("≥ 1.2× best peer (nginx ws): 1.21× — met"),
            "{text}"
        );
        assert!(
            text.contains("p99 ≤ best peer's (nginx ws, 14.0 µs): 12.0 µs — met"),
            "{text}"
        );
    }

    #[test]
    fn h2_idle_memory_is_checked_against_wss() {
        let hold = |target: &str, open: f64, echoed: f64| RunResult {
            mode: "hold".into(),
            load: "hold".into(),
            target: target.into(),
            connections: 100,
            size: 16,
            echoed: Some(100),
            kib_per_session_open: Some(open),
            kib_per_session_echoed: Some(echoed),
            ..RunResult::default()
        };
        let text = render(
            &[
                hold("wsrelay-wss", 20.0, 24.0),
                hold("wsrelay-h2", 12.0, 30.0),
            ],
            "direct",
            true,
        );
        assert!(
            text.contains("wsrelay h2 extra RSS per idle session < wsrelay wss's (24.00 KiB; larger of after-open and after-echo): 30.00 KiB — MISSED"),
            "{text}"
        );
        let text = render(&[hold("wsrelay-wss", 20.0, 24.0)], "direct", true);
        assert!(!text.contains("wsrelay h2"), "{text}");
    }

    #[test]
    fn relay_bound_load_is_checked_against_the_best_peer_with_its_spread() {
        let bound = |target: &str, msgs: f64, cpu_us: f64, load_side: f64| RunResult {
            mode: "closed".into(),
            load: "bound".into(),
            target: target.into(),
            connections: 50,
            size: 64,
            msgs_per_s: msgs,
            cpu_us_per_msg: Some(cpu_us),
            self_cpu_pct: Some(load_side - 10.0),
            backend_cpu_pct: Some(10.0),
            ..RunResult::default()
        };
        let runs = vec![
            bound("wsrelay-ws", 20_000.0, 15.0, 50.0),
            bound("nginx-ws", 18_000.0, 16.0, 45.0),
            bound("scg-ws", 9_000.0, 33.0, 30.0),
            bound("wsrelay-ws", 21_000.0, 14.0, 52.0),
            bound("nginx-ws", 18_500.0, 16.5, 46.0),
            bound("scg-ws", 9_500.0, 32.0, 31.0),
            bound("wsrelay-ws", 19_000.0, 16.0, 85.0),
            bound("nginx-ws", 17_500.0, 15.5, 44.0),
            bound("scg-ws", 9_200.0, 31.0, 30.0),
        ];
        let text = render(&runs, "direct", true);
        assert!(
            text.contains("| relay-bound closed-loop echo (target under a cgroup CPU quota), 64 B, 50 connections (median of 3) | msgs/s |"),
            "{text}"
        );
        // median 15.00 over 14.00–16.00
        assert!(text.contains("| 15.00 [14.00–16.00] |"), "{text}");
        // nginx is the best peer on CPU (16.00 beats scg's 32.00): 15 / 16 = 0.94
        assert!(
            text.contains("- bound: wsrelay ws CPU per message ≤ 0.9× best peer's (nginx ws, 16.00 µs): 15.00 µs, 0.94× — MISSED"),
            "{text}"
        );
        assert!(
            text.contains(
                "- bound: wsrelay ws relay-bound msgs/s ≥ 1.05× best peer (nginx ws): 1.11× — met"
            ),
            "{text}"
        );
        // the median load side of wsrelay-ws is 52 %: below 80 % although one run reached 85 %
        assert!(text.contains("at most 52 % (wsrelay-ws) — met"), "{text}");
        // the bound load is not taken for the closed load's issue 7 checks
        assert!(!text.contains("≥ 0.85× direct"), "{text}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
        assert_eq!(size_text(65536), "64 KiB");
        assert_eq!(size_text(64), "64 B");
    }
}
