//! Small helpers shared across layers.

use std::time::Duration;

/// A map looked up for every reading (by sensor id): foldhash instead of std's SipHash (2.4 % of the gateway
/// workload's profile samples). The keys come from the config file, not from a peer, so there is no hash flooding
/// to defend against; foldhash is seeded per process anyway.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A mutex's guard, poisoned or not: what watchpost keeps behind a mutex stays whole if a holder panics (each
/// critical section is a take, a put or an assignment), so one panic must not take every later user down with it.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A map by id that keeps insertion order, for lookups that mostly come in that order: one poll's readings arrive
/// in the order of the config file, so the slot after the last one found is tried first and the hash is computed
/// only when that guess fails. Entries sit in one vector, so walking a poll's sensors walks memory forward (the
/// judging of a reading was cache misses and hashing, not arithmetic).
#[derive(Debug, Clone)]
pub struct SeqMap<K, V> {
    items: Vec<(K, V)>,
    index: FastMap<K, usize>,
    /// The slot after the last one found.
    next: std::cell::Cell<usize>,
}

impl<K, V> Default for SeqMap<K, V> {
    fn default() -> Self {
        SeqMap {
            items: Vec::new(),
            index: FastMap::default(),
            next: std::cell::Cell::new(0),
        }
    }
}

impl<K: std::borrow::Borrow<str> + std::hash::Hash + Eq + Clone, V> SeqMap<K, V> {
    /// An empty map with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        SeqMap {
            items: Vec::with_capacity(n),
            index: FastMap::with_capacity_and_hasher(n, Default::default()),
            next: std::cell::Cell::new(0),
        }
    }

    fn find(&self, id: &str) -> Option<usize> {
        let next = self.next.get();
        // The next slot (the poll goes on), then the same one again (a second look at the same sensor); an id that is
        // not the interned one (text from elsewhere) is found through the index.
        for i in [next, next.wrapping_sub(1)] {
            if self.items.get(i).is_some_and(|(k, _)| same(k.borrow(), id)) {
                self.next.set(i + 1);
                return Some(i);
            }
        }
        let i = *self.index.get(id)?;
        self.next.set(i + 1);
        Some(i)
    }

    /// The entry of `id`.
    pub fn get(&self, id: &str) -> Option<&V> {
        let i = self.find(id)?;
        self.items.get(i).map(|(_, v)| v)
    }

    /// The entry of `id`, to change.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut V> {
        let i = self.find(id)?;
        self.items.get_mut(i).map(|(_, v)| v)
    }

    /// Whether `id` has an entry (the next slot tried first, as for [`SeqMap::get`]).
    pub fn contains_key(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    /// Where `id` is in insertion order.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.find(id)
    }

    /// Set the entry of `id` (appended if new), returning the one it replaces.
    pub fn insert(&mut self, id: K, v: V) -> Option<V> {
        match self.index.get(id.borrow()) {
            Some(&i) => self
                .items
                .get_mut(i)
                .map(|e| std::mem::replace(&mut e.1, v)),
            None => {
                self.index.insert(id.clone(), self.items.len());
                self.items.push((id, v));
                None
            }
        }
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.items.iter().map(|(k, v)| (k, v))
    }

    /// The entries in insertion order, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.items.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// The ids in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.items.iter().map(|(k, _)| k)
    }

    /// The values in insertion order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.items.iter().map(|(_, v)| v)
    }

    /// The values in insertion order, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.items.iter_mut().map(|(_, v)| v)
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Take every entry out, in insertion order.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        self.index.clear();
        self.next.set(0);
        self.items.drain(..)
    }
}

/// Whether `k` is `id` by identity: the same allocation (the model's interned sensor ids). A guess is taken on
/// identity alone: comparing bytes when it fails was a `memcmp` per reading (a reading's sensor is looked up twice
/// in a row, so the guess after it is tried and missed first); the hash index answers for any other `&str`.
fn same(k: &str, id: &str) -> bool {
    std::ptr::eq(k.as_ptr(), id.as_ptr()) && k.len() == id.len()
}

/// Jittered exponential backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// From `base` doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }
    /// Next delay (full jitter between 50 % and 100 %).
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt += 1;
        let d = exp.min(self.max);
        d.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A `&'static str` for a name made at run time (an email route's sink name, a sensor id: `model::SensorId`). Each distinct name is leaked
/// once and reused, so reloads do not grow memory; the set is bounded by the names a config ever used.
pub fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut g = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    let set = g.get_or_insert_with(HashSet::new);
    if let Some(s) = set.get(name) {
        return s;
    }
    let s: &'static str = Box::leak(name.to_string().into_boxed_str());
    set.insert(s);
    s
}

