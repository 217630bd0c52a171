//! A session's charge tokens: `reissueChargeToken`, `acknowledgeChargeToken`.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

use crate::graphql::types::ChargeToken;
use crate::graphql::{broker, parse_id, principal};
use crate::payments::tokens;

/// Input of `reissueChargeToken`.
#[derive(InputObject)]
pub struct ReissueChargeTokenInput {
    /// The session whose token expired or was voided.
    pub session_id: ID,
}

/// Result of `reissueChargeToken`.
#[derive(SimpleObject)]
pub struct ReissueChargeTokenPayload {
    /// The fresh token (its value is visible to the operator only).
    pub charge_token: ChargeToken,
}

/// Input of `acknowledgeChargeToken`.
#[derive(InputObject)]
pub struct AcknowledgeChargeTokenInput {
    /// The token the operator received.
    pub charge_token_id: ID,
}

/// Result of `acknowledgeChargeToken`.
#[derive(SimpleObject)]
pub struct AcknowledgeChargeTokenPayload {
    /// The token, `ACKNOWLEDGED` (unless already consumed, expired or voided).
    pub charge_token: ChargeToken,
}

#[derive(Default)]
pub struct TokenMutation;

#[Object]
impl TokenMutation {
    /// Issues a fresh charge token when the session's last one expired or was voided.
    /// The session's app or operator (or admin).
    async fn reissue_charge_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The session whose token to replace.")] input: ReissueChargeTokenInput,
    ) -> async_graphql::Result<ReissueChargeTokenPayload> {
        let session_id = parse_id("sessionId", &input.session_id)?;
        let viewer = principal(ctx)?;
        let token = tokens::reissue(broker(ctx), viewer, session_id).await?;
        Ok(ReissueChargeTokenPayload { charge_token: ChargeToken(token) })
    }

    /// Confirms the operator received a charge token. Role operator.
    async fn acknowledge_charge_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The token the operator received.")] input: AcknowledgeChargeTokenInput,
    ) -> async_graphql::Result<AcknowledgeChargeTokenPayload> {
        let token_id = parse_id("chargeTokenId", &input.charge_token_id)?;
        let viewer = principal(ctx)?;
        let token = tokens::acknowledge(broker(ctx), viewer, token_id).await?;
        Ok(AcknowledgeChargeTokenPayload { charge_token: ChargeToken(token) })
    }
}
