//! Who may see and do what: the one place authorization is decided.
//!
//! Visibility: admins see everything. An app sees itself and its own links, customers,
//! sessions and tokens (never a token's value). An operator sees its own links, sessions
//! and tokens (with their values), and the apps and customers those reach. Operators
//! form a public directory (apps need their ids to link). An object the caller may not
//! see answers exactly as a missing one does, so existence leaks nothing.

use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::models::links::LinkFilter;
use crate::models::{ChargeToken, Link, ParkingSession};

/// Mutations need the `write` scope (read-only tokens serve partner frontends).
pub fn require_write(principal: &Principal) -> ApiResult<()> {
    if principal.scopes.write {
        Ok(())
    } else {
        Err(ApiError::forbidden("this token has the read scope only; mutations need the write scope"))
    }
}

pub fn require_admin(principal: &Principal) -> ApiResult<()> {
    match principal.role {
        Role::Admin => Ok(()),
        _ => Err(ApiError::forbidden("this operation needs the admin role")),
    }
}

/// The app a role-app caller acts as.
pub fn require_app(principal: &Principal) -> ApiResult<Uuid> {
    principal.app_id().ok_or_else(|| ApiError::forbidden("this operation needs the app role"))
}

/// The operator a role-operator caller acts as.
pub fn require_operator(principal: &Principal) -> ApiResult<Uuid> {
    principal.operator_id().ok_or_else(|| ApiError::forbidden("this operation needs the operator role"))
}

/// Admin, or the app itself.
pub fn may_act_for_app(principal: &Principal, app_id: Uuid) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::App(id) => id == app_id,
        Role::Operator(_) => false,
    }
}

pub fn may_see_link(principal: &Principal, link: &Link) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::App(id) => id == link.app_id,
        Role::Operator(id) => id == link.operator_id,
    }
}

/// Authorizing a link (its authorization URL, `completeLink`) is for the operator whose
/// account is being connected, and admins: an app asks for a link but never decides
/// which account it lands on.
pub fn may_authorize_link(principal: &Principal, link: &Link) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::App(_) => false,
        Role::Operator(id) => id == link.operator_id,
    }
}

/// Narrows a links listing to the viewer's own links; `None` when the filter asks for
/// someone else's (the answer is then an empty list, as for links that do not exist).
pub fn narrow_links(principal: &Principal, mut filter: LinkFilter) -> Option<LinkFilter> {
    match principal.role {
        Role::Admin => {}
        Role::App(me) => {
            if filter.app_id.is_some_and(|id| id != me) {
                return None;
            }
            filter.app_id = Some(me);
        }
        Role::Operator(me) => {
            if filter.operator_id.is_some_and(|id| id != me) {
                return None;
            }
            filter.operator_id = Some(me);
        }
    }
    Some(filter)
}

/// Whose reports make up what a viewer sees of an operator's account capabilities: the
/// operator's active links the viewer may see. `Some(None)`: all of them (admins, the
/// operator itself); `Some(Some(app))`: that app's link only; `None`: none (another
/// operator). So one app's webhooks never change what another app sees.
pub fn capability_reporters(principal: &Principal, operator_id: Uuid) -> Option<Option<Uuid>> {
    match principal.role {
        Role::Admin => Some(None),
        Role::App(me) => Some(Some(me)),
        Role::Operator(me) => (me == operator_id).then_some(None),
    }
}

pub fn may_see_session(principal: &Principal, session: &ParkingSession) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::App(id) => id == session.app_id,
        Role::Operator(id) => id == session.operator_id,
    }
}

/// Tokens are seen with their session; the app of the session sees the token's state.
pub fn may_see_token(principal: &Principal, token: &ChargeToken, session_app_id: Uuid) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::App(id) => id == session_app_id,
        Role::Operator(id) => id == token.operator_id,
    }
}

/// Only the operator a token was issued to ever sees its value.
pub fn may_read_token_value(principal: &Principal, token: &ChargeToken) -> bool {
    principal.operator_id() == Some(token.operator_id)
}

/// Whether a customer is visible without asking the database: admin or its own app.
/// (An operator sees a customer through its sessions; see `payments::customers`.)
pub fn may_see_customer_directly(principal: &Principal, customer_app_id: Uuid) -> bool {
    may_act_for_app(principal, customer_app_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn principal(role: Role) -> Principal {
        Principal { subject: "t".into(), role, expires_at: Utc::now(), scopes: crate::auth::Scopes::FULL }
    }

    #[test]
    fn app_acts_only_for_itself() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(may_act_for_app(&principal(Role::App(a)), a));
        assert!(!may_act_for_app(&principal(Role::App(a)), b));
        assert!(!may_act_for_app(&principal(Role::Operator(a)), a));
        assert!(may_act_for_app(&principal(Role::Admin), b));
    }

    #[test]
    fn only_the_operator_and_admins_authorize_a_link() {
        let (app, operator, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let now = Utc::now();
        let link = Link {
            id: Uuid::now_v7(),
            app_id: app,
            operator_id: operator,
            status: crate::models::LinkStatus::Pending,
            connected_account_id: None,
            state_nonce: Some(Uuid::new_v4()),
            failure_reason: None,
            created_at: now,
            updated_at: now,
            activated_at: None,
            revoked_at: None,
            charges_enabled: None,
            payouts_enabled: None,
            held_account_id: None,
            app_may_refund: false,
        };
        assert!(may_authorize_link(&principal(Role::Operator(operator)), &link));
        assert!(may_authorize_link(&principal(Role::Admin), &link));
        assert!(!may_authorize_link(&principal(Role::App(app)), &link));
        assert!(!may_authorize_link(&principal(Role::Operator(other)), &link));
    }

    #[test]
    fn role_requirements() {
        let id = Uuid::now_v7();
        assert!(require_admin(&principal(Role::App(id))).is_err());
        assert_eq!(require_app(&principal(Role::App(id))).unwrap(), id);
        assert!(require_app(&principal(Role::Operator(id))).is_err());
        assert_eq!(require_operator(&principal(Role::Operator(id))).unwrap(), id);
    }
}
