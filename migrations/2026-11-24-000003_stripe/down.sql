DROP TABLE processor_attempts;
DROP TABLE webhook_events;
DROP INDEX links_connected_account_idx;
ALTER TABLE operators DROP COLUMN payouts_enabled, DROP COLUMN charges_enabled;
ALTER TABLE links DROP COLUMN payouts_enabled, DROP COLUMN charges_enabled;
DROP INDEX apps_processor_account_idx;
ALTER TABLE apps
    DROP CONSTRAINT apps_webhook_secret_sealed,
    DROP CONSTRAINT apps_secret_key_sealed,
    DROP COLUMN platform_fee_bps,
    DROP COLUMN webhook_secret_key_id,
    DROP COLUMN webhook_secret_ciphertext,
    DROP COLUMN secret_key_key_id,
    DROP COLUMN secret_key_ciphertext,
    DROP COLUMN connect_client_id;
