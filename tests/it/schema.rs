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

/// Every published type, field, argument, input field and enum value says what it is: the
/// SDL is the partners' reference. Lists what is undescribed, one path a line.
#[test]
fn every_schema_element_has_a_description() {
    use async_graphql::parser::types::{InputValueDefinition, TypeKind, TypeSystemDefinition};

    fn missing(description: &Option<async_graphql::Positioned<String>>) -> bool {
        description.as_ref().is_none_or(|text| text.node.trim().is_empty())
    }
    fn arguments(path: &str, args: &[async_graphql::Positioned<InputValueDefinition>], out: &mut Vec<String>) {
        for arg in args {
            if missing(&arg.node.description) {
                out.push(format!("{path}({})", arg.node.name.node));
            }
        }
    }

    let document = async_graphql::parser::parse_schema(curbpay::graphql::sdl()).expect("the SDL parses");
    let mut undescribed = Vec::new();
    for definition in &document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else { continue };
        let ty = &ty.node;
        let name = ty.name.node.as_str();
        if missing(&ty.description) {
            undescribed.push(name.to_owned());
        }
        match &ty.kind {
            TypeKind::Object(object) => {
                for field in &object.fields {
                    let path = format!("{name}.{}", field.node.name.node);
                    if missing(&field.node.description) {
                        undescribed.push(path.clone());
                    }
                    arguments(&path, &field.node.arguments, &mut undescribed);
                }
            }
            TypeKind::Interface(interface) => {
                for field in &interface.fields {
                    let path = format!("{name}.{}", field.node.name.node);
                    if missing(&field.node.description) {
                        undescribed.push(path.clone());
                    }
                    arguments(&path, &field.node.arguments, &mut undescribed);
                }
            }
            TypeKind::Enum(values) => {
                for value in &values.values {
                    if missing(&value.node.description) {
                        undescribed.push(format!("{name}.{}", value.node.value.node));
                    }
                }
            }
            TypeKind::InputObject(input) => {
                for field in &input.fields {
                    if missing(&field.node.description) {
                        undescribed.push(format!("{name}.{}", field.node.name.node));
                    }
                }
            }
            TypeKind::Scalar | TypeKind::Union(_) => {}
        }
    }
    assert!(undescribed.is_empty(), "undescribed schema elements:\n{}", undescribed.join("\n"));
}
