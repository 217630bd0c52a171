//! Stripe Connect OAuth (no Stripe client library covers it): the authorize URL, the
//! code exchange and deauthorization, as plain form POSTs.

use secrecy::{ExposeSecret, SecretString};

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

async fn post(
    http: &reqwest::Client,
    connect_base: &url::Url,
    path: &str,
    secret_key: &SecretString,
    form: &[(&str, &str)],
) -> ProcessorResult<(u16, serde_json::Value)> {
    let url = connect_base.join(path).map_err(|e| ProcessorError::Failed(format!("bad Connect base URL: {e}")))?;
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let response = http
        .post(url)
        .bearer_auth(secret_key.expose_secret())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| ProcessorError::Unavailable(format!("Stripe Connect: {e}")))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| ProcessorError::Unavailable(format!("Stripe Connect answer: {e}")))?;
    let json = serde_json::from_slice(&body).unwrap_or_default();
    Ok((status, json))
}

/// Exchanges an authorization code for the operator's connected account id.
pub async fn exchange_code(
    http: &reqwest::Client,
    connect_base: &url::Url,
    secret_key: &SecretString,
    code: &str,
) -> ProcessorResult<String> {
    let form = [("grant_type", "authorization_code"), ("code", code)];
    let (status, json) = post(http, connect_base, "oauth/token", secret_key, &form).await?;
    match (status, json["stripe_user_id"].as_str()) {
        (200, Some(account)) => Ok(account.to_owned()),
        (400, _) if json["error"] == "invalid_grant" => Err(ProcessorError::InvalidRequest(
            "authorization code does not exist, has expired or was already used".to_owned(),
        )),
        (status, _) if status >= 500 => Err(ProcessorError::Unavailable(format!("Stripe Connect answered {status}"))),
        (status, _) => Err(ProcessorError::Failed(format!("Stripe Connect refused the code exchange (HTTP {status})"))),
    }
}

/// Disconnects the operator's account; one that is already disconnected counts as done.
pub async fn deauthorize(
    http: &reqwest::Client,
    connect_base: &url::Url,
    secret_key: &SecretString,
    client_id: &str,
    connected_account_id: &str,
) -> ProcessorResult<()> {
    let form = [("client_id", client_id), ("stripe_user_id", connected_account_id)];
    let (status, json) = post(http, connect_base, "oauth/deauthorize", secret_key, &form).await?;
    match status {
        200 => Ok(()),
        400 if json["error"] == "invalid_client" => Ok(()),
        status if status >= 500 => Err(ProcessorError::Unavailable(format!("Stripe Connect answered {status}"))),
        status => Err(ProcessorError::Failed(format!("Stripe Connect refused the deauthorization (HTTP {status})"))),
    }
}
