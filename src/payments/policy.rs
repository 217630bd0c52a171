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
use crate::models::apps::AppScope;
use crate::models::customers::CustomerScope;
use crate::models::events::EventScope;
use crate::models::link_events::LinkEventScope;
use crate::models::links::LinkFilter;
use crate::models::parking_sessions::SessionFilter;
use crate::models::webhooks::{Endpoint, EndpointScope};
use crate::models::{ChargeToken, Link, ParkingSession};

/// Mutations need the `write` scope (read-only tokens serve partner frontends).
pub fn require_write(principal: &Principal) -> ApiResult<()> {
    if principal.scopes.write {
        Ok(())
    } else {
        Err(ApiError::forbidden("this token has the read scope only; mutations need the write scope"))
    }
}

/// Admins only.
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

/// A link is seen by its app, its operator and admins.
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

/// A session is seen by its app, its operator and admins.
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

/// Whether a viewer may see one app. An operator's answer needs the database, so it is
/// returned as the question to ask (`payments::parties::may_see_app` asks it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppVisibility {
    /// Visible without asking the database.
    Visible,
    /// Visible when the app has a link (in any state) with this operator.
    IfLinkedTo(Uuid),
    /// Never visible.
    Hidden,
}

/// Whether the viewer may see the app (or the question to ask the database, for an operator).
pub fn app_visibility(principal: &Principal, app_id: Uuid) -> AppVisibility {
    match principal.role {
        Role::Admin => AppVisibility::Visible,
        Role::App(id) if id == app_id => AppVisibility::Visible,
        Role::App(_) => AppVisibility::Hidden,
        Role::Operator(id) => AppVisibility::IfLinkedTo(id),
    }
}

/// The apps a viewer lists: all (admins), itself (an app), the apps it is linked to (an
/// operator).
pub fn app_scope(principal: &Principal) -> AppScope {
    match principal.role {
        Role::Admin => AppScope::All,
        Role::App(id) => AppScope::Only(id),
        Role::Operator(id) => AppScope::LinkedTo(id),
    }
}

/// Whether a viewer may see one customer, decided from its app; an operator's answer
/// needs the database (`payments::customers::visible` asks it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomerVisibility {
    /// Visible without asking the database.
    Visible,
    /// Visible when the customer has a parking session at this operator.
    IfSessionAt(Uuid),
    /// Never visible.
    Hidden,
}

/// Whether the viewer may see a customer of this app (or the question to ask the database, for an operator).
pub fn customer_visibility(principal: &Principal, customer_app_id: Uuid) -> CustomerVisibility {
    match principal.role {
        Role::Admin => CustomerVisibility::Visible,
        Role::App(id) if id == customer_app_id => CustomerVisibility::Visible,
        Role::App(_) => CustomerVisibility::Hidden,
        Role::Operator(id) => CustomerVisibility::IfSessionAt(id),
    }
}

/// The customers a viewer lists: all (admins), its own (an app), those with a session
/// there (an operator).
pub fn customer_scope(principal: &Principal) -> CustomerScope {
    match principal.role {
        Role::Admin => CustomerScope::All,
        Role::App(id) => CustomerScope::App(id),
        Role::Operator(id) => CustomerScope::SessionsAt(id),
    }
}

/// Narrows a sessions listing to the viewer's own sessions (admins: all).
pub fn narrow_sessions(principal: &Principal, mut filter: SessionFilter) -> SessionFilter {
    match principal.role {
        Role::Admin => {}
        Role::App(id) => filter.app_id = Some(id),
        Role::Operator(id) => filter.operator_id = Some(id),
    }
    filter
}

/// Only the session's operator (and admins) charge it through curbpay; its app never
/// does. (Call after `may_see_session`.)
pub fn may_charge_session(principal: &Principal) -> bool {
    !matches!(principal.role, Role::App(_))
}

/// Whether a refund by this viewer needs the link's `app_may_refund` permission: an
/// app refunds only where its operator allowed it; the operator and admins always may.
/// (Call after `may_see_session`.)
pub fn refund_needs_link_permission(principal: &Principal) -> bool {
    matches!(principal.role, Role::App(_))
}

/// The link status changes a viewer follows: its own links' (admins: all).
pub fn link_event_scope(principal: &Principal) -> LinkEventScope {
    match principal.role {
        Role::Admin => LinkEventScope::All,
        Role::App(id) => LinkEventScope::App(id),
        Role::Operator(id) => LinkEventScope::Operator(id),
    }
}

/// The events (query, subscription) a viewer reads: its own (admins: all).
pub fn event_scope(principal: &Principal) -> EventScope {
    match principal.role {
        Role::Admin => EventScope::All,
        Role::App(id) => EventScope::App(id),
        Role::Operator(id) => EventScope::Operator(id),
    }
}

