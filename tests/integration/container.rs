//! The container image, run without Docker: the real `cloakroom` binary
//! started the way the Dockerfile's final stage starts it (its ENTRYPOINT
//! and CMD, on `docker/proxy.toml`, secrets from the environment) in front
//! of a real upstream. It serves sessions, the HEALTHCHECK command
//! succeeds, and SIGTERM (what `docker stop` sends) drains and exits 0
//! within `server.shutdown_grace`, below `docker stop`'s 10 s.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncReadExt as _;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_cloakroom");

/// How long `docker stop` waits before SIGKILL unless told otherwise.
const DOCKER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The instructions of the Dockerfile's final stage (the image `docker
/// build` makes without `--target`), continuation lines joined, comments
/// left out.
fn final_stage(dockerfile: &str) -> Vec<String> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let last_from = instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .expect("the Dockerfile has a FROM");
    instructions.split_off(last_from + 1)
}

/// The one instruction of `stage` that starts with `keyword`.
fn instruction<'a>(stage: &'a [String], keyword: &str) -> &'a str {
    let found: Vec<&String> = stage
        .iter()
        .filter(|i| i.split_whitespace().next() == Some(keyword))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {keyword} in the final stage: {stage:#?}"
    );
    found[0][keyword.len()..].trim()
}

/// An exec-form argument list, `["a", "b"]`.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("not an exec-form list ({e}): {text}"))
}

/// Where the final stage copies `source` to.
fn copied_to(stage: &[String], source: &str) -> String {
    stage
        .iter()
        .filter_map(|i| i.strip_prefix("COPY "))
        .map(|i| i.split_whitespace().collect::<Vec<_>>())
        .find(|words| words[words.len() - 2] == source)
        .map(|words| words[words.len() - 1].to_owned())
        .unwrap_or_else(|| panic!("the final stage copies no {source}: {stage:#?}"))
}

/// The image's command line, its paths inside the image mapped to this
/// machine's: the binary under test, the configuration file written here.
fn on_this_machine(args: &[String], files: &[(&str, &Path)]) -> (PathBuf, Vec<String>) {
    let mapped: Vec<String> = args
        .iter()
        .map(|arg| match files.iter().find(|(image, _)| image == arg) {
            Some((_, here)) => here.display().to_string(),
            None => {
                assert!(!arg.starts_with('/'), "a path this test cannot map: {arg}");
                arg.clone()
            }
        })
        .collect();
    (PathBuf::from(&mapped[0]), mapped[1..].to_vec())
}

/// `"host:port"` with the port replaced: the image's addresses, on ports
/// that are free here.
fn with_port(address: &str, port: u16) -> String {
    let (host, _) = address.rsplit_once(':').expect("an address with a port");
    format!("{host}:{port}")
}

/// `text` with the one occurrence of `"from"` (a quoted TOML string) made
/// `"to"`.
fn replace_value(text: &str, from: &str, to: &str) -> String {
    let quoted = format!("\"{from}\"");
    assert_eq!(
        text.matches(&quoted).count(),
        1,
        "{quoted} once in the file"
    );
    text.replace(&quoted, &format!("\"{to}\""))
}

