//! Money: integer minor units and an ISO 4217 currency, never floats.

use crate::error::{ApiError, ApiResult};

/// A validated amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    /// Minor units (cents for USD, yen for JPY).
    pub amount: i64,
    /// ISO 4217 alphabetic code, upper case.
    pub currency: String,
}

impl Money {
    /// Accepts a currency code in any case (`usd`, `USD`) and a positive amount.
    pub fn parse(amount: i64, currency: &str) -> ApiResult<Money> {
        if amount <= 0 {
            return Err(ApiError::bad_input("amount must be a positive number of minor units"));
        }
        let code = currency.trim().to_ascii_uppercase();
        let known = iso_currency::Currency::from_code(&code)
            .ok_or_else(|| ApiError::bad_input("currency must be an ISO 4217 code such as USD or EUR"))?;
        Ok(Money { amount, currency: known.code().to_owned() })
    }
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
}
