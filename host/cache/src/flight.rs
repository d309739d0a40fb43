//! Single-flight: concurrent misses for one key make one backend call; the others wait
//! for its response, up to a bound past which callers go to the backend themselves.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::watch;

/// Who may receive a published response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Everyone,
    /// The result is private to this principal (`None`: to an anonymous caller, so to
    /// nobody else).
    Principal(Option<Arc<str>>),
}

/// The shared tier's stamp of a fill: the dependencies it covers, and the epoch followed
/// by their generations.
pub type FillStamp = (Arc<[String]>, Arc<[u64]>);

/// The response a fill publishes to its waiters (with the leader's id; each waiter
/// restores its own).
#[derive(Debug)]
pub struct FlightResult {
    pub response: Value,
    pub audience: Audience,
    /// Whether nothing the fill depends on was invalidated on this replica between the
    /// start of the fill and the publication: a waiter may use a result that is not current
    /// only if it joined before the invalidation, which it cannot tell, so it fetches its own.
    pub current: bool,
    /// The shared tier's dependencies and stamp of the fill, for waiters that must check it
    /// against Redis (strict mode); `None` without a shared tier.
    pub stamp: Option<FillStamp>,
}

impl FlightResult {
    /// Whether a waiter acting for `principal` may use this result.
    pub fn visible_to(&self, principal: Option<&Arc<str>>) -> bool {
        match &self.audience {
            Audience::Everyone => true,
            Audience::Principal(Some(owner)) => {
                principal.is_some_and(|principal| principal == owner)
            }
            Audience::Principal(None) => false,
        }
    }
}

pub type Published = Option<Arc<FlightResult>>;

struct Flight {
    result: watch::Sender<Published>,
    waiters: AtomicUsize,
}

#[derive(Default)]
pub(crate) struct Flights {
    inflight: Mutex<HashMap<Arc<str>, Arc<Flight>>>,
}

/// A caller's part in a fill.
pub enum Role {
    /// Make the backend call, then [`Leader::publish`] the response.
    Leader(Leader),
    /// Wait for the leader's response; `Err` from the receiver means the leader gave up
    /// without one (then call the backend yourself).
    Follower(watch::Receiver<Published>),
    /// Too many are waiting already: call the backend yourself.
    Overflow,
}

/// The one caller filling a key. Dropping it ends the flight (waiters that got nothing
/// go to the backend themselves).
pub struct Leader {
    flights: Arc<Flights>,
    key: Arc<str>,
    flight: Arc<Flight>,
}

impl Leader {
    pub fn publish(self, result: FlightResult) {
        self.flight.result.send_replace(Some(Arc::new(result)));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut inflight = self.flights.inflight.lock();
        if inflight
            .get(&self.key)
            .is_some_and(|flight| Arc::ptr_eq(flight, &self.flight))
        {
            inflight.remove(&self.key);
        }
    }
}

impl Flights {
    pub(crate) fn join(self: &Arc<Self>, key: &Arc<str>, max_waiters: usize) -> Role {
        let mut inflight = self.inflight.lock();
        if let Some(flight) = inflight.get(key) {
            if flight.waiters.fetch_add(1, Ordering::AcqRel) >= max_waiters {
                flight.waiters.fetch_sub(1, Ordering::AcqRel);
                return Role::Overflow;
            }
            return Role::Follower(flight.result.subscribe());
        }
        let flight = Arc::new(Flight {
            result: watch::channel(None).0,
            waiters: AtomicUsize::new(0),
        });
        inflight.insert(key.clone(), flight.clone());
        Role::Leader(Leader {
            flights: self.clone(),
            key: key.clone(),
            flight,
        })
    }
}
