//! Stripe Connect OAuth (no Stripe client library covers it): the authorize URL, the
//! code exchange and deauthorization, as plain form POSTs with the same retry policy
//! as the API calls.

use std::sync::atomic::{AtomicU32, Ordering};

use backon::Retryable;
use secrecy::{ExposeSecret, SecretString};

use super::client::StripeHttp;
use crate::processor::{AuthorizationRequest, ProcessorError, ProcessorResult};

pub fn authorize_url(connect_base: &url::Url, request: &AuthorizationRequest<'_>) -> ProcessorResult<url::Url> {
    let client_id = request
        .platform
        .connect_client_id
        .as_deref()
        .ok_or_else(|| ProcessorError::Failed("the app has no Connect client id".to_owned()))?;
    let mut url = connect_base
        .join("oauth/authorize")
        .map_err(|e| ProcessorError::Failed(format!("bad Connect base URL: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("scope", "read_write")
        .append_pair("state", request.state)
        .append_pair("redirect_uri", request.redirect_uri);
    Ok(url)
}

/// POSTs a form to Connect, retrying transport errors, 429 and 5xx with backoff. Returns
/// the final status and body, and whether an earlier attempt may have been executed
/// without us seeing the answer.
async fn post(
    http: &StripeHttp,
    connect_base: &url::Url,
    path: &str,
    secret_key: &SecretString,
    form: &[(&str, &str)],
) -> ProcessorResult<(u16, serde_json::Value, bool)> {
    let url = connect_base.join(path).map_err(|e| ProcessorError::Failed(format!("bad Connect base URL: {e}")))?;
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let attempts = AtomicU32::new(0);
    let send = || async {
        let attempt = attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let sent = http
            .http()
            .post(url.clone())
            .bearer_auth(secret_key.expose_secret())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await;
        let failure = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(bytes) if status != 429 && status < 500 => {
                        // Every failed attempt is retried: one before this one may have
                        // been executed.
                        let uncertain = attempt > 1;
                        return Ok((status, serde_json::from_slice(&bytes).unwrap_or_default(), uncertain));
                    }
                    Ok(_) => format!("Stripe Connect answered {status}"),
                    Err(err) => format!("reading Stripe Connect's answer: {err}"),
                }
            }
            Err(err) => format!("Stripe Connect: {err}"),
        };
        tracing::warn!(path, attempt, error = %failure, "stripe connect request failed");
        Err(ProcessorError::Unavailable(failure))
    };
    send.retry(http.policy.backoff()).await
}

/// Exchanges an authorization code for the operator's connected account id.
pub async fn exchange_code(
    http: &StripeHttp,
    connect_base: &url::Url,
    secret_key: &SecretString,
    code: &str,
) -> ProcessorResult<String> {
    let form = [("grant_type", "authorization_code"), ("code", code)];
    let (status, json, uncertain) = post(http, connect_base, "oauth/token", secret_key, &form).await?;
    match (status, json["stripe_user_id"].as_str()) {
        (200, Some(account)) => Ok(account.to_owned()),
        // A code is single-use and the exchange has no idempotency key: if an earlier
        // attempt may have spent it, the operator has to authorize again.
        (400, _) if uncertain && json["error"] == "invalid_grant" => Err(ProcessorError::Unavailable(
            "the authorization's outcome is unknown; ask the operator to authorize again".to_owned(),
        )),
        (400, _) if json["error"] == "invalid_grant" => Err(ProcessorError::InvalidRequest(
            "authorization code does not exist, has expired or was already used".to_owned(),
        )),
        (status, _) if status >= 500 => Err(ProcessorError::Unavailable(format!("Stripe Connect answered {status}"))),
        (status, _) => Err(ProcessorError::Failed(format!("Stripe Connect refused the code exchange (HTTP {status})"))),
    }
}

/// Disconnects the operator's account; one that is already disconnected counts as done.
pub async fn deauthorize(
    http: &StripeHttp,
    connect_base: &url::Url,
    secret_key: &SecretString,
    client_id: &str,
    connected_account_id: &str,
) -> ProcessorResult<()> {
    let form = [("client_id", client_id), ("stripe_user_id", connected_account_id)];
    let (status, json, _) = post(http, connect_base, "oauth/deauthorize", secret_key, &form).await?;
    match status {
        200 => Ok(()),
        400 if json["error"] == "invalid_client" => Ok(()),
        status if status >= 500 => Err(ProcessorError::Unavailable(format!("Stripe Connect answered {status}"))),
        status => Err(ProcessorError::Failed(format!("Stripe Connect refused the deauthorization (HTTP {status})"))),
    }
}
