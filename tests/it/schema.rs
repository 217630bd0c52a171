//! `schema.graphql` is the published contract: it must equal what the server builds.

#[test]
fn schema_graphql_matches_the_server() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let published = std::fs::read_to_string(path).expect("schema.graphql exists");
    let built = curbpay::graphql::sdl();
    if published != built {
        panic!(
            "schema.graphql differs from the schema the server builds. If the change is deliberate, \
             regenerate it with `cargo run -- schema > schema.graphql` and commit it."
        );
    }
}
