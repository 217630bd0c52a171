//! Card facts: what curbpay keeps of a card, never its number.

/// Card facts as the processor reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFacts {
    pub brand: String,
    pub last4: String,
    pub exp_month: i16,
    pub exp_year: i16,
}
