//! The benchmark scripts' own logic, checked where it can be without a
//! benchmark: every script under `bench/` and `docker/` parses as bash,
//! `docker/build-release.sh` refuses a `PGO` it does not know,
//! `bench/locality.sh` refuses a `CLOAKROOM_BIN` that is not there, the
//! WebSocket load (`examples/bench_websocket.rs`) counts what the upstream
//! echoes and reports handshakes it refuses, and the
//! statistics the reports rest on (`bench/stats.sh`: the median of a list,
//! the interval that holds the true median with 95% confidence, and the
//! per-repetition ratios of two targets) give the values worked out by
//! hand.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Runs `script` in bash from the repository root, with `bench/stats.sh`
/// sourced, and returns what it printed.
fn with_stats(script: &str) -> String {
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(". bench/stats.sh\n{script}"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "bash failed on {script:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the output is text")
}

/// The shell scripts in the repository's directory `dir`.
fn scripts_in(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    scripts
}

#[test]
fn every_bench_and_docker_script_parses() {
    let bench = scripts_in("bench");
    assert!(bench.len() >= 8, "bench scripts found: {bench:?}");
    let docker = scripts_in("docker");
    assert!(docker.len() >= 2, "docker scripts found: {docker:?}");
    let scripts = bench.into_iter().chain(docker);
    for script in scripts {
        let status = Command::new("bash")
            .arg("-n")
            .arg(&script)
            .status()
            .expect("bash runs");
        assert!(status.success(), "{} does not parse", script.display());
    }
}

#[test]
fn the_image_build_refuses_a_pgo_setting_it_does_not_know() {
    // Refused before anything is built or installed.
    let output = Command::new("bash")
        .arg("docker/build-release.sh")
        .env("PGO", "yes")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("PGO must be true or false, not 'yes'"),
        "{stderr}"
    );
}

#[test]
fn the_locality_benchmark_refuses_a_binary_that_is_not_there() {
    // Refused before anything is built, started or deleted.
    let output = Command::new("bash")
        .arg("bench/locality.sh")
        .env("CLOAKROOM_BIN", "target/no-such-dir/cloakroom")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("CLOAKROOM_BIN (target/no-such-dir/cloakroom) is not an executable"),
        "{stderr}"
    );
}

