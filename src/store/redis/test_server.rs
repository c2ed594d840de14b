//! Throwaway `redis-server`s for tests, killed (and their files removed) on
//! drop. Standard library only: the unit tests use this file as a module
//! and the integration tests include the same file with `#[path]`.
//!
//! Without `redis-server` (or `redis-cli` for a cluster) on `PATH`, the
//! caller gets `None` after a loud "SKIPPED" on stderr, except under
//! `CI=true`, where a missing tool fails the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `REDIS_URL`, when set: tests that only need some Redis use it instead of
/// starting one. (Session ids are random, so tests cannot collide there.)
pub fn external_url() -> Option<String> {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// Whether `program` runs; if not, skips loudly or (CI=true) panics.
pub fn require(program: &str, test: &str) -> bool {
    // openssl has no `--version` option.
    let version = if program == "openssl" {
        "version"
    } else {
        "--version"
    };
    let runs = Command::new(program)
        .arg(version)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !runs {
        missing(&format!("{program} is not installed"), test);
    }
    runs
}

/// Reports a missing prerequisite: a panic under CI=true, else a loud skip.
pub fn missing(what: &str, test: &str) {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test}: {what}, and CI=true requires every test to run (.ci/run installs what they need)");
    }
    // Straight to the process's stderr: the test harness captures
    // `eprintln!` of passing tests, and this must be seen.
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test}: {what} ***\n");
}

/// Where `.ci/valkey` puts a Valkey with the native compare-and-set
/// (`SET ... IFEQ`, Valkey 8.1 and later), relative to the repository.
const VALKEY_FROM_CI: &str = "target/valkey/valkey-server";

/// A `valkey-server` of version 8.1 or later: `VALKEY_SERVER`, else what
/// `.ci/valkey` installed; `None` after a loud skip (a panic under
/// CI=true) when there is neither.
pub fn valkey_program(test: &str) -> Option<String> {
    let program = std::env::var("VALKEY_SERVER")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| format!("{}/{VALKEY_FROM_CI}", env!("CARGO_MANIFEST_DIR")));
    let runs = Command::new(&program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !runs {
        missing(
            "no valkey-server 8.1 or later (set VALKEY_SERVER, or run .ci/valkey)",
            test,
        );
        return None;
    }
    Some(program)
}

/// The socket of [`RedisServer::start_with_socket`], in the server's directory.
const SOCKET_NAME: &str = "redis.sock";

/// One `redis-server` child process on 127.0.0.1.
pub struct RedisServer {
    pub port: u16,
    /// What runs it: `redis-server`, or a Valkey.
    program: String,
    child: Option<Child>,
    dir: PathBuf,
    args: Vec<String>,
}

impl RedisServer {
    /// A fresh server without persistence; `None` (skipped) without
    /// `redis-server`.
    pub fn start(test: &str) -> Option<Self> {
        require("redis-server", test).then(|| Self::spawn(&["--save", "", "--appendonly", "no"]))
    }

    /// A fresh server without persistence that also listens on a Unix
    /// socket in its directory (see [`Self::socket_url`]).
    pub fn start_with_socket(test: &str) -> Option<Self> {
        // Relative to `--dir`, which redis-server changes into first.
        require("redis-server", test).then(|| {
            Self::spawn(&[
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
                SOCKET_NAME,
                "--unixsocketperm",
                "700",
            ])
        })
    }

