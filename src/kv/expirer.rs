//! The leader's active expiry (see [`super::expiry`]): a thread that, while
//! its node leads, proposes the deletion of the keys whose deadlines have
//! passed, in bounded batches.

use super::command::Command;
use super::expiry::now_ms;
use super::{KeyValue, KvNode};
use crate::node::Error;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use log::debug;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The most keys one active-expiry entry deletes.
pub const EXPIRE_BATCH: usize = 512;
/// The most active-expiry entries one tick proposes.
pub const BATCHES_PER_TICK: usize = 8;
/// How often the leader looks for expired keys (Redis's `hz 10`).
pub const TICK: Duration = Duration::from_millis(100);
/// The longest active expiry waits for one of its entries to apply.
const WAIT: Duration = Duration::from_secs(1);

/// The leader's active expiry: a thread that proposes the deletion of keys
/// whose deadlines have passed (see the module doc). It works only while
/// its node leads; it stops when dropped.
pub struct Expirer {
    stop: Option<Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Expirer {
    pub fn start(node: Arc<KvNode>) -> std::io::Result<Expirer> {
        let (stop, stopped) = bounded(0);
        let name = format!("expire-{}", node.id());
        let handle = thread::Builder::new()
            .name(name)
            .spawn(move || run(&node, &stopped))?;
        Ok(Expirer {
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}

impl Drop for Expirer {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread at once.
        self.stop.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn run(node: &KvNode, stopped: &Receiver<()>) {
    loop {
        match stopped.recv_timeout(TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if node.leader_id() != Some(node.id()) {
            continue;
        }
        for _ in 0..BATCHES_PER_TICK {
            let now = now_ms();
            let keys = node.with_state(|kv| kv.expiries().due(now, EXPIRE_BATCH));
            if keys.is_empty() {
                break;
            }
            let full = keys.len() == EXPIRE_BATCH;
            debug!("node {}: expiring {} keys", node.id(), keys.len());
            // Waiting no longer than a second keeps a stop prompt; an entry
            // not seen applied by then may still be, and proposing its keys
            // again later is harmless (each is deleted only if due).
            let written = node
                .start_write(Command::Expired { keys })
                .and_then(|pending| pending.within(WAIT).wait());
            match written {
                Ok(_) => {}
                // Leadership moved on: the next leader takes over.
                Err(Error::NotLeader { .. }) => break,
                Err(e) => {
                    debug!("node {}: active expiry: {e}", node.id());
                    break;
                }
            }
            if !full {
                break;
            }
        }
    }
}
