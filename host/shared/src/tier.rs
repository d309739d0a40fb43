//! [`SharedTier`]: the connection to Redis, its health, and every operation the router and
//! the front use. Two background tasks keep it in step: the health check (which also
//! replays queued invalidations and notices a lost epoch) and the subscriber.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use redis::aio::ConnectionManager;
use redis::{Client, IntoConnectionInfo, Script};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

mod broadcast;
mod health;
mod sessions;

use super::error::{SetupError, TierError};
use super::keys::{EVERYTHING, Keys};
use super::messages::{Envelope, Event, MAX_MESSAGE_BYTES, unix_micros};
use super::metrics::SharedMetrics;
use super::stamp::Stamp;
use mcp_bridge_config::{Consistency, SharedCacheConfig};
use mcp_bridge_metrics::Registry;

/// Gives every dependency a new generation and broadcasts them, atomically: a replica that
/// reads a generation after this ran also gets the message, and the reverse. Generations
/// come from one sequence, so a counter that expired or was evicted never comes back with
/// a value an older stamp holds. KEYS[1]: the sequence; the rest: the generation counters.
/// ARGV: retention in ms, channel, message.
const INVALIDATE: &str = r"
for index = 2, #KEYS do
  local generation = redis.call('INCR', KEYS[1])
  redis.call('SET', KEYS[index], generation, 'PX', ARGV[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
";

/// Reads a fill's stamp: the epoch and each dependency's generation, giving a dependency
/// without one a fresh value from the sequence (so no stamp holds a value a missing counter
/// could be mistaken for) and keeping every counter a fill reads for the retention.
/// KEYS[1]: the epoch; KEYS[2]: the sequence; the rest: the counters. ARGV[1]: retention
/// in ms. Answers nil without an epoch.
const STAMP: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then return false end
local stamp = {epoch}
for index = 3, #KEYS do
  local generation = redis.call('GET', KEYS[index])
  if generation then
    redis.call('PEXPIRE', KEYS[index], ARGV[1])
  else
    generation = redis.call('INCR', KEYS[2])
    redis.call('SET', KEYS[index], generation, 'PX', ARGV[1])
  end
  stamp[#stamp + 1] = tostring(generation)
end
return stamp
";

/// Replaces the epoch with a new one, unless another replica already did: every stamp taken
/// before is then out of date. KEYS[1]: the epoch. ARGV: the epoch known, the new one.
const ROTATE_EPOCH: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return redis.call('GET', KEYS[1])
";

/// Stores an entry only if its stamp is still current: the epoch and every generation
/// read before the fill are unchanged. KEYS[1]: the entry; KEYS[2]: the epoch; the rest:
/// the generation counters. ARGV[1]: the framed value; ARGV[2]: its lifetime in ms;
/// ARGV[3]: the epoch expected; the rest: the generations expected.
const STORE_IF_CURRENT: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
for index = 3, #KEYS do
  local generation = redis.call('GET', KEYS[index]) or '0'
  if generation ~= ARGV[index + 1] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// How many propagation lags the tier remembers for its percentiles.
const LAG_WINDOW: usize = 4096;

/// How many bytes of dependencies one invalidation message carries at most: a write with
/// more is sent as several messages, each well under [`MAX_MESSAGE_BYTES`].
const MESSAGE_DEPENDENCY_BYTES: usize = 64 << 10;

/// The bytes of dependencies kept while Redis is away (dependencies embed cache keys,
/// whose arguments a client chooses); past it, everything is invalidated instead.
const MAX_PENDING_BYTES: usize = 16 << 20;

/// Session revocations kept while Redis is away; past it, the oldest are dropped (counted
/// and logged: those sessions then end on other replicas only when they idle out).
const MAX_PENDING_REVOCATIONS: usize = 10_000;

/// Hears what the tier learns from other replicas. Each method runs on the subscriber's
/// task: it must be quick and must not wait.
pub trait TierListener: Send + Sync {
    /// Another replica invalidated these dependencies.
    fn invalidated(&self, _dependencies: &[String]) {}
    /// Broadcasts may have been missed, or Redis lost its data: the first level must go.
    fn flush(&self) {}
    /// A session or notification event from another replica.
    fn event(&self, _event: &Event) {}
}

/// One candidate entry of a lookup: its cache key and the dependencies it is judged by.
pub struct Candidate<'a> {
    pub cache_key: &'a str,
    pub dependencies: &'a [String],
}

/// What a lookup found for one candidate.
#[derive(Debug)]
pub struct Fetched {
    /// The dependencies' generations now: the stamp a fill of this candidate takes.
    pub stamp: Stamp,
    /// The stored value, when one was stored under the current stamp.
    pub value: Option<Vec<u8>>,
}

/// What the tier knows of a session this replica does not hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionState {
    pub revoked: bool,
    pub log_level: Option<u8>,
}

/// Invalidations that could not be recorded yet.
#[derive(Default)]
struct Pending {
    dependencies: Vec<String>,
    seen: HashSet<String>,
    bytes: usize,
    /// More than `max_pending_invalidations` were queued: everything is invalidated instead.
    collapsed: bool,
    /// When the oldest queued invalidation was made: replayed messages carry it, so the
    /// lag other replicas measure is the staleness that really happened.
    since_us: Option<u64>,
    /// Sessions ended while Redis was away, with when their tokens expire.
    revocations: VecDeque<(String, u64)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        !self.collapsed && self.dependencies.is_empty() && self.revocations.is_empty()
    }
}

