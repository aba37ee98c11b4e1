//! One answer, handed from the thread that has it (the apply thread, or
//! whoever releases a read) to the client thread waiting for it.
//!
//! A crossbeam channel did this before, and profiling the leader under 64
//! writing clients showed why it should not: a receiver that finds the
//! channel empty spins, then calls `sched_yield` a few times before it
//! parks, and each of those yields is a trip through the scheduler on a
//! machine whose cores are already busy. The waiter here parks at once on a
//! condition variable, and the answering side wakes it only if it is
//! parked. A client waits for about one fsync and one round trip, far too
//! long for spinning to pay.
//!
//! Dropping the [`Answer`] unanswered (the node failed or halted, and
//! cleared its waiters) wakes the waiter with [`Waited::Dropped`], as a
//! disconnected channel did.

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::Instant;

enum State<T> {
    Waiting,
    Answered(T),
    Dropped,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

/// The answering half: [`Answer::send`] it once, or drop it.
pub(crate) struct Answer<T>(Option<Arc<Inner<T>>>);

/// The waiting half.
pub(crate) struct Pending<T>(Arc<Inner<T>>);

/// Why [`Pending::wait_until`] returned no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The deadline passed first.
    TimedOut,
    /// The answering half was dropped unanswered.
    Dropped,
}

/// A new answer slot: give the [`Answer`] to whoever will answer, keep the
/// [`Pending`].
pub(crate) fn slot<T>() -> (Answer<T>, Pending<T>) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State::Waiting),
        ready: Condvar::new(),
    });
    (Answer(Some(inner.clone())), Pending(inner))
}

impl<T> Answer<T> {
    /// Hands `value` to the waiter. Returns false if nobody waits for it any
    /// more (the waiter gave up).
    pub(crate) fn send(mut self, value: T) -> bool {
        match self.0.take() {
            Some(inner) => {
                let waited = Arc::strong_count(&inner) > 1;
                *inner.state.lock() = State::Answered(value);
                inner.ready.notify_one();
                waited
            }
            None => false,
        }
    }
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            *inner.state.lock() = State::Dropped;
            inner.ready.notify_one();
        }
    }
}

impl<T> Pending<T> {
    /// Waits for the answer until `deadline`.
    pub(crate) fn wait_until(self, deadline: Instant) -> Result<T, Waited> {
        let mut state = self.0.state.lock();
        loop {
            match std::mem::replace(&mut *state, State::Waiting) {
                State::Answered(value) => return Ok(value),
                State::Dropped => return Err(Waited::Dropped),
                State::Waiting => {
                    if self.0.ready.wait_until(&mut state, deadline).timed_out() {
                        return match std::mem::replace(&mut *state, State::Waiting) {
                            State::Answered(value) => Ok(value),
                            State::Dropped => Err(Waited::Dropped),
                            State::Waiting => Err(Waited::TimedOut),
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn an_answer_reaches_its_waiter_whichever_comes_first() {
        let (answer, pending) = slot();
        assert!(answer.send(7));
        assert_eq!(pending.wait_until(soon()), Ok(7));

        let (answer, pending) = slot();
        let waiter = thread::spawn(move || pending.wait_until(soon()));
        thread::sleep(Duration::from_millis(20));
        assert!(answer.send("late"));
        assert_eq!(waiter.join().unwrap(), Ok("late"));
    }

    #[test]
    fn a_dropped_answer_wakes_its_waiter() {
        let (answer, pending) = slot::<u8>();
        let waiter = thread::spawn(move || pending.wait_until(soon()));
        thread::sleep(Duration::from_millis(20));
        drop(answer);
        assert_eq!(waiter.join().unwrap(), Err(Waited::Dropped));
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline_and_the_answer_is_told() {
        let (answer, pending) = slot::<u8>();
        let deadline = Instant::now() + Duration::from_millis(30);
        assert_eq!(pending.wait_until(deadline), Err(Waited::TimedOut));
        assert!(Instant::now() >= deadline);
        assert!(!answer.send(1), "nobody waits any more");
    }
}
