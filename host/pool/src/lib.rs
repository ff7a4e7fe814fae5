//! Ingress and the transaction pool.
//!
//! Ingress turns bytes from RPC into a pooled transaction: size cap, Borsh decode, chain id,
//! signature (ZIP-215), then the runtime's own checks (nonce, balance for `max_gas × gas_price`,
//! expiry). The pool keeps each sender's transactions in nonce order with no gaps, and hands them
//! out in arrival order, which never puts a sender's nonce n+1 before n.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use vexidus_chain::{Chain, ChainError};
use vexidus_runtime_api::abi::{InvalidTransaction, ValidTransaction};
use vexidus_runtime_api::signing;
use vexidus_runtime_api::transaction::{MAX_TRANSACTION_BYTES, Operation};
use vexidus_runtime_api::{Address, Hash, SignedTransaction};

/// What ingress asks of the chain: its id, and the runtime's verdict on a transaction at the
/// head. The pool never holds the chain; it asks through this, so callers can run the checks
/// before they lock the pool.
pub trait TxValidator {
    /// The chain id every transaction must carry.
    fn chain_id(&self) -> &str;
    /// The runtime's checks of a transaction against the head state (nonce, funds for its
    /// maximum fee, expiry).
    fn validate(
        &self,
        tx: &SignedTransaction,
    ) -> Result<Result<ValidTransaction, InvalidTransaction>, ChainError>;
    /// A sender's balance and the gas price, at the head.
    fn funds(&self, sender: &Address) -> Result<(u128, u128), ChainError>;
}

impl TxValidator for Chain {
    fn chain_id(&self) -> &str {
        Chain::chain_id(self)
    }

    fn validate(
        &self,
        tx: &SignedTransaction,
    ) -> Result<Result<ValidTransaction, InvalidTransaction>, ChainError> {
        self.validate_transaction(tx)
    }

    fn funds(&self, sender: &Address) -> Result<(u128, u128), ChainError> {
        use vexidus_runtime_api::queries;
        let balance = self.query(queries::Account(*sender))?.balance;
        let gas_price = self.query(queries::Parameters)?.gas_price;
        Ok((balance, gas_price))
    }
}

/// Why a transaction was refused at the door.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// Larger than the cap.
    #[error("transaction is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// Not a Borsh-encoded signed transaction.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// For another chain.
    #[error("wrong chain id: transaction is for {found:?}, this node runs {expected:?}")]
    WrongChain {
        /// This chain.
        expected: String,
        /// The transaction's.
        found: String,
    },
    /// A multisig proposal wraps another multisig operation (the runtime would refuse it; it is
    /// refused here, before it costs a signature check or a place in the pool).
    #[error(
        "a multisig operation may not wrap another multisig operation (ProposeMultiSig wraps {0})"
    )]
    NestedMultiSig(&'static str),
    /// The signature does not verify.
    #[error("bad signature: the signature does not verify for sender {0}")]
    BadSignature(String),
    /// The runtime refused it.
    #[error("{0}")]
    Invalid(InvalidTransaction),
    /// Already in the pool.
    #[error("transaction {0} is already pending")]
    AlreadyPending(String),
    /// A nonce the pool cannot place: a gap after the pending ones, or a clash with another
    /// pending transaction.
    #[error("nonce {found} is in the future: the sender's next usable nonce is {expected}")]
    NonceGap {
        /// Next usable nonce (account nonce + pending).
        expected: u64,
        /// The transaction's.
        found: u64,
    },
    /// Another pending transaction already uses this nonce.
    #[error("nonce {0} is already used by another pending transaction of this sender")]
    NonceTaken(u64),
    /// A typed RPC method got a transaction with another operation.
    #[error("this method takes {expected} transactions only; the transaction carries {found}")]
    WrongOperation {
        /// What the method takes.
        expected: &'static str,
        /// What it got.
        found: &'static str,
    },
    /// The pool is full.
    #[error("transaction pool is full ({0} transactions); try again later")]
    PoolFull(usize),
    /// The pool's byte budget is spent by senders holding less than this one would.
    #[error("transaction pool is full ({0} bytes); try again later")]
    PoolBytesFull(usize),
    /// The sender already has as many pending transactions as one sender may.
    #[error(
        "sender already has {0} pending transactions, the most one sender may have; wait for some to be included"
    )]
    SenderLimit(usize),
    /// The sender's pending transactions together could spend more than its balance.
    #[error(
        "the sender's pending transactions with this one could spend {needed} nanoVXS (fees at max gas and amounts moved), more than its balance of {balance}"
    )]
    Overcommitted {
        /// What they could spend together.
        needed: u128,
        /// The balance at the head.
        balance: u128,
    },
    /// The node could not check it.
    #[error("node error: {0}")]
    Node(#[from] ChainError),
}