/// The Redis tier, shared by the router (cache levels, generations) and the front (sessions).
pub struct SharedTier {
    consistency: Consistency,
    command_timeout: Duration,
    health_check_interval: Duration,
    connect_timeout: Duration,
    max_value_bytes: u64,
    max_pending_invalidations: usize,
    generation_retention: Duration,
    max_entry_lifetime: Duration,
    required_for_readiness: bool,
    client: Client,
    connection: ConnectionManager,
    keys: Keys,
    /// A random name for this replica, so it skips its own broadcasts.
    replica: String,
    /// Commands reach Redis and the queued invalidations have been replayed.
    up: AtomicBool,
    /// When the tier may be trusted again after coming up: other replicas get one health
    /// check to replay what they queued while Redis was away.
    trusted_from: Mutex<Instant>,
    /// Redis's `run_id` when last checked: a new one means Redis restarted, possibly from
    /// an older snapshot, so the epoch is replaced.
    run_id: Mutex<Option<String>>,
    /// When any message (this replica's heartbeat included) last arrived on the channel.
    last_heard: Mutex<Instant>,
    /// The broadcast channel is subscribed.
    subscribed: AtomicBool,
    /// The epoch last read from Redis (0 before the first).
    epoch: AtomicU64,
    since: Mutex<Instant>,
    last_error: Mutex<Option<String>>,
    pending: Mutex<Pending>,
    writes: Arc<Semaphore>,
    listeners: RwLock<Vec<Arc<dyn TierListener>>>,
    lags: Mutex<VecDeque<u64>>,
    invalidate_script: Script,
    stamp_script: Script,
    rotate_script: Script,
    store_script: Script,
    metrics: SharedMetrics,
}

