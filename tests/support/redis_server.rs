//! A real `redis-server`, the reference the differential tests compare
//! raftnode's replies with.
//!
//! It listens on a unix socket in its own temporary directory and on no TCP
//! port (`--port 0`), so it takes no port another test could want, and keeps
//! nothing on disk (`--save ''`, `--appendonly no`): every run starts from an
//! empty keyspace. The process is killed when the [`RedisServer`] is dropped,
//! whether the test passed or not.
//!
//! Debian's `redis-server` package is the reference (CI installs it); where it
//! is missing, [`RedisServer::start`] says so in one line and returns `None`,
//! and the caller skips.

use super::{wait_for, WAIT};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct RedisServer {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    /// Holds the socket and the log; removed after the process is gone.
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` with `extra` added to its command line (after
    /// the flags above, so a flag given again there wins: `--port N` adds a
    /// TCP port) and waits until it accepts connections on its socket. `None`, after one printed line, if
    /// `redis-server` is not installed. Fails the test if it is installed
    /// but exits or does not listen in time.
    pub fn start(extra: &[&str]) -> Option<RedisServer> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !installed {
            eprintln!("redis-server not installed; skipping (CI installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let log = dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--logfile")
            .arg(&log)
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let mut server = RedisServer {
            child,
            socket,
            log,
            _dir: dir,
        };
        wait_for(WAIT, "redis-server to listen on its socket", || {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server exited ({status}):\n{}", server.log_text());
            }
            UnixStream::connect(&server.socket).ok()
        });
        Some(server)
    }

    /// The unix socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A new connection to it.
    pub fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.socket).expect("connect to redis-server")
    }

    /// What it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