    /// A server whose data survives `kill` + `restart` (append-only file,
    /// fsync on every write).
    pub fn start_persistent(test: &str) -> Option<Self> {
        require("redis-server", test).then(|| {
            Self::spawn(&[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
        })
    }

    /// A Valkey server (see [`valkey_program`]) without persistence.
    pub fn start_valkey(test: &str) -> Option<Self> {
        let program = valkey_program(test)?;
        Some(Self::spawn_program(
            &program,
            &["--save", "", "--appendonly", "no"],
        ))
    }

    /// A server with `extra` arguments, on a free port (tried a few times:
    /// another process may take the port between the check and the bind).
    pub fn spawn(extra: &[&str]) -> Self {
        Self::spawn_program("redis-server", extra)
    }

    /// [`Self::spawn`] with another server program.
    pub fn spawn_program(program: &str, extra: &[&str]) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port(extra.contains(&"--cluster-enabled"));
            let dir = scratch_dir(port);
            let mut args: Vec<String> = vec![
                "--port".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--dir".into(),
                dir.display().to_string(),
                "--logfile".into(),
                "redis.log".into(),
            ];
            args.extend(extra.iter().map(|a| a.to_string()));
            let mut server = Self {
                port,
                program: program.to_owned(),
                child: None,
                dir,
                args,
            };
            match server.launch() {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    fn launch(&mut self) -> Result<(), String> {
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            // With `requirepass`, an unauthenticated PING is refused: up too.
            let answer = self.command(&["PING"]).unwrap_or_default();
            if answer == "+PONG" || answer.starts_with("-NOAUTH") {
                return Ok(());
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    let log =
                        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                    return Err(format!("exited with {status}: {log}"));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("no PONG within 10 s".into())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The `unix://` URL of a server started with [`Self::start_with_socket`].
    pub fn socket_url(&self) -> String {
        format!("unix://{}", self.dir.join(SOCKET_NAME).display())
    }

    /// SIGKILL, as a crash: nothing is saved beyond what is already on disk.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same files.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(error) = self.launch() {
            panic!("redis-server did not restart: {error}");
        }
    }

    /// Sends one command (arguments without spaces) and returns the first
    /// line of the reply, or a bulk reply's body.
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes())?;
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let read = stream.read(&mut chunk)?;
            if read == 0 {
                break;
            }
            reply.extend_from_slice(&chunk[..read]);
            if let Some(done) = complete_reply(&reply) {
                return Ok(done);
            }
        }
        Err(std::io::Error::other("connection closed mid-reply"))
    }
}

/// The reply, once all of it has arrived: a status/error/integer line, or
/// a bulk string's body.
fn complete_reply(reply: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(reply);
    let (first, rest) = text.split_once("\r\n")?;
    match first.strip_prefix('$') {
        Some("-1") => Some(String::new()),
        Some(len) => {
            let len: usize = len.parse().ok()?;
            (rest.len() >= len + 2).then(|| rest[..len].to_owned())
        }
        None => Some(first.to_owned()),
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three masters with every slot assigned, created with `redis-cli
/// --cluster create`. `None` (skipped) without `redis-server` or a
/// `redis-cli` that knows `--cluster`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(test: &str) -> Option<Self> {
        Self::start_with(test, "no")
    }

    /// A cluster whose nodes keep their data across `kill` + `restart`.
    pub fn start_persistent(test: &str) -> Option<Self> {
        Self::start_with(test, "yes")
    }

    fn start_with(test: &str, appendonly: &str) -> Option<Self> {
        if !require("redis-server", test) || !require("redis-cli", test) {
            return None;
        }
        let args = [
            "--save",
            "",
            "--appendonly",
            appendonly,
            "--appendfsync",
            "always",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ];
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::spawn(&args)).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output();
        match created {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                let said = String::from_utf8_lossy(&output.stdout).into_owned()
                    + &String::from_utf8_lossy(&output.stderr);
                if said.contains("Unrecognized option")
                    || said.contains("--cluster") && said.contains("unknown")
                {
                    missing("this redis-cli cannot create clusters (--cluster)", test);
                    return None;
                }
                panic!("redis-cli --cluster create failed: {said}");
            }
            Err(error) => panic!("cannot run redis-cli: {error}"),
        }
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        Some(cluster)
    }

    fn wait_until_ok(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            let ready = self.nodes.iter().all(|node| {
                node.command(&["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the Redis cluster did not reach cluster_state:ok within 20 s");
    }

    /// SIGKILLs every node.
    pub fn kill(&mut self) {
        self.nodes.iter_mut().for_each(RedisServer::kill);
    }

    /// Starts every node again (same ports, same files) and waits for the
    /// cluster to be whole.
    pub fn restart(&mut self) {
        self.nodes.iter_mut().for_each(RedisServer::restart);
        self.wait_until_ok();
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// A port on 127.0.0.1 that is free now; for a cluster node, its bus port
/// (+10000) too.
pub fn free_port(cluster: bool) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        if !cluster {
            return port;
        }
        if let Some(bus) = port.checked_add(10_000) {
            if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
                return port;
            }
        }
    }
}

fn scratch_dir(port: u16) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cloakroom-redis-{}-{port}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory for redis-server");
    dir
}
