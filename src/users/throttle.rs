//! Login throttling, keyed by user name and by client address, decided before the password
//! is checked. Every attempt is admitted or refused atomically (one lock) *before* argon2 runs,
//! and an admitted attempt is counted as a failure until it proves otherwise — so a thousand
//! parallel guesses cannot all pass a check that is only updated after each of them.
//!
//! The policy (numbers from `[users]`):
//!
//! - **Per name, a growing delay instead of a lockout.** Each attempt on a name gets the next
//!   free slot; after the n-th unresolved or failed attempt the next slot is
//!   `login_delay × 2^(n-1)` later, at most `login_delay_max`. An admitted guess waits for its
//!   slot (it "waits its turn"); one whose slot is more than `login_delay_max` away is refused
//!   at once (429, `Retry-After`) without a password check. A name under attack therefore gets
//!   one evaluated guess per `login_delay_max`, and its owner — from anywhere — gets in after at
//!   most about that long: slowed down, never locked out. A success resets the name.
//! - **Per address, a budget.** One client address (an IPv6 /64) may have at most
//!   `login_address_failures` failed (or unresolved) attempts per `login_address_window`, over
//!   all names; then every login from it is refused until the window ends. A success does not
//!   refill it (a known account cannot be used to launder guesses at another).
//! - **Bounded tables that cannot be flushed.** At most [`MAX_TRACKED`] names and as many
//!   addresses are tracked. An entry is forgotten only once it is idle and its penalty has run
//!   out; when a table is full of live entries, new keys share one overflow entry (which slows
//!   all of them down together) — an attacker cannot evict a name's state by flooding.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::config::UsersConfig;

/// Names, and addresses, tracked at most.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone)]
struct NameState {
    /// Failed or unresolved attempts since the last success.
    failures: u32,
    /// Admitted attempts whose outcome is not known yet.
    pending: u32,
    /// When the next attempt may be evaluated.
    next_slot: Instant,
    /// The last admission or outcome.
    last: Instant,
}

#[derive(Debug, Clone)]
struct AddressState {
    failures: u32,
    window_start: Instant,
}

/// Which table an admitted attempt counts in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key<T> {
    Own(T),
    Overflow,
}

#[derive(Debug)]
struct Tables {
    names: HashMap<Key<String>, NameState>,
    addresses: HashMap<Key<IpAddr>, AddressState>,
    /// When a full table was last swept for forgettable entries (at most once a second, so a
    /// flood of new keys does not turn every attempt into a scan).
    last_sweep: Option<Instant>,
}

impl Tables {
    /// Whether a full table may be swept now.
    fn may_sweep(&mut self, now: Instant) -> bool {
        let due = self
            .last_sweep
            .is_none_or(|last| now.saturating_duration_since(last) >= Duration::from_secs(1));
        if due {
            self.last_sweep = Some(now);
        }
        due
    }
}

/// Why an attempt was refused before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The name's next slot is too far away.
    Name,
    /// The address has used its budget of failures.
    Address,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Name => "user name slowed down",
            Refusal::Address => "client address over its failure budget",
        }
    }
}

/// What the throttle says about an attempt.
#[derive(Debug)]
pub enum Admission {
    /// Check the password at `ticket.at()` (not before), then report the outcome on the ticket.
    Go(Ticket),
    Refused {
        why: Refusal,
        retry_after: Duration,
    },
}

/// An admitted attempt. Dropped without an outcome (the client went away), it counts as a
/// failure.
#[derive(Debug)]
pub struct Ticket {
    throttle: Arc<LoginThrottle>,
    name: Key<String>,
    address: Key<IpAddr>,
    at: Instant,
    resolved: bool,
}

impl Ticket {
    /// When the password may be checked.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// The password was right: the name starts afresh; the address gets this attempt back.
    pub fn succeeded(mut self) {
        self.resolved = true;
        self.throttle.resolve(&self.name, &self.address, true);
    }

    /// The password was wrong (or the user disabled): the failure stays counted.
    pub fn failed(mut self) {
        self.resolved = true;
        self.throttle.resolve(&self.name, &self.address, false);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.resolved {
            self.throttle.resolve(&self.name, &self.address, false);
        }
    }
}

/// The login throttle; see the module documentation for the policy.
#[derive(Debug)]
pub struct LoginThrottle {
    delay: Duration,
    delay_max: Duration,
    address_failures: u32,
    address_window: Duration,
    tables: Mutex<Tables>,
}

