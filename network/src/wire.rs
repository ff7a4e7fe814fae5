//! Messages on the wire: `VX` (0x56 0x58) + Borsh, or JSON (a message without the magic).

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use vexidus_runtime_api::vote::SignedVote;
use vexidus_runtime_api::{Block, PublicKey, Signature, SignedTransaction};

/// The magic bytes in front of a Borsh message.
pub const MAGIC: [u8; 2] = *b"VX";
/// The largest message accepted: a block of the largest budget governance may set fits, and
/// so does a request forwarding the largest transaction.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// A block's bytes beyond its transactions' (Borsh): the header (176), the transaction count
/// (4) and the signature (64), with room to spare.
pub const BLOCK_ENVELOPE_BYTES: usize = 1024;

// The limits nest: a runtime blob in a transaction, the largest transaction in the largest
// block, that block in a gossip message (and in a sync answer, see `service`). A block
// the runtime accepts can therefore always travel.
const _: () = {
    use vexidus_runtime_api::transaction::{
        MAX_BLOCK_BYTES_BOUND, MAX_TRANSACTION_BYTES, ParamKey, RUNTIME_UPGRADE_ENVELOPE_BYTES,
    };
    let code = MAX_BLOCK_BYTES_BOUND - RUNTIME_UPGRADE_ENVELOPE_BYTES;
    assert!(ParamKey::MaxRuntimeCodeBytes.upper_bound() == code as u128);
    assert!(ParamKey::MaxBlockBytes.upper_bound() == MAX_BLOCK_BYTES_BOUND as u128);
    assert!(MAX_TRANSACTION_BYTES <= MAX_BLOCK_BYTES_BOUND as usize);
    assert!(MAX_BLOCK_BYTES_BOUND as usize + BLOCK_ENVELOPE_BYTES + 16 <= MAX_MESSAGE_BYTES);
};

/// Most votes one [`Gossip::Votes`] may carry: a validator's own votes in the window of heights
/// above the last irreversible block that receivers keep, plus a certificate it relays, fit
/// several times over. A message with more is refused unread by the node and costs its sender.
pub const MAX_VOTES_PER_MESSAGE: usize = 512;

/// A gossip message (topic `blocks` or `votes`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Gossip {
    /// A signed block.
    Block(Block),
    /// A signed vote.
    Vote(SignedVote),
    /// Votes sent again (a validator's own above the last irreversible block, or a certificate
    /// it relays). `sent_at_ms` makes every re-send a new message, so an honest re-send is never
    /// a replay; a peer that replays the same bytes is one.
    Votes {
        /// The sender's clock when it sent them.
        sent_at_ms: u64,
        /// The votes.
        votes: Vec<SignedVote>,
    },
}

/// A sync request (request-response protocol).
///
/// JSON: an object with a `type` field beside the variant's fields. It is read through a plain
/// struct ([`SyncRequestJson`]) rather than serde's internally tagged enums, which buffer the
/// object and cannot hold a `u128` (every amount in a transaction).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "SyncRequestJson")]
pub enum SyncRequest {
    /// Blocks from `from` upward, at most `max` of them.
    Blocks {
        /// First height.
        from: u64,
        /// Most blocks wanted (the responder may send fewer, within its size and time caps).
        max: u32,
    },
    /// One block by hash (an orphan's parent).
    Block {
        /// The hash.
        hash: [u8; 32],
    },
    /// Sent once per connection: this node's validator proof, if it is a validator; the answer
    /// carries the other side's.
    Hello {
        /// The proof.
        proof: Option<PeerProof>,
    },
    /// Transactions for the current and next leader's pool (there is no transaction gossip).
    Transactions {
        /// The transactions.
        transactions: Vec<SignedTransaction>,
    },
}

/// A sync response. JSON as [`SyncRequest`]'s, read through [`SyncResponseJson`].
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "SyncResponseJson")]
pub enum SyncResponse {
    /// Consecutive blocks, oldest first; empty when the responder has none.
    Blocks {
        /// The blocks.
        blocks: Vec<Block>,
        /// The precommits that made the highest irreversible block among them irreversible
        /// (empty when none is): the receiver counts them like gossiped votes, so a node that
        /// syncs finalizes what it syncs.
        #[serde(default)]
        certificate: Vec<SignedVote>,
    },
    /// The answer to [`SyncRequest::Hello`].
    Hello {
        /// The responder's validator proof.
        proof: Option<PeerProof>,
    },
    /// The answer to [`SyncRequest::Transactions`]: how many entered the pool.
    Accepted {
        /// Count.
        accepted: u32,
    },
}

/// The JSON object of a [`SyncRequest`]: its `type` and the fields of every variant.
#[derive(Deserialize)]
#[doc(hidden)]
pub struct SyncRequestJson {
    r#type: String,
    from: Option<u64>,
    max: Option<u32>,
    hash: Option<[u8; 32]>,
    #[serde(default)]
    proof: Option<PeerProof>,
    transactions: Option<Vec<SignedTransaction>>,
}

fn field<T>(value: Option<T>, kind: &str, name: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("a `{kind}` message needs the field `{name}`"))
}