/// The webhook endpoints a viewer lists: its own (admins: all).
pub fn endpoint_scope(principal: &Principal) -> EndpointScope {
    match principal.role {
        Role::Admin => EndpointScope::All,
        Role::App(id) => EndpointScope::App(id),
        Role::Operator(id) => EndpointScope::Operator(id),
    }
}

/// Whether a viewer may see and change a webhook endpoint: its owner and admins.
pub fn may_manage_endpoint(principal: &Principal, endpoint: &Endpoint) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::App(id) => endpoint.app_id == Some(id),
        Role::Operator(id) => endpoint.operator_id == Some(id),
    }
}

/// Who owns a new webhook endpoint, as `(app_id, operator_id)` with exactly one set: an
/// app or operator creates endpoints for itself only (naming itself is allowed); an
/// admin names exactly one owner.
pub fn endpoint_owner(
    principal: &Principal,
    app_id: Option<Uuid>,
    operator_id: Option<Uuid>,
) -> ApiResult<(Option<Uuid>, Option<Uuid>)> {
    let owner = match principal.role {
        Role::App(id) => (Some(id), None),
        Role::Operator(id) => (None, Some(id)),
        Role::Admin => {
            return match (app_id, operator_id) {
                (Some(a), None) => Ok((Some(a), None)),
                (None, Some(o)) => Ok((None, Some(o))),
                _ => Err(ApiError::bad_input("admins give exactly one of appId and operatorId")),
            };
        }
    };
    let own = app_id.is_none_or(|a| Some(a) == owner.0) && operator_id.is_none_or(|o| Some(o) == owner.1);
    if !own {
        return Err(ApiError::forbidden("an endpoint can only be created for the caller itself"));
    }
    Ok(owner)
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

    #[test]
    fn every_listing_is_narrowed_to_the_viewer() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (admin, app, operator) = (principal(Role::Admin), principal(Role::App(me)), principal(Role::Operator(me)));
        assert_eq!(app_scope(&admin), AppScope::All);
        assert_eq!(app_scope(&app), AppScope::Only(me));
        assert_eq!(app_scope(&operator), AppScope::LinkedTo(me));
        assert_eq!(customer_scope(&app), CustomerScope::App(me));
        assert_eq!(customer_scope(&operator), CustomerScope::SessionsAt(me));
        assert_eq!(link_event_scope(&operator), LinkEventScope::Operator(me));
        assert_eq!(event_scope(&app), EventScope::App(me));
        assert_eq!(endpoint_scope(&operator), EndpointScope::Operator(me));
        let asked = SessionFilter { app_id: Some(other), ..Default::default() };
        assert_eq!(narrow_sessions(&app, asked).app_id, Some(me));
        assert_eq!(narrow_sessions(&operator, asked).operator_id, Some(me));
        assert_eq!(narrow_sessions(&admin, asked).app_id, Some(other));
    }

    #[test]
    fn single_objects_are_visible_to_their_parties() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(app_visibility(&principal(Role::App(me)), me), AppVisibility::Visible);
        assert_eq!(app_visibility(&principal(Role::App(me)), other), AppVisibility::Hidden);
        assert_eq!(app_visibility(&principal(Role::Operator(me)), other), AppVisibility::IfLinkedTo(me));
        assert_eq!(customer_visibility(&principal(Role::Admin), other), CustomerVisibility::Visible);
        assert_eq!(customer_visibility(&principal(Role::App(me)), other), CustomerVisibility::Hidden);
        assert_eq!(customer_visibility(&principal(Role::Operator(me)), other), CustomerVisibility::IfSessionAt(me));
    }

    #[test]
    fn endpoints_are_created_for_the_caller_itself() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        let app = principal(Role::App(me));
        assert_eq!(endpoint_owner(&app, None, None).unwrap(), (Some(me), None));
        assert_eq!(endpoint_owner(&app, Some(me), None).unwrap(), (Some(me), None));
        assert_eq!(endpoint_owner(&app, Some(other), None).unwrap_err().code().as_str(), "FORBIDDEN");
        assert_eq!(endpoint_owner(&app, None, Some(me)).unwrap_err().code().as_str(), "FORBIDDEN");
        let admin = principal(Role::Admin);
        assert_eq!(endpoint_owner(&admin, None, Some(other)).unwrap(), (None, Some(other)));
        assert_eq!(endpoint_owner(&admin, None, None).unwrap_err().code().as_str(), "BAD_USER_INPUT");
        assert_eq!(endpoint_owner(&admin, Some(me), Some(other)).unwrap_err().code().as_str(), "BAD_USER_INPUT");
    }

    #[test]
    fn apps_neither_charge_nor_refund_on_their_own() {
        let id = Uuid::now_v7();
        assert!(!may_charge_session(&principal(Role::App(id))));
        assert!(may_charge_session(&principal(Role::Operator(id))));
        assert!(refund_needs_link_permission(&principal(Role::App(id))));
        assert!(!refund_needs_link_permission(&principal(Role::Admin)));
    }
}
