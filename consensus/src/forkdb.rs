//! The fork database: every known block above the last irreversible block, with the liveness
//! record each block implies, and the fork choice. Nothing below the root exists here, so no
//! fork choice can ever cross the last irreversible block.

use crate::schedule::failover_delay_ms;
use crate::types::{BlockMeta, ValidatorSet};
use std::collections::{BTreeMap, BTreeSet};
use vexidus_runtime_api::schedule::{MissedBlockRecord, record_block};
use vexidus_runtime_api::{Address, Hash};

/// Missed-block accounting as of a block; a pure function of the chain up to it, kept by the
/// same rule as the runtime's on-chain record (`runtime_api::schedule::record_block`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    /// The block's (height, proposer, consecutive blocks by that proposer).
    pub last: Option<(u64, Address, u32)>,
    /// (consecutive misses, all misses) per validator.
    pub missed: BTreeMap<Address, (u32, u64)>,
    /// Validators out of the rotation.
    pub skipped: BTreeSet<Address>,
}

impl MissedBlockRecord for Liveness {
    fn last(&mut self) -> Option<(u64, Address, u32)> {
        self.last
    }
    fn set_last(&mut self, last: (u64, Address, u32)) {
        self.last = Some(last);
    }
    fn missed(&mut self, who: &Address) -> (u32, u64) {
        self.missed.get(who).copied().unwrap_or((0, 0))
    }
    fn set_missed(&mut self, who: &Address, missed: (u32, u64)) {
        self.missed.insert(*who, missed);
    }
    fn skipped(&mut self) -> BTreeSet<Address> {
        self.skipped.clone()
    }
    fn set_skipped(&mut self, skipped: BTreeSet<Address>) {
        self.skipped = skipped;
    }
    fn blake3(&self, bytes: &[u8]) -> [u8; 32] {
        *blake3::hash(bytes).as_bytes()
    }
}

/// A block in the fork database.
#[derive(Clone, Debug)]
pub struct Node {
    /// The block.
    pub meta: BlockMeta,
    /// Liveness after the block.
    pub liveness: Liveness,
    /// More than 2/3 of stake prevoted it.
    pub justified: bool,
    children: Vec<Hash>,
}

/// Why a block was not added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// Its parent is unknown: sync it first.
    MissingParent(Hash),
    /// It is at or below the last irreversible block, on another branch.
    BelowRoot,
    /// Already known.
    Duplicate,
    /// The parent's height is not one less.
    BadHeight,
    /// The proposer is not an active validator.
    NotAValidator(Address),
    /// Its timestamp is earlier than the schedule lets its proposer produce.
    TooEarly {
        /// The proposer's place among the producers of the height (0: the leader).
        position: usize,
        /// The earliest timestamp allowed at that place.
        earliest_ms: u64,
        /// The block's timestamp.
        timestamp_ms: u64,
    },
}

impl std::fmt::Display for InsertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InsertError::MissingParent(p) => write!(f, "its parent {} is unknown", hex8(p)),
            InsertError::BelowRoot => f.write_str("it is at or below the last irreversible block"),
            InsertError::Duplicate => f.write_str("it is known already"),
            InsertError::BadHeight => f.write_str("its height is not its parent's plus one"),
            InsertError::NotAValidator(a) => {
                write!(f, "its proposer {a} is not an active validator")
            }
            InsertError::TooEarly {
                position,
                earliest_ms,
                timestamp_ms,
            } => write!(
                f,
                "off the schedule: its proposer is producer {position} of the height and may \
                 produce from {earliest_ms} ms, the block says {timestamp_ms} ms"
            ),
        }
    }
}