/// A pending transaction.
#[derive(Debug, Clone)]
pub struct Pooled {
    /// The transaction.
    pub tx: SignedTransaction,
    /// Its hash.
    pub hash: Hash,
    /// Sender address.
    pub sender: Address,
    seq: u64,
    /// Encoded size.
    size: usize,
    /// What its operations move out of the sender's balance (transfers, bonds).
    value: u128,
}

/// What one sender's pending transactions add up to.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    bytes: usize,
    max_gas: u128,
    value: u128,
}

/// What one block may carry: the chain's `max_txs_per_block` and `max_block_bytes` (the
/// runtime refuses a block over either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockBudget {
    /// Most transactions.
    pub transactions: usize,
    /// Most bytes of encoded transactions.
    pub bytes: usize,
}

impl BlockBudget {
    /// No limit (for listing the pool).
    pub const UNLIMITED: BlockBudget = BlockBudget {
        transactions: usize::MAX,
        bytes: usize::MAX,
    };

    /// The budget the parameters set.
    pub fn of(p: &vexidus_runtime_api::Parameters) -> Self {
        BlockBudget {
            transactions: p.max_txs_per_block as usize,
            bytes: p.max_block_bytes as usize,
        }
    }
}

/// The pool's budgets.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Most pending transactions.
    pub max_transactions: usize,
    /// Most bytes of pending transactions (encoded). When a transaction does not fit, the
    /// sender holding the most bytes, if it holds more than the newcomer's sender would,
    /// loses its highest nonces until it fits.
    pub max_bytes: usize,
    /// Most pending transactions of one sender.
    pub max_per_sender: usize,
    /// Refuse a transaction when the sender's pending ones with it could spend more than its
    /// balance (fees at max gas, amounts moved). The harness leaves it off, so tests can put
    /// overdrafts in blocks.
    pub check_funds: bool,
}

impl Default for PoolLimits {
    /// The node's defaults.
    fn default() -> Self {
        Self {
            max_transactions: 100_000,
            max_bytes: 128 << 20,
            max_per_sender: 256,
            check_funds: true,
        }
    }
}

impl PoolLimits {
    /// No limit but the count (the harness, benchmarks).
    pub fn count_only(max_transactions: usize) -> Self {
        Self {
            max_transactions,
            max_bytes: usize::MAX,
            max_per_sender: usize::MAX,
            check_funds: false,
        }
    }
}

/// Pending transactions.
#[derive(Debug)]
pub struct Pool {
    by_hash: HashMap<Hash, Pooled>,
    by_sender: HashMap<Address, BTreeMap<u64, Hash>>,
    totals: HashMap<Address, Totals>,
    /// Senders by the bytes they hold, for eviction.
    by_bytes: std::collections::BTreeSet<(usize, Address)>,
    bytes: usize,
    by_arrival: BTreeMap<u64, Hash>,
    next_seq: u64,
    limits: PoolLimits,
    verified: vexidus_chain::sigcheck::VerifiedCache,
    /// The byte budget the pool was last scanned against for transactions too large for it,
    /// and the largest transaction admitted since: a scan is needed only when the budget fell
    /// below the one scanned against, or something larger than it came in.
    scanned_budget: usize,
    largest_since_scan: usize,
}