impl SharedTier {
    /// Builds the client and starts the health check and the subscriber on the current
    /// tokio runtime. Redis need not be reachable: the tier starts unreachable and the
    /// health check connects. `rediss://` needs the process's rustls crypto provider
    /// installed first (the binary installs ring's).
    pub fn start(
        config: &SharedCacheConfig,
        registry: &Registry,
    ) -> Result<Arc<SharedTier>, SetupError> {
        let client = client(config)?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(config.health_check_interval);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(SetupError::Url)?;
        let metrics = SharedMetrics::register(registry);
        metrics.shared_tier_up.set(0);
        let tier = Arc::new(SharedTier {
            consistency: config.consistency,
            command_timeout: config.command_timeout,
            health_check_interval: config.health_check_interval,
            connect_timeout: config.connect_timeout,
            max_value_bytes: config.max_value_bytes,
            max_pending_invalidations: config.max_pending_invalidations,
            generation_retention: config.generation_retention,
            max_entry_lifetime: config.max_entry_lifetime(),
            required_for_readiness: config.required_for_readiness,
            client,
            connection,
            keys: Keys::new(&config.key_prefix),
            replica: format!("{:016x}", rand::random::<u64>()),
            up: AtomicBool::new(false),
            trusted_from: Mutex::new(Instant::now()),
            run_id: Mutex::new(None),
            last_heard: Mutex::new(Instant::now()),
            subscribed: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            since: Mutex::new(Instant::now()),
            last_error: Mutex::new(None),
            pending: Mutex::default(),
            writes: Arc::new(Semaphore::new(config.max_pending_writes)),
            listeners: RwLock::default(),
            lags: Mutex::new(VecDeque::with_capacity(LAG_WINDOW)),
            invalidate_script: Script::new(INVALIDATE),
            stamp_script: Script::new(STAMP),
            rotate_script: Script::new(ROTATE_EPOCH),
            store_script: Script::new(STORE_IF_CURRENT),
            metrics,
        });
        tokio::spawn(tier.clone().health_check());
        tokio::spawn(tier.clone().subscriber());
        Ok(tier)
    }

    /// Adds a listener for what other replicas do.
    pub fn add_listener(&self, listener: Arc<dyn TierListener>) {
        self.listeners.write().push(listener);
    }

    pub fn consistency(&self) -> Consistency {
        self.consistency
    }

    /// Whether commands reach Redis (and queued invalidations were replayed).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Whether a replica may serve from its first level now: in strict mode while Redis
    /// answers (each hit is then checked); in bounded mode while Redis answers and the
    /// broadcast is heard (a Redis that stopped answering without closing the channel may
    /// be holding other replicas' invalidations back).
    pub fn first_level_trusted(&self) -> bool {
        match self.consistency {
            Consistency::Strict => self.is_trusted(),
            Consistency::Bounded => self.is_trusted() && self.subscribed.load(Ordering::Acquire),
        }
    }

    /// Whether entries may be judged by Redis now: it answers, and the grace after it came
    /// back (one health check of every other replica, to replay what they queued) is over.
    pub fn is_trusted(&self) -> bool {
        self.is_up() && Instant::now() >= *self.trusted_from.lock()
    }

    /// Whether `/readyz` should wait for the tier: only when configured so and it is down.
    pub fn holds_up_readiness(&self) -> bool {
        self.required_for_readiness && !self.is_up()
    }

    /// The largest value stored in the second level.
    pub fn max_value_bytes(&self) -> u64 {
        self.max_value_bytes
    }

    /// The longest an entry may live in either level (half the generation retention).
    pub fn max_entry_lifetime(&self) -> Duration {
        self.max_entry_lifetime
    }

    /// The stamp a fill of `dependencies` takes before it calls the backend: one round
    /// trip, which also gives each dependency without a generation its first one.
    pub async fn stamp(&self, dependencies: &[String]) -> Result<Stamp, TierError> {
        let started = Instant::now();
        let values: Option<Vec<u64>> = self
            .bounded(
                "stamp",
                self.stamp_invocation(dependencies)
                    .invoke_async(&mut self.connection.clone()),
            )
            .await?;
        self.observe("stamp", started);
        stamp_of_script(values)
    }

