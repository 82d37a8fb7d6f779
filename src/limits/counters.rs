//! Request counting for the rate limits: per key, the requests of its current window (a
//! second, or a UTC day).
//!
//! Alone, a node counts in memory. In a cluster the counts are shared through Redis: every
//! sync the node adds what it counted since the last one to the key's Redis counter for
//! the window and learns the cluster's total; a decision compares that total plus what this
//! node counted since with the limit. So a limit holds across the cluster, give or take what
//! the nodes admit between two syncs (see `SYNC_EVERY` in the parent module). While Redis is
//! away, each node goes on counting what it sees.

use std::{collections::HashMap, sync::Mutex};

/// How long a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Second,
    /// A UTC day.
    Day,
}

impl Window {
    fn length(self) -> u64 {
        match self {
            Window::Second => 1,
            Window::Day => 86_400,
        }
    }

    /// The window `now` (unix seconds) falls in.
    fn at(self, now: u64) -> u64 {
        now / self.length()
    }

    /// Seconds until the window `now` falls in ends (at least 1).
    pub fn reset_in(self, now: u64) -> u64 {
        (self.length() - now % self.length()).max(1)
    }
}

/// One limit a request is counted against.
#[derive(Debug, Clone)]
pub struct Check {
    /// The limit's name, as its 429 `code` says it (`<name>_exceeded`).
    pub name: &'static str,
    /// Who is counted: `tenant:<id>`, `user:<tenant>:<id>`, `ip:<address>`...
    pub key: String,
    pub limit: u64,
    pub window: Window,
}

/// What [`Counters::take`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Counted. The tightest of the limits: its size, what is left of it, and the seconds
    /// until its window ends (the `RateLimit-*` headers).
    Allowed {
        limit: u64,
        remaining: u64,
        reset: u64,
    },
    /// Not counted: `name` is spent until its window ends, `retry_after` seconds from now.
    Refused {
        name: &'static str,
        limit: u64,
        retry_after: u64,
    },
}

#[derive(Debug)]
struct Slot {
    window: Window,
    /// Which window of its kind this slot counts.
    at: u64,
    /// The cluster's total at the last sync, plus what this node counted since.
    counted: u64,
    /// Counted here since the last sync.
    unsynced: u64,
}

/// A key's count to add to its shared counter, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The key with its window (`<key>:<window number>`): unique per window.
    pub counter: String,
    pub add: u64,
    /// How long the shared counter must live (its window's length, and some).
    pub ttl_seconds: u64,
}

#[derive(Default)]
pub struct Counters {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Counters {
    /// Counts one request against every check, or none of them if any is spent.
    pub fn take(&self, checks: &[Check], now: u64) -> Verdict {
        let mut slots = self.slots.lock().expect("rate counters");
        for check in checks {
            let at = check.window.at(now);
            let counted = slots
                .get(&check.key)
                .filter(|slot| slot.at == at)
                .map_or(0, |slot| slot.counted);
            if counted >= check.limit {
                return Verdict::Refused {
                    name: check.name,
                    limit: check.limit,
                    retry_after: check.window.reset_in(now),
                };
            }
        }
        let mut tightest: Option<(u64, u64, u64)> = None;
        for check in checks {
            let at = check.window.at(now);
            let slot = slots.entry(check.key.clone()).or_insert(Slot {
                window: check.window,
                at,
                counted: 0,
                unsynced: 0,
            });
            if slot.at != at {
                *slot = Slot {
                    window: check.window,
                    at,
                    counted: 0,
                    unsynced: 0,
                };
            }
            slot.counted += 1;
            slot.unsynced += 1;
            let remaining = check.limit.saturating_sub(slot.counted);
            if tightest.is_none_or(|(_, left, _)| remaining < left) {
                tightest = Some((check.limit, remaining, check.window.reset_in(now)));
            }
        }
        let (limit, remaining, reset) = tightest.unwrap_or((0, 0, 0));
        Verdict::Allowed {
            limit,
            remaining,
            reset,
        }
    }