impl Pool {
    /// An empty pool holding at most `capacity` transactions, with no other budget.
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(PoolLimits::count_only(capacity))
    }

    /// An empty pool within `limits`.
    pub fn with_limits(limits: PoolLimits) -> Self {
        Self {
            by_hash: HashMap::new(),
            by_sender: HashMap::new(),
            totals: HashMap::new(),
            by_bytes: std::collections::BTreeSet::new(),
            bytes: 0,
            by_arrival: BTreeMap::new(),
            next_seq: 0,
            limits,
            verified: vexidus_chain::sigcheck::VerifiedCache::new(
                limits.max_transactions.clamp(1_024, 1 << 20),
            ),
            scanned_budget: usize::MAX,
            largest_since_scan: 0,
        }
    }

    /// Bytes of pending transactions (encoded).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// How many transactions of `sender` are pending.
    pub fn pending_of(&self, sender: &Address) -> u64 {
        self.by_sender.get(sender).map_or(0, |s| s.len() as u64)
    }

    /// Whether `hash` is pending.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// What the pool already knows of a transaction, before its signature is checked: `Err`
    /// if it is pending (nothing more to check), `Ok(true)` if this node verified its
    /// signature before (not to be verified again).
    pub fn seen(&self, hash: &Hash) -> Result<bool, TxError> {
        self.check_not_pending(hash)?;
        Ok(self.verified.contains(hash))
    }

    /// Checks and adds a decoded transaction on the calling thread; returns its hash. A
    /// signature this node has verified before (the same transaction submitted again) is not
    /// verified again. The in-process harness admits this way; the node checks batches with
    /// [`check`] before it locks the pool, then calls [`Self::admit_valid`].
    pub fn admit_decoded(
        &mut self,
        chain: &impl TxValidator,
        tx: SignedTransaction,
    ) -> Result<Hash, TxError> {
        check_shape(chain, &tx)?;
        let hash = signing::transaction_hash(&tx);
        self.check_not_pending(&hash)?;
        if !self.verified.contains(&hash) {
            if !signing::verify_transaction(&tx) {
                return Err(TxError::BadSignature(tx.transaction.sender.to_string()));
            }
            self.verified.insert(hash);
        }
        let valid = chain.validate(&tx)?.map_err(TxError::Invalid)?;
        self.insert_valid(chain, Checked { tx, hash, valid })
    }

    /// Adds a transaction [`check`] passed (in a batch, before the pool was locked); returns
    /// its hash.
    pub fn admit_valid(
        &mut self,
        chain: &impl TxValidator,
        checked: Checked,
    ) -> Result<Hash, TxError> {
        self.check_not_pending(&checked.hash)?;
        self.verified.insert(checked.hash);
        self.insert_valid(chain, checked)
    }

    fn check_not_pending(&self, hash: &Hash) -> Result<(), TxError> {
        if self.by_hash.contains_key(hash) {
            return Err(TxError::AlreadyPending(format!("0x{}", hex::encode(hash))));
        }
        Ok(())
    }

    /// Places a valid transaction after its sender's pending ones, within the budgets.
    fn insert_valid(
        &mut self,
        chain: &impl TxValidator,
        checked: Checked,
    ) -> Result<Hash, TxError> {
        let Checked { tx, hash, valid } = checked;
        let sender = tx.transaction.sender.address();
        let pending = self.by_sender.get(&sender);
        let held = pending.map_or(0, BTreeMap::len);
        if held >= self.limits.max_per_sender {
            return Err(TxError::SenderLimit(self.limits.max_per_sender));
        }
        let nonce = tx.transaction.nonce;
        if pending.is_some_and(|p| p.contains_key(&nonce)) {
            return Err(TxError::NonceTaken(nonce));
        }
        // Pending nonces always run without gaps from the account nonce.
        let next = valid.account_nonce
            + pending.map_or(0, |p| p.range(valid.account_nonce..).count() as u64);
        if nonce != next {
            return Err(TxError::NonceGap {
                expected: next,
                found: nonce,
            });
        }
        if self.by_hash.len() >= self.limits.max_transactions {
            return Err(TxError::PoolFull(self.limits.max_transactions));
        }
        let value = moved(&tx);
        // The runtime checked this transaction alone against the balance; with others of the
        // sender pending, they must fit together (fees at their max gas, amounts moved), or
        // the later ones would only be refused in a block, at the producer's cost.
        let before = self.totals.get(&sender).copied().unwrap_or_default();
        if held > 0 && self.limits.check_funds {
            let (balance, gas_price) = chain.funds(&sender)?;
            let needed = (before.max_gas + u128::from(tx.transaction.max_gas))
                .saturating_mul(gas_price)
                .saturating_add(before.value)
                .saturating_add(value);
            if needed > balance {
                return Err(TxError::Overcommitted { needed, balance });
            }
        }
        let size = borsh::object_length(&tx).unwrap_or(usize::MAX);
        self.make_room(&sender, before.bytes, size)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(nonce, hash);
        self.add_totals(&sender, size as isize, tx.transaction.max_gas, value, true);
        self.by_arrival.insert(seq, hash);
        self.largest_since_scan = self.largest_since_scan.max(size);
        self.by_hash.insert(
            hash,
            Pooled {
                tx,
                hash,
                sender,
                seq,
                size,
                value,
            },
        );
        Ok(hash)
    }

    /// Frees bytes for `size` more of `sender` (which holds `holds`): evicts the highest nonces
    /// of whoever holds the most, while that is more than `sender` would.
    fn make_room(&mut self, sender: &Address, holds: usize, size: usize) -> Result<(), TxError> {
        while self.bytes.saturating_add(size) > self.limits.max_bytes {
            let victim = self
                .by_bytes
                .iter()
                .next_back()
                .filter(|(bytes, who)| who != sender && *bytes > holds.saturating_add(size))
                .map(|(_, who)| *who);
            let Some(victim) = victim else {
                return Err(TxError::PoolBytesFull(self.limits.max_bytes));
            };
            let last = self
                .by_sender
                .get(&victim)
                .and_then(|s| s.values().next_back().copied());
            match last {
                Some(h) => {
                    self.remove(&h);
                }
                None => return Err(TxError::PoolBytesFull(self.limits.max_bytes)),
            }
        }
        Ok(())
    }

    fn add_totals(&mut self, sender: &Address, bytes: isize, max_gas: u64, value: u128, add: bool) {
        let t = self.totals.entry(*sender).or_default();
        self.by_bytes.remove(&(t.bytes, *sender));
        t.bytes = t.bytes.saturating_add_signed(bytes);
        if add {
            t.max_gas += u128::from(max_gas);
            t.value = t.value.saturating_add(value);
        } else {
            t.max_gas -= u128::from(max_gas);
            t.value = t.value.saturating_sub(value);
        }
        self.bytes = self.bytes.saturating_add_signed(bytes);
        if t.bytes == 0 && t.max_gas == 0 {
            self.totals.remove(sender);
        } else {
            self.by_bytes.insert((t.bytes, *sender));
        }
    }

    /// Every pending transaction in arrival order.
    pub fn all(&self) -> Vec<SignedTransaction> {
        self.ready(BlockBudget::UNLIMITED)
    }

    /// Drops the transactions no block of `budget` can carry (the budget was lowered since
    /// they were admitted), with their senders' later nonces; returns how many left.
    pub fn evict_oversized(&mut self, budget: BlockBudget) -> usize {
        if budget.bytes >= self.scanned_budget && self.largest_since_scan <= budget.bytes {
            return 0;
        }
        self.scanned_budget = budget.bytes;
        self.largest_since_scan = 0;
        let oversized: Vec<(Hash, String)> = self
            .by_hash
            .values()
            .filter(|p| p.size > budget.bytes)
            .map(|p| (p.hash, String::from("larger than a block may carry")))
            .collect();
        let before = self.by_hash.len();
        self.prune(&[], &oversized);
        before - self.by_hash.len()
    }

    /// Transactions for the next block in arrival order, within `budget`. One that does not fit
    /// in the bytes left is passed over, and with it its sender's later ones (they could not be
    /// included before it); smaller ones of other senders may still fill the block.
    pub fn ready(&self, budget: BlockBudget) -> Vec<SignedTransaction> {
        let mut chosen = Vec::new();
        let mut bytes = 0usize;
        let mut passed_over: HashSet<Address> = HashSet::new();
        for p in self.by_arrival.values().filter_map(|h| self.by_hash.get(h)) {
            if chosen.len() >= budget.transactions {
                break;
            }
            if passed_over.contains(&p.sender) {
                continue;
            }
            if bytes.saturating_add(p.size) > budget.bytes {
                passed_over.insert(p.sender);
                continue;
            }
            bytes += p.size;
            chosen.push(p.tx.clone());
        }
        chosen
    }

    fn remove(&mut self, hash: &Hash) -> Option<Pooled> {
        let p = self.by_hash.remove(hash)?;
        self.by_arrival.remove(&p.seq);
        self.add_totals(
            &p.sender,
            -(p.size as isize),
            p.tx.transaction.max_gas,
            p.value,
            false,
        );
        if let Some(s) = self.by_sender.get_mut(&p.sender) {
            s.remove(&p.tx.transaction.nonce);
            if s.is_empty() {
                self.by_sender.remove(&p.sender);
            }
        }
        Some(p)
    }

    /// Forgets what a block included, and what it refused together with every later nonce of
    /// the same senders (they can no longer be included in order).
    pub fn prune(&mut self, included: &[Hash], rejected: &[(Hash, String)]) {
        for h in included {
            self.remove(h);
        }
        let mut cut: HashSet<(Address, u64)> = HashSet::new();
        for (h, _) in rejected {
            if let Some(p) = self.remove(h) {
                cut.insert((p.sender, p.tx.transaction.nonce));
            }
        }
        for (sender, from) in cut {
            let later: Vec<Hash> = self
                .by_sender
                .get(&sender)
                .map(|s| s.range(from..).map(|(_, h)| *h).collect())
                .unwrap_or_default();
            for h in later {
                self.remove(&h);
            }
        }
    }
}

