//! The domain's own values, below every layer that uses them: money (integer minor units
//! and a currency) and the card facts a processor reports. Models, the services in
//! `payments`, the processors and the GraphQL layer all import them from here; this
//! module imports nothing of the crate but `error`.

pub mod cards;
pub mod money;
