//! Apps and operators: the two sides of the marketplace, and the app's platform
//! credentials (sealed at rest, opened only for the processor call that needs them).

use secrecy::SecretString;
use uuid::Uuid;

use super::policy::{self, AppVisibility};
use super::required_text;
use crate::auth::Principal;
use crate::broker::Broker;
use crate::crypto::{Keyring, Sealed};
use crate::db::ReadConn;
use crate::error::{ApiError, ApiResult};
use crate::models::apps::NewApp;
use crate::models::links::LinkCapabilities;
use crate::models::operators::NewOperator;
use crate::models::{self, Operator};
use crate::processor::{Platform, PlatformCredentials};

/// Whether the app or operator a token names exists: a validly signed token for a
/// party that does not (a typo in a token service, a party from another deployment)
/// must not authenticate.
pub async fn principal_exists(broker: &Broker, principal: &Principal) -> ApiResult<bool> {
    if broker.known_parties.contains(principal.role) {
        return Ok(true);
    }
    // On the primary: a party created a moment ago must be able to act at once.
    let exists = match principal.role {
        crate::auth::Role::Admin => true,
        crate::auth::Role::App(id) => models::App::exists(&mut *broker.db().await?, id).await?,
        crate::auth::Role::Operator(id) => Operator::exists(&mut *broker.db().await?, id).await?,
    };
    if exists {
        broker.known_parties.insert(principal.role);
    }
    Ok(exists)
}

/// What `createApp` asks for.
pub struct NewAppRequest<'a> {
    /// The app's display name (required, at most 200 characters).
    pub name: &'a str,
    /// The app's Stripe platform account (Stripe mode).
    pub credentials: Option<StripeCredentials<'a>>,
    /// The app's cut of each charge, in basis points.
    pub platform_fee_bps: Option<i32>,
}

/// The keys and Connect settings of an app's Stripe platform account, as handed in.
pub struct StripeCredentials<'a> {
    /// `sk_…` (or a restricted `rk_…`).
    pub secret_key: &'a str,
    /// `pk_…`.
    pub publishable_key: &'a str,
    /// `ca_…`.
    pub connect_client_id: &'a str,
    /// `whsec_…`.
    pub webhook_secret: &'a str,
}

impl StripeCredentials<'_> {
    fn platform(&self) -> PlatformCredentials {
        PlatformCredentials {
            secret_key: self.secret_key.to_owned().into(),
            publishable_key: self.publishable_key.to_owned(),
            connect_client_id: self.connect_client_id.to_owned(),
            webhook_secret: self.webhook_secret.to_owned().into(),
        }
    }
}

fn secret_context(column: &str, app_id: Uuid) -> String {
    format!("apps.{column}:{app_id}")
}

/// Creates an app with its platform account at the processor.
pub async fn create_app(broker: &Broker, principal: &Principal, request: NewAppRequest<'_>) -> ApiResult<models::App> {
    policy::require_admin(principal)?;
    let name = required_text("name", request.name, 200)?;
    if let Some(bps) = request.platform_fee_bps
        && !(0..=10_000).contains(&bps)
    {
        return Err(ApiError::bad_input("platformFeeBps must be between 0 and 10000"));
    }
    let credentials = request.credentials.as_ref().map(StripeCredentials::platform);
    if let Some(credentials) = &credentials {
        check_credentials(credentials)?;
    }
    // The id comes first: the processor account is provisioned for it (and provisioning
    // the same id again returns the same account).
    let id = Uuid::now_v7();
    let account = broker.processor.provision_platform(id, name, credentials.as_ref()).await?;
    let sealed = match &credentials {
        Some(credentials) => {
            let keyring = broker.keyring.as_ref().ok_or_else(|| ApiError::internal("no keyring in Stripe mode"))?;
            Some((
                keyring.seal(&credentials.secret_key, &secret_context("secret_key", id)),
                keyring.seal(&credentials.webhook_secret, &secret_context("webhook_secret", id)),
            ))
        }
        None => None,
    };
    let mut conn = broker.db().await?;
    let created = NewApp {
        id,
        name,
        processor: broker.processor.name(),
        processor_account_id: &account.account_id,
        publishable_key: &account.publishable_key,
        connect_client_id: credentials.as_ref().map(|c| c.connect_client_id.as_str()),
        secret_key_ciphertext: sealed.as_ref().map(|(s, _)| s.ciphertext.as_slice()),
        secret_key_key_id: sealed.as_ref().map(|(s, _)| s.key_id.as_str()),
        webhook_secret_ciphertext: sealed.as_ref().map(|(_, w)| w.ciphertext.as_slice()),
        webhook_secret_key_id: sealed.as_ref().map(|(_, w)| w.key_id.as_str()),
        platform_fee_bps: request.platform_fee_bps,
    }
    .insert(&mut conn)
    .await
    .map_err(|err| match err {
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
            ApiError::conflict("another app already uses this processor account")
        }
        other => other.into(),
    })?;
    tracing::info!(app_id = %created.id, processor = created.processor, "app created");
    Ok(created)
}

