//! Platform accounts and links in the sandbox: an app's platform account, the consent
//! page's authorization codes, and connecting and revoking operators' accounts.

use chrono::{Duration, Utc};
use diesel_async::AsyncConnection;
use uuid::Uuid;

use super::{SandboxProcessor, object_id, store};
use crate::processor::{
    AuthorizationRequest, LinkAuthorization, Platform, PlatformAccount, PlatformCredentials, ProcessorError,
    ProcessorResult,
};

/// How long an authorization code from the sandbox's consent page stays valid.
const CODE_TTL_SECONDS: i64 = 300;

/// The sandbox's Connect client id of a platform account (as Stripe's `ca_…` is public
/// while the platform's account id is not shown to operators).
fn connect_client_id(platform_account_id: &str) -> String {
    format!("ca_{}", platform_account_id.strip_prefix("acct_").unwrap_or(platform_account_id))
}

impl SandboxProcessor {
    /// The consent page approved: the operator's sandbox account is connected once the
    /// code is exchanged. The platform, link and operator come from the verified
    /// authorization state; the code is bound to them and redeems only for them.
    /// `client_id` must be the platform's. Returns the code for the redirect back.
    pub async fn approve(
        &self,
        platform_account_id: &str,
        client_id: &str,
        authorization: &LinkAuthorization,
    ) -> ProcessorResult<String> {
        if client_id != connect_client_id(platform_account_id) {
            return Err(ProcessorError::InvalidRequest("unknown client_id".to_owned()));
        }
        let mut conn = self.conn().await?;
        if !store::platform_exists(&mut conn, platform_account_id).await? {
            return Err(ProcessorError::InvalidRequest("unknown client_id".to_owned()));
        }
        let connected = store::connected_account(&mut conn, authorization.operator_id).await?;
        let code = object_id("ac");
        let new = store::NewAuthorizationCode {
            code: &code,
            platform_account_id,
            connected_account_id: &connected,
            link_id: authorization.link_id,
            operator_id: authorization.operator_id,
            expires_at: Utc::now() + Duration::seconds(CODE_TTL_SECONDS),
        };
        store::insert_authorization_code(&mut conn, &new).await?;
        Ok(code)
    }

    pub(super) async fn sandbox_provision_platform(
        &self,
        app_id: Uuid,
        credentials: Option<&PlatformCredentials>,
    ) -> ProcessorResult<PlatformAccount> {
        if credentials.is_some() {
            return Err(ProcessorError::InvalidRequest(
                "the sandbox processor makes its own accounts; omit the stripe credentials".to_owned(),
            ));
        }
        let mut conn = self.conn().await?;
        let publishable_key = format!("pk_test_sb_{}", Uuid::new_v4().simple());
        store::insert_platform_account(&mut conn, app_id, &publishable_key).await?;
        let (account_id, publishable_key) = store::platform_account(&mut conn, app_id).await?;
        Ok(PlatformAccount { account_id, publishable_key: publishable_key.unwrap_or_default() })
    }

    pub(super) fn sandbox_authorization_url(&self, request: &AuthorizationRequest<'_>) -> ProcessorResult<url::Url> {
        let mut url = self
            .public_url
            .join("sandbox/connect/oauth/authorize")
            .map_err(|e| ProcessorError::Failed(format!("bad public URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &connect_client_id(&request.platform.account_id))
            .append_pair("scope", "read_write")
            .append_pair("state", request.state)
            .append_pair("redirect_uri", request.redirect_uri);
        Ok(url)
    }

    pub(super) async fn sandbox_complete_link(
        &self,
        platform: &Platform,
        code: &str,
        authorization: &LinkAuthorization,
    ) -> ProcessorResult<String> {
        let mut conn = self.conn().await?;
        let platform = platform.account_id.clone();
        let code = code.to_owned();
        let authorization = *authorization;
        conn.transaction(async move |conn| {
            let spent = store::spend_authorization_code(
                conn,
                &code,
                &platform,
                authorization.link_id,
                authorization.operator_id,
            )
            .await?;
            let Some(connected) = spent else {
                return Err(ProcessorError::InvalidRequest(
                    "authorization code does not exist, has expired, was already used or was issued for \
                     another link"
                        .to_owned(),
                ));
            };
            store::connect(conn, &platform, &connected).await?;
            Ok::<_, ProcessorError>(connected)
        })
        .await
    }

    pub(super) async fn sandbox_revoke_link(
        &self,
        platform: &Platform,
        connected_account_id: &str,
    ) -> ProcessorResult<()> {
        let mut conn = self.conn().await?;
        // Revoking twice is fine (Stripe answers the second deauthorize with an error
        // that callers treat as done; here it is simply a no-op).
        store::revoke(&mut conn, &platform.account_id, connected_account_id).await?;
        Ok(())
    }
}
