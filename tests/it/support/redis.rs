//! A real `redis-server` (Debian package `redis-server`) for tests: started on a free loopback
//! port in its own temporary folder, without persistence unless asked (`SHUTDOWN SAVE`), and
//! killed on drop. A missing `redis-server` is a test failure that says how to install it —
//! never a skip.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "redis-server is not installed: run scripts/install-deps.sh \
(or `sudo apt-get install redis-server`)";

/// A `redis-server` process; killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    /// The TLS port, for servers started with `start_tls`.
    pub tls_port: Option<u16>,
    pub dir: tempfile::TempDir,
    extra: Vec<String>,
}

fn spawn(port: u16, dir: &std::path::Path, extra: &[String]) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--dbfilename", "dump.rdb"])
        .arg("--logfile")
        .arg(dir.join(format!("redis-{port}.log")))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
        Err(e) => panic!("cannot start redis-server: {e}"),
    }
}

/// A synchronous connection for test assertions (the `redis` crate, no Tessera code).
pub fn connect(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap()
}

fn answers_ping(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return false;
    };
    let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    // any answer counts (NOAUTH too, for servers started with a password)
    match redis::cmd("PING").query::<String>(&mut c) {
        Ok(_) => true,
        Err(e) => !e.is_io_error(),
    }
}

enum Start {
    Ready,
    Exited,
    Silent,
}

impl RedisServer {
    /// Starts a server on a free port (retrying on a port race) and waits for PING.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Like `start`, with extra `redis-server` arguments (e.g. `--cluster-enabled yes`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::start_inner(|_| (extra.clone(), None))
    }

    /// A server that also listens with TLS on `tls_port` (`port` stays plain, for the test's
    /// own checks): `cert`/`key` are the server's, clients must present a certificate issued
    /// by `client_ca`.
    pub fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: &std::path::Path,
    ) -> RedisServer {
        Self::start_inner(|tls_port| {
            let args = vec![
                "--tls-port".to_string(),
                tls_port.to_string(),
                "--tls-cert-file".to_string(),
                cert.display().to_string(),
                "--tls-key-file".to_string(),
                key.display().to_string(),
                "--tls-ca-cert-file".to_string(),
                client_ca.display().to_string(),
                "--tls-auth-clients".to_string(),
                "yes".to_string(),
            ];
            (args, Some(tls_port))
        })
    }

    /// `args` gets a second free port, distinct from the plain one, for a TLS listener.
    fn start_inner(args: impl Fn(u16) -> (Vec<String>, Option<u16>)) -> RedisServer {
        let mut last_log = String::new();
        for _ in 0..10 {
            let [port, spare] = super::free_ports();
            let (extra, tls_port) = args(spare);
            let dir = tempfile::tempdir().unwrap();
            let mut server = RedisServer {
                child: Some(spawn(port, dir.path(), &extra)),
                port,
                tls_port,
                dir,
                extra,
            };
            match server.wait_ready(Duration::from_secs(10)) {
                Start::Ready => return server,
                // lost the port to another process between bind and start: try another one
                Start::Exited => last_log = server.log(),
                Start::Silent => panic!("redis-server does not answer:\n{}", server.log()),
            }
        }
        panic!("redis-server did not start:\n{last_log}");
    }

    fn wait_ready(&mut self, within: Duration) -> Start {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return Start::Exited;
                }
            }
            if answers_ping(self.port) {
                return Start::Ready;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Start::Silent
    }

    /// `127.0.0.1:<port>`, as written in `caches[].redis.addresses`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn connect(&self) -> redis::Connection {
        connect(self.port)
    }

    /// The server's log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("redis-{}.log", self.port)))
            .unwrap_or_default()
    }

    pub fn dump_file(&self) -> PathBuf {
        self.dir.path().join("dump.rdb")
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers — a hung Redis.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status()
                .unwrap();
        }
    }

    /// Stops the server after writing its data to `dump.rdb` (`SHUTDOWN SAVE`): clients get
    /// connection refused until `restart`.
    pub fn stop_saving(&mut self) {
        let mut c = self.connect();
        // the server closes the connection instead of answering
        let _ = redis::cmd("SHUTDOWN").arg("SAVE").query::<()>(&mut c);
        if let Some(mut child) = self.child.take() {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(self.dump_file().exists(), "SHUTDOWN SAVE wrote no dump");
    }

    /// Starts the server again on the same port and folder (loading `dump.rdb`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running server");
        self.child = Some(spawn(self.port, self.dir.path(), &self.extra));
        assert!(
            matches!(self.wait_ready(Duration::from_secs(10)), Start::Ready),
            "redis-server did not restart on port {}:\n{}",
            self.port,
            self.log()
        );
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of `n` primaries (no replicas), all slots assigned, state `ok`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(n: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..n)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        // spread the 16384 slots, then introduce the nodes to each other
        let per = 16384 / n;
        for (i, node) in nodes.iter().enumerate() {
            let first = i * per;
            let last = if i + 1 == n { 16383 } else { first + per - 1 };
            let mut c = node.connect();
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .query::<()>(&mut c)
                .unwrap();
        }
        {
            let mut c = nodes[0].connect();
            for node in &nodes[1..] {
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(node.port)
                    .query::<()>(&mut c)
                    .unwrap();
            }
        }
        let start = Instant::now();
        loop {
            let all_ok = nodes.iter().all(|node| {
                let mut c = node.connect();
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{n}"))
            });
            if all_ok {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the Redis Cluster did not form"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes }
    }

    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::address).collect()
    }
}
