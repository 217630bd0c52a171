//! GraphQL
