//! Connect OAuth endpoints: authorize, token exchange, deauthorize.

use serde_json::{Value, json};

use super::errors::{Reply, oauth_err};
use super::{Db, Key, Req, new_id};

/// As if the account owner approved (or denied) at Stripe: a 302 to `redirect_uri`.
pub(super) fn oauth_authorize(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let client_id = req.p("client_id").unwrap_or_default();
    if !db.platforms.values().any(|p| p.connect_client_id == client_id) {
        return Err(oauth_err(400, "invalid_client", format!("No such application: '{client_id}'")));
    }
    let redirect = req.p("redirect_uri").unwrap_or_default();
    let mut url = url::Url::parse(redirect)
        .map_err(|_| oauth_err(400, "invalid_redirect_uri", format!("Invalid redirect_uri: '{redirect}'")))?;
    let approval = db.approvals.pop_front().unwrap_or_else(|| Some(new_id("acct")));
    let mut query = url.query_pairs_mut();
    match approval {
        Some(account) => query
            .append_pair("scope", req.p("scope").unwrap_or("read_write"))
            .append_pair("code", &db.mint_code(client_id, &account)),
        None => {
            query.append_pair("error", "access_denied").append_pair("error_description", "The user denied your request")
        }
    };
    if let Some(state) = req.p("state") {
        query.append_pair("state", state);
    }
    drop(query);
    Err(Reply { status: 302, body: json!({}), headers: vec![("location", url.to_string())] })
}

pub(super) fn oauth_token(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let platform = db.platform_by_secret(req.p("client_secret").or(req.bearer.as_deref()))?;
    if req.p("grant_type") != Some("authorization_code") {
        return Err(oauth_err(
            400,
            "unsupported_grant_type",
            format!("Unsupported grant type: {}", req.p("grant_type").unwrap_or_default()),
        ));
    }
    let code = req.p("code").unwrap_or_default();
    let Some(found) = db.codes.get_mut(code).filter(|c| c.client_id == platform.connect_client_id) else {
        return Err(oauth_err(400, "invalid_grant", format!("Authorization code does not exist: {code}")));
    };
    if found.used {
        return Err(oauth_err(400, "invalid_grant", format!("Authorization code already used: {code}")));
    }
    found.used = true;
    let account = found.account.clone();
    db.account(&account).platforms.insert(platform.account_id.clone());
    let access_token = new_id("sk_test");
    db.keys.insert(
        access_token.clone(),
        Key { account: account.clone(), platform: false, issuer: Some(platform.account_id) },
    );
    Ok(json!({
        "access_token": access_token, "livemode": false, "refresh_token": new_id("rt"), "token_type": "bearer",
        "stripe_publishable_key": new_id("pk_test"), "stripe_user_id": account, "scope": "read_write",
    }))
}

/// Disconnects the account and revokes the access tokens the platform got for it.
pub(super) fn oauth_deauthorize(db: &mut Db, req: &Req) -> Result<Value, Reply> {
    let platform = db.platform_by_secret(req.bearer.as_deref().or(req.p("client_secret")))?;
    let client_id = req.p("client_id").unwrap_or_default();
    if client_id != platform.connect_client_id {
        return Err(oauth_err(400, "invalid_client", format!("No such application: '{client_id}'")));
    }
    let account = req.p("stripe_user_id").unwrap_or_default().to_owned();
    if !db.accounts.get_mut(&account).is_some_and(|a| a.platforms.remove(&platform.account_id)) {
        let description =
            format!("This application is not connected to stripe account {account}, or that account does not exist.");
        return Err(oauth_err(400, "invalid_client", description));
    }
    db.keys.retain(|_, k| !(k.account == account && k.issuer.as_ref() == Some(&platform.account_id)));
    Ok(json!({ "stripe_user_id": account }))
}