impl TryFrom<SyncRequestJson> for SyncRequest {
    type Error = String;

    fn try_from(j: SyncRequestJson) -> Result<Self, String> {
        let kind = j.r#type.as_str();
        Ok(match kind {
            "blocks" => SyncRequest::Blocks {
                from: field(j.from, kind, "from")?,
                max: field(j.max, kind, "max")?,
            },
            "block" => SyncRequest::Block {
                hash: field(j.hash, kind, "hash")?,
            },
            "hello" => SyncRequest::Hello { proof: j.proof },
            "transactions" => SyncRequest::Transactions {
                transactions: field(j.transactions, kind, "transactions")?,
            },
            other => return Err(format!("unknown sync request type `{other}`")),
        })
    }
}

/// The JSON object of a [`SyncResponse`]: its `type` and the fields of every variant.
#[derive(Deserialize)]
#[doc(hidden)]
pub struct SyncResponseJson {
    r#type: String,
    blocks: Option<Vec<Block>>,
    #[serde(default)]
    certificate: Vec<SignedVote>,
    #[serde(default)]
    proof: Option<PeerProof>,
    accepted: Option<u32>,
}

impl TryFrom<SyncResponseJson> for SyncResponse {
    type Error = String;

    fn try_from(j: SyncResponseJson) -> Result<Self, String> {
        let kind = j.r#type.as_str();
        Ok(match kind {
            "blocks" => SyncResponse::Blocks {
                blocks: field(j.blocks, kind, "blocks")?,
                certificate: j.certificate,
            },
            "hello" => SyncResponse::Hello { proof: j.proof },
            "accepted" => SyncResponse::Accepted {
                accepted: field(j.accepted, kind, "accepted")?,
            },
            other => return Err(format!("unknown sync response type `{other}`")),
        })
    }
}

/// A validator's proof that it runs behind a peer id: its key signs the peer id bytes under
/// the `vexidus/peer/v1` domain.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct PeerProof {
    /// The peer id, as bytes.
    pub peer_id: Vec<u8>,
    /// The validator key.
    pub validator: PublicKey,
    /// Signature over the peer id.
    pub signature: Signature,
}

impl PeerProof {
    /// Signs `peer_id` with `key` for `chain_id`.
    pub fn sign(
        peer_id: &[u8],
        key: &vexidus_runtime_api::signing::Keypair,
        chain_id: &str,
    ) -> Self {
        Self {
            peer_id: peer_id.to_vec(),
            validator: key.public(),
            signature: key.sign(vexidus_runtime_api::signing::PEER_DOMAIN, chain_id, peer_id),
        }
    }

    /// Whether the proof holds for `peer_id` on `chain_id`.
    pub fn verify(&self, peer_id: &[u8], chain_id: &str) -> bool {
        self.peer_id == peer_id
            && vexidus_runtime_api::signing::verify(
                &self.validator,
                vexidus_runtime_api::signing::PEER_DOMAIN,
                chain_id,
                peer_id,
                &self.signature,
            )
    }
}

/// How a received message was encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `VX` + Borsh.
    Borsh,
    /// JSON (the fallback).
    Json,
}

/// Why bytes were not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes is over the {max} byte cap")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Nothing at all.
    #[error("empty message")]
    Empty,
    /// `VX` followed by bytes that are not a whole Borsh message.
    #[error("bad Borsh message: {0}")]
    Borsh(String),
    /// No magic, and not the JSON form either.
    #[error("neither a VX Borsh message nor JSON: {0}")]
    Json(String),
    /// Bytes that stop before the message they begin is complete (either form).
    #[error("message ends early: {0}")]
    Truncated(String),
}

impl WireError {
    /// Nothing, or the beginning of a message: what a request looks like when its sender
    /// cancelled it before it was written in full (a QUIC stream dropped by its writer is
    /// finished, not reset, so the reader sees a clean end).
    pub fn is_incomplete(&self) -> bool {
        matches!(self, WireError::Empty | WireError::Truncated(_))
    }
}

/// What Borsh says when the input ends before the value does (its errors carry no kind of
/// their own: every one is `InvalidData`).
const BORSH_END_OF_INPUT: &str = "Unexpected length of input";

/// `VX` + Borsh of `msg`.
pub fn encode<T: BorshSerialize>(msg: &T) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    borsh::to_writer(&mut out, msg).expect("writing to a Vec cannot fail");
    out
}

/// The JSON form of `msg` (what an older binary sends).
pub fn encode_json<T: Serialize>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).expect("wire types always serialise")
}