/// An example `cargo test` built beside this test (in
/// `target/<profile>/examples/`).
fn example(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test's own path");
    let path = test
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps/")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds the examples (or `cargo build --examples`)",
        path.display()
    );
    path
}

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `bench_websocket THREADS CONNECTIONS SECONDS URL`'s `BENCH` line, as
/// numbers by name.
fn websocket_load(connections: u32, url: &str) -> std::collections::HashMap<String, u64> {
    let output = Command::new(example("bench_websocket"))
        .args(["1", &connections.to_string(), "1", url])
        .output()
        .expect("bench_websocket runs");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("text");
    let line = stdout
        .lines()
        .find(|line| line.starts_with("BENCH "))
        .unwrap_or_else(|| panic!("no BENCH line in {stdout:?}"));
    line.split_whitespace()
        .skip(1)
        .map(|pair| {
            let (name, value) = pair.split_once('=').expect("name=value");
            (name.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn the_websocket_load_counts_echoes_and_reports_refused_handshakes() {
    let mut upstream = Command::new(example("bench_upstream"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("bench_upstream starts");
    let stdout = upstream.stdout.take().expect("its stdout");
    let upstream = Running(upstream);
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("bench_upstream says where it listens");
    let addr = first
        .trim()
        .strip_prefix("bench_upstream listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();

    let echoed = websocket_load(2, &format!("ws://{addr}/ws"));
    assert!(echoed["requests"] > 100, "{echoed:?}");
    assert_eq!(echoed["socket_errors"], 0, "{echoed:?}");
    assert_eq!(echoed["status_errors"], 0, "{echoed:?}");
    assert!(echoed["p99_us"] > 0, "{echoed:?}");

    // Anywhere but /ws the upstream answers 200, not 101: every handshake
    // is counted as refused, and nothing as echoed.
    let refused = websocket_load(3, &format!("ws://{addr}/elsewhere"));
    assert_eq!(refused["requests"], 0, "{refused:?}");
    assert_eq!(refused["status_errors"], 3, "{refused:?}");
    drop(upstream);
}

#[test]
fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
    assert_eq!(with_stats("printf '3\\n1\\n2\\n' | median_of"), "2.000\n");
    assert_eq!(
        with_stats("printf '0.9\\n1.1\\n1.0\\n0.8\\n' | median_of 2"),
        "0.95\n"
    );
    // Numbers sort as numbers, not as text.
    assert_eq!(with_stats("printf '10\\n9\\n100\\n' | median_of 0"), "10\n");
    assert_eq!(with_stats("printf '' | median_of"), "n/a\n");
}

#[test]
fn the_interval_of_fifteen_is_the_fourth_smallest_to_the_fourth_largest() {
    // P(Bin(15, 1/2) <= 3) = 0.0176, twice that 3.5%: within 5%. With the
    // fifth it would be 2 x 0.0592 = 11.8%: too wide a risk.
    assert_eq!(with_stats("seq 15 -1 1 | median_interval 0"), "4-12\n");
    // The repetitions' ratios of a real run (session writes with Redis on
    // a CPU of its own), in the order they came.
    let ratios = "0.69 0.75 0.73 0.70 0.71 0.62 0.71 0.62 0.73 0.73 0.71 0.79 0.77 0.73 0.65";
    assert_eq!(
        with_stats(&format!("printf '%s\\n' {ratios} | median_interval 2")),
        "0.69-0.73\n"
    );
}

#[test]
fn few_numbers_give_their_extremes_with_the_confidence_they_have() {
    // Six: the extremes miss the median with probability 2/64, 3.1%.
    assert_eq!(with_stats("seq 6 | median_interval 0"), "1-6\n");
    // Five: 2/32 = 6.25%, so the confidence is said: 93.8%.
    assert_eq!(with_stats("seq 5 | median_interval 0"), "1-5 (93.8%)\n");
    assert_eq!(with_stats("seq 3 | median_interval 0"), "1-3 (75.0%)\n");
    // One number brackets nothing.
    assert_eq!(with_stats("echo 1 | median_interval"), "n/a\n");
    assert_eq!(with_stats("printf '' | median_interval"), "n/a\n");
}

#[test]
fn the_interval_of_a_hundred_is_narrower_than_the_extremes() {
    // P(Bin(100, 1/2) <= 39) = 0.0176 and <= 40 is 0.0284: the 40th
    // smallest and the 40th largest (61st), for 96.5%.
    assert_eq!(with_stats("seq 100 | median_interval 0"), "40-61\n");
}

#[test]
fn ratios_pair_the_two_targets_of_each_repetition() {
    // A run's raw.tsv: scenario, target, repetition, req/s, p99, CPU per
    // request, errors, other load, user CPU. Repetition 2 has no nginx
    // line, repetition 3 no CPU figure for Cloakroom, and another
    // scenario's lines must not be mixed in.
    let raw = [
        "session-read\tnginx\t1\t50000\t3000\t18.00\t0\t0.01\t4.0",
        "session-read\tcloakroom\t1\t49000\t3100\t18.90\t0\t0.01\t5.0",
        "session-write\tnginx\t1\t10000\t3000\t90.00\t0\t0.01\t4.0",
        "session-read\tcloakroom\t2\t70000\t3100\t10.00\t0\t0.01\t5.0",
        "session-read\tnginx\t3\t40000\t3000\t20.00\t0\t0.01\t4.0",
        "session-read\tcloakroom\t3\t44000\t3100\tn/a\t0\t0.01\t5.0",
        "session-read\tnginx\t4\t50000\t3000\t16.00\t0\t0.01\t4.0",
        "session-read\tcloakroom\t4\t51000\t3100\t15.20\t0\t0.01\t5.0",
    ]
    .join("\n");
    let pairs = |column: u8| {
        with_stats(&format!(
            "printf '%s\\n' '{raw}' | paired_ratios session-read cloakroom nginx {column}"
        ))
    };
    // req/s: repetitions 1, 3 and 4, in order.
    assert_eq!(pairs(4), "0.98\n1.1\n1.02\n");
    // CPU per request: repetition 3 has none.
    assert_eq!(pairs(6), "1.05\n0.95\n");
}
