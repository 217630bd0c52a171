-- The event log: one row per event, appended in the transaction of the change it
-- describes. Readers page by (tx, seq) and only read rows of transactions older than
-- every transaction still running (pg_snapshot_xmin), so a cursor never skips an event
-- that commits late with a smaller seq.
CREATE TABLE events (
    seq bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    type text NOT NULL,
    tx bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    app_id uuid,
    operator_id uuid,
    -- The object as the app (and admins) see it.
    data jsonb NOT NULL,
    -- The operator's copy when it differs (a charge token's value).
    operator_data jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (app_id IS NOT NULL OR operator_id IS NOT NULL),
    CHECK (type IN ('session.started', 'session.declined', 'session.extended', 'session.ended',
                    'session.charged', 'session.payment_failed', 'session.canceled',
                    'session.refunded', 'session.disputed', 'charge_token.issued',
                    'link.status_changed'))
);
CREATE INDEX events_order ON events (tx, seq);
CREATE INDEX events_app ON events (app_id, tx, seq) WHERE app_id IS NOT NULL;
CREATE INDEX events_operator ON events (operator_id, tx, seq) WHERE operator_id IS NOT NULL;
CREATE INDEX events_created_at ON events (created_at);

CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    app_id uuid REFERENCES apps (id),
    operator_id uuid REFERENCES operators (id),
    url text NOT NULL,
    -- Empty: every type.
    event_types text[] NOT NULL DEFAULT '{}',
    description text,
    status text NOT NULL DEFAULT 'ENABLED' CHECK (status IN ('ENABLED', 'DISABLED')),
    disabled_reason text,
    secret_ciphertext bytea NOT NULL,
    secret_key_id text NOT NULL,
    previous_secret_ciphertext bytea,
    previous_secret_key_id text,
    previous_secret_expires_at timestamptz,
    -- Start of the current run of failed attempts (NULL after a success).
    failing_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((app_id IS NULL) <> (operator_id IS NULL))
);
CREATE INDEX webhook_endpoints_app ON webhook_endpoints (app_id) WHERE app_id IS NOT NULL;
CREATE INDEX webhook_endpoints_operator ON webhook_endpoints (operator_id) WHERE operator_id IS NOT NULL;

-- One row per (endpoint, event): the unit of delivery, claimed by any server process.
CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_seq bigint NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_seq);

-- Every HTTP attempt, for `webhookDeliveries`.
CREATE TABLE webhook_attempts (
    id uuid PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id text NOT NULL,
    attempt integer NOT NULL,
    succeeded boolean NOT NULL,
    http_status integer,
    duration_ms integer NOT NULL,
    error text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);

-- Fan-out in the emitting transaction: every enabled endpoint of the event's audience
-- that wants its type gets a delivery row, so no emitter can forget it.
CREATE FUNCTION events_fan_out() RETURNS trigger AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, event_seq)
    SELECT e.id, NEW.seq
    FROM webhook_endpoints e
    WHERE e.status = 'ENABLED'
      AND ((NEW.app_id IS NOT NULL AND e.app_id = NEW.app_id)
           OR (NEW.operator_id IS NOT NULL AND e.operator_id = NEW.operator_id))
      AND (cardinality(e.event_types) = 0 OR NEW.type = ANY (e.event_types));
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_fan_out AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_fan_out();
