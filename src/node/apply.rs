//! The apply thread: feeds committed entries to the state machine in log
//! order, answers the clients waiting on them, and serves confirmed reads.
//!
//! Entries and confirmed reads arrive on one channel in the order the core
//! released them, so a read is always served after every entry it must see.

use super::shared::{ApplyWork, Shared};
use super::state_machine::StateMachine;
use crate::raft::message::{Entry, Payload, Term};
use crossbeam_channel::{select, Receiver};
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) fn run<S: StateMachine>(
    shared: Arc<Shared>,
    state: Arc<Mutex<S>>,
    work: Receiver<ApplyWork>,
    shutdown: Receiver<()>,
) {
    loop {
        let work = select! {
            recv(work) -> w => match w { Ok(w) => w, Err(_) => return },
            recv(shutdown) -> _ => return,
        };
        match work {
            ApplyWork::Entries(entries) => apply_entries(&shared, &state, &entries),
            ApplyWork::Reads(ids) => serve_reads(&shared, &state, ids),
        }
    }
}

fn apply_entries<S: StateMachine>(shared: &Shared, state: &Mutex<S>, entries: &[Entry]) {
    let mut replies = Vec::with_capacity(entries.len());
    {
        let mut state = state.lock();
        for entry in entries {
            let reply = match &entry.payload {
                // A new leader's no-op (§8): nothing for the state machine.
                Payload::Noop => None,
                Payload::Command(command) => Some(state.apply(entry.index, command)),
            };
            replies.push((entry.index, entry.term, reply));
        }
    }
    if let Some(last) = entries.last() {
        shared.last_applied.store(last.index, Ordering::Release);
    }
    let mut waiters = shared.waiters.lock();
    for (index, term, mut reply) in replies {
        // Whoever waits on this index with another term lost: their entry
        // was replaced before it could commit. At most one waiter holds
        // (index, term), so the reply moves to it.
        while let Some(key) = waiters
            .range((index, 0)..=(index, Term::MAX))
            .next()
            .map(|(&k, _)| k)
        {
            if let Some(answer) = waiters.remove(&key) {
                let _ = answer.send(if key.1 == term { reply.take() } else { None });
            }
        }
    }
}

fn serve_reads<S: StateMachine>(shared: &Shared, state: &Mutex<S>, ids: Vec<u64>) {
    let state = state.lock();
    let mut read_waiters = shared.read_waiters.lock();
    for id in ids {
        if let Some((query, answer)) = read_waiters.remove(&id) {
            if answer.send(Some(state.query(&query))).is_ok() {
                shared.reads_served.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
