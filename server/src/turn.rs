//! `Turns`: the order of the effects of commands that run concurrently.
//!
//! A pipelined peer connection runs its commands at once, so that their durable writes share
//! the store's group commits; but what another party sees of them must happen in the order they
//! arrived: a monitor shows the notifications of one sender in the order sent. So each such
//! command gets a [`Turn`]: [`Turn::wait`] returns once every earlier turn is over, and a turn
//! is over when it is dropped (its command done, or failed, whether or not it waited). The
//! commands' own work before `wait` runs concurrently; what follows it runs one at a time, in
//! order. A command whose ordered part ends before the rest of its work (a notification shown
//! on the monitors while its durable write is still being made) ends its turn early
//! ([`Turn::end`]), so later turns need not wait for that work.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Hands out consecutive turns; cheap to clone.
#[derive(Clone, Default)]
pub struct Turns(Arc<Mutex<State>>);

/// Each waiting turn has a waker of its own, woken when every turn before it is over: a turn
/// ending wakes only those it lets go, so thousands of turns waiting (a burst queued on one
/// peer link) cost a map entry each, not a wake-up each whenever any turn ends.
#[derive(Default)]
struct State {
    /// The next turn to hand out.
    next: u64,
    /// Every turn below this one is over.
    over_below: u64,
    /// The turns over that are not yet contiguous with `over_below`.
    over: BTreeSet<u64>,
    /// The turns waiting, by number.
    waiting: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
}

impl Turns {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The turn after the last one handed out.
    pub fn next(&self) -> Turn {
        let mut state = self.state();
        let number = state.next;
        state.next += 1;
        Turn {
            number,
            turns: self.clone(),
            ended: AtomicBool::new(false),
        }
    }

    fn over(&self, number: u64) {
        let released = {
            let mut state = self.state();
            state.over.insert(number);
            while state.over.first() == Some(&state.over_below) {
                state.over.pop_first();
                state.over_below += 1;
            }
            let first_waiting = state.over_below.saturating_add(1);
            let later = state.waiting.split_off(&first_waiting);
            std::mem::replace(&mut state.waiting, later)
        };
        for waker in released.into_values().flatten() {
            let _ = waker.send(());
        }
    }
}

/// One command's place in the order; over when ended or dropped.
pub struct Turn {
    number: u64,
    turns: Turns,
    /// Over already: a turn is over once ([`Turns::over`] must not hear of it twice).
    ended: AtomicBool,
}

impl Turn {
    /// Returns once every earlier turn is over.
    pub async fn wait(&self) {
        let woken = {
            let mut state = self.turns.state();
            if state.over_below >= self.number {
                return;
            }
            let (waker, woken) = oneshot::channel();
            state.waiting.entry(self.number).or_default().push(waker);
            woken
        };
        // The sender goes only once sent: the map holds it until then.
        let _ = woken.await;
    }

    /// Ends the turn now, before its command is done: the later turns go on.
    pub fn end(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.turns.over(self.number);
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_turn_waits_for_every_earlier_one_however_they_end() {
        let turns = Turns::default();
        let (first, second, third) = (turns.next(), turns.next(), turns.next());
        // The first turn is never waited for.
        first.wait().await;
        let third_waits = tokio::spawn(async move {
            third.wait().await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third_waits.is_finished());
        // The second turn ends before the first: the third still waits.
        drop(second);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third_waits.is_finished());
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), third_waits)
            .await
            .expect("the third turn's wait ended")
            .unwrap();
        // A later turn finds every earlier one over.
        let fourth = turns.next();
        tokio::time::timeout(Duration::from_secs(1), fourth.wait())
            .await
            .expect("nothing before it");
    }

    #[tokio::test]
    async fn a_turn_ended_early_lets_the_next_go_and_is_over_once() {
        let turns = Turns::default();
        let (first, second, third) = (turns.next(), turns.next(), turns.next());
        first.end();
        tokio::time::timeout(Duration::from_secs(1), second.wait())
            .await
            .expect("the first ended early");
        // Dropped after ending: not over twice, so the order still holds for the third.
        drop(first);
        let third_waits = tokio::spawn(async move { third.wait().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third_waits.is_finished(), "the second is not over");
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), third_waits)
            .await
            .expect("the third's wait ended")
            .unwrap();
        let fourth = turns.next();
        tokio::time::timeout(Duration::from_secs(1), fourth.wait())
            .await
            .expect("every earlier turn over");
    }
}
