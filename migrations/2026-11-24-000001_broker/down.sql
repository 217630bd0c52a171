DROP TABLE charge_tokens;
DROP FUNCTION charge_tokens_final_states();
DROP TABLE parking_sessions;
DROP TABLE customers;
DROP TABLE link_events;
DROP TABLE links;
DROP TABLE operators;
DROP TABLE apps;