    /// Forgets the counters of windows that ended, and answers what to add to the shared
    /// counters of the current ones (every current key, so a sync also learns the totals
    /// of keys this node has not counted since the last one).
    pub fn pending(&self, now: u64) -> Vec<(String, Pending)> {
        let mut slots = self.slots.lock().expect("rate counters");
        slots.retain(|_, slot| slot.at == slot.window.at(now));
        slots
            .iter()
            .map(|(key, slot)| {
                (
                    key.clone(),
                    Pending {
                        counter: format!("{key}:{}", slot.at),
                        add: slot.unsynced,
                        ttl_seconds: slot.window.length() + 60,
                    },
                )
            })
            .collect()
    }

    /// Takes in the cluster's totals after `sent` was added to the shared counters.
    pub fn synced(&self, sent: Vec<(String, Pending)>, totals: Vec<u64>) {
        let mut slots = self.slots.lock().expect("rate counters");
        for ((key, pending), total) in sent.into_iter().zip(totals) {
            let Some(slot) = slots.get_mut(&key) else {
                continue;
            };
            if pending.counter != format!("{key}:{}", slot.at) {
                // A new window began meanwhile: the total is of the old one.
                continue;
            }
            slot.unsynced -= pending.add.min(slot.unsynced);
            slot.counted = total + slot.unsynced;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &'static str, key: &str, limit: u64, window: Window) -> Check {
        Check {
            name,
            key: key.into(),
            limit,
            window,
        }
    }

    #[test]
    fn a_spent_limit_refuses_until_its_window_ends_and_counts_nothing_else() {
        let counters = Counters::default();
        let checks = [
            check("ip", "ip:1", 10, Window::Second),
            check("user", "user:a", 2, Window::Second),
        ];
        let now = 1_000;
        assert_eq!(
            counters.take(&checks, now),
            Verdict::Allowed {
                limit: 2,
                remaining: 1,
                reset: 1
            }
        );
        assert!(matches!(
            counters.take(&checks, now),
            Verdict::Allowed { remaining: 0, .. }
        ));
        assert_eq!(
            counters.take(&checks, now),
            Verdict::Refused {
                name: "user",
                limit: 2,
                retry_after: 1
            }
        );
        // The refused request was not counted against the IP: two so far, one left of 3.
        let ip_only = [check("ip", "ip:1", 3, Window::Second)];
        assert!(matches!(
            counters.take(&ip_only, now),
            Verdict::Allowed { remaining: 0, .. }
        ));
        assert!(matches!(
            counters.take(&checks, now + 1),
            Verdict::Allowed { .. }
        ));
    }

    #[test]
    fn a_day_resets_at_utc_midnight() {
        let counters = Counters::default();
        let daily = [check("day", "day:t", 1, Window::Day)];
        let noon = 86_400 * 20_000 + 43_200;
        assert!(matches!(
            counters.take(&daily, noon),
            Verdict::Allowed { .. }
        ));
        assert_eq!(
            counters.take(&daily, noon),
            Verdict::Refused {
                name: "day",
                limit: 1,
                retry_after: 43_200
            }
        );
        assert!(matches!(
            counters.take(&daily, noon + 43_200),
            Verdict::Allowed { .. }
        ));
    }

    #[test]
    fn a_sync_adds_the_other_nodes_counts() {
        let counters = Counters::default();
        let checks = [check("tenant", "tenant:t", 5, Window::Second)];
        let now = 7;
        counters.take(&checks, now);
        let sent = counters.pending(now);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].1.counter.as_str(), sent[0].1.add),
            ("tenant:t:7", 1)
        );
        counters.take(&checks, now);
        // Other nodes counted 3: the cluster holds 4 with this node's first.
        counters.synced(sent, vec![4]);
        assert!(matches!(
            counters.take(&checks, now),
            Verdict::Refused { .. }
        ));
        // Windows that ended are forgotten.
        assert!(counters.pending(now + 1).is_empty());
    }
}
