// @generated automatically by Diesel CLI.

diesel::table! {
    apps (id) {
        id -> Uuid,
        name -> Text,
        processor -> Text,
        processor_account_id -> Text,
        publishable_key -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        connect_client_id -> Nullable<Text>,
        secret_key_ciphertext -> Nullable<Bytea>,
        secret_key_key_id -> Nullable<Text>,
        webhook_secret_ciphertext -> Nullable<Bytea>,
        webhook_secret_key_id -> Nullable<Text>,
        platform_fee_bps -> Nullable<Int4>,
    }
}

diesel::table! {
    charge_tokens (id) {
        id -> Uuid,
        session_id -> Uuid,
        operator_id -> Uuid,
        link_id -> Uuid,
        status -> Text,
        token -> Nullable<Text>,
        cursor -> Nullable<Int8>,
        issued_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
        acknowledged_at -> Nullable<Timestamptz>,
        consumed_at -> Nullable<Timestamptz>,
        voided_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    customers (id) {
        id -> Uuid,
        app_id -> Uuid,
        external_ref -> Text,
        processor_customer_id -> Nullable<Text>,
        card_brand -> Nullable<Text>,
        card_last4 -> Nullable<Text>,
        card_exp_month -> Nullable<Int2>,
        card_exp_year -> Nullable<Int2>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    events (seq) {
        seq -> Int8,
        id -> Text,
        #[sql_name = "type"]
        type_ -> Text,
        tx -> Int8,
        app_id -> Nullable<Uuid>,
        operator_id -> Nullable<Uuid>,
        data -> Jsonb,
        operator_data -> Nullable<Jsonb>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    link_events (seq) {
        seq -> Int8,
        link_id -> Uuid,
        app_id -> Uuid,
        operator_id -> Uuid,
        status -> Text,
        occurred_at -> Timestamptz,
    }
}

diesel::table! {
    links (id) {
        id -> Uuid,
        app_id -> Uuid,
        operator_id -> Uuid,
        status -> Text,
        connected_account_id -> Nullable<Text>,
        state_nonce -> Nullable<Uuid>,
        failure_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        activated_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        charges_enabled -> Nullable<Bool>,
        payouts_enabled -> Nullable<Bool>,
        held_account_id -> Nullable<Text>,
        app_may_refund -> Bool,
    }
}

diesel::table! {
    operators (id) {
        id -> Uuid,
        name -> Text,
        token_seq -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        processor_account_id -> Nullable<Text>,
    }
}

diesel::table! {
    parking_sessions (id) {
        id -> Uuid,
        app_id -> Uuid,
        operator_id -> Uuid,
        customer_id -> Uuid,
        link_id -> Uuid,
        zone -> Text,
        vehicle_plate -> Text,
        status -> Text,
        idempotency_key -> Text,
        started_at -> Timestamptz,
        ended_at -> Nullable<Timestamptz>,
        amount -> Nullable<Int8>,
        currency -> Nullable<Text>,
        charged_at -> Nullable<Timestamptz>,
        processor_charge_id -> Nullable<Text>,
        failure_code -> Nullable<Text>,
        failure_decline_code -> Nullable<Text>,
        failure_message -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        expected_end_at -> Nullable<Timestamptz>,
        hold_currency -> Nullable<Text>,
        hold_incremental -> Nullable<Bool>,
        amount_set_by -> Nullable<Text>,
        cancel_reason -> Nullable<Text>,
        held_amount -> Int8,
        captured_amount -> Int8,
        released_amount -> Int8,
        refunded_amount -> Int8,
        refund_pending_amount -> Int8,
    }
}

diesel::table! {
    payments (id) {
        id -> Uuid,
        session_id -> Uuid,
        kind -> Text,
        amount -> Int8,
        currency -> Text,
        status -> Text,
        parent_id -> Nullable<Uuid>,
        refund_id -> Nullable<Uuid>,
        processor_reference -> Nullable<Text>,
        application_fee -> Nullable<Int8>,
        failure_code -> Nullable<Text>,
        failure_decline_code -> Nullable<Text>,
        failure_message -> Nullable<Text>,
        reason -> Nullable<Text>,
        request_key -> Nullable<Text>,
        expected_end_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        settled_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    processor_attempts (scope) {
        scope -> Text,
        attempt -> Int4,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    refunds (id) {
        id -> Uuid,
        session_id -> Uuid,
        amount -> Int8,
        currency -> Text,
        reason -> Text,
        status -> Text,
        idempotency_key -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    sandbox_accounts (id) {
        id -> Text,
        kind -> Text,
        owner_id -> Uuid,
        publishable_key -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sandbox_authorization_codes (code) {
        code -> Text,
        platform_account_id -> Text,
        connected_account_id -> Text,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        link_id -> Nullable<Uuid>,
        operator_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    sandbox_authorizations (id) {
        id -> Text,
        connected_account_id -> Text,
        token_id -> Text,
        test_token -> Text,
        amount -> Int8,
        amount_captured -> Int8,
        currency -> Text,
        application_fee -> Nullable<Int8>,
        status -> Text,
        incremental -> Bool,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sandbox_charges (id) {
        id -> Text,
        connected_account_id -> Text,
        token_id -> Text,
        idempotency_key -> Text,
        amount -> Int8,
        currency -> Text,
        status -> Text,
        failure_code -> Nullable<Text>,
        decline_code -> Nullable<Text>,
        failure_message -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sandbox_connections (platform_account_id, connected_account_id) {
        platform_account_id -> Text,
        connected_account_id -> Text,
        connected_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    sandbox_customers (id) {
        id -> Text,
        account_id -> Text,
        idempotency_key -> Text,
        test_token -> Text,
        brand -> Text,
        last4 -> Text,
        exp_month -> Int2,
        exp_year -> Int2,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    sandbox_refunds (id) {
        id -> Text,
        payment_ref -> Text,
        amount -> Int8,
        application_fee_refunded -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sandbox_replies (idempotency_key) {
        idempotency_key -> Text,
        operation -> Text,
        reply -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sandbox_tokens (id) {
        id -> Text,
        platform_account_id -> Text,
        connected_account_id -> Text,
        customer_id -> Text,
        idempotency_key -> Text,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    session_amount_changes (id) {
        id -> Uuid,
        session_id -> Uuid,
        amount -> Int8,
        currency -> Text,
        set_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Uuid,
        delivery_id -> Uuid,
        endpoint_id -> Uuid,
        event_id -> Text,
        attempt -> Int4,
        succeeded -> Bool,
        http_status -> Nullable<Int4>,
        duration_ms -> Int4,
        error -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        endpoint_id -> Uuid,
        event_seq -> Int8,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Uuid,
        app_id -> Nullable<Uuid>,
        operator_id -> Nullable<Uuid>,
        url -> Text,
        event_types -> Array<Text>,
        description -> Nullable<Text>,
        status -> Text,
        disabled_reason -> Nullable<Text>,
        secret_ciphertext -> Bytea,
        secret_key_id -> Text,
        previous_secret_ciphertext -> Nullable<Bytea>,
        previous_secret_key_id -> Nullable<Text>,
        previous_secret_expires_at -> Nullable<Timestamptz>,
        failing_since -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> Text,
        app_id -> Uuid,
        kind -> Text,
        received_at -> Timestamptz,
    }
}

diesel::joinable!(charge_tokens -> links (link_id));
diesel::joinable!(charge_tokens -> operators (operator_id));
diesel::joinable!(charge_tokens -> parking_sessions (session_id));
diesel::joinable!(customers -> apps (app_id));
diesel::joinable!(link_events -> apps (app_id));
diesel::joinable!(link_events -> links (link_id));
diesel::joinable!(link_events -> operators (operator_id));
diesel::joinable!(links -> apps (app_id));
diesel::joinable!(links -> operators (operator_id));
diesel::joinable!(parking_sessions -> apps (app_id));
diesel::joinable!(payments -> parking_sessions (session_id));
diesel::joinable!(payments -> refunds (refund_id));
diesel::joinable!(refunds -> parking_sessions (session_id));
diesel::joinable!(parking_sessions -> customers (customer_id));
diesel::joinable!(parking_sessions -> links (link_id));
diesel::joinable!(parking_sessions -> operators (operator_id));
diesel::joinable!(sandbox_charges -> sandbox_accounts (connected_account_id));
diesel::joinable!(sandbox_charges -> sandbox_tokens (token_id));
diesel::joinable!(sandbox_authorizations -> sandbox_accounts (connected_account_id));
diesel::joinable!(sandbox_authorizations -> sandbox_tokens (token_id));
diesel::joinable!(sandbox_customers -> sandbox_accounts (account_id));
diesel::joinable!(session_amount_changes -> parking_sessions (session_id));
diesel::joinable!(sandbox_tokens -> sandbox_customers (customer_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::joinable!(webhook_attempts -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_deliveries -> events (event_seq));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_endpoints -> apps (app_id));
diesel::joinable!(webhook_endpoints -> operators (operator_id));
diesel::joinable!(webhook_events -> apps (app_id));

diesel::allow_tables_to_appear_in_same_query!(
    apps,
    charge_tokens,
    customers,
    events,
    link_events,
    links,
    operators,
    parking_sessions,
    payments,
    processor_attempts,
    refunds,
    sandbox_accounts,
    sandbox_authorizations,
    sandbox_authorization_codes,
    sandbox_charges,
    sandbox_connections,
    sandbox_customers,
    sandbox_refunds,
    sandbox_replies,
    sandbox_tokens,
    session_amount_changes,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
);