/// A transaction whose chain id, signature and runtime checks passed against the head state,
/// ready for the pool's own checks (duplicates, nonce order, capacity).
pub struct Checked {
    tx: SignedTransaction,
    hash: Hash,
    valid: ValidTransaction,
}

impl Checked {
    /// The transaction.
    pub fn transaction(&self) -> &SignedTransaction {
        &self.tx
    }
}

/// Ingress's checks that need the chain but not the pool (chain id, the signature's verdict from
/// a batch, the runtime's validation at the head), so a batch runs them in parallel before it
/// locks the pool; [`Pool::admit_valid`] does the rest. `hash` is the transaction's
/// ([`signing::transaction_hash`]).
pub fn check(
    chain: &impl TxValidator,
    tx: SignedTransaction,
    hash: Hash,
    signature_ok: bool,
) -> Result<Checked, TxError> {
    check_shape(chain, &tx)?;
    if !signature_ok {
        return Err(TxError::BadSignature(tx.transaction.sender.to_string()));
    }
    let valid = chain.validate(&tx)?.map_err(TxError::Invalid)?;
    Ok(Checked { tx, hash, valid })
}

/// The checks of a transaction's own shape and chain id, before any signature or state is read.
fn check_shape(chain: &impl TxValidator, tx: &SignedTransaction) -> Result<(), TxError> {
    if tx.transaction.chain_id != chain.chain_id() {
        return Err(TxError::WrongChain {
            expected: chain.chain_id().into(),
            found: tx.transaction.chain_id.clone(),
        });
    }
    for op in &tx.transaction.operations {
        if let Operation::ProposeMultiSig { op: inner, .. } = op
            && matches!(
                **inner,
                Operation::CreateMultiSig { .. }
                    | Operation::ProposeMultiSig { .. }
                    | Operation::ApproveMultiSig { .. }
                    | Operation::RevokeMultiSig { .. }
            )
        {
            return Err(TxError::NestedMultiSig(inner.name()));
        }
    }
    Ok(())
}

/// What a transaction's operations move out of the sender's balance, besides the fee.
fn moved(tx: &SignedTransaction) -> u128 {
    tx.transaction
        .operations
        .iter()
        .map(|op| match op {
            Operation::Transfer { amount, .. } | Operation::Delegate { amount, .. } => *amount,
            Operation::RegisterValidator { stake, .. } => *stake,
            _ => 0,
        })
        .fold(0u128, u128::saturating_add)
}

/// Decodes a Borsh-encoded signed transaction under the size cap.
pub fn decode(bytes: &[u8]) -> Result<SignedTransaction, TxError> {
    if bytes.len() > MAX_TRANSACTION_BYTES {
        return Err(TxError::TooLarge {
            size: bytes.len(),
            limit: MAX_TRANSACTION_BYTES,
        });
    }
    borsh::from_slice(bytes).map_err(|e| TxError::Malformed(e.to_string()))
}
