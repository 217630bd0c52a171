//! `webhook_events`: the processor webhook deliveries already applied, by event id, so a
//! redelivery is acknowledged and not applied twice.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::webhook_events;

/// A delivery about to be applied.
#[derive(Debug, Clone, Copy, Insertable)]
#[diesel(table_name = webhook_events)]
pub struct NewWebhookEvent<'a> {
    /// The processor's event id.
    pub id: &'a str,
    /// The app whose signing secret verified the delivery.
    pub app_id: Uuid,
    /// The event's type (Stripe's, e.g. `refund.updated`; `other` for those ignored).
    pub kind: &'a str,
}

impl NewWebhookEvent<'_> {
    /// Records the event unless it was recorded before; true when it is new. Call in the
    /// transaction that applies it, so the record and the effect commit together.
    pub async fn insert_if_new(self, conn: &mut AsyncPgConnection) -> QueryResult<bool> {
        let inserted =
            diesel::insert_into(webhook_events::table).values(self).on_conflict_do_nothing().execute(conn).await?;
        Ok(inserted == 1)
    }
}
