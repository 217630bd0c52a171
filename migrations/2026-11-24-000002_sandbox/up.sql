-- State of the built-in sandbox processor, kept in Postgres so that a restart loses
-- nothing. It models Stripe's objects closely enough that flows behave alike; it never
-- holds a card number (test cards are known by their public test token names).

CREATE TABLE sandbox_accounts (
    id text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('platform', 'connected')),
    -- The curbpay app or operator the account belongs to.
    owner_id uuid NOT NULL,
    publishable_key text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, owner_id)
);

CREATE TABLE sandbox_customers (
    id text PRIMARY KEY,
    account_id text NOT NULL REFERENCES sandbox_accounts (id),
    idempotency_key text NOT NULL UNIQUE,
    -- The test card token the card came from; it decides how charges end.
    test_token text NOT NULL,
    brand text NOT NULL,
    last4 text NOT NULL,
    exp_month smallint NOT NULL,
    exp_year smallint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_authorization_codes (
    code text PRIMARY KEY,
    platform_account_id text NOT NULL REFERENCES sandbox_accounts (id),
    connected_account_id text NOT NULL REFERENCES sandbox_accounts (id),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);

-- Which connected accounts a platform may act for (Connect's OAuth grants).
CREATE TABLE sandbox_connections (
    platform_account_id text NOT NULL REFERENCES sandbox_accounts (id),
    connected_account_id text NOT NULL REFERENCES sandbox_accounts (id),
    connected_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    PRIMARY KEY (platform_account_id, connected_account_id)
);

CREATE TABLE sandbox_tokens (
    id text PRIMARY KEY,
    platform_account_id text NOT NULL REFERENCES sandbox_accounts (id),
    connected_account_id text NOT NULL REFERENCES sandbox_accounts (id),
    customer_id text NOT NULL REFERENCES sandbox_customers (id),
    idempotency_key text NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sandbox_charges (
    id text PRIMARY KEY,
    connected_account_id text NOT NULL REFERENCES sandbox_accounts (id),
    -- A token pays for one charge at most.
    token_id text NOT NULL UNIQUE REFERENCES sandbox_tokens (id),
    idempotency_key text NOT NULL UNIQUE,
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL,
    status text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    failure_code text,
    decline_code text,
    failure_message text,
    created_at timestamptz NOT NULL DEFAULT now()
);
