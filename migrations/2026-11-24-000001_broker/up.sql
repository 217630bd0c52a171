-- The broker's own state: apps, operators, the links between them, customers
-- (processor references and non-sensitive card facts only), parking sessions and the
-- single-use charge tokens handed to operators.

CREATE TABLE apps (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- Which processor holds this app's platform account ('sandbox' or 'stripe').
    processor text NOT NULL,
    processor_account_id text NOT NULL,
    publishable_key text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operators (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- The last charge-token cursor handed to this operator. Bumped under the row lock
    -- by the transaction that issues a token, so cursors commit in order.
    token_seq bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE links (
    id uuid PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id),
    operator_id uuid NOT NULL REFERENCES operators (id),
    status text NOT NULL CHECK (status IN ('PENDING', 'ACTIVE', 'REVOKED')),
    connected_account_id text,
    -- Nonce of the outstanding authorization request; cleared once used so a signed
    -- state cannot be replayed.
    state_nonce uuid,
    failure_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    revoked_at timestamptz,
    UNIQUE (app_id, operator_id),
    CHECK (status <> 'ACTIVE' OR connected_account_id IS NOT NULL)
);
CREATE INDEX links_operator_id_idx ON links (operator_id, id);

-- Outbox of link status changes, read by linkStatusChanged subscriptions. `seq` is
-- taken under a transaction-scoped advisory lock, so it is also the commit order.
CREATE TABLE link_events (
    seq bigserial PRIMARY KEY,
    link_id uuid NOT NULL REFERENCES links (id),
    app_id uuid NOT NULL REFERENCES apps (id),
    operator_id uuid NOT NULL REFERENCES operators (id),
    status text NOT NULL CHECK (status IN ('PENDING', 'ACTIVE', 'REVOKED')),
    occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX link_events_app_idx ON link_events (app_id, seq);
CREATE INDEX link_events_operator_idx ON link_events (operator_id, seq);

CREATE TABLE customers (
    id uuid PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id),
    external_ref text NOT NULL CHECK (length(external_ref) BETWEEN 1 AND 255),
    -- NULL until the processor has created the customer (the row is written first, so
    -- its id can name the processor request).
    processor_customer_id text,
    card_brand text,
    card_last4 text CHECK (card_last4 ~ '^[0-9]{4}$'),
    card_exp_month smallint CHECK (card_exp_month BETWEEN 1 AND 12),
    card_exp_year smallint,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, external_ref),
    UNIQUE (processor_customer_id),
    CHECK ((processor_customer_id IS NULL) = (card_last4 IS NULL))
);

CREATE TABLE parking_sessions (
    id uuid PRIMARY KEY,
    app_id uuid NOT NULL REFERENCES apps (id),
    operator_id uuid NOT NULL REFERENCES operators (id),
    customer_id uuid NOT NULL REFERENCES customers (id),
    link_id uuid NOT NULL REFERENCES links (id),
    zone text NOT NULL CHECK (length(zone) BETWEEN 1 AND 100),
    vehicle_plate text NOT NULL CHECK (length(vehicle_plate) BETWEEN 1 AND 20),
    status text NOT NULL CHECK (status IN ('ACTIVE', 'ENDED', 'CHARGED', 'PAYMENT_FAILED')),
    -- The app's idempotency key for startParkingSession: one session per key.
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    started_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz,
    -- Money in minor units of an ISO 4217 currency.
    amount bigint CHECK (amount > 0),
    currency text CHECK (currency ~ '^[A-Z]{3}$'),
    charged_at timestamptz,
    processor_charge_id text,
    failure_code text,
    failure_decline_code text,
    failure_message text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, idempotency_key),
    CHECK ((status = 'ACTIVE') = (ended_at IS NULL)),
    CHECK (status = 'ACTIVE' OR (amount IS NOT NULL AND currency IS NOT NULL)),
    CHECK ((status = 'CHARGED') = (processor_charge_id IS NOT NULL)),
    CHECK ((status = 'PAYMENT_FAILED') = (failure_code IS NOT NULL))
);
CREATE INDEX parking_sessions_app_idx ON parking_sessions (app_id, id);
CREATE INDEX parking_sessions_operator_idx ON parking_sessions (operator_id, id);
CREATE INDEX parking_sessions_customer_idx ON parking_sessions (customer_id);

CREATE TABLE charge_tokens (
    id uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES parking_sessions (id),
    operator_id uuid NOT NULL REFERENCES operators (id),
    link_id uuid NOT NULL REFERENCES links (id),
    -- PENDING: written, not yet issued by the processor (never shown to anyone).
    status text NOT NULL
        CHECK (status IN ('PENDING', 'ISSUED', 'ACKNOWLEDGED', 'CONSUMED', 'EXPIRED', 'VOIDED')),
    -- The processor's single-use token on the operator's connected account.
    token text UNIQUE,
    -- Per-operator delivery cursor, assigned when the token is issued.
    cursor bigint,
    issued_at timestamptz,
    expires_at timestamptz,
    acknowledged_at timestamptz,
    consumed_at timestamptz,
    voided_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (operator_id, cursor),
    -- Only a PENDING token (or one voided before it was issued) has no value.
    CHECK ((status = 'PENDING') <= (token IS NULL)),
    CHECK (token IS NOT NULL OR status IN ('PENDING', 'VOIDED')),
    CHECK ((token IS NULL) = (cursor IS NULL)),
    CHECK ((token IS NULL) = (expires_at IS NULL)),
    CHECK ((status = 'CONSUMED') = (consumed_at IS NOT NULL)),
    CHECK ((status = 'VOIDED') = (voided_at IS NOT NULL))
);
CREATE INDEX charge_tokens_session_idx ON charge_tokens (session_id);
CREATE INDEX charge_tokens_link_idx ON charge_tokens (link_id) WHERE status IN ('PENDING', 'ISSUED', 'ACKNOWLEDGED');
-- At most one token per session in flight, and at most one ever consumed.
CREATE UNIQUE INDEX charge_tokens_one_outstanding ON charge_tokens (session_id)
    WHERE status IN ('PENDING', 'ISSUED', 'ACKNOWLEDGED');
CREATE UNIQUE INDEX charge_tokens_one_consumed ON charge_tokens (session_id)
    WHERE status = 'CONSUMED';

-- A consumed, expired or voided token is final: no code path may bring it back.
CREATE FUNCTION charge_tokens_final_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IN ('CONSUMED', 'EXPIRED', 'VOIDED') AND NEW.status <> OLD.status THEN
        RAISE EXCEPTION 'charge token % is % and cannot become %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER charge_tokens_final_states BEFORE UPDATE ON charge_tokens
    FOR EACH ROW EXECUTE FUNCTION charge_tokens_final_states();