/// Whether sensor id `id` matches one of `patterns` (exact ids, or a prefix ending in `*`), as the `sensors` and
/// `exclude` lists of the email routes and telemetry take them.
pub fn id_matches(patterns: &[String], id: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => p == id,
    })
}

/// Rate-limits one kind of log line: [`Throttle::ready`] says yes at most once per period and returns how many
/// were held back since, so a flood of identical warnings becomes one line with a count.
#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    last: Option<std::time::Instant>,
    quiet: u64,
}

impl Throttle {
    /// At most one line per `period`.
    pub const fn new(period: Duration) -> Self {
        Throttle {
            period,
            last: None,
            quiet: 0,
        }
    }

    /// Forget the last line: the next one is logged at once (a new episode).
    pub fn reset(&mut self) {
        self.last = None;
        self.quiet = 0;
    }

    /// `Some(suppressed since the last line)` when a line may be logged now; `None` (and counted) otherwise.
    pub fn ready(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < self.period)
        {
            self.quiet += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.quiet))
    }
}

/// An error with its causes, `outer: cause: root cause`, so a log names what went wrong ("connection refused",
/// "certificate expired"), not only "error sending request". Repeated texts are skipped.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_seq_map_finds_every_id_in_any_order() {
        use std::sync::Arc;
        let mut m = super::SeqMap::default();
        for i in 0..50 {
            assert_eq!(m.insert(Arc::from(format!("s{i}")), i), None);
        }
        // In order (the guess), backwards, by stride, the same id twice, and ids it does not hold.
        let orders: [Vec<usize>; 3] = [
            (0..50).collect(),
            (0..50).rev().collect(),
            (0..50).map(|i| i * 7 % 50).collect(),
        ];
        for order in orders {
            for i in order {
                let id = format!("s{i}");
                assert_eq!(m.get(&id), Some(&i));
                assert_eq!(m.get(&id), Some(&i), "a second look at {id}");
                assert_eq!(m.get(&format!("{id}x")), None);
            }
        }
        // By the keys' own text (the interned case: the guess, by identity), twice each as the engine looks.
        let keys: Vec<Arc<str>> = m.keys().cloned().collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!((m.get(k), m.get(k)), (Some(&i), Some(&i)));
        }
        *m.get_mut("s3").expect("s3") = 300;
        assert_eq!(m.insert(Arc::from("s4"), 400), Some(4));
        assert_eq!(
            (m.get("s3"), m.get("s4"), m.len()),
            (Some(&300), Some(&400), 50)
        );
        let ids: Vec<String> = m.keys().map(|k| k.to_string()).collect();
        assert_eq!(ids[..3], ["s0", "s1", "s2"], "insertion order");
        assert_eq!(m.drain().count(), 50);
        assert!(m.is_empty() && m.get("s0").is_none() && !m.contains_key("s0"));
    }

    #[test]
    fn chains_name_the_root_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = std::io::Error::other(Wrapped(io));
        assert_eq!(super::chain(&outer), "request failed: connection refused");
    }

    #[test]
    fn a_throttle_logs_once_per_period_with_the_count_held_back() {
        let mut t = super::Throttle::new(std::time::Duration::from_secs(3600));
        assert_eq!(t.ready(), Some(0));
        assert_eq!(t.ready(), None);
        assert_eq!(t.ready(), None);
        t.reset();
        assert_eq!(t.ready(), Some(0), "a new episode logs at once");
        let mut fast = super::Throttle::new(std::time::Duration::ZERO);
        assert_eq!(fast.ready(), Some(0));
        assert_eq!(fast.ready(), Some(0));
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("request failed")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}

/// `v` with `digits` significant digits, in plain notation from 1e-4 to 1e7 and with an exponent outside it,
/// trailing zeros dropped: `25.08248`, `-1.700218e38`, `1.2e-38`, `0`. For people (commissioning output); an f32
/// carries about 7 significant digits.
pub fn significant(v: f64, digits: usize) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".into();
    }
    let digits = digits.clamp(1, 17);
    let exp = v.abs().log10().floor() as i32;
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..7).contains(&exp) {
        let decimals = (digits as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    } else {
        let s = format!("{v:.prec$e}", prec = digits - 1);
        match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", trim(m)),
            None => s,
        }
    }
}

#[cfg(test)]
mod significant_tests {
    use super::significant;

