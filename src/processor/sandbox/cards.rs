//! Stripe's published test card tokens, as the sandbox knows them. A card token names a
//! test card; no card number is held anywhere. The integration tests' Stripe double answers
//! with the same cards.

/// What a test card is and how charging it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestCard {
    /// Stripe's test token for the card (`tok_visa`, …).
    pub token: &'static str,
    /// The brand as Stripe spells it (`Visa`, `American Express`, …).
    pub brand: &'static str,
    /// The last four digits of Stripe's test card number.
    pub last4: &'static str,
    /// Stripe's `funding` of the card: `credit`, `debit` or `prepaid`.
    pub funding: &'static str,
    /// Stripe's `decline_code` when charging this card fails.
    pub decline: Option<Decline>,
}

/// How a test card is declined, in Stripe's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decline {
    /// Stripe's error `code` (`card_declined`, `expired_card`, ...).
    pub code: &'static str,
    /// Stripe's `decline_code` (`insufficient_funds`, `lost_card`, ...), when it gives one.
    pub decline_code: Option<&'static str>,
    /// Stripe's message for the decline.
    pub message: &'static str,
}

/// Test cards expire far in the future, as Stripe's do: the month...
pub const EXP_MONTH: i16 = 12;
/// ...and the year.
pub const EXP_YEAR: i16 = 2034;

const fn ok(token: &'static str, brand: &'static str, last4: &'static str, funding: &'static str) -> TestCard {
    TestCard { token, brand, last4, funding, decline: None }
}

const fn declined(
    token: &'static str,
    last4: &'static str,
    code: &'static str,
    decline_code: Option<&'static str>,
    message: &'static str,
) -> TestCard {
    TestCard { token, brand: "Visa", last4, funding: "credit", decline: Some(Decline { code, decline_code, message }) }
}

/// Every test token the sandbox accepts.
pub const TEST_CARDS: &[TestCard] = &[
    ok("tok_visa", "Visa", "4242", "credit"),
    ok("tok_visa_debit", "Visa", "5556", "debit"),
    ok("tok_mastercard", "MasterCard", "4444", "credit"),
    ok("tok_mastercard_debit", "MasterCard", "8210", "debit"),
    ok("tok_mastercard_prepaid", "MasterCard", "5100", "prepaid"),
    ok("tok_amex", "American Express", "0005", "credit"),
    ok("tok_discover", "Discover", "1117", "credit"),
    ok("tok_diners", "Diners Club", "0004", "credit"),
    ok("tok_jcb", "JCB", "0505", "credit"),
    ok("tok_unionpay", "UnionPay", "0005", "credit"),
    // Charges (and captures) succeed; then the cardholder disputes them.
    ok("tok_createDispute", "Visa", "0259", "credit"),
    declined("tok_chargeDeclined", "0002", "card_declined", Some("generic_decline"), "Your card was declined."),
    declined(
        "tok_chargeDeclinedInsufficientFunds",
        "9995",
        "card_declined",
        Some("insufficient_funds"),
        "Your card has insufficient funds.",
    ),
    declined("tok_chargeDeclinedLostCard", "9987", "card_declined", Some("lost_card"), "Your card was declined."),
    declined("tok_chargeDeclinedStolenCard", "9979", "card_declined", Some("stolen_card"), "Your card was declined."),
    declined("tok_chargeDeclinedFraudulent", "0019", "card_declined", Some("fraudulent"), "Your card was declined."),
    declined("tok_chargeDeclinedExpiredCard", "0069", "expired_card", None, "Your card has expired."),
    declined(
        "tok_chargeDeclinedIncorrectCvc",
        "0127",
        "incorrect_cvc",
        None,
        "Your card's security code is incorrect.",
    ),
    declined(
        "tok_chargeDeclinedProcessingError",
        "0119",
        "processing_error",
        None,
        "An error occurred while processing your card. Try again in a little bit.",
    ),
];

/// The test card behind a token; `None` for anything else (a card number included).
pub fn lookup(token: &str) -> Option<&'static TestCard> {
    TEST_CARDS.iter().find(|card| card.token == token)
}

/// Whether a hold on this card can be raised in place (Stripe's incremental
/// authorization); the debit test card cannot, so extensions take a second hold.
pub fn supports_incremental(token: &str) -> bool {
    token != "tok_visa_debit"
}

/// Whether a charge on this card is disputed after it succeeds.
pub fn opens_dispute(token: &str) -> bool {
    token == "tok_createDispute"
}

/// Finds the decline of a card by its test token (what a sandbox customer remembers).
pub fn decline_of(token: &str) -> Option<Decline> {
    lookup(token).and_then(|card| card.decline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_last4_are_digits() {
        for (i, card) in TEST_CARDS.iter().enumerate() {
            assert!(card.token.starts_with("tok_"));
            assert_eq!(card.last4.len(), 4);
            assert!(card.last4.chars().all(|c| c.is_ascii_digit()));
            assert!(["credit", "debit", "prepaid"].contains(&card.funding));
            assert!(TEST_CARDS[i + 1..].iter().all(|other| other.token != card.token));
        }
    }

    #[test]
    fn declines_follow_stripe() {
        assert_eq!(lookup("tok_visa").unwrap().decline, None);
        let decline = decline_of("tok_chargeDeclinedInsufficientFunds").unwrap();
        assert_eq!((decline.code, decline.decline_code), ("card_declined", Some("insufficient_funds")));
        assert!(lookup("4242424242424242").is_none());
    }
}
