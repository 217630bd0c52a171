//! Stripe's test cards as the double shows them: the sandbox's table
//! (`curbpay::processor::sandbox::cards`), and what the double derives from each card: its
//! fingerprint and network, and the card, payment method and charge details objects.

use curbpay::processor::sandbox::cards::{Decline, EXP_MONTH, EXP_YEAR, TEST_CARDS};
use serde_json::{Value, json};

use super::now;

pub(super) use curbpay::processor::sandbox::cards::TestCard;

/// Stripe's card that asks for authentication on every off-session charge. The sandbox
/// doesn't model authentication, so only the double knows it.
static AUTHENTICATION_REQUIRED: TestCard = TestCard {
    token: "tok_authenticationRequired",
    brand: "Visa",
    last4: "3184",
    funding: "credit",
    decline: Some(Decline {
        code: "authentication_required",
        decline_code: Some("authentication_required"),
        message: "Your card was declined. This transaction requires authentication.",
    }),
};

/// Every test card: `tok_X` names it as a token, `pm_card_X` as a payment method. The
/// double declines when charging (Stripe may decline some of them already when attaching).
fn all() -> impl Iterator<Item = &'static TestCard> {
    TEST_CARDS.iter().chain([&AUTHENTICATION_REQUIRED])
}

pub(super) fn by_token(tok: &str) -> Option<&'static TestCard> {
    all().find(|c| c.token == tok)
}

pub(super) fn by_pm(pm: &str) -> Option<&'static TestCard> {
    all().find(|c| c.token.strip_prefix("tok_") == pm.strip_prefix("pm_card_"))
}

/// Each card object carries its test card's fingerprint, which tells how charging ends.
pub(super) fn of(card: &Value) -> &'static TestCard {
    let fingerprint = card["fingerprint"].as_str().unwrap_or_default();
    all().find(|c| c.fingerprint() == fingerprint).expect("cards come from test cards")
}

/// Stripe's objects for a test card.
pub(super) trait StripeCard {
    fn fingerprint(&self) -> String;
    /// The lowercase brand of payment methods and charges.
    fn network(&self) -> &'static str;
    /// A `card` object (a customer's source, or a token's card).
    fn card(&self, id: &str, customer: Option<&str>) -> Value;
    fn payment_method(&self, id: &str, customer: Option<&str>) -> Value;
    /// A charge's `payment_method_details`.
    fn details(&self) -> Value;
}

impl StripeCard for TestCard {
    fn fingerprint(&self) -> String {
        let hash = self.token.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        format!("{hash:016X}")
    }

    fn network(&self) -> &'static str {
        match self.brand {
            "American Express" => "amex",
            "Diners Club" => "diners",
            "MasterCard" => "mastercard",
            other => {
                ["visa", "discover", "jcb", "unionpay"].into_iter().find(|n| other.eq_ignore_ascii_case(n)).unwrap()
            }
        }
    }

    fn card(&self, id: &str, customer: Option<&str>) -> Value {
        json!({
            "id": id, "object": "card", "address_city": null, "address_country": null, "address_line1": null,
            "address_line1_check": null, "address_line2": null, "address_state": null, "address_zip": null,
            "address_zip_check": null, "brand": self.brand, "country": "US", "customer": customer, "cvc_check": "pass",
            "dynamic_last4": null, "exp_month": EXP_MONTH, "exp_year": EXP_YEAR, "fingerprint": self.fingerprint(),
            "funding": self.funding, "last4": self.last4, "metadata": {}, "name": null, "tokenization_method": null,
        })
    }

    fn payment_method(&self, id: &str, customer: Option<&str>) -> Value {
        json!({
            "id": id, "object": "payment_method", "allow_redisplay": "unspecified",
            "billing_details": { "address": null, "email": null, "name": null, "phone": null },
            "card": { "brand": self.network(), "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass" },
              "country": "US", "display_brand": self.network(), "exp_month": EXP_MONTH, "exp_year": EXP_YEAR, "fingerprint": self.fingerprint(),
              "funding": self.funding, "generated_from": null, "last4": self.last4,
              "networks": { "available": [self.network()], "preferred": null }, "three_d_secure_usage": { "supported": true }, "wallet": null },
            "created": now(), "customer": customer, "livemode": false, "metadata": {}, "type": "card",
        })
    }

    fn details(&self) -> Value {
        json!({ "type": "card", "card": {
            "brand": self.network(), "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass" },
            "country": "US", "exp_month": EXP_MONTH, "exp_year": EXP_YEAR, "fingerprint": self.fingerprint(), "funding": self.funding,
            "last4": self.last4, "network": self.network(), "three_d_secure": null, "wallet": null } })
    }
}
