//! Writes `fuzz/corpus/<target>/seed-*`: real encodings of every input kind the targets take,
//! so fuzzing starts from valid messages and mutates from there.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml -p vexidus-fuzz-seeds [RUNTIME_BLOB]`: with the
//! path of the built runtime blob, its first 4 KiB (the type, import and function sections)
//! seed the blob checks too.

use parity_scale_codec::Encode;
use std::path::{Path, PathBuf};
use vexidus_network::wire::{Gossip, PeerProof, SyncRequest, SyncResponse, encode, encode_json};
use vexidus_runtime_api::abi::{self, ApplyArgs, BlockContext, MigrateArgs, Query, ValidateArgs};
use vexidus_runtime_api::genesis_file::GenesisFile;
use vexidus_runtime_api::signing::{self, Keypair};
use vexidus_runtime_api::state::GenesisValidator;
use vexidus_runtime_api::transaction::{Operation, ProposalKind, Transaction, UpgradeTarget};
use vexidus_runtime_api::vote::{SignedVote, VoteBody, VoteStage};
use vexidus_runtime_api::{
    Address, Block, GenesisConfig, GovernanceMode, GovernanceSettings, Header, Parameters,
    RuntimeVersion, SignedTransaction,
};

const CHAIN: &str = "vexidus-fuzz";

fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

fn transactions() -> Vec<SignedTransaction> {
    let ops = vec![
        vec![Operation::Transfer {
            to: Address([7; 32]),
            amount: 1_000,
        }],
        vec![
            Operation::RegisterValidator {
                stake: 10,
                commission_bps: 500,
            },
            Operation::Delegate {
                validator: Address([3; 32]),
                amount: 5,
            },
        ],
        vec![Operation::ProposeMultiSig {
            multisig: Address([9; 32]),
            op: Box::new(Operation::Transfer {
                to: Address([1; 32]),
                amount: 2,
            }),
        }],
        vec![Operation::ScheduleUpgrade {
            name: "v2".into(),
            height: 100,
            info_url: "https://example.invalid/v2".into(),
            target: UpgradeTarget::Binary {
                binary_url: "file:///tmp/vexidus-node".into(),
                sha256: vec![0xaa; 32],
                signature: None,
            },
        }],
        vec![Operation::CreateProposal {
            kind: ProposalKind::Text {
                title: "t".into(),
                body: "b".into(),
            },
        }],
    ];
    ops.into_iter()
        .enumerate()
        .map(|(i, operations)| {
            key(i as u8 + 1).sign_transaction(Transaction {
                chain_id: CHAIN.into(),
                sender: key(i as u8 + 1).public(),
                nonce: i as u64,
                max_gas: 1_000_000,
                valid_until: 1_000,
                operations,
            })
        })
        .collect()
}

fn block(transactions: Vec<SignedTransaction>) -> Block {
    let header = Header {
        parent_hash: [1; 32],
        height: 5,
        timestamp_ms: 1_700_000_000_000,
        proposer: key(1).public(),
        state_root: [2; 32],
        transactions_root: [3; 32],
        receipts_root: [4; 32],
    };
    let signature = key(1).sign(signing::BLOCK_DOMAIN, CHAIN, &signing::header_hash(&header));
    Block {
        header,
        transactions,
        signature,
    }
}

fn vote(height: u64) -> SignedVote {
    SignedVote::sign(
        VoteBody {
            stage: VoteStage::Prevote,
            height,
            block: [height as u8; 32],
        },
        &key(2),
        CHAIN,
    )
}

fn genesis() -> GenesisConfig {
    GenesisConfig {
        chain_id: CHAIN.into(),
        block_time_ms: 1_000,
        balances: vec![(key(1).public().address(), 1_000_000)],
        validators: vec![GenesisValidator {
            public_key: key(1).public(),
            stake: 1_000,
            commission_bps: 500,
        }],
        governance: GovernanceSettings {
            mode: GovernanceMode::SeedAuthority,
            upgrade_authority: key(1).public(),
        },
        parameters: Parameters::default(),
    }
}

fn tagged(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(bytes);
    out
}

/// A module with the version section and nothing else: it parses, and fails the export checks.
fn version_only_module() -> Vec<u8> {
    const NAME: &str = "vexidus";
    let section: [u8; abi::version_section_len(NAME.len())] =
        abi::encode_version_section(NAME, 1, 1, abi::ABI_VERSION);
    let mut payload = vec![abi::VERSION_SECTION.len() as u8];
    payload.extend_from_slice(abi::VERSION_SECTION.as_bytes());
    payload.extend_from_slice(&section);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.push(0); // custom section
    module.push(payload.len() as u8);
    module.extend_from_slice(&payload);
    module
}

fn write(dir: &Path, target: &str, seeds: Vec<Vec<u8>>) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("seed file");
    }
    println!("{target}: {} seeds", seeds.len());
}

