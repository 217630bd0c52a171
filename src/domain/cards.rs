//! Card facts: what curbpay keeps of a card, never its number.

/// Card facts as the processor reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFacts {
    /// Card brand, as the processor names it (`Visa`, …).
    pub brand: String,
    /// The last four digits.
    pub last4: String,
    /// Expiry month, 1–12.
    pub exp_month: i16,
    /// Expiry year, four digits.
    pub exp_year: i16,
}
