//! The shared tier: what several replicas of the bridge keep in one Redis (or Valkey) so
//! that any replica can serve any request and none serves what a write on another made
//! stale.
//!
//! - **Generations.** Every cache entry depends on a few names: its server, its tool, its
//!   policy's tags, its own key, and [`EVERYTHING`]. Redis keeps a counter per name; a
//!   write's invalidations raise the counters (one script, one round trip) before the
//!   write's response is returned, and broadcast the names to every replica. A fill takes a
//!   [`Stamp`] of the counters before it calls the backend; the entry is current exactly
//!   while Redis still holds that stamp.
//! - **Second level.** Entries are stored in Redis framed with their stamp, written only if
//!   the stamp is still current (checked inside Redis, so a fill that raced an invalidation
//!   on another replica is discarded there), and read back with the current stamp in the
//!   same round trip.
//! - **Broadcast.** One pub/sub channel carries invalidations, session revocations and log
//!   levels, and server notifications. A replica that lost the channel may have missed
//!   messages, so the first level it kept meanwhile is flushed when it is back.
//! - **Faults never fail calls.** Every operation is bounded by the command timeout; a
//!   failure marks the tier unreachable (calls go on without it) until the health check
//!   reaches Redis again. Invalidations that could not be recorded are kept (bounded) and
//!   replayed before the tier is trusted again.
//!
//! It knows nothing about HTTP, processes, policies or the first level's store: the router
//! names dependencies and serialises entries; the front's sessions and the router's cache
//! hear the broadcast through a [`TierListener`].

mod error;
mod keys;
mod messages;
mod metrics;
mod stamp;
mod tier;

pub use error::{SetupError, TierError};
pub use keys::EVERYTHING;
pub use messages::{Event, MAX_MESSAGE_BYTES};
pub use metrics::SharedMetrics;
pub use stamp::Stamp;
pub use tier::{Candidate, Fetched, SessionState, SharedTier, TierListener};
