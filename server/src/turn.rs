//! `Turns`: the order of the effects of commands that run concurrently.
//!
//! A pipelined peer connection runs its commands at once, so that their durable writes share
//! the store's group commits; but what another party sees of them must happen in the order they
//! arrived: a monitor shows the notifications of one sender in the order sent. So each such
//! command gets a [`Turn`]: [`Turn::wait`] returns once every earlier turn is over, and a turn
//! is over when it is dropped (its command done, or failed, whether or not it waited). The
//! commands' own work before `wait` runs concurrently; what follows it runs one at a time, in
//! order.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Hands out consecutive turns; cheap to clone.
#[derive(Clone)]
pub struct Turns(Arc<Inner>);

struct Inner {
    /// The next turn to hand out, and the turns over that are not yet contiguous.
    state: Mutex<State>,
    /// Every turn below this one is over.
    over: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    next: u64,
    over_below: u64,
    over: BTreeSet<u64>,
}

impl Default for Turns {
    fn default() -> Turns {
        Turns(Arc::new(Inner {
            state: Mutex::default(),
            over: watch::Sender::new(0),
        }))
    }
}

impl Turns {
    /// The turn after the last one handed out.
    pub fn next(&self) -> Turn {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        let number = state.next;
        state.next += 1;
        Turn {
            number,
            turns: self.clone(),
        }
    }

    fn over(&self, number: u64) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.over.insert(number);
        let before = state.over_below;
        while state.over.first() == Some(&state.over_below) {
            state.over.pop_first();
            state.over_below += 1;
        }
        if state.over_below != before {
            self.0.over.send_replace(state.over_below);
        }
    }
}

/// One command's place in the order; over when dropped.
pub struct Turn {
    number: u64,
    turns: Turns,
}

impl Turn {
    /// Returns once every earlier turn is over.
    pub async fn wait(&self) {
        let mut over = self.turns.0.over.subscribe();
        let _ = over.wait_for(|below| *below >= self.number).await;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.turns.over(self.number);
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
}