fn main() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let txs = transactions();
    let small = block(txs[..2].to_vec());
    let gossip = [
        Gossip::Block(small.clone()),
        Gossip::Vote(vote(5)),
        Gossip::Votes {
            votes: vec![vote(6), vote(7)],
            sent_at_ms: 1_700_000_000_000,
        },
    ];
    let proof = PeerProof::sign(b"peer", &key(3), CHAIN);
    let requests = [
        SyncRequest::Blocks { from: 1, max: 64 },
        SyncRequest::Block { hash: [5; 32] },
        SyncRequest::Hello {
            proof: Some(proof.clone()),
        },
        SyncRequest::Transactions {
            transactions: txs[..1].to_vec(),
        },
    ];
    let responses = [
        SyncResponse::Blocks {
            blocks: vec![small.clone()],
            certificate: vec![vote(5)],
        },
        SyncResponse::Hello { proof: Some(proof) },
        SyncResponse::Accepted { accepted: 3 },
    ];

    write(
        &corpus,
        "gossip",
        gossip
            .iter()
            .flat_map(|g| [encode(g), encode_json(g)])
            .collect(),
    );
    let mut sync = Vec::new();
    for r in &requests {
        sync.push(tagged(0, &encode(r)));
        sync.push(tagged(0, &encode_json(r)));
    }
    for r in &responses {
        sync.push(tagged(1, &encode(r)));
        sync.push(tagged(1, &encode_json(r)));
    }
    write(&corpus, "sync", sync);
    write(
        &corpus,
        "transaction",
        txs.iter()
            .map(|t| borsh::to_vec(t).expect("encodes"))
            .collect(),
    );
    write(
        &corpus,
        "block",
        vec![
            tagged(0, &borsh::to_vec(&small).expect("encodes")),
            tagged(0, &borsh::to_vec(&block(vec![])).expect("encodes")),
            tagged(1, &borsh::to_vec(&vote(9)).expect("encodes")),
        ],
    );
    let info = serde_json::json!({
        "name": "v2",
        "height": 100,
        "binary_url": "file:///tmp/vexidus-node",
        "sha256": "aa".repeat(32),
        "signature": hex(&key(1).sign(b"vexidus/upgrade/v1", CHAIN, &[0xaa; 32]).0),
        "authority": hex(&key(1).public().0),
        "info_url": "https://example.invalid/v2",
        "chain_id": CHAIN,
    });
    let mut unsigned = info.clone();
    unsigned["signature"] = serde_json::Value::Null;
    write(
        &corpus,
        "upgrade_info",
        vec![
            serde_json::to_vec_pretty(&info).expect("json"),
            serde_json::to_vec(&unsigned).expect("json"),
        ],
    );
    write(
        &corpus,
        "genesis_file",
        vec![serde_json::to_vec_pretty(&GenesisFile::from_config(&genesis())).expect("json")],
    );
    let mut blobs = vec![version_only_module(), b"\0asm\x01\0\0\0".to_vec()];
    if let Some(path) = std::env::args().nth(1) {
        let blob = std::fs::read(&path).expect("runtime blob");
        blobs.push(blob[..blob.len().min(4096)].to_vec());
    }
    write(&corpus, "runtime_blob", blobs);
    let ctx = BlockContext {
        height: 5,
        parent_hash: [1; 32],
        proposer: key(1).public(),
        implemented_upgrades: vec!["v2".into()],
    };
    write(
        &corpus,
        "runtime_input",
        vec![
            tagged(0, &genesis().encode()),
            tagged(1, &ctx.encode()),
            tagged(
                2,
                &ApplyArgs {
                    height: 5,
                    proposer: key(1).public(),
                    transaction: txs[2].clone(),
                }
                .encode(),
            ),
            tagged(
                3,
                &ValidateArgs {
                    height: 5,
                    transaction: txs[3].clone(),
                }
                .encode(),
            ),
            tagged(4, &Query::Account(Address([1; 32])).encode()),
            tagged(4, &Query::PlanStatus("v2".into()).encode()),
            tagged(
                5,
                &MigrateArgs {
                    from: RuntimeVersion {
                        spec_name: "vexidus".into(),
                        spec_version: 1,
                        impl_version: 1,
                        abi_version: abi::ABI_VERSION,
                    },
                    height: 9,
                }
                .encode(),
            ),
        ],
    );
    // The guard's stream: (peer, time step, length, message) records.
    let mut stream = Vec::new();
    for (i, g) in gossip[1..].iter().enumerate() {
        let bytes = encode(g);
        let len = bytes.len().min(255);
        stream.extend_from_slice(&[0, i as u8, 3, len as u8]);
        stream.extend_from_slice(&bytes[..len]);
    }
    let replayed = [stream.clone(), stream.clone()].concat();
    write(&corpus, "guard", vec![stream, replayed]);
    write(
        &corpus,
        "multisig_nesting",
        vec![vec![0; 64], vec![0xff; 256], (0..=255).collect()],
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
