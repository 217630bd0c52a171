-- The money lifecycle of a parking session: holds (authorizations and their
-- increments), captures, releases, refunds and disputes, each an immutable row in the
-- `payments` ledger. The session keeps running totals of its ledger (maintained by a
-- trigger, never by application code), and CHECKs on those totals make an impossible
-- balance unrepresentable: the trigger's UPDATE takes the session's row lock, so
-- concurrent movements of one session are serialised by the database itself.

ALTER TABLE parking_sessions
    DROP CONSTRAINT parking_sessions_status_check,
    DROP CONSTRAINT parking_sessions_check,
    DROP CONSTRAINT parking_sessions_check1,
    DROP CONSTRAINT parking_sessions_check2,
    DROP CONSTRAINT parking_sessions_check3,
    -- AUTHORIZING: written, its hold not yet decided (never delivered to the operator).
    ADD CONSTRAINT parking_sessions_status_check CHECK (status IN (
        'AUTHORIZING', 'ACTIVE', 'DECLINED', 'ENDED', 'CHARGED', 'PAYMENT_FAILED', 'CANCELED',
        'PARTIALLY_REFUNDED', 'REFUNDED', 'DISPUTED')),
    ADD CONSTRAINT parking_sessions_ended_at CHECK ((status IN ('AUTHORIZING', 'ACTIVE')) = (ended_at IS NULL)),
    ADD CONSTRAINT parking_sessions_amount_set CHECK (
        status IN ('AUTHORIZING', 'ACTIVE', 'DECLINED', 'CANCELED') OR (amount IS NOT NULL AND currency IS NOT NULL)),
    ADD CONSTRAINT parking_sessions_charge_id CHECK (
        (status IN ('CHARGED', 'PARTIALLY_REFUNDED', 'REFUNDED', 'DISPUTED')) = (processor_charge_id IS NOT NULL)),
    ADD CONSTRAINT parking_sessions_failure CHECK ((status IN ('PAYMENT_FAILED', 'DECLINED')) = (failure_code IS NOT NULL)),
    -- When the app expects parking to end (informational; extensions move it).
    ADD COLUMN expected_end_at timestamptz,
    -- The currency of the hold; NULL for a session without one (today's token flow).
    ADD COLUMN hold_currency text CHECK (hold_currency ~ '^[A-Z]{3}$'),
    -- Whether the first authorization accepts incremental authorizations.
    ADD COLUMN hold_incremental boolean,
    -- Who set the amount: an operator's amount stands; an app's may be replaced by the operator.
    ADD COLUMN amount_set_by text CHECK (amount_set_by IN ('APP', 'OPERATOR', 'ADMIN')),
    ADD COLUMN cancel_reason text CHECK (cancel_reason IN ('REQUESTED_BY_CUSTOMER', 'DUPLICATE', 'OTHER', 'EXPIRED')),
    -- Running totals of the ledger, in minor units (see payments_apply).
    ADD COLUMN held_amount bigint NOT NULL DEFAULT 0 CHECK (held_amount >= 0),
    ADD COLUMN captured_amount bigint NOT NULL DEFAULT 0 CHECK (captured_amount >= 0),
    ADD COLUMN released_amount bigint NOT NULL DEFAULT 0 CHECK (released_amount >= 0),
    ADD COLUMN refunded_amount bigint NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    ADD COLUMN refund_pending_amount bigint NOT NULL DEFAULT 0 CHECK (refund_pending_amount >= 0),
    -- A canceled session's ended_at is when it was canceled.
    ADD CONSTRAINT parking_sessions_canceled CHECK ((status = 'CANCELED') = (cancel_reason IS NOT NULL)),
    -- The invariants of the money: nothing is held without a hold currency; what is
    -- captured and released never exceeds what was held; what is refunded (or being
    -- refunded) never exceeds what was captured; an amount never exceeds the hold.
    ADD CONSTRAINT parking_sessions_hold_currency CHECK (hold_currency IS NOT NULL OR held_amount = 0),
    ADD CONSTRAINT parking_sessions_captured_le_held CHECK (
        hold_currency IS NULL OR captured_amount + released_amount <= held_amount),
    ADD CONSTRAINT parking_sessions_refunded_le_captured CHECK (
        refunded_amount + refund_pending_amount <= captured_amount),
    ADD CONSTRAINT parking_sessions_amount_le_held CHECK (
        hold_currency IS NULL OR amount IS NULL OR (amount <= held_amount AND currency = hold_currency));

-- One ACTIVE (or authorizing) session per vehicle, zone and operator, whichever app
-- started it: plates compare without spaces and hyphens, case-insensitively.
CREATE UNIQUE INDEX parking_sessions_one_active_per_vehicle ON parking_sessions
    (operator_id, zone, upper(translate(vehicle_plate, ' -', '')))
    WHERE status IN ('AUTHORIZING', 'ACTIVE');
-- The sweeper's scan for abandoned sessions.
CREATE INDEX parking_sessions_active_started_idx ON parking_sessions (started_at) WHERE status = 'ACTIVE';

-- Who set the amount, and every change of it.
CREATE TABLE session_amount_changes (
    id uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES parking_sessions (id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    set_by text NOT NULL CHECK (set_by IN ('APP', 'OPERATOR', 'ADMIN')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_amount_changes_session_idx ON session_amount_changes (session_id, created_at);

-- HELD: the token was spent on the session's hold (not usable for a charge).
ALTER TABLE charge_tokens
    DROP CONSTRAINT charge_tokens_status_check,
    ADD CONSTRAINT charge_tokens_status_check
        CHECK (status IN ('PENDING', 'ISSUED', 'ACKNOWLEDGED', 'HELD', 'CONSUMED', 'EXPIRED', 'VOIDED'));
CREATE UNIQUE INDEX charge_tokens_one_held ON charge_tokens (session_id) WHERE status = 'HELD';

CREATE OR REPLACE FUNCTION charge_tokens_final_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status IN ('CONSUMED', 'EXPIRED', 'VOIDED') AND NEW.status <> OLD.status THEN
        RAISE EXCEPTION 'charge token % is % and cannot become %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    -- A token spent on a hold is done with, except that a released hold voids it.
    IF OLD.status = 'HELD' AND NEW.status NOT IN ('HELD', 'VOIDED') THEN
        RAISE EXCEPTION 'charge token % is HELD and cannot become %', OLD.id, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

-- Whether the app may refund the link's sessions (set by the operator or an admin).
ALTER TABLE links ADD COLUMN app_may_refund boolean NOT NULL DEFAULT false;

-- A refund as requested (one or more REFUND ledger rows carry it out).
CREATE TABLE refunds (
    id uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES parking_sessions (id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reason text NOT NULL CHECK (reason IN ('DUPLICATE', 'REQUESTED_BY_CUSTOMER', 'FRAUDULENT', 'OTHER')),
    status text NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, idempotency_key)
);

-- The ledger: one row per movement of money. A row is written PENDING before the
-- processor is called (its id keys the processor request) and gets its outcome once;
-- after that it never changes, and no row is ever deleted.
CREATE TABLE payments (
    id uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES parking_sessions (id),
    kind text NOT NULL
        CHECK (kind IN ('AUTHORIZATION', 'INCREMENT', 'CAPTURE', 'CHARGE', 'RELEASE', 'REFUND', 'DISPUTE')),
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status text NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    -- The authorization an INCREMENT, CAPTURE or RELEASE acts on; the capture or charge
    -- a REFUND or DISPUTE acts on.
    parent_id uuid REFERENCES payments (id),
    refund_id uuid REFERENCES refunds (id),
    -- The processor's object (PaymentIntent, charge, refund, dispute id).
    processor_reference text,
    -- The app's fee taken (CAPTURE, CHARGE) or returned (REFUND), minor units.
    application_fee bigint CHECK (application_fee >= 0),
    failure_code text,
    failure_decline_code text,
    failure_message text,
    -- A dispute's reason as the processor reports it (a DISPUTE row is PENDING while
    -- the dispute is open, SUCCEEDED when the cardholder won it, FAILED when it was
    -- decided for the operator).
    reason text,
    -- The client's key of the request that wrote the row (extensions), per session.
    request_key text,
    -- The expected end an extension moves the session to.
    expected_end_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    settled_at timestamptz,
    CHECK ((status = 'PENDING') = (settled_at IS NULL)),
    CHECK (status <> 'FAILED' OR failure_code IS NOT NULL),
    CHECK ((kind IN ('INCREMENT', 'CAPTURE', 'RELEASE', 'REFUND')) <= (parent_id IS NOT NULL)),
    CHECK ((kind = 'REFUND') = (refund_id IS NOT NULL)),
    UNIQUE (session_id, request_key)
);
CREATE INDEX payments_session_idx ON payments (session_id, created_at, id);
CREATE INDEX payments_pending_idx ON payments (created_at) WHERE status = 'PENDING';
CREATE UNIQUE INDEX payments_processor_reference ON payments (kind, processor_reference)
    WHERE kind IN ('AUTHORIZATION', 'REFUND', 'DISPUTE') AND processor_reference IS NOT NULL;
-- Webhooks and disputes find captures and charges by the processor's reference.
CREATE INDEX payments_reference_idx ON payments (processor_reference) WHERE processor_reference IS NOT NULL;

-- Rows are immutable, except a PENDING row's outcome (status, processor reference,
-- fee, failure, settled time), set once.
CREATE FUNCTION payments_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger row % cannot be deleted', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status <> 'PENDING'
        OR NEW.id <> OLD.id OR NEW.session_id <> OLD.session_id OR NEW.kind <> OLD.kind
        OR NEW.amount <> OLD.amount OR NEW.currency <> OLD.currency
        OR NEW.parent_id IS DISTINCT FROM OLD.parent_id OR NEW.refund_id IS DISTINCT FROM OLD.refund_id
        OR NEW.request_key IS DISTINCT FROM OLD.request_key OR NEW.reason IS DISTINCT FROM OLD.reason
        OR NEW.expected_end_at IS DISTINCT FROM OLD.expected_end_at OR NEW.created_at <> OLD.created_at
        OR (OLD.processor_reference IS NOT NULL AND NEW.processor_reference IS DISTINCT FROM OLD.processor_reference)
    THEN
        RAISE EXCEPTION 'ledger row % is % and cannot change', OLD.id, OLD.status USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER payments_immutable BEFORE UPDATE OR DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION payments_immutable();

-- Keeps the session's running totals equal to its ledger. The UPDATE locks the
-- session row and its CHECKs refuse an impossible balance, so two concurrent refunds
-- cannot both pass.
CREATE FUNCTION payments_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d_held bigint := 0;
    d_captured bigint := 0;
    d_released bigint := 0;
    d_refunded bigint := 0;
    d_pending bigint := 0;
    session_currency text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT coalesce(hold_currency, currency) INTO session_currency FROM parking_sessions WHERE id = NEW.session_id;
        IF session_currency IS NOT NULL AND session_currency <> NEW.currency THEN
            RAISE EXCEPTION 'ledger row in % for a session in %', NEW.currency, session_currency
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.status = 'SUCCEEDED' THEN
            RAISE EXCEPTION 'ledger row % already settled', OLD.id USING ERRCODE = 'check_violation';
        END IF;
        IF OLD.kind = 'REFUND' AND OLD.status = 'PENDING' THEN
            d_pending := d_pending - OLD.amount;
        END IF;
    END IF;
    IF NEW.kind = 'REFUND' AND NEW.status = 'PENDING' THEN
        d_pending := d_pending + NEW.amount;
    END IF;
    IF NEW.status = 'SUCCEEDED' THEN
        CASE NEW.kind
            WHEN 'AUTHORIZATION', 'INCREMENT' THEN d_held := NEW.amount;
            WHEN 'CAPTURE', 'CHARGE' THEN d_captured := NEW.amount;
            WHEN 'RELEASE' THEN d_released := NEW.amount;
            WHEN 'REFUND' THEN d_refunded := NEW.amount;
            ELSE NULL;
        END CASE;
    END IF;
    IF d_held <> 0 OR d_captured <> 0 OR d_released <> 0 OR d_refunded <> 0 OR d_pending <> 0 THEN
        UPDATE parking_sessions SET
            held_amount = held_amount + d_held,
            captured_amount = captured_amount + d_captured,
            released_amount = released_amount + d_released,
            refunded_amount = refunded_amount + d_refunded,
            refund_pending_amount = refund_pending_amount + d_pending
        WHERE id = NEW.session_id;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER payments_apply AFTER INSERT OR UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION payments_apply();

-- The sandbox processor's holds (PaymentIntents with capture_method=manual), its
-- refunds, and the replies it gave per idempotency key.
CREATE TABLE sandbox_authorizations (
    id text PRIMARY KEY,
    connected_account_id text NOT NULL REFERENCES sandbox_accounts (id),
    token_id text NOT NULL UNIQUE REFERENCES sandbox_tokens (id),
    test_token text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    amount_captured bigint NOT NULL DEFAULT 0 CHECK (amount_captured >= 0 AND amount_captured <= amount),
    currency text NOT NULL,
    application_fee bigint,
    status text NOT NULL CHECK (status IN ('requires_capture', 'succeeded', 'canceled')),
    incremental boolean NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_refunds (
    id text PRIMARY KEY,
    -- The charge (ch_…) or PaymentIntent (pi_…) refunded.
    payment_ref text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    application_fee_refunded bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_refunds_payment_idx ON sandbox_refunds (payment_ref);

CREATE TABLE sandbox_replies (
    idempotency_key text PRIMARY KEY,
    operation text NOT NULL,
    -- The reply as JSON text; NULL while the request runs.
    reply text,
    created_at timestamptz NOT NULL DEFAULT now()
);
