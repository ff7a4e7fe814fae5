//! Blocks and votes as they come from peers (inside gossip and sync messages, and stored
//! certificates): Borsh. Whatever decodes round-trips through Borsh, JSON and SCALE, and its
//! hashes and signature checks do not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parity_scale_codec::{Decode, Encode};
use vexidus_runtime_api::vote::SignedVote;
use vexidus_runtime_api::{Block, signing};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        let Ok(block) = borsh::from_slice::<Block>(rest) else {
            return;
        };
        let borsh = borsh::to_vec(&block).expect("encodes");
        assert_eq!(borsh::from_slice::<Block>(&borsh).expect("decodes"), block);
        let json = serde_json::to_vec(&block).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<Block>(&json).expect("decodes"),
            block
        );
        let scale = block.encode();
        assert_eq!(Block::decode(&mut &scale[..]).expect("decodes"), block);
        let hash = signing::header_hash(&block.header);
        let _ = signing::verify(
            &block.header.proposer,
            signing::BLOCK_DOMAIN,
            "fuzz",
            &hash,
            &block.signature,
        );
    } else {
        let Ok(vote) = borsh::from_slice::<SignedVote>(rest) else {
            return;
        };
        let borsh = borsh::to_vec(&vote).expect("encodes");
        assert_eq!(
            borsh::from_slice::<SignedVote>(&borsh).expect("decodes"),
            vote
        );
        let json = serde_json::to_vec(&vote).expect("encodes");
        assert_eq!(
            serde_json::from_slice::<SignedVote>(&json).expect("decodes"),
            vote
        );
        let _ = vote.verify("fuzz");
    }
});