/// Shapes of Stripe's credentials, checked before anything is called. Messages never
/// contain the values.
fn check_credentials(credentials: &PlatformCredentials) -> ApiResult<()> {
    use secrecy::ExposeSecret;
    let secret = credentials.secret_key.expose_secret();
    if !(secret.starts_with("sk_") || secret.starts_with("rk_")) {
        return Err(ApiError::bad_input("stripe.secretKey must be a Stripe secret key (sk_…)"));
    }
    if !credentials.publishable_key.starts_with("pk_") {
        return Err(ApiError::bad_input("stripe.publishableKey must be a Stripe publishable key (pk_…)"));
    }
    if !credentials.connect_client_id.starts_with("ca_") {
        return Err(ApiError::bad_input("stripe.connectClientId must be a Connect client id (ca_…)"));
    }
    if !credentials.webhook_secret.expose_secret().starts_with("whsec_") {
        return Err(ApiError::bad_input("stripe.webhookSecret must be a webhook signing secret (whsec_…)"));
    }
    Ok(())
}

fn open(
    broker: &Broker,
    ciphertext: &Option<Vec<u8>>,
    key_id: &Option<String>,
    context: String,
) -> ApiResult<Option<SecretString>> {
    let keyring = broker.keyring.as_deref();
    open_with(keyring, ciphertext, key_id, context)
}

fn open_with(
    keyring: Option<&Keyring>,
    ciphertext: &Option<Vec<u8>>,
    key_id: &Option<String>,
    context: String,
) -> ApiResult<Option<SecretString>> {
    let (Some(ciphertext), Some(key_id)) = (ciphertext, key_id) else {
        return Ok(None);
    };
    let keyring = keyring.ok_or_else(|| ApiError::internal("sealed secrets but no CURBPAY_ENCRYPTION_KEY"))?;
    let sealed = Sealed { key_id: key_id.clone(), ciphertext: ciphertext.clone() };
    keyring.open(&sealed, &context).map(Some).map_err(|e| ApiError::internal_caused("opening an app secret", e))
}

/// What the processor needs to act for the app.
pub fn platform(broker: &Broker, row: &models::App) -> ApiResult<Platform> {
    Ok(Platform {
        account_id: row.processor_account_id.clone(),
        secret_key: open(
            broker,
            &row.secret_key_ciphertext,
            &row.secret_key_key_id,
            secret_context("secret_key", row.id),
        )?,
        connect_client_id: row.connect_client_id.clone(),
    })
}

/// The app's webhook signing secret, if it has one.
pub fn webhook_secret(broker: &Broker, row: &models::App) -> ApiResult<Option<SecretString>> {
    open(broker, &row.webhook_secret_ciphertext, &row.webhook_secret_key_id, secret_context("webhook_secret", row.id))
}

