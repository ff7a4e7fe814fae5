//! Parameters of the RPC methods. Each refuses what it cannot read with a message that says
//! what was expected, which the server returns as the `data` of an "Invalid params" error.

use crate::hex::{H256, TextVisitor, decode, hex0x};
use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Most transactions per `vex_submitTransactions` call.
pub const MAX_BATCH_TRANSACTIONS: usize = 10_000;

/// A Borsh-encoded signed transaction, as `0x` + hex.
#[derive(Clone, PartialEq, Eq)]
pub struct RawTransaction(pub Vec<u8>);

impl RawTransaction {
    /// The encoding of `tx`.
    pub fn of(tx: &vexidus_runtime_api::SignedTransaction) -> Self {
        // Borsh fails only on writer errors, and a Vec never fails.
        RawTransaction(borsh_bytes(tx))
    }
}

fn borsh_bytes(tx: &vexidus_runtime_api::SignedTransaction) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = borsh::BorshSerialize::serialize(tx, &mut out);
    out
}

impl fmt::Debug for RawTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawTransaction({} bytes)", self.0.len())
    }
}

impl Serialize for RawTransaction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex0x(&self.0))
    }
}

impl<'de> Deserialize<'de> for RawTransaction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor {
            expecting: "a hex-encoded signed transaction",
            parse: |s| decode(s, "transaction").map(RawTransaction),
        })
    }
}

/// Up to [`MAX_BATCH_TRANSACTIONS`] encoded transactions. A longer list is refused as soon as
/// its length passes the limit, before the rest is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawTransactions(pub Vec<RawTransaction>);

impl Serialize for RawTransactions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawTransactions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = RawTransactions;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of hex-encoded signed transactions")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawTransactions, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(text) = seq.next_element::<String>()? {
                    if out.len() == MAX_BATCH_TRANSACTIONS {
                        return Err(A::Error::custom(format!(
                            "at most {MAX_BATCH_TRANSACTIONS} transactions per call"
                        )));
                    }
                    let what = format!("transaction {}", out.len());
                    out.push(RawTransaction(
                        decode(&text, &what).map_err(A::Error::custom)?,
                    ));
                }
                Ok(RawTransactions(out))
            }
        }
        d.deserialize_seq(List)
    }
}

/// `vex_getBlock`'s optional second parameter: `true` (the default) for bodies and receipts,
/// `false` for transaction hashes only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full(pub bool);

impl Serialize for Full {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self.0)
    }
}

impl<'de> Deserialize<'de> for Full {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Flag;
        impl Visitor<'_> for Flag {
            type Value = Full;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean: the optional second parameter is `full` (true or false)")
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Full, E> {
                Ok(Full(v))
            }
        }
        d.deserialize_any(Flag)
    }
}

/// Which block `vex_getBlock` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockId {
    /// The canonical block at this height.
    Height(u64),
    /// The head.
    Latest,
    /// The last irreversible block.
    Finalized,
    /// Any known block, on the canonical chain or a fork.
    Hash(H256),
}

impl Serialize for BlockId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BlockId::Height(h) => s.serialize_u64(*h),
            BlockId::Latest => s.serialize_str("latest"),
            BlockId::Finalized => s.serialize_str("finalized"),
            BlockId::Hash(h) => h.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for BlockId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Id;
        impl Visitor<'_> for Id {
            type Value = BlockId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a height (number), a block hash (hex string), \"latest\" or \"finalized\"",
                )
            }

            fn visit_u64<E: serde::de::Error>(self, h: u64) -> Result<BlockId, E> {
                Ok(BlockId::Height(h))
            }

            fn visit_i64<E: serde::de::Error>(self, h: i64) -> Result<BlockId, E> {
                u64::try_from(h)
                    .map(BlockId::Height)
                    .map_err(|_| E::custom("height must be a non-negative integer"))
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<BlockId, E> {
                match s {
                    "latest" => Ok(BlockId::Latest),
                    "finalized" => Ok(BlockId::Finalized),
                    hash => H256::parse(hash).map(BlockId::Hash).map_err(E::custom),
                }
            }
        }
        d.deserialize_any(Id)
    }
}

impl std::str::FromStr for BlockId {
    type Err = String;

    /// A height, `latest`, `finalized` or a block hash, as an operator types it.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<u64>() {
            Ok(h) => Ok(BlockId::Height(h)),
            Err(_) => serde_json::from_value(serde_json::Value::String(s.into()))
                .map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_past_the_limit_is_refused_and_bad_hex_names_its_index() {
        let ok = serde_json::from_str::<RawTransactions>(r#"["0x01", "02"]"#).expect("parses");
        assert_eq!(ok.0, vec![RawTransaction(vec![1]), RawTransaction(vec![2])]);
        let bad = serde_json::from_str::<RawTransactions>(r#"["0x01", "0xz"]"#).expect_err("bad");
        assert!(
            bad.to_string().contains("transaction 1 is not valid hex"),
            "{bad}"
        );
        let long = format!(
            "[{}]",
            vec!["\"0x00\""; MAX_BATCH_TRANSACTIONS + 1].join(",")
        );
        let err = serde_json::from_str::<RawTransactions>(&long).expect_err("too long");
        assert!(err.to_string().contains("at most 10000"), "{err}");
        let not_list = serde_json::from_str::<RawTransactions>("5").expect_err("a number");
        assert!(
            not_list.to_string().contains("expected an array"),
            "{not_list}"
        );
    }

    #[test]
    fn block_ids_read_heights_tags_and_hashes() {
        let read = |s: &str| serde_json::from_str::<BlockId>(s);
        assert_eq!(read("7").expect("height"), BlockId::Height(7));
        assert_eq!(read("\"latest\"").expect("tag"), BlockId::Latest);
        assert_eq!(read("\"finalized\"").expect("tag"), BlockId::Finalized);
        let h = format!("\"0x{}\"", "11".repeat(32));
        assert_eq!(read(&h).expect("hash"), BlockId::Hash(H256([0x11; 32])));
        assert!(
            read("-1")
                .expect_err("negative")
                .to_string()
                .contains("non-negative")
        );
        assert!(
            read("true")
                .expect_err("bool")
                .to_string()
                .contains("a height (number)")
        );
        for id in [
            BlockId::Height(3),
            BlockId::Latest,
            BlockId::Finalized,
            BlockId::Hash(H256([2; 32])),
        ] {
            let text = serde_json::to_string(&id).expect("serializes");
            assert_eq!(read(&text).expect("round trip"), id);
        }
        assert_eq!("12".parse::<BlockId>(), Ok(BlockId::Height(12)));
        let e = serde_json::from_str::<Full>("\"no\"").expect_err("not a boolean");
        assert!(
            e.to_string()
                .contains("optional second parameter is `full`"),
            "{e}"
        );
        assert_eq!(
            serde_json::from_str::<Full>("false").expect("a boolean"),
            Full(false)
        );
    }
}
