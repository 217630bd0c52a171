-- Stripe mode: each app's platform account credentials (secrets encrypted at rest with
-- AES-256-GCM; the id of the key that sealed each one is kept beside it so keys can
-- rotate), the connected accounts' capabilities, and received webhook events.

ALTER TABLE apps
    ADD COLUMN connect_client_id text,
    ADD COLUMN secret_key_ciphertext bytea,
    ADD COLUMN secret_key_key_id text,
    ADD COLUMN webhook_secret_ciphertext bytea,
    ADD COLUMN webhook_secret_key_id text,
    -- The app's cut of each charge, in basis points of the amount.
    ADD COLUMN platform_fee_bps integer CHECK (platform_fee_bps BETWEEN 0 AND 10000),
    ADD CONSTRAINT apps_secret_key_sealed CHECK ((secret_key_ciphertext IS NULL) = (secret_key_key_id IS NULL)),
    ADD CONSTRAINT apps_webhook_secret_sealed
        CHECK ((webhook_secret_ciphertext IS NULL) = (webhook_secret_key_id IS NULL));
CREATE UNIQUE INDEX apps_processor_account_idx ON apps (processor, processor_account_id);

-- What Stripe last reported of the operator's connected account (`account.updated`).
ALTER TABLE links
    ADD COLUMN charges_enabled boolean,
    ADD COLUMN payouts_enabled boolean;
ALTER TABLE operators
    ADD COLUMN charges_enabled boolean,
    ADD COLUMN payouts_enabled boolean;
CREATE INDEX links_connected_account_idx ON links (connected_account_id);

-- Webhook events already acted on: a redelivery is acknowledged and ignored.
CREATE TABLE webhook_events (
    id text PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id),
    kind text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Attempts at processor requests whose earlier attempt has an unknown outcome and was
-- proven not to exist: the attempt number is part of the next Idempotency-Key.
CREATE TABLE processor_attempts (
    scope text PRIMARY KEY,
    attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    updated_at timestamptz NOT NULL DEFAULT now()
);
