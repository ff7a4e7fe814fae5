//! Byte strings as JSON: a 32-byte hash as `0x` + 64 hex digits, and the bare hex (no `0x`)
//! that binary digests and signatures use, as `sha256sum` prints them.

use serde::de::{Error as _, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use vexidus_runtime_api::Hash;

/// A 32-byte hash (block, transaction, state root, runtime code): `0x` + 64 hex digits.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct H256(pub Hash);

impl H256 {
    /// Parses `0x` + 64 hex digits (the `0x` is optional).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bytes = decode(s, "hash")?;
        let n = bytes.len();
        bytes
            .try_into()
            .map(H256)
            .map_err(|_| format!("a hash is 32 bytes, got {n}"))
    }
}

impl From<Hash> for H256 {
    fn from(h: Hash) -> Self {
        H256(h)
    }
}

impl From<H256> for Hash {
    fn from(h: H256) -> Self {
        h.0
    }
}

impl fmt::Display for H256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", ::hex::encode(self.0))
    }
}

impl fmt::Debug for H256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for H256 {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        H256::parse(s)
    }
}

impl Serialize for H256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for H256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor {
            expecting: "a 32-byte hash as 0x-prefixed hex",
            parse: H256::parse,
        })
    }
}

/// Decodes hex with an optional `0x`; the error names `what`.
pub(crate) fn decode(s: &str, what: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    ::hex::decode(s).map_err(|e| format!("{what} is not valid hex: {e}"))
}

/// `0x` + lowercase hex.
pub fn hex0x(bytes: impl AsRef<[u8]>) -> String {
    format!("0x{}", ::hex::encode(bytes))
}

/// A visitor of one JSON string, parsed by `parse`; anything else is refused as not what
/// `expecting` says.
pub(crate) struct TextVisitor<T> {
    pub(crate) expecting: &'static str,
    pub(crate) parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for TextVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
        (self.parse)(s).map_err(E::custom)
    }
}

/// Bytes as bare hex (`#[serde(with = "bare_hex")]`).
pub mod bare_hex {
    use super::*;

    /// Writes the hex digits.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&::hex::encode(bytes))
    }

    /// Reads hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s, "digest").map_err(D::Error::custom)
    }
}

/// `Option<Vec<u8>>` as bare hex or `null` (`#[serde(with = "bare_hex_opt")]`); the field
/// must be present.
pub mod bare_hex_opt {
    use super::*;

    /// Writes hex digits or `null`.
    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_some(&::hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    /// Reads hex digits or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| decode(&s, "signature").map_err(D::Error::custom))
            .transpose()
    }
}

/// For an `Option` field that the answer must carry (as a value or `null`): serde would
/// otherwise read a missing field as `None`.
pub fn required<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_0x_and_64_digits_and_other_lengths_are_refused() {
        let h = H256([0xab; 32]);
        let text = serde_json::to_string(&h).expect("serializes");
        assert_eq!(text, format!("\"0x{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<H256>(&text).expect("parses"), h);
        let short = serde_json::from_str::<H256>("\"0x1234\"").expect_err("short");
        assert!(short.to_string().contains("32 bytes, got 2"), "{short}");
        let bad = serde_json::from_str::<H256>("\"0xzz\"").expect_err("not hex");
        assert!(bad.to_string().contains("not valid hex"), "{bad}");
        let number = serde_json::from_str::<H256>("5").expect_err("a number");
        assert!(
            number.to_string().contains("expected a 32-byte hash"),
            "{number}"
        );
    }
}