    fn stamp_invocation(&self, dependencies: &[String]) -> redis::ScriptInvocation<'_> {
        let mut invocation = self.stamp_script.key(self.keys.epoch());
        invocation.key(self.keys.sequence());
        for dependency in dependencies {
            invocation.key(self.keys.generation(dependency));
        }
        invocation.arg(self.generation_retention.as_millis() as u64);
        invocation
    }

    /// The generations `dependencies` have now, read without changing anything.
    async fn current(&self, dependencies: &[String]) -> Result<Stamp, TierError> {
        let mut command = redis::cmd("MGET");
        command.arg(self.keys.epoch());
        for dependency in dependencies {
            command.arg(self.keys.generation(dependency));
        }
        let started = Instant::now();
        let values: Vec<Option<u64>> = self
            .bounded(
                "validate",
                command.query_async(&mut self.connection.clone()),
            )
            .await?;
        self.observe("validate", started);
        stamp_of(&values)
    }

    /// Whether an entry stamped with `stamp` is still current (strict mode's check of a
    /// first-level hit).
    pub async fn is_current(
        &self,
        dependencies: &[String],
        stamp: &Stamp,
    ) -> Result<bool, TierError> {
        let current = self.current(dependencies).await;
        let result = match &current {
            Ok(current) if current == stamp => "valid",
            Ok(_) => "stale",
            Err(_) => "error",
        };
        self.metrics
            .shared_validations_total
            .with_label_values(&[result])
            .inc();
        current.map(|current| &current == stamp)
    }

    /// Looks candidates up in the second level, with each one's current stamp: one round
    /// trip for all of them. A stored value whose stamp is not current is not returned.
    pub async fn fetch(&self, candidates: &[Candidate<'_>]) -> Result<Vec<Fetched>, TierError> {
        let mut pipe = redis::pipe();
        let retention = self.generation_retention.as_millis() as u64;
        for candidate in candidates {
            // EVAL, not EVALSHA: a pipeline cannot load a missing script and retry.
            let mut stamp = redis::cmd("EVAL");
            stamp
                .arg(STAMP)
                .arg(candidate.dependencies.len() + 2)
                .arg(self.keys.epoch())
                .arg(self.keys.sequence());
            for dependency in candidate.dependencies {
                stamp.arg(self.keys.generation(dependency));
            }
            stamp.arg(retention);
            pipe.add_command(stamp);
            pipe.cmd("GET").arg(self.keys.entry(candidate.cache_key));
        }
        let started = Instant::now();
        let replies: Vec<redis::Value> = self
            .bounded("fetch", pipe.query_async(&mut self.connection.clone()))
            .await?;
        self.observe("fetch", started);
        let mut replies = replies.into_iter();
        let mut found = Vec::with_capacity(candidates.len());
        let mut stale = false;
        for _ in candidates {
            let (Some(generations), Some(stored)) = (replies.next(), replies.next()) else {
                return Err(TierError::Malformed("a reply is missing".to_owned()));
            };
            let generations: Option<Vec<u64>> = redis::from_redis_value(generations)
                .map_err(|error| TierError::Malformed(error.to_string()))?;
            let stored: Option<Vec<u8>> = redis::from_redis_value(stored)
                .map_err(|error| TierError::Malformed(error.to_string()))?;
            let stamp = stamp_of_script(generations)?;
            let value = match stored.as_deref().map(Stamp::unframe) {
                None => None,
                Some(Some((stored_stamp, value))) if stored_stamp == stamp => Some(value.to_vec()),
                Some(_) => {
                    stale = true;
                    None
                }
            };
            found.push(Fetched { stamp, value });
        }
        // One lookup, whatever the number of keys it tried (the shared and the private one).
        let result = if found.iter().any(|fetched| fetched.value.is_some()) {
            "hit"
        } else if stale {
            "stale"
        } else {
            "miss"
        };
        self.count_lookup(result);
        Ok(found)
    }

    /// Counts a second-level lookup that was not made (the tier is down).
    pub fn count_skipped_lookup(&self) {
        self.count_lookup("skipped");
    }

    fn count_lookup(&self, result: &str) {
        self.metrics
            .shared_l2_lookups_total
            .with_label_values(&[result])
            .inc();
    }

    /// Whether a result of `bytes` may go to the second level (counted when it may not), so
    /// a caller skips encoding what would be refused.
    pub fn fits(&self, bytes: u64) -> bool {
        let fits = bytes <= self.max_value_bytes;
        if !fits {
            self.metrics
                .shared_l2_writes_total
                .with_label_values(&["too_large"])
                .inc();
        }
        fits
    }

    /// Stores a filled entry in the second level, in the background, if its stamp is still
    /// current when Redis runs the write. Too large values, and writes past the bound of
    /// pending ones, are skipped and counted: the entry stays in the replica's first level.
    pub fn store(
        self: &Arc<Self>,
        cache_key: &str,
        dependencies: &[String],
        stamp: &Stamp,
        value: &[u8],
        lifetime: Duration,
    ) {
        let count = |result: &str| {
            self.metrics
                .shared_l2_writes_total
                .with_label_values(&[result])
                .inc();
        };
        if value.len() as u64 > self.max_value_bytes {
            count("too_large");
            return;
        }
        let lifetime = lifetime.min(self.max_entry_lifetime);
        if lifetime.is_zero() || stamp.generations.len() != dependencies.len() {
            return;
        }
        let Ok(permit) = self.writes.clone().try_acquire_owned() else {
            count("overloaded");
            return;
        };
        let mut keys = vec![self.keys.entry(cache_key), self.keys.epoch()];
        keys.extend(
            dependencies
                .iter()
                .map(|dependency| self.keys.generation(dependency)),
        );
        let framed = stamp.frame(value);
        let lifetime_ms = lifetime.as_millis().max(1) as u64;
        let stamp = stamp.clone();
        let tier = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut invocation = tier.store_script.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            invocation.arg(&framed).arg(lifetime_ms).arg(stamp.epoch);
            for generation in &stamp.generations {
                invocation.arg(*generation);
            }
            let mut connection = tier.connection.clone();
            let result: Result<i64, TierError> = tier
                .bounded("store", invocation.invoke_async(&mut connection))
                .await;
            let label = match result {
                Ok(1) => "stored",
                Ok(_) => "discarded",
                Err(_) => "error",
            };
            tier.metrics
                .shared_l2_writes_total
                .with_label_values(&[label])
                .inc();
        });
    }

    /// Records a write's invalidations in Redis and broadcasts them, before the write's
    /// response is returned. Never fails: what Redis does not take is queued and replayed
    /// before the tier is trusted again. It always tries Redis, whatever the tier's state:
    /// an invalidation that could have been recorded must never wait in a queue.
    pub async fn invalidate(&self, dependencies: Vec<String>) {
        let written_at = unix_micros();
        for batch in batches(dependencies) {
            let started = Instant::now();
            match self.run_invalidation(&batch, written_at).await {
                Ok(()) => {
                    self.observe("invalidate", started);
                    self.count_invalidation("published", 1);
                }
                Err(error) => {
                    tracing::warn!(%error, "could not record invalidations in the shared tier; they are queued and replayed when it answers");
                    self.queue(batch, written_at);
                }
            }
        }
    }

    async fn run_invalidation(
        &self,
        dependencies: &[String],
        written_at_us: u64,
    ) -> Result<(), TierError> {
        let message = self.envelope_at(
            Event::Invalidated {
                dependencies: dependencies.to_vec(),
            },
            written_at_us,
        );
        let mut invocation = self.invalidate_script.key(self.keys.sequence());
        for dependency in dependencies {
            invocation.key(self.keys.generation(dependency));
        }
        invocation
            .arg(self.generation_retention.as_millis() as u64)
            .arg(self.keys.channel())
            .arg(message);
        let _: i64 = self
            .bounded(
                "invalidate",
                invocation.invoke_async(&mut self.connection.clone()),
            )
            .await?;
        Ok(())
    }

    fn queue(&self, dependencies: Vec<String>, written_at_us: u64) {
        let mut pending = self.pending.lock();
        pending.since_us = Some(
            pending
                .since_us
                .map_or(written_at_us, |since| since.min(written_at_us)),
        );
        if !pending.collapsed {
            for dependency in dependencies {
                if pending.seen.insert(dependency.clone()) {
                    pending.bytes += dependency.len();
                    pending.dependencies.push(dependency);
                }
            }
            if pending.dependencies.len() > self.max_pending_invalidations
                || pending.bytes > MAX_PENDING_BYTES
            {
                tracing::warn!(
                    max = self.max_pending_invalidations,
                    "more invalidations are queued for the shared tier than it keeps; everything will be invalidated when it answers"
                );
                pending.dependencies.clear();
                pending.seen.clear();
                pending.bytes = 0;
                pending.collapsed = true;
                self.count_invalidation("collapsed", 1);
            }
        }
        self.count_invalidation("queued", 1);
        self.metrics
            .shared_pending_invalidations
            .set(pending.dependencies.len() as i64 + i64::from(pending.collapsed));
    }

    /// Keeps a session's end for when Redis answers again.
    pub(super) fn queue_revocation(&self, session: &str, expires_at_unix: u64) {
        let mut pending = self.pending.lock();
        if pending.revocations.len() >= MAX_PENDING_REVOCATIONS {
            pending.revocations.pop_front();
            tracing::warn!(
                max = MAX_PENDING_REVOCATIONS,
                "too many session ends are queued for the shared tier; the oldest is dropped (that session ends on other replicas when it idles out)"
            );
        }
        pending
            .revocations
            .push_back((session.to_owned(), expires_at_unix));
    }

    fn count_invalidation(&self, result: &str, count: u64) {
        self.metrics
            .shared_invalidations_total
            .with_label_values(&[result])
            .inc_by(count);
    }

    fn has_pending(&self) -> bool {
        !self.pending.lock().is_empty()
    }

    /// Replays what was queued while Redis was unreachable; on failure it stays queued.
    /// Replays what was queued while Redis was unreachable, oldest first; what fails stays
    /// queued.
    async fn replay(&self) -> Result<(), TierError> {
        let taken = std::mem::take(&mut *self.pending.lock());
        let since = taken.since_us.unwrap_or_else(unix_micros);
        let mut batches_left: Vec<Vec<String>> = if taken.collapsed {
            vec![vec![EVERYTHING.to_owned()]]
        } else {
            batches(taken.dependencies)
        };
        let mut revocations = taken.revocations;
        let requeue = |batches: Vec<Vec<String>>, revocations: VecDeque<(String, u64)>| {
            for batch in batches {
                self.queue(batch, since);
            }
            for (session, expires_at) in revocations {
                self.queue_revocation(&session, expires_at);
            }
        };
        while let Some(batch) = batches_left.first() {
            if let Err(error) = self.run_invalidation(batch, since).await {
                requeue(batches_left, revocations);
                return Err(error);
            }
            self.count_invalidation("replayed", batch.len() as u64);
            batches_left.remove(0);
        }
        while let Some((session, expires_at)) = revocations.front() {
            if let Err(error) = self.record_revocation(session, *expires_at).await {
                requeue(Vec::new(), revocations);
                return Err(error);
            }
            revocations.pop_front();
        }
        self.metrics.shared_pending_invalidations.set(0);
        Ok(())
    }

    fn envelope(&self, event: Event) -> String {
        self.envelope_at(event, unix_micros())
    }

    /// A message about something that happened at `at_us` (a queued invalidation is
    /// replayed with its write's time, so the lag measured is the staleness that was).
    fn envelope_at(&self, event: Event, at_us: u64) -> String {
        let envelope = Envelope {
            origin: self.replica.clone(),
            sent_at_us: at_us,
            event,
        };
        serde_json::to_string(&envelope).unwrap_or_default()
    }

    /// Runs one Redis operation under the command timeout; a failure marks the tier down.
    async fn bounded<T>(
        &self,
        operation: &str,
        future: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, TierError> {
        let outcome = match tokio::time::timeout(self.command_timeout, future).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => TierError::Redis(error),
            Err(_) => TierError::Timeout(self.command_timeout),
        };
        self.failed(operation, &outcome);
        Err(outcome)
    }

    fn failed(&self, operation: &str, error: &TierError) {
        self.metrics
            .shared_errors_total
            .with_label_values(&[operation, error.kind()])
            .inc();
        *self.last_error.lock() = Some(error.to_string());
        if self.up.swap(false, Ordering::AcqRel) {
            *self.since.lock() = Instant::now();
            self.metrics.shared_tier_up.set(0);
            self.metrics
                .shared_tier_transitions_total
                .with_label_values(&["down"])
                .inc();
            tracing::warn!(operation, %error, "the shared tier is unreachable: calls go to the backends without it until it answers again");
        }
    }

    fn observe(&self, operation: &str, started: Instant) {
        self.metrics
            .shared_round_trip_seconds
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
    }

    fn flush(&self, reason: &str) {
        self.metrics
            .shared_l1_flushes_total
            .with_label_values(&[reason])
            .inc();
        for listener in self.listeners.read().iter() {
            listener.flush();
        }
    }

    /// The tier's state for `/health` and `/admin/cache/stats`.
    pub fn status(&self) -> Value {
        let (p50, p99, samples) = self.lag_percentiles();
        let pending = self.pending.lock();
        json!({
            "state": if self.is_up() { "up" } else { "down" },
            "consistency": self.consistency.as_str(),
            "subscribed": self.subscribed.load(Ordering::Acquire),
            "first_level_trusted": self.first_level_trusted(),
            "for_seconds": self.since.lock().elapsed().as_secs(),
            "pending_invalidations": pending.dependencies.len(),
            "pending_collapsed": pending.collapsed,
            "last_error": *self.last_error.lock(),
            "invalidation_lag_us": { "p50": p50, "p99": p99, "samples": samples },
        })
    }
}

