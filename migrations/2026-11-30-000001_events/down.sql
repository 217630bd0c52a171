DROP TRIGGER events_fan_out ON events;
DROP FUNCTION events_fan_out();
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
DROP TABLE events;
