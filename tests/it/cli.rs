//! The `wsrelay` binary: `check`, config errors (exit 64).

use std::process::Command;

fn wsrelay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsrelay"))
}

/// The bundled example registry (one DISCOVERABLECLIENT instance).
const EXAMPLE_REGISTRY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/registry.xml");

/// A temporary folder and the path of a config file in it (not written yet).
fn config_path() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wsrelay.toml");
    (dir, cfg)
}

/// `wsrelay {args} --config {cfg}`, asserted to succeed; its stdout.
fn succeeds(args: &[&str], cfg: &std::path::Path) -> String {
    let out = wsrelay()
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn check_prints_the_route_table_from_the_bundled_example_registry() {
    let (_dir, cfg) = config_path();
    let reg = EXAMPLE_REGISTRY;
    std::fs::write(
        &cfg,
        format!("[tls]\nenabled = false\n[registry]\nfile = {reg:?}\n"),
    )
    .unwrap();
    let out = wsrelay()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 applications, 1 instances; 1 with WebSocket routes"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("DISCOVERABLECLIENT"))
        .expect("a route row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "DISCOVERABLECLIENT",
            "ws/v1",
            "/discoverableclient/ws",
            "ws://localhost:10012",
            "UP"
        ]
    );
}

#[test]
fn invalid_config_exits_64_naming_the_key() {
    let (dir, cfg) = config_path();
    std::fs::write(&cfg, "[tls]\nenabled = false\n[registry]\nfile = \"r.xml\"\n[limits]\nhandshake_timeout = \"0s\"\n").unwrap();
    let out = wsrelay()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.handshake_timeout"), "{err}");

    std::fs::write(&cfg, "[listen]\nadress = \"0.0.0.0:1\"\n").unwrap();
    let out = wsrelay().arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("adress"));

    let out = wsrelay()
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn check_fails_when_the_registry_cannot_be_read() {
    let (dir, cfg) = config_path();
    let reg = dir.path().join("broken.json");
    std::fs::write(&reg, "{\"applications\": [").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[tls]\nenabled = false\n[registry]\nfile = {:?}\n",
            reg.display().to_string()
        ),
    )
    .unwrap();
    let out = wsrelay()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.json"), "{err}");
}

#[test]
fn version_names_the_commit() {
    let out = wsrelay().arg("--version").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let want = format!(
        "wsrelay {} (commit {})",
        env!("CARGO_PKG_VERSION"),
        commit.as_deref().unwrap_or("unknown")
    );
    assert_eq!(stdout.trim(), want);
}

