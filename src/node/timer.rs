//! The timer thread: the core's only clock. It ticks the core every
//! [`Config::tick`](super::Config::tick); the core counts ticks for election
//! timeouts, heartbeats and leases.

use super::shared::Shared;
use crossbeam_channel::{select, Receiver};
use std::sync::Arc;
use std::time::Duration;

/// Every this often, the timer also stops the replication threads of nodes
/// that left the cluster.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

pub(crate) fn run(shared: Arc<Shared>, shutdown: Receiver<()>) {
    let ticker = crossbeam_channel::tick(shared.config.tick);
    let pruner = crossbeam_channel::tick(PRUNE_EVERY);
    loop {
        select! {
            recv(ticker) -> _ => {
                shared.with_core(|core| core.tick());
            }
            recv(pruner) -> _ => {
                shared.with_core(|core| shared.prune_peers(core));
            }
            recv(shutdown) -> _ => return,
        }
    }
}
