ALTER TABLE sandbox_authorization_codes DROP COLUMN operator_id, DROP COLUMN link_id;
ALTER TABLE operators
    ADD COLUMN charges_enabled boolean,
    ADD COLUMN payouts_enabled boolean;
ALTER TABLE links DROP CONSTRAINT links_held_account_pending, DROP COLUMN held_account_id;
DROP INDEX operators_processor_account_idx;
ALTER TABLE operators DROP COLUMN processor_account_id;
