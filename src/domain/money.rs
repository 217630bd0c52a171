//! Money: integer minor units and an ISO 4217 currency, never floats.
//!
//! Only amounts a processor would accept get in, so a session can never become
//! uncollectable through its amount: the currency must be legal tender (no precious
//! metals, funds, testing or superseded codes), and the amount must lie between the
//! currency's minimum charge and the 8-digit maximum. Stripe's published limits are
//! the reference (<https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts>).

use iso_currency::Currency;

use crate::error::{ApiError, ApiResult};

/// The largest amount in minor units: Stripe accepts up to eight digits.
pub const MAX_AMOUNT: i64 = 99_999_999;

/// Stripe's minimum charge per settlement currency, in minor units. Other currencies
/// must be at least one minor unit (the processor converts them to a settlement
/// currency, whose minimum then applies).
const MINIMUMS: &[(&str, i64)] = &[
    ("USD", 50),
    ("AED", 200),
    ("AUD", 50),
    ("BRL", 50),
    ("CAD", 50),
    ("CHF", 50),
    ("CZK", 1500),
    ("DKK", 250),
    ("EUR", 50),
    ("GBP", 30),
    ("HKD", 400),
    ("HUF", 17500),
    ("INR", 50),
    ("JPY", 50),
    ("MXN", 1000),
    ("MYR", 200),
    ("NOK", 300),
    ("NZD", 50),
    ("PLN", 200),
    ("RON", 200),
    ("SEK", 300),
    ("SGD", 50),
    ("THB", 1000),
];

/// Currencies with three decimals, whose amounts Stripe requires to end in 0.
const THREE_DECIMAL: &[&str] = &["BHD", "JOD", "KWD", "OMR", "TND"];

/// A validated amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    /// Minor units (cents for USD, yen for JPY).
    pub amount: i64,
    /// ISO 4217 alphabetic code, upper case.
    pub currency: String,
}

impl Money {
    /// Accepts a currency code in any case (`usd`, `USD`) and an amount the processor
    /// can charge in it.
    pub fn parse(amount: i64, currency: &str) -> ApiResult<Money> {
        let code = currency.trim().to_ascii_uppercase();
        let currency = Currency::from_code(&code).filter(|c| is_legal_tender(*c)).ok_or_else(|| {
            ApiError::bad_input("currency must be the ISO 4217 code of a legal tender, such as USD or EUR")
        })?;
        let code = currency.code();
        let minimum = minimum_amount(code);
        if amount < minimum {
            return Err(ApiError::bad_input(format!(
                "amount must be at least {minimum} minor units of {code} (the processor's minimum charge)"
            )));
        }
        if amount > MAX_AMOUNT {
            return Err(ApiError::bad_input(format!("amount must be at most {MAX_AMOUNT} minor units")));
        }
        if THREE_DECIMAL.contains(&code) && amount % 10 != 0 {
            return Err(ApiError::bad_input(format!("{code} amounts must be a multiple of 10 minor units")));
        }
        Ok(Money { amount, currency: code.to_owned() })
    }
}

/// Circulating money: not a fund, a metal, a unit of account, a testing code or a
/// currency that another has replaced.
fn is_legal_tender(currency: Currency) -> bool {
    !currency.is_fund() && !currency.is_special() && currency.is_superseded().is_none() && currency.exponent().is_some()
}

/// The smallest chargeable amount in `code`, in minor units.
pub fn minimum_amount(code: &str) -> i64 {
    MINIMUMS.iter().find(|(c, _)| *c == code).map_or(1, |(_, min)| *min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_in_any_case() {
        assert_eq!(Money::parse(250, "usd").unwrap().currency, "USD");
        assert_eq!(Money::parse(250, " Eur ").unwrap().currency, "EUR");
    }

    #[test]
    fn rejects_bad_money() {
        assert!(Money::parse(0, "usd").is_err());
        assert!(Money::parse(-5, "usd").is_err());
        assert!(Money::parse(100, "usdx").is_err());
        assert!(Money::parse(100, "zzz").is_err());
    }

    #[test]
    fn only_legal_tender() {
        // Gold, testing, "no currency", SDRs, funds, superseded codes.
        for code in ["XAU", "XTS", "XXX", "XDR", "USN", "CLF", "HRK", "XAG", "XPT"] {
            assert!(Money::parse(10_000, code).is_err(), "{code} accepted");
        }
        for code in ["USD", "EUR", "JPY", "GBP", "CHF", "XOF", "XAF", "KWD"] {
            assert!(Money::parse(10_000, code).is_ok(), "{code} refused");
        }
    }

    #[test]
    fn minimum_and_maximum_amounts() {
        assert!(Money::parse(49, "USD").is_err());
        assert!(Money::parse(50, "USD").is_ok());
        assert!(Money::parse(29, "GBP").is_err());
        assert!(Money::parse(30, "GBP").is_ok());
        assert!(Money::parse(49, "JPY").is_err());
        assert!(Money::parse(1, "ISK").is_ok());
        assert!(Money::parse(MAX_AMOUNT, "USD").is_ok());
        assert!(Money::parse(MAX_AMOUNT + 1, "USD").is_err());
        assert!(Money::parse(2_147_483_647, "USD").is_err());
        assert!(Money::parse(1005, "KWD").is_err());
        assert!(Money::parse(1010, "KWD").is_ok());
    }
}
