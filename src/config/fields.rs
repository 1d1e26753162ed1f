//! The field names a `#[derive(Deserialize)]` struct accepts, asked of serde itself (a struct's derived
//! `Deserialize` hands its field list to `deserialize_struct`), so the lists that name "a Modbus setting" can
//! never drift from the structs.

use serde::de::{self, Deserialize, Visitor};
use std::cell::Cell;

/// The fields of `T` (empty for a type that is not a struct).
pub(super) fn of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let seen = Cell::new(None);
    let _ = T::deserialize(Grab(&seen));
    seen.get().unwrap_or(&[])
}

struct Grab<'a>(&'a Cell<Option<&'static [&'static str]>>);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fields taken")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for Grab<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0.set(Some(fields));
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_structs_fields_come_from_its_derive() {
        let f = super::of::<crate::config::ModbusKeys>();
        assert_eq!(f.first(), Some(&"modbus"));
        assert!(f.contains(&"type") && f.contains(&"word_order"), "{f:?}");
        assert!(super::of::<String>().is_empty());
    }
}
