//! Reads a `u128` amount from JSON wherever serde buffers values first (internally tagged
//! enums such as [`crate::block::Event`], flattened structs), where serde's own `u128` reader
//! is not supported. Use as `#[serde(deserialize_with = "serde_amount::deserialize")]`.
//!
//! A buffered JSON number is at most `u64::MAX` (above it the buffer holds a float, which is
//! refused rather than rounded); a decimal string of any `u128` is read too.

use core::fmt;
use serde::de::{Deserializer, Error, Visitor};

struct Amount;

impl Visitor<'_> for Amount {
    type Value = u128;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer amount")
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<u128, E> {
        Ok(v.into())
    }

    fn visit_u128<E: Error>(self, v: u128) -> Result<u128, E> {
        Ok(v)
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<u128, E> {
        u128::try_from(v).map_err(|_| E::custom(format!("amount {v} is negative")))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<u128, E> {
        Err(E::custom(format!(
            "amount {v} is not an exact integer here (amounts above u64::MAX must be strings)"
        )))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<u128, E> {
        v.parse()
            .map_err(|_| E::custom(format!("{v:?} is not a decimal amount")))
    }
}

/// Reads an amount.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    d.deserialize_any(Amount)
}

#[cfg(test)]
mod tests {
    /// Internally tagged, as events are: serde buffers the fields before reading them.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(tag = "type")]
    enum Tagged {
        Fee {
            #[serde(deserialize_with = "super::deserialize")]
            fee: u128,
        },
    }

    #[test]
    fn amounts_read_back_from_a_tagged_enum() {
        let e = Tagged::Fee { fee: 10 };
        let text = serde_json::to_string(&e).expect("serializes");
        assert_eq!(serde_json::from_str::<Tagged>(&text).expect("reads"), e);
        let big = r#"{"type":"Fee","fee":"340282366920938463463374607431768211455"}"#;
        assert_eq!(
            serde_json::from_str::<Tagged>(big).expect("a decimal string"),
            Tagged::Fee { fee: u128::MAX }
        );
        assert!(serde_json::from_str::<Tagged>(r#"{"type":"Fee","fee":-1}"#).is_err());
    }
}
