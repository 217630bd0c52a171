//! The sandbox processor's SQL: its accounts, connections, authorization codes,
//! customers, tokens, charges, holds, refunds and stored replies (the `sandbox_*`
//! tables), a file per kind of object. Every function returns `QueryResult`; the flows
//! decide what a result means.

mod accounts;
mod charges;
mod customers;
mod holds;
mod refunds;
mod tokens;

pub use accounts::*;
pub use charges::*;
pub use customers::*;
pub use holds::*;
pub use refunds::*;
pub use tokens::*;