/// Decodes either form; Borsh must use every byte.
pub fn decode<T: BorshDeserialize + for<'de> Deserialize<'de>>(
    bytes: &[u8],
) -> Result<(T, Encoding), WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    if bytes.is_empty() {
        return Err(WireError::Empty);
    }
    if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
        return Err(WireError::Truncated("part of the magic only".into()));
    }
    if let Some(body) = bytes.strip_prefix(&MAGIC) {
        return borsh::from_slice(body)
            .map(|m| (m, Encoding::Borsh))
            .map_err(|e| {
                let e = e.to_string();
                if e == BORSH_END_OF_INPUT {
                    WireError::Truncated(e)
                } else {
                    WireError::Borsh(e)
                }
            });
    }
    serde_json::from_slice(bytes)
        .map(|m| (m, Encoding::Json))
        .map_err(|e| {
            if e.is_eof() {
                WireError::Truncated(e.to_string())
            } else {
                WireError::Json(e.to_string())
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vexidus_runtime_api::signing::Keypair;
    use vexidus_runtime_api::vote::{VoteBody, VoteStage};

    fn vote() -> Gossip {
        Gossip::Vote(SignedVote::sign(
            VoteBody {
                stage: VoteStage::Precommit,
                height: 12,
                block: [7; 32],
            },
            &Keypair::from_seed([1; 32]),
            "c",
        ))
    }

    #[test]
    fn both_encodings_decode_to_the_same_message() {
        let m = vote();
        let b = encode(&m);
        assert_eq!(&b[..2], b"VX");
        let j = encode_json(&m);
        assert_eq!(decode::<Gossip>(&b), Ok((m.clone(), Encoding::Borsh)));
        assert_eq!(decode::<Gossip>(&j), Ok((m, Encoding::Json)));
        assert!(j.len() > b.len(), "Borsh is the compact form");
    }

    #[test]
    fn sync_messages_carrying_amounts_round_trip_through_json() {
        use vexidus_runtime_api::transaction::{Operation, Transaction};
        let key = Keypair::from_seed([2; 32]);
        let tx = key.sign_transaction(Transaction {
            chain_id: "c".into(),
            sender: key.public(),
            nonce: 0,
            max_gas: 10,
            valid_until: 9,
            operations: vec![Operation::Transfer {
                to: key.public().address(),
                amount: u128::MAX,
            }],
        });
        let request = SyncRequest::Transactions {
            transactions: vec![tx],
        };
        let json = encode_json(&request);
        assert_eq!(decode::<SyncRequest>(&json), Ok((request, Encoding::Json)));
        // The object form older binaries send and read: `type` beside the fields.
        assert_eq!(
            decode::<SyncRequest>(br#"{"type":"blocks","from":3,"max":64}"#),
            Ok((SyncRequest::Blocks { from: 3, max: 64 }, Encoding::Json))
        );
        assert_eq!(
            String::from_utf8(encode_json(&SyncResponse::Accepted { accepted: 2 }))
                .expect("JSON is UTF-8"),
            r#"{"type":"accepted","accepted":2}"#
        );
        let missing = decode::<SyncRequest>(br#"{"type":"blocks","from":3}"#);
        assert!(
            matches!(&missing, Err(WireError::Json(e)) if e.contains("`max`")),
            "{missing:?}"
        );
    }

    #[test]
    fn trailing_bytes_and_garbage_are_refused() {
        let mut b = encode(&vote());
        b.push(0);
        assert!(matches!(decode::<Gossip>(&b), Err(WireError::Borsh(_))));
        assert!(matches!(
            decode::<Gossip>(b"VX\x09"),
            Err(WireError::Borsh(_))
        ));
        assert!(matches!(
            decode::<Gossip>(b"\x00\x01garbage"),
            Err(WireError::Json(_))
        ));
        assert_eq!(decode::<Gossip>(b""), Err(WireError::Empty));
        // The beginning of a message, in either form, is told apart from garbage.
        let whole = encode(&vote());
        for cut in [1, 2, 3, whole.len() / 2, whole.len() - 1] {
            let short = decode::<Gossip>(&whole[..cut]);
            assert!(
                short.as_ref().is_err_and(WireError::is_incomplete),
                "{cut}: {short:?}"
            );
        }
        let json = encode_json(&vote());
        let short = decode::<Gossip>(&json[..json.len() / 2]);
        assert!(
            short.as_ref().is_err_and(WireError::is_incomplete),
            "{short:?}"
        );
        for garbage in [
            &b"VX\x09"[..],
            b"\x00\x01garbage",
            &[whole.clone(), vec![0]].concat(),
        ] {
            let bad = decode::<Gossip>(garbage);
            assert!(bad.as_ref().is_err_and(|e| !e.is_incomplete()), "{bad:?}");
        }
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            decode::<Gossip>(&big),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_borsh_form_is_pinned() {
        // A wire format change must never be silent: this digest changes with it.
        let digest = blake3::hash(&encode(&vote()));
        assert_eq!(digest.to_hex().as_str(), PINNED_VOTE_DIGEST);
    }
    const PINNED_VOTE_DIGEST: &str =
        "b286252409ac60193a2d3a5f02d7281909638e313b6bd94092dcc4c8d885126a";

    #[test]
    fn peer_proofs_bind_the_peer_id_and_chain() {
        let k = Keypair::from_seed([2; 32]);
        let p = PeerProof::sign(b"peer-a", &k, "c");
        assert!(p.verify(b"peer-a", "c"));
        assert!(!p.verify(b"peer-b", "c"));
        assert!(!p.verify(b"peer-a", "d"));
    }
}
