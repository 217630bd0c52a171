//! Platform accounts and links: checking an app's Stripe credentials, and connecting and
//! disconnecting operators' accounts through Connect OAuth (`oauth`).

use super::{StripeProcessor, oauth, secret};
use crate::processor::{Platform, PlatformAccount, PlatformCredentials, ProcessorError, ProcessorResult};

impl StripeProcessor {
    pub(super) async fn stripe_provision_platform(
        &self,
        credentials: Option<&PlatformCredentials>,
    ) -> ProcessorResult<PlatformAccount> {
        let credentials = credentials.ok_or_else(|| {
            ProcessorError::InvalidRequest("in Stripe mode createApp needs the app's stripe credentials".to_owned())
        })?;
        // Checks the key and learns the platform's account id.
        let client = self.http.with_key(credentials.secret_key.clone());
        let account = stripe_connect::account::RetrieveForMyAccountAccount::new().send(&client).await?;
        Ok(PlatformAccount { account_id: account.id.to_string(), publishable_key: credentials.publishable_key.clone() })
    }

    pub(super) async fn stripe_complete_link(&self, platform: &Platform, code: &str) -> ProcessorResult<String> {
        // Stripe's code names the account only; `payments::links` checks it against the
        // operator's known account.
        oauth::exchange_code(&self.http, &self.connect_base, &secret(platform)?, code).await
    }

    pub(super) async fn stripe_revoke_link(
        &self,
        platform: &Platform,
        connected_account_id: &str,
    ) -> ProcessorResult<()> {
        let client_id = platform
            .connect_client_id
            .as_deref()
            .ok_or_else(|| ProcessorError::Failed("the app has no Connect client id".to_owned()))?;
        oauth::deauthorize(&self.http, &self.connect_base, &secret(platform)?, client_id, connected_account_id).await
    }
}
