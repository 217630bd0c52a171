-- Who may bind which processor account to a link.
--
-- An operator's known processor account: the first account it ever connected (or, for
-- an operator linked before this column existed, the account of its earliest active
-- link). An authorization that yields another account does not activate the link: the
-- account waits in links.held_account_id until an admin accepts it.
ALTER TABLE operators ADD COLUMN processor_account_id text;
UPDATE operators o
SET processor_account_id = (
    SELECT l.connected_account_id
    FROM links l
    WHERE l.operator_id = o.id AND l.status = 'ACTIVE' AND l.connected_account_id IS NOT NULL
    ORDER BY l.activated_at, l.id
    LIMIT 1
);
CREATE INDEX operators_processor_account_idx ON operators (processor_account_id);

ALTER TABLE links
    ADD COLUMN held_account_id text,
    ADD CONSTRAINT links_held_account_pending CHECK (held_account_id IS NULL OR status = 'PENDING');

-- Capabilities are facts one app's webhooks report about an account: they live on that
-- app's link only. What an operator shows is computed from the links a viewer can see.
ALTER TABLE operators DROP COLUMN charges_enabled, DROP COLUMN payouts_enabled;

-- The sandbox's authorization codes are bound to the link and operator they were issued
-- for (taken from the verified OAuth state), and redeem only for them.
ALTER TABLE sandbox_authorization_codes
    ADD COLUMN link_id uuid,
    ADD COLUMN operator_id uuid;
