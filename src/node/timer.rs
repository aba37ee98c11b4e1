//! The timer thread: the core's only clock. It ticks the core every
//! [`Config::tick`](super::Config::tick); the core counts ticks for election
//! timeouts, heartbeats and leases.

use super::shared::Shared;
use crossbeam_channel::{select, Receiver};
use std::sync::Arc;

pub(crate) fn run(shared: Arc<Shared>, shutdown: Receiver<()>) {
    let ticker = crossbeam_channel::tick(shared.config.tick);
    loop {
        select! {
            recv(ticker) -> _ => {
                shared.with_core(|core| core.tick());
            }
            recv(shutdown) -> _ => return,
        }
    }
}