fn hex8(h: &Hash) -> String {
    h[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// When blocks may come, from chain data: the target interval, and the failover unit by which
/// the backups of a slot wait longer (SPEC §10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Target block interval.
    pub block_time_ms: u64,
    /// Failover unit: backup k waits 5 + 3 × (k − 1) units after the interval.
    pub failover_base_ms: u64,
}

impl Timing {
    /// The earliest timestamp of a block by the producer at `position` on a parent stamped
    /// `parent_ms`: the interval, plus the failover delay of the position.
    pub fn earliest_ms(&self, parent_ms: u64, position: usize) -> u64 {
        parent_ms
            .saturating_add(self.block_time_ms)
            .saturating_add(failover_delay_ms(position, self.failover_base_ms))
    }
}

/// The schedule rule: a block on `parent` is valid only from one of the height's producers,
/// and from the one at place k only with a timestamp at least [`Timing::earliest_ms`] of k.
/// Every active validator has a place (skipped ones behind the others), so the rule is about
/// time: a backup cannot take a slot before its failover delay has passed after the parent.
pub fn check_schedule(
    parent: &Node,
    meta: &BlockMeta,
    set: &ValidatorSet,
    timing: Timing,
) -> Result<(), InsertError> {
    let order = producers(parent, meta.height, set, parent.meta.in_grace);
    let Some(position) = order.iter().position(|a| *a == meta.proposer) else {
        return Err(InsertError::NotAValidator(meta.proposer));
    };
    let earliest_ms = timing.earliest_ms(parent.meta.timestamp_ms, position);
    if meta.timestamp_ms < earliest_ms {
        return Err(InsertError::TooEarly {
            position,
            earliest_ms,
            timestamp_ms: meta.timestamp_ms,
        });
    }
    Ok(())
}

/// The producers of `height` on top of `parent`, in failover order.
pub fn producers(parent: &Node, height: u64, set: &ValidatorSet, in_grace: bool) -> Vec<Address> {
    crate::schedule::producers(
        height,
        (parent.meta.height, parent.meta.proposer),
        set,
        &parent.liveness.skipped,
        in_grace,
    )
}

/// The liveness record after `meta` on top of `parent`.
pub fn next_liveness(parent: &Node, meta: &BlockMeta, set: &ValidatorSet) -> Liveness {
    let mut l = parent.liveness.clone();
    let members: Vec<(Address, u128)> = set.members.iter().map(|(a, s)| (*a, *s)).collect();
    record_block(&mut l, meta.height, meta.proposer, &members, meta.in_grace);
    l
}

/// The fork database.
#[derive(Clone, Debug)]
pub struct ForkDb {
    root: Hash,
    nodes: BTreeMap<Hash, Node>,
}

impl ForkDb {
    /// A database rooted at `root` (the last irreversible block) with its liveness record.
    pub fn new(root: BlockMeta, liveness: Liveness) -> Self {
        let hash = root.hash;
        let node = Node {
            meta: root,
            liveness,
            justified: true,
            children: Vec::new(),
        };
        Self {
            root: hash,
            nodes: [(hash, node)].into(),
        }
    }

    /// The last irreversible block.
    pub fn root(&self) -> &Node {
        &self.nodes[&self.root]
    }

    /// A block, if known.
    pub fn get(&self, hash: &Hash) -> Option<&Node> {
        self.nodes.get(hash)
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether only the root is held.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    /// Adds a block whose parent is known and which the schedule allows ([`check_schedule`]).
    pub fn insert(
        &mut self,
        meta: BlockMeta,
        set: &ValidatorSet,
        timing: Timing,
    ) -> Result<(), InsertError> {
        if self.nodes.contains_key(&meta.hash) {
            return Err(InsertError::Duplicate);
        }
        if meta.height <= self.root().meta.height {
            return Err(InsertError::BelowRoot);
        }
        let Some(parent) = self.nodes.get(&meta.parent) else {
            return Err(InsertError::MissingParent(meta.parent));
        };
        if parent.meta.height + 1 != meta.height {
            return Err(InsertError::BadHeight);
        }
        if set.stake(&meta.proposer) == 0 {
            return Err(InsertError::NotAValidator(meta.proposer));
        }
        check_schedule(parent, &meta, set, timing)?;
        let liveness = next_liveness(parent, &meta, set);
        let hash = meta.hash;
        let parent_hash = meta.parent;
        self.nodes.insert(
            hash,
            Node {
                meta,
                liveness,
                justified: false,
                children: Vec::new(),
            },
        );
        if let Some(p) = self.nodes.get_mut(&parent_hash) {
            p.children.push(hash);
        }
        Ok(())
    }

    /// Marks a block justified.
    pub fn justify(&mut self, hash: &Hash) {
        if let Some(n) = self.nodes.get_mut(hash) {
            n.justified = true;
        }
    }

    /// Whether `a` is `b` or an ancestor of `b` (both must be held).
    pub fn is_ancestor_or_equal(&self, a: &Hash, b: &Hash) -> bool {
        let Some(target) = self.nodes.get(a) else {
            return false;
        };
        let mut cur = self.nodes.get(b);
        while let Some(n) = cur {
            if n.meta.height < target.meta.height {
                return false;
            }
            if n.meta.hash == *a {
                return true;
            }
            cur = self.nodes.get(&n.meta.parent);
        }
        false
    }

    /// Whether the two blocks lie on one chain.
    pub fn compatible(&self, a: &Hash, b: &Hash) -> bool {
        self.is_ancestor_or_equal(a, b) || self.is_ancestor_or_equal(b, a)
    }

    /// The highest justified block (ties: lowest hash); the root when nothing above it is.
    pub fn best_justified(&self) -> &Node {
        self.nodes
            .values()
            .filter(|n| n.justified)
            .max_by(|a, b| {
                a.meta
                    .height
                    .cmp(&b.meta.height)
                    .then_with(|| b.meta.hash.cmp(&a.meta.hash))
            })
            .unwrap_or_else(|| self.root())
    }

    /// Fork choice: the highest justified block (ties: lowest hash), then the longest chain
    /// above it (ties: lowest hash). Deterministic, and always a descendant of the root.
    pub fn best_head(&self) -> &Node {
        let justified = self.best_justified();
        let mut best = justified;
        let mut stack = vec![justified.meta.hash];
        while let Some(h) = stack.pop() {
            let n = &self.nodes[&h];
            if n.meta.height > best.meta.height
                || (n.meta.height == best.meta.height && n.meta.hash < best.meta.hash)
            {
                best = n;
            }
            stack.extend(n.children.iter().copied());
        }
        best
    }

    /// The blocks from the root (exclusive) to `hash` (inclusive), oldest first.
    pub fn path_from_root(&self, hash: &Hash) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut cur = self.nodes.get(hash);
        while let Some(n) = cur {
            if n.meta.hash == self.root {
                break;
            }
            out.push(n);
            cur = self.nodes.get(&n.meta.parent);
        }
        out.reverse();
        out
    }

    /// Makes `hash` (a held descendant of the root) the new root: everything not descending
    /// from it is dropped.
    pub fn set_root(&mut self, hash: &Hash) {
        if !self.nodes.contains_key(hash) || *hash == self.root {
            return;
        }
        let mut keep = BTreeSet::new();
        let mut stack = vec![*hash];
        while let Some(h) = stack.pop() {
            if let Some(n) = self.nodes.get(&h) {
                keep.insert(h);
                stack.extend(n.children.iter().copied());
            }
        }
        self.nodes.retain(|h, _| keep.contains(h));
        self.root = *hash;
        if let Some(r) = self.nodes.get_mut(hash) {
            r.justified = true;
        }
    }
}