impl LoginThrottle {
    pub fn new(
        delay: Duration,
        delay_max: Duration,
        address_failures: u32,
        address_window: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            delay,
            delay_max,
            address_failures,
            address_window,
            tables: Mutex::new(Tables {
                names: HashMap::new(),
                addresses: HashMap::new(),
                last_sweep: None,
            }),
        })
    }

    /// The throttle `[users]` asks for.
    pub fn from_config(config: &UsersConfig) -> Arc<Self> {
        Self::new(
            config.login_delay,
            config.login_delay_max,
            config.login_address_failures,
            config.login_address_window,
        )
    }

    /// The delay after the n-th failure: `delay × 2^(n-1)`, at most `delay_max`.
    fn delay_after(&self, failures: u32) -> Duration {
        let doubling = failures.saturating_sub(1).min(31);
        self.delay
            .saturating_mul(1u32 << doubling)
            .min(self.delay_max)
    }

    /// Decides an attempt on `name` from `address` at `now`, before any password check.
    pub fn admit(self: &Arc<Self>, name: &str, address: IpAddr, now: Instant) -> Admission {
        let address = bucket(address);
        let mut tables = self.lock();

        // The address's budget first: a refused address costs the name nothing.
        let addr_key = self.address_key(&mut tables, address, now);
        let window = self.address_window;
        let addr = tables
            .addresses
            .entry(addr_key.clone())
            .or_insert(AddressState {
                failures: 0,
                window_start: now,
            });
        if now.duration_since(addr.window_start) >= window {
            addr.failures = 0;
            addr.window_start = now;
        }
        if addr.failures >= self.address_failures {
            let retry_after = (addr.window_start + window).saturating_duration_since(now);
            return Admission::Refused {
                why: Refusal::Address,
                retry_after,
            };
        }

        let name_key = self.name_key(&mut tables, name, now);
        let state = tables.names.entry(name_key.clone()).or_insert(NameState {
            failures: 0,
            pending: 0,
            next_slot: now,
            last: now,
        });
        let slot = state.next_slot.max(now);
        let wait = slot - now;
        if wait > self.delay_max {
            return Admission::Refused {
                why: Refusal::Name,
                retry_after: wait - self.delay_max,
            };
        }
        state.failures = state.failures.saturating_add(1);
        state.pending += 1;
        state.next_slot = slot + self.delay_after(state.failures);
        state.last = now;
        if let Some(addr) = tables.addresses.get_mut(&addr_key) {
            addr.failures += 1;
        }
        drop(tables);
        Admission::Go(Ticket {
            throttle: self.clone(),
            name: name_key,
            address: addr_key,
            at: slot,
            resolved: false,
        })
    }

    fn resolve(&self, name: &Key<String>, address: &Key<IpAddr>, success: bool) {
        let mut tables = self.lock();
        let now = Instant::now();
        if let Some(state) = tables.names.get_mut(name) {
            state.pending = state.pending.saturating_sub(1);
            state.last = now;
            if success {
                // Attempts still waiting keep their slots and their count.
                state.failures = state.pending;
                if state.pending == 0 {
                    state.next_slot = now;
                }
            }
        }
        if success {
            if let Some(addr) = tables.addresses.get_mut(address) {
                addr.failures = addr.failures.saturating_sub(1);
            }
        }
    }

    /// The table key of `name`: its own entry, or the shared overflow entry when the table is
    /// full of entries that may not be forgotten yet.
    fn name_key(&self, tables: &mut Tables, name: &str, now: Instant) -> Key<String> {
        let key = Key::Own(name.to_string());
        if tables.names.contains_key(&key) || tables.names.len() < MAX_TRACKED {
            return key;
        }
        if !tables.may_sweep(now) {
            return Key::Overflow;
        }
        let forget_after = self.address_window.max(self.delay_max);
        tables.names.retain(|k, s| {
            *k == Key::Overflow
                || s.pending > 0
                || s.next_slot > now
                || now.duration_since(s.last) < forget_after
        });
        if tables.names.len() < MAX_TRACKED {
            key
        } else {
            Key::Overflow
        }
    }

    fn address_key(&self, tables: &mut Tables, address: IpAddr, now: Instant) -> Key<IpAddr> {
        let key = Key::Own(address);
        if tables.addresses.contains_key(&key) || tables.addresses.len() < MAX_TRACKED {
            return key;
        }
        if !tables.may_sweep(now) {
            return Key::Overflow;
        }
        let window = self.address_window;
        tables.addresses.retain(|k, s| {
            *k == Key::Overflow || (s.failures > 0 && now.duration_since(s.window_start) < window)
        });
        if tables.addresses.len() < MAX_TRACKED {
            key
        } else {
            Key::Overflow
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // Every update leaves the tables consistent: keep using them after a panic elsewhere.
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The address an attempt is counted under: IPv4 as it is (also when mapped into IPv6), IPv6
/// by its /64 (one host usually has a whole /64 to pick addresses from).
fn bucket(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn throttle() -> Arc<LoginThrottle> {
        LoginThrottle::new(ms(100), ms(1000), 10, Duration::from_secs(900))
    }

    fn go(a: Admission) -> Ticket {
        match a {
            Admission::Go(t) => t,
            refused => panic!("refused: {refused:?}"),
        }
    }

    #[test]
    fn a_burst_on_one_name_gets_only_the_slots_within_the_longest_delay() {
        let t = throttle();
        let now = Instant::now();
        let mut admitted = Vec::new();
        let mut refused = 0;
        for _ in 0..200 {
            match t.admit("li", A, now) {
                Admission::Go(ticket) => admitted.push(ticket),
                Admission::Refused { why, .. } => {
                    assert_eq!(why, Refusal::Name);
                    refused += 1;
                }
            }
        }
        // Slots 0, 100, 300, 700 ms; the next (1500 ms) is further than 1 s away.
        let slots: Vec<Duration> = admitted.iter().map(|t| t.at() - now).collect();
        assert_eq!(slots, vec![ms(0), ms(100), ms(300), ms(700)]);
        assert_eq!(refused, 196);
        admitted.into_iter().for_each(Ticket::failed);
    }

    #[test]
    fn the_owner_gets_in_after_the_longest_delay_from_another_address_and_resets_the_name() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..4 {
            go(t.admit("li", A, now)).failed();
        }
        // Right after the burst the next slot is 1.5 s away: refused, told when to come back.
        let Admission::Refused { why, retry_after } = t.admit("li", B, now) else {
            panic!("admitted")
        };
        assert_eq!((why, retry_after), (Refusal::Name, ms(500)));
        // Half a second later it is admitted, for that slot.
        let later = now + ms(500);
        let owner = go(t.admit("li", B, later));
        assert_eq!(owner.at() - now, ms(1500));
        owner.succeeded();
        // The name starts afresh after a success.
        let fresh = go(t.admit("li", B, later + ms(1)));
        assert_eq!(fresh.at(), later + ms(1));
        fresh.succeeded();
        // Other names were never affected.
        assert_eq!(go(t.admit("wang", A, now)).at(), now);
    }

    #[test]
    fn one_address_gets_a_budget_of_failures_over_all_names_that_success_does_not_refill() {
        let t = LoginThrottle::new(ms(1), ms(1000), 3, Duration::from_secs(60));
        let now = Instant::now();
        for name in ["a", "b", "c"] {
            go(t.admit(name, A, now)).failed();
        }
        let Admission::Refused { why, retry_after } = t.admit("d", A, now) else {
            panic!("admitted")
        };
        assert_eq!(
            (why, retry_after),
            (Refusal::Address, Duration::from_secs(60))
        );
        // Another address is unaffected; a success there gives nothing back to A.
        go(t.admit("d", B, now)).succeeded();
        assert!(matches!(t.admit("e", A, now), Admission::Refused { .. }));
        // The window ends.
        let next = now + Duration::from_secs(60);
        go(t.admit("e", A, next)).failed();
    }

    #[test]
    fn a_client_that_goes_away_while_waiting_counts_as_a_failure() {
        let t = throttle();
        let now = Instant::now();
        drop(go(t.admit("li", A, now)));
        let second = go(t.admit("li", A, now));
        assert_eq!(second.at() - now, ms(100));
    }

    #[test]
    fn a_full_table_puts_new_names_in_one_shared_entry_and_never_forgets_a_penalty() {
        let t = LoginThrottle::new(ms(100), ms(1000), u32::MAX, Duration::from_secs(900));
        let now = Instant::now();
        // The target name is under a penalty.
        for _ in 0..3 {
            go(t.admit("target", A, now)).failed();
        }
        let penalty = go(t.admit("target", A, now));
        let target_slot = penalty.at();
        penalty.failed();
        // More junk names than the table holds: the last ones share the overflow entry.
        for i in 0..MAX_TRACKED + 5 {
            drop(t.admit(&format!("junk-{i}"), A, now));
        }
        // The target's state survived the flood.
        let Admission::Refused { why, .. } = t.admit("target", A, now) else {
            panic!("the flood reset the target's penalty");
        };
        assert_eq!(why, Refusal::Name);
        assert!(target_slot > now);
        assert!(t.lock().names.len() <= MAX_TRACKED + 1);
        // New names share the overflow entry, which the flood has slowed down: refused now …
        let Admission::Refused { why, .. } = t.admit("new-1", A, now) else {
            panic!("a new name got its own entry in a full table");
        };
        assert_eq!(why, Refusal::Name);
        // … and admitted once its delay has passed.
        go(t.admit("new-1", A, now + Duration::from_secs(2))).failed();
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(bucket(one), bucket(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(bucket(mapped), A);
    }
}
