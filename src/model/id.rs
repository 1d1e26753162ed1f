//! Sensor ids as readings carry them: interned, copied as a pointer, never counted.
//!
//! A reading crosses threads several times (the source's runtime thread, the ingest thread that commits it, a
//! sink that delivers it), and an `Arc<str>` id was a reference count written on each: taken by the source,
//! dropped by the ingest thread a commit later, taken and dropped again by each sink. Each write moved the count's
//! cache line to another core: ~50-150 ns a reading in the gateway workload's profile, for a string that never
//! changes. The ids are few and come from the config (or from the store's own table of names it once had), so
//! each distinct one is leaked once and every reading points at it: no count to write, and equal ids are the
//! same pointer. Only those are interned: nothing a peer sends becomes a `SensorId` (it would be kept for ever),
//! which is why there is no `Deserialize`; commands look sensors up by `&str`.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// An interned sensor id (see the module). `Copy`; compares, hashes and orders as its text.
#[derive(Clone, Copy, Default)]
pub struct SensorId(&'static str);

impl SensorId {
    /// The id `name`, interned ([`crate::util::intern`]): the same pointer for the same text, for the life of
    /// the process. Taken at start-up, at a reload, and when the store names a sensor it read back; never per
    /// reading.
    pub fn new(name: &str) -> SensorId {
        SensorId(crate::util::intern(name))
    }

    /// The text.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::ops::Deref for SensorId {
    type Target = str;
    fn deref(&self) -> &str {
        self.0
    }
}

impl AsRef<str> for SensorId {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl Borrow<str> for SensorId {
    fn borrow(&self) -> &str {
        self.0
    }
}

impl PartialEq for SensorId {
    fn eq(&self, other: &SensorId) -> bool {
        // Interned: the same text is the same pointer (the bytes are compared only if that ever failed).
        std::ptr::eq(self.0, other.0) || self.0 == other.0
    }
}

impl Eq for SensorId {}

impl PartialEq<str> for SensorId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for SensorId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Hash for SensorId {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // As the text, so a map keyed by ids is looked up by `&str` (`Borrow<str>`).
        self.0.hash(h);
    }
}

impl PartialOrd for SensorId {
    fn partial_cmp(&self, other: &SensorId) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SensorId {
    fn cmp(&self, other: &SensorId) -> std::cmp::Ordering {
        self.0.cmp(other.0)
    }
}

impl std::fmt::Debug for SensorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.0, f)
    }
}

impl std::fmt::Display for SensorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl From<&str> for SensorId {
    fn from(s: &str) -> SensorId {
        SensorId::new(s)
    }
}

impl From<&String> for SensorId {
    fn from(s: &String) -> SensorId {
        SensorId::new(s)
    }
}

impl From<String> for SensorId {
    fn from(s: String) -> SensorId {
        SensorId::new(&s)
    }
}

impl serde::Serialize for SensorId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_is_the_same_pointer_and_compares_as_text() {
        let a = SensorId::new("boiler.temp");
        let b = SensorId::from(String::from("boiler.temp"));
        assert!(std::ptr::eq(a.as_str(), b.as_str()), "interned once");
        assert_eq!(a, b);
        assert_eq!(a, "boiler.temp");
        assert!(SensorId::new("a") < SensorId::new("b"));
        let mut m = std::collections::HashMap::new();
        m.insert(a, 1);
        assert_eq!(m.get("boiler.temp"), Some(&1), "looked up by &str");
        assert_eq!(
            serde_json::to_string(&a).expect("serialize"),
            "\"boiler.temp\""
        );
        assert_eq!(format!("{a} {a:?}"), "boiler.temp \"boiler.temp\"");
    }
}
