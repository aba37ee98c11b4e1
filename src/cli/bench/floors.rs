//! The two costs no replicated write can avoid on this machine, measured
//! before the load so that the results can be read against them: making
//! 4 KiB durable at the end of a file (what a log append costs) and one
//! loopback round trip (what the leader's message to a follower and the
//! answer cost at the least).

use super::error::BenchError;
use super::histogram::Histogram;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

const FSYNC_RUNS: usize = 200;
const FSYNC_BLOCK: usize = 4096;
const RTT_RUNS: usize = 2000;

/// The median and 99th percentile of one measurement, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Floor {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) runs: usize,
}

impl Floor {
    fn of(h: &Histogram, runs: usize) -> Floor {
        Floor {
            p50: h.quantile(0.5),
            p99: h.quantile(0.99),
            runs,
        }
    }
}

/// Both floors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Floors {
    pub(crate) fsync: Floor,
    pub(crate) rtt: Floor,
}

impl Floors {
    /// What one client's write cannot beat: the leader's own fsync, with one
    /// round trip to the followers (whose fsyncs run in parallel with the
    /// leader's, §10.2.1 of the Raft dissertation).
    pub(crate) fn write_floor(&self) -> u64 {
        self.fsync.p50 + self.rtt.p50
    }
}

/// Measures both, the fsync one in `dir` (which must be on the disk the
/// nodes write to).
pub(crate) fn measure(dir: &Path) -> Result<Floors, BenchError> {
    Ok(Floors {
        fsync: fsync(dir)?,
        rtt: round_trip().map_err(BenchError::Loopback)?,
    })
}

/// Appends 4 KiB to a new file and `fdatasync`s it, [`FSYNC_RUNS`] times.
/// Each append grows the file, so the file's size is flushed too, as it is
/// for a log append.
fn fsync(dir: &Path) -> Result<Floor, BenchError> {
    let path = dir.join(format!("bench-fsync-{}.tmp", std::process::id()));
    let failed = |what: &str| {
        let what = what.to_string();
        let path = path.clone();
        move |source| BenchError::Io { what, path, source }
    };
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(failed("create"))?;
    let block = vec![0x5a; FSYNC_BLOCK];
    let mut h = Histogram::new();
    let result = (0..FSYNC_RUNS).try_for_each(|_| {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        h.record(start.elapsed().as_nanos() as u64);
        Ok(())
    });
    drop(file);
    let removed = fs::remove_file(&path);
    result.map_err(failed("append to and fdatasync"))?;
    removed.map_err(failed("remove"))?;
    Ok(Floor::of(&h, FSYNC_RUNS))
}

/// One byte there and back over loopback TCP (no Nagle on either side),
/// [`RTT_RUNS`] times, against an echo thread.
fn round_trip() -> io::Result<Floor> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo =
        thread::Builder::new()
            .name("bench-echo".into())
            .spawn(move || -> io::Result<()> {
                let (mut stream, _) = listener.accept()?;
                stream.set_nodelay(true)?;
                let mut byte = [0u8; 1];
                // Echo until the other side closes.
                while stream.read(&mut byte)? == 1 {
                    stream.write_all(&byte)?;
                }
                Ok(())
            })?;
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut h = Histogram::new();
    let mut byte = [0u8; 1];
    for _ in 0..RTT_RUNS {
        let start = Instant::now();
        stream.write_all(b"p")?;
        stream.read_exact(&mut byte)?;
        h.record(start.elapsed().as_nanos() as u64);
    }
    drop(stream);
    match echo.join() {
        Ok(result) => result?,
        Err(_) => return Err(io::Error::other("the echo thread panicked")),
    }
    Ok(Floor::of(&h, RTT_RUNS))
}
