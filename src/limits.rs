//! Per-caller limits shared by HTTP and WebSocket traffic: a token bucket per principal
//! (per client address for unauthenticated requests), and the count of open WebSockets
//! per principal. Both live in one process; a fleet of N servers allows N times as much.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::{Principal, Role};
use crate::config::Config;
use crate::error::ApiError;

/// The limits the HTTP and WebSocket layers enforce, built once per router.
pub struct Limits {
    /// Token buckets per caller.
    pub rate: RateLimits,
    /// Open WebSockets per principal.
    pub sockets: SocketSlots,
    /// `CURBPAY_WS_MAX_SUBSCRIPTIONS`: operations running at once on one WebSocket.
    pub ws_max_subscriptions: usize,
    /// `CURBPAY_WS_INIT_TIMEOUT`: time a WebSocket has to authenticate.
    pub ws_init_timeout: Duration,
}

impl Limits {
    /// The limits as configured.
    pub fn new(config: &Config) -> Limits {
        Limits {
            rate: RateLimits::new(config),
            sockets: SocketSlots::new(config.ws_max_connections_per_principal),
            ws_max_subscriptions: config.ws_max_subscriptions,
            ws_init_timeout: config.ws_init_timeout,
        }
    }
}

/// How often buckets that have refilled completely are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Who a request is charged to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// An authenticated principal: `admin:<subject>`, `app:<id>`, `operator:<id>`.
    Principal(String),
    /// An unauthenticated client, by address (IPv6 by its /64 prefix, which one host
    /// usually owns whole).
    Address(IpAddr),
    /// No address is known (requests not served from a socket, as in tests).
    Unknown,
}

impl Caller {
    /// The caller for an authenticated principal.
    pub fn principal(principal: &Principal) -> Caller {
        Caller::Principal(principal_key(principal))
    }

    /// The caller for an unauthenticated client at `ip`.
    pub fn address(ip: Option<IpAddr>) -> Caller {
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V6(v6)) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Caller::Address(IpAddr::V6(prefix.into()))
            }
            Some(v4) => Caller::Address(v4),
            None => Caller::Unknown,
        }
    }
}

/// The stable name of a principal for limits: its role and id (admins by subject).
pub fn principal_key(principal: &Principal) -> String {
    match principal.role {
        Role::Admin => format!("admin:{}", principal.subject),
        Role::App(id) => format!("app:{id}"),
        Role::Operator(id) => format!("operator:{id}"),
    }
}

/// Token buckets keyed by caller (`CURBPAY_RATE_LIMIT_PER_SECOND`, `_BURST`).
pub struct RateLimits {
    limiter: Option<Arc<DefaultKeyedRateLimiter<Caller>>>,
}

impl RateLimits {
    /// Limits from the configuration; a rate of 0 turns them off. Starts a task that
    /// forgets full buckets periodically (so the map does not grow with every address
    /// ever seen); it ends when these limits are dropped.
    pub fn new(config: &Config) -> RateLimits {
        let Some(per_second) = NonZeroU32::new(config.rate_limit_per_second) else {
            return RateLimits { limiter: None };
        };
        let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(per_second);
        let limiter = Arc::new(RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep(Arc::downgrade(&limiter)));
        }
        RateLimits { limiter: Some(limiter) }
    }

    /// Takes one token from the caller's bucket, or says how long until one is there.
    pub fn check(&self, caller: &Caller) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(caller).map_err(|not_until| {
            let retry_after = not_until.wait_time_from(DefaultClock::default().now());
            tracing::debug!(?caller, ?retry_after, "rate limited");
            ApiError::RateLimited { retry_after }
        })
    }

    /// Callers with a bucket in memory.
    pub fn tracked(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }

    /// Forgets the buckets that have refilled completely (they are the same as new).
    pub fn forget_full_buckets(&self) {
        if let Some(limiter) = &self.limiter {
            forget_full(limiter);
        }
    }
}

fn forget_full(limiter: &DefaultKeyedRateLimiter<Caller>) {
    limiter.retain_recent();
    limiter.shrink_to_fit();
}

async fn sweep(limiter: Weak<DefaultKeyedRateLimiter<Caller>>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(limiter) = limiter.upgrade() else { return };
        forget_full(&limiter);
    }
}

/// Open WebSockets per principal (`CURBPAY_WS_MAX_CONNECTIONS_PER_PRINCIPAL`).
pub struct SocketSlots {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open socket of a principal; dropping it frees the slot.
pub struct SocketSlot {
    key: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl SocketSlots {
    /// At most `max` WebSockets per principal.
    pub fn new(max: usize) -> SocketSlots {
        SocketSlots { max, open: Arc::default() }
    }

    /// A slot for the principal, or `None` when it already has the maximum open.
    pub fn try_acquire(&self, key: &str) -> Option<SocketSlot> {
        let mut open = self.open.lock().expect("socket slots lock");
        let count = open.entry(key.to_owned()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SocketSlot { key: key.to_owned(), open: self.open.clone() })
    }

    /// The most sockets one principal may have open.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Open sockets of a principal.
    pub fn open(&self, key: &str) -> usize {
        self.open.lock().expect("socket slots lock").get(key).copied().unwrap_or(0)
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("socket slots lock");
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_prefix() {
        let a = Caller::address(Some("2001:db8:1:2::1".parse().unwrap()));
        let b = Caller::address(Some("2001:db8:1:2:ffff::9".parse().unwrap()));
        let c = Caller::address(Some("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mapped = Caller::address(Some("::ffff:10.0.0.1".parse().unwrap()));
        assert_eq!(mapped, Caller::Address("10.0.0.1".parse().unwrap()));
        assert_eq!(Caller::address(None), Caller::Unknown);
    }

    #[test]
    fn socket_slots_are_counted_per_principal_and_freed_on_drop() {
        let slots = SocketSlots::new(2);
        let one = slots.try_acquire("app:a").unwrap();
        let _two = slots.try_acquire("app:a").unwrap();
        assert!(slots.try_acquire("app:a").is_none());
        assert!(slots.try_acquire("app:b").is_some());
        drop(one);
        assert_eq!(slots.open("app:a"), 1);
        assert!(slots.try_acquire("app:a").is_some());
    }

    #[test]
    fn buckets_refuse_past_the_burst_per_caller() {
        let mut config = Config::for_database("postgres://localhost/x", "s");
        config.rate_limit_per_second = 1;
        config.rate_limit_burst = 2;
        let limits = RateLimits::new(&config);
        let a = Caller::Principal("app:a".into());
        assert!(limits.check(&a).is_ok());
        assert!(limits.check(&a).is_ok());
        match limits.check(&a) {
            Err(ApiError::RateLimited { retry_after }) => assert!(retry_after <= Duration::from_secs(1)),
            other => panic!("expected a rate limit: {other:?}"),
        }
        assert!(limits.check(&Caller::Principal("app:b".into())).is_ok());
        config.rate_limit_per_second = 0;
        let off = RateLimits::new(&config);
        assert!((0..1000).all(|_| off.check(&a).is_ok()));
    }

    #[test]
    fn refilled_buckets_are_forgotten() {
        let mut config = Config::for_database("postgres://localhost/x", "s");
        config.rate_limit_per_second = 1000;
        config.rate_limit_burst = 1;
        let limits = RateLimits::new(&config);
        for n in 0..100u8 {
            limits.check(&Caller::Address(IpAddr::from([10, 0, 0, n]))).unwrap();
        }
        assert_eq!(limits.tracked(), 100);
        std::thread::sleep(Duration::from_millis(5));
        limits.forget_full_buckets();
        assert_eq!(limits.tracked(), 0);
    }
}
