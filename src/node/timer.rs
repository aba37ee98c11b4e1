//! The timer thread: wakes the core every [`Config::tick`](super::Config::tick)
//! so that timeouts fire and heartbeats go out when nothing else happens.
//!
//! The core counts ticks for election timeouts, heartbeats and leases, but a
//! wake-up is not a tick: every use of the core ([`Shared::with_core`]) first
//! advances it to the number of ticks the monotonic clock says have passed.
//! So a timer thread that runs late — descheduled, or behind a busy lock;
//! crossbeam's ticker never catches up on missed beats — makes timeouts fire
//! late but never stretches a lease (§6.4) or a follower's stickiness (§9.6)
//! in real time.

use super::shared::Shared;
use crossbeam_channel::{select, Receiver};
use std::sync::atomic::Ordering;
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
                if !shared.timer_frozen.load(Ordering::Relaxed) {
                    // Advancing the clock is all a tick takes.
                    shared.with_core(|_| ());
                }
            }
            recv(pruner) -> _ => {
                shared.with_core(|core| shared.prune_peers(core));
            }
            recv(shutdown) -> _ => return,
        }
    }
}
