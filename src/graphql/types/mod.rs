//! The object types of the API: thin wrappers over model rows.

mod links;
mod parties;
mod sessions;

pub use links::{Link, LinkStatus};
pub(crate) use parties::links_page;
pub use parties::{App, Customer, Operator, Viewer};
pub use sessions::{
    CancelReason, ChargeToken, MoneyInput, ParkingSession, PaymentFailure, Refund, RefundReason, SessionStatus,
};