/// Re-seals every app secret sealed with an older key under the current one. Returns
/// how many apps changed.
pub async fn rotate_keys(conn: &mut diesel_async::AsyncPgConnection, keyring: &Keyring) -> ApiResult<usize> {
    let rows = models::App::sealed_with_other_keys(conn, keyring.current_key_id()).await?;
    let mut changed = 0;
    for row in rows {
        let secret = open_with(
            Some(keyring),
            &row.secret_key_ciphertext,
            &row.secret_key_key_id,
            secret_context("secret_key", row.id),
        )?;
        let webhook = open_with(
            Some(keyring),
            &row.webhook_secret_ciphertext,
            &row.webhook_secret_key_id,
            secret_context("webhook_secret", row.id),
        )?;
        let (Some(secret), Some(webhook)) = (secret, webhook) else {
            continue;
        };
        let secret = keyring.seal(&secret, &secret_context("secret_key", row.id));
        let webhook = keyring.seal(&webhook, &secret_context("webhook_secret", row.id));
        changed += models::App::reseal(
            conn,
            row.id,
            (&secret.ciphertext, &secret.key_id),
            (&webhook.ciphertext, &webhook.key_id),
        )
        .await?;
    }
    Ok(changed)
}

/// Creates an operator (admin only); the name is trimmed, at most 200 characters.
pub async fn create_operator(broker: &Broker, principal: &Principal, name: &str) -> ApiResult<Operator> {
    policy::require_admin(principal)?;
    let name = required_text("name", name, 200)?;
    let mut conn = broker.db().await?;
    let created = NewOperator { id: Uuid::now_v7(), name }.insert(&mut conn).await?;
    tracing::info!(operator_id = %created.id, "operator created");
    Ok(created)
}

/// What an operator's processor account can do, as far as a viewer may know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether the operator can accept charges; `None` when not known.
    pub charges_enabled: Option<bool>,
    /// Whether the operator can be paid out; `None` when not known.
    pub payouts_enabled: Option<bool>,
}

/// Combines what the processor reported on several links of one operator: a fact is
/// known when every report agrees on it, and unknown when one is missing or they
/// differ (each app's webhooks speak only for its own link, so no single one decides
/// for the others).
pub fn agreed_capabilities<'a>(reports: impl IntoIterator<Item = &'a LinkCapabilities>) -> Capabilities {
    fn agree(values: &[Option<bool>]) -> Option<bool> {
        let first = (*values.first()?)?;
        values.iter().all(|v| *v == Some(first)).then_some(first)
    }
    let (charges, payouts): (Vec<_>, Vec<_>) =
        reports.into_iter().map(|r| (r.charges_enabled, r.payouts_enabled)).unzip();
    Capabilities { charges_enabled: agree(&charges), payouts_enabled: agree(&payouts) }
}

/// Whether the caller may see this app: admin, the app itself, or an operator linked to it.
/// A read that may lag: it guards only reads.
pub async fn may_see_app(conn: &mut ReadConn, principal: &Principal, app_id: Uuid) -> ApiResult<bool> {
    match policy::app_visibility(principal, app_id) {
        AppVisibility::Visible => Ok(true),
        AppVisibility::IfLinkedTo(operator_id) => {
            Ok(models::Link::find_pair(conn, app_id, operator_id).await?.is_some())
        }
        AppVisibility::Hidden => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(charges: Option<bool>, payouts: Option<bool>) -> LinkCapabilities {
        LinkCapabilities {
            operator_id: Uuid::nil(),
            app_id: Uuid::now_v7(),
            charges_enabled: charges,
            payouts_enabled: payouts,
        }
    }

    #[test]
    fn capabilities_are_known_only_when_every_report_agrees() {
        assert_eq!(agreed_capabilities(&[]), Capabilities::default());
        let one = [report(Some(true), Some(false))];
        assert_eq!(
            agreed_capabilities(&one),
            Capabilities { charges_enabled: Some(true), payouts_enabled: Some(false) }
        );
        let agreeing = [report(Some(true), Some(true)), report(Some(true), Some(true))];
        assert_eq!(
            agreed_capabilities(&agreeing),
            Capabilities { charges_enabled: Some(true), payouts_enabled: Some(true) }
        );
        let split = [report(Some(true), Some(true)), report(Some(false), Some(true))];
        assert_eq!(agreed_capabilities(&split), Capabilities { charges_enabled: None, payouts_enabled: Some(true) });
        let unreported = [report(Some(true), Some(true)), report(None, None)];
        assert_eq!(agreed_capabilities(&unreported), Capabilities::default());
    }
}