/// `log.level = "verbose"` or `RUST_LOG='garbage!!'` would start an agent that logs nothing:
/// both are refused with 64, naming the key or the variable.
#[test]
fn log_filters_that_would_log_nothing_exit_64() {
    let (_dir, cfg) = config_path();
    let reg = EXAMPLE_REGISTRY;
    let base = format!("[tls]\nenabled = false\n[registry]\nfile = {reg:?}\n");
    for level in ["verbose", "inof"] {
        std::fs::write(&cfg, format!("{base}[log]\nlevel = {level:?}\n")).unwrap();
        let out = wsrelay()
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{level}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("log.level") && err.contains(level), "{err}");
    }
    std::fs::write(&cfg, &base).unwrap();
    let out = wsrelay()
        .args(["check", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "garbage!!")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RUST_LOG") && err.contains("garbage!!"),
        "{err}"
    );
    let out = wsrelay()
        .args(["check", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info,wsrelay=debug")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `wsrelay demo`: its key is private (0600 in a 0700 folder) and removed on exit, the demo
/// instance id names the echo service's real port, a closed stdout does not stop it, and it
/// refuses `--config` (issue 19).
#[test]
fn demo_keeps_its_key_private_names_its_port_and_survives_a_closed_stdout() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Stdio;
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let wait_up = |port: u16| {
        for _ in 0..600 {
            let ok = wsrelay()
                .args(["health", "--url", &format!("https://127.0.0.1:{port}")])
                .output()
                .unwrap()
                .status
                .success();
            if ok {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the demo never became ready");
    };
    let term = |child: &mut std::process::Child| {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap()
    };

    let port = free();
    let mut child = wsrelay()
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("WSRELAY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut echo_port = None;
    let mut cert = None;
    while let Some(Ok(line)) = lines.next() {
        if let Some(rest) = line.strip_prefix("  echo service:   ws://127.0.0.1:") {
            echo_port = rest.split('/').next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("  certificate:    ") {
            cert = rest.split(' ').next().map(std::path::PathBuf::from);
        }
        if line.contains("Diagnostics:") {
            break;
        }
    }
    let (echo_port, cert) = (echo_port.unwrap(), cert.unwrap());
    let dir = cert.parent().unwrap().to_path_buf();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    assert_eq!(mode(&dir.join("tls.key")), 0o600);
    let routes = wsrelay()
        .args([
            "routes",
            "--json",
            "--url",
            &format!("https://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    let routes: serde_json::Value = serde_json::from_slice(&routes.stdout).unwrap();
    let id = routes[0]["instances"][0]["instanceId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id, format!("localhost:discoverableclient:{echo_port}"));
    assert_eq!(term(&mut child).code(), Some(0));
    assert!(!dir.exists(), "{} was left behind", dir.display());

    // Nobody reads stdout: the demo still runs and ends cleanly (it panicked with a broken
    // pipe, exit 101).
    let port = free();
    let mut child = wsrelay()
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("WSRELAY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    wait_up(port);
    assert_eq!(term(&mut child).code(), Some(0));

    let out = wsrelay()
        .args(["demo", "--config", "/etc/wsrelay/wsrelay.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("takes no config"));
}

/// `wsrelay health` on a DOWN agent says which component is down and why (it printed
/// `HTTP 503 Service Unavailable: ` and nothing else), with and without `--json`; `--url`
/// mistakes get a message saying what to write (issue 19).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_failing_component_and_url_mistakes_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-registry.xml");
    let agent = crate::support::TestAgent::start_with(
        &format!(
            "[registry]\nfile = {:?}\nrefresh_interval = \"1h\"\n",
            missing.display().to_string()
        ),
        "",
        dir,
    )
    .await;
    let url = format!(
        "https://127.0.0.1:{}/application/",
        agent.agent.local_addr.port()
    );
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || wsrelay().args(args).output().unwrap())
    };
    let out = run(vec!["health".into(), "--url".into(), url.clone()])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("DOWN\n  registry: DOWN; last error: "),
        "{stdout}"
    );
    assert!(stdout.contains("missing-registry.xml"), "{stdout}");
    let out = run(vec![
        "health".into(),
        "--json".into(),
        "--url".into(),
        url.clone(),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["components"]["registry"]["status"], "DOWN");
    assert!(doc["components"]["registry"]["details"]["lastError"].is_string());

    let bare = url
        .trim_start_matches("https://")
        .trim_end_matches("/application/")
        .to_owned();
    let out = run(vec!["health".into(), "--url".into(), bare.clone()])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("write https://{bare}")));
    let out = run(vec![
        "routes".into(),
        "--url".into(),
        format!("http://{bare}"),
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("try https://"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `check --offline` validates the config and loads its files without contacting Eureka;
/// `check --print` shows the effective config, which reads back (issue 19).
#[test]
fn check_offline_loads_files_without_the_network_and_print_shows_the_effective_config() {
    let (dir, cfg) = config_path();
    // An unreachable Eureka server: offline never tries it.
    let base =
        "[tls]\nenabled = false\n[registry]\neureka_urls = [\"http://127.0.0.1:9/eureka/\"]\n";
    std::fs::write(&cfg, base).unwrap();
    let stdout = succeeds(&["check", "--offline", "--print"], &cfg);
    assert!(
        stdout.contains("config OK (offline: the 1 Eureka server was not contacted)"),
        "{stdout}"
    );
    assert!(stdout.contains("refresh_interval = \"30s\""), "{stdout}");
    assert!(stdout.contains("websocket_routes = \"ws\""), "{stdout}");
    // The printed config is a valid config with the same effective values.
    let printed = stdout.split("config OK").next().unwrap();
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, printed).unwrap();
    let second = succeeds(&["check", "--offline", "--print"], &again);
    let body = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&second), body(&stdout));
    // Without --offline the same config fails on the unreachable server.
    let out = wsrelay()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // A file the config names is loaded: a missing listener certificate fails offline too.
    std::fs::write(
        &cfg,
        "[tls]\ncert = \"/nonexistent/tls.crt\"\nkey = \"/nonexistent/tls.key\"\n[registry]\neureka_urls = [\"http://127.0.0.1:9/eureka/\"]\n",
    )
    .unwrap();
    let out = wsrelay()
        .args(["check", "--offline", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls.cert") && err.contains("/nonexistent/tls.crt"),
        "{err}"
    );
}

/// A start-up failure of `run` is printed once (it was printed twice), and a config file
/// error is a multi-line message showing the line and what is accepted (issue 19).
#[test]
fn start_up_errors_are_printed_once_and_config_errors_show_the_line() {
    let (_dir, cfg) = config_path();
    let reg = EXAMPLE_REGISTRY;
    std::fs::write(
        &cfg,
        format!("[listen]\naddress = \"127.0.0.1:0\"\n[tls]\ncert = \"/nonexistent/tls.crt\"\nkey = \"/nonexistent/tls.key\"\n[registry]\nfile = {reg:?}\n"),
    )
    .unwrap();
    let out = wsrelay().arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("/nonexistent/tls.crt").count(), 1, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    std::fs::write(&cfg, "[upstream]\nmax_attempts = \"3\"\n").unwrap();
    let out = wsrelay()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().count() >= 5, "{err}");
    assert!(
        err.contains("max_attempts = \"3\"") && err.contains("expected a whole number"),
        "{err}"
    );
}