    #[test]
    fn seven_significant_digits_with_an_exponent_where_needed() {
        assert_eq!(significant(25.082477569580078, 7), "25.08248");
        assert_eq!(significant(-1.700_218_0e38, 7), "-1.700218e38");
        assert_eq!(significant(1.2e-38, 7), "1.2e-38");
        assert_eq!(significant(1.401298464e-45, 7), "1.401298e-45");
        assert_eq!(significant(0.0, 7), "0");
        assert_eq!(significant(1000.0, 7), "1000");
        assert_eq!(significant(0.5, 7), "0.5");
        assert_eq!(significant(12_345_678.0, 7), "1.234568e7");
        assert_eq!(significant(f64::NAN, 7), "NaN");
    }
}

/// tokio's timer wheel wakes its thread at the start of the 64 ms slot (4.096 s for timers further out) a timer
/// lies in, and again at the timer itself: a plain one-second interval costs two wake-ups a second, which is most
/// of an idle gateway's CPU. An interval whose period is a whole number of slots and whose ticks fall on slot
/// boundaries of the runtime's clock costs one. `origin` is an instant taken just before the runtime was built
/// (tokio counts its milliseconds from its start; the ticks are exact while the build took under a millisecond,
/// and merely cost the extra wake-up otherwise). The period is rounded up to the grid (1 s → 1.024 s); missed
/// ticks are skipped so the ticks stay on it. The first tick is the next grid point (within 64 ms, or 4.1 s for periods of
/// 4.096 s and more).
pub fn grid_interval(origin: std::time::Instant, period: Duration) -> tokio::time::Interval {
    let since = std::time::Instant::now().saturating_duration_since(origin);
    let (first, every) = grid(since.as_millis(), period.as_millis());
    let start = u64::try_from(first)
        .ok()
        .and_then(|ms| origin.checked_add(Duration::from_millis(ms)));
    let every = u64::try_from(every).ok().map(Duration::from_millis);
    let mut iv = match start.zip(every) {
        Some((start, every)) => tokio::time::interval_at(start.into(), every),
        // Beyond any clock: an ordinary interval.
        None => tokio::time::interval(period.max(Duration::from_millis(1))),
    };
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    iv
}

/// `at` rounded up to the timer wheel's grid of the runtime whose clock started at `origin` (see
/// [`grid_interval`]): `COARSE` for a sleep further out than 4.096 s (tokio looks at it when its 4.096 s slot
/// starts), else `FINE`. A sleep until a grid point costs one wake-up, not two or three.
pub fn on_grid(
    origin: std::time::Instant,
    at: std::time::Instant,
    slot: u128,
) -> std::time::Instant {
    let ms = at.saturating_duration_since(origin).as_millis();
    u64::try_from(ms.div_ceil(slot.max(1)) * slot.max(1))
        .ok()
        .and_then(|ms| origin.checked_add(Duration::from_millis(ms)))
        .unwrap_or(at)
}

/// The timer wheel's slots: 64 ms for timers within 4.096 s, 4.096 s for timers within 262 s.
pub const FINE: u128 = 64;
/// See [`FINE`].
pub const COARSE: u128 = 64 * 64;

/// The first tick (ms after the origin, at or after `since`) and the period of a grid interval.
fn grid(since: u128, period: u128) -> (u128, u128) {
    let period = period.max(1);
    let slot = if period >= COARSE { COARSE } else { FINE };
    (since.div_ceil(slot) * slot, period.div_ceil(slot) * slot)
}

#[cfg(test)]
mod grid_tests {
    #[test]
    fn periods_round_up_to_whole_slots_and_ticks_start_on_one() {
        // (ms since the runtime started, asked period) -> (first tick, period)
        assert_eq!(super::grid(5, 1000), (64, 1024));
        assert_eq!(super::grid(128, 1000), (128, 1024));
        assert_eq!(super::grid(130, 100), (192, 128));
        assert_eq!(super::grid(0, 0), (0, 64));
        assert_eq!(super::grid(10, 60_000), (4096, 61_440));
        assert_eq!(super::grid(4097, 4096), (8192, 4096));
        let o = std::time::Instant::now();
        let ms = |d: u64| o + std::time::Duration::from_millis(d);
        assert_eq!(super::on_grid(o, ms(1), super::FINE), ms(64));
        assert_eq!(super::on_grid(o, ms(128), super::FINE), ms(128));
        assert_eq!(super::on_grid(o, ms(1_000), super::FINE), ms(1_024));
        assert_eq!(super::on_grid(o, ms(10_000), super::COARSE), ms(12_288));
        // Every tick after the first stays on the grid.
        for (since, p) in [(7, 1000), (999, 250), (12_345, 9_000)] {
            let (first, every) = super::grid(since, p);
            let slot = if p >= 4096 { 4096 } else { 64 };
            assert!(first >= since && first % slot == 0 && every % slot == 0 && every >= p);
        }
    }
}
