//! Typed runtime queries: one type per [`Query`] variant, whose answer has one type, so the
//! host asks `chain.query(queries::Account(a))` and gets an [`AccountInfo`] back instead of
//! matching a [`QueryResponse`]. The wire format stays the `Query`/`QueryResponse` pair;
//! an answer of the wrong variant (a runtime that broke the ABI) is one error, made in one
//! place ([`WrongAnswer`]).

use crate::abi::{ConsensusView, LivenessView, PlanView, ProposalView, Query, QueryResponse};
use crate::primitives::Address;
use crate::state::{
    AccountInfo, GovernanceSettings, MultiSigAccount, Parameters as ParameterSet,
    PlanStatus as Status, ValidatorInfo,
};
use alloc::{boxed::Box, string::String, vec::Vec};
use core::fmt;

/// A question whose answer has one type.
pub trait TypedQuery {
    /// The answer.
    type Answer;

    /// The question on the wire.
    fn query(&self) -> Query;

    /// The answer out of the wire response; the response itself when it is another variant.
    fn answer(response: QueryResponse) -> Result<Self::Answer, Box<QueryResponse>>;
}

/// The runtime answered a query with another query's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrongAnswer {
    /// The question.
    pub query: Query,
    /// What came back.
    pub answer: Box<QueryResponse>,
}

impl fmt::Display for WrongAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the runtime answered {:?} with {:?}, which is not its answer",
            self.query, self.answer
        )
    }
}

impl core::error::Error for WrongAnswer {}

/// Asks `q` through `ask` (which sends a wire query and returns the wire answer).
pub fn ask<Q: TypedQuery, E: From<WrongAnswer>>(
    q: &Q,
    ask: impl FnOnce(Query) -> Result<QueryResponse, E>,
) -> Result<Q::Answer, E> {
    let query = q.query();
    let response = ask(query.clone())?;
    Q::answer(response).map_err(|answer| WrongAnswer { query, answer }.into())
}

/// The raw wire query answers with the raw wire response.
impl TypedQuery for Query {
    type Answer = QueryResponse;

    fn query(&self) -> Query {
        self.clone()
    }

    fn answer(response: QueryResponse) -> Result<QueryResponse, Box<QueryResponse>> {
        Ok(response)
    }
}

macro_rules! answer_of {
    ($name:ident => $answer:ty, |$q:ident| $query:expr, $variant:ident) => {
        impl TypedQuery for $name {
            type Answer = $answer;

            fn query(&self) -> Query {
                let $q = self;
                $query
            }

            fn answer(response: QueryResponse) -> Result<$answer, Box<QueryResponse>> {
                match response {
                    QueryResponse::$variant(a) => Ok(a),
                    other => Err(Box::new(other)),
                }
            }
        }
    };
}

/// Balance and nonce of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account(pub Address);
answer_of!(Account => AccountInfo, |q| Query::Account(q.0), Account);

/// Every registered validator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validators;
answer_of!(Validators => Vec<ValidatorInfo>, |_q| Query::Validators, Validators);

/// One validator, if the address is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator(pub Address);
answer_of!(Validator => Option<ValidatorInfo>, |q| Query::Validator(q.0), Validator);

/// The governed parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parameters;
answer_of!(Parameters => ParameterSet, |_q| Query::Parameters, Parameters);

/// Governance settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Governance;
answer_of!(Governance => GovernanceSettings, |_q| Query::Governance, Governance);

/// The chain id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainId;
answer_of!(ChainId => String, |_q| Query::ChainId, ChainId);

/// The treasury account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Treasury;
answer_of!(Treasury => Address, |_q| Query::Treasury, Treasury);

/// The active upgrade plan with its tally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradePlan;
answer_of!(UpgradePlan => Option<PlanView>, |_q| Query::UpgradePlan, UpgradePlan);

/// Where the named plan stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanStatus(pub String);
answer_of!(PlanStatus => Option<Status>, |q| Query::PlanStatus(q.0.clone()), PlanStatus);

/// Until which height a newly activated runtime may be rolled back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraceUntil;
answer_of!(GraceUntil => u64, |_q| Query::GraceUntil, GraceUntil);

/// A proposal and its tally as of `at_height`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The proposal id.
    pub id: u64,
    /// The height the tally is for.
    pub at_height: u64,
}
answer_of!(Proposal => Option<ProposalView>, |q| Query::Proposal {
            id: q.id,
            at_height: q.at_height,
        }, Proposal);

/// A multisig account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiSig(pub Address);
answer_of!(MultiSig => Option<MultiSigAccount>, |q| Query::MultiSig(q.0), MultiSig);

/// The blob of the pending runtime plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanCode;
answer_of!(PlanCode => Option<Vec<u8>>, |_q| Query::PlanCode, PlanCode);

/// A validator's missed-block record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liveness(pub Address);
answer_of!(Liveness => LivenessView, |q| Query::Liveness(q.0), Liveness);

/// The validator set and its weights for consensus at `at_height`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consensus {
    /// The height the set is for.
    pub at_height: u64,
}
answer_of!(Consensus => ConsensusView, |q| Query::Consensus {
            at_height: q.at_height,
        }, Consensus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_query_takes_its_answer_and_refuses_another() {
        let q = Account(Address([1; 32]));
        assert_eq!(q.query(), Query::Account(Address([1; 32])));
        let info = AccountInfo {
            balance: 3,
            nonce: 1,
        };
        let got: Result<AccountInfo, WrongAnswer> = ask(&q, |_| Ok(QueryResponse::Account(info)));
        assert_eq!(got, Ok(info));
        let wrong: Result<AccountInfo, WrongAnswer> = ask(&q, |_| Ok(QueryResponse::GraceUntil(5)));
        let e = wrong.expect_err("another variant");
        assert_eq!(*e.answer, QueryResponse::GraceUntil(5));
        assert!(e.to_string().contains("GraceUntil(5)"), "{e}");
    }
}
