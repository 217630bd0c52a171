//! The one integration test binary: every test drives the real router over a fresh
//! Postgres database of its own.

mod util;

mod authorization;
mod embedded;
mod errors;
mod events;
mod flow;
mod idempotency;
mod limits;
mod link_authorization;
mod loaders;
mod money;
mod ops;
mod pgbouncer;
mod replica;
mod schema;
mod scopes;
mod stripe;
mod stripe_double;
mod stripe_faults;
mod stripe_money;
mod subscriptions;
mod test_postgres;
mod tracing;
mod trust;
mod webhooks;
