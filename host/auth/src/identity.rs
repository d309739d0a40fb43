//! The identity layer of one config, swapped whole on a reload.

use std::sync::Arc;

use mcp_bridge_config::BridgeConfig;
use parking_lot::RwLock;

use crate::access::AccessPolicy;
use crate::limits::Limiter;
use crate::{AuthMetrics, Authenticator, SetupError};

/// Who may call and what they may do, for one config.
pub struct Identity {
    pub authenticator: Authenticator,
    pub access: Arc<AccessPolicy>,
    pub limiter: Arc<Limiter>,
    /// The settings this was built from, to keep what did not change across a reload.
    config: IdentitySettings,
}

#[derive(Clone, PartialEq)]
struct IdentitySettings {
    access: mcp_bridge_config::AccessConfig,
    limits: mcp_bridge_config::LimitsConfig,
}

impl Identity {
    /// The identity layer for `config`; `previous`'s JWKS and rate-limit state carry over
    /// where their settings did not change.
    pub fn new(
        config: &BridgeConfig,
        previous: Option<&Identity>,
        metrics: &Arc<AuthMetrics>,
    ) -> Result<Identity, SetupError> {
        let authenticator = Authenticator::new(
            &config.auth,
            &config.http,
            previous.map(|p| &p.authenticator),
            metrics,
        )?;
        let settings = IdentitySettings {
            access: config.access.clone(),
            limits: config.limits.clone(),
        };
        let access = previous
            .filter(|p| p.config.access == settings.access)
            .map(|p| p.access.clone())
            .unwrap_or_else(|| Arc::new(AccessPolicy::new(&config.access)));
        // Buckets and in-flight counts survive a reload that leaves the limits alone, so a
        // reload neither refills a limited caller's bucket nor forgets its calls in flight.
        let limiter = previous
            .filter(|p| p.config.limits == settings.limits)
            .map(|p| p.limiter.clone())
            .unwrap_or_else(|| Arc::new(Limiter::new(&config.limits)));
        Ok(Identity {
            authenticator,
            access,
            limiter,
            config: settings,
        })
    }
}

/// The running identity layer, replaced whole when the config reloads. Readers take an
/// `Arc` of the current one and keep it for the request, so a reload never changes the
/// rules in the middle of one.
pub struct IdentityHandle {
    current: RwLock<Arc<Identity>>,
    metrics: Arc<AuthMetrics>,
}

impl IdentityHandle {
    pub fn new(
        config: &BridgeConfig,
        metrics: Arc<AuthMetrics>,
    ) -> Result<IdentityHandle, SetupError> {
        let identity = Identity::new(config, None, &metrics)?;
        Ok(IdentityHandle {
            current: RwLock::new(Arc::new(identity)),
            metrics,
        })
    }

    pub fn current(&self) -> Arc<Identity> {
        self.current.read().clone()
    }

    pub fn metrics(&self) -> &Arc<AuthMetrics> {
        &self.metrics
    }

    /// Builds the identity layer of `config` and swaps it in; on an error the running one
    /// stays.
    pub fn reload(&self, config: &BridgeConfig) -> Result<(), SetupError> {
        let previous = self.current();
        let next = Identity::new(config, Some(&previous), &self.metrics)?;
        *self.current.write() = Arc::new(next);
        Ok(())
    }
}