/// Splits dependencies into batches of at most [`MESSAGE_DEPENDENCY_BYTES`], so each
/// broadcast stays well under what a replica reads.
fn batches(dependencies: Vec<String>) -> Vec<Vec<String>> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for dependency in dependencies {
        if !batch.is_empty() && bytes + dependency.len() > MESSAGE_DEPENDENCY_BYTES {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += dependency.len();
        batch.push(dependency);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// A stamp from the stamp script's answer (nil without an epoch; no generation missing).
fn stamp_of_script(values: Option<Vec<u64>>) -> Result<Stamp, TierError> {
    let values: Vec<Option<u64>> = values
        .ok_or(TierError::EpochLost)?
        .into_iter()
        .map(Some)
        .collect();
    stamp_of(&values)
}

/// A stamp from an MGET of the epoch and the generations; a missing epoch means Redis
/// lost its data, and nothing can be judged until the health check sets a new one.
fn stamp_of(values: &[Option<u64>]) -> Result<Stamp, TierError> {
    let Some((epoch, generations)) = values.split_first() else {
        return Err(TierError::Malformed("an empty reply".to_owned()));
    };
    let epoch = epoch.ok_or(TierError::EpochLost)?;
    Ok(Stamp {
        epoch,
        generations: generations.iter().map(|value| value.unwrap_or(0)).collect(),
    })
}

/// The Redis client for the configured URL, password and extra roots.
fn client(config: &SharedCacheConfig) -> Result<Client, SetupError> {
    let mut info = config
        .url
        .expose()
        .into_connection_info()
        .map_err(SetupError::Url)?;
    if let Some(password) = &config.password {
        let settings = info
            .redis_settings()
            .clone()
            .set_password(password.expose());
        info = info.set_redis_settings(settings);
    }
    let Some(ca_file) = &config.ca_file else {
        return Client::open(info).map_err(SetupError::Url);
    };
    let root_cert = std::fs::read(ca_file).map_err(|source| SetupError::CaFile {
        path: ca_file.display().to_string(),
        source,
    })?;
    Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        },
    )
    .map_err(SetupError::Url)
}