/// Runs the HEALTHCHECK command; its exit code and its output.
async fn health(program: &Path, args: &[String]) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[tokio::test]
async fn the_image_serves_sessions_reports_healthy_and_stops_cleanly_on_sigterm() {
    // What the image holds and how it starts.
    let dockerfile = repo_file("Dockerfile");
    let stage = final_stage(&dockerfile);
    let binary_in_image = copied_to(&stage, "/src/target/release/cloakroom");
    let config_in_image = copied_to(&stage, "docker/proxy.toml");
    let user = instruction(&stage, "USER");
    assert!(
        !["0", "root"].contains(&user.split(':').next().unwrap()),
        "the image runs as root: USER {user}"
    );
    assert_eq!(instruction(&stage, "STOPSIGNAL"), "SIGTERM");
    let mut command = exec_form(instruction(&stage, "ENTRYPOINT"));
    command.extend(exec_form(instruction(&stage, "CMD")));
    let healthcheck = instruction(&stage, "HEALTHCHECK");
    let (_, health_command) = healthcheck
        .split_once(" CMD ")
        .expect("HEALTHCHECK ... CMD [...]");
    let health_command = exec_form(health_command);
    let exposed: Vec<u16> = instruction(&stage, "EXPOSE")
        .split_whitespace()
        .map(|port| port.parse().unwrap())
        .collect();

    // The image's configuration: reachable from outside the container, on
    // the exposed ports; secrets from the environment; a grace period that
    // ends before docker stop's SIGKILL.
    let image_toml = repo_file("docker/proxy.toml");
    let table: toml::Table = image_toml.parse().expect("docker/proxy.toml is TOML");
    let listen = table["server"]["listen"].as_str().unwrap().to_owned();
    let ops_listen = table["ops"]["listen"].as_str().unwrap().to_owned();
    let upstream_url = table["upstream"]["url"].as_str().unwrap().to_owned();
    let secrets_env = table["session"]["secrets_env"].as_str().unwrap().to_owned();
    for address in [&listen, &ops_listen] {
        let address: std::net::SocketAddr = address.parse().unwrap();
        assert!(
            address.ip().is_unspecified(),
            "{address}: not reachable from outside the container"
        );
        assert!(
            exposed.contains(&address.port()),
            "{address}: the Dockerfile does not EXPOSE it"
        );
    }

    // The same file, on ports free here and in front of the test upstream:
    // the upstream URL cannot come from the environment.
    let upstream = Upstream::start().await;
    let port = free_port();
    let ops_port = free_port();
    let mut toml = replace_value(&image_toml, &listen, &with_port(&listen, port));
    toml = replace_value(&toml, &ops_listen, &with_port(&ops_listen, ops_port));
    toml = replace_value(&toml, &upstream_url, &upstream.url());
    let grace = cloakroom::config::Config::from_toml_str(&toml)
        .expect("docker/proxy.toml is a valid configuration")
        .server
        .shutdown_grace;
    assert!(
        grace < DOCKER_STOP_TIMEOUT,
        "shutdown_grace {grace:?}: docker stop kills first"
    );
    let config = TempFile::new("container", &toml);
    let files = [
        (binary_in_image.as_str(), Path::new(BIN)),
        (config_in_image.as_str(), config.path()),
    ];
    let (program, args) = on_this_machine(&command, &files);
    let (health_program, health_args) = on_this_machine(&health_command, &files);

    // Two secrets, one per line: the first signs.
    let secrets =
        format!("container-test-secret-{port}-0123456789abcdef\nan-older-secret-0123456789abcdef");
    let mut child = tokio::process::Command::new(&program)
        .args(&args)
        .env(&secrets_env, secrets)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    });
    wait_for_port(port, &mut child).await;
    wait_for_port(ops_port, &mut child).await;

    // It serves, and a session works.
    let base = format!("http://127.0.0.1:{port}");
    let client = browser();
    let home = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(upstream.last().header("x-session-id"), None);
    let login = client
        .post(format!("{base}/login"))
        .header("x-test-set-session", "regenerate")
        .header(
            "x-test-set-session",
            json!({"user": {"name": "ada"}}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    sid_pair(&login);
    let account = client.get(format!("{base}/account")).send().await.unwrap();
    assert_eq!(account.status(), 200);
    let seen = upstream.last();
    assert_eq!(seen.session(), Some(json!({"user": {"name": "ada"}})));
    assert_eq!(seen.header("x-user"), Some("ada"));
    let anonymous = bare()
        .get(format!("{base}/account"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous.status(),
        302,
        "/account is login-only in the image"
    );

    // The ops listener and the HEALTHCHECK command.
    let ops = format!("http://127.0.0.1:{ops_port}");
    let healthz = bare().get(format!("{ops}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    assert_eq!(healthz.text().await.unwrap().trim(), "ok");
    let readyz = bare().get(format!("{ops}/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 200, "store and upstream are up");
    let (code, output) = health(&health_program, &health_args).await;
    assert_eq!(code, Some(0), "the health check failed: {output}");
    assert_eq!(output.trim().lines().count(), 1, "one line: {output:?}");

    // docker stop: a request in flight is answered, then the process exits
    // 0 within the grace period.
    let slow = tokio::spawn(
        client
            .get(format!("{base}/slow"))
            .header("x-test-delay-ms", "1500")
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    let status = terminate(&mut child).await;
    let took = stopping.elapsed();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(took < grace, "took {took:?}, past shutdown_grace {grace:?}");
    let slow = slow
        .await
        .unwrap()
        .expect("the request in flight was answered");
    assert_eq!(slow.status(), 200);

    // Down, the HEALTHCHECK command says so.
    let (code, output) = health(&health_program, &health_args).await;
    assert_eq!(code, Some(1), "health after the exit: {output}");

    let log = log.await.unwrap();
    assert!(
        !log.contains("ephemeral"),
        "the secrets did not come from {secrets_env}: {log}"
    );
}

/// compose.yaml mounts docker/compose.toml over the image's configuration:
/// `cloakroom check` accepts it, and it listens where the image exposes.
#[test]
fn the_compose_configuration_is_valid_and_listens_on_the_exposed_ports() {
    let compose = repo_file("compose.yaml");
    assert!(
        compose.contains("./docker/compose.toml:/etc/cloakroom/proxy.toml:ro"),
        "compose.yaml no longer mounts docker/compose.toml"
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/compose.toml");
    let output = std::process::Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env("CLOAKROOM_SECRETS", "compose-test-secret-0123456789abcdef")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table: toml::Table = repo_file("docker/compose.toml").parse().unwrap();
    let image: toml::Table = repo_file("docker/proxy.toml").parse().unwrap();
    for (table_name, key) in [("server", "listen"), ("ops", "listen")] {
        assert_eq!(
            table[table_name][key], image[table_name][key],
            "{table_name}.{key} differs from the image's"
        );
    }
    assert_eq!(table["store"]["kind"].as_str(), Some("redis"));
}
