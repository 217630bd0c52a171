//! Outgoing webhooks (Standard Webhooks): signing (`sign`), an HTTP client that
//! refuses private addresses at connect time (`client`), and the delivery worker that
//! claims due deliveries from Postgres and retries them on schedule (`worker`).

pub mod client;
pub mod sign;
pub mod worker;
