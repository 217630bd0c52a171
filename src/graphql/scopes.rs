//! Enforces token scopes for every mutation in one place: a read-only token is refused
//! before any mutation resolver runs (over HTTP and WebSocket alike), so nothing is
//! written. The decision itself is `policy::require_write`.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo};
use async_graphql::{PathSegment, Pos, ServerResult, Value};

use super::Auth;
use crate::payments::policy;

pub struct WriteScope;

impl ExtensionFactory for WriteScope {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(WriteScopeExtension)
    }
}

struct WriteScopeExtension;

#[async_trait::async_trait]
impl Extension for WriteScopeExtension {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        // Root fields of the mutation type only; callers without a valid token are
        // turned away by the resolvers themselves (UNAUTHENTICATED).
        if info.path_node.parent.is_none()
            && info.parent_type == "Mutation"
            && let Some(Auth::Principal(principal)) = ctx.data_opt::<Auth>()
            && let Err(err) = policy::require_write(principal)
        {
            let segment = PathSegment::Field(info.alias.unwrap_or(info.name).to_owned());
            return Err(async_graphql::Error::from(err).into_server_error(Pos::default()).with_path(vec![segment]));
        }
        next.run(ctx, info).await
    }
}
