//! Fixed-size primitives: hashes, public keys, addresses and signatures.

use borsh::{BorshDeserialize, BorshSerialize};
use core::fmt;
use parity_scale_codec::{Decode, Encode};

/// A 32-byte blake3 digest.
pub type Hash = [u8; 32];

macro_rules! hex_newtype {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            BorshSerialize, BorshDeserialize, Encode, Decode,
        )]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Parses `0x` + hex (the `0x` is optional), refusing any other length.
            pub fn from_hex(s: &str) -> Result<Self, HexError> {
                let s = s.trim();
                let s = s.strip_prefix("0x").unwrap_or(s);
                decode_hex_into::<$len>(s).map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self([0u8; $len])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("0x")?;
                for b in self.0.iter() {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        #[cfg(feature = "std")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        #[cfg(feature = "std")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::string::String as serde::Deserialize>::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

hex_newtype!(
    /// An account address: `blake3(public_key)`.
    Address,
    32
);
hex_newtype!(
    /// An Ed25519 public key.
    PublicKey,
    32
);
hex_newtype!(
    /// An Ed25519 signature.
    Signature,
    64
);

impl PublicKey {
    /// The account address of this key. Needs `std` (blake3 natively); inside the runtime use
    /// the `blake3_v1` host function.
    #[cfg(feature = "std")]
    pub fn address(&self) -> Address {
        Address(*blake3::hash(&self.0).as_bytes())
    }
}

/// Why a hex string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HexError {
    /// The string has the wrong number of hex digits.
    Length {
        /// Hex digits expected.
        expected: usize,
        /// Hex digits found.
        found: usize,
    },
    /// A character is not a hex digit.
    Character(char),
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::Length { expected, found } => {
                write!(f, "expected {expected} hex digits, found {found}")
            }
            HexError::Character(c) => write!(f, "{c:?} is not a hex digit"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for HexError {}

fn decode_hex_into<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    if s.len() != 2 * N {
        return Err(HexError::Length {
            expected: 2 * N,
            found: s.len(),
        });
    }
    let mut out = [0u8; N];
    let bytes = s.as_bytes();
    for (i, o) in out.iter_mut().enumerate() {
        let hi = nibble(bytes[2 * i])?;
        let lo = nibble(bytes[2 * i + 1])?;
        *o = (hi << 4) | lo;
    }
    Ok(out)
}

fn nibble(c: u8) -> Result<u8, HexError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(HexError::Character(c as char)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let a = Address([0xab; 32]);
        let s = alloc::format!("{a}");
        assert_eq!(Address::from_hex(&s), Ok(a));
        assert_eq!(Address::from_hex(&s[2..]), Ok(a));
        assert_eq!(
            Address::from_hex("0x12"),
            Err(HexError::Length {
                expected: 64,
                found: 2
            })
        );
        let bad = alloc::format!("0x{}", "zz".repeat(32));
        assert_eq!(Address::from_hex(&bad), Err(HexError::Character('z')));
    }
}
