DROP TABLE sandbox_charges;
DROP TABLE sandbox_tokens;
DROP TABLE sandbox_connections;
DROP TABLE sandbox_authorization_codes;
DROP TABLE sandbox_customers;
DROP TABLE sandbox_accounts;
